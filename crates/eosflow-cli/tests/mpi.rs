//! One network run shared by MPI ranks (`--features mpi`, OpenMPI's mpirun
//! on loopback): the ghost batches split over 1, 2 and 3 ranks give the same
//! bytes as one process; SIGTERM (to one rank, or to all) stops every rank
//! after the same step with a consistent checkpoint, and SIGKILL of one rank
//! ends the others (no hang); `resume` with any number of ranks then ends
//! with the bytes of a run that never stopped. Every wait is bounded.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("eosflow")
}

/// An SI CNN on 200 digits in 4 ghost batches of 50 (the Hessian on the
/// first 100: 2 batches); every step logged.
fn config(steps: u64) -> String {
    format!(
        r#"name = "mpi"
[problem]
kind = "nn"
arch = "si-vgg"
vgg = "4 M 6"
train_per_class = 20
ghost_batch = 50
hessian_examples = 100
[optimizer]
kind = "gd_wd"
lr = 0.05
wd = 0.01
[run]
steps = {steps}
checkpoint_every = 10
checkpoint_min_interval_s = 0.0
[sharpness]
every = 10
[output]
figures = false
"#
    )
}

const SAME: [&str; 3] = ["metrics.csv", "sharpness.csv", "w_final.npy"];

fn mpirun(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", &np.to_string(), "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl", "self,vader")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("OMPI_MCA_oob_tcp_if_include", "lo")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("RAYON_NUM_THREADS", "1")
        .arg(bin());
    c
}

/// Waits up to `secs` for the child; kills it and fails on a hang.
fn wait_bounded(mut child: Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("{what}: still running after {secs} s (a rank waits forever?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `c` to completion within `secs`, its output into a file shown on
/// failure.
fn run_ok(mut c: Command, secs: u64, what: &str) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let f = log.reopen().unwrap();
    let child = c.stdout(f.try_clone().unwrap()).stderr(f).spawn().unwrap();
    let status = wait_bounded(child, secs, what);
    assert!(status.success(), "{what}: {status}\n{}", std::fs::read_to_string(log.path()).unwrap_or_default());
}

fn assert_same(a: &Path, b: &Path) {
    for f in SAME {
        let (x, y) = (std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap());
        assert!(x == y, "{} differs from {}", b.join(f).display(), a.join(f).display());
    }
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// The pids of the eosflow ranks writing to `out` (not mpirun itself).
fn rank_pids(out: &Path) -> Vec<i32> {
    let needle = out.display().to_string();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        if comm.trim() == "eosflow" && String::from_utf8_lossy(&cmd).contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_for(path: &Path, secs: u64) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(secs), "no {} after {secs} s", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `mpirun -np 2 eosflow run CFG --out OUT`, once its first checkpoint is
/// written: the child and the two ranks' pids.
fn start_two_ranks(cfg: &Path, out: &Path) -> (Child, Vec<i32>) {
    let child = mpirun(2)
        .arg("run")
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&out.join("checkpoint/state.json"), 120);
    let pids = rank_pids(out);
    assert_eq!(pids.len(), 2, "{}: ranks {pids:?}", out.display());
    (child, pids)
}

#[test]
fn one_two_and_three_ranks_write_the_bytes_of_one_process() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, config(30)).unwrap();
    let one = d.path().join("one");
    let mut c = Command::new(bin());
    c.arg("run").arg(&cfg).arg("--out").arg(&one);
    run_ok(c, 300, "one process");
    for np in [1, 2, 3] {
        let out = d.path().join(format!("np{np}"));
        let mut c = mpirun(np);
        c.arg("run").arg(&cfg).arg("--out").arg(&out);
        run_ok(c, 300, &format!("mpirun -np {np}"));
        assert_same(&one, &out);
        let s = summary(&out);
        assert_eq!(s["status"], "completed");
        if np > 1 {
            assert_eq!(s["timing"]["mpi"]["ranks"], np as u64, "{s}");
            assert!(s["timing"]["mpi"]["bytes_sent_rank0"].as_u64().unwrap() > 0);
        }
        // Only rank 0 wrote: one metrics row per step, no duplicates.
        let rows = std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().count();
        assert_eq!(rows, 32, "np {np}");
    }
    // An analytic problem under mpirun runs on rank 0 alone, and says so.
    let toy = d.path().join("toy");
    let o = mpirun(2).args(["reproduce", "toy3d", "--out"]).arg(&toy).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("runs on rank 0 alone"));
    assert_eq!(summary(&toy)["status"], "completed");
}

#[test]
fn sigterm_stops_every_rank_at_one_step_and_sigkill_ends_them_all() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, config(200)).unwrap();
    let reference = d.path().join("ref");
    let mut c = Command::new(bin());
    c.arg("run").arg(&cfg).arg("--out").arg(&reference);
    run_ok(c, 600, "reference");

    // SIGTERM to rank 1 only, then to every rank: all stop after one step.
    for (case, all) in [("term-one", false), ("term-all", true)] {
        let out = d.path().join(case);
        let (child, pids) = start_two_ranks(&cfg, &out);
        for &p in if all { &pids[..] } else { &pids[1..] } {
            // SAFETY: kill(2) on a rank of our own child.
            unsafe { libc::kill(p, libc::SIGTERM) };
        }
        wait_bounded(child, 120, case);
        let s = summary(&out);
        assert_eq!(s["status"], "interrupted", "{case}: {s}");
        assert!(s["step"].as_u64().unwrap() < 200, "{case}: {s}");
        // Resumed with 3 ranks: the bytes of the run that never stopped.
        let mut c = mpirun(3);
        c.arg("resume").arg(&out);
        run_ok(c, 600, &format!("{case}: resume with 3 ranks"));
        assert_same(&reference, &out);
    }

    // SIGKILL of rank 1: mpirun ends rank 0 too; resumed alone, identical.
    let out = d.path().join("kill");
    let (child, pids) = start_two_ranks(&cfg, &out);
    // SAFETY: kill(2) on a rank of our own child.
    unsafe { libc::kill(pids[1], libc::SIGKILL) };
    let status = wait_bounded(child, 60, "after SIGKILL of rank 1");
    assert!(!status.success());
    assert!(!out.join("summary.json").exists(), "a killed run writes no summary");
    let start = Instant::now();
    while !rank_pids(&out).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "rank 0 outlived the job");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = Command::new(bin());
    c.arg("resume").arg(&out);
    run_ok(c, 600, "resume alone after SIGKILL");
    assert_same(&reference, &out);
}
