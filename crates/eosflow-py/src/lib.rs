//! `eosflow._native`: the Rust side of the Python package (python/src/eosflow).
//! Runs go through `eosflow_cli::api`, so a run from Python writes the
//! bytes `eosflow run` writes; operators from Python (any callable, numpy
//! in and out) go through eosflow's own Lanczos and spherical sharpness.
//! The Python modules add the docs users read, argument normalisation and
//! the `Run` class; this file checks what crosses the boundary.

use eosflow::ScaleInvariance;
use eosflow::eos::RegimeBand;
use eosflow::monitor::{Monitor, MonitorError, MonitorParams};
use eosflow::run::{CancelToken, Observer, ObserverError, SharpnessRecord, Status, StepRecord};
use eosflow::spectrum::{LanczosParams, LinOp};
use eosflow_cli::api;
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyFloatingPointError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pyo3::create_exception!(
    _native,
    EosflowError,
    PyRuntimeError,
    "An eosflow run or config failed (the message names the key, file or shape)."
);

fn run_err(e: anyhow::Error) -> PyErr {
    EosflowError::new_err(format!("{e:#}"))
}

// ---------------------------------------------------------------- operators

/// A Python callable as a symmetric operator: `f(x)` or `f(w, x)` (numpy
/// float64 in, float64 of the same shape out). Errors of the callable, and
/// outputs of the wrong shape or dtype, are kept and re-raised after
/// Lanczos stops (the operator writes NaN, which stops it at once).
struct PyOp<'py> {
    py: Python<'py>,
    f: Bound<'py, PyAny>,
    /// The point w for `f(w, x)` (an HVP), else `f(x)`.
    at: Option<Bound<'py, PyArray1<f64>>>,
    dim: usize,
    what: &'static str,
    error: RefCell<Option<PyErr>>,
    calls: Cell<usize>,
}

impl<'py> PyOp<'py> {
    fn new(py: Python<'py>, f: Bound<'py, PyAny>, at: Option<&[f64]>, dim: usize, what: &'static str) -> Self {
        let at = at.map(|w| PyArray1::from_slice(py, w));
        Self { py, f, at, dim, what, error: RefCell::new(None), calls: Cell::new(0) }
    }

    fn call(&self, x: &[f64], y: &mut [f64]) -> PyResult<()> {
        let xa = PyArray1::from_slice(self.py, x);
        let out = match &self.at {
            Some(w) => self.f.call1((w.clone(), xa))?,
            None => self.f.call1((xa,))?,
        };
        copy_vector(&out, y, self.what)
    }

    /// The first error of the callable, if any.
    fn take_error(&self) -> Option<PyErr> {
        self.error.borrow_mut().take()
    }
}

impl LinOp for PyOp<'_> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        if self.error.borrow().is_some() {
            y.fill(f64::NAN);
            return;
        }
        self.calls.set(self.calls.get() + 1);
        if let Err(e) = self.call(x, y) {
            *self.error.borrow_mut() = Some(e);
            y.fill(f64::NAN);
        }
    }
}

/// Copies a callable's output into `y`: a float64 array of shape (len(y),)
/// (numpy, or anything numpy.asarray turns into one, such as a JAX array).
fn copy_vector(out: &Bound<'_, PyAny>, y: &mut [f64], what: &str) -> PyResult<()> {
    let py = out.py();
    let arr = py.import("numpy")?.call_method1("asarray", (out,))?;
    let dtype: String = arr.getattr("dtype")?.str()?.extract()?;
    if dtype != "float64" {
        return Err(PyValueError::new_err(format!(
            "{what} returned an array of dtype {dtype}; it must return float64 (eosflow computes in f64: \
             with JAX enable jax_enable_x64, with PyTorch use torch.float64)"
        )));
    }
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    if shape != [y.len()] {
        return Err(PyValueError::new_err(format!(
            "{what} returned an array of shape {shape:?}; expected ({},), the shape of its input",
            y.len()
        )));
    }
    let a: PyReadonlyArray1<f64> = arr.extract()?;
    match a.as_slice() {
        Ok(s) => y.copy_from_slice(s),
        Err(_) => y.iter_mut().zip(a.as_array().iter()).for_each(|(d, s)| *d = *s),
    }
    Ok(())
}

fn vector(a: &PyReadonlyArray1<'_, f64>) -> Vec<f64> {
    match a.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => a.as_array().to_vec(),
    }
}

fn scale_invariance(block: Option<Vec<usize>>, invariant: bool) -> ScaleInvariance {
    match (invariant, block) {
        (false, _) => ScaleInvariance::None,
        (true, None) => ScaleInvariance::All,
        (true, Some(idx)) => ScaleInvariance::Block(idx),
    }
}

fn lanczos_params(k: usize, tol: f64, max_basis: usize, max_restarts: usize, seed: u64) -> LanczosParams {
    LanczosParams { k, tol, max_basis, max_restarts, seed, ..Default::default() }
}

/// Lanczos on a Python callable (see `eosflow.lanczos`).
#[pyfunction]
#[pyo3(signature = (matvec, dim, k, largest, tol, max_basis, max_restarts, v0, seed))]
#[allow(clippy::too_many_arguments)]
fn lanczos<'py>(
    py: Python<'py>,
    matvec: Bound<'py, PyAny>,
    dim: usize,
    k: usize,
    largest: bool,
    tol: f64,
    max_basis: usize,
    max_restarts: usize,
    v0: Option<PyReadonlyArray1<'py, f64>>,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let op = PyOp::new(py, matvec, None, dim, "matvec");
    let params = lanczos_params(k, tol, max_basis, max_restarts, seed);
    let start = v0.as_ref().map(vector);
    let res = if largest {
        eosflow::spectrum::lanczos_top(&op, &params, start.as_deref()).map_err(|e| e.to_string())
    } else {
        eosflow::spectrum::lanczos_bottom(&op, &params, start.as_deref()).map_err(|e| e.to_string())
    };
    if let Some(e) = op.take_error() {
        return Err(e);
    }
    let r = res.map_err(PyValueError::new_err)?;
    let d = PyDict::new(py);
    d.set_item("eigenvalues", PyArray1::from_vec(py, r.eigenvalues))?;
    d.set_item(
        "eigenvectors",
        numpy::PyArray2::from_vec2(py, &r.eigenvectors).map_err(|e| PyValueError::new_err(e.to_string()))?,
    )?;
    d.set_item("residuals", PyArray1::from_vec(py, r.residuals))?;
    d.set_item("converged", r.converged)?;
    d.set_item("matvecs", op.calls.get())?;
    d.set_item("restarts", r.restarts)?;
    Ok(d)
}

fn sharpness_dict<'py>(py: Python<'py>, s: eosflow::sharpness::Sharpness) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("sharpness", s.spherical)?;
    d.set_item("top_k", PyArray1::from_vec(py, s.top_k))?;
    d.set_item("residual", s.residual)?;
    d.set_item("hvps", s.hvps)?;
    d.set_item("converged", s.converged)?;
    d.set_item("eigenvector", PyArray1::from_vec(py, s.eigenvector))?;
    Ok(d)
}

/// Spherical sharpness from a Python HVP `hvp(w, v)` (see
/// `eosflow.spherical_sharpness`).
#[pyfunction]
#[pyo3(signature = (hvp, w, block, invariant, k, tol, max_basis, max_restarts, v0, seed))]
#[allow(clippy::too_many_arguments)]
fn spherical_sharpness<'py>(
    py: Python<'py>,
    hvp: Bound<'py, PyAny>,
    w: PyReadonlyArray1<'py, f64>,
    block: Option<Vec<usize>>,
    invariant: bool,
    k: usize,
    tol: f64,
    max_basis: usize,
    max_restarts: usize,
    v0: Option<PyReadonlyArray1<'py, f64>>,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let w = vector(&w);
    let op = PyOp::new(py, hvp, Some(&w), w.len(), "hvp");
    let si = scale_invariance(block, invariant);
    let params = lanczos_params(k, tol, max_basis, max_restarts, seed);
    let start = v0.as_ref().map(vector);
    let res = eosflow::sharpness::spherical_sharpness_of(&op, &si, &w, &params, start.as_deref());
    if let Some(e) = op.take_error() {
        return Err(e);
    }
    sharpness_dict(py, res.map_err(|e| PyValueError::new_err(e.to_string()))?)
}

/// Hutchinson or Hutch++ trace of a Python operator (see `eosflow.trace`).
#[pyfunction]
#[pyo3(signature = (matvec, dim, hutch_pp, probes, seed))]
fn trace<'py>(
    py: Python<'py>,
    matvec: Bound<'py, PyAny>,
    dim: usize,
    hutch_pp: bool,
    probes: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let op = PyOp::new(py, matvec, None, dim, "matvec");
    let params = eosflow::spectrum::TraceParams { probes, seed };
    let res =
        if hutch_pp { eosflow::spectrum::hutch_pp(&op, &params) } else { eosflow::spectrum::hutchinson(&op, &params) };
    if let Some(e) = op.take_error() {
        return Err(e);
    }
    let t = res.map_err(|e| PyValueError::new_err(e.to_string()))?;
    let d = PyDict::new(py);
    d.set_item("estimate", t.estimate)?;
    d.set_item("std_error", t.std_error)?;
    d.set_item("matvecs", t.matvecs)?;
    Ok(d)
}

/// The spectral density by stochastic Lanczos quadrature (see
/// `eosflow.spectral_density`).
#[pyfunction]
#[pyo3(signature = (matvec, dim, probes, steps, seed, sigma, grid))]
#[allow(clippy::too_many_arguments)]
fn spectral_density<'py>(
    py: Python<'py>,
    matvec: Bound<'py, PyAny>,
    dim: usize,
    probes: usize,
    steps: usize,
    seed: u64,
    sigma: f64,
    grid: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let op = PyOp::new(py, matvec, None, dim, "matvec");
    let params = eosflow::spectrum::SlqParams { probes, steps, seed, sigma, grid };
    let res = eosflow::spectrum::slq(&op, &params);
    if let Some(e) = op.take_error() {
        return Err(e);
    }
    let r = res.map_err(|e| PyValueError::new_err(e.to_string()))?;
    let d = PyDict::new(py);
    d.set_item("grid", PyArray1::from_vec(py, r.grid))?;
    d.set_item("density", PyArray1::from_vec(py, r.density))?;
    d.set_item("sigma", r.sigma)?;
    d.set_item("matvecs", r.matvecs)?;
    let nodes = PyList::empty(py);
    let weights = PyList::empty(py);
    for q in r.quadratures {
        nodes.append(PyArray1::from_vec(py, q.nodes))?;
        weights.append(PyArray1::from_vec(py, q.weights))?;
    }
    d.set_item("nodes", nodes)?;
    d.set_item("weights", weights)?;
    Ok(d)
}

/// A loss given by Python callables, `loss_and_grad(w) -> (L, ∇L)` and
/// `hvp(w, v)`, as an eosflow objective (for the flow integrator). The
/// first error of a callable is kept (re-raised by the caller) and turns
/// every later evaluation into NaN, which stops the integrator.
struct PyObjective {
    loss_and_grad: Py<PyAny>,
    hvp: Py<PyAny>,
    dim: usize,
    si: ScaleInvariance,
    error: Mutex<Option<PyErr>>,
}

impl PyObjective {
    fn guarded(&self, out: &mut [f64], f: impl FnOnce(Python<'_>, &mut [f64]) -> PyResult<f64>) -> f64 {
        if self.error.lock().unwrap().is_some() {
            out.fill(f64::NAN);
            return f64::NAN;
        }
        match Python::attach(|py| f(py, out)) {
            Ok(v) => v,
            Err(e) => {
                *self.error.lock().unwrap() = Some(e);
                out.fill(f64::NAN);
                f64::NAN
            }
        }
    }

    fn take_error(&self) -> Option<PyErr> {
        self.error.lock().unwrap().take()
    }
}

impl eosflow::Objective for PyObjective {
    fn dim(&self) -> usize {
        self.dim
    }
    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        self.guarded(grad, |py, g| {
            let out = self.loss_and_grad.call1(py, (PyArray1::from_slice(py, w),))?;
            let (loss, gr): (f64, Bound<'_, PyAny>) = out.extract(py).map_err(|_| {
                PyValueError::new_err("loss_and_grad must return a pair (loss: float, gradient: float64 array)")
            })?;
            copy_vector(&gr, g, "loss_and_grad's gradient")?;
            Ok(loss)
        })
    }
    fn scale_invariance(&self) -> ScaleInvariance {
        self.si.clone()
    }
}

impl eosflow::Hessian for PyObjective {
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        self.guarded(out, |py, o| {
            let r = self.hvp.call1(py, (PyArray1::from_slice(py, w), PyArray1::from_slice(py, v)))?;
            copy_vector(r.bind(py), o, "hvp")?;
            Ok(0.0)
        });
    }
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(eosflow::HvpAt::new(self, w))
    }
}

/// The sharpness-reduction flow (eq. 3 / eq. 8) from ζ0 on Python callables
/// (see `eosflow.sharpness_flow`).
#[pyfunction]
#[pyo3(signature = (loss_and_grad, hvp, zeta0, block, invariant, c_b, tau_max, tol, grad_tol, eigengap_tol, max_steps, max_step))]
#[allow(clippy::too_many_arguments)]
fn sharpness_flow<'py>(
    py: Python<'py>,
    loss_and_grad: Py<PyAny>,
    hvp: Py<PyAny>,
    zeta0: PyReadonlyArray1<'py, f64>,
    block: Option<Vec<usize>>,
    invariant: bool,
    c_b: Option<f64>,
    tau_max: f64,
    tol: f64,
    grad_tol: f64,
    eigengap_tol: f64,
    max_steps: usize,
    max_step: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    use eosflow::flow::{Flow, FlowParams, FlowTime};
    let z0 = vector(&zeta0);
    let obj = PyObjective {
        loss_and_grad,
        hvp,
        dim: z0.len(),
        si: scale_invariance(block, invariant),
        error: Mutex::new(None),
    };
    let time = match c_b {
        None => FlowTime::GdWd,
        Some(c_b) => FlowTime::QuasiRmsprop { c_b },
    };
    let params = FlowParams { time, tau_max, tol, grad_tol, eigengap_tol, max_steps, max_step, ..Default::default() };
    let mut points = Vec::new();
    let result = Flow::new(&obj, &z0, params).and_then(|mut flow| {
        points.push(flow.point().clone());
        let info = flow.run(&mut |p| points.push(p.clone()))?;
        Ok(info)
    });
    if let Some(e) = obj.take_error() {
        return Err(e);
    }
    let info = result.map_err(|e| PyValueError::new_err(e.to_string()))?;
    let d = PyDict::new(py);
    let col = |f: &dyn Fn(&eosflow::flow::FlowPoint) -> f64| points.iter().map(f).collect::<Vec<f64>>();
    d.set_item("tau", PyArray1::from_vec(py, col(&|p| p.tau)))?;
    d.set_item("sharpness", PyArray1::from_vec(py, col(&|p| p.sharpness)))?;
    d.set_item("lambda2", PyArray1::from_vec(py, col(&|p| p.lambda2.unwrap_or(f64::NAN))))?;
    d.set_item("grad_gamma_norm", PyArray1::from_vec(py, col(&|p| p.grad_gamma_norm)))?;
    d.set_item("loss", PyArray1::from_vec(py, col(&|p| p.loss)))?;
    d.set_item("off_manifold", PyArray1::from_vec(py, col(&|p| p.off_manifold)))?;
    let zeta: Vec<Vec<f64>> = points.iter().map(|p| p.zeta.clone()).collect();
    d.set_item("zeta", numpy::PyArray2::from_vec2(py, &zeta).map_err(|e| PyValueError::new_err(e.to_string()))?)?;
    let stop = serde_json::to_value(info.stop).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    d.set_item("stop", stop.as_str().unwrap_or("?"))?;
    d.set_item("steps", info.steps)?;
    d.set_item("rejected", info.rejected)?;
    d.set_item("gradients", info.counts.gradients)?;
    d.set_item("hvps", info.counts.hvps)?;
    Ok(d)
}

/// η̃ = η̂/((1 − η̂λ̂)‖w‖²), Lemma 3.1.
#[pyfunction]
fn effective_lr(lr: f64, wd: f64, w_norm: f64) -> f64 {
    eosflow::eos::effective_lr(lr, wd, w_norm)
}

/// η_in = η̂λ̂ (Section 4.2.2).
#[pyfunction]
fn intrinsic_lr(lr: f64, wd: f64) -> f64 {
    eosflow::eos::intrinsic_lr(lr, wd)
}

/// The regime of threshold 2/η̃ against sharpness S with relative band b.
#[pyfunction]
fn regime(two_over_eff_lr: f64, sharpness: f64, band: f64) -> PyResult<&'static str> {
    if !(band > 0.0 && band < 1.0) {
        return Err(PyValueError::new_err(format!("band = {band} must be in (0, 1)")));
    }
    Ok(RegimeBand { band }.classify(two_over_eff_lr, sharpness).as_str())
}

// --------------------------------------------------------------------- runs

/// Progress and Ctrl-C for a run in Rust: at most every `interval` seconds
/// (and at the last step) it takes the GIL, lets Python run its signal
/// handlers and calls the user's callback. A KeyboardInterrupt or an error
/// of the callback cancels the run, which then finishes its step and writes
/// its directory (resumable) before the error is raised.
struct PyProgress {
    callback: Option<Py<PyAny>>,
    total: u64,
    interval: f64,
    last: Option<std::time::Instant>,
    token: CancelToken,
    error: Mutex<Option<PyErr>>,
}

impl PyProgress {
    fn new(callback: Option<Py<PyAny>>, total: u64, token: CancelToken) -> Self {
        Self { callback, total, interval: 0.1, last: None, token, error: Mutex::new(None) }
    }

    fn poll(&mut self, step: u64, rec: Option<&StepRecord>) {
        let now = std::time::Instant::now();
        let due = step >= self.total || self.last.is_none_or(|l| now.duration_since(l).as_secs_f64() >= self.interval);
        if !due || self.token.is_cancelled() {
            return;
        }
        self.last = Some(now);
        let failed = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(cb) = &self.callback {
                let info = PyDict::new(py);
                if let Some(r) = rec {
                    info.set_item("loss", r.loss)?;
                    info.set_item("two_over_eff_lr", r.two_over_eff_lr)?;
                    info.set_item("sharpness", r.sharpness)?;
                }
                cb.call1(py, (step, self.total, info))?;
            }
            Ok(())
        });
        if let Err(e) = failed {
            *self.error.lock().unwrap() = Some(e);
            self.token.cancel();
        }
    }

    fn take_error(&self) -> Option<PyErr> {
        self.error.lock().unwrap().take()
    }
}

impl Observer for PyProgress {
    fn on_step(&mut self, rec: &StepRecord, _w: &[f64]) -> Result<(), ObserverError> {
        self.poll(rec.step, Some(rec));
        Ok(())
    }
    fn on_sharpness(&mut self, rec: &SharpnessRecord) -> Result<(), ObserverError> {
        self.poll(rec.step, None);
        Ok(())
    }
}

fn outcome_dict<'py>(py: Python<'py>, o: &api::RunOutcome) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("dir", o.dir.display().to_string())?;
    let status = serde_json::to_value(&o.summary.status).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    d.set_item("status", status["status"].as_str().unwrap_or("?"))?;
    d.set_item("last_step", o.summary.last_step)?;
    Ok(d)
}

/// Runs `cfg` into `dir` with the GIL released, progress through Python.
fn run_with_progress<'py>(
    py: Python<'py>,
    cfg: eosflow_cli::config::Config,
    dir: PathBuf,
    force: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let token = CancelToken::new();
    let mut obs = PyProgress::new(progress, cfg.run.steps, token.clone());
    let res = py.detach(|| api::run(&cfg, &dir, force, &token, false, Some(&mut obs)));
    finish_run(py, res, &obs)
}

fn finish_run<'py>(
    py: Python<'py>,
    res: anyhow::Result<api::RunOutcome>,
    obs: &PyProgress,
) -> PyResult<Bound<'py, PyDict>> {
    let out = res.map_err(run_err)?;
    if let Some(e) = obs.take_error() {
        if e.is_instance_of::<PyKeyboardInterrupt>(py) {
            return Err(PyKeyboardInterrupt::new_err(format!(
                "interrupted after step {}: {} is written and resumable (eosflow.resume({:?}))",
                out.summary.last_step,
                out.dir.display(),
                out.dir.display().to_string()
            )));
        }
        return Err(e);
    }
    outcome_dict(py, &out)
}

fn resolve_dir(out: Option<String>, name: &str) -> PathBuf {
    out.map(PathBuf::from).unwrap_or_else(|| api::default_dir(name))
}

/// A single-run preset into a run directory (see `eosflow.reproduce`).
#[pyfunction]
#[pyo3(signature = (preset, out, force, set, progress))]
fn reproduce<'py>(
    py: Python<'py>,
    preset: &str,
    out: Option<String>,
    force: bool,
    set: Vec<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg = api::preset_config(preset, &set).map_err(run_err)?;
    let dir = resolve_dir(out, &cfg.name);
    run_with_progress(py, cfg, dir, force, progress)
}

/// A config given as TOML text (see `eosflow.run`); `origin` resolves its
/// relative paths and names it in errors.
#[pyfunction]
#[pyo3(signature = (toml_text, origin, out, force, set, progress))]
fn run_toml<'py>(
    py: Python<'py>,
    toml_text: &str,
    origin: &str,
    out: Option<String>,
    force: bool,
    set: Vec<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg = api::config_from_toml(toml_text, Path::new(origin), &set).map_err(run_err)?;
    let dir = resolve_dir(out, &cfg.name);
    run_with_progress(py, cfg, dir, force, progress)
}

/// The resolved config of a preset or TOML text, as TOML.
#[pyfunction]
#[pyo3(signature = (preset, toml_text, origin, set))]
fn resolve_config(preset: Option<&str>, toml_text: Option<&str>, origin: &str, set: Vec<String>) -> PyResult<String> {
    let cfg = match (preset, toml_text) {
        (Some(p), _) => api::preset_config(p, &set),
        (None, Some(t)) => api::config_from_toml(t, Path::new(origin), &set),
        (None, None) => return Err(PyValueError::new_err("give a preset or a config")),
    }
    .map_err(run_err)?;
    api::config_to_toml(&cfg).map_err(run_err)
}

/// Continues a run directory (see `eosflow.resume`); None when it was complete.
#[pyfunction]
#[pyo3(signature = (dir, steps, progress))]
fn resume<'py>(
    py: Python<'py>,
    dir: &str,
    steps: Option<u64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let plan = api::plan_resume(Path::new(dir), steps).map_err(run_err)?;
    let token = CancelToken::new();
    let mut obs = PyProgress::new(progress, plan.cfg.run.steps, token.clone());
    let res = py.detach(|| api::resume(plan, &token, false, Some(&mut obs)));
    match res {
        Ok(None) => Ok(None),
        Ok(Some(o)) => finish_run(py, Ok(o), &obs).map(Some),
        Err(e) => Err(run_err(e)),
    }
}

/// A config given as a dict (its JSON text) as TOML text: tables, arrays
/// and scalars carry over; `None` has no TOML form and is refused by key.
#[pyfunction]
fn json_to_toml(json: &str) -> PyResult<String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| PyValueError::new_err(e.to_string()))?;
    fn find_null(v: &serde_json::Value, path: &str) -> Option<String> {
        match v {
            serde_json::Value::Null => Some(path.to_string()),
            serde_json::Value::Object(m) => m
                .iter()
                .find_map(|(k, x)| find_null(x, &if path.is_empty() { k.clone() } else { format!("{path}.{k}") })),
            serde_json::Value::Array(a) => {
                a.iter().enumerate().find_map(|(i, x)| find_null(x, &format!("{path}[{i}]")))
            }
            _ => None,
        }
    }
    if let Some(key) = find_null(&v, "") {
        return Err(PyValueError::new_err(format!(
            "config key {key} is None, which TOML cannot hold: leave the key out for its default"
        )));
    }
    if !v.is_object() {
        return Err(PyValueError::new_err(
            "a config is a dict of sections ({'problem': {...}, 'optimizer': {...}, ...})",
        ));
    }
    let t: toml::Table = serde_json::from_value(v).map_err(|e| PyValueError::new_err(format!("config: {e}")))?;
    toml::to_string(&t).map_err(|e| PyValueError::new_err(format!("config: {e}")))
}

/// Every preset: (name, figure, what it shows, expected time).
#[pyfunction]
fn presets() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    api::presets()
}

/// The labels of a multi-run preset's variants (empty for a single run).
#[pyfunction]
fn preset_variants(name: &str) -> PyResult<Vec<&'static str>> {
    api::preset_variants(name).map_err(run_err)
}

/// A CSV file of a run directory as columns: (names, arrays). Numeric
/// columns become float64 (empty fields NaN); `step` and `hvps` int64;
/// true/false columns bool; others str lists.
#[pyfunction]
fn read_csv<'py>(py: Python<'py>, path: &str) -> PyResult<(Vec<String>, Bound<'py, PyList>)> {
    let mut rdr =
        csv::Reader::from_path(path).map_err(|e| EosflowError::new_err(format!("cannot read {path}: {e}")))?;
    let names: Vec<String> =
        rdr.headers().map_err(|e| EosflowError::new_err(format!("{path}: {e}")))?.iter().map(str::to_string).collect();
    let mut cols: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| EosflowError::new_err(format!("{path}, row {}: {e}", i + 2)))?;
        for (c, f) in cols.iter_mut().zip(rec.iter()) {
            c.push(f.to_string());
        }
    }
    let out = PyList::empty(py);
    for (name, col) in names.iter().zip(cols) {
        let ints = matches!(name.as_str(), "step" | "hvps" | "seed" | "steps");
        if ints && let Ok(v) = col.iter().map(|s| s.parse::<i64>()).collect::<Result<Vec<_>, _>>() {
            out.append(PyArray1::from_vec(py, v))?;
        } else if !col.is_empty() && col.iter().all(|s| s == "true" || s == "false") {
            out.append(PyArray1::from_vec(py, col.iter().map(|s| s == "true").collect::<Vec<bool>>()))?;
        } else if let Ok(v) = col
            .iter()
            .map(|s| if s.is_empty() { Ok(f64::NAN) } else { s.parse::<f64>() })
            .collect::<Result<Vec<f64>, _>>()
        {
            out.append(PyArray1::from_vec(py, v))?;
        } else {
            out.append(col)?;
        }
    }
    Ok((names, out))
}

/// The built-in 8×8 digits split as the digits presets use it:
/// (x_train, y_train, x_test, y_test, image shape).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn digits<'py>(
    py: Python<'py>,
    train_per_class: usize,
) -> PyResult<(
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<i64>>,
    Vec<usize>,
)> {
    let s = eosflow_nn::data::digits(train_per_class).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let lab = |v: &[u32]| v.iter().map(|&y| y as i64).collect::<Vec<i64>>();
    Ok((
        PyArray1::from_vec(py, s.train.x.clone()),
        PyArray1::from_vec(py, lab(&s.train.labels)),
        PyArray1::from_vec(py, s.test.x.clone()),
        PyArray1::from_vec(py, lab(&s.test.labels)),
        s.train.shape.clone(),
    ))
}

// ------------------------------------------------------------------ monitor

fn monitor_err(e: MonitorError) -> PyErr {
    match e {
        MonitorError::NonFinite { .. } => PyFloatingPointError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// The EoS monitor of a user's loop with its run directory (see
/// `eosflow.EoSMonitor`).
#[pyclass(unsendable)]
struct NativeMonitor {
    monitor: Monitor,
    run: Option<api::ExternalRun>,
    hvp: Py<PyAny>,
    /// The last record not yet written (metrics.csv always ends with the
    /// last step, as a run's does).
    pending: Option<(StepRecord, Vec<f64>)>,
    last_w: Vec<f64>,
    diverged: Option<(u64, String)>,
}

#[pymethods]
impl NativeMonitor {
    #[new]
    #[pyo3(signature = (hvp, dim, lr, wd, out, force, block, invariant, every, k, tol, max_basis, max_restarts, seed, band, log_every, steps, name, source, figures))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        hvp: Py<PyAny>,
        dim: usize,
        lr: f64,
        wd: f64,
        out: String,
        force: bool,
        block: Option<Vec<usize>>,
        invariant: bool,
        every: u64,
        k: usize,
        tol: f64,
        max_basis: usize,
        max_restarts: usize,
        seed: u64,
        band: f64,
        log_every: u64,
        steps: u64,
        name: String,
        source: String,
        figures: bool,
    ) -> PyResult<Self> {
        if !(band > 0.0 && band < 1.0) {
            return Err(PyValueError::new_err(format!("band = {band} must be in (0, 1)")));
        }
        let block_size = block.as_ref().map(Vec::len);
        let si = scale_invariance(block, invariant);
        let params = MonitorParams {
            lr,
            wd,
            sharpness_every: every,
            log_every,
            lanczos: lanczos_params(k, tol, max_basis, max_restarts, seed),
            band: RegimeBand { band },
        };
        let monitor = Monitor::new(dim, si, params.clone()).map_err(monitor_err)?;
        use eosflow_cli::problems::ExternalInvariance as E;
        let settings = api::ExternalSettings {
            name,
            dim,
            scale_invariance: match (invariant, block_size) {
                (false, _) => E::None,
                (true, None) => E::All,
                (true, Some(_)) => E::Block,
            },
            block_size: block_size.filter(|_| invariant),
            source,
            lr,
            wd,
            steps,
            log_every,
            sharpness: params,
            figures,
        };
        let run = api::ExternalRun::create(Path::new(&out), force, &settings).map_err(run_err)?;
        Ok(Self { monitor, run: Some(run), hvp, pending: None, last_w: Vec::new(), diverged: None })
    }

    /// One step of the loop: returns the step's record as a dict.
    #[pyo3(signature = (step, w, loss, grad))]
    fn observe<'py>(
        &mut self,
        py: Python<'py>,
        step: u64,
        w: PyReadonlyArray1<'py, f64>,
        loss: f64,
        grad: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        if self.run.is_none() {
            return Err(PyValueError::new_err("the monitor is closed"));
        }
        if let Some((s, _)) = &self.diverged {
            return Err(PyFloatingPointError::new_err(format!("the loop diverged at step {s}; the monitor is done")));
        }
        let w = vector(&w);
        let g = vector(&grad);
        let op = PyOp::new(py, self.hvp.bind(py).clone(), Some(&w), w.len(), "hvp");
        let res = self.monitor.observe(step, &w, loss, &g, &op);
        if let Some(e) = op.take_error() {
            return Err(e);
        }
        let st = match res {
            Ok(st) => st,
            Err(e) => {
                if let MonitorError::NonFinite { step, what } = &e {
                    self.diverged = Some((*step, what.clone()));
                }
                return Err(monitor_err(e));
            }
        };
        let run = self.run.as_mut().unwrap();
        let write = |e: ObserverError| EosflowError::new_err(format!("cannot write the run directory: {e}"));
        if let Some(s) = &st.sharpness {
            run.observer().on_sharpness(s).map_err(write)?;
        }
        if st.logged {
            run.observer().on_step(&st.record, &w).map_err(write)?;
            self.pending = None;
        } else {
            self.pending = Some((st.record.clone(), w.clone()));
        }
        self.last_w = w;
        let d = PyDict::new(py);
        let r = &st.record;
        d.set_item("step", r.step)?;
        d.set_item("loss", r.loss)?;
        d.set_item("grad_norm", r.grad_norm)?;
        d.set_item("w_norm", r.w_norm)?;
        d.set_item("eff_lr", r.eff_lr)?;
        d.set_item("two_over_eff_lr", r.two_over_eff_lr)?;
        d.set_item("sharpness", r.sharpness)?;
        d.set_item("regime", r.regime.map(|x| x.as_str()))?;
        d.set_item("eos_entry", st.eos_entry)?;
        if let Some(s) = &st.sharpness {
            d.set_item("hvps", s.hvps)?;
            d.set_item("converged", s.converged)?;
        }
        Ok(d)
    }

    /// Ends the run directory: the last row, w_final.npy, the figure,
    /// summary.json. `interrupted`: the loop stopped early (status
    /// "interrupted"). Returns the directory.
    #[pyo3(signature = (interrupted=false))]
    fn close(&mut self, py: Python<'_>, interrupted: bool) -> PyResult<String> {
        let Some(mut run) = self.run.take() else {
            return Err(PyValueError::new_err("the monitor is closed already"));
        };
        let write = |e: ObserverError| EosflowError::new_err(format!("cannot write the run directory: {e}"));
        if let Some((rec, w)) = self.pending.take() {
            run.observer().on_step(&rec, &w).map_err(write)?;
        }
        let last = self.monitor.last().map_or(0, |r| r.step);
        let status = match &self.diverged {
            Some((step, reason)) => Status::Diverged { step: *step, reason: reason.clone() },
            None if interrupted => Status::Interrupted { step: last },
            None => Status::Completed,
        };
        let summary = self.monitor.summary(status);
        let dir = run.dir().display().to_string();
        let w = std::mem::take(&mut self.last_w);
        py.detach(|| run.finish(&summary, &w)).map_err(run_err)?;
        Ok(dir)
    }

    /// The run directory.
    #[getter]
    fn dir(&self) -> Option<String> {
        self.run.as_ref().map(|r| r.dir().display().to_string())
    }
}

/// Builds the global thread pool eosflow parallelises ghost batches and
/// sweeps over with `n` threads (as the CLI does at start); false when a
/// pool existed already. The Python package calls it once at import.
#[pyfunction]
fn configure_threads(n: usize) -> bool {
    rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global().is_ok()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EosflowError", m.py().get_type::<EosflowError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(lanczos, m)?)?;
    m.add_function(wrap_pyfunction!(spherical_sharpness, m)?)?;
    m.add_function(wrap_pyfunction!(trace, m)?)?;
    m.add_function(wrap_pyfunction!(spectral_density, m)?)?;
    m.add_function(wrap_pyfunction!(sharpness_flow, m)?)?;
    m.add_function(wrap_pyfunction!(effective_lr, m)?)?;
    m.add_function(wrap_pyfunction!(intrinsic_lr, m)?)?;
    m.add_function(wrap_pyfunction!(regime, m)?)?;
    m.add_function(wrap_pyfunction!(reproduce, m)?)?;
    m.add_function(wrap_pyfunction!(run_toml, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_config, m)?)?;
    m.add_function(wrap_pyfunction!(resume, m)?)?;
    m.add_function(wrap_pyfunction!(json_to_toml, m)?)?;
    m.add_function(wrap_pyfunction!(configure_threads, m)?)?;
    m.add_function(wrap_pyfunction!(presets, m)?)?;
    m.add_function(wrap_pyfunction!(preset_variants, m)?)?;
    m.add_function(wrap_pyfunction!(read_csv, m)?)?;
    m.add_function(wrap_pyfunction!(digits, m)?)?;
    m.add_class::<NativeMonitor>()?;
    Ok(())
}
