//! The `eosflow` binary end to end: the toy3d preset's run directory, the
//! documented errors for bad configs, and the run-directory rules.

use assert_cmd::Command;
use std::path::Path;

fn eosflow() -> Command {
    Command::cargo_bin("eosflow").unwrap()
}

const BASE: &str = r#"name = "t"
[problem]
kind = "toy3d"
[optimizer]
kind = "gd_wd"
lr = 0.5
wd = 0.08
[run]
steps = 50
[sharpness]
every = 5
[output]
figures = false
"#;

/// Runs `eosflow run` on `toml` and returns (exit code, stderr).
fn run_config(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = eosflow().arg("run").arg(&cfg).arg("--out").arg(dir.path().join("out")).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn header(path: &Path) -> Vec<String> {
    let mut rd = csv::Reader::from_path(path).unwrap();
    rd.headers().unwrap().iter().map(String::from).collect()
}

#[test]
fn reproduce_toy3d_writes_the_whole_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("toy3d");
    let o = eosflow().args(["reproduce", "toy3d", "--out"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("midpoint_distance_to_zeta_star"), "{stdout}");

    for f in ["config.toml", "metrics.csv", "sharpness.csv", "summary.json", "w_final.npy"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    for f in ["overview.png", "overview.svg", "toy3d.png", "toy3d.svg"] {
        let bytes = std::fs::read(out.join("figures").join(f)).unwrap();
        assert!(bytes.len() > 10_000, "{f} is suspiciously small");
        if f.ends_with(".png") {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        } else {
            assert!(String::from_utf8_lossy(&bytes).contains("<svg"));
        }
    }

    let h = header(&out.join("metrics.csv"));
    assert_eq!(
        h,
        [
            "step",
            "loss",
            "grad_norm",
            "w_norm",
            "eff_lr",
            "two_over_eff_lr",
            "sharpness",
            "regime",
            "theta_x",
            "theta_y",
            "theta_z",
            "sharpness_on_gamma",
            "flow_tau",
            "flow_sharpness",
            "dist_to_flow",
            "phi_dist_to_flow"
        ]
    );
    let mut rd = csv::Reader::from_path(out.join("metrics.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3001, "steps 0..=3000");
    assert_eq!(&rows[0][0], "0");
    // Step 0 is w0 itself: ‖w0‖ = ‖(0.3, 1.3, 1.2)‖ (U is orthogonal).
    let w0n: f64 = rows[0][3].parse().unwrap();
    assert!((w0n - (0.09f64 + 1.69 + 1.44).sqrt()).abs() < 1e-14);
    assert!(rows.iter().all(|r| !r[6].is_empty()), "sharpness every step in this preset");
    assert!(rows.iter().all(|r| ["stable", "eos_above", "eos_below", "unstable"].contains(&&r[7])));

    assert_eq!(header(&out.join("sharpness.csv")), ["step", "sharpness", "residual", "hvps", "converged", "lambda_1"]);

    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "completed");
    assert_eq!(s["last_step"], 3000);
    assert_eq!(s["seeds"]["problem"], 0);
    assert!(s["timing"]["run_s"].as_f64().unwrap() > 0.0);
    assert!(s["problem"]["midpoint_distance_to_zeta_star"].as_f64().unwrap() < 1e-8);
    assert!(s["problem"]["theta_final_domain"][2].as_f64().unwrap().abs() < 1e-6);
    for key in ["eos_entry_step", "first_in_band_step", "final_two_over_eff_lr", "final_sharpness", "initial_sharpness"]
    {
        assert!(s.get(key).is_some(), "summary.json lacks {key}");
    }
    assert!(s["problem"].get("first_step_abs_z_below_0.01").is_some());
    assert!(s["problem"].get("sharpness_on_gamma_final").is_some());

    // The flow in lockstep (on in this preset) from the EoS entry, step 4:
    // empty before it, τ_t = (t − 4)·η_in after, and GD+WD's projection φ_t
    // ends on the flow's endpoint ζ* while θ_t keeps oscillating around it.
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let val = |r: &csv::StringRecord, name: &str| r[col(name)].parse::<f64>().unwrap_or(f64::NAN);
    assert!(rows[..4].iter().all(|r| val(r, "flow_tau").is_nan()));
    for r in &rows[4..] {
        let t: f64 = r[0].parse().unwrap();
        assert!((val(r, "flow_tau") - (t - 4.0) * 0.04).abs() < 1e-12, "step {t}");
    }
    let last = &rows[3000];
    assert!(val(last, "phi_dist_to_flow") < 1e-6, "{}", val(last, "phi_dist_to_flow"));
    assert!((val(last, "flow_sharpness") - 6.0).abs() < 1e-9);
    let lock = &s["problem"]["lockstep"];
    assert_eq!(lock["eos_entry_step"], 4);
    assert!(lock["error"].is_null(), "{lock}");

    // The resolved config runs again and gives the same metrics, bit for bit.
    let again = dir.path().join("again");
    eosflow().arg("run").arg(out.join("config.toml")).arg("--out").arg(&again).assert().success();
    assert_eq!(std::fs::read(out.join("metrics.csv")).unwrap(), std::fs::read(again.join("metrics.csv")).unwrap());
    assert_eq!(std::fs::read(out.join("w_final.npy")).unwrap(), std::fs::read(again.join("w_final.npy")).unwrap());

    // `plot` regenerates the figures from the CSVs.
    std::fs::remove_dir_all(out.join("figures")).unwrap();
    eosflow().arg("plot").arg(&out).assert().success();
    assert!(out.join("figures/toy3d.png").is_file());
}

#[test]
fn list_and_help() {
    let o = eosflow().args(["reproduce", "--list"]).output().unwrap();
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("toy3d") && s.contains("Fig. 3"), "{s}");
    for sub in [&["--help"][..], &["run", "--help"], &["reproduce", "--help"], &["plot", "--help"]] {
        eosflow().args(sub).assert().success();
    }
    let o = eosflow().args(["reproduce", "toy3"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "an unknown preset is a bad argument");
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `toy3d`?"));
}

#[test]
fn bad_configs_get_clear_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("lr = 0.5", "lrr = 0.5", "unknown key `lrr`: did you mean `lr`?"),
        ("[run]", "[runn]", "unknown key `runn`: did you mean `run`?"),
        ("every = 5", "evry = 5", "did you mean `every`?"),
        ("\"gd_wd\"", "\"gdwd\"", "unknown value `gdwd`: did you mean `gd_wd`?"),
        ("lr = 0.5", "lr = 0.0", "optimizer.lr = 0 must be a positive finite number"),
        ("lr = 0.5", "lr = -1.0", "optimizer.lr = -1 must be a positive"),
        ("wd = 0.08", "wd = -0.1", "optimizer.wd = -0.1 must be ≥ 0"),
        ("wd = 0.08", "wd = 2.0", "must be < 1: the decay factor"),
        ("steps = 50", "steps = 0", "run.steps = 0"),
        ("kind = \"toy3d\"", "kind = \"toy3d\"\nw0_domain = [0.0, 0.0, 0.0]", "initial weights are zero"),
        ("kind = \"toy3d\"", "kind = \"toy3d\"\nw0_domain = [nan, 1.0, 1.0]", "must be finite"),
        ("[run]", "[init]\nw0 = [1.0, 2.0]\n[run]", "init.w0 has 2 entries, but the problem has 3"),
        ("[run]", "[init]\nw0_npy = \"missing.npy\"\n[run]", "cannot read .npy file"),
        ("steps = 50", "steps = \"many\"", "invalid type"),
        // A wrong value in a section read through a tagged enum is named by
        // its key and line, not at the section's header.
        ("lr = 0.5", "lr = \"0.5\"", "`optimizer.lr` (line"),
    ];
    for (from, to, want) in cases {
        let toml = BASE.replacen(from, to, 1);
        assert_ne!(toml, BASE, "case {to} did not apply");
        let (code, err) = run_config(&toml);
        assert_eq!(code, 1, "{to}: exit code {code}, stderr {err}");
        assert!(err.contains(want), "{to}: expected {want:?} in\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_set_whose_value_does_not_fit_is_named() {
    for (set, want) in [
        ("run.steps=-5", "--set run.steps=-5: invalid value: integer `-5`, expected u64"),
        ("optimizer.lr=\"x\"", "--set optimizer.lr=\"x\": invalid type: string \"x\", expected f64"),
        ("run.stepz=5", "--set run.stepz=5: unknown key `stepz`: did you mean `steps`?"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let o =
            eosflow().args(["reproduce", "fig4", "--set", set, "--out"]).arg(dir.path().join("o")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{set}: {err}");
        assert!(err.contains(want), "{set}: expected {want:?} in\n{err}");
    }
}

#[test]
fn w0_from_npy_and_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    // A float64 .npy of 3 values, written by hand (format 1.0): the same w0 via
    // numpy would be np.save("w0.npy", np.array([0.3, 1.3, 1.2])).
    let write_npy = |name: &str, vals: &[f64]| {
        let hdr = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}", vals.len());
        let mut h = hdr.into_bytes();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h);
        for v in vals {
            b.extend(v.to_le_bytes());
        }
        std::fs::write(dir.path().join(name), b).unwrap();
    };
    write_npy("w0.npy", &[0.3, 1.3, 1.2]);
    write_npy("w0_4.npy", &[0.3, 1.3, 1.2, 1.0]);
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, BASE.replacen("[run]", "[init]\nw0_npy = \"w0.npy\"\n[run]", 1)).unwrap();
    eosflow().arg("run").arg(&cfg).arg("--out").arg(dir.path().join("a")).assert().success();
    let n: Vec<f64> = {
        let mut rd = csv::Reader::from_path(dir.path().join("a/metrics.csv")).unwrap();
        rd.records().next().unwrap().unwrap().iter().map(|x| x.parse().unwrap_or(f64::NAN)).collect()
    };
    assert!((n[3] - (0.09f64 + 1.69 + 1.44).sqrt()).abs() < 1e-14);
    std::fs::write(&cfg, BASE.replacen("[run]", "[init]\nw0_npy = \"w0_4.npy\"\n[run]", 1)).unwrap();
    let o = eosflow().arg("run").arg(&cfg).arg("--out").arg(dir.path().join("b")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has 4 entries, but the problem has 3 parameters"));
}

#[test]
fn non_empty_output_directory_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, BASE).unwrap();
    let o = eosflow().arg("run").arg(&cfg).arg("--out").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not empty"));
    eosflow().arg("run").arg(&cfg).arg("--out").arg(&out).arg("--force").arg("--steps").arg("7").assert().success();
    // --force keeps files that are not eosflow's.
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
    let rows = csv::Reader::from_path(out.join("metrics.csv")).unwrap().records().count();
    assert_eq!(rows, 8, "--steps 7 gives steps 0..=7");
}

#[test]
fn fig4_short_run_and_seed_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fig4");
    eosflow().args(["reproduce", "fig4", "--steps", "3000", "--out"]).arg(&out).assert().success();
    let h = header(&out.join("metrics.csv"));
    assert_eq!(
        &h[8..],
        [
            "test_loss",
            "test_loss_sample",
            "dist_theta_m",
            "phi_dist_m",
            "phi_sharpness",
            "h",
            "two_over_eff_lr_minus_phi_sharpness",
            "flow_tau",
            "flow_sharpness",
            "dist_to_flow",
            "phi_dist_to_flow"
        ]
    );
    for f in ["x.npy", "y.npy", "x_test.npy", "y_test.npy", "w_gt.npy", "b_gt.npy", "w0.npy"] {
        assert!(out.join("data").join(f).is_file(), "missing data/{f}");
    }
    assert!(out.join("figures/fig4.png").is_file());
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "first_step_train_loss_below_1e-14",
        "eos_entry_step_on_phi",
        "eos_train_loss_median",
        "test_loss_at_eos_entry",
        "test_loss_final",
        "phi_dist_m_final",
        "phi_sharpness_final",
        "sharpness_min_on_gamma",
        "eos_periods",
    ] {
        assert!(s["problem"].get(key).is_some(), "summary.json lacks problem.{key}");
    }

    // The same data through [data] *.npy reproduces the run's training loss.
    let cfg = dir.path().join("npy.toml");
    let d = out.join("data");
    std::fs::write(
        &cfg,
        format!(
            "name = \"npy\"\n[problem]\nkind = \"linreg_bn\"\n[data]\nx_npy = {:?}\ny_npy = {:?}\n[init]\nw0_npy = {:?}\n\
             [optimizer]\nkind = \"gd_wd\"\nlr = 0.5\nwd = 2e-4\n[run]\nsteps = 3000\n[sharpness]\nevery = 1000\n\
             [output]\nfigures = false\n",
            d.join("x.npy"),
            d.join("y.npy"),
            d.join("w0.npy")
        ),
    )
    .unwrap();
    let out2 = dir.path().join("npy");
    eosflow().arg("run").arg(&cfg).arg("--out").arg(&out2).assert().success();
    let loss = |p: &Path| -> Vec<String> {
        csv::Reader::from_path(p.join("metrics.csv")).unwrap().records().map(|r| r.unwrap()[1].to_string()).collect()
    };
    assert_eq!(loss(&out), loss(&out2), "same data and w0 give the same losses, bit for bit");

    // Mismatched y length is refused with the file named.
    std::fs::copy(d.join("y_test.npy"), dir.path().join("y_bad.npy")).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(&format!("{:?}", d.join("y.npy")), "\"y_bad.npy\"");
    std::fs::write(&cfg, text).unwrap();
    let o = eosflow().arg("run").arg(&cfg).arg("--out").arg(dir.path().join("bad")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("y_bad.npy") && err.contains("has 1000 entries, but"), "{err}");
    assert!(err.contains("x.npy has 20 rows, one target each") && err.contains("y_npy must hold one target"), "{err}");

    // A sweep over two seeds runs both and tabulates them.
    let sweep = dir.path().join("sweep");
    let o = eosflow()
        .args(["reproduce", "fig4", "--steps", "2000", "--seeds", "0..2", "--out"])
        .arg(&sweep)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("test loss fell from EoS entry to the end in"));
    let rows = csv::Reader::from_path(sweep.join("seeds.csv")).unwrap().records().count();
    assert_eq!(rows, 2);
    assert!(sweep.join("seed-1/metrics.csv").is_file());
}

#[test]
fn fig1_smoke_run_fits_the_observations() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fig1");
    eosflow().args(["reproduce", "fig1", "--steps", "3000", "--out"]).arg(&out).assert().success();
    let h = header(&out.join("metrics.csv"));
    assert_eq!(&h[8..], ["test_loss", "sv2_over_sv3", "sv_1", "sv_2", "sv_3", "sv_4", "sv_5"]);
    for f in ["m.npy", "omega.npy", "w0.npy"] {
        assert!(out.join("data").join(f).is_file(), "missing data/{f}");
    }
    for f in ["overview.png", "fig1.png", "fig1.svg"] {
        assert!(out.join("figures").join(f).is_file(), "missing figures/{f}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let fit = s["problem"]["first_step_train_loss_below_1e-6"].as_u64().expect("train loss fell below 1e-6");
    assert!(fit < 3000);
    // At the fit the test loss is still ~1 (the paper's 1.12): fitting alone does not recover M.
    assert!(s["problem"]["test_loss_at_fit"].as_f64().unwrap() > 0.3);
    assert!(s["eos_entry_step"].as_u64().is_some(), "EoS is reached within 3000 steps");
}

#[test]
fn matcomp_data_from_npy_reproduces_the_run_and_bad_positions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    eosflow().args(["reproduce", "fig1", "--steps", "300", "--out"]).arg(&out).assert().success();
    let d = out.join("data");
    let cfg = dir.path().join("npy.toml");
    let write_cfg = |omega: &Path| {
        std::fs::write(
            &cfg,
            format!(
                "name = \"npy\"\n[problem]\nkind = \"matcomp_bn\"\n[data]\nm_npy = {:?}\nomega_npy = {:?}\n\
                 [init]\nw0_npy = {:?}\n[optimizer]\nkind = \"gd_wd\"\nlr = 0.1\nwd = 0.01\n[run]\nsteps = 300\n\
                 log_every = 100\n[sharpness]\nevery = 100\ntol = 1e-8\n[output]\nfigures = false\n",
                d.join("m.npy"),
                omega,
                d.join("w0.npy")
            ),
        )
        .unwrap()
    };
    write_cfg(&d.join("omega.npy"));
    let out2 = dir.path().join("b");
    eosflow().arg("run").arg(&cfg).arg("--out").arg(&out2).assert().success();
    let col = |p: &Path, c: usize| -> Vec<String> {
        csv::Reader::from_path(p.join("metrics.csv")).unwrap().records().map(|r| r.unwrap()[c].to_string()).collect()
    };
    assert_eq!(col(&out, 1), col(&out2, 1), "same M, Ω and w0 give the same train losses, bit for bit");
    assert_eq!(col(&out, 8), col(&out2, 8), "and the same test losses");

    // Ω with a repeated position (int64 N×2, written by hand).
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    let mut h = "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }".to_string().into_bytes();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(b' ');
    }
    h.push(b'\n');
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h);
    for v in [3i64, 4, 3, 4] {
        b.extend(v.to_le_bytes());
    }
    let bad = dir.path().join("omega_dup.npy");
    std::fs::write(&bad, b).unwrap();
    write_cfg(&bad);
    let o = eosflow().arg("run").arg(&cfg).arg("--out").arg(dir.path().join("c")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("(3, 4) appears twice"), "{err}");
}

#[test]
fn run_directories_carry_a_format_version_and_older_or_newer_ones_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let ckpt = "[run]\nsteps = 100\ncheckpoint_every = 50\ncheckpoint_min_interval_s = 0.0\n";
    std::fs::write(&cfg, BASE.replace("[run]\nsteps = 50\n", ckpt)).unwrap();
    let out = dir.path().join("out");
    assert!(eosflow().arg("run").arg(&cfg).arg("--out").arg(&out).output().unwrap().status.success());
    let summary = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    let s = summary(&out);
    assert_eq!(s["format_version"], 2);
    assert_eq!(s["eosflow"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["eosflow"]["git_commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(s["eosflow"]["kernels"], "portable");
    assert_eq!(s["counts"]["gradients"], 101);
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("format_version = 2"), "{config}");
    let state = std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap();
    assert!(state.contains("\"format_version\":2"), "{state}");

    // A newer format is refused by resume and plot, naming the file and version.
    std::fs::write(out.join("config.toml"), config.replace("format_version = 2", "format_version = 7")).unwrap();
    for args in [vec!["resume"], vec!["plot"]] {
        let o = eosflow().args(&args).arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("config.toml") && err.contains("format 7") && err.contains("newer eosflow"), "{err}");
    }

    // Format 0 (eosflow 0.1.0 before versions: no format key, no counts in
    // the checkpoint) is migrated: resume extends it, counting on from the
    // runner's own totals (101 gradients of steps 0..=100 … to 201).
    std::fs::write(out.join("config.toml"), config.replace("format_version = 2\n", "")).unwrap();
    let mut st: serde_json::Value = serde_json::from_str(&state).unwrap();
    st.as_object_mut().unwrap().remove("format_version");
    st["run"].as_object_mut().unwrap().remove("counts");
    std::fs::write(out.join("checkpoint/state.json"), st.to_string()).unwrap();
    let o = eosflow().args(["resume", "--steps", "200"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&out);
    assert_eq!((s["format_version"].as_u64(), s["last_step"].as_u64()), (Some(2), Some(200)));
    assert_eq!(s["counts"]["gradients"], 201);
    assert!(std::fs::read_to_string(out.join("config.toml")).unwrap().contains("format_version = 2"));
    let o = eosflow().arg("plot").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn malformed_command_lines_exit_2() {
    // A --set without `=` and an unknown preset are bad arguments (exit 2,
    // as clap's own errors), with the fix in the message.
    for (args, says) in [
        (vec!["reproduce", "fig1", "--set", "optimizer.lr"], "expected KEY=VALUE"),
        (vec!["reproduce", "fgi1"], "did you mean `fig1`"),
        (vec!["reproduce", "fig1", "--stpes", "3"], "--steps"),
    ] {
        let o = eosflow().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
