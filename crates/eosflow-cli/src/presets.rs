//! Paper experiments shipped as configs (`configs/*.toml`, embedded).

pub struct Preset {
    pub name: &'static str,
    pub figure: &'static str,
    pub shows: &'static str,
    /// Measured on the 2-core reference machine (see README).
    pub expected_time: &'static str,
    pub toml: &'static str,
    /// Runs of a multi-run preset: (label, TOML merged into the base config).
    /// Empty for single runs.
    pub variants: &'static [(&'static str, &'static str)],
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "toy3d",
        figure: "Fig. 3 / App. F",
        shows: "3D scale-invariant loss: GD+WD enters EoS and drifts along Γ to the flattest minimiser",
        expected_time: "0.03 s",
        toml: include_str!("../../../configs/toy3d.toml"),
        variants: &[],
    },
    Preset {
        name: "fig1",
        figure: "Fig. 1 / App. P.1",
        shows: "matrix completion with BN (d=50, N=800): EoS, sharpness falls, low rank, test loss falls",
        expected_time: "~2 s",
        toml: include_str!("../../../configs/fig1.toml"),
        variants: &[],
    },
    Preset {
        name: "fig4",
        figure: "Fig. 4 / Sec. 5, App. O",
        shows: "linear regression with BN: EoS, period-2 h_t, φ_t drifts to the min-norm solution (M)",
        expected_time: "~0.4 s",
        toml: include_str!("../../../configs/fig4.toml"),
        variants: &[],
    },
    Preset {
        name: "fig6",
        figure: "Fig. 6 / App. P.1",
        shows: "matrix completion, d=50, N = 400/800/1200/1600 (4 runs in parallel)",
        expected_time: "~8 s (2 cores)",
        toml: include_str!("../../../configs/fig6.toml"),
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
        toml: include_str!("../../../configs/fig7.toml"),
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
        toml: include_str!("../../../configs/fig11.toml"),
        variants: &[],
    },
    Preset {
        name: "digits-mlp",
        figure: "Figs. 2, 13 on digits",
        shows: "SI MLP on the embedded 8×8 digits: after 100% train accuracy, sharpness falls and test accuracy rises",
        expected_time: "40 s",
        toml: include_str!("../../../configs/digits-mlp.toml"),
        variants: &[],
    },
    Preset {
        name: "digits-mlp-wd0",
        figure: "Fig. 13 (no WD) on digits",
        shows: "digits-mlp without weight decay: η_eff only falls, no EoS, no sharpness reduction",
        expected_time: "38 s",
        toml: include_str!("../../../configs/digits-mlp-wd0.toml"),
        variants: &[],
    },
    Preset {
        name: "digits-cnn",
        figure: "Fig. 2 on digits",
        shows: "small SI VGG-style CNN (Swish, mean pooling) on the digits: sharpness reduction, test accuracy rises",
        expected_time: "90 s",
        toml: include_str!("../../../configs/digits-cnn.toml"),
        variants: &[],
    },
    Preset {
        name: "digits-cnn-wd0",
        figure: "Fig. 13 (no WD) on digits",
        shows: "digits-cnn without weight decay: no EoS, no sharpness reduction",
        expected_time: "90 s",
        toml: include_str!("../../../configs/digits-cnn-wd0.toml"),
        variants: &[],
    },
    Preset {
        name: "digits-mlp-wd",
        figure: "Fig. 13 on digits (MLP)",
        shows: "digits-mlp with λ̂ = 0.05 and λ̂ = 0 side by side, overlaid in one figure (2 runs in parallel)",
        expected_time: "45 s (2 cores)",
        toml: include_str!("../../../configs/digits-mlp.toml"),
        variants: &[("wd0.05", "[optimizer]\nwd = 0.05\n"), ("wd0", "[optimizer]\nwd = 0.0\n")],
    },
    Preset {
        name: "digits-cnn-wd",
        figure: "Fig. 13 on digits (CNN)",
        shows: "digits-cnn with λ̂ = 0.05 and λ̂ = 0 side by side, overlaid in one figure (2 runs in parallel)",
        expected_time: "97 s (2 cores)",
        toml: include_str!("../../../configs/digits-cnn.toml"),
        variants: &[("wd0.05", "[optimizer]\nwd = 0.05\n"), ("wd0", "[optimizer]\nwd = 0.0\n")],
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Merges `patch` into `base` (tables recursively, other values replaced).
pub fn merge(base: &mut toml::Table, patch: &toml::Table) {
    for (k, v) in patch {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(p)) => merge(b, p),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}
