//! Reliability: a run killed (SIGKILL) or interrupted (SIGINT) at a random
//! step and resumed ends with the same files, byte for byte, as a run that
//! never stopped; divergence stops with status "diverged" and keeps its rows;
//! a backend failure mid-run (injected) stops with status "error", exit 4,
//! keeps rows and checkpoint, and resumes to identical files; so does a
//! write that fails mid-run (a file-size limit standing for a full disk);
//! runs are deterministic; unwritable outputs are reported with the path.

use assert_cmd::Command;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("eosflow")
}

const LONG: &str = r#"name = "ck"
[problem]
kind = "matcomp_bn"
[optimizer]
kind = "gd_wd"
lr = 0.1
wd = 0.01
[run]
steps = 30000
log_every = 10
checkpoint_every = 1000
checkpoint_min_interval_s = 0.0
[sharpness]
every = 100
tol = 1e-8
[output]
figures = false
"#;

/// The files that must match byte for byte (summary.json differs only in
/// `timing`, checked separately).
const SAME: [&str; 3] = ["metrics.csv", "sharpness.csv", "w_final.npy"];

fn summary_without_timing(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("timing");
    v
}

fn reference(dir: &Path, cfg: &Path) -> std::path::PathBuf {
    let out = dir.join("reference");
    Command::new(bin()).arg("run").arg(cfg).arg("--out").arg(&out).assert().success();
    out
}

fn assert_same(a: &Path, b: &Path) {
    for f in SAME {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f} differs");
    }
    assert_eq!(summary_without_timing(a), summary_without_timing(b));
}

/// Starts a run, sends `signal` after `delay`, waits; returns whether the
/// signal landed before the run finished.
fn interrupt(cfg: &Path, out: &Path, signal: i32, delay: Duration) -> bool {
    let mut child = std::process::Command::new(bin())
        .arg("run")
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .arg("--force")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let status = child.wait().unwrap();
    !status.success()
}

#[test]
fn sigkill_at_a_random_step_then_resume_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ck.toml");
    std::fs::write(&cfg, LONG).unwrap();
    let reference = reference(dir.path(), &cfg);
    // A few seeded delays; each must land mid-run (after the first checkpoint).
    let mut landed = 0;
    for (i, ms) in [150u64, 330, 520].iter().enumerate() {
        let out = dir.path().join(format!("killed{i}"));
        if !interrupt(&cfg, &out, libc::SIGKILL, Duration::from_millis(*ms)) {
            continue; // finished before the kill: nothing to test with this delay
        }
        if !out.join("checkpoint/state.json").is_file() {
            // Killed before the first checkpoint: resume starts it again.
            Command::new(bin()).arg("resume").arg(&out).assert().success();
            assert_same(&reference, &out);
            continue;
        }
        landed += 1;
        assert!(!out.join("summary.json").exists(), "a killed run writes no summary");
        Command::new(bin()).arg("resume").arg(&out).assert().success();
        assert_same(&reference, &out);
    }
    assert!(landed >= 1, "no kill landed mid-run; the machine is much faster or slower than expected");
}

#[test]
fn sigint_finishes_the_step_writes_a_checkpoint_and_resume_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ck.toml");
    std::fs::write(&cfg, LONG).unwrap();
    let reference = reference(dir.path(), &cfg);
    let out = dir.path().join("interrupted");
    let mut child = std::process::Command::new(bin())
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    if status.success() {
        return; // finished within 300 ms: nothing was interrupted
    }
    assert_eq!(status.code(), Some(130));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "interrupted");
    assert!(out.join("checkpoint/state.json").is_file());
    Command::new(bin()).arg("resume").arg(&out).assert().success();
    assert_same(&reference, &out);
    // A completed run is not redone.
    let o = Command::new(bin()).arg("resume").arg(&out).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("already completed"));
}

#[test]
fn divergence_stops_with_status_diverged_and_keeps_rows() {
    let dir = tempfile::tempdir().unwrap();
    // η̂ = 1e160: the first step throws w out to ~1e160, where
    // q = x² − xy + y² overflows and the loss is NaN at step 1.
    let cfg = dir.path().join("d.toml");
    std::fs::write(
        &cfg,
        "name = \"d\"\n[problem]\nkind = \"toy3d\"\n[optimizer]\nkind = \"gd_wd\"\nlr = 1e160\nwd = 0.0\n\
         [run]\nsteps = 1000\n[sharpness]\nevery = 0\n[output]\nfigures = false\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = Command::new(bin()).arg("run").arg(&cfg).arg("--out").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "diverged");
    assert_eq!(s["step"], 1);
    assert!(s["reason"].as_str().unwrap().contains("loss is NaN"), "{s}");
    let rows = csv::Reader::from_path(out.join("metrics.csv")).unwrap().records().count();
    assert_eq!(rows, 1, "the row of step 0 is kept");
}

#[test]
fn same_config_same_bytes_whatever_the_thread_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for threads in ["1", "2"] {
        let out = dir.path().join(format!("t{threads}"));
        Command::new(bin())
            .env("RAYON_NUM_THREADS", threads)
            .args(["reproduce", "fig1", "--steps", "2000", "--out"])
            .arg(&out)
            .assert()
            .success();
        outs.push(out);
    }
    assert_same(&outs[0], &outs[1]);
    for f in ["config.toml", "data/m.npy", "data/omega.npy", "data/w0.npy", "figures/fig1.png", "figures/fig1.svg"] {
        assert!(std::fs::read(outs[0].join(f)).unwrap() == std::fs::read(outs[1].join(f)).unwrap(), "{f} differs");
    }
}

#[test]
fn unwritable_output_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a_file");
    std::fs::write(&file, "x").unwrap();
    let o = Command::new(bin()).args(["reproduce", "toy3d", "--out"]).arg(file.join("sub")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a_file/sub") && err.contains("cannot create output directory"), "{err}");
}

#[test]
fn resume_before_the_first_checkpoint_starts_again_and_a_finished_run_says_so() {
    // A run stopped before its first checkpoint (here: its summary and
    // outputs removed but the config and a partial metrics.csv left) is
    // started again from step 0, to the files of a run that never stopped.
    let dir = tempfile::tempdir().unwrap();
    let sets = ["--set", "output.figures=false"];
    let reference = dir.path().join("reference");
    Command::new(bin()).args(["reproduce", "toy3d"]).args(sets).arg("--out").arg(&reference).assert().success();
    let out = dir.path().join("stopped");
    Command::new(bin()).args(["reproduce", "toy3d"]).args(sets).arg("--out").arg(&out).assert().success();
    std::fs::remove_file(out.join("summary.json")).unwrap();
    std::fs::remove_file(out.join("w_final.npy")).unwrap();
    let metrics = std::fs::read(out.join("metrics.csv")).unwrap();
    std::fs::write(out.join("metrics.csv"), &metrics[..metrics.len() / 3]).unwrap();
    let o = Command::new(bin()).arg("resume").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("starting it again from step 0"));
    assert_same(&reference, &out);
    // Resuming a finished run with the --steps it already has explains itself.
    let o = Command::new(bin()).arg("resume").arg(&out).args(["--steps", "3000"]).output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("already completed at step 3000") && text.contains("pass more than 3000"), "{text}");
}

#[test]
fn a_backend_failure_mid_run_ends_with_status_error_and_resumes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("e.toml");
    std::fs::write(&cfg, LONG.replace("steps = 30000", "steps = 3000")).unwrap();
    let reference = reference(dir.path(), &cfg);
    // The 2500th gradient (step 2499) fails as a device error would.
    let out = dir.path().join("out");
    let o = Command::new(bin())
        .env("EOSFLOW_FAULT_INJECTION", "gradient:2500")
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("ERROR at step 2499 in the gradient: injected fault"), "{stdout}");
    let s = summary_without_timing(&out);
    assert_eq!(
        (s["status"].as_str(), s["step"].as_u64(), s["op"].as_str()),
        (Some("error"), Some(2499), Some("gradient"))
    );
    assert!(s["message"].as_str().unwrap().contains("injected fault"), "{s}");
    // Rows of steps 0, 10, …, 2490 are kept, and the checkpoint of step 2000.
    let rows = csv::Reader::from_path(out.join("metrics.csv")).unwrap().records().count();
    assert_eq!(rows, 250);
    assert!(out.join("checkpoint/state.json").is_file());
    // Resuming (the fault gone) ends with the files of a run that never failed.
    Command::new(bin()).arg("resume").arg(&out).assert().success();
    assert_same(&reference, &out);

    // An HVP failing inside a sharpness evaluation: the same status, naming it.
    let out2 = dir.path().join("out2");
    let o = Command::new(bin())
        .env("EOSFLOW_FAULT_INJECTION", "hvp:60")
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let s = summary_without_timing(&out2);
    assert_eq!((s["status"].as_str(), s["op"].as_str()), (Some("error"), Some("hvp")));
    assert!(s["step"].as_u64().unwrap() > 0, "the first evaluation used fewer than 60 HVPs: {s}");
}

#[test]
fn a_run_with_its_flow_in_lockstep_resumes_to_identical_files() {
    // fig4 with the flow beside GD+WD from the EoS entry (step 3000) and the
    // RMS-drift variables ([drift]) and the per-block spectrum
    // ([spectrum], spectrum.csv): stop at step 4500 with checkpoints
    // every 500 steps, extend to 8000 by resume, and compare with one
    // uninterrupted run of 8000 steps.
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        "--set",
        "drift.k_every=100",
        "--set",
        "spectrum.every=1000",
        "--set",
        "run.checkpoint_every=500",
        "--set",
        "run.checkpoint_min_interval_s=0",
        "--set",
        "output.figures=false",
    ];
    let reference = dir.path().join("reference");
    Command::new(bin())
        .args(["reproduce", "fig4", "--steps", "8000"])
        .args(sets)
        .arg("--out")
        .arg(&reference)
        .assert()
        .success();
    let out = dir.path().join("resumed");
    Command::new(bin())
        .args(["reproduce", "fig4", "--steps", "4500"])
        .args(sets)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    Command::new(bin()).arg("resume").arg(&out).args(["--steps", "8000"]).assert().success();
    assert_same(&reference, &out);
    let s = summary_without_timing(&out);
    assert_eq!(s["problem"]["lockstep"]["eos_entry_step"], 3000);
    assert!(s["problem"]["lockstep"]["flow_steps"].as_u64().unwrap() > 0);
    for f in ["drift_cycles.csv", "drift.json", "spectrum.csv"] {
        assert!(std::fs::read(reference.join(f)).unwrap() == std::fs::read(out.join(f)).unwrap(), "{f} differs");
    }
    // Steps 0, 1000, …, 8000: each evaluation once, none lost or repeated
    // across the resume (4500 is the interrupted run's last step, written
    // there and truncated away on resume).
    let text = std::fs::read_to_string(out.join("spectrum.csv")).unwrap();
    let steps: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(steps, ["0", "1000", "2000", "3000", "4000", "5000", "6000", "7000", "8000"]);
}

#[test]
fn a_write_that_fails_mid_run_ends_it_with_an_error_and_resume_finishes_it() {
    // A 32 KiB file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so that
    // the write returns EFBIG instead of killing the process) stands for a
    // full disk: metrics.csv hits it near step 130 of toy3d's 3000.
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        "--set",
        "run.checkpoint_every=100",
        "--set",
        "run.checkpoint_min_interval_s=0",
        "--set",
        "output.figures=false",
    ];
    let reference = dir.path().join("reference");
    Command::new(bin()).args(["reproduce", "toy3d"]).args(sets).arg("--out").arg(&reference).assert().success();
    let out = dir.path().join("limited");
    let o = Command::new("bash")
        .args(["-c", "trap '' XFSZ; ulimit -f 32; exec \"$0\" \"$@\""])
        .arg(bin())
        .args(["reproduce", "toy3d"])
        .args(sets)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("eosflow resume"), "the message says how to go on: {stdout}");
    let s = summary_without_timing(&out);
    assert_eq!((s["status"].as_str(), s["op"].as_str()), (Some("error"), Some("output")));
    assert!(s["message"].as_str().unwrap().contains("metrics.csv"), "names the file: {s}");
    let step = s["step"].as_u64().unwrap();
    assert!(step > 100 && step < 3000, "failed at step {step}, after a checkpoint");
    assert!(out.join("checkpoint/state.json").is_file() && out.join("w_final.npy").is_file());
    // With the limit lifted, resume finishes the run to the same bytes as
    // one that never failed.
    Command::new(bin()).arg("resume").arg(&out).assert().success();
    assert_same(&reference, &out);
}

#[test]
fn every_problem_kind_resumes_to_a_byte_identical_run_and_summary() {
    // A backend failure injected at a fixed gradient stops each kind's run
    // mid-way (status "error", the last checkpoint kept); resumed, every file
    // and summary.json (less timing: the trackers' saved state included) are
    // those of the run that never stopped. matcomp_bn is the tests above.
    let factorization = "name = \"fz\"\n[problem]\nkind = \"factorization\"\nk = 5\ninit_scale = 2.0\n\
                         [optimizer]\nkind = \"scalar_rmsprop\"\neta = 0.05\nbeta = 0.99\nv0 = 1.0\n\
                         [run]\nsteps = 3000\nlog_every = 10\n[sharpness]\nevery = 100\n";
    let dir = tempfile::tempdir().unwrap();
    let fz = dir.path().join("fz.toml");
    std::fs::write(&fz, factorization).unwrap();
    let cases: [(&str, Vec<String>, &str); 4] = [
        ("toy3d", vec!["reproduce".into(), "toy3d".into()], "gradient:2000"),
        ("linreg_bn", vec!["reproduce".into(), "fig4".into(), "--steps".into(), "20000".into()], "gradient:15000"),
        ("factorization", vec!["run".into(), fz.display().to_string()], "gradient:2500"),
        ("nn", vec!["reproduce".into(), "digits-mlp".into(), "--steps".into(), "120".into()], "gradient:100"),
    ];
    for (kind, args, fault) in cases {
        let every = format!("run.checkpoint_every={}", if kind == "nn" { 30 } else { 500 });
        let sets = ["--set", &every, "--set", "run.checkpoint_min_interval_s=0", "--set", "output.figures=false"];
        let reference = dir.path().join(format!("{kind}-ref"));
        Command::new(bin()).args(&args).args(sets).arg("--out").arg(&reference).assert().success();
        let out = dir.path().join(kind);
        let o = Command::new(bin())
            .env("EOSFLOW_FAULT_INJECTION", fault)
            .args(&args)
            .args(sets)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(4), "{kind}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(summary_without_timing(&out)["status"], "error", "{kind}");
        Command::new(bin()).arg("resume").arg(&out).assert().success();
        for f in SAME {
            assert!(
                std::fs::read(reference.join(f)).unwrap() == std::fs::read(out.join(f)).unwrap(),
                "{kind}: {f} differs"
            );
        }
        assert_eq!(summary_without_timing(&reference), summary_without_timing(&out), "{kind}: summary.json");
    }
}
