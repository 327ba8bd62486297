//! `[drift]` and the fig5 preset end to end: the RMS-drift columns, the
//! period-2 sign of h_t, the cycles against (17) and the fixed point.

use assert_cmd::Command;

#[test]
fn fig5_measures_the_rms_drift_and_its_hamiltonian() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f5");
    let o = Command::cargo_bin("eosflow")
        .unwrap()
        .args(["reproduce", "fig5", "--steps", "8000", "--set", "output.formats=[\"png\"]", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("RMS drift (η = 0.0141, C_b = 2)"), "{stdout}");
    for run in ["linreg_bn", "toy3d"] {
        for f in ["drift_cycles.csv", "drift.json", "figures/fig5.png", "figures/overview.png"] {
            assert!(out.join(run).join(f).exists(), "{run}/{f} missing");
        }
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(run).join("drift.json")).unwrap()).unwrap();
        // Measured periods against T(E) of (17) at each cycle's energy
        // (measured: median 1.7e-3 and 2.4e-3 relative; O(η) corrections).
        let med = s["period_rel_error"]["median"].as_f64().unwrap();
        assert!(med.abs() < 1e-2, "{run}: period error {med}");
        assert!(s["valid_cycles"].as_u64().unwrap() >= 8, "{run}: {}", s["valid_cycles"]);
        // Lemma N.2: 2K²⟨h²⟩ = C_b over whole cycles, whatever the energy.
        let late = &s["late"];
        let (m, p) = (late["measured_rms_h"].as_f64().unwrap(), late["predicted_rms_h"].as_f64().unwrap());
        assert!((m / p - 1.0).abs() < 0.02, "{run}: RMS h {m} vs {p}");
        let (m, p) = (late["measured_train_loss"].as_f64().unwrap(), late["predicted_train_loss"].as_f64().unwrap());
        assert!((m / p - 1.0).abs() < 0.02, "{run}: train loss {m} vs {p}");
        // The energy relaxes towards the fixed point's.
        let e = &s["energy"];
        assert!(e["last_valid_cycle"].as_f64().unwrap() < e["first_valid_cycle"].as_f64().unwrap());
    }
    // h_t alternates sign at every step in EoS on linreg_bn (from the first
    // cycle on), and the drift columns are in metrics.csv.
    let mut rd = csv::Reader::from_path(out.join("linreg_bn/metrics.csv")).unwrap();
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap_or_else(|| panic!("no column {n}"));
    let (ih, iu, ie) = (col("drift_h"), col("drift_u"), col("drift_energy"));
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    let hs: Vec<f64> = rows[4000..].iter().map(|r| r[ih].parse().unwrap()).collect();
    assert!(hs.windows(2).all(|w| w[0] * w[1] < 0.0), "h_t did not alternate sign after step 4000");
    assert!(rows.iter().all(|r| !r[iu].is_empty() && !r[ie].is_empty()));
}
