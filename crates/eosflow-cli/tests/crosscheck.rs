//! Cross-checks against the independent numpy reference in `crosscheck/`.
//! `.ci/run` installs numpy; elsewhere, without numpy, the test says so and
//! passes only outside CI (CI=true makes a missing numpy a failure).

use assert_cmd::Command;
use std::path::Path;

fn python_has(modules: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// True when python3 can import `modules`; otherwise fails under CI=true and
/// says SKIPPED elsewhere.
fn require(modules: &str, install: &str) -> bool {
    if python_has(modules) {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("python3 with {modules} is required in CI: see .ci/run ({install})");
    }
    eprintln!("SKIPPED: python3 cannot import {modules}; `{install}` to run the cross-check");
    false
}

/// Runs `crosscheck/<script>` on a run directory (extra arguments after it)
/// and asserts that it passed.
fn check_reference(script: &str, run: &Path, args: &[&str], what: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crosscheck").join(script);
    let o = std::process::Command::new("python3").arg(path).arg(run).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{what} reference disagrees:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
}

/// `eosflow run` on a config given as text, into `dir/run`.
fn run_config(dir: &Path, toml: &str) -> std::path::PathBuf {
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = dir.join("run");
    Command::cargo_bin("eosflow").unwrap().arg("run").arg(&cfg).arg("--out").arg(&out).assert().success();
    out
}

fn require_numpy() -> bool {
    require("numpy, tomllib", "pip install numpy")
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
    check_reference("linreg_bn.py", &out, &["1000"], "numpy");
}

#[test]
fn matcomp_bn_matches_numpy_and_jax_over_1000_steps() {
    if !require("numpy, scipy, jax, tomllib", "pip install numpy scipy jax[cpu]") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run_config(
        dir.path(),
        "name = \"cc\"\n[problem]\nkind = \"matcomp_bn\"\n[optimizer]\nkind = \"gd_wd\"\nlr = 0.1\nwd = 0.01\n\
         [run]\nsteps = 1000\nlog_every = 1\n[sharpness]\nevery = 500\ntol = 1e-12\n[output]\nfigures = false\n",
    );
    check_reference("matcomp_bn.py", &out, &["1000"], "numpy/JAX");
}

#[test]
fn si_mlp_with_ghost_bn_matches_jax_over_100_steps() {
    if !require("numpy, scipy, jax, tomllib", "pip install numpy scipy jax[cpu]") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 200 digits in two ghost batches of 100; Swish MLP 64-16-16-10.
    let out = run_config(
        dir.path(),
        "name = \"cc\"\n[problem]\nkind = \"nn\"\narch = \"si-mlp\"\nhidden = [16, 16]\ntrain_per_class = 20\n\
         ghost_batch = 100\nhessian_examples = 0\n[optimizer]\nkind = \"gd_wd\"\nlr = 0.01\nwd = 0.05\n\
         [run]\nsteps = 100\nlog_every = 1\n[sharpness]\nevery = 100\ntol = 1e-12\n[output]\nfigures = false\n",
    );
    check_reference("nn.py", &out, &[], "JAX");
}

#[test]
fn si_vgg_with_ghost_bn_matches_jax_over_60_steps() {
    if !require("numpy, scipy, jax, tomllib", "pip install numpy scipy jax[cpu]") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 200 digits in two ghost batches of 100; SI VGG-style CNN 4-M-8-M on
    // 1×8×8: the tiled convolution, the fused BN/Swish ops and (through the
    // sharpness) the one-pass conv tangent against JAX's conv and autodiff.
    let out = run_config(
        dir.path(),
        "name = \"cc\"\n[problem]\nkind = \"nn\"\narch = \"si-vgg\"\nvgg = \"4 M 8 M\"\ntrain_per_class = 20\n\
         ghost_batch = 100\nhessian_examples = 0\n[optimizer]\nkind = \"gd_wd\"\nlr = 0.01\nwd = 0.05\n\
         [run]\nsteps = 60\nlog_every = 1\n[sharpness]\nevery = 60\ntol = 1e-12\n[output]\nfigures = false\n",
    );
    check_reference("nn.py", &out, &[], "JAX");
}

#[test]
fn rms_drift_variables_and_periods_match_the_scipy_reference() {
    // fig5's linreg_bn run (8,000 steps): h, u, K and E of eqs. (16)–(17)
    // from Lemma O.1's closed forms, and each cycle's period by
    // scipy.integrate.quad (crosscheck/rms_drift.py).
    if !require("numpy, scipy, tomllib", "pip install numpy scipy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fig5");
    Command::cargo_bin("eosflow")
        .unwrap()
        .args(["reproduce", "fig5", "--steps", "8000", "--set", "output.figures=false", "--out"])
        .arg(&out)
        .assert()
        .success();
    check_reference("rms_drift.py", &out.join("linreg_bn"), &[], "RMS drift");
}
