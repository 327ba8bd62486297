//! Records the git commit the binary is built from (summary.json's
//! `eosflow.git_commit`); "unknown" outside a git checkout.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Rebuild when HEAD moves or the index changes (a commit, a checkout).
    for p in [".git/HEAD", ".git/index", ".git/refs/heads", ".git/packed-refs"] {
        let path = root.join(p);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    let commit = match git(&["-C", &root.display().to_string(), "rev-parse", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["-C", &root.display().to_string(), "status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-modified") } else { c }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=EOSFLOW_GIT_COMMIT={commit}");
}
