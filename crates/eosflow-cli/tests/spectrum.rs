//! `eosflow spectrum` end to end: the files, the top eigenvalue against the
//! run's own sharpness, and per-layer blocks on a network (Cauchy
//! interlacing).

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
    assert!(String::from_utf8_lossy(&o.stderr).contains("--blocks layers: the toy3d problem has no parameter blocks"));
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
