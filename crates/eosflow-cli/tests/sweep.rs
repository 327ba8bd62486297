//! `eosflow sweep`: expansion into a plan, the local backend, and the Slurm
//! backend against stub `sbatch` / `scontrol` scripts on PATH (so no Slurm is
//! needed here; `.ci/slurm.sh` runs the same against a real single-node
//! Slurm). A sweep started again skips finished runs and resumes the others,
//! and every run ends byte-identical to the same sweep run locally.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("eosflow")
}

/// matcomp_bn, 3000 steps, a checkpoint every 1000: fault injection at the
/// 2500th gradient stops it at step 2499 with the checkpoint of step 2000.
const BASE: &str = r#"name = "base"
[problem]
kind = "matcomp_bn"
d = 20
n_obs = 150
[optimizer]
kind = "gd_wd"
lr = 0.1
wd = 0.01
[run]
steps = 3000
log_every = 10
checkpoint_every = 1000
checkpoint_min_interval_s = 0.0
[sharpness]
every = 100
tol = 1e-8
[output]
formats = ["png"]
"#;

const SWEEP: &str = r#"name = "wd"
config = "base.toml"
[grid]
"optimizer.wd" = [0.01, 0.02]
"problem.seed" = [0, 1]
"#;

const RUNS: [&str; 4] = ["wd0.01_seed0", "wd0.01_seed1", "wd0.02_seed0", "wd0.02_seed1"];
const SAME: [&str; 3] = ["metrics.csv", "sharpness.csv", "w_final.npy"];

fn setup(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("base.toml"), BASE).unwrap();
    let f = dir.join("wd.toml");
    std::fs::write(&f, SWEEP).unwrap();
    f
}

fn summary_without_timing(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("timing");
    v
}

fn assert_same_runs(a: &Path, b: &Path) {
    for run in RUNS {
        for f in SAME {
            let (x, y) = (a.join(run).join(f), b.join(run).join(f));
            assert!(
                std::fs::read(&x).unwrap() == std::fs::read(&y).unwrap(),
                "{} differs from {}",
                y.display(),
                x.display()
            );
        }
        assert_eq!(summary_without_timing(&a.join(run)), summary_without_timing(&b.join(run)), "{run}");
    }
}

/// Stub `sbatch` (records its arguments and the array, then runs each
/// array task of the script one after the other, its output into the log
/// the script names) and `scontrol` (every task COMPLETED).
fn stubs(dir: &Path) -> PathBuf {
    let bin_dir = dir.join("stub-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let sbatch = r#"#!/bin/bash
set -eu
here=$(dirname "$0")
echo "$*" >> "$here/sbatch.args"
script="${@: -1}"
spec=$(sed -n 's/^#SBATCH --array=//p' "$script")
echo "$spec" >> "$here/sbatch.arrays"
log=$(sed -n 's/^#SBATCH --output=//p' "$script")
for part in ${spec//,/ }; do
  if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
done | while read -r i; do
  SLURM_ARRAY_TASK_ID=$i bash "$script" >> "${log//%a/$i}" 2>&1 || true
done
echo "4242"
"#;
    let scontrol = "#!/bin/bash\necho \"JobId=4242 ArrayJobId=4242 ArrayTaskId=0-3 JobState=COMPLETED Reason=None\"\n";
    for (name, text) in [("sbatch", sbatch), ("scontrol", scontrol)] {
        let p = bin_dir.join(name);
        std::fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin_dir
}

/// `eosflow sweep SWEEP --out OUT`, to be given its mode.
fn sweep_cmd(sweep: &Path, out: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("sweep").arg(sweep).arg("--out").arg(out);
    c
}

fn with_path(bin_dir: &Path) -> String {
    format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn slurm_array_runs_only_the_unfinished_runs_and_every_run_matches_the_local_sweep() {
    let d = tempfile::tempdir().unwrap();
    let sweep = setup(d.path());
    let local = d.path().join("local");
    sweep_cmd(&sweep, &local).assert().success();
    let csv = std::fs::read_to_string(local.join("runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(local.join("figures/wd.png").is_file());
    // `eosflow plot` on the sweep's directory redraws every run and the combined figure.
    std::fs::remove_dir_all(local.join("figures")).unwrap();
    std::fs::remove_dir_all(local.join(RUNS[1]).join("figures")).unwrap();
    let o = Command::new(bin()).arg("plot").arg(&local).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(local.join("figures/wd.png").is_file() && local.join(RUNS[1]).join("figures/fig1.png").is_file());

    // The Slurm sweep's directory before submission: task 0 finished, task
    // 2 stopped by a backend failure at step 2499 (checkpoint of step
    // 2000), tasks 1 and 3 not started.
    let out = d.path().join("slurm");
    sweep_cmd(&sweep, &out).args(["--task", "0"]).assert().success();
    sweep_cmd(&sweep, &out).env("EOSFLOW_FAULT_INJECTION", "gradient:2500").args(["--task", "2"]).assert().code(4);
    let o = Command::new(bin()).arg("sweep").arg("--collect").arg(&out).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("wd0.01_seed1: missing (not started)"), "{text}");
    assert!(text.contains("wd0.02_seed0 is error@2499: not finished"), "{text}");
    assert!(text.contains("3 of 4 runs not finished: wd0.01_seed1, wd0.02_seed0, wd0.02_seed1"), "{text}");
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert!(csv.contains("\nwd0.01_seed1,missing,") && csv.contains("\nwd0.02_seed0,error@2499,"), "{csv}");

    // The script alone (no --submit): the unfinished tasks, the options.
    let o = sweep_cmd(&sweep, &out)
        .args(["--slurm", "--partition", "short", "--cpus-per-task", "1", "--time", "0:10:00"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = std::fs::read_to_string(out.join("slurm/array.sbatch")).unwrap();
    for line in [
        "#SBATCH --array=1-3\n",
        "#SBATCH --partition=short\n",
        "#SBATCH --time=0:10:00\n",
        " --task \"$SLURM_ARRAY_TASK_ID\"\n",
    ] {
        assert!(script.contains(line), "{line:?} not in\n{script}");
    }

    // Submitted and waited on: tasks 1-3 run (2 resumes from its checkpoint).
    let stub = stubs(d.path());
    let o = sweep_cmd(&sweep, &out)
        .env("PATH", with_path(&stub))
        .args(["--slurm", "--submit", "--wait", "--poll", "0.05"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("submitted job 4242"), "{text}");
    assert_eq!(std::fs::read_to_string(stub.join("sbatch.arrays")).unwrap(), "1-3\n");
    let log = std::fs::read_to_string(out.join("slurm/logs/task-2.log")).unwrap();
    assert!(log.contains("wd0.02_seed0: resumed at step 2000"), "{log}");
    assert_same_runs(&local, &out);

    // Submitting a finished sweep submits nothing.
    let o = sweep_cmd(&sweep, &out).env("PATH", with_path(&stub)).args(["--slurm", "--submit"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("all 4 runs finished; nothing to submit"));
    assert_eq!(std::fs::read_to_string(stub.join("sbatch.arrays")).unwrap().lines().count(), 1);
}

#[test]
fn a_changed_sweep_or_config_is_refused_not_mixed_in() {
    let d = tempfile::tempdir().unwrap();
    let sweep = setup(d.path());
    let out = d.path().join("s");
    sweep_cmd(&sweep, &out).args(["--task", "1"]).assert().success();
    // Another grid into the same directory.
    std::fs::write(&sweep, SWEEP.replace("[0.01, 0.02]", "[0.01, 0.03]")).unwrap();
    let o = sweep_cmd(&sweep, &out).arg("--list").output().unwrap();
    assert!(o.status.success());
    let o = sweep_cmd(&sweep, &out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("holds another sweep") && err.contains("--force"), "{err}");
    // The same grid on another base config: the finished run is not reused.
    std::fs::write(&sweep, SWEEP).unwrap();
    std::fs::write(d.path().join("base.toml"), BASE.replace("lr = 0.1", "lr = 0.05")).unwrap();
    let o = sweep_cmd(&sweep, &out).args(["--task", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("holds a run of another config") && err.contains("lr = 0.1"), "{err}");
    // Bad task indices and directories that are not sweeps.
    let o = sweep_cmd(&sweep, &out).args(["--task", "9"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("the sweep has tasks 0..=3"));
    let o = Command::new(bin()).arg("sweep").arg("--collect").arg(d.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not look like a sweep directory"));
    // sbatch missing from PATH: the script is written and the error says so.
    let o = Command::new(bin())
        .env("PATH", "/nonexistent")
        .arg("sweep")
        .arg(&sweep)
        .arg("--out")
        .arg(d.path().join("t"))
        .args(["--slurm", "--submit"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot run sbatch") && err.contains("array.sbatch"), "{err}");
}
