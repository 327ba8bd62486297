//! Paper experiments shipped as configs (`configs/*.toml`, embedded).

pub struct Preset {
    pub name: &'static str,
    pub figure: &'static str,
    pub shows: &'static str,
    /// Measured on the 2-core reference machine (see README): the whole
    /// run, or for the CIFAR-10 presets the cost of one step.
    pub expected_time: &'static str,
    /// Steps the paper ran, where that differs from ours or matters for
    /// the cost ("" when the preset is not a paper run at paper length).
    pub paper_steps: &'static str,
    pub toml: &'static str,
    /// TOML merged into `toml` first (a shipped config at other settings).
    pub patch: &'static str,
    /// Runs of a multi-run preset: (label, TOML merged into the base config;
    /// a top-level `base_preset = "name"` in it starts that run from another
    /// preset's config instead). Empty for single runs.
    pub variants: &'static [(&'static str, &'static str)],
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "toy3d",
        figure: "Fig. 3 / App. F",
        shows: "3D scale-invariant loss: GD+WD enters EoS and drifts along Γ to the flattest minimiser",
        expected_time: "0.03 s",
        paper_steps: "",
        toml: include_str!("../../../configs/toy3d.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "fig1",
        figure: "Fig. 1 / App. P.1",
        shows: "matrix completion with BN (d=50, N=800): EoS, sharpness falls, low rank, test loss falls",
        expected_time: "~2 s",
        paper_steps: "",
        toml: include_str!("../../../configs/fig1.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "fig4",
        figure: "Fig. 4 / Sec. 5, App. O",
        shows: "linear regression with BN: EoS, period-2 h_t, φ_t drifts to the min-norm solution (M)",
        expected_time: "~0.4 s",
        paper_steps: "",
        toml: include_str!("../../../configs/fig4.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "flow-toy3d",
        figure: "Fig. 3c, eq. (3)",
        shows: "toy3d, then the sharpness-reduction flow from its EoS entry's projection, against GD+WD",
        expected_time: "0.1 s",
        paper_steps: "",
        toml: include_str!("../../../configs/toy3d.toml"),
        // The flow reaches ζ* by τ ≈ 10 (GD+WD step 250 of 3000).
        patch: "name = \"flow-toy3d\"\n[flow]\nstart = \"eos_entry\"\ntau_max = 10.0\nrun_after = true\n",
        variants: &[],
    },
    Preset {
        name: "flow-fig4",
        figure: "Fig. 4, Thm 5.1, eq. (3)",
        shows: "fig4, then the flow from its EoS entry's projection: λ1 and ‖ζ − θ_M‖ against GD+WD's φ_t",
        expected_time: "~1 s",
        paper_steps: "",
        toml: include_str!("../../../configs/fig4.toml"),
        // Lanczos every 100 steps (not 1000) places the EoS entry to 100 steps;
        // the flow runs after the run (not in lockstep) and PNGs only keep
        // it under a second.
        patch: "name = \"flow-fig4\"\n[sharpness]\nevery = 100\n[flow]\nstart = \"eos_entry\"\nrun_after = true\nlockstep = false\n[output]\nformats = [\"png\"]\n",
        variants: &[],
    },
    Preset {
        name: "flow-fig1",
        figure: "Fig. 1, Sec. 6, eq. (3)",
        shows: "fig1, then the flow alone from its EoS entry: does it reach GD+WD's low rank and test loss?",
        expected_time: "~55 s",
        paper_steps: "",
        toml: include_str!("../../../configs/fig1.toml"),
        // D = 5000 with an 800-dimensional normal space: ∇_Γ by the residual
        // Jacobian's 800×800 Gram matrix. The step size is held by the
        // flow's stiffness, not by tol (1e-5 and 1e-6 take 252 and 260
        // steps); Lanczos at 1e-9 is 8% faster than 1e-11 with the same
        // endpoint to 10 digits.
        patch: "name = \"flow-fig1\"\n[flow]\nstart = \"eos_entry\"\ntol = 1e-6\n[flow.tangent.lanczos]\ntol = 1e-9\n",
        variants: &[],
    },
    Preset {
        name: "fig1-flow",
        figure: "Fig. 1 + eq. (3) in lockstep",
        shows: "fig1 with its flow run beside GD+WD from the EoS entry: flow_sharpness, dist_to_flow, phi_dist_to_flow",
        expected_time: "~60 s",
        paper_steps: "",
        toml: include_str!("../../../configs/fig1.toml"),
        // φ_t (a Gauss–Newton retraction at D = 5000) every 1000 steps.
        patch: "name = \"fig1-flow\"\n[flow]\nlockstep = true\nrun_after = false\nphi_every = 1000\ntol = 1e-6\n[flow.tangent.lanczos]\ntol = 1e-9\n",
        variants: &[],
    },
    Preset {
        name: "flow-tracking",
        figure: "Thm 4.6, Rem. 4.7",
        shows: "GD+WD from Thm 4.6's initialisation, 7 η_in × 5 seeds on toy3d and linreg_bn: max ‖θ_t − ζ(tη_in)‖ against η_in",
        expected_time: "~3 s (2 cores)",
        paper_steps: "",
        toml: "",
        patch: "",
        variants: &[
            ("toy3d", include_str!("../../../configs/tracking-toy3d.toml")),
            ("linreg_bn", include_str!("../../../configs/tracking-linreg.toml")),
        ],
    },
    Preset {
        name: "flow-rmsprop",
        figure: "Thm B.13, Cor. B.14",
        shows: "Scalar RMSprop on ½(uᵀv − 1)² (not scale-invariant), 5 η × 5 seeds: ‖w_t − ζ(tη²)‖ against its flow (8) in full space",
        expected_time: "~2.5 s (2 cores)",
        paper_steps: "",
        toml: "",
        patch: "",
        variants: &[("factorization", include_str!("../../../configs/tracking-factorization.toml"))],
    },
    Preset {
        name: "eos-entry",
        figure: "Thm 4.3",
        shows: "GD+WD from the stable regime near θ* into EoS on linreg_bn, 7 η_in × 5 seeds: the entry gap and ‖θ_t1 − θ*‖ against √η_in",
        expected_time: "~1 s (2 cores)",
        paper_steps: "",
        toml: "",
        patch: "",
        variants: &[("linreg_bn", include_str!("../../../configs/entry-linreg.toml"))],
    },
    Preset {
        name: "fig5",
        figure: "Fig. 5 / App. H.2, N.1",
        shows: "the RMS-drift (h, u) of eq. (16) along GD+WD (fig4, toy3d at λ̂ = 0.002): energy, phase portrait, periods against (17)",
        expected_time: "~0.6 s (2 cores)",
        paper_steps: "",
        toml: "",
        patch: "",
        variants: &[
            // fig4's run for 30,000 steps: the oscillation has settled by
            // step ~12,000.
            ("linreg_bn", "base_preset = \"fig4\"\n[run]\nsteps = 30000\n[drift]\nk_every = 100\n"),
            // η_in = 1e-3 (the preset's 0.04 damps the oscillation within
            // one period): 22 periods of ~70 steps, settled by step ~2,500.
            ("toy3d", "base_preset = \"toy3d\"\n[optimizer]\nwd = 0.002\n[run]\nsteps = 5000\n[drift]\nk_every = 10\n"),
        ],
    },
    Preset {
        name: "fig6",
        figure: "Fig. 6 / App. P.1",
        shows: "matrix completion, d=50, N = 400/800/1200/1600 (4 runs in parallel)",
        expected_time: "~8 s (2 cores)",
        paper_steps: "",
        toml: include_str!("../../../configs/fig6.toml"),
        patch: "",
        variants: &[
            ("N400", "[problem]\nn_obs = 400\n"),
            ("N800", "[problem]\nn_obs = 800\n"),
            ("N1200", "[problem]\nn_obs = 1200\n"),
            ("N1600", "[problem]\nn_obs = 1600\n"),
        ],
    },
    Preset {
        name: "fig7",
        figure: "Fig. 7 / App. P.1",
        shows: "matrix completion, d=100, N = 1600/2400/3200 (3 runs in parallel)",
        expected_time: "~33 s (2 cores)",
        paper_steps: "",
        toml: include_str!("../../../configs/fig7.toml"),
        patch: "",
        variants: &[
            ("N1600", "[problem]\nn_obs = 1600\n"),
            ("N2400", "[problem]\nn_obs = 2400\n"),
            ("N3200", "[problem]\nn_obs = 3200\n"),
        ],
    },
    Preset {
        name: "fig11",
        figure: "Fig. 11 / App. P.3",
        shows: "fig1 around EoS entry, every step: 2/η̃ crosses the sharpness back and forth",
        expected_time: "~4 s",
        paper_steps: "",
        toml: include_str!("../../../configs/fig11.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "digits-mlp",
        figure: "Figs. 2, 13 on digits",
        shows: "SI MLP on the embedded 8×8 digits: after 100% train accuracy, sharpness falls and test accuracy rises",
        expected_time: "38 s",
        paper_steps: "",
        toml: include_str!("../../../configs/digits-mlp.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "digits-mlp-wd0",
        figure: "Fig. 13 (no WD) on digits",
        shows: "digits-mlp without weight decay: η_eff only falls, no EoS, no sharpness reduction",
        expected_time: "31 s",
        paper_steps: "",
        toml: include_str!("../../../configs/digits-mlp-wd0.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "digits-cnn",
        figure: "Fig. 2 on digits",
        shows: "small SI VGG-style CNN (Swish, mean pooling) on the digits: sharpness reduction, test accuracy rises",
        expected_time: "63 s",
        paper_steps: "",
        toml: include_str!("../../../configs/digits-cnn.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "digits-cnn-wd0",
        figure: "Fig. 13 (no WD) on digits",
        shows: "digits-cnn without weight decay: no EoS, no sharpness reduction",
        expected_time: "60 s",
        paper_steps: "",
        toml: include_str!("../../../configs/digits-cnn-wd0.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "digits-mlp-wd",
        figure: "Fig. 13 on digits (MLP)",
        shows: "digits-mlp with λ̂ = 0.05 and λ̂ = 0 side by side, overlaid in one figure (2 runs in parallel)",
        expected_time: "40 s (2 cores)",
        paper_steps: "",
        toml: include_str!("../../../configs/digits-mlp.toml"),
        patch: "",
        variants: &[("wd0.05", "[optimizer]\nwd = 0.05\n"), ("wd0", "[optimizer]\nwd = 0.0\n")],
    },
    Preset {
        name: "digits-cnn-wd",
        figure: "Fig. 13 on digits (CNN)",
        shows: "digits-cnn with λ̂ = 0.05 and λ̂ = 0 side by side, overlaid in one figure (2 runs in parallel)",
        expected_time: "81 s (2 cores)",
        paper_steps: "",
        toml: include_str!("../../../configs/digits-cnn.toml"),
        patch: "",
        variants: &[("wd0.05", "[optimizer]\nwd = 0.05\n"), ("wd0", "[optimizer]\nwd = 0.0\n")],
    },
    // The paper's CIFAR-10 runs. They read the user's CIFAR-10 files
    // (`--data DIR`) and are GPU-sized: `expected_time` is one gradient step
    // here, from `eosflow bench` per-image times at full width (VGG-11
    // 11.9 ms, SI ResNet-20 6.7 ms, ResNet-20 7.8 ms an image; README).
    Preset {
        name: "fig2",
        figure: "Fig. 2 / App. P.2",
        shows: "SI VGG-11 on CIFAR-10, GD+WD (η̂ 0.1, λ̂ 5e-4, ghost BN 1000): sharpness falls, test accuracy rises",
        expected_time: "~10 min/step",
        paper_steps: ">47k (60k here)",
        toml: include_str!("../../../configs/cifar-vgg11.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "fig10",
        figure: "Fig. 10 / App. P.2",
        shows: "fig2's first 1500 steps with the sharpness every 10 steps: it falls from ≫ 2/η̃₀ to 2/η̃ₜ",
        expected_time: "~10 min/step",
        paper_steps: "1.5k",
        toml: include_str!("../../../configs/cifar-vgg11.toml"),
        patch: "name = \"fig10\"\n[run]\nsteps = 1500\nlog_every = 10\n[sharpness]\nevery = 10\n",
        variants: &[],
    },
    Preset {
        name: "fig8",
        figure: "Fig. 8 / App. P.2",
        shows: "SI ResNet-20 (ReLU, non-smooth) on CIFAR-10: sharpness falls, test accuracy rises",
        expected_time: "~6 min/step",
        paper_steps: "not stated (30k here)",
        toml: include_str!("../../../configs/cifar-resnet20-si.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "fig9",
        figure: "Fig. 9 / App. P.2",
        shows: "standard pre-activation ResNet-20: sharpness of its scale-invariant block (partial Hessian) falls",
        expected_time: "~7 min/step",
        paper_steps: "not stated (30k here)",
        toml: include_str!("../../../configs/cifar-resnet20.toml"),
        patch: "",
        variants: &[],
    },
    Preset {
        name: "fig13",
        figure: "Fig. 13 / App. P.4",
        shows: "fig2 with λ̂ = 5e-4 and λ̂ = 0 overlaid: without WD no sharpness reduction (2 runs in parallel)",
        expected_time: "~20 min/step (2 runs)",
        paper_steps: ">47k (60k here)",
        toml: include_str!("../../../configs/cifar-vgg11.toml"),
        patch: "",
        variants: &[("wd5e-4", "[optimizer]\nwd = 5e-4\n"), ("wd0", "[optimizer]\nwd = 0.0\n")],
    },
    Preset {
        name: "fig14",
        figure: "Fig. 14 / App. P.4",
        shows: "SI VGG-11 on CIFAR-10-2k, λ̂ ∈ {0, 5e-5, 1e-4, 5e-4}: any λ̂ > 0 reduces sharpness, smaller λ̂ slower",
        expected_time: "~1.6 min/step (4 runs)",
        paper_steps: "400k",
        toml: include_str!("../../../configs/cifar2k-vgg11.toml"),
        patch: "",
        variants: &[
            ("wd0", "[optimizer]\nwd = 0.0\n[run]\nsteps = 400000\n"),
            ("wd5e-5", "[optimizer]\nwd = 5e-5\n[run]\nsteps = 400000\n"),
            ("wd1e-4", "[optimizer]\nwd = 1e-4\n[run]\nsteps = 400000\n"),
            ("wd5e-4", "[optimizer]\nwd = 5e-4\n[run]\nsteps = 400000\n"),
        ],
    },
    Preset {
        name: "fig15",
        figure: "Fig. 15 / App. P.5",
        shows: "SI VGG-11 on CIFAR-10-2k, η̂ ∈ {1e-5, 1e-3, 0.1, 10} at η̂λ̂ = 5e-5: same end state from any η̃₀",
        expected_time: "~1.6 min/step (4 runs)",
        paper_steps: "200k",
        toml: include_str!("../../../configs/cifar2k-vgg11.toml"),
        patch: "",
        variants: &[
            ("lr1e-5", "[optimizer]\nlr = 1e-5\nwd = 5.0\n"),
            ("lr1e-3", "[optimizer]\nlr = 1e-3\nwd = 5e-2\n"),
            ("lr0.1", "[optimizer]\nlr = 0.1\nwd = 5e-4\n"),
            ("lr10", "[optimizer]\nlr = 10.0\nwd = 5e-6\n"),
        ],
    },
    Preset {
        name: "fig18",
        figure: "Fig. 18 / App. R",
        shows: "SI VGG-11 on CIFAR-10-2k with the final BN's γ ∈ {0.5, 0.3·ln 91, 2.5, 5}: sharpness reduction for every γ",
        expected_time: "~1.6 min/step (4 runs)",
        paper_steps: "not stated (200k here)",
        toml: include_str!("../../../configs/cifar2k-vgg11.toml"),
        patch: "",
        variants: &[
            ("gamma0.5", "[problem]\nfinal_gamma = 0.5\n"),
            ("gamma0.3ln91", ""),
            ("gamma2.5", "[problem]\nfinal_gamma = 2.5\n"),
            ("gamma5", "[problem]\nfinal_gamma = 5.0\n"),
        ],
    },
];

impl Preset {
    /// The preset's config: `toml` with `patch`, then the run's variant
    /// patch (label, TOML) if any, then the command line's `--set`s.
    pub fn config(&self, variant: Option<(&str, &str)>, sets: &[String]) -> anyhow::Result<crate::config::Config> {
        let (table, origin) = self.table(variant)?;
        crate::config::parse_table_with_sets(table, &origin, sets)
    }

    /// The TOML table [`Preset::config`] parses (before `--set`), and its
    /// origin for messages ("preset fig14 (wd0)").
    pub fn table(&self, variant: Option<(&str, &str)>) -> anyhow::Result<(toml::Table, String)> {
        let mut table: toml::Table = toml::from_str(self.toml)?;
        merge(&mut table, &toml::from_str(self.patch)?);
        let mut origin = format!("preset {}", self.name);
        if let Some((label, patch)) = variant {
            let mut patch: toml::Table = toml::from_str(patch)?;
            if let Some(base) = patch.remove("base_preset") {
                let name = base.as_str().unwrap_or_default();
                let Some(b) = find(name).filter(|b| b.variants.is_empty()) else {
                    anyhow::bail!("preset {} ({label}): base_preset {base} is not a single-run preset", self.name);
                };
                table = toml::from_str(b.toml)?;
                merge(&mut table, &toml::from_str(b.patch)?);
            }
            merge(&mut table, &patch);
            origin = format!("{origin} ({label})");
        }
        Ok((table, origin))
    }
}

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Merges `patch` into `base` (tables recursively, other values replaced).
fn merge(base: &mut toml::Table, patch: &toml::Table) {
    for (k, v) in patch {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(p)) => merge(b, p),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}
