//! `eosflow spectrum` end to end: the files, the top eigenvalue against the
//! run's own sharpness, and per-layer blocks on a network (Cauchy
//! interlacing); `[spectrum]` along a run; `eosflow bound` (Thm C.2).

use assert_cmd::Command;

fn eosflow() -> Command {
    Command::cargo_bin("eosflow").unwrap()
}

fn rows(path: &std::path::Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut rd = csv::Reader::from_path(path).unwrap();
    let h: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    rd.records().map(|r| h.iter().cloned().zip(r.unwrap().iter().map(String::from)).collect()).collect()
}

#[test]
fn spectrum_of_a_run_matches_its_sharpness_and_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("toy3d");
    eosflow().args(["reproduce", "toy3d", "--set", "output.figures=false", "--out"]).arg(&run).assert().success();
    eosflow().arg("spectrum").arg(&run).args(["--k", "2", "--set", "output.formats=[\"png\"]"]).assert().success();
    for f in ["eigen.csv", "trace.json", "density.csv", "blocks.csv", "summary.json", "figures/spectrum.png"] {
        assert!(run.join("spectrum").join(f).exists(), "{f} missing");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("spectrum/summary.json")).unwrap()).unwrap();
    let run_s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    // The run's last sharpness evaluation is at w_final, in the same units.
    let (top, sharp) = (s["top"][0].as_f64().unwrap(), run_s["final_sharpness"].as_f64().unwrap());
    assert!((top / sharp - 1.0).abs() < 1e-9, "{top} vs {sharp}");
    assert_eq!(s["spherical_units"], true);
    // The density integrates to 1 and its support reaches the top eigenvalue.
    let d = rows(&run.join("spectrum/density.csv"));
    let x: Vec<f64> = d.iter().map(|r| r["eigenvalue"].parse().unwrap()).collect();
    let y: Vec<f64> = d.iter().map(|r| r["density"].parse().unwrap()).collect();
    let integral: f64 = y.iter().sum::<f64>() * (x[1] - x[0]);
    assert!((integral - 1.0).abs() < 1e-3, "∫ = {integral}");
    assert!((s["density"]["support"][1].as_f64().unwrap() / top - 1.0).abs() < 1e-9);
    // Bad blocks are errors naming the option.
    let o = eosflow().arg("spectrum").arg(&run).args(["--blocks", "layers"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("blocks = layers: the toy3d problem has no parameter blocks"));
}

#[test]
fn per_layer_blocks_of_a_network_interlace_with_the_whole_hessian() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    eosflow()
        .args(["spectrum", "digits-mlp", "--blocks", "layers", "--k", "1", "--probes", "2", "--steps", "10"])
        .args(["--trace-probes", "12", "--set", "output.formats=[\"png\"]", "--out"])
        .arg(&out)
        .assert()
        .success();
    let b = rows(&out.join("blocks.csv"));
    assert_eq!(b[0]["block"], "all");
    assert!(b.len() >= 3, "{} blocks", b.len());
    let top = |r: &std::collections::HashMap<String, String>| r["top"].parse::<f64>().unwrap();
    let bottom = |r: &std::collections::HashMap<String, String>| r["bottom"].parse::<f64>().unwrap();
    // Cauchy interlacing for principal sub-blocks (Lanczos tolerance slack).
    for r in &b[1..] {
        assert!(top(r) <= top(&b[0]) * (1.0 + 1e-8), "{}: {} > {}", r["block"], top(r), top(&b[0]));
        assert!(bottom(r) >= bottom(&b[0]) - 1e-8 * top(&b[0]).abs(), "{}", r["block"]);
        assert!(!r["eff_lr"].is_empty(), "per-layer effective LR");
    }
    let sizes: usize = b[1..].iter().map(|r| r["size"].parse::<usize>().unwrap()).sum();
    assert_eq!(sizes, b[0]["size"].parse::<usize>().unwrap(), "the layers cover w");
}

#[test]
fn spectrum_along_training_matches_the_runs_sharpness_and_refuses_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("fig4");
    eosflow()
        .args(["reproduce", "fig4", "--steps", "300", "--set", "sharpness.every=100", "--set", "spectrum.every=100"])
        .args(["--set", "output.formats=[\"png\"]", "--out"])
        .arg(&run)
        .assert()
        .success();
    let header: Vec<String> =
        csv::Reader::from_path(run.join("spectrum.csv")).unwrap().headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "step",
            "block",
            "size",
            "w_norm2",
            "top",
            "top_times_w_norm2",
            "residual",
            "converged",
            "trace",
            "trace_std_error",
            "hvps"
        ]
    );
    let spec = rows(&run.join("spectrum.csv"));
    let sharp = rows(&run.join("sharpness.csv"));
    assert_eq!(spec.len(), 4, "steps 0, 100, 200, 300, one block (all)");
    for (a, b) in spec.iter().zip(&sharp) {
        assert_eq!(a["step"], b["step"]);
        // Both in spherical units, both Lanczos to [sharpness]'s tolerance
        // (1e-10 relative): warm- and cold-started, they agree to ~1e-9.
        let (x, y): (f64, f64) = (a["top_times_w_norm2"].parse().unwrap(), b["sharpness"].parse().unwrap());
        assert!((x / y - 1.0).abs() < 1e-8, "step {}: {x} vs {y}", a["step"]);
        assert!(!a["trace"].is_empty() && a["trace_std_error"].parse::<f64>().unwrap() >= 0.0);
    }
    assert!(run.join("figures/spectrum_blocks.png").exists());
    // Bad keys name themselves and say how to fix them.
    for (set, says) in [
        ("spectrum.trace_probes=4", "multiple of 3"),
        ("spectrum.blocks=\"layers\"", "no parameter blocks"),
        ("spectrum.every=0", "spectrum.every"),
    ] {
        let o = eosflow()
            .args(["reproduce", "fig4", "--steps", "10", "--set", "spectrum.every=5", "--set", set, "--out"])
            .arg(dir.path().join("bad"))
            .args(["--force"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{set}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn the_bound_prints_each_term_and_says_when_it_is_not_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("fig4");
    eosflow()
        .args(["reproduce", "fig4", "--steps", "200", "--set", "output.figures=false", "--out"])
        .arg(&run)
        .assert()
        .success();
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    // linreg_bn's loss is unbounded over its Gaussian population: vacuous.
    let o = eosflow().arg("bound").arg(&run).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("vacuous") && text.contains("unbounded"), "{text}");
    // With ℓ_max and ρ3 supplied the terms are Thm C.2's formula of the
    // inputs it reports (λ1 at w_final, n = 20, D = 40 for fig4).
    let out = dir.path().join("b");
    eosflow()
        .arg("bound")
        .arg(&run)
        .args(["--l-max", "1", "--rho3", "2", "--sigma", "0.05", "--delta", "0.1", "--out"])
        .arg(&out)
        .assert()
        .success();
    let b = read(&out.join("bound.json"));
    let i = &b["inputs"];
    let (l1, n, d) = (i["sharpness"].as_f64().unwrap(), i["n"].as_f64().unwrap(), i["dim"].as_f64().unwrap());
    assert_eq!(i["rho3"]["kind"], "supplied");
    let run_s = read(&run.join("summary.json"));
    assert!((l1 / run_s["final_sharpness"].as_f64().unwrap() - 1.0).abs() < 1e-8, "λ1 is the run's sharpness");
    let s: f64 = 0.05;
    let want = [
        ("sharpness_term", s * s * l1 / 2.0),
        ("third_order_term", 16.0 * s.powi(3) * 2.0 * (1.0 + (n.ln() / d).powf(1.5)) / 3.0),
        ("complexity_term", ((d / (s * s) + 2.0 * (n / 0.1).ln()) / (n - 1.0)).sqrt()),
    ];
    for (k, v) in want {
        let got = b["terms"][k].as_f64().unwrap();
        assert!((got - v).abs() <= 1e-13 * v.abs(), "{k}: {got} vs {v}");
    }
    // 40 parameters and 20 examples: n − 1 ≤ 4D, vacuous at every σ.
    assert_eq!(b["terms"]["verdict"]["verdict"], "vacuous");
    assert!(b["terms"]["verdict"]["reason"].as_str().unwrap().contains("4D"));
    // Without --rho3 the estimate is a lower value and says so.
    let out2 = dir.path().join("b2");
    eosflow().arg("bound").arg(&run).args(["--l-max", "1", "--out"]).arg(&out2).assert().success();
    let b2 = read(&out2.join("bound.json"));
    assert_eq!(b2["inputs"]["rho3"]["kind"], "lower_estimate");
    assert!(b2["rho3_estimate"]["contractions"].as_u64().unwrap() > 0);
    assert!(b2["terms"]["sigma"].as_f64().unwrap() <= b2["terms"]["sigma_max"].as_f64().unwrap());
    // No training set, or σ outside the theorem: a clear error, no panic.
    for args in [vec!["toy3d"], vec![run.to_str().unwrap(), "--sigma", "0.9"]] {
        let o = eosflow().arg("bound").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && !err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains("training set") || err.contains("σ_max"), "{err}");
    }
}
