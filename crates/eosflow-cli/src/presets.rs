//! Paper experiments shipped as configs (`configs/*.toml`, embedded).

pub struct Preset {
    pub name: &'static str,
    pub figure: &'static str,
    pub shows: &'static str,
    /// Measured on the 2-core reference machine (see README).
    pub expected_time: &'static str,
    pub toml: &'static str,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "toy3d",
        figure: "Fig. 3 / App. F",
        shows: "3D scale-invariant loss: GD+WD enters EoS and drifts along Γ to the flattest minimiser",
        expected_time: "< 0.1 s (+ figures ~0.5 s)",
        toml: include_str!("../../../configs/toy3d.toml"),
    },
    Preset {
        name: "fig4",
        figure: "Fig. 4 / Sec. 5, App. O",
        shows: "linear regression with BN: EoS, period-2 oscillation h_t, drift of φ_t to the min-norm solution (M)",
        expected_time: "~0.5 s (+ figures ~1 s)",
        toml: include_str!("../../../configs/fig4.toml"),
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}
