//! nn: networks on the digits or CIFAR-10 (App. P.2, Q.1): the section,
//! checks, construction and lines.

use super::{DataFile, ProblemKind};
use crate::config::{Config, DataConfig, check, positive};
use crate::plot::ProblemFigure;
use anyhow::{Result, bail};
use eosflow::problems::Problem;
use eosflow::run::RunSummary;
use serde::{Deserialize, Serialize};

/// `[problem] kind = "nn"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NnConfig {
    /// Dataset: "digits" (embedded 8×8 digits) or "cifar10" (binary files in `[data] cifar_dir`).
    #[serde(default = "digits")]
    pub dataset: String,
    /// Training examples per class, the first in file order. digits
    /// [default 100]: the rest are the test set. cifar10 [default: all
    /// 50,000]: 200 gives CIFAR-10-2k (App. Q.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_per_class: Option<usize>,
    /// The architecture.
    pub arch: Arch,
    /// si-mlp only: hidden widths [default: [256, 256]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<usize>>,
    /// si-mlp only: swish | relu [default: swish] (si-vgg always uses Swish,
    /// the ResNets ReLU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<eosflow_nn::Activation>,
    /// si-vgg only: conv channels and pools ("M"), e.g. "64 M 128 M"
    /// [default: VGG-11, config A].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vgg: Option<String>,
    /// si-vgg and the ResNets: channel multiplier [default: 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    /// γ of the final fixed BN [default: (3/10)·ln 91 ≈ 1.353, App. R].
    #[serde(default = "final_gamma")]
    pub final_gamma: f64,
    /// ce | mse.
    #[serde(default = "ce")]
    pub loss: eosflow_nn::LossKind,
    /// Ghost batch size B.
    #[serde(default = "n1000")]
    pub ghost_batch: usize,
    /// The Hessian (sharpness) uses the first this many training examples (0 = all).
    #[serde(default = "n5000")]
    pub hessian_examples: usize,
    /// ε of BN; 0 keeps the loss exactly scale-invariant.
    #[serde(default)]
    pub bn_eps: f64,
    /// BN statistics for test predictions: "train" (mean ghost-batch statistics) or "batch".
    #[serde(default = "test_bn_train")]
    pub test_bn: eosflow_nn::TestBn,
    /// Seed of the initial weights.
    #[serde(default)]
    pub init_seed: u64,
    /// Convolutions: "im2col" (im2col + matrix product) or "candle" (candle's conv2d).
    #[serde(default)]
    pub conv: eosflow_nn::ConvImpl,
    /// Element type of the network's computation: "f64" or "f32" (GPU-sized runs).
    #[serde(default)]
    pub precision: eosflow_nn::Precision,
    /// "cpu", or "cuda" / "cuda:N" (needs a build with `--features cuda`).
    #[serde(default = "cpu")]
    pub device: String,
    /// Ghost batches computed at once (0 = one per thread); each holds its
    /// own graph, so this bounds memory. Results do not depend on it.
    #[serde(default = "one_usize")]
    pub parallel_batches: usize,
}

/// The network architectures (`problem.arch`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Scale-invariant MLP (`hidden`, `activation`).
    SiMlp,
    /// Scale-invariant VGG (`vgg`, `width`; Fig. 16).
    SiVgg,
    /// Scale-invariant ResNet-20 (`width`; Fig. 17b).
    #[serde(rename = "si-resnet20")]
    SiResnet20,
    /// Standard pre-activation ResNet-20 (`width`; Fig. 17a), scale-invariant
    /// in its non-shortcut conv kernels.
    #[serde(rename = "resnet20")]
    Resnet20,
}

impl Arch {
    /// The name in `problem.arch`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::SiMlp => "si-mlp",
            Arch::SiVgg => "si-vgg",
            Arch::SiResnet20 => "si-resnet20",
            Arch::Resnet20 => "resnet20",
        }
    }

    /// Which of the architecture keys (`hidden`, `activation`, `vgg`,
    /// `width`) this architecture reads.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Arch::SiMlp => &["hidden", "activation"],
            Arch::SiVgg => &["vgg", "width"],
            Arch::SiResnet20 | Arch::Resnet20 => &["width"],
        }
    }
}

/// The architecture keys, each read by some architectures only.
const ARCH_KEYS: [&str; 4] = ["hidden", "activation", "vgg", "width"];

/// Run directories of format ≤ 1 wrote every architecture key whatever the
/// architecture; drops those that do not apply to `[problem] arch`, so the
/// config reads under format 2's rule.
pub fn migrate_format_1(problem: &mut toml::Table) {
    let arch = problem.get("arch").and_then(|a| a.as_str()).and_then(|a| Arch::deserialize(toml::Value::from(a)).ok());
    if let Some(arch) = arch {
        problem.retain(|k, _| !ARCH_KEYS.contains(&k) || arch.keys().contains(&k));
    }
}

fn one_usize() -> usize {
    1
}
fn cpu() -> String {
    "cpu".into()
}
fn digits() -> String {
    "digits".into()
}
fn n1000() -> usize {
    1000
}
fn n5000() -> usize {
    5000
}
fn mlp_hidden() -> Vec<usize> {
    vec![256, 256]
}
fn swish() -> eosflow_nn::Activation {
    eosflow_nn::Activation::Swish
}
fn vgg11() -> String {
    "64 M 128 M 256 256 M 512 512 M 512 512 M".into()
}
fn final_gamma() -> f64 {
    eosflow_nn::net::default_final_gamma()
}
fn ce() -> eosflow_nn::LossKind {
    eosflow_nn::LossKind::Ce
}
fn test_bn_train() -> eosflow_nn::TestBn {
    eosflow_nn::TestBn::Train
}

/// Parses `device`: "cpu", "cuda" (= "cuda:0") or "cuda:N".
pub fn parse_device(s: &str) -> Result<eosflow_nn::Compute> {
    match s {
        "cpu" => Ok(eosflow_nn::Compute::Cpu),
        "cuda" => Ok(eosflow_nn::Compute::Cuda(0)),
        _ => match s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Ok(eosflow_nn::Compute::Cuda(n)),
            None => bail!("problem.device = \"{s}\": expected \"cpu\", \"cuda\" or \"cuda:N\""),
        },
    }
}

/// Parses a VGG configuration: channel counts and "M" for 2×2 mean pooling.
pub fn parse_vgg(s: &str) -> Result<Vec<eosflow_nn::net::VggItem>> {
    use eosflow_nn::net::VggItem;
    let items: Vec<VggItem> = s
        .split_whitespace()
        .map(|t| match t {
            "M" | "m" => Ok(VggItem::Pool),
            _ => match t.parse::<usize>() {
                Ok(c) if c > 0 => Ok(VggItem::Conv(c)),
                _ => bail!("problem.vgg: `{t}` is neither a channel count nor M (mean pool); e.g. \"64 M 128 M\""),
            },
        })
        .collect::<Result<_>>()?;
    check(items.iter().any(|i| matches!(i, VggItem::Conv(_))), || "problem.vgg has no conv layer".into())?;
    Ok(items)
}

impl NnConfig {
    /// si-mlp's hidden widths (resolved: set by [`ProblemKind::resolve`]).
    fn hidden(&self) -> &[usize] {
        self.hidden.as_deref().unwrap_or(&[])
    }
    fn activation(&self) -> eosflow_nn::Activation {
        self.activation.unwrap_or_else(swish)
    }
    fn vgg(&self) -> &str {
        self.vgg.as_deref().unwrap_or("")
    }
    fn width(&self) -> f64 {
        self.width.unwrap_or(1.0)
    }
}

impl ProblemKind for NnConfig {
    fn kind(&self) -> &'static str {
        "nn"
    }
    fn seed(&self) -> u64 {
        self.init_seed
    }
    fn set_seeds(&mut self, s: u64) {
        // The dataset is fixed (embedded or user-supplied); seeds vary the init.
        self.init_seed = s;
    }
    /// Refuses an architecture key the chosen architecture does not read,
    /// and writes out the defaults of those it does.
    fn resolve(&mut self) -> Result<()> {
        let given = [
            ("hidden", self.hidden.is_some()),
            ("activation", self.activation.is_some()),
            ("vgg", self.vgg.is_some()),
            ("width", self.width.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(k, set)| *set && !self.arch.keys().contains(k)) {
            bail!(
                "problem.{key} does not apply to arch = \"{}\", which reads {}; remove it",
                self.arch.name(),
                self.arch.keys().iter().map(|k| format!("problem.{k}")).collect::<Vec<_>>().join(" and ")
            );
        }
        match self.arch {
            Arch::SiMlp => {
                self.hidden.get_or_insert_with(mlp_hidden);
                self.activation.get_or_insert_with(swish);
            }
            Arch::SiVgg => {
                self.vgg.get_or_insert_with(vgg11);
                self.width.get_or_insert(1.0);
            }
            Arch::SiResnet20 | Arch::Resnet20 => {
                self.width.get_or_insert(1.0);
            }
        }
        Ok(())
    }
    fn validate(&self, cfg: &Config) -> Result<()> {
        // An f32 HVP is within ~3e-6 of the f64 one (BENCHMARKS.md): a
        // Lanczos tolerance below that is never met, and the run would spend
        // every restart before reporting non-convergence.
        let sharpness_on = cfg.sharpness.every > 0 || cfg.run.dense_window.is_some();
        check(self.precision != eosflow_nn::Precision::F32 || !sharpness_on || cfg.sharpness.tol >= 1e-5, || {
            format!(
                "sharpness.tol = {:e} is below what an f32 network's HVP resolves (~3e-6 relative); \
                 with problem.precision = \"f32\" use sharpness.tol ≥ 1e-5 (the CIFAR presets use 1e-4), \
                 or precision = \"f64\"",
                cfg.sharpness.tol
            )
        })?;
        let only_cifar = DataConfig { cifar_dir: cfg.data.cifar_dir.clone(), ..Default::default() };
        match self.dataset.as_str() {
            "digits" => check(cfg.data.is_empty(), || {
                "[data] is not used with problem.dataset = \"digits\" (embedded); remove it".into()
            })?,
            "cifar10" => {
                check(cfg.data == only_cifar, || "[data]: with dataset = \"cifar10\" only cifar_dir is read".into())?;
                check(cfg.data.cifar_dir.is_some(), || {
                    "problem.dataset = \"cifar10\" needs the folder of the CIFAR-10 binary files: \
                     `--data DIR` or `[data] cifar_dir = \"DIR\"` (nothing is downloaded)"
                        .into()
                })?;
            }
            d => bail!("problem.dataset = {d:?}: use \"digits\" (built in) or \"cifar10\""),
        }
        check(self.train_per_class.is_none_or(|k| k >= 1), || "problem.train_per_class must be at least 1".into())?;
        if let Some(hidden) = &self.hidden {
            check(!hidden.is_empty() && hidden.iter().all(|&h| h >= 1), || {
                "problem.hidden must list at least one positive width".into()
            })?;
        }
        if let Some(vgg) = &self.vgg {
            parse_vgg(vgg)?;
        }
        if let Some(width) = self.width {
            positive("problem.width", width)?;
        }
        positive("problem.final_gamma", self.final_gamma)?;
        let b = self.ghost_batch;
        check(b >= 2, || format!("problem.ghost_batch = {b}: BN needs at least 2 examples"))?;
        check(self.bn_eps >= 0.0 && self.bn_eps.is_finite(), || "problem.bn_eps must be ≥ 0".into())
    }
    fn build(&self, cfg: &Config) -> Result<(Box<dyn Problem>, Vec<DataFile>)> {
        let (p, files) = build_net_problem(self, cfg)?;
        Ok((Box::new(p), files))
    }
    fn figure(&self) -> ProblemFigure {
        ProblemFigure::Network
    }
    fn variant_line(&self, label: &str, s: &RunSummary) -> String {
        let f = |k: &str| s.problem.get(k).and_then(|v| v.as_f64()).map_or("-".into(), |v| format!("{v:.4}"));
        format!(
            "{label}: test acc {} at fit -> {} (median of the last tenth; best {}); sharpness {} max after fit -> {} final",
            f("test_acc_at_fit"),
            f("test_acc_median_last_tenth"),
            f("best_test_acc"),
            f("sharpness_max_after_fit"),
            f("sharpness_final"),
        )
    }
}

/// The network problem of an `nn` section (`eval_every` is the log interval
/// so accuracies are computed on logged steps only) and its data as `.npy`
/// files: standardised examples flattened row-major (n × c·h·w) and int64
/// labels, for the training and the test set.
pub fn build_net_problem(nn: &NnConfig, cfg: &Config) -> Result<(eosflow_nn::NetProblem, Vec<DataFile>)> {
    use eosflow_nn::net;
    let split = match (nn.dataset.as_str(), &cfg.data.cifar_dir) {
        ("cifar10", Some(dir)) => eosflow_nn::data::cifar10(dir, nn.train_per_class)?,
        _ => eosflow_nn::data::digits(nn.train_per_class.unwrap_or(100))?,
    };
    let shape = &split.train.shape;
    let input = [shape[0], shape[1], shape[2]];
    let classes = split.train.classes;
    let (width, gamma) = (nn.width(), nn.final_gamma);
    let network = match nn.arch {
        Arch::SiMlp => net::si_mlp(shape, nn.hidden(), classes, nn.activation(), gamma)?,
        Arch::SiVgg => net::si_vgg(&parse_vgg(nn.vgg())?, width, input, classes, gamma)?,
        Arch::SiResnet20 => net::resnet20(true, width, input, classes, gamma)?,
        Arch::Resnet20 => net::resnet20(false, width, input, classes, gamma)?,
    };
    let params = eosflow_nn::NetParams {
        ghost_batch: nn.ghost_batch,
        hessian_examples: nn.hessian_examples,
        loss: nn.loss,
        bn_eps: nn.bn_eps,
        test_bn: nn.test_bn,
        init_seed: nn.init_seed,
        eval_every: cfg.run.log_every.max(1),
        conv: nn.conv,
        precision: nn.precision,
        compute: match parse_device(&nn.device)? {
            // Under MPI each rank takes the GPU of its node-local rank
            // (`cuda` alone); `cuda:N` is N on every rank.
            eosflow_nn::Compute::Cuda(0) if nn.device == "cuda" && crate::ranks::size() > 1 => {
                eosflow_nn::Compute::Cuda(crate::ranks::local_rank())
            }
            c => c,
        },
        parallel_batches: nn.parallel_batches,
    };
    let mut files = Vec::new();
    for (tag, d) in [("train", &split.train), ("test", &split.test)] {
        // CIFAR-10's standardised images are the user's files in f64 (1.2 GB
        // for the training set, per run): only the labels are copied.
        if nn.dataset != "cifar10" {
            files.push((format!("x_{tag}.npy"), crate::npy::encode_matrix(d.len(), d.example_size(), &d.x)?));
        }
        files.push((format!("y_{tag}.npy"), crate::npy::encode_labels(&d.labels)?));
    }
    let mut problem = eosflow_nn::NetProblem::new(network, &split.train, &split.test, params)?;
    if let Some(ex) = crate::ranks::exchange() {
        let batches = problem.sizes().0.div_ceil(nn.ghost_batch);
        if ex.size() > batches && crate::ranks::is_writer() {
            eprintln!(
                "note: {} ranks share {batches} ghost batches: {} ranks have none and only wait",
                ex.size(),
                ex.size() - batches
            );
        }
        problem = problem.with_exchange(ex);
    }
    Ok((problem, files))
}
