//! The tick policy of every figure axis, and where a legend goes.
//!
//! A log axis is drawn as a linear axis of log10 of the value (plotters'
//! own log axis spreads its key points unevenly and stops labelling over
//! wide spans). Its labels:
//! - two or more powers of ten inside the range: labelled decades, every
//!   1, 2, 5, 10, 20, … decades so that at most `max_labels` fit, written
//!   10⁻³²; the other decades (or 2·10ⁿ … 9·10ⁿ when every decade is
//!   labelled and few are shown) as unlabelled minor grid lines;
//! - fewer (always the case under one decade): mantissa labels m·10ⁿ for
//!   m in {1, 2, 5}, then {1, 2, 3, 5}, then 1…9, the first set giving three
//!   labels; where even 1…9 gives fewer (a range of a few tenths of a
//!   decade) evenly spaced values 1, 2 or 5 × 10ᵏ apart.
//!
//! A linear axis is labelled at multiples of 1, 2 or 5 × 10ᵏ (whole numbers
//! only on step axes, so short runs do not read "0, 0, 1, 2, 2"), computed
//! as k·step so that zero is exactly 0 and never "6.9e-18".

/// One axis of a panel. `lo`, `hi`, the major and the minor positions are
/// in drawing units: log10 of the value on a log axis, the value otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    /// Labelled positions and their labels, increasing.
    pub major: Vec<(f64, String)>,
    /// Unlabelled positions (light grid lines), increasing.
    pub minor: Vec<f64>,
}

/// Relative slack when deciding whether a position lies inside the range or
/// is a whole decade (log10 of a power of ten is exact to a few ulps).
const SLACK: f64 = 1e-9;

impl Axis {
    /// The axis over the values `lo..hi` (both > 0 when `log`) with at most
    /// `max_labels` labels (at least 2); `integer` keeps a linear axis's
    /// labels on whole numbers.
    pub fn new(lo: f64, hi: f64, log: bool, max_labels: usize, integer: bool) -> Axis {
        let max_labels = max_labels.max(2);
        let ok = lo.is_finite() && hi.is_finite() && hi > lo && (!log || lo > 0.0);
        let (lo, hi) = if ok {
            (lo, hi)
        } else if log {
            (0.1, 1.0)
        } else {
            (0.0, 1.0)
        };
        if log {
            log_axis(lo.log10(), hi.log10(), max_labels)
        } else {
            let (major, _) = linear_ticks(lo, hi, max_labels, integer);
            Axis { lo, hi, log: false, major, minor: Vec::new() }
        }
    }

    /// A value in drawing units.
    pub fn to_drawing(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }

    /// The label at drawing position `a` (empty where no major tick is).
    pub fn label(&self, a: f64) -> String {
        let tol = SLACK * (self.hi - self.lo).abs().max(f64::MIN_POSITIVE);
        self.major.iter().find(|(p, _)| (p - a).abs() <= tol).map(|(_, s)| s.clone()).unwrap_or_default()
    }

    /// The major positions (plotters' bold key points).
    pub fn major_positions(&self) -> Vec<f64> {
        self.major.iter().map(|m| m.0).collect()
    }
}

/// Superscript digits and minus sign: `sup(-32)` = "⁻³²".
fn sup(e: i64) -> String {
    const D: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let digits: String = e.unsigned_abs().to_string().chars().map(|c| D[c as usize - '0' as usize]).collect();
    if e < 0 { format!("⁻{digits}") } else { digits }
}

/// 10ⁿ.
fn pow10_label(e: i64) -> String {
    format!("10{}", sup(e))
}

/// A number with `decimals` digits after the point, without a "-0".
fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

/// Labels of the tick values `v` (each with the spacing `step` its digits
/// follow), one format for the whole axis: plain where every value lies
/// below `plain_below` and some reach 0.01, else m×10ⁿ.
fn value_labels(v: &[(f64, f64)], plain_below: f64) -> Vec<String> {
    let big = v.iter().map(|(x, _)| x.abs()).fold(0.0, f64::max);
    let plain = big >= 1e-2 * (1.0 - SLACK) && big < plain_below;
    let exp = |x: f64| (x.abs().log10() + SLACK).floor() as i64;
    v.iter()
        .map(|&(x, step)| {
            if x == 0.0 {
                "0".to_string()
            } else if plain {
                fixed(x, (-exp(step)).max(0) as usize)
            } else {
                let e = exp(x);
                let m = fixed(x / 10f64.powi(e as i32), (e - exp(step)).max(0) as usize);
                match m.as_str() {
                    "1" => pow10_label(e),
                    "-1" => format!("-{}", pow10_label(e)),
                    _ => format!("{m}×10{}", sup(e)),
                }
            }
        })
        .collect()
}

/// Multiples of the smallest 1, 2 or 5 × 10ᵏ step (≥ 1 when `integer`)
/// giving at most `max_labels` ticks in [lo, hi], with their labels, and
/// the step.
fn linear_ticks(lo: f64, hi: f64, max_labels: usize, integer: bool) -> (Vec<(f64, String)>, f64) {
    let span = hi - lo;
    let mut k = (span / max_labels as f64).log10().floor() as i32 - 1;
    if integer {
        k = k.max(0);
    }
    loop {
        for m in [1.0, 2.0, 5.0] {
            let step = m * 10f64.powi(k);
            let (i0, i1) = ((lo / step - SLACK).ceil(), (hi / step + SLACK).floor());
            if i1 - i0 + 1.0 <= max_labels as f64 {
                let v: Vec<(f64, f64)> = (i0 as i64..=i1 as i64).map(|i| (i as f64 * step, step)).collect();
                let labels = value_labels(&v, if integer { 1e6 } else { 1e4 });
                return (v.iter().map(|p| p.0).zip(labels).collect(), step);
            }
        }
        k += 1;
    }
}

/// The log axis over log10 values `lo_e..hi_e` (module docs).
fn log_axis(lo_e: f64, hi_e: f64, max_labels: usize) -> Axis {
    let d0 = (lo_e - SLACK).ceil() as i64;
    let d1 = (hi_e + SLACK).floor() as i64;
    let inside = |p: f64| p >= lo_e - SLACK && p <= hi_e + SLACK;
    let candidates = |set: &[u32]| -> Vec<(f64, i64, u32)> {
        ((lo_e.floor() as i64 - 1)..=(hi_e.ceil() as i64))
            .flat_map(|e| set.iter().map(move |&m| (e as f64 + (m as f64).log10(), e, m)))
            .filter(|(p, _, _)| inside(*p))
            .collect()
    };
    const SETS: [&[u32]; 3] = [&[1, 2, 5], &[1, 2, 3, 5], &[1, 2, 3, 4, 5, 6, 7, 8, 9]];
    let mut axis = Axis { lo: lo_e, hi: hi_e, log: true, major: Vec::new(), minor: Vec::new() };
    // Labelled decades where two or more fall inside, unless the range is
    // under two decades and 1, 2, 5 × 10ⁿ labels fit (8 → 120 reads better
    // as 10, 20, 50, 100 than as 10¹, 10²).
    let decades = d1 - d0 + 1 >= 2 && (hi_e - lo_e >= 2.0 || candidates(SETS[0]).len() > max_labels);
    if decades {
        let mut s = 1i64;
        let steps = [1i64, 2, 5].into_iter().chain((1..).flat_map(|k| [1i64, 2, 5].map(|m| m * 10i64.pow(k))));
        for cand in steps {
            s = cand;
            if d1.div_euclid(s) - (d0 + s - 1).div_euclid(s) < max_labels as i64 {
                break;
            }
        }
        let first = (d0 + s - 1).div_euclid(s) * s;
        axis.major = (first..=d1).step_by(s as usize).map(|e| (e as f64, pow10_label(e))).collect();
        if s == 1 {
            if d1 - d0 < 8 {
                axis.minor = candidates(&[2, 3, 4, 5, 6, 7, 8, 9]).into_iter().map(|c| c.0).collect();
            }
        } else {
            // The unlabelled decades, or every (s/5)th where there are many.
            let m = if d1 - d0 <= 60 { 1 } else { (s / 5).max(1) };
            axis.minor = (d0..=d1).filter(|e| e % s != 0 && e % m == 0).map(|e| e as f64).collect();
        }
        return axis;
    }
    // Mantissa labels: the first set giving three that fit, else 1 and 3
    // per decade, else evenly spaced values.
    let mut pick = None;
    for set in SETS {
        let c = candidates(set);
        if c.len() > max_labels {
            break;
        }
        if c.len() >= 3 {
            pick = Some(c);
            break;
        }
    }
    if pick.is_none() {
        pick = Some(candidates(&[1, 3])).filter(|c| (3..=max_labels).contains(&c.len()));
    }
    if let Some(chosen) = pick {
        let v: Vec<(f64, f64)> =
            chosen.iter().map(|&(_, e, m)| (m as f64 * 10f64.powi(e as i32), 10f64.powi(e as i32))).collect();
        axis.major = chosen.iter().map(|c| c.0).zip(value_labels(&v, 1e4)).collect();
        axis.minor = candidates(SETS[2])
            .into_iter()
            .map(|c| c.0)
            .filter(|p| !axis.major.iter().any(|(q, _)| (q - p).abs() < SLACK))
            .collect();
    } else {
        let (ticks, _) = linear_ticks(10f64.powf(lo_e), 10f64.powf(hi_e), max_labels.min(5), false);
        axis.major = ticks.into_iter().filter(|(v, _)| *v > 0.0).map(|(v, s)| (v.log10(), s)).collect();
    }
    axis
}

/// The corner of a plot area (`plot_px`, width × height) where a legend box
/// of `legend_px` covers the fewest points of `lines` (drawing units of
/// `x`, `y`), with the upper right preferred among equals; `None` when every
/// corner covers some.
pub fn legend_corner(
    lines: &[&[(f64, f64)]],
    x: &Axis,
    y: &Axis,
    plot_px: (f64, f64),
    legend_px: (f64, f64),
) -> Option<Corner> {
    // The box plus plotters' 5 px inset and a little air, as fractions.
    let w = ((legend_px.0 + 12.0) / plot_px.0).min(1.0);
    let h = ((legend_px.1 + 12.0) / plot_px.1).min(1.0);
    let frac = |p: (f64, f64)| ((p.0 - x.lo) / (x.hi - x.lo), (p.1 - y.lo) / (y.hi - y.lo));
    let mut counts = [0usize; 4];
    let rect = |c: Corner| match c {
        Corner::UpperRight => (1.0 - w, 1.0, 1.0 - h, 1.0),
        Corner::UpperLeft => (0.0, w, 1.0 - h, 1.0),
        Corner::LowerLeft => (0.0, w, 0.0, h),
        Corner::LowerRight => (1.0 - w, 1.0, 0.0, h),
    };
    for pts in lines {
        // Points along each segment, so a steep line between two samples
        // counts where it passes.
        let mut visit = |q: (f64, f64)| {
            for (i, c) in Corner::ALL.iter().enumerate() {
                let (x0, x1, y0, y1) = rect(*c);
                if q.0 >= x0 && q.0 <= x1 && q.1 >= y0 && q.1 <= y1 {
                    counts[i] += 1;
                }
            }
        };
        if pts.len() == 1 {
            visit(frac(pts[0]));
        }
        for s in pts.windows(2) {
            let (a, b) = (frac(s[0]), frac(s[1]));
            for k in 0..8 {
                let t = k as f64 / 8.0;
                visit((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
            }
        }
        if let Some(p) = pts.last() {
            visit(frac(*p));
        }
    }
    let (best, n) = Corner::ALL.iter().zip(counts).min_by_key(|(_, n)| *n)?;
    (n == 0).then_some(*best)
}

/// A corner of the plot area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corner {
    UpperRight,
    UpperLeft,
    LowerLeft,
    LowerRight,
}

impl Corner {
    /// In order of preference.
    pub const ALL: [Corner; 4] = [Corner::UpperRight, Corner::UpperLeft, Corner::LowerLeft, Corner::LowerRight];
}

/// The top of a y range (drawing units) raised so that the top `frac` of
/// the plot height lies above `hi`: where no corner is free, the legend
/// goes into that headroom.
pub fn headroom(lo: f64, hi: f64, frac: f64) -> f64 {
    let frac = frac.clamp(0.0, 0.6);
    hi + (hi - lo) * frac / (1.0 - frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(a: &Axis) -> Vec<&str> {
        a.major.iter().map(|m| m.1.as_str()).collect()
    }

    /// The invariants every axis keeps: 2..=max labels, distinct, sorted,
    /// inside the range, minor positions inside and off the labels.
    fn check(a: &Axis, max: usize) {
        let n = a.major.len();
        assert!((2..=max).contains(&n), "{n} labels on {:?}", a);
        let mut seen = std::collections::HashSet::new();
        for (p, s) in &a.major {
            assert!(!s.is_empty() && seen.insert(s.clone()), "repeated or empty label {s:?} in {:?}", labels(a));
            let tol = 1e-9 * (a.hi - a.lo);
            assert!(*p >= a.lo - tol && *p <= a.hi + tol, "label {s} at {p} outside {}..{}", a.lo, a.hi);
        }
        assert!(a.major.windows(2).all(|w| w[0].0 < w[1].0));
        for m in &a.minor {
            assert!(*m >= a.lo - 1e-9 && *m <= a.hi + 1e-9);
            assert!(a.major.iter().all(|(p, _)| (p - m).abs() > 1e-12));
        }
    }

    #[test]
    fn log_axes_from_a_third_of_a_decade_to_forty_decades_keep_the_invariants() {
        // Spans 0.3, 0.5, …, 40 decades at several offsets, the lower end
        // from 10⁻⁴⁰ to 10⁵.
        for span in [0.3, 0.5, 0.8, 1.0, 1.3, 2.0, 3.0, 5.5, 9.0, 13.0, 21.0, 33.0, 40.0] {
            for start in [-40.0, -13.2, -3.7, -0.5, 0.0, 0.25, 2.9, 5.0] {
                for max in [4, 6, 8] {
                    let a = Axis::new(10f64.powf(start), 10f64.powf(start + span), true, max, false);
                    check(&a, max);
                }
            }
        }
    }

    #[test]
    fn wide_log_axes_label_evenly_spaced_decades_in_superscript() {
        // fig1's train loss: 4.7e-32 … 1.5 (padded) holds 33 decades.
        let a = Axis::new(4.7e-32 / 1.5, 1.5 * 1.5, true, 8, false);
        assert_eq!(labels(&a), ["10⁻³⁰", "10⁻²⁵", "10⁻²⁰", "10⁻¹⁵", "10⁻¹⁰", "10⁻⁵", "10⁰"]);
        // The decades between are minor lines.
        assert!(a.minor.contains(&-31.0) && a.minor.contains(&-1.0) && !a.minor.contains(&-30.0));
        // A few decades: every one labelled, 2…9 × 10ⁿ as minor lines.
        let b = Axis::new(3e-3, 20.0, true, 8, false);
        assert_eq!(labels(&b), ["10⁻²", "10⁻¹", "10⁰", "10¹"]);
        assert!(b.minor.iter().any(|m| (m - 2f64.log10()).abs() < 1e-12));
        // 40 decades with 6 labels: every 10.
        let c = Axis::new(1e-38, 1e2, true, 6, false);
        assert_eq!(labels(&c), ["10⁻³⁰", "10⁻²⁰", "10⁻¹⁰", "10⁰"]);
    }

    #[test]
    fn narrow_log_axes_use_mantissas_not_a_pile_of_labels() {
        // fig7's singular values: about one decade, 8 → 120.
        let a = Axis::new(8.0, 120.0, true, 8, false);
        assert_eq!(labels(&a), ["10", "20", "50", "100"]);
        // Under a decade: 1, 2, 3, 5 or 1…9 mantissas.
        let b = Axis::new(0.25, 0.9, true, 8, false);
        assert_eq!(labels(&b), ["0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]);
        // A third of a decade: evenly spaced values.
        let c = Axis::new(1000.0, 2100.0, true, 8, false);
        assert_eq!(labels(&c), ["1000", "1500", "2000"]);
        // Small values with mantissas: m×10ⁿ.
        let d = Axis::new(1.5e-5, 9e-5, true, 8, false);
        assert_eq!(labels(&d), ["2×10⁻⁵", "3×10⁻⁵", "5×10⁻⁵"]);
    }

    #[test]
    fn linear_axes_have_whole_step_labels_exact_zero_and_no_repeats() {
        // A 3-step run: 0, 1, 2, 3 rather than 0, 0, 1, 2, 2.
        let a = Axis::new(-0.15, 3.15, false, 6, true);
        assert_eq!(labels(&a), ["0", "1", "2", "3"]);
        // h_t around 0: zero exactly.
        let b = Axis::new(-3.3e-3, 2.9e-3, false, 8, false);
        assert!(labels(&b).contains(&"0"), "{:?}", labels(&b));
        assert!(b.major.iter().any(|(p, _)| *p == 0.0));
        check(&b, 8);
        let c = Axis::new(0.0, 5.0e6, false, 6, true);
        assert_eq!(labels(&c), ["0", "10⁶", "2×10⁶", "3×10⁶", "4×10⁶", "5×10⁶"]);
        let c = Axis::new(0.0, 5.0e4, false, 6, true);
        assert_eq!(labels(&c), ["0", "10000", "20000", "30000", "40000", "50000"]);
        let d = Axis::new(0.93, 1.004, false, 6, false);
        assert_eq!(labels(&d), ["0.94", "0.96", "0.98", "1.00"]);
        for (lo, hi) in [(0.0, 1.0), (-7.0, 1e-3), (1e-6, 3e-6), (12.0, 12.5), (0.0, 1e9)] {
            check(&Axis::new(lo, hi, false, 7, false), 7);
        }
    }

    #[test]
    fn the_legend_goes_to_a_free_corner_or_none() {
        let x = Axis::new(0.0, 10.0, false, 6, false);
        let y = Axis::new(0.0, 10.0, false, 6, false);
        // A line falling from upper left to lower right leaves the upper
        // right and lower left free: upper right first.
        let fall: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, 10.0 - i as f64)).collect();
        assert_eq!(legend_corner(&[&fall], &x, &y, (400.0, 300.0), (80.0, 40.0)), Some(Corner::UpperRight));
        // A rising one leaves the upper left.
        let rise: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(legend_corner(&[&rise], &x, &y, (400.0, 300.0), (80.0, 40.0)), Some(Corner::UpperLeft));
        // Lines along the top and the bottom cover all four.
        let top: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, 9.9)).collect();
        let bottom: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, 0.1)).collect();
        assert_eq!(legend_corner(&[&top, &bottom], &x, &y, (400.0, 300.0), (80.0, 40.0)), None);
        // The headroom puts the old top below the legend's band.
        let hi = headroom(0.0, 10.0, 0.2);
        assert!((10.0 / hi - 0.8).abs() < 1e-12);
    }
}
