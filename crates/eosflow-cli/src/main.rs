//! `eosflow`: run GD+WD experiments on scale-invariant losses, reproduce the
//! paper's experiments, and draw their figures. The program lives in the
//! `eosflow_cli` library; this file sets up the process (allocator, threads,
//! SIGPIPE) and maps errors to exit codes.

use clap::Parser;
use eosflow_cli::{Cli, UsageError, configure_threads, dispatch};
use std::process::ExitCode;

// candle allocates a fresh buffer for every tensor op; glibc returns large
// ones to the kernel at once, so each step page-faults them in again (half
// of a digits-mlp step was system time). mimalloc keeps them pooled.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Keeps freed memory committed: mimalloc by default returns pages freed for
/// 10 ms to the kernel, and at network sizes (activations of tens of MB per
/// op) the kernel then clears fresh pages on every op: 35% of a VGG-11/4 HVP
/// was `clear_page_erms`. With purging off the HVP took 1.31 s instead of
/// 1.96 s (BENCHMARKS.md); the cost is that the process keeps its peak
/// memory. `MIMALLOC_PURGE_DELAY` in the environment still overrides.
fn configure_allocator() {
    // mi_option_purge_delay in mimalloc v3's `mi_option_e` (libmimalloc-sys
    // 0.1.49's default build); -1 means never purge.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options lazily.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

fn main() -> ExitCode {
    // Under an MPI launcher (feature `mpi`): MPI until the guard drops.
    let _mpi = eosflow_cli::ranks::init();
    configure_allocator();
    configure_threads();
    // A closed stdout (`eosflow ... | head`) should end the program quietly,
    // as for any Unix tool, not panic in println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts; no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // 2 for bad arguments, as clap's own errors; 1 for the rest.
            let code = if e.downcast_ref::<UsageError>().is_some() { 2 } else { 1 };
            if eosflow_cli::ranks::launched_size() > 1 {
                // The other ranks may wait for this one in a collective:
                // the message, then MPI_Abort ends them all.
                eprintln!("error (rank {}): {e:#}", eosflow_cli::ranks::rank());
                eosflow_cli::ranks::abort(code.into());
            }
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}
