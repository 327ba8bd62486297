//! Slurm for `eosflow sweep --slurm`: the job-array script (one array task
//! per unfinished run, `eosflow sweep … --task $SLURM_ARRAY_TASK_ID`), its
//! submission with `sbatch`, and waiting on it with `scontrol`. Slurm
//! schedules; each task's run directory says whether its run finished.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the script and the per-task logs go, under the sweep directory.
pub const SLURM_DIR: &str = "slurm";
pub const LOG_DIR: &str = "slurm/logs";

/// `sbatch` options for the job array, and what to do with it.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SlurmArgs {
    /// sbatch --partition
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// sbatch --time, per task (e.g. 2-00:00:00)
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// sbatch --cpus-per-task (also each task's RAYON_NUM_THREADS)
    #[arg(long, requires = "slurm")]
    pub cpus_per_task: Option<u32>,
    /// sbatch --mem, per task (e.g. 16G)
    #[arg(long, requires = "slurm")]
    pub mem: Option<String>,
    /// sbatch --gres (e.g. gpu:1)
    #[arg(long, requires = "slurm")]
    pub gres: Option<String>,
    /// At most this many tasks at once (the array's %N)
    #[arg(long, requires = "slurm", value_name = "N")]
    pub max_parallel: Option<usize>,
    /// Any other sbatch option, written as an #SBATCH line (repeatable),
    /// e.g. --sbatch-arg=--account=myproj --sbatch-arg=--requeue
    #[arg(long = "sbatch-arg", requires = "slurm", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Submit the script with sbatch
    #[arg(long, requires = "slurm")]
    pub submit: bool,
    /// After submitting, wait until the job has left the queue (polling
    /// scontrol), then check every run directory and collect
    #[arg(long, requires = "submit")]
    pub wait: bool,
    /// Seconds between polls of scontrol
    #[arg(long, default_value_t = 10.0, requires = "slurm", value_name = "SECONDS")]
    pub poll: f64,
    /// Give up waiting after this many seconds (the job keeps running)
    #[arg(long, default_value_t = 7.0 * 86400.0, requires = "slurm", value_name = "SECONDS")]
    pub wait_timeout: f64,
}

/// The array's index list: runs of consecutive indices as ranges
/// (`0-3,5,7-8`), with `%N` for a limit on tasks at once.
pub fn array_spec(indices: &[usize], max_parallel: Option<usize>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if j == i { indices[i].to_string() } else { format!("{}-{}", indices[i], indices[j]) });
        i = j + 1;
    }
    let mut s = parts.join(",");
    if let Some(n) = max_parallel {
        s.push_str(&format!("%{n}"));
    }
    s
}

/// A word for a POSIX shell, single-quoted where it needs to be.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+%@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The per-task log of array task `task` (appended to by every submission).
pub fn log_path(dir: &Path, task: usize) -> PathBuf {
    dir.join(LOG_DIR).join(format!("task-{task}.log"))
}

/// The job-array script's text: `#SBATCH` lines, then `exec` of the task
/// command (so Slurm's SIGTERM on preemption or at the time limit reaches
/// eosflow, which finishes its step and writes a checkpoint).
pub fn script_text(dir: &Path, name: &str, indices: &[usize], args: &SlurmArgs, task: &[String]) -> Result<String> {
    let logs = std::path::absolute(dir.join(LOG_DIR))?;
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!(
        "# Written by eosflow sweep: one array task per unfinished run of {}.\n",
        std::path::absolute(dir.join(crate::sweep::PLAN_FILE))?.display()
    ));
    s.push_str("# Each task runs, resumes or skips its run; submitting again continues the sweep.\n");
    let mut opt = |k: &str, v: &str| s.push_str(&format!("#SBATCH --{k}={v}\n"));
    opt("job-name", &format!("eosflow-{name}"));
    opt("array", &array_spec(indices, args.max_parallel));
    opt("output", &format!("{}/task-%a.log", logs.display()));
    opt("open-mode", "append");
    for (k, v) in [
        ("partition", args.partition.clone()),
        ("time", args.time.clone()),
        ("cpus-per-task", args.cpus_per_task.map(|c| c.to_string())),
        ("mem", args.mem.clone()),
        ("gres", args.gres.clone()),
    ] {
        if let Some(v) = v {
            opt(k, &v);
        }
    }
    for a in &args.sbatch_args {
        if !a.starts_with('-') || a.contains('\n') {
            bail!("--sbatch-arg {a:?}: expected an sbatch option such as --account=NAME");
        }
        s.push_str(&format!("#SBATCH {a}\n"));
    }
    s.push_str("set -eu\n");
    s.push_str("if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then export RAYON_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"; fi\n");
    let words: Vec<String> = task.iter().map(|w| shell_quote(w)).collect();
    s.push_str(&format!("exec {} --task \"$SLURM_ARRAY_TASK_ID\"\n", words.join(" ")));
    Ok(s)
}

/// Writes the script to `dir/slurm/array.sbatch` (and creates the log
/// folder); returns its path.
pub fn write_script(dir: &Path, name: &str, indices: &[usize], args: &SlurmArgs, task: &[String]) -> Result<PathBuf> {
    let logs = dir.join(LOG_DIR);
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let path = dir.join(SLURM_DIR).join("array.sbatch");
    crate::rundir::write_atomic(&path, script_text(dir, name, indices, args, task)?.as_bytes())?;
    Ok(path)
}

/// `sbatch --parsable SCRIPT`; returns the job id.
pub fn submit(script: &Path) -> Result<String> {
    let out = Command::new("sbatch").arg("--parsable").arg(script).output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run sbatch ({e}): run this on a Slurm login node, or submit {} there yourself",
            script.display()
        )
    })?;
    if !out.status.success() {
        bail!("sbatch {} failed ({}): {}", script.display(), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    // --parsable prints `jobid` or `jobid;cluster`.
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").trim().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id (stdout {:?})", text.trim());
    }
    Ok(id)
}

/// The states of a job's records in `scontrol show job -o` output (one
/// line per array task, or one for tasks still pending together).
pub fn job_states(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("JobState=")).map(String::from))
        .collect()
}

/// States after which a task runs no more (unless requeued, which Slurm
/// reports as PENDING again).
const TERMINAL: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
];

/// Polls `scontrol show job -o JOB` until no task of the job is queued or
/// running (a job Slurm has already forgotten counts as ended), or
/// `args.wait_timeout` passes (an error; the job keeps going).
pub fn wait(job: &str, args: &SlurmArgs) -> Result<()> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let out = Command::new("scontrol")
            .args(["show", "job", "-o", job])
            .output()
            .map_err(|e| anyhow::anyhow!("cannot run scontrol ({e}): is this a Slurm node?"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            if err.contains("Invalid job id") {
                return Ok(());
            }
            bail!("scontrol show job {job} failed ({}): {}", out.status, err.trim());
        }
        let states = job_states(&text);
        let active: Vec<&String> = states.iter().filter(|s| !TERMINAL.contains(&s.as_str())).collect();
        let line = format!("{} of {} records still queued or running", active.len(), states.len());
        if line != last {
            eprintln!("job {job}: {line} ({:.0} s)", start.elapsed().as_secs_f64());
            last = line;
        }
        if active.is_empty() {
            return Ok(());
        }
        if start.elapsed().as_secs_f64() > args.wait_timeout {
            bail!(
                "job {job} is still in the queue after {:.0} s (--wait-timeout); it keeps running: collect it later \
                 with `eosflow sweep --collect DIR`",
                args.wait_timeout
            );
        }
        std::thread::sleep(Duration::from_secs_f64(args.poll.max(0.01)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_compress_runs_of_indices() {
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[0, 2, 3, 4, 7], Some(2)), "0,2-4,7%2");
        assert_eq!(array_spec(&[5], None), "5");
    }

    #[test]
    fn shell_words_are_quoted_where_needed() {
        assert_eq!(shell_quote("/a/b.toml"), "/a/b.toml");
        assert_eq!(shell_quote("problem.precision=f32"), "problem.precision=f32");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("problem.hidden=[60, 60]"), "'problem.hidden=[60, 60]'");
    }

    #[test]
    fn scontrol_records_give_their_states() {
        let text = "JobId=7 ArrayJobId=7 ArrayTaskId=0 JobName=x JobState=COMPLETED Reason=None\n\
                    JobId=8 ArrayJobId=7 ArrayTaskId=1-3 JobState=PENDING Reason=Resources\n";
        assert_eq!(job_states(text), ["COMPLETED", "PENDING"]);
    }

    #[test]
    fn the_script_passes_options_and_execs_the_task() {
        let d = tempfile::tempdir().unwrap();
        let args = SlurmArgs {
            partition: Some("gpu".into()),
            cpus_per_task: Some(4),
            gres: Some("gpu:1".into()),
            sbatch_args: vec!["--requeue".into()],
            ..Default::default()
        };
        let task = ["/bin/eosflow", "sweep", "/s w.toml", "--out", "/o"].map(String::from);
        let s = script_text(d.path(), "wd", &[0, 1, 3], &args, &task).unwrap();
        for line in [
            "#SBATCH --job-name=eosflow-wd\n",
            "#SBATCH --array=0-1,3\n",
            "#SBATCH --open-mode=append\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --cpus-per-task=4\n",
            "#SBATCH --gres=gpu:1\n",
            "#SBATCH --requeue\n",
            "exec /bin/eosflow sweep '/s w.toml' --out /o --task \"$SLURM_ARRAY_TASK_ID\"\n",
        ] {
            assert!(s.contains(line), "{line:?} missing from\n{s}");
        }
        assert!(!s.contains("--time"), "{s}");
        let bad = SlurmArgs { sbatch_args: vec!["account=x".into()], ..Default::default() };
        assert!(script_text(d.path(), "wd", &[0], &bad, &task).is_err());
    }
}
