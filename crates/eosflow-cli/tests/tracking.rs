//! `[tracking]` (Thm 4.6 as an experiment) end to end: the files, the
//! table's columns and rows, the fitted exponent, and the errors.

use assert_cmd::Command;

fn eosflow() -> Command {
    Command::cargo_bin("eosflow").unwrap()
}

fn config(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(name)
}

#[test]
fn a_tracking_config_writes_its_table_traces_fits_and_figure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t");
    let o = eosflow()
        .arg("run")
        .arg(config("tracking-toy3d.toml"))
        .args(["--out"])
        .arg(&out)
        .args(["--set", "tracking.eta_in=[1e-2, 1e-3, 1e-4]", "--set", "tracking.seeds=[0, 1]"])
        .args(["--set", "tracking.tau_end=1.0", "--set", "output.formats=[\"png\"]"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in
        ["tracking.csv", "traces.csv", "summary.json", "figures/tracking.png", "toy3d/config.toml", "toy3d/zeta0.npy"]
    {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let mut rd = csv::Reader::from_path(out.join("tracking.csv")).unwrap();
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..7], ["problem", "eta_in", "seed", "steps", "max_dist", "max_phi_dist", "final_dist"]);
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 6, "3 rates × 2 seeds");
    // τ = T = 1 is T/η_in steps.
    for r in &rows {
        let eta: f64 = r[1].parse().unwrap();
        let steps: f64 = r[3].parse().unwrap();
        assert_eq!(steps, (1.0 / eta).round());
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let p = &s["problems"]["toy3d"];
    assert_eq!(p["zeta0"], "eos_entry (step 4)");
    assert_eq!(p["sigma0"], "sigma0 = 0.1*sqrt(eta_in)");
    assert_eq!(p["time_unit"], "tau = t*eta_in (eq. 3)");
    // Remark 4.7's O(η_in^{1/2}) oscillation, well inside Thm 4.6's 1/4.
    let e = p["max_dist"]["exponent_median_over_seeds"].as_f64().unwrap();
    assert!(e > 0.4 && e < 0.6, "exponent {e}");
    assert!(p["max_dist_follows"].as_str().unwrap().starts_with("eta_in^0.5"));
    let medians: Vec<f64> = p["max_dist"]["medians"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(medians.windows(2).all(|w| w[1] < w[0]), "{medians:?}");
    // `eosflow plot` redraws the figure from the tables, byte for byte.
    let png = std::fs::read(out.join("figures/tracking.png")).unwrap();
    std::fs::remove_file(out.join("figures/tracking.png")).unwrap();
    eosflow().arg("plot").arg(&out).assert().success();
    assert!(std::fs::read(out.join("figures/tracking.png")).unwrap() == png, "replotted figure differs");
}

#[test]
fn tracking_config_errors_name_the_key() {
    let cases: &[(&[&str], &str)] = &[
        (&["tracking.eta_in=[0.3]"], "η_in = η̂λ̂ < 1/4"),
        (&["tracking.eta=[0.01]"], "tracking.eta does not apply to optimizer.kind = \"gd_wd\""),
        (&["tracking.eta_in=[]"], "needs tracking.eta_in"),
        (&["tracking.eta_in=[1e-9]"], "steps (at most"),
        (&["tracking.zeta0=\"middle\""], "tracking.zeta0"),
        (&["tracking.seeds=[]"], "tracking.seeds is empty"),
    ];
    for (sets, msg) in cases {
        let mut cmd = eosflow();
        cmd.arg("run").arg(config("tracking-toy3d.toml")).args(["--out", "/nonexistent/never"]);
        for s in *sets {
            cmd.args(["--set", s]);
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{sets:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(msg), "{sets:?}: {err}");
    }
}

#[test]
fn scalar_rmsprop_follows_its_full_space_flow_closer_as_eta_falls() {
    // Cor. B.14 on ½(uᵀv − 1)²: ‖w_t − ζ(tη²)‖ = O(η^{1/2}) (Thm B.13), the
    // oscillation x = η·h itself O(η); the full preset fits 0.98.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = eosflow()
        .arg("run")
        .arg(config("tracking-factorization.toml"))
        .args(["--out"])
        .arg(&out)
        .args(["--set", "tracking.eta=[1e-1, 1e-2, 1e-3]", "--set", "tracking.seeds=[0, 1, 2]"])
        .args(["--set", "tracking.tau_end=1.0", "--set", "output.formats=[\"png\"]"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let p = &s["problems"]["factorization"];
    assert_eq!(p["time_unit"], "tau = t*eta^2 (eq. 8)");
    assert_eq!(p["optimizer"], "scalar_rmsprop");
    let medians: Vec<f64> = p["max_dist"]["medians"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(medians.windows(2).all(|w| w[1] < w[0]), "{medians:?}");
    let e = p["max_dist"]["exponent_median_over_seeds"].as_f64().unwrap();
    assert!(e > 0.6, "max_dist ∝ η^{e}: slower than the oscillation's η^1");
    let mut rd = csv::Reader::from_path(out.join("tracking.csv")).unwrap();
    assert_eq!(&rd.headers().unwrap()[1], "eta");
    // τ = T = 1 is T/η² steps.
    for r in rd.records() {
        let r = r.unwrap();
        let eta: f64 = r[1].parse().unwrap();
        assert_eq!(r[3].parse::<f64>().unwrap(), (1.0 / (eta * eta)).round());
    }
}

#[test]
fn the_eos_entry_experiment_writes_its_table_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e");
    let o = eosflow()
        .arg("run")
        .arg(config("entry-linreg.toml"))
        .args(["--out"])
        .arg(&out)
        .args(["--set", "entry.eta_in=[1e-2, 1e-3, 1e-4]", "--set", "entry.seeds=[0, 1]"])
        .args(["--set", "output.formats=[\"png\"]"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["entry.csv", "summary.json", "figures/entry.png", "linreg_bn/theta_star.npy"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let p = &s["problems"]["linreg_bn"];
    assert_eq!(p["entered"], 6);
    assert_eq!(p["entries_below_the_lower_bound"], 0);
    assert_eq!(p["runs_with_loss_rises_before_entry"], 0);
    let gap: Vec<f64> = p["gap"]["medians"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(gap.windows(2).all(|w| w[1] < w[0]), "{gap:?}");
    let mut rd = csv::Reader::from_path(out.join("entry.csv")).unwrap();
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..4], ["problem", "eta_in", "seed", "entry_step"]);
    assert_eq!(rd.records().count(), 6);
    let png = std::fs::read(out.join("figures/entry.png")).unwrap();
    eosflow().arg("plot").arg(&out).assert().success();
    assert!(std::fs::read(out.join("figures/entry.png")).unwrap() == png, "replotted figure differs");
    // The run must start in the stable regime.
    let o = eosflow()
        .arg("run")
        .arg(config("entry-linreg.toml"))
        .args(["--out", "/nonexistent/never", "--set", "entry.stable_fraction=1.5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("entry.stable_fraction = 1.5 must be in (0, 1)"));
}
