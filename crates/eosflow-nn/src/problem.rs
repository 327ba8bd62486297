//! A network on a dataset as an eosflow [`Problem`]: full-batch loss over
//! ghost batches, exact gradient and HVP, accuracy and L_min metrics.

use std::cell::RefCell;

use candle_core::{DType, Device, Tensor, Var};
use eosflow::objective::Counted;
use eosflow::problems::{Problem, StepView, Tracker, TrackerStateError};
use eosflow::run::Column;
use eosflow::spectrum::LinOp;
use eosflow::{EvalFailure, Hessian, Objective, ScaleInvariance};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

use crate::NnError;
use crate::data::Dataset;
use crate::forward::{self, BnSource, ConvImpl, Dual, LossKind, Pass};
use crate::net::{Affine, Module, Net};

/// Which BN statistics test-set predictions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestBn {
    /// Per BN layer, the mean over the training ghost batches of their μ and
    /// σ² (weighted by batch size) from the training forward pass at the same
    /// w — the statistics the network was trained with. With one ghost batch
    /// these are the full-training-set statistics.
    Train,
    /// Each test ghost batch uses its own statistics (transductive).
    Batch,
}

/// The floating-point type the network is computed in. Parameters,
/// gradients and HVPs cross the eosflow interface as f64 either way; only
/// the candle computation changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Exact to rounding in f64 (ε ≈ 2.2e-16): the tested path.
    #[default]
    F64,
    /// f32 (ε ≈ 1.2e-7), for GPU-sized runs. Measured against f64 at the
    /// same w and v: HVP relative error 1.3e-6 on small VGG and ResNet
    /// nets (tests/precision.rs), 3.2e-6 on VGG-11/4 with 260 CIFAR-shaped
    /// images (BENCHMARKS.md) — the sharpness to ~5 digits; the identity
    /// tests need f64.
    F32,
}

impl Precision {
    /// The candle element type.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F64 => DType::F64,
            Precision::F32 => DType::F32,
        }
    }
}

/// Where the network is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compute {
    /// The CPU (rayon over ghost batches and convolution tiles).
    #[default]
    Cpu,
    /// CUDA device `ordinal`; needs eosflow built with `--features cuda`.
    /// Convolutions then use candle's cuDNN-free conv2d.
    Cuda(usize),
}

impl Compute {
    /// The candle device, or an error saying how to get one.
    pub fn device(self) -> Result<Device, NnError> {
        match self {
            Compute::Cpu => Ok(Device::Cpu),
            // Device::new_cuda exists in every candle build (a stub without
            // its cuda feature), so this line is type-checked here too.
            Compute::Cuda(i) if cfg!(feature = "cuda") => Ok(Device::new_cuda(i)?),
            Compute::Cuda(_) => Err(NnError::NoCuda),
        }
    }
}

/// Settings of [`NetProblem`].
#[derive(Clone, Debug, PartialEq)]
pub struct NetParams {
    /// Ghost batch size B: the training set is cut, in its fixed order, into
    /// consecutive batches of B (the last may be smaller), each normalised
    /// with its own BN statistics. Paper: 1000.
    pub ghost_batch: usize,
    /// The Hessian (sharpness) uses the first `hessian_examples` training
    /// examples with the same ghost batching (paper: 5000, after Cohen et
    /// al.); 0 or ≥ n means all.
    pub hessian_examples: usize,
    /// Loss on the logits.
    pub loss: LossKind,
    /// ε in √(σ² + ε). 0 keeps the loss exactly scale-invariant (ε > 0, as in
    /// PyTorch's 1e-5, breaks L(cw) = L(w) for small ‖w‖).
    pub bn_eps: f64,
    /// BN statistics for the test set.
    pub test_bn: TestBn,
    /// Seed of the initial weights (ChaCha8 stream 1).
    pub init_seed: u64,
    /// Accuracy and test metrics are computed every this many steps (the
    /// run's log interval) by the tracker.
    pub eval_every: u64,
    /// How convolutions are computed (same function, different summation
    /// order and speed).
    pub conv: ConvImpl,
    /// Element type of the computation (f64 unless asked).
    pub precision: Precision,
    /// Device of the computation.
    pub compute: Compute,
    /// At most this many ghost batches are in flight at once (0: as many as
    /// rayon has threads). Each holds its own graph — at CIFAR size GBs —
    /// while convolutions and the fused BN/Swish ops already spread one
    /// batch over all cores. Results do not depend on it.
    pub parallel_batches: usize,
}

impl Default for NetParams {
    fn default() -> Self {
        NetParams {
            ghost_batch: 1000,
            hessian_examples: 5000,
            loss: LossKind::Ce,
            bn_eps: 0.0,
            test_bn: TestBn::Train,
            init_seed: 0,
            eval_every: 1,
            conv: ConvImpl::default(),
            precision: Precision::F64,
            compute: Compute::Cpu,
            parallel_batches: 1,
        }
    }
}

/// Train and test loss and accuracy at one w.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetEval {
    /// Training loss (ghost-batch BN), as the optimizer sees it.
    pub train_loss: f64,
    /// Fraction of training examples classified correctly.
    pub train_acc: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Fraction of test examples classified correctly.
    pub test_acc: f64,
}

struct Batch {
    x: Tensor,
    labels: Tensor,
    onehot: Tensor,
    n: usize,
}

fn batches(d: &Dataset, size: usize, dtype: DType, dev: &Device) -> Result<Vec<Batch>, NnError> {
    let per = d.example_size();
    let mut out = Vec::new();
    for start in (0..d.len()).step_by(size.max(1)) {
        let n = size.min(d.len() - start);
        let mut shape = vec![n];
        shape.extend_from_slice(&d.shape);
        let x = Tensor::from_slice(&d.x[start * per..(start + n) * per], shape.as_slice(), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        let lab = &d.labels[start..start + n];
        let labels = Tensor::from_slice(lab, (n, 1), dev)?;
        let mut oh = vec![0.0; n * d.classes];
        for (i, &y) in lab.iter().enumerate() {
            oh[i * d.classes + y as usize] = 1.0;
        }
        let onehot = Tensor::from_vec(oh, (n, d.classes), &Device::Cpu)?.to_dtype(dtype)?.to_device(dev)?;
        out.push(Batch { x, labels, onehot, n });
    }
    Ok(out)
}

/// Processes that run one run in lockstep (MPI ranks) and share its ghost
/// batches. Process r evaluates the contiguous block
/// [`batch_block`]`(G, size, r)` of every sum's G batches; the weighted sum
/// Σ_g (n_g/n)·v_g is then accumulated along the ranks in batch order — rank
/// r receives the running sum of the batches before its block
/// ([`BatchExchange::recv_prev`]), adds its own batches one by one and passes
/// it on ([`BatchExchange::send_next`]), and the last rank's total goes to
/// all ([`BatchExchange::broadcast_from_last`]). These are the additions one
/// process makes, in its order, so gradients and HVPs are the same bits
/// whatever the number of processes (summing per process first and then
/// across processes would change the order, and the bits); each rank sends
/// one vector per evaluation.
pub trait BatchExchange: Send + Sync {
    /// This process's index, 0 ≤ rank < size.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Receives into `buf` what rank − 1 sent with [`BatchExchange::send_next`].
    fn recv_prev(&self, buf: &mut [f64]);
    /// Sends `buf` to rank + 1.
    fn send_next(&self, buf: &[f64]);
    /// Overwrites `buf` on every rank with the last rank's `buf`.
    fn broadcast_from_last(&self, buf: &mut [f64]);
}

/// The ghost batches process `rank` of `size` evaluates out of `g`: a
/// contiguous block, the blocks in rank order covering 0..g, their sizes
/// differing by at most one.
///
/// ```
/// use eosflow_nn::problem::batch_block;
/// assert_eq!((0..3).map(|r| batch_block(4, 3, r)).collect::<Vec<_>>(), [0..1, 1..2, 2..4]);
/// ```
pub fn batch_block(g: usize, size: usize, rank: usize) -> std::ops::Range<usize> {
    (rank * g / size)..((rank + 1) * g / size)
}

/// A network trained full-batch on a dataset with ghost BN.
///
/// L(w) = Σ_g (n_g/n)·L_g(w), L_g the mean loss over ghost batch g with BN
/// statistics of g. Gradients and HVPs are sums over ghost batches in a fixed
/// order, so memory is one ghost batch's graph (per thread) and the result
/// does not depend on the number of threads.
pub struct NetProblem {
    net: Net,
    params: NetParams,
    train: Vec<Batch>,
    hess: Vec<Batch>,
    test: Vec<Batch>,
    n_train: usize,
    n_hess: usize,
    n_test: usize,
    w0: Vec<f64>,
    lmin: f64,
    device: Device,
    /// The first backend failure of an evaluation, until taken
    /// ([`Objective::take_failure`]).
    failure: Mutex<Option<EvalFailure>>,
    /// The other processes of this run, if it is shared
    /// ([`NetProblem::with_exchange`]).
    exchange: Option<Arc<dyn BatchExchange>>,
}

impl NetProblem {
    /// Checks that the data fit the network and cuts the ghost batches.
    pub fn new(net: Net, train: &Dataset, test: &Dataset, params: NetParams) -> Result<NetProblem, NnError> {
        for (set, d) in [("training", train), ("test", test)] {
            if d.shape != net.input_shape {
                let (got, expected) = (d.shape.clone(), net.input_shape.clone());
                return Err(NnError::InputShape { set, got, network: net.name.clone(), expected });
            }
            if d.classes != net.classes {
                return Err(NnError::Classes { set, got: d.classes, network_classes: net.classes });
            }
        }
        if train.is_empty() {
            return Err(NnError::EmptyTrainingSet);
        }
        for (set, d) in [("training", train), ("test", test)] {
            if let Some((index, &label)) = d.labels.iter().enumerate().find(|(_, y)| **y as usize >= d.classes) {
                return Err(NnError::Label { set, index, label, classes: d.classes });
            }
            if d.x.len() != d.len() * d.example_size() {
                return Err(NnError::DataSize { set, values: d.x.len(), examples: d.len(), shape: d.shape.clone() });
            }
        }
        if params.ghost_batch < 2 {
            return Err(NnError::GhostBatchTooSmall { ghost_batch: params.ghost_batch });
        }
        let n_hess = if params.hessian_examples == 0 { train.len() } else { params.hessian_examples.min(train.len()) };
        let mut sets = vec![("training set", train.len()), ("Hessian subset", n_hess)];
        if params.test_bn == TestBn::Batch {
            sets.push(("test set", test.len()));
        }
        for (set, n) in sets {
            if n % params.ghost_batch == 1 {
                return Err(NnError::GhostBatchRemainder { ghost_batch: params.ghost_batch, set, n });
            }
        }
        let lmin = l_min(&net, params.loss);
        let w0 = net.init(params.init_seed);
        let (dt, device) = (params.precision.dtype(), params.compute.device()?);
        Ok(NetProblem {
            train: batches(train, params.ghost_batch, dt, &device)?,
            hess: batches(&train.prefix(n_hess), params.ghost_batch, dt, &device)?,
            test: batches(test, params.ghost_batch, dt, &device)?,
            device,
            n_train: train.len(),
            n_hess,
            n_test: test.len(),
            net,
            params,
            w0,
            lmin,
            failure: Mutex::new(None),
            exchange: None,
        })
    }

    /// Shares the ghost batches of every gradient, loss and HVP with the
    /// other processes of `exchange` ([`BatchExchange`]): the same results,
    /// bit for bit, each process evaluating about 1/size of the batches.
    /// The metrics' forward passes ([`NetProblem::evaluate`]) still run on
    /// every process.
    pub fn with_exchange(mut self, exchange: Arc<dyn BatchExchange>) -> Self {
        self.exchange = Some(exchange).filter(|e| e.size() > 1);
        self
    }

    /// The network.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The settings.
    pub fn params(&self) -> &NetParams {
        &self.params
    }

    /// Training examples n, Hessian examples, test examples.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.n_train, self.n_hess, self.n_test)
    }

    /// The loss's minimum value L_min: eq. (53) for cross-entropy on a
    /// network ending in BN with fixed γ and β = 0, 0 otherwise.
    pub fn l_min(&self) -> f64 {
        self.lmin
    }

    /// The label smoothing ε of that head ([`label_smoothing_epsilon`]).
    pub fn label_smoothing_epsilon(&self) -> Option<f64> {
        label_smoothing_epsilon(&self.net, self.params.loss)
    }

    /// Parameter tensors of w in layout order (constants, not `Var`s), on
    /// the problem's device and in its precision.
    pub fn param_tensors(&self, w: &[f64]) -> candle_core::Result<Vec<Tensor>> {
        assert_eq!(w.len(), self.net.dim(), "parameter vector length");
        self.net
            .params
            .iter()
            .map(|p| {
                Tensor::from_slice(&w[p.offset..p.offset + p.len()], p.shape.as_slice(), &Device::Cpu)
                    .and_then(|t| t.to_dtype(self.params.precision.dtype()))
                    .and_then(|t| t.to_device(&self.device))
            })
            .collect()
    }

    fn vars(&self, w: &[f64]) -> candle_core::Result<Vec<Var>> {
        self.param_tensors(w)?.into_iter().map(|t| Var::from_tensor(&t)).collect()
    }

    /// Keeps the first failure for [`Objective::take_failure`] and returns
    /// NaN, the value a failed evaluation reports.
    fn failed(&self, op: &'static str, e: candle_core::Error) -> f64 {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(EvalFailure { op, source: Box::new(e) });
        f64::NAN
    }

    /// The network on one batch: the logits (with their tangent along
    /// `dirs`), the mean loss and its directional derivative.
    fn batch_loss(
        &self,
        params: &[Tensor],
        dirs: Option<&[Tensor]>,
        b: &Batch,
        bn: BnSource,
    ) -> candle_core::Result<(Dual, Tensor, Option<Tensor>)> {
        let pass = Pass::new(params, dirs, bn, self.params.bn_eps).with_conv(self.params.conv);
        let z = pass.run(&self.net.modules, Dual { x: b.x.clone(), t: None })?;
        let (l, dl) = forward::loss(self.params.loss, &z, &b.labels, &b.onehot)?;
        Ok((z, l, dl))
    }

    /// f over the batches, at most `parallel_batches` at a time, results in
    /// batch order.
    fn over_batches<R: Send>(&self, batches: &[Batch], f: impl Fn(&Batch) -> R + Sync + Send) -> Vec<R> {
        let k = match self.params.parallel_batches {
            0 => batches.len().max(1),
            k => k,
        };
        let mut out = Vec::with_capacity(batches.len());
        for group in batches.chunks(k) {
            out.extend(group.par_iter().map(&f).collect::<Vec<R>>());
        }
        out
    }

    /// Σ_g (n_g/n)·f(batch g) over `batches` (f giving `len` values), in
    /// batch order. Alone, this process evaluates every batch; with an
    /// exchange, its block, and the sum runs along the ranks
    /// ([`BatchExchange`]). A batch that fails anywhere fails the
    /// evaluation everywhere: every rank takes part in every exchange, so
    /// none waits for one that gave up.
    fn batch_sum(
        &self,
        batches: &[Batch],
        n: usize,
        len: usize,
        f: impl Fn(&Batch) -> candle_core::Result<Vec<f64>> + Sync + Send,
    ) -> candle_core::Result<Vec<f64>> {
        let Some(ex) = &self.exchange else {
            let parts = self.over_batches(batches, f).into_iter().collect::<candle_core::Result<Vec<_>>>()?;
            let mut out = vec![0.0; len];
            Self::weighted_sum(batches, n, &parts, &mut out);
            return Ok(out);
        };
        let (size, rank) = (ex.size(), ex.rank());
        let mine = &batches[batch_block(batches.len(), size, rank)];
        let parts = self.over_batches(mine, f);
        // [failed batches, Σ (n_g/n)·v_g]: the failure count travels with the sum.
        let mut acc = vec![0.0; len + 1];
        if rank > 0 {
            ex.recv_prev(&mut acc);
        }
        let mut error = None;
        for (b, r) in mine.iter().zip(parts) {
            match r {
                Ok(v) if v.len() == len => {
                    let wgt = b.n as f64 / n as f64;
                    for (d, x) in acc[1..].iter_mut().zip(&v) {
                        *d += wgt * x;
                    }
                }
                other => {
                    acc[0] += 1.0;
                    let e = other
                        .err()
                        .unwrap_or_else(|| candle_core::Error::Msg("a ghost batch gave a wrong length".into()));
                    error.get_or_insert(e);
                }
            }
        }
        if rank + 1 < size {
            ex.send_next(&acc);
        }
        ex.broadcast_from_last(&mut acc);
        if let Some(e) = error {
            return Err(e);
        }
        if acc[0] != 0.0 {
            return Err(candle_core::Error::Msg(format!(
                "{} ghost batches failed on other ranks (their errors are in those ranks' output)",
                acc[0]
            )));
        }
        acc.remove(0);
        Ok(acc)
    }

    /// Σ_g (n_g/n)·parts_g into `out`: the ghost-batch weights, in batch
    /// order, that every sum over batches uses (so they agree bit for bit).
    fn weighted_sum(batches: &[Batch], n: usize, parts: &[Vec<f64>], out: &mut [f64]) {
        out.fill(0.0);
        for (g, b) in parts.iter().zip(batches) {
            let wgt = b.n as f64 / n as f64;
            for (d, s) in out.iter_mut().zip(g) {
                *d += wgt * s;
            }
        }
    }

    /// The gradients of `vars` from one backward pass, as a flat vector (a
    /// parameter the loss does not reach gets zeros).
    fn flatten_grads(&self, grads: &candle_core::backprop::GradStore, vars: &[Var]) -> candle_core::Result<Vec<f64>> {
        self.flatten_grads_with(grads, vars, 0)
    }

    /// [`Self::flatten_grads`] after `lead` leading slots (left 0).
    fn flatten_grads_with(
        &self,
        grads: &candle_core::backprop::GradStore,
        vars: &[Var],
        lead: usize,
    ) -> candle_core::Result<Vec<f64>> {
        let mut out = vec![0.0; lead + self.net.dim()];
        for (p, v) in self.net.params.iter().zip(vars) {
            if let Some(g) = grads.get(v.as_tensor()) {
                out[lead + p.offset..lead + p.offset + p.len()].copy_from_slice(&to_host(g)?);
            }
        }
        Ok(out)
    }

    /// Σ_g (n_g/n)·(L_g, ∇L_g) over `batches`.
    fn loss_grad_over(&self, batches: &[Batch], n: usize, w: &[f64], grad: &mut [f64]) -> candle_core::Result<f64> {
        let vars = self.vars(w)?;
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        // Per batch: the loss, then the gradient (summed as one vector: the
        // same additions as a separate sum of the losses).
        let sum = self.batch_sum(batches, n, self.net.dim() + 1, |b| {
            let (_, l, _) = self.batch_loss(&ts, None, b, BnSource::Batch(None))?;
            let g = l.backward()?;
            let mut v = self.flatten_grads_with(&g, &vars, 1)?;
            v[0] = scalar(&l)?;
            Ok(v)
        })?;
        grad.copy_from_slice(&sum[1..]);
        Ok(sum[0])
    }

    /// Σ_g (n_g/n)·∇²L_g(w)·v over `batches`, by reverse-over-forward.
    fn hvp_over(
        &self,
        batches: &[Batch],
        n: usize,
        vars: &[Var],
        v: &[f64],
        out: &mut [f64],
    ) -> candle_core::Result<()> {
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let dirs = self.param_tensors(v)?;
        let sum = self.batch_sum(batches, n, self.net.dim(), |b| {
            let (_, _, dl) = self.batch_loss(&ts, Some(&dirs), b, BnSource::Batch(None))?;
            // A tangent is always carried when `dirs` is given.
            let dl = dl.ok_or_else(|| candle_core::Error::Msg("the loss carries no tangent".into()))?;
            self.flatten_grads(&dl.backward()?, vars)
        })?;
        out.copy_from_slice(&sum);
        Ok(())
    }

    /// Loss and accuracy on the training and test sets at w: one forward pass
    /// over each set. A backend failure gives NaN values and is kept for
    /// [`Objective::take_failure`].
    pub fn evaluate(&self, w: &[f64]) -> NetEval {
        self.try_evaluate(w).unwrap_or_else(|e| {
            let nan = self.failed("forward pass", e);
            NetEval { train_loss: nan, train_acc: nan, test_loss: nan, test_acc: nan }
        })
    }

    /// [`NetProblem::evaluate`], returning candle's error.
    pub fn try_evaluate(&self, w: &[f64]) -> candle_core::Result<NetEval> {
        let ts = self.param_tensors(w)?;
        let run = |b: &Batch, bn: BnSource| -> candle_core::Result<(f64, usize)> {
            let (z, l, _) = self.batch_loss(&ts, None, b, bn)?;
            Ok((scalar(&l)?, forward::correct(&z.x, &b.labels)?))
        };
        let mut stats: Vec<(Tensor, Tensor)> = Vec::new();
        let (mut train_losses, mut train_ok) = (Vec::with_capacity(self.train.len()), 0);
        for b in &self.train {
            let rec = RefCell::new(Vec::new());
            let (l, c) = run(b, BnSource::Batch(Some(&rec)))?;
            train_losses.push(l);
            train_ok += c;
            let wgt = b.n as f64 / self.n_train as f64;
            let rec = rec.into_inner();
            if stats.is_empty() {
                stats =
                    rec.into_iter().map(|(m, v)| Ok(((m * wgt)?, (v * wgt)?))).collect::<candle_core::Result<_>>()?;
            } else {
                for (s, (m, v)) in stats.iter_mut().zip(rec) {
                    *s = ((&s.0 + (m * wgt)?)?, (&s.1 + (v * wgt)?)?);
                }
            }
        }
        let (mut test_loss, mut test_ok) = (0.0, 0);
        for b in &self.test {
            let bn = match self.params.test_bn {
                TestBn::Train => BnSource::Fixed(&stats),
                TestBn::Batch => BnSource::Batch(None),
            };
            let (l, c) = run(b, bn)?;
            test_loss += l * b.n as f64 / self.n_test.max(1) as f64;
            test_ok += c;
        }
        Ok(NetEval {
            train_loss: weighted_loss(&self.train, self.n_train, &train_losses),
            train_acc: train_ok as f64 / self.n_train as f64,
            test_loss,
            test_acc: test_ok as f64 / self.n_test.max(1) as f64,
        })
    }

    /// L(w) over the training set as one candle scalar built from `params`
    /// (one tensor per [`crate::net::ParamSpec`], in layout order) — for
    /// oracles and extensions that differentiate with candle directly. The
    /// graph spans every ghost batch, so memory grows with n.
    pub fn graph_loss(&self, params: &[Tensor]) -> candle_core::Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for b in &self.train {
            let (_, l, _) = self.batch_loss(params, None, b, BnSource::Batch(None))?;
            let l = (l * (b.n as f64 / self.n_train as f64))?; // same weight as loss_grad
            total = Some(match total {
                Some(t) => (t + l)?,
                None => l,
            });
        }
        Ok(total.expect("non-empty training set"))
    }
}

/// A tensor's entries as f64 on the host, whatever its type and device.
fn to_host(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()
}

fn scalar(t: &Tensor) -> candle_core::Result<f64> {
    t.to_dtype(DType::F64)?.to_scalar::<f64>()
}

/// Σ_g (n_g/n)·L_g, summed in batch order (as `loss_grad`, `loss` and
/// `evaluate` do, so the three agree bit for bit).
fn weighted_loss(batches: &[Batch], n: usize, losses: &[f64]) -> f64 {
    losses.iter().zip(batches).fold(0.0, |acc, (l, b)| acc + (b.n as f64 / n as f64) * l)
}

/// γ and C − 1 of a cross-entropy network ending in BN with fixed γ and
/// β = 0, the head App. R.2's L_min and label smoothing are about.
fn fixed_ce_head(net: &Net, loss: LossKind) -> Option<(f64, f64)> {
    match (loss, net.modules.last()) {
        (LossKind::Ce, Some(Module::BatchNorm { affine: Affine::Fixed { gamma, beta }, .. })) if *beta == 0.0 => {
            Some((*gamma, (net.classes - 1) as f64))
        }
        _ => None,
    }
}

/// L_min of eq. (53): ln(1 + (C−1)·exp(−γ·(√(C−1) + 1/√(C−1)))) for
/// cross-entropy after a final BN with fixed γ, β = 0 (App. R; balanced
/// classes); 0 for other heads and for MSE.
///
/// ```
/// use eosflow_nn::net::{si_mlp, Activation, default_final_gamma};
/// use eosflow_nn::LossKind;
/// let net = si_mlp(&[4], &[3], 10, Activation::Swish, default_final_gamma()).unwrap();
/// let l = eosflow_nn::problem::l_min(&net, LossKind::Ce);
/// assert!((l - (100.0f64 / 91.0).ln()).abs() < 1e-15);
/// ```
pub fn l_min(net: &Net, loss: LossKind) -> f64 {
    fixed_ce_head(net, loss).map_or(0.0, |(gamma, c1)| (1.0 + c1 * (-gamma * (c1.sqrt() + 1.0 / c1.sqrt())).exp()).ln())
}

/// The label smoothing ε the fixed head matches (App. R.2): at the loss's
/// minimisers the softmax gives ε/C to each wrong class and 1 − (1 − 1/C)ε
/// to the right one, with ε = C/((C−1) + exp(γ·(√(C−1) + 1/√(C−1)))).
/// None for other heads and for MSE.
///
/// ```
/// use eosflow_nn::net::{si_mlp, Activation, default_final_gamma};
/// use eosflow_nn::LossKind;
/// // γ = (3/10)·ln 91 on 10 classes is Szegedy et al.'s ε = 0.1.
/// let net = si_mlp(&[4], &[3], 10, Activation::Swish, default_final_gamma()).unwrap();
/// let eps = eosflow_nn::problem::label_smoothing_epsilon(&net, LossKind::Ce).unwrap();
/// assert!((eps - 0.1).abs() < 1e-15);
/// ```
pub fn label_smoothing_epsilon(net: &Net, loss: LossKind) -> Option<f64> {
    fixed_ce_head(net, loss).map(|(gamma, c1)| (c1 + 1.0) / (c1 + (gamma * (c1.sqrt() + 1.0 / c1.sqrt())).exp()))
}

impl Objective for NetProblem {
    fn dim(&self) -> usize {
        self.net.dim()
    }

    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        self.loss_grad_over(&self.train, self.n_train, w, grad).unwrap_or_else(|e| {
            let nan = self.failed("gradient", e);
            grad.fill(nan);
            nan
        })
    }

    fn loss(&self, w: &[f64]) -> f64 {
        let run = || -> candle_core::Result<f64> {
            let ts = self.param_tensors(w)?;
            let sum = self.batch_sum(&self.train, self.n_train, 1, |b| {
                let (_, l, _) = self.batch_loss(&ts, None, b, BnSource::Batch(None))?;
                Ok(vec![scalar(&l)?])
            })?;
            Ok(sum[0])
        };
        run().unwrap_or_else(|e| self.failed("loss", e))
    }

    fn scale_invariance(&self) -> ScaleInvariance {
        self.net.scale_invariance()
    }

    fn take_failure(&self) -> Option<EvalFailure> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// ∇²L(w) on the Hessian subset with the parameter tensors built once.
struct SubsetHessian<'a> {
    p: &'a NetProblem,
    vars: candle_core::Result<Vec<Var>>,
}

impl LinOp for SubsetHessian<'_> {
    fn dim(&self) -> usize {
        self.p.net.dim()
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let r = match &self.vars {
            Ok(vars) => self.p.hvp_over(&self.p.hess, self.p.n_hess, vars, x, y),
            Err(e) => Err(candle_core::Error::Msg(format!("parameter tensors: {e}"))),
        };
        if let Err(e) = r {
            y.fill(self.p.failed("hvp", e));
        }
    }
}

impl Hessian for NetProblem {
    /// ∇²L(w)·v of the full training loss.
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        if let Err(e) = self.vars(w).and_then(|vars| self.hvp_over(&self.train, self.n_train, &vars, v, out)) {
            out.fill(self.failed("hvp", e));
        }
    }

    /// The Hessian of the loss on the first `hessian_examples` training
    /// examples (the sharpness oracle of App. Q.3); equal to [`Hessian::hvp`]
    /// when that covers the training set.
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(SubsetHessian { p: self, vars: self.vars(w) })
    }
}

/// The network problem's metrics.csv columns (logged steps).
impl NetProblem {
    /// Fraction of training examples classified correctly.
    pub const TRAIN_ACC: Column = Column::new("train_acc");
    /// Test loss.
    pub const TEST_LOSS: Column = Column::new("test_loss");
    /// Fraction of test examples classified correctly.
    pub const TEST_ACC: Column = Column::new("test_acc");
    /// L − L_min (eq. 53).
    pub const LOSS_MINUS_LMIN: Column = Column::new("loss_minus_lmin");
    /// Test loss − L_min.
    pub const TEST_LOSS_MINUS_LMIN: Column = Column::new("test_loss_minus_lmin");
}

impl Problem for NetProblem {
    fn name(&self) -> &'static str {
        "nn"
    }

    fn training_examples(&self) -> Option<usize> {
        Some(self.n_train)
    }

    fn per_example_loss_sup(&self) -> Result<f64, String> {
        Err(match self.params.loss {
            LossKind::Ce => {
                "cross-entropy is unbounded in the logits; a final BN with fixed γ bounds a logit by \
                             γ·√(B − 1) within a ghost batch of B, but BN couples the batch's examples, outside \
                             Thm C.2's per-example setting"
            }
            LossKind::Mse => {
                "the squared loss of a network is bounded only through BN, which couples the \
                              batch's examples, outside Thm C.2's per-example setting"
            }
        }
        .into())
    }

    fn initial_point(&self) -> Vec<f64> {
        self.w0.clone()
    }

    /// Convolution and elementwise kernels, precision and device; matrix
    /// products are candle's (gemm, dispatched at run time to the CPU's SIMD).
    fn kernels(&self) -> String {
        let conv = match (self.params.conv, self.device.is_cpu()) {
            (ConvImpl::Im2col, true) => "eosflow im2col convolutions and fused BN/Swish/ReLU",
            _ => "candle's conv2d and elementwise ops",
        };
        let device = if self.device.is_cpu() { "cpu" } else { "cuda" };
        format!("{conv}; {:?} on {device}; candle gemm", self.params.precision)
    }

    fn tracker(&self) -> Box<dyn Tracker + '_> {
        Box::new(NetTracker { p: self, s: TrackerState::default(), last: None })
    }

    /// Every parameter tensor of the layout, by its path-like name.
    fn parameter_blocks(&self) -> Vec<(String, std::ops::Range<usize>)> {
        self.net.params.iter().map(|p| (p.name.clone(), p.offset..p.offset + p.len())).collect()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TrackerState {
    /// First evaluated step with 100% training accuracy.
    fit_step: Option<u64>,
    /// Test accuracy and training loss there.
    test_acc_at_fit: Option<f64>,
    train_loss_at_fit: Option<f64>,
    /// Best test accuracy seen and its step.
    best_test_acc: Option<(f64, u64)>,
    first: Option<(u64, NetEval)>,
    /// (step, test accuracy) at every evaluated step.
    #[serde(default)]
    test_acc: Vec<(u64, f64)>,
    /// (step, spherical sharpness) at every sharpness evaluation.
    #[serde(default)]
    sharpness: Vec<(u64, f64)>,
    /// The run's EoS entry (the runner's `eos_entry_step`, [`StepView::eos_entry`]),
    /// and the test accuracy at the first evaluated step from there on.
    #[serde(default)]
    eos_entry_step: Option<u64>,
    #[serde(default)]
    test_acc_at_eos_entry: Option<f64>,
}

struct NetTracker<'a> {
    p: &'a NetProblem,
    s: TrackerState,
    /// The last evaluated w and its evaluation: the summary's final numbers
    /// reuse it when w_T is that point.
    last: Option<(Vec<f64>, NetEval)>,
}

impl NetTracker<'_> {
    /// [`NetProblem::evaluate`], counted (one forward pass over the training
    /// set and one over the test set) and remembered.
    fn evaluate(&mut self, obj: &Counted, w: &[f64]) -> NetEval {
        if let Some((lw, e)) = &self.last
            && lw.as_slice() == w
        {
            return *e;
        }
        obj.add_forward_passes(2);
        let e = self.p.evaluate(w);
        self.last = Some((w.to_vec(), e));
        e
    }
}

impl Tracker for NetTracker<'_> {
    fn columns(&self) -> Vec<Column> {
        use NetProblem as P;
        vec![P::TRAIN_ACC, P::TEST_LOSS, P::TEST_ACC, P::LOSS_MINUS_LMIN, P::TEST_LOSS_MINUS_LMIN]
    }

    fn observe(&mut self, obj: &Counted, view: &StepView) -> Vec<f64> {
        let (step, w, eval) = (view.step, view.w, view.eval);
        if let Some(sharpness) = view.sharpness {
            self.s.sharpness.push((step, sharpness));
        }
        let row = if view.logged {
            let e = self.evaluate(obj, w);
            vec![e.train_acc, e.test_loss, e.test_acc, eval.loss - self.p.lmin, e.test_loss - self.p.lmin]
        } else {
            Vec::new()
        };
        if view.eos_entry {
            self.s.eos_entry_step = Some(step);
        }
        if !step.is_multiple_of(self.p.params.eval_every.max(1)) {
            return row;
        }
        let e = self.evaluate(obj, w);
        if self.s.eos_entry_step.is_some() && self.s.test_acc_at_eos_entry.is_none() {
            self.s.test_acc_at_eos_entry = Some(e.test_acc);
        }
        if self.s.first.is_none() {
            self.s.first = Some((step, e));
        }
        if self.s.fit_step.is_none() && e.train_acc == 1.0 {
            self.s.fit_step = Some(step);
            self.s.test_acc_at_fit = Some(e.test_acc);
            self.s.train_loss_at_fit = Some(e.train_loss);
        }
        self.s.test_acc.push((step, e.test_acc));
        if self.s.best_test_acc.is_none_or(|(b, _)| e.test_acc > b) {
            self.s.best_test_acc = Some((e.test_acc, step));
        }
        row
    }

    fn summary(&mut self, obj: &Counted, w_final: &[f64]) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let e = self.evaluate(obj, w_final);
        let mut m = serde_json::Map::new();
        let (n, nh, nt) = self.p.sizes();
        m.insert("network".into(), json!(self.p.net.name));
        m.insert("parameters".into(), json!(self.p.net.dim()));
        m.insert("train_examples".into(), json!(n));
        m.insert("hessian_examples".into(), json!(nh));
        m.insert("test_examples".into(), json!(nt));
        m.insert("l_min".into(), json!(self.p.lmin));
        if let Some((s, e0)) = self.s.first {
            m.insert(
                "first_eval".into(),
                json!({"step": s, "train_acc": e0.train_acc, "test_acc": e0.test_acc, "train_loss": e0.train_loss}),
            );
        }
        m.insert("fit_step".into(), json!(self.s.fit_step));
        m.insert("test_acc_at_fit".into(), json!(self.s.test_acc_at_fit));
        m.insert("train_loss_at_fit".into(), json!(self.s.train_loss_at_fit));
        m.insert("test_acc_at_eos_entry".into(), json!(self.s.test_acc_at_eos_entry));
        m.insert("best_test_acc".into(), json!(self.s.best_test_acc.map(|b| b.0)));
        m.insert("best_test_acc_step".into(), json!(self.s.best_test_acc.map(|b| b.1)));
        // Test accuracy fluctuates by ±1% from step to step at EoS: the
        // median over the last tenth of the evaluated steps is the robust
        // end-of-run number.
        if let Some(&(last, _)) = self.s.test_acc.last() {
            let from = last - last / 10;
            let mut tail: Vec<f64> = self.s.test_acc.iter().filter(|(s, _)| *s >= from).map(|(_, a)| *a).collect();
            tail.sort_by(f64::total_cmp);
            m.insert("test_acc_median_last_tenth".into(), json!(tail[tail.len() / 2]));
        }
        // The paper's claim is about what happens after fitting: the largest
        // sharpness from the fit step on, and where it ends.
        if let Some(fit) = self.s.fit_step {
            let after: Vec<&(u64, f64)> = self.s.sharpness.iter().filter(|(s, _)| *s >= fit).collect();
            if let Some(&&(step, max)) = after.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
                m.insert("sharpness_max_after_fit".into(), json!(max));
                m.insert("sharpness_max_after_fit_step".into(), json!(step));
            }
        }
        if let Some(&(_, last)) = self.s.sharpness.last() {
            m.insert("sharpness_final".into(), json!(last));
        }
        m.insert("final_train_acc".into(), json!(e.train_acc));
        m.insert("final_test_acc".into(), json!(e.test_acc));
        m.insert("final_train_loss".into(), json!(e.train_loss));
        m.insert("final_test_loss".into(), json!(e.test_loss));
        m
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(&self.s).expect("tracker state")
    }

    fn load(&mut self, state: &serde_json::Value) -> Result<(), TrackerStateError> {
        self.s = TrackerStateError::read("nn", state)?;
        Ok(())
    }
}
