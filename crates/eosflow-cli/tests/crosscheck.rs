//! Cross-checks against the independent numpy reference in `crosscheck/`.
//! `.ci/run` installs numpy; elsewhere, without numpy, the test says so and
//! passes only outside CI (CI=true makes a missing numpy a failure).

use assert_cmd::Command;
use std::path::Path;

fn numpy_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import numpy, tomllib"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn require_numpy() -> bool {
    if numpy_available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("python3 with numpy is required in CI: see .ci/run (pip install numpy)");
    }
    eprintln!("SKIPPED: python3 with numpy not found; `pip install numpy` to run the cross-check");
    false
}

#[test]
fn linreg_bn_matches_the_numpy_reference_over_1000_steps() {
    if !require_numpy() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fig4");
    Command::cargo_bin("eosflow")
        .unwrap()
        .args(["reproduce", "fig4", "--steps", "1000", "--out"])
        .arg(&out)
        .assert()
        .success();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crosscheck/linreg_bn.py");
    let o = std::process::Command::new("python3").arg(script).arg(&out).arg("1000").output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "numpy reference disagrees:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
}
