//! Network runs end to end: the digits presets' run directories, bit-identical
//! results under any thread settings, resume, and the config errors of
//! `[problem] kind = "nn"`.

use assert_cmd::Command;
use std::path::Path;

fn eosflow() -> Command {
    Command::cargo_bin("eosflow").unwrap()
}

fn header(path: &Path) -> Vec<String> {
    let mut rd = csv::Reader::from_path(path).unwrap();
    rd.headers().unwrap().iter().map(String::from).collect()
}

/// A small CNN on 200 digits in two ghost batches of 100.
const SMALL: &str = r#"name = "small"
[problem]
kind = "nn"
arch = "si-vgg"
vgg = "4 M 6"
train_per_class = 20
ghost_batch = 100
hessian_examples = 100
[optimizer]
kind = "gd_wd"
lr = 0.05
wd = 0.01
[run]
steps = 12
checkpoint_every = 6
checkpoint_min_interval_s = 0.0
[sharpness]
every = 6
[output]
figures = false
"#;

#[test]
fn digits_presets_write_their_run_directories() {
    let dir = tempfile::tempdir().unwrap();
    for (preset, steps, n_train) in [("digits-mlp", "30", 500), ("digits-mlp-wd0", "5", 500), ("digits-cnn", "5", 200)]
    {
        let out = dir.path().join(preset);
        let o = eosflow().args(["reproduce", preset, "--steps", steps, "--out"]).arg(&out).output().unwrap();
        assert!(o.status.success(), "{preset}: {}", String::from_utf8_lossy(&o.stderr));
        let cols = header(&out.join("metrics.csv"));
        for c in [
            "step",
            "loss",
            "sharpness",
            "train_acc",
            "test_loss",
            "test_acc",
            "loss_minus_lmin",
            "test_loss_minus_lmin",
        ] {
            assert!(cols.iter().any(|h| h == c), "{preset}: metrics.csv lacks {c}: {cols:?}");
        }
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        let p = &s["problem"];
        assert_eq!(p["train_examples"], n_train, "{preset}");
        let lmin = p["l_min"].as_f64().unwrap();
        assert!((lmin - (100.0f64 / 91.0).ln()).abs() < 1e-15);
        let acc = p["final_test_acc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{preset}: {acc}");
        for f in ["figures/network.png", "figures/network.svg", "w_final.npy"] {
            assert!(out.join(f).exists(), "{preset}: no {f}");
        }
        // loss_minus_lmin is the loss column minus L_min, row by row (the
        // CSV writes shortest round-trip decimals, so equality is exact).
        let mut rd = csv::Reader::from_path(out.join("metrics.csv")).unwrap();
        let (il, id) =
            (cols.iter().position(|c| c == "loss").unwrap(), cols.iter().position(|c| c == "loss_minus_lmin").unwrap());
        for r in rd.records() {
            let r = r.unwrap();
            let (l, d): (f64, f64) = (r[il].parse().unwrap(), r[id].parse().unwrap());
            assert_eq!(d, l - lmin);
        }
    }
    // digits-mlp fits the training set within its first 30 steps.
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("digits-mlp/summary.json")).unwrap()).unwrap();
    assert!(s["problem"]["final_train_acc"].as_f64().unwrap() > 0.5, "{s}");
}

#[test]
fn the_weight_decay_comparison_preset_overlays_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wd");
    let o = eosflow().args(["reproduce", "digits-mlp-wd", "--steps", "20", "--out"]).arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for label in ["wd0.05", "wd0"] {
        assert!(out.join(label).join("metrics.csv").exists(), "no run {label}");
        assert!(stdout.contains(&format!("{label}: test acc")), "{stdout}");
    }
    let cfg = std::fs::read_to_string(out.join("wd0/config.toml")).unwrap();
    assert!(cfg.contains("wd = 0.0"), "{cfg}");
    for f in ["runs.csv", "figures/digits-mlp-wd.png", "figures/digits-mlp-wd.svg"] {
        assert!(out.join(f).exists(), "no {f}");
    }
}

#[test]
fn network_runs_are_identical_under_any_thread_settings_and_after_resume() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("small.toml");
    std::fs::write(&cfg, SMALL).unwrap();
    let mut outs = Vec::new();
    for (rayon, candle) in [("1", "1"), ("2", "2"), ("2", "1")] {
        let out = dir.path().join(format!("r{rayon}c{candle}"));
        eosflow()
            .env("RAYON_NUM_THREADS", rayon)
            .env("EOSFLOW_CANDLE_THREADS", candle)
            .arg("run")
            .arg(&cfg)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        outs.push(out);
    }
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    for o in &outs[1..] {
        for f in ["metrics.csv", "sharpness.csv", "w_final.npy"] {
            assert!(read(&outs[0], f) == read(o, f), "{f} differs between thread settings ({})", o.display());
        }
    }
    // Half the steps, then resume to the full count: the same files.
    let half = dir.path().join("half");
    let text = SMALL.replace("steps = 12", "steps = 6");
    let half_cfg = dir.path().join("half.toml");
    std::fs::write(&half_cfg, text).unwrap();
    eosflow().arg("run").arg(&half_cfg).arg("--out").arg(&half).assert().success();
    eosflow().arg("resume").arg(&half).args(["--steps", "12"]).assert().success();
    for f in ["metrics.csv", "sharpness.csv", "w_final.npy"] {
        assert!(read(&outs[0], f) == read(&half, f), "{f} differs after resume");
    }
    let a: serde_json::Value = serde_json::from_slice(&read(&outs[0], "summary.json")).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&read(&half, "summary.json")).unwrap();
    assert_eq!(a["problem"], b["problem"], "the tracker's summary survives the checkpoint");
}

#[test]
fn bad_network_configs_are_explained() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("arch = \"si-vgg\"", "arch = \"si-vg\"", &["si-vg", "did you mean `si-vgg`"]),
        ("vgg = \"4 M 6\"", "vgg = \"4 X 6\"", &["`X`", "mean pool"]),
        ("ghost_batch = 100", "ghost_batch = 1", &["ghost_batch = 1"]),
        ("ghost_batch = 100", "ghost_batch = 199", &["single", "ghost_batch"]),
        ("train_per_class = 20", "train_per_class = 200", &["train_per_class = 200", "174"]),
        ("vgg = \"4 M 6\"", "vgg = \"4 M M M M\"", &["pooling"]),
        ("kind = \"nn\"", "kind = \"nn\"\ndataset = \"cifar\"", &["dataset", "digits"]),
        // A key of another architecture names itself and the architecture.
        ("vgg = \"4 M 6\"", "vgg = \"4 M 6\"\nhidden = [8]", &["problem.hidden", "arch = \"si-vgg\"", "remove it"]),
        (
            "arch = \"si-vgg\"\nvgg = \"4 M 6\"",
            "arch = \"si-resnet20\"\nvgg = \"4 M 6\"",
            &["problem.vgg", "si-resnet20"],
        ),
    ];
    for (from, to, needles) in cases {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, SMALL.replace(from, to)).unwrap();
        let o = eosflow().arg("run").arg(&cfg).arg("--out").arg(dir.path().join("o")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{to}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{to}: `{n}` not in: {err}");
        }
    }
}

/// Five training files of `n` records and a test file of `n`, CIFAR-10
/// binary format, random pixels, labels cycling through the classes.
fn write_cifar(dir: &Path, n: usize) {
    let mut state = 12345u64;
    let mut byte = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 56) as u8
    };
    for name in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        let mut b = Vec::new();
        for i in 0..n {
            b.push((i % 10) as u8);
            b.extend((0..3072).map(|_| byte()));
        }
        std::fs::write(dir.join(name), b).unwrap();
    }
}

#[test]
fn a_cifar_format_sample_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    std::fs::create_dir(&data).unwrap();
    write_cifar(&data, 10);
    // CIFAR-10-2k's recipe at toy size: the first 4 images per class of a
    // 50-image training set, a small SI VGG, one ghost batch.
    let cfg = r#"name = "c"
[problem]
kind = "nn"
dataset = "cifar10"
train_per_class = 4
arch = "si-vgg"
vgg = "4 M 8 M"
ghost_batch = 40
hessian_examples = 0
[optimizer]
kind = "gd_wd"
lr = 0.1
wd = 5e-4
[run]
steps = 3
[sharpness]
every = 3
[output]
figures = false
"#;
    let path = dir.path().join("c.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = dir.path().join("out");
    let o = eosflow().arg("run").arg(&path).arg("--data").arg(&data).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["problem"]["train_examples"], 40);
    assert_eq!(s["problem"]["test_examples"], 10);
    let cols = header(&out.join("metrics.csv"));
    assert!(cols.iter().any(|c| c == "test_acc"), "{cols:?}");
    // The resolved config records the folder, so it reruns as it is.
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(resolved.contains("cifar_dir"), "{resolved}");
    // Labels and w0 are copied; the images stay in the user's files.
    let labels = std::fs::read(out.join("data/y_train.npy")).unwrap();
    let head = String::from_utf8_lossy(&labels[..128]).replace(' ', "");
    assert!(head.contains("(40,)"), "{head}");
    assert!(!out.join("data/x_train.npy").exists());
    // Without --data or [data] cifar_dir: a clear error.
    let o = eosflow().arg("run").arg(&path).arg("--out").arg(dir.path().join("o2")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("--data DIR") && err.contains("nothing is downloaded"), "{err}");
    // A truncated file names itself.
    let f = data.join("data_batch_2.bin");
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() - 5]).unwrap();
    let o = eosflow()
        .arg("run")
        .arg(&path)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("o3"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("data_batch_2.bin") && err.contains("truncated"), "{err}");
}

#[test]
fn fig14_runs_on_a_tiny_cifar_file() {
    // Fig. 14's preset (SI VGG-11 on CIFAR-10-2k, full-batch BN, λ̂ ∈ {0,
    // 5e-5, 1e-4, 5e-4}, four runs side by side) on a CIFAR-format sample:
    // 2 images per class instead of 200 (so one ghost batch of 20), width
    // 1/8 and 2 steps so that CI stays fast. Checks the variant folders,
    // the files and the columns, and the overlaid figure.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    std::fs::create_dir(&data).unwrap();
    write_cifar(&data, 10);
    let out = dir.path().join("fig14");
    let o = eosflow()
        .args(["reproduce", "fig14", "--steps", "2", "--data"])
        .arg(&data)
        .args(["--set", "problem.train_per_class=2", "--set", "problem.ghost_batch=20"])
        .args(["--set", "problem.width=0.125", "--set", "sharpness.every=2", "--set", "output.formats=[\"png\"]"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (label, wd) in [("wd0", 0.0), ("wd5e-5", 5e-5), ("wd1e-4", 1e-4), ("wd5e-4", 5e-4)] {
        let run = out.join(label);
        let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(run.join("config.toml")).unwrap()).unwrap();
        assert_eq!(cfg["optimizer"]["wd"].as_float(), Some(wd), "{label}");
        assert_eq!(cfg["optimizer"]["lr"].as_float(), Some(0.1), "{label}");
        assert_eq!(cfg["problem"]["arch"].as_str(), Some("si-vgg"), "{label}");
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["problem"]["train_examples"], 20, "{label}");
        let cols = header(&run.join("metrics.csv"));
        for c in ["step", "loss", "train_acc", "test_acc", "test_loss", "loss_minus_lmin"] {
            assert!(cols.iter().any(|x| x == c), "{label}: no column {c} in {cols:?}");
        }
        // log_every = 500: the first and the last step are logged.
        let steps: Vec<String> = csv::Reader::from_path(run.join("metrics.csv"))
            .unwrap()
            .records()
            .map(|r| r.unwrap()[0].to_string())
            .collect();
        assert_eq!(steps, ["0", "2"], "{label}");
        let sharp = header(&run.join("sharpness.csv"));
        assert!(sharp.iter().any(|c| c.contains("sharpness")), "{sharp:?}");
        for f in ["w_final.npy", "data/w0.npy", "data/y_train.npy", "data/y_test.npy"] {
            assert!(run.join(f).exists(), "{label}: {f}");
        }
    }
    for f in ["runs.csv", "figures/fig14.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
    // A wrong --data fails before anything is created, the error said once.
    std::fs::remove_file(data.join("data_batch_3.bin")).unwrap();
    let bad = dir.path().join("bad");
    let o = eosflow()
        .args(["reproduce", "fig14", "--steps", "2", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no data_batch_3.bin there") && err.contains("fig14 (wd0)"), "{err}");
    assert_eq!(err.matches("data_batch_3.bin there").count(), 1, "{err}");
    assert!(!bad.exists(), "a failed multi-run preset created {}", bad.display());
}

#[test]
fn set_overrides_config_values_and_explains_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.toml");
    std::fs::write(&path, SMALL).unwrap();
    let out = dir.path().join("a");
    let o = eosflow()
        .arg("run")
        .arg(&path)
        .args(["--set", "optimizer.wd=0.02", "--set", "problem.precision=f32", "--set", "sharpness.tol=1e-4"])
        .args(["--set", "run.steps=2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(out.join("config.toml")).unwrap()).unwrap();
    assert_eq!(cfg["optimizer"]["wd"].as_float(), Some(0.02));
    assert_eq!(cfg["problem"]["precision"].as_str(), Some("f32"));
    assert_eq!(cfg["run"]["steps"].as_integer(), Some(2));
    for (set, expect) in [
        ("optimizer.wdd=1", "did you mean `wd`"),
        ("optimizer", "expected KEY=VALUE"),
        ("problem.precision=f16", "did you mean"),
        ("problem.device=gpu", "\"cuda:N\""),
        ("problem.device=cuda", "--features cuda"),
        ("problem.precision=f32", "sharpness.tol ≥ 1e-5"),
        ("name.x=1", "is a value, not a section"),
    ] {
        let o =
            eosflow().arg("run").arg(&path).args(["--set", set, "--out"]).arg(dir.path().join("b")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        // A --set without `=` is a malformed command line (exit 2, as
        // clap's errors); a well-formed one with a bad value is a config
        // error (exit 1).
        let code = if set.contains('=') { 1 } else { 2 };
        assert_eq!(o.status.code(), Some(code), "--set {set}: {err}");
        assert!(err.contains(expect), "--set {set}: {err}");
    }
}

#[test]
fn bench_reports_f32_accuracy_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.toml");
    std::fs::write(&path, SMALL).unwrap();
    let o = eosflow()
        .arg("bench")
        .arg(&path)
        .args(["--warmup", "1", "--timed", "2", "--evals", "0", "--hvps", "2", "--set", "problem.precision=f32"])
        .args(["--set", "sharpness.tol=1e-4"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // f32 against f64 at the same w and v: single-precision rounding
    // (measured ~1e-6 on such nets), far from an O(1) type mix-up.
    let err = j["hvp_f32_relative_error_vs_f64"].as_f64().unwrap();
    assert!(err > 0.0 && err < 1e-4, "{err}");
    assert_eq!(j["step_us"]["n"], 2);
    assert!(j.get("sharpness_cold_ms").is_none(), "--evals 0 skips the sharpness");
    #[cfg(target_os = "linux")]
    assert!(j["peak_rss_mb_after_steps_and_hvps"].as_f64().unwrap() > 1.0);
}

#[test]
fn network_run_directories_of_format_1_are_migrated() {
    // Formats 0 and 1 wrote every architecture key (`hidden` and
    // `activation` on a VGG too); format 2 refuses those in a config, but
    // `plot` and `resume` on an old run directory drop them.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, SMALL).unwrap();
    let out = dir.path().join("out");
    assert!(eosflow().arg("run").arg(&cfg).arg("--out").arg(&out).output().unwrap().status.success());
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(resolved.contains("format_version = 2") && !resolved.contains("hidden"), "{resolved}");
    let old = resolved
        .replace("format_version = 2", "format_version = 1")
        .replace("vgg = ", "hidden = [256, 256]\nactivation = \"swish\"\nvgg = ");
    std::fs::write(out.join("config.toml"), &old).unwrap();
    let o = eosflow().arg("plot").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = eosflow().args(["resume", "--steps", "14"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let now = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(now.contains("format_version = 2") && !now.contains("hidden"), "{now}");
    // The same keys in a config of format 2 are an error.
    let bad = old.replace("format_version = 1", "format_version = 2");
    std::fs::write(out.join("config.toml"), bad).unwrap();
    let o = eosflow().arg("plot").arg(&out).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("problem.hidden does not apply"));
}
