//! `eosflow flow` and the flow presets end to end: the flow directory, its
//! columns and summary, the start points (snapshots, deterministic reruns,
//! w0, a .npy) and the errors.

use assert_cmd::Command;
use std::path::Path;

fn eosflow() -> Command {
    Command::cargo_bin("eosflow").unwrap()
}

fn csv_columns(path: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let mut rd = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    let mut cols = vec![Vec::new(); header.len()];
    for rec in rd.records() {
        for (c, v) in cols.iter_mut().zip(rec.unwrap().iter()) {
            c.push(v.parse().unwrap_or(f64::NAN));
        }
    }
    (header, cols)
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn flow_toy3d_writes_the_flow_directory_and_tracks_gd_wd() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = eosflow().args(["reproduce", "flow-toy3d", "--out"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("largest relative sharpness gap"), "{stdout}");
    for f in
        ["snapshots/w_eos_entry.npy", "flow/config.toml", "flow/flow.csv", "flow/summary.json", "flow/figures/flow.png"]
    {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let (header, cols) = csv_columns(&out.join("flow/flow.csv"));
    assert_eq!(header[..6], ["tau", "sharpness", "grad_gamma_norm", "theta_x", "theta_y", "theta_z"]);
    // λ1 falls monotonically (to rounding) and ends at Γ's flattest point, 6.
    for w in cols[1].windows(2) {
        assert!(w[1] <= w[0] * (1.0 + 1e-12), "λ1 rose: {} -> {}", w[0], w[1]);
    }
    let s = summary(&out.join("flow/summary.json"));
    assert_eq!(s["time_unit"], "tau = t*eta_in (eq. 3)");
    assert_eq!(s["stop"], "tau_max");
    assert_eq!(s["start_step"], 4);
    assert!((s["sharpness_end"].as_f64().unwrap() - 6.0).abs() < 1e-6, "{}", s["sharpness_end"]);
    assert_eq!(s["third_contraction"], "exact");
    // GD+WD's 6/(1 − θ_z²) follows the flow's λ1 within 1% once τ ≥ 1
    // (η_in = 0.04 is not small: the theory's O(η_in^{1/4}) is not tiny).
    let gap = s["vs_gd_wd"]["max_relative_sharpness_gap"].as_f64().unwrap();
    assert!(gap > 0.0 && gap < 0.01, "gap {gap}");
    // The flow's τ axis is the run's steps times η_in from the EoS entry.
    let (_, gd) = (0, &cols[header.iter().position(|h| h == "gd_step").unwrap()]);
    let last = cols[0].len() - 1;
    assert!((gd[last] - (4.0 + cols[0][last] / 0.04)).abs() < 1e-9);
}

#[test]
fn flow_fig4_reaches_theta_m_like_gd_wd() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // 20000 steps: τ = 1.7 after the entry (step ~3000).
    eosflow().args(["reproduce", "flow-fig4", "--steps", "20000", "--out"]).arg(&out).assert().success();
    let s = summary(&out.join("flow/summary.json"));
    let gap = s["vs_gd_wd"]["max_relative_sharpness_gap"].as_f64().unwrap();
    // λ1(φ_t) of GD+WD against λ1(ζ(τ)), compared from τ = 0.17 on, while
    // GD+WD is still settling into the EoS (the full run: 1.7e-3 from τ = 1).
    assert!(gap < 0.02, "gap {gap}");
    let (header, cols) = csv_columns(&out.join("flow/flow.csv"));
    assert_eq!(header[..5], ["tau", "sharpness", "grad_gamma_norm", "dist_theta_m", "test_loss"]);
    let d = &cols[3];
    assert!(d[d.len() - 1] < 0.5 * d[0], "‖ζ − θ_M‖ {} -> {}", d[0], d[d.len() - 1]);
    let at_end = &s["vs_gd_wd"]["at_end"]["dist_theta_m"];
    assert_eq!(at_end["gd_wd_column"], "phi_dist_m");
    let (f, g) = (at_end["flow"].as_f64().unwrap(), at_end["gd_wd_last"].as_f64().unwrap());
    assert!((f - g).abs() < 0.05 * g, "flow {f} vs GD+WD {g}");
}

#[test]
fn flow_starts_from_snapshots_reruns_w0_and_npy_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Snapshots at steps 100 and 300 from run.save_w_at.
    eosflow()
        .args([
            "reproduce",
            "toy3d",
            "--steps",
            "400",
            "--set",
            "run.save_w_at=[100, 300]",
            "--set",
            "output.figures=false",
        ])
        .arg("--out")
        .arg(&run)
        .assert()
        .success();
    assert!(run.join("snapshots/w_step_100.npy").exists() && run.join("snapshots/w_step_300.npy").exists());
    let flow = |args: &[&str]| {
        let o = eosflow().arg("flow").arg(&run).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        summary(&run.join("flow/summary.json"))
    };
    let from_snapshot = flow(&["--start", "100", "--tau-max", "1"]);
    assert_eq!(from_snapshot["start_step"], 100);
    assert_eq!(from_snapshot["tau_end"], 1.0);
    let z_snap = std::fs::read(run.join("flow/zeta_start.npy")).unwrap();
    // Without the snapshot the step is rerun deterministically: same start.
    std::fs::remove_file(run.join("snapshots/w_step_100.npy")).unwrap();
    flow(&["--start", "100", "--tau-max", "1"]);
    assert_eq!(std::fs::read(run.join("flow/zeta_start.npy")).unwrap(), z_snap);
    let w0 = flow(&["--start", "w0", "--tau-max", "0.5"]);
    assert_eq!(w0["start_step"], 0);
    // A .npy start has no GD+WD step, hence no comparison.
    let npy = run.join("snapshots/w_step_300.npy");
    let from_npy = flow(&["--start", npy.to_str().unwrap(), "--tau-max", "0.5"]);
    assert!(from_npy["start_step"].is_null());
    assert!(from_npy["vs_gd_wd"].as_object().unwrap().is_empty());
    // Tolerances through --set.
    let tight = flow(&["--start", "100", "--tau-max", "1", "--set", "flow.tol=1e-11"]);
    assert!(tight["steps"].as_u64().unwrap() > from_snapshot["steps"].as_u64().unwrap());
}

#[test]
fn flow_errors_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    eosflow()
        .args(["reproduce", "toy3d", "--steps", "50", "--set", "output.figures=false", "--out"])
        .arg(&run)
        .assert()
        .success();
    let err = |args: &[&str]| {
        let o = eosflow().arg("flow").arg(&run).args(args).output().unwrap();
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(err(&["--start", "later"]).contains("expected eos_entry, w0, a step number or a .npy file"));
    assert!(err(&["--start", "51"]).contains("flow.step"));
    assert!(err(&["--set", "flow.tol=0"]).contains("flow.tol"));
    assert!(err(&["--set", "flow.tangent.method=\"sparse\""]).contains("dense"));
    // Spherical GD with a constant effective LR has no flow (App. B).
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "name = \"c\"\n[problem]\nkind = \"toy3d\"\n[optimizer]\nkind = \"sphere\"\nscheduler = \"constant\"\neff_lr = 0.1\n\
         [run]\nsteps = 20\n[output]\nfigures = false\n",
    )
    .unwrap();
    let run2 = dir.path().join("run2");
    eosflow().arg("run").arg(&cfg).arg("--out").arg(&run2).assert().success();
    let o = eosflow().arg("flow").arg(&run2).args(["--start", "w0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("quasi-RMSprop"), "{}", String::from_utf8_lossy(&o.stderr));
}
