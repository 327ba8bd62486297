//! The processes of one run under MPI (cargo feature `mpi`: `mpirun -np R
//! eosflow run CONFIG`, or `srun --mpi=pmix eosflow run CONFIG`): which rank
//! this is, the [`BatchExchange`] that shares a network's ghost batches, and
//! the ranks' agreement on when to stop. Rank 0 writes the run directory;
//! the others compute beside it and write nothing.
//!
//! Without the feature, or started without an MPI launcher (no
//! `OMPI_COMM_WORLD_SIZE`, `PMI_SIZE` or `PMIX_RANK` in the environment),
//! this process is rank 0 of 1 and nothing here communicates. A command that
//! is not one network run ([`solo`]) runs on rank 0 alone while the other
//! ranks exit at once.

use eosflow_nn::problem::BatchExchange;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by [`solo`]: the command runs on rank 0 alone.
static SOLO: AtomicBool = AtomicBool::new(false);

#[cfg(feature = "mpi")]
mod imp {
    use mpi::collective::SystemOperation;
    use mpi::traits::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    pub struct World {
        comm: Mutex<mpi::topology::SimpleCommunicator>,
        pub rank: usize,
        pub size: usize,
        /// Seconds inside the exchange's calls (waiting for the previous
        /// rank included) and bytes this rank sent, for summary.json.
        pub exchange_ns: AtomicU64,
        pub bytes_sent: AtomicU64,
    }

    // SAFETY: MPI is initialised at MPI_THREAD_SERIALIZED and every call
    // goes through the mutex, so at most one thread is in MPI at a time.
    unsafe impl Send for World {}
    unsafe impl Sync for World {}

    static WORLD: OnceLock<World> = OnceLock::new();

    /// Keeps MPI initialised; finalises it when dropped (at the end of main).
    pub struct Guard(#[allow(dead_code)] Option<mpi::environment::Universe>);

    fn launched() -> bool {
        ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|k| std::env::var_os(k).is_some())
    }

    pub fn init() -> Guard {
        if !launched() {
            return Guard(None);
        }
        let Some((universe, _level)) = mpi::initialize_with_threading(mpi::Threading::Serialized) else {
            return Guard(None);
        };
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let _ = WORLD.set(World {
            comm: Mutex::new(world),
            rank,
            size,
            exchange_ns: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        });
        Guard(Some(universe))
    }

    pub fn world() -> Option<&'static World> {
        WORLD.get().filter(|w| w.size > 1)
    }

    fn comm(w: &World) -> std::sync::MutexGuard<'_, mpi::topology::SimpleCommunicator> {
        w.comm.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn timed<R>(w: &World, f: impl FnOnce() -> R) -> R {
        let t = std::time::Instant::now();
        let r = f();
        w.exchange_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }

    pub fn recv_prev(w: &World, buf: &mut [f64]) {
        timed(w, || comm(w).process_at_rank(w.rank as i32 - 1).receive_into(buf));
    }

    pub fn send_next(w: &World, buf: &[f64]) {
        w.bytes_sent.fetch_add(8 * buf.len() as u64, Ordering::Relaxed);
        timed(w, || comm(w).process_at_rank(w.rank as i32 + 1).send(buf));
    }

    pub fn broadcast_from_last(w: &World, buf: &mut [f64]) {
        if w.rank + 1 == w.size {
            w.bytes_sent.fetch_add(8 * buf.len() as u64 * (w.size as u64 - 1), Ordering::Relaxed);
        }
        timed(w, || comm(w).process_at_rank(w.size as i32 - 1).broadcast_into(buf));
    }

    pub fn max_min(w: &World, x: u64) -> (u64, u64) {
        let c = comm(w);
        let (mut hi, mut lo) = (0u64, 0u64);
        c.all_reduce_into(&x, &mut hi, SystemOperation::max());
        c.all_reduce_into(&x, &mut lo, SystemOperation::min());
        (hi, lo)
    }

    pub fn abort(w: &World, code: i32) -> ! {
        comm(w).abort(code)
    }
}

#[cfg(not(feature = "mpi"))]
#[allow(dead_code)] // World is never built without MPI.
mod imp {
    pub struct World {
        pub rank: usize,
        pub size: usize,
        pub exchange_ns: std::sync::atomic::AtomicU64,
        pub bytes_sent: std::sync::atomic::AtomicU64,
    }
    pub struct Guard;
    pub fn init() -> Guard {
        Guard
    }
    pub fn world() -> Option<&'static World> {
        None
    }
    pub fn recv_prev(_: &World, _: &mut [f64]) {}
    pub fn send_next(_: &World, _: &[f64]) {}
    pub fn broadcast_from_last(_: &World, _: &mut [f64]) {}
    pub fn max_min(_: &World, x: u64) -> (u64, u64) {
        (x, x)
    }
    pub fn abort(_: &World, code: i32) -> ! {
        std::process::exit(code)
    }
}

pub use imp::Guard;

/// Initialises MPI when the process was started by an MPI launcher (first
/// thing in main); the guard finalises it.
pub fn init() -> Guard {
    imp::init()
}

fn world() -> Option<&'static imp::World> {
    imp::world().filter(|_| !SOLO.load(Ordering::SeqCst))
}

/// The number of ranks this process was started with (1 without MPI), even
/// after [`solo`].
pub fn launched_size() -> usize {
    imp::world().map_or(1, |w| w.size)
}

/// This process's rank among those that share the run (0 without MPI).
pub fn rank() -> usize {
    imp::world().map_or(0, |w| w.rank)
}

/// How many ranks share the run (1 without MPI, or after [`solo`]).
pub fn size() -> usize {
    world().map_or(1, |w| w.size)
}

/// Whether this process writes the run directory and prints (rank 0).
pub fn is_writer() -> bool {
    rank() == 0
}

/// The command runs on rank 0 alone: `true` on rank 0 (which goes on as a
/// single process), `false` on the others (which should exit at once).
pub fn solo() -> bool {
    SOLO.store(true, Ordering::SeqCst);
    rank() == 0
}

/// The exchange of a network's ghost batches when the run is shared.
pub fn exchange() -> Option<Arc<dyn BatchExchange>> {
    world().map(|_| Arc::new(MpiExchange) as Arc<dyn BatchExchange>)
}

struct MpiExchange;

impl BatchExchange for MpiExchange {
    fn rank(&self) -> usize {
        rank()
    }
    fn size(&self) -> usize {
        size()
    }
    fn recv_prev(&self, buf: &mut [f64]) {
        if let Some(w) = world() {
            imp::recv_prev(w, buf)
        }
    }
    fn send_next(&self, buf: &[f64]) {
        if let Some(w) = world() {
            imp::send_next(w, buf)
        }
    }
    fn broadcast_from_last(&self, buf: &mut [f64]) {
        if let Some(w) = world() {
            imp::broadcast_from_last(w, buf)
        }
    }
}

/// Whether any rank's `local` is true (a collective: every rank calls it
/// at the same point).
pub fn any(local: bool) -> bool {
    match world() {
        Some(w) => imp::max_min(w, local as u64).0 == 1,
        None => local,
    }
}

/// Whether every rank holds the same bits in `v` (compared by a 64-bit
/// FNV-1a fingerprint of the bit patterns; a collective).
pub fn same_on_all(v: &[f64]) -> bool {
    let Some(w) = world() else { return true };
    let mut h: u64 = 0xcbf29ce484222325;
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    let (hi, lo) = imp::max_min(w, h);
    hi == lo
}

/// Ends every rank (MPI_Abort) — where this rank stops while the others may
/// be waiting in a collective (its output failed, or an error before the
/// run). Without MPI, exits.
pub fn abort(code: i32) -> ! {
    match imp::world() {
        Some(w) => imp::abort(w, code),
        None => std::process::exit(code),
    }
}

/// The rank among those on this node (for picking a GPU), from the
/// launcher's environment.
pub fn local_rank() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(0)
}

/// This rank's exchange counters so far: seconds in the exchange (waiting
/// for the previous rank included) and bytes sent; zeros without MPI.
pub fn counters() -> (f64, u64) {
    world().map_or((0.0, 0), |w| {
        (w.exchange_ns.load(Ordering::Relaxed) as f64 * 1e-9, w.bytes_sent.load(Ordering::Relaxed))
    })
}

/// summary.json's `timing.mpi` of a shared run: ranks, seconds in the
/// exchange (waiting included) and bytes this rank sent.
pub fn timing() -> Option<serde_json::Value> {
    let w = world()?;
    Some(serde_json::json!({
        "ranks": w.size,
        "exchange_s_rank0": w.exchange_ns.load(Ordering::Relaxed) as f64 * 1e-9,
        "bytes_sent_rank0": w.bytes_sent.load(Ordering::Relaxed),
    }))
}

/// Rank 0's file writer in a shared run: a write that fails ends every
/// rank at once (MPI_Abort, exit 4) with a message naming the file, since
/// the others would otherwise wait for rank 0 in the next step's exchange.
/// What was written stays; `eosflow resume` continues from the last
/// checkpoint.
pub struct AbortOnFailure<'a>(pub &'a mut dyn eosflow::run::Observer);

impl AbortOnFailure<'_> {
    fn check(r: Result<(), eosflow::run::ObserverError>) -> Result<(), eosflow::run::ObserverError> {
        if let Err(e) = &r
            && size() > 1
        {
            eprintln!(
                "error: rank 0 could not write the run directory: {e}; stopping all {} ranks (the last checkpoint \
                 is intact: `eosflow resume` continues once the cause is fixed)",
                size()
            );
            abort(4);
        }
        r
    }
}

impl eosflow::run::Observer for AbortOnFailure<'_> {
    fn on_start(&mut self, extra_columns: &[&str]) -> Result<(), eosflow::run::ObserverError> {
        Self::check(self.0.on_start(extra_columns))
    }
    fn on_step(&mut self, rec: &eosflow::run::StepRecord, w: &[f64]) -> Result<(), eosflow::run::ObserverError> {
        Self::check(self.0.on_step(rec, w))
    }
    fn on_snapshot(&mut self, step: u64, w: &[f64], eos_entry: bool) -> Result<(), eosflow::run::ObserverError> {
        Self::check(self.0.on_snapshot(step, w, eos_entry))
    }
    fn on_spectrum(
        &mut self,
        step: u64,
        blocks: &[eosflow::spectrum::BlockSpectrum],
    ) -> Result<(), eosflow::run::ObserverError> {
        Self::check(self.0.on_spectrum(step, blocks))
    }
    fn on_sharpness(&mut self, rec: &eosflow::run::SharpnessRecord) -> Result<(), eosflow::run::ObserverError> {
        Self::check(self.0.on_sharpness(rec))
    }
    fn on_checkpoint(&mut self, state: &eosflow::run::RunState) -> Result<(), eosflow::run::ObserverError> {
        Self::check(self.0.on_checkpoint(state))
    }
    fn on_finish(&mut self, summary: &eosflow::run::RunSummary, w: &[f64]) -> Result<(), eosflow::run::ObserverError> {
        Self::check(self.0.on_finish(summary, w))
    }
}

/// What every rank must agree on at the end of a shared run: each
/// sharpness evaluation (value, top-k, residual, HVPs) and the final w.
/// Lanczos runs replicated on every rank, so a rank whose evaluations
/// differed would show here.
#[derive(Default)]
pub struct Agreement(pub Vec<f64>);

impl eosflow::run::Observer for Agreement {
    fn on_sharpness(&mut self, rec: &eosflow::run::SharpnessRecord) -> Result<(), eosflow::run::ObserverError> {
        self.0.extend([rec.step as f64, rec.sharpness, rec.residual, rec.hvps as f64]);
        self.0.extend(&rec.top_k);
        Ok(())
    }
    fn on_finish(&mut self, _summary: &eosflow::run::RunSummary, w: &[f64]) -> Result<(), eosflow::run::ObserverError> {
        self.0.extend(w);
        Ok(())
    }
}
