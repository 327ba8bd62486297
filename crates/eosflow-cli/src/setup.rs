//! Turns a validated [`Config`] into a problem, an initial point, an
//! optimizer and runner parameters.

use crate::config::{Config, InitKind, OptimizerConfig, ProblemConfig, SchedulerKind, check_w0};
use anyhow::{Context, Result, bail};
use eosflow::eos::RegimeBand;
use eosflow::linalg::norm;
use eosflow::optim::{
    ConstantLr, GdWd, GwsiScheduler, LrScheduler, Optimizer, RmspropScheduler, ScalarRmsprop, SphericalGd,
};
use eosflow::problems::{LinregBn, LinregData, LinregInit, MatcompBn, MatcompData, Problem, Toy3d};
use eosflow::run::RunParams;

/// Everything a run needs.
pub struct Prepared {
    pub problem: Box<dyn Problem>,
    pub optimizer: Box<dyn Optimizer>,
    pub params: RunParams,
    /// Values derived from the config (e.g. GWSI's ṽ0, β, η), for summary.json.
    pub derived: serde_json::Map<String, serde_json::Value>,
    /// Files for the run directory's `data/` folder: (name, .npy bytes).
    pub data_files: Vec<DataFile>,
}

/// A file of the run directory's `data/` folder: (name, .npy bytes).
pub type DataFile = (String, Vec<u8>);

/// The problem a config describes, and the `.npy` files of its data.
pub fn build_problem(cfg: &Config) -> Result<(Box<dyn Problem>, Vec<DataFile>)> {
    match &cfg.problem {
        ProblemConfig::Toy3d { seed, w0_domain } => {
            let mut p = Toy3d::new(*seed);
            p.w0_domain = *w0_domain;
            Ok((Box::new(p), Vec::new()))
        }
        ProblemConfig::MatcompBn { d, rank, n_obs, seed, init_std, init_seed, n_singular } => {
            let data = match (&cfg.data.m_npy, &cfg.data.omega_npy) {
                (Some(mp), Some(op)) => {
                    let (r, c, m) = crate::npy::read_matrix(mp)?;
                    if r != c {
                        bail!("{}: M is {r}×{c}, expected a square matrix", mp.display());
                    }
                    let omega = crate::npy::read_positions(op)?;
                    MatcompData { d: r, m, omega }
                }
                _ => MatcompData::generate(*d, *rank, *n_obs, *seed),
            };
            let dd = data.d;
            let files = vec![
                ("m.npy".to_string(), crate::npy::encode_matrix(dd, dd, &data.m)?),
                ("omega.npy".to_string(), crate::npy::encode_positions(&data.omega)?),
            ];
            let std = init_std.unwrap_or(1.0 / (dd as f64).sqrt());
            let mut p = MatcompBn::new(data, std, *init_seed)?;
            p.n_singular = *n_singular;
            Ok((Box::new(p), files))
        }
        ProblemConfig::LinregBn { d, n, n_test, seed, init, init_std, init_seed } => {
            let data = match (&cfg.data.x_npy, &cfg.data.y_npy) {
                (Some(xp), Some(yp)) => {
                    let (rows, cols, x) = crate::npy::read_matrix(xp)?;
                    let y = crate::npy::read_vector(yp, Some(rows))
                        .with_context(|| format!("y_npy must have one target per row of {}", xp.display()))?;
                    let (x_test, y_test) = match (&cfg.data.x_test_npy, &cfg.data.y_test_npy) {
                        (Some(xt), Some(yt)) => {
                            let (rt, ct, x_test) = crate::npy::read_matrix(xt)?;
                            if ct != cols {
                                bail!("{} has {ct} columns but {} has {cols}", xt.display(), xp.display());
                            }
                            (x_test, crate::npy::read_vector(yt, Some(rt))?)
                        }
                        _ => (Vec::new(), Vec::new()),
                    };
                    LinregData { d: cols, x, y, x_test, y_test, truth: None }
                }
                _ => LinregData::generate(*d, *n, *n_test, *seed),
            };
            let init = match init {
                InitKind::Uniform => LinregInit::Uniform,
                InitKind::Gaussian => LinregInit::Gaussian { std: *init_std },
            };
            let mut files = vec![
                ("x.npy".to_string(), crate::npy::encode_matrix(data.n(), data.d, &data.x)?),
                ("y.npy".to_string(), crate::npy::encode_vector(&data.y)?),
            ];
            if !data.y_test.is_empty() {
                files.push(("x_test.npy".into(), crate::npy::encode_matrix(data.y_test.len(), data.d, &data.x_test)?));
                files.push(("y_test.npy".into(), crate::npy::encode_vector(&data.y_test)?));
            }
            if let Some(t) = &data.truth {
                files.push(("w_gt.npy".into(), crate::npy::encode_vector(&t.w)?));
                files.push(("b_gt.npy".into(), crate::npy::encode_vector(&[t.b])?));
            }
            let p = LinregBn::new(data, init, *init_seed)?;
            Ok((Box::new(p), files))
        }
        ProblemConfig::Nn { .. } => {
            let (p, files) = build_net_problem(cfg)?;
            Ok((Box::new(p), files))
        }
    }
}

/// The network problem of an `nn` config (`eval_every` is the log interval so
/// accuracies are computed on logged steps only) and its data as `.npy`
/// files: standardised examples flattened row-major (n × c·h·w) and int64
/// labels, for the training and the test set.
pub fn build_net_problem(cfg: &Config) -> Result<(eosflow_nn::NetProblem, Vec<DataFile>)> {
    use eosflow_nn::net;
    let ProblemConfig::Nn {
        dataset,
        train_per_class,
        arch,
        hidden,
        activation,
        vgg,
        width,
        final_gamma,
        loss,
        ghost_batch,
        hessian_examples,
        bn_eps,
        test_bn,
        init_seed,
        conv,
        precision,
        device,
        parallel_batches,
        ..
    } = &cfg.problem
    else {
        bail!("not an nn problem");
    };
    let split = match (dataset.as_str(), &cfg.data.cifar_dir) {
        ("cifar10", Some(dir)) => eosflow_nn::data::cifar10(dir, *train_per_class)?,
        _ => eosflow_nn::data::digits(train_per_class.unwrap_or(100))?,
    };
    let shape = &split.train.shape;
    let input = [shape[0], shape[1], shape[2]];
    let classes = split.train.classes;
    let network = match arch.as_str() {
        "si-mlp" => net::si_mlp(shape, hidden, classes, *activation, *final_gamma)?,
        "si-vgg" => net::si_vgg(&crate::config::parse_vgg(vgg)?, *width, input, classes, *final_gamma)?,
        "si-resnet20" => net::resnet20(true, *width, input, classes, *final_gamma)?,
        _ => net::resnet20(false, *width, input, classes, *final_gamma)?,
    };
    let params = eosflow_nn::NetParams {
        ghost_batch: *ghost_batch,
        hessian_examples: *hessian_examples,
        loss: *loss,
        bn_eps: *bn_eps,
        test_bn: *test_bn,
        init_seed: *init_seed,
        eval_every: cfg.run.log_every.max(1),
        conv: *conv,
        precision: *precision,
        compute: crate::config::parse_device(device)?,
        parallel_batches: *parallel_batches,
    };
    let mut files = Vec::new();
    for (tag, d) in [("train", &split.train), ("test", &split.test)] {
        // CIFAR-10's standardised images are the user's files in f64 (1.2 GB
        // for the training set, per run): only the labels are copied.
        if dataset != "cifar10" {
            files.push((format!("x_{tag}.npy"), crate::npy::encode_matrix(d.len(), d.example_size(), &d.x)?));
        }
        files.push((format!("y_{tag}.npy"), crate::npy::encode_labels(&d.labels)?));
    }
    Ok((eosflow_nn::NetProblem::new(network, &split.train, &split.test, params)?, files))
}

pub fn prepare(cfg: &Config) -> Result<Prepared> {
    cfg.validate()?;
    let (problem, mut data_files) = build_problem(cfg)?;
    let dim = problem.dim();
    let w0 = if let Some(w) = &cfg.init.w0 {
        if w.len() != dim {
            bail!("init.w0 has {} entries, but the problem has {dim} parameters", w.len());
        }
        w.clone()
    } else if let Some(p) = &cfg.init.w0_npy {
        crate::npy::read_vector(p, Some(dim))?
    } else {
        problem.initial_point()
    };
    check_w0("initial weights", &w0)?;
    if !data_files.is_empty() {
        data_files.push(("w0.npy".into(), crate::npy::encode_vector(&w0)?));
    }
    if cfg.sharpness.every > 0 && cfg.sharpness.k > dim {
        bail!("sharpness.k = {} exceeds the number of parameters {dim}", cfg.sharpness.k);
    }
    let mut derived = serde_json::Map::new();
    let optimizer: Box<dyn Optimizer> = match &cfg.optimizer {
        OptimizerConfig::GdWd { lr, wd } => {
            derived.insert("intrinsic_lr".into(), (lr * wd).into());
            derived.insert("initial_eff_lr".into(), eosflow::eos::effective_lr(*lr, *wd, norm(&w0)).into());
            Box::new(GdWd::new(*lr, *wd, w0))
        }
        OptimizerConfig::Sphere { scheduler, eff_lr, eta, beta, v0, lr, wd } => {
            let sched: Box<dyn LrScheduler> = match scheduler {
                SchedulerKind::Constant => Box::new(ConstantLr { lr: eff_lr.unwrap() }),
                SchedulerKind::Rmsprop => {
                    Box::new(RmspropScheduler { v: v0.unwrap(), eta: eta.unwrap(), beta: beta.unwrap() })
                }
                SchedulerKind::Gwsi => {
                    let s = match (lr, wd) {
                        (Some(lr), Some(wd)) => GwsiScheduler::from_gd_wd(*lr, *wd, norm(&w0)).unwrap(),
                        _ => GwsiScheduler { v: v0.unwrap(), eta: eta.unwrap(), beta: beta.unwrap() },
                    };
                    derived.insert("gwsi_v0".into(), s.v.into());
                    derived.insert("gwsi_beta".into(), s.beta.into());
                    derived.insert("gwsi_eta".into(), s.eta.into());
                    Box::new(s)
                }
            };
            Box::new(SphericalGd::new(w0, sched))
        }
        OptimizerConfig::ScalarRmsprop { eta, beta, v0 } => Box::new(ScalarRmsprop::new(*eta, *beta, *v0, w0)),
    };
    let s = &cfg.sharpness;
    let params = RunParams {
        steps: cfg.run.steps,
        log_every: cfg.run.log_every,
        sharpness_every: s.every,
        lanczos: s.lanczos(),
        band: RegimeBand { band: s.eos_band },
        dense_window: cfg.run.dense_window.map(|[a, b]| (a, b)),
        checkpoint_every: cfg.run.checkpoint_every,
        checkpoint_min_interval_s: cfg.run.checkpoint_min_interval_s,
    };
    let problem = crate::fault::wrap(problem)?;
    Ok(Prepared { problem, optimizer, params, derived, data_files })
}
