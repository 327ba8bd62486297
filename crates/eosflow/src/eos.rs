//! Effective and intrinsic learning rates, and the Edge-of-Stability regime.

use serde::{Deserialize, Serialize};

/// Effective learning rate of GD+WD on a scale-invariant loss (Lemma 3.1):
///
/// η̃_t = η̂ / ((1 − η̂λ̂)·‖w_t‖²),
///
/// the step size of the equivalent projected GD on the unit sphere,
/// θ_{t+1} = Π(θ_t − η̃_t ∇L(θ_t)).
///
/// ```
/// let eta = eosflow::eos::effective_lr(0.5, 0.08, 2.0);
/// assert!((eta - 0.5 / (0.96 * 4.0)).abs() < 1e-15);
/// ```
pub fn effective_lr(lr: f64, wd: f64, w_norm: f64) -> f64 {
    lr / ((1.0 - lr * wd) * w_norm * w_norm)
}

/// Intrinsic learning rate η_in = η̂λ̂ (Section 4.2.2): one GD+WD step tracks a
/// time η_in of the sharpness-reduction flow (eq. 3).
pub fn intrinsic_lr(lr: f64, wd: f64) -> f64 {
    lr * wd
}

/// Where the dynamics stands relative to the stability threshold 2/η̃_t.
///
/// With S the spherical sharpness and b the relative band
/// ([`RegimeBand::band`]):
/// - `Stable`: 2/η̃ > (1 + b)·S — the descent lemma (Lemma 4.1) guarantees
///   the loss decreases;
/// - `EosAbove`: S ≤ 2/η̃ ≤ (1 + b)·S — at the edge, threshold just above;
/// - `EosBelow`: (1 − b)·S ≤ 2/η̃ < S — at the edge, threshold just below
///   (GD is locally unstable along the top eigenvector and oscillates);
/// - `Unstable`: 2/η̃ < (1 − b)·S — beyond the edge.
///
/// This is the paper's EoS (η̃_t ≈ 2/λ_max, App. G.3) with "≈" made a
/// documented relative band; S is evaluated at θ_t, as Q.3 does for matrix
/// completion and CIFAR. The default band is 10%: the paper's λ_max^{(t)}
/// is a supremum over the whole step θ_t → θ_t − η̃_t∇L(θ_t), and when the
/// oscillation across the manifold is large the sharpness at θ_t alone
/// underestimates it. In the App. F example (η_in = 0.04) GD+WD ends in a
/// period-2 orbit with λ1(θ_t) = 5.08, 2/η̃ = 5.49 and λ1 = 6 on Γ where the
/// step crosses it: 2/η̃ is 8% above λ1(θ_t) and 9% below λ1 on Γ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    Stable,
    EosAbove,
    EosBelow,
    Unstable,
}

impl Regime {
    /// The name written in metrics.csv.
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::Stable => "stable",
            Regime::EosAbove => "eos_above",
            Regime::EosBelow => "eos_below",
            Regime::Unstable => "unstable",
        }
    }

    /// True for both EoS sides.
    pub fn is_eos(self) -> bool {
        matches!(self, Regime::EosAbove | Regime::EosBelow)
    }
}

/// The relative band of [`Regime`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegimeBand {
    /// b in (0, 1): 2/η̃ within (1 ± b)·S counts as EoS.
    pub band: f64,
}

impl Default for RegimeBand {
    fn default() -> Self {
        Self { band: 0.1 }
    }
}

impl RegimeBand {
    /// Classifies threshold 2/η̃ = `two_over_eff_lr` against sharpness S.
    ///
    /// ```
    /// use eosflow::eos::{Regime, RegimeBand};
    /// let b = RegimeBand { band: 0.05 };
    /// assert_eq!(b.classify(3.0, 2.0), Regime::Stable);
    /// assert_eq!(b.classify(2.05, 2.0), Regime::EosAbove);
    /// assert_eq!(b.classify(1.95, 2.0), Regime::EosBelow);
    /// assert_eq!(b.classify(1.0, 2.0), Regime::Unstable);
    /// ```
    pub fn classify(&self, two_over_eff_lr: f64, sharpness: f64) -> Regime {
        let s = sharpness;
        let x = two_over_eff_lr;
        if x > (1.0 + self.band) * s {
            Regime::Stable
        } else if x >= s {
            Regime::EosAbove
        } else if x >= (1.0 - self.band) * s {
            Regime::EosBelow
        } else {
            Regime::Unstable
        }
    }
}

/// The Edge-of-Stability entry — one definition for the runner, every
/// problem and the theorem experiments: the first observation t that leaves
/// the stable regime,
///
/// 2/η̃_t ≤ (1 + b)·S_t,
///
/// after at least `run_in` consecutive observations with 2/η̃ > (1 + b)·S
/// (stable: the descent lemma holds, Lemma 4.1). This is t1 of Thms 3.2 and
/// 4.3, the growing effective LR reaching 2/λ1, with "reaching" read through
/// the same band b as the `regime` column: the entry is the first step whose
/// regime is not `stable` after a stable one. The band absorbs that S
/// measured at θ_t sits a little below λ1 on Γ during EoS (in the App. F
/// orbit S(θ_t) = 5.08 < 2/η̃ = 5.49 < 6 = λ1(ζ*)), so with b = 0 an entry
/// seen at θ_t can be missed. The run-in skips a start that is unstable
/// already (a large initial effective LR and its catapult are not an entry
/// from the stable regime).
///
/// What S is, is the caller's: the runner uses the spherical sharpness
/// measured at θ_t on its evaluation steps with b = `sharpness.eos_band`
/// (`eos_entry_step` in summary.json; resolution `sharpness.every`);
/// linreg_bn also applies the rule at every step to λ1(φ_t), the exact
/// sharpness at the projection onto Γ, with b = 0 and a run-in of 10 steps
/// (`eos_entry_step_on_phi`).
///
/// ```
/// use eosflow::eos::{EosEntry, EosEntryRule};
/// let rule = EosEntryRule { band: 0.1, run_in: 1 };
/// let mut e = EosEntry::default();
/// assert!(!e.observe(&rule, 0, 1.0, 2.0)); // unstable at the start: not an entry
/// assert!(!e.observe(&rule, 10, 3.0, 2.0)); // stable
/// assert!(e.observe(&rule, 20, 2.15, 2.0)); // within 10% of S after a stable step
/// assert_eq!(e.step(), Some(20));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EosEntry {
    /// The entry step, once found.
    #[serde(rename = "eos_entry")]
    pub entry: Option<u64>,
    /// Consecutive stable observations up to the last one.
    pub stable_run: u64,
}

/// The two settings of [`EosEntry`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EosEntryRule {
    /// b ≥ 0: stable means 2/η̃ > (1 + b)·S.
    pub band: f64,
    /// Stable observations required before an entry.
    pub run_in: u64,
}

impl EosEntry {
    /// Feeds the observation (t, 2/η̃_t, S_t); true when t is the entry.
    pub fn observe(&mut self, rule: &EosEntryRule, step: u64, two_over_eff_lr: f64, sharpness: f64) -> bool {
        let stable = two_over_eff_lr > (1.0 + rule.band) * sharpness;
        let entered = self.entry.is_none() && !stable && self.stable_run >= rule.run_in;
        if entered {
            self.entry = Some(step);
        }
        self.stable_run = if stable { self.stable_run + 1 } else { 0 };
        entered
    }

    /// The entry step, if the run has entered EoS.
    pub fn step(&self) -> Option<u64> {
        self.entry
    }
}
