//! Fault injection for the tests of the error path: with
//! `EOSFLOW_FAULT_INJECTION=OP:N` in the environment (OP = `gradient` or
//! `hvp`), the N-th call of that operation fails as a backend error would
//! (a device error, a GPU out of memory), so the run must end with status
//! "error", its rows and last checkpoint kept. Unset, nothing is wrapped.

use anyhow::{Result, bail};
use eosflow::problems::{Problem, Tracker};
use eosflow::spectrum::LinOp;
use eosflow::{EvalFailure, Hessian, Objective, ScaleInvariance};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that turns fault injection on.
pub const VAR: &str = "EOSFLOW_FAULT_INJECTION";

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Gradient,
    Hvp,
}

/// A problem whose `n`-th gradient or HVP fails.
pub struct FaultInjection {
    inner: Box<dyn Problem>,
    op: Op,
    n: u64,
    calls: AtomicU64,
    failure: Mutex<Option<EvalFailure>>,
}

#[derive(Debug, thiserror::Error)]
#[error("injected fault ({VAR}): call {0} of this operation")]
struct Injected(u64);

/// Wraps `problem` when the environment asks for a fault.
pub fn wrap(problem: Box<dyn Problem>) -> Result<Box<dyn Problem>> {
    let Ok(spec) = std::env::var(VAR) else { return Ok(problem) };
    let (op, n) = match spec.split_once(':') {
        Some(("gradient", n)) => (Op::Gradient, n),
        Some(("hvp", n)) => (Op::Hvp, n),
        _ => bail!("{VAR}={spec}: expected gradient:N or hvp:N"),
    };
    let Ok(n) = n.parse::<u64>() else { bail!("{VAR}={spec}: N must be a whole number") };
    Ok(Box::new(FaultInjection { inner: problem, op, n, calls: AtomicU64::new(0), failure: Mutex::new(None) }))
}

impl FaultInjection {
    /// Whether this call of `op` is the one that fails (and records it).
    fn fails(&self, op: Op, name: &'static str) -> bool {
        if op != self.op {
            return false;
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if call != self.n {
            return false;
        }
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(EvalFailure { op: name, source: Box::new(Injected(call)) });
        true
    }
}

impl Objective for FaultInjection {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        if self.fails(Op::Gradient, "gradient") {
            grad.fill(f64::NAN);
            return f64::NAN;
        }
        self.inner.loss_grad(w, grad)
    }
    fn loss(&self, w: &[f64]) -> f64 {
        self.inner.loss(w)
    }
    fn scale_invariance(&self) -> ScaleInvariance {
        self.inner.scale_invariance()
    }
    fn take_failure(&self) -> Option<EvalFailure> {
        let own = self.failure.lock().unwrap_or_else(|p| p.into_inner()).take();
        own.or_else(|| self.inner.take_failure())
    }
}

/// The inner Hessian operator with the injected HVP failure.
struct FaultyOp<'a> {
    op: Box<dyn LinOp + 'a>,
    parent: &'a FaultInjection,
}

impl LinOp for FaultyOp<'_> {
    fn dim(&self) -> usize {
        self.op.dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        if self.parent.fails(Op::Hvp, "hvp") {
            y.fill(f64::NAN);
        } else {
            self.op.apply(x, y)
        }
    }
}

impl Hessian for FaultInjection {
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        if self.fails(Op::Hvp, "hvp") {
            out.fill(f64::NAN);
        } else {
            self.inner.hvp(w, v, out)
        }
    }
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(FaultyOp { op: self.inner.hessian_at(w), parent: self })
    }
    fn third_contraction(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        // Differences go through `self`, so that injected HVP faults reach them.
        eosflow::objective::third_contraction_through(self, self.inner.as_ref(), w, v, out)
    }
    fn third_contraction_is_exact(&self) -> bool {
        self.inner.third_contraction_is_exact()
    }
    fn residual_geometry<'a>(&'a self, w: &[f64]) -> Option<Box<dyn eosflow::ResidualGeometry + 'a>> {
        self.inner.residual_geometry(w)
    }
    fn has_residual_geometry(&self) -> bool {
        self.inner.has_residual_geometry()
    }
}

impl Problem for FaultInjection {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn initial_point(&self) -> Vec<f64> {
        self.inner.initial_point()
    }
    fn kernels(&self) -> String {
        self.inner.kernels()
    }
    fn point_columns(&self) -> Vec<eosflow::run::Column> {
        self.inner.point_columns()
    }
    fn point_values(&self, w: &[f64]) -> Vec<f64> {
        self.inner.point_values(w)
    }
    fn project_onto_gamma(&self, theta: &[f64]) -> Option<Vec<f64>> {
        self.inner.project_onto_gamma(theta)
    }
    fn parameter_blocks(&self) -> Vec<(String, std::ops::Range<usize>)> {
        self.inner.parameter_blocks()
    }
    fn tracker(&self) -> Box<dyn Tracker + '_> {
        self.inner.tracker()
    }
}
