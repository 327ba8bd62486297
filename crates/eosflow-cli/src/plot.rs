//! Figures from a run directory's CSVs, drawn with plotters and an embedded
//! DejaVu Sans font (no system font needed).

use crate::ticks::{Axis, Corner, headroom, legend_corner};
use anyhow::{Context, Result, anyhow};
use eosflow::objective::Objective;
use eosflow::problems::{LinregBn, MatcompBn, Toy3d};
use eosflow::run::{Column, columns as C};
use eosflow_nn::NetProblem;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("embedded DejaVuSans.ttf is not a valid font");
        }
    });
}

/// The columns of metrics.csv and sharpness.csv, by name.
pub struct RunData {
    pub metrics: HashMap<String, Vec<f64>>,
    pub sharpness: HashMap<String, Vec<f64>>,
}

fn read_csv(path: &Path) -> Result<HashMap<String, Vec<f64>>> {
    let mut rd = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers: Vec<String> = rd.headers()?.iter().map(String::from).collect();
    let mut cols: HashMap<String, Vec<f64>> = headers.iter().map(|h| (h.clone(), Vec::new())).collect();
    for (i, rec) in rd.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: malformed row {}", path.display(), i + 2))?;
        for (h, v) in headers.iter().zip(rec.iter()) {
            // Empty cells (sharpness not computed) and words (regime) become NaN.
            cols.get_mut(h).unwrap().push(v.parse().unwrap_or(f64::NAN));
        }
    }
    Ok(cols)
}

impl RunData {
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Self { metrics: read_csv(&dir.join("metrics.csv"))?, sharpness: read_csv(&dir.join("sharpness.csv"))? })
    }
    /// A metrics.csv column (empty when the run has none).
    fn m(&self, col: Column) -> &[f64] {
        self.metrics.get(col.name()).map(|v| v.as_slice()).unwrap_or(&[])
    }
    /// A sharpness.csv column.
    fn s(&self, col: Column) -> &[f64] {
        self.sharpness.get(col.name()).map(|v| v.as_slice()).unwrap_or(&[])
    }
}

/// Pairs (x, y) with finite y (and y > 0 when `positive`), decimated to at
/// most ~4000 points by keeping each bucket's min and max, so oscillations
/// keep their envelope in the picture.
fn series(x: &[f64], y: &[f64], positive: bool) -> Vec<(f64, f64)> {
    let pts: Vec<(f64, f64)> =
        x.iter().zip(y).filter(|(_, v)| v.is_finite() && (!positive || **v > 0.0)).map(|(a, b)| (*a, *b)).collect();
    let max = 4000;
    if pts.len() <= max {
        return pts;
    }
    let b = pts.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in pts.chunks(b) {
        let (mut lo, mut hi) = (chunk[0], chunk[0]);
        for p in chunk {
            if p.1 < lo.1 {
                lo = *p;
            }
            if p.1 > hi.1 {
                hi = *p;
            }
        }
        if lo.0 <= hi.0 {
            out.extend([lo, hi]);
        } else {
            out.extend([hi, lo]);
        }
    }
    out
}

fn range(vals: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return if log { (1e-3, 1.0) } else { (0.0, 1.0) };
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 * hi.abs().max(1e-12) };
        (lo - pad, hi + pad)
    }
}

/// A curve: legend label, points, dashed.
type Line<'a> = (&'a str, Vec<(f64, f64)>, bool);

type DResult = std::result::Result<(), Box<dyn std::error::Error>>;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Train and test loss against the step (matcomp_bn).
fn loss_lines(d: &RunData) -> Vec<Line<'static>> {
    let step = d.m(C::STEP);
    vec![
        ("train", series(step, d.m(C::LOSS), true), false),
        ("test", series(step, d.m(MatcompBn::TEST_LOSS), true), false),
    ]
}

/// 2/η̃ against the step and the sharpness at its evaluation steps.
fn threshold_lines<'a>(d: &RunData, sharpness_label: &'a str) -> Vec<Line<'a>> {
    vec![
        ("2/η_eff", series(d.m(C::STEP), d.m(C::TWO_OVER_EFF_LR), false), false),
        (sharpness_label, series(d.s(C::STEP), d.s(C::SHARPNESS), false), false),
    ]
}

/// The top `k` singular values of the recovered matrix present in the CSV.
fn singular_value_lines(d: &RunData, k: usize) -> Vec<Line<'static>> {
    const LABELS: [&str; 8] = ["σ1", "σ2", "σ3", "σ4", "σ5", "σ6", "σ7", "σ8"];
    LABELS
        .iter()
        .zip(MatcompBn::SV)
        .take(k)
        .filter(|(_, c)| d.metrics.contains_key(c.name()))
        .map(|(l, c)| (*l, series(d.m(C::STEP), d.m(c), true), false))
        .collect()
}

/// A white canvas with a title line and an r×c grid of panels below it.
fn grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    size: u32,
    shape: (usize, usize),
) -> Result<Vec<DrawingArea<DB, Shift>>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(40);
    top.titled(title, ("sans-serif", size))?;
    Ok(body.split_evenly(shape))
}

/// One panel: named series against the step, optionally log-scale; line i
/// gets colour i.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    ylabel: &str,
    lines: &[Line],
    log: bool,
    logx: bool,
) -> DResult
where
    DB::ErrorType: 'static,
{
    let colors: Vec<usize> = (0..lines.len()).collect();
    panel_colored(area, title, ylabel, lines, &colors, log, logx)
}

/// [`panel`] with line i drawn in colour `colors[i]` (so one run's curves
/// can share a colour).
fn panel_colored<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    ylabel: &str,
    lines: &[Line],
    colors: &[usize],
    log: bool,
    logx: bool,
) -> DResult
where
    DB::ErrorType: 'static,
{
    panel_x(area, title, ylabel, lines, colors, log, logx, None)
}

/// [`panel_colored`] with another x axis than the step (`xlabel`; linear).
#[allow(clippy::too_many_arguments)] // the panel's full description, as in panel_colored
fn panel_x<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    ylabel: &str,
    lines: &[Line],
    colors: &[usize],
    log: bool,
    logx: bool,
    xlabel: Option<&str>,
) -> DResult
where
    DB::ErrorType: 'static,
{
    // On a log step axis, step t is drawn at t + 1 so step 0 stays visible.
    let shift = if logx { 1.0 } else { 0.0 };
    let xs = lines.iter().flat_map(|l| l.1.iter().map(|p| p.0 + shift));
    let (x0, x1) = if logx { (1.0, range(xs, false).1.max(2.0)) } else { range(xs, false) };
    let x = Axis::new(x0, x1, logx, 6, xlabel.is_none());
    let (y0, y1) = range(lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)), log);
    let y = Axis::new(y0, y1, log, 8, false);
    // The curves in drawing units (log10 of the value on a log axis).
    let drawn: Vec<Vec<(f64, f64)>> = lines
        .iter()
        .map(|l| {
            l.1.iter()
                .filter(|q| (!log || q.1 > 0.0) && (!logx || q.0 + shift > 0.0))
                .map(|&(a, b)| (x.to_drawing(a + shift), y.to_drawing(b)))
                .collect()
        })
        .collect();
    let labels: Vec<&str> = if lines.len() > 1 { lines.iter().map(|l| l.0).collect() } else { Vec::new() };
    let (y, corner) = legend_place(area, &labels, &drawn, &x, y);
    let xdesc = xlabel.unwrap_or(if logx { "step + 1" } else { "step" });
    let mut chart = chart_on(area, title, (xdesc, &x), (ylabel, &y))?;
    for (i, ((label, _, dashed), pts)) in lines.iter().zip(&drawn).enumerate() {
        let c = COLORS[colors[i] % COLORS.len()];
        let key = move |(a, b): (i32, i32)| PathElement::new(vec![(a, b), (a + 20, b)], c.stroke_width(2));
        if *dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.iter().copied(), 6, 4, c.stroke_width(2)))?
                .label(*label)
                .legend(key);
        } else if pts.len() < 60 {
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)).point_size(3))?
                .label(*label)
                .legend(key);
        } else {
            chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(1)))?.label(*label).legend(key);
        }
    }
    if let Some(corner) = corner {
        legend(&mut chart, corner)?;
    }
    Ok(())
}

/// Margin, label areas and caption size of every panel, in pixels.
const PANEL_MARGIN: u32 = 12;
const X_LABEL_AREA: u32 = 42;
const Y_LABEL_AREA: u32 = 80;
const CAPTION: u32 = 22;
const LEGEND_FONT: u32 = 15;

/// Where the legend of `labels` goes on a panel of `area` whose curves are
/// `drawn` (drawing units of `x`, `y`): a corner free of data, else above
/// the data in headroom added to `y` (the axis returned). `None` for no
/// legend (no labels).
fn legend_place<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &[&str],
    drawn: &[Vec<(f64, f64)>],
    x: &Axis,
    y: Axis,
) -> (Axis, Option<SeriesLabelPosition>) {
    if labels.is_empty() {
        return (y, None);
    }
    let (w, h) = area.dim_in_pixel();
    let plot = (
        w.saturating_sub(2 * PANEL_MARGIN + Y_LABEL_AREA).max(1) as f64,
        h.saturating_sub(2 * PANEL_MARGIN + X_LABEL_AREA + CAPTION + 10).max(1) as f64,
    );
    let font = ("sans-serif", LEGEND_FONT).into_font();
    let text_w = labels.iter().map(|l| font.box_size(l).map_or(8 * l.chars().count() as u32, |b| b.0)).max();
    // plotters' box: 30 px for the key, 10 px margins, a line per label.
    let legend_px = (text_w.unwrap_or(0) as f64 + 50.0, labels.len() as f64 * (LEGEND_FONT as f64 * 1.25) + 20.0);
    let lines: Vec<&[(f64, f64)]> = drawn.iter().map(|v| v.as_slice()).collect();
    let position = |c: Corner| match c {
        Corner::UpperRight => SeriesLabelPosition::UpperRight,
        Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
        Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
        Corner::LowerRight => SeriesLabelPosition::LowerRight,
    };
    if let Some(c) = legend_corner(&lines, x, &y, plot, legend_px) {
        return (y, Some(position(c)));
    }
    let top = headroom(y.lo, y.hi, (legend_px.1 + 12.0) / plot.1);
    let undraw = |v: f64| if y.log { 10f64.powf(v) } else { v };
    let raised = Axis::new(undraw(y.lo), undraw(top), y.log, 8, false);
    (raised, Some(SeriesLabelPosition::UpperRight))
}

fn overview<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, d: &RunData, name: &str, logx: bool) -> DResult
where
    DB::ErrorType: 'static,
{
    let a = grid(&root, name, 26, (2, 2))?;
    let step = d.m(C::STEP);
    panel(&a[0], "(a) training loss", "loss", &[("L(θ_t)", series(step, d.m(C::LOSS), true), false)], true, logx)?;
    let mut lines = vec![
        ("2/η_eff (stability threshold)", series(step, d.m(C::TWO_OVER_EFF_LR), false), false),
        ("sharpness λ1(∇²L(θ_t))", series(d.s(C::STEP), d.s(C::SHARPNESS), false), false),
    ];
    if d.metrics.contains_key(Toy3d::SHARPNESS_ON_GAMMA.name()) {
        lines.push(("λ1 on Γ at the same z", series(step, d.m(Toy3d::SHARPNESS_ON_GAMMA), false), true));
    }
    panel(&a[1], "(b) 2/η_eff against the spherical sharpness", "", &lines, true, logx)?;
    panel(&a[2], "(c) parameter norm", "‖w_t‖", &[("‖w_t‖", series(step, d.m(C::W_NORM), false), false)], false, logx)?;
    let eff = [("η_eff", series(step, d.m(C::EFF_LR), false), false)];
    panel(&a[3], "(d) effective LR η_eff = lr / ((1 − lr·wd)·‖w‖²)", "η_eff", &eff, false, logx)?;
    root.present()?;
    Ok(())
}

/// Fig. 3 of the paper for the App. F problem: (a) ‖w_t‖ and (b) ‖∇L(θ_t)‖
/// against the step, (c) the path of θ_t on the sphere over the loss.
fn toy3d<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, d: &RunData) -> DResult
where
    DB::ErrorType: 'static,
{
    let cols = grid(&root, "toy3d (App. F): GD+WD moves along Γ to the flattest minimiser ζ*", 24, (1, 3))?;
    let step = d.m(C::STEP);
    let wn = [("‖w_t‖", series(step, d.m(C::W_NORM), false), false)];
    panel(&cols[0], "(a) ‖w_t‖ falls while the gradient is small", "‖w_t‖", &wn, false, true)?;
    let gn = [("‖∇L(θ_t)‖", series(step, d.m(C::GRAD_NORM), false), false)];
    panel(&cols[1], "(b) ‖∇L(θ_t)‖ rises again at the EoS", "‖∇L(θ_t)‖", &gn, true, true)?;
    sphere_map(&cols[2], d)?;
    root.present()?;
    Ok(())
}

/// A point of the sphere in F's coordinates as (angle along Γ from ζ*,
/// angle from Γ), in degrees: Γ = {x = y > 0} ∩ S² is the great circle in
/// the plane spanned by e1 = (1, 1, 0)/√2 and e2 = (0, 0, 1), so in this
/// equirectangular projection it is the horizontal line at 0 and ζ* =
/// (1/√2, 1/√2, 0) the origin.
fn sphere_angles(x: f64, y: f64, z: f64) -> (f64, f64) {
    let r = (x * x + y * y + z * z).sqrt();
    let (x, y, z) = (x / r, y / r, z / r);
    let along = z.atan2((x + y) / 2f64.sqrt());
    let off = ((x - y) / 2f64.sqrt()).clamp(-1.0, 1.0).asin();
    (along.to_degrees(), off.to_degrees())
}

/// The inverse of [`sphere_angles`].
fn sphere_point(along_deg: f64, off_deg: f64) -> [f64; 3] {
    let (a, o) = (along_deg.to_radians(), off_deg.to_radians());
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let (c1, c2, c3) = (o.cos() * a.cos(), o.cos() * a.sin(), o.sin());
    // c1·e1 + c2·e2 + c3·e3 with e3 = (1, −1, 0)/√2.
    [s * (c1 + c3), s * (c1 - c3), c2]
}

/// Fig. 3(c): the loss F on the unit sphere as a shaded map (darker is
/// lower, as in the paper), Γ as the black line, the path of θ_t coloured
/// from pale (early) to dark red (late), θ_0, ζ0 (the point of Γ below θ_t
/// where ‖w_t‖ starts to fall, Fig. 3(a)) and ζ* marked.
fn sphere_map<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, d: &RunData) -> DResult
where
    DB::ErrorType: 'static,
{
    let (x, y, z) = (d.m(Toy3d::THETA_X), d.m(Toy3d::THETA_Y), d.m(Toy3d::THETA_Z));
    let path: Vec<(f64, f64)> = (0..x.len().min(y.len()).min(z.len()))
        .filter(|&i| x[i].is_finite() && y[i].is_finite() && z[i].is_finite())
        .map(|i| sphere_angles(x[i], y[i], z[i]))
        .collect();
    let (a0, a1) = range(path.iter().map(|p| p.0).chain([0.0]), false);
    let (o0, o1) = range(path.iter().map(|p| p.1).chain([-5.0, 5.0]), false);
    let (pa, po) = (0.08 * (a1 - a0), 0.08 * (o1 - o0));
    let (a0, a1, o0, o1) = ((a0 - pa).max(-89.0), (a1 + pa).min(89.0), o0 - po, o1 + po);
    let xa = Axis::new(a0, a1, false, 7, false);
    let ya = Axis::new(o0, o1, false, 7, false);
    // One list for the legend's text and for sizing its box.
    let labels = [
        "Γ: minimisers (x = y > 0)",
        "θ_t, pale (early) to dark (late)",
        "θ_0",
        "ζ0: Γ where ‖w_t‖ starts to fall",
        "ζ* = (1/√2, 1/√2, 0), flattest",
    ];
    let (ya, corner) = legend_place(area, &labels, &[path.clone(), vec![(a0, 0.0), (a1, 0.0)]], &xa, ya);
    let mut chart = chart_on(
        area,
        "(c) path of θ_t on the sphere, over the loss",
        ("angle along Γ from ζ* (°)", &xa),
        ("angle from Γ (°)", &ya),
    )?;
    // The shading: F at each cell's centre, on a square-root scale (F
    // grows quadratically off Γ), from blue-grey at 0 to white at the
    // map's largest value.
    let f = Toy3d::unrotated();
    let (nx, ny) = (120usize, 90usize);
    let (dx, dy) = ((a1 - a0) / nx as f64, (o1 - o0) / ny as f64);
    let cells: Vec<((f64, f64), f64)> = (0..nx * ny)
        .map(|k| {
            let (i, j) = (k % nx, k / nx);
            let (ca, co) = (a0 + (i as f64 + 0.5) * dx, o0 + (j as f64 + 0.5) * dy);
            ((a0 + i as f64 * dx, o0 + j as f64 * dy), f.loss(&sphere_point(ca, co)))
        })
        .collect();
    let top = cells.iter().map(|c| c.1).filter(|v| v.is_finite()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    chart.draw_series(cells.iter().map(|&((ca, co), v)| {
        let t = if v.is_finite() { (v.max(0.0) / top).sqrt() } else { 1.0 };
        let mix = |lo: f64, hi: f64| (lo + t * (hi - lo)) as u8;
        let c = RGBColor(mix(95.0, 250.0), mix(110.0, 250.0), mix(150.0, 252.0));
        Rectangle::new([(ca, co), (ca + dx, co + dy)], c.filled())
    }))?;
    chart
        .draw_series(LineSeries::new([(a0, 0.0), (a1, 0.0)], BLACK.stroke_width(3)))?
        .label(labels[0])
        .legend(|(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], BLACK.stroke_width(3)));
    let n = path.len().max(2) - 1;
    // Log time: most steps are the late oscillation near ζ*.
    let shade = move |i: usize| {
        let t = (1.0 + i as f64).ln() / (1.0 + n as f64).ln();
        RGBColor((255.0 - 95.0 * t) as u8, (205.0 * (1.0 - t)) as u8, (120.0 * (1.0 - t)) as u8)
    };
    chart.draw_series(
        path.windows(2).enumerate().map(|(i, w)| PathElement::new(vec![w[0], w[1]], shade(i).stroke_width(2))),
    )?;
    chart
        .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
        .label(labels[1])
        .legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], shade(n).stroke_width(2)));
    if let Some(p0) = path.first() {
        chart
            .draw_series([Circle::new(*p0, 6, BLUE.filled())])?
            .label(labels[2])
            .legend(|(a, b)| Circle::new((a + 10, b), 5, BLUE.filled()));
    }
    // ζ0: Γ below θ_t at the first step where ‖w_t‖ falls.
    let wn = d.m(C::W_NORM);
    if let Some(t0) = (1..wn.len().min(path.len())).find(|&t| wn[t] < wn[t - 1]) {
        let zeta0 = (path[t0].0, 0.0);
        let ring = |c: (f64, f64), r: i32| {
            EmptyElement::at(c) + Circle::new((0, 0), r, WHITE.filled()) + Circle::new((0, 0), r, BLACK.stroke_width(2))
        };
        chart.draw_series([ring(zeta0, 7)])?.label(labels[3]).legend(move |(a, b)| {
            EmptyElement::at((a + 10, b))
                + Circle::new((0, 0), 5, WHITE.filled())
                + Circle::new((0, 0), 5, BLACK.stroke_width(2))
        });
    }
    chart
        .draw_series([
            EmptyElement::at((0.0, 0.0)) + TriangleMarker::new((0, 0), 12, WHITE.filled()),
            EmptyElement::at((0.0, 0.0)) + TriangleMarker::new((0, 0), 8, RED.filled()),
        ])?
        .label(labels[4])
        .legend(|(a, b)| TriangleMarker::new((a + 10, b), 6, RED.filled()));
    legend(&mut chart, corner.unwrap_or(SeriesLabelPosition::UpperRight))?;
    Ok(())
}

/// Points of (x, y) with lo ≤ x ≤ hi.
fn window(x: &[f64], y: &[f64], lo: f64, hi: f64) -> Vec<(f64, f64)> {
    x.iter().zip(y).filter(|(a, b)| **a >= lo && **a <= hi && b.is_finite()).map(|(a, b)| (*a, *b)).collect()
}

/// Fig. 4 of the paper for linreg_bn: (a) test loss and ‖φ_t − θ_M‖,
/// (b) train loss, (c) 2/η̃_t against λ1(φ_t) and (d) its zoom after EoS
/// entry, (e) h_t over the run and (f) over forty logged steps (period 2
/// when every step is logged).
fn fig4<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, d: &RunData, entry: Option<f64>) -> DResult
where
    DB::ErrorType: 'static,
{
    let a =
        grid(&root, "linreg_bn (Fig. 4): EoS oscillation drives φ_t along Γ to the min-norm solution (M)", 24, (2, 3))?;
    let step = d.m(C::STEP);
    let test = if d.m(LinregBn::TEST_LOSS).iter().any(|v| v.is_finite()) {
        d.m(LinregBn::TEST_LOSS)
    } else {
        d.m(LinregBn::TEST_LOSS_SAMPLE)
    };
    panel(
        &a[0],
        "(a) test loss and distance to (M)",
        "",
        &[
            ("test loss", series(step, test, false), false),
            ("‖φ_t − θ_M‖", series(step, d.m(LinregBn::PHI_DIST_M), false), false),
        ],
        false,
        false,
    )?;
    panel(&a[1], "(b) training loss", "loss", &[("L(θ_t)", series(step, d.m(C::LOSS), true), false)], true, false)?;
    let two = d.m(C::TWO_OVER_EFF_LR);
    let lam = d.m(LinregBn::PHI_SHARPNESS);
    panel(
        &a[2],
        "(c) 2/η_eff against λ1(φ_t)",
        "",
        &[("2/η_eff", series(step, two, false), false), ("λ1(φ_t)", series(step, lam, false), false)],
        true,
        false,
    )?;
    let last = step.last().copied().unwrap_or(0.0);
    let lo = entry.unwrap_or(0.0);
    let hi = (lo + 4000.0).min(last);
    panel(
        &a[3],
        &match entry {
            Some(_) => format!("(d) (c) zoomed: steps {lo:.0}–{hi:.0} after EoS entry"),
            None => format!("(d) (c) zoomed: steps {lo:.0}–{hi:.0} (no EoS entry)"),
        },
        "",
        &[("2/η_eff", window(step, two, lo, hi), false), ("λ1(φ_t)", window(step, lam, lo, hi), false)],
        true,
        false,
    )?;
    let h = d.m(LinregBn::H);
    panel(&a[4], "(e) h_t = ⟨θ_t − φ_t, v1(φ_t)⟩", "h_t", &[("h_t", series(step, h, false), false)], false, false)?;
    // Forty steps show the period-2 sign flips when every step is logged;
    // a sparser log shows forty samples and says that it hides them.
    let every = logged_every(step, lo, hi);
    let mid = ((lo + hi) / 2.0).floor();
    let end = mid + 40.0 * every;
    let zoom_title = if every > 1.0 {
        format!("(f) h_t, steps {mid:.0}–{end:.0}, every {every:.0}th logged: hides period 2")
    } else {
        format!("(f) h_t, steps {mid:.0}–{end:.0}: period 2")
    };
    panel(&a[5], &zoom_title, "h_t", &[("h_t", window(step, h, mid, end), false)], false, false)?;
    root.present()?;
    Ok(())
}

/// The smallest spacing of the logged steps in lo..=hi (1 when every step
/// is logged).
fn logged_every(step: &[f64], lo: f64, hi: f64) -> f64 {
    let inside: Vec<f64> = step.iter().copied().filter(|s| *s >= lo && *s <= hi).collect();
    let d = inside.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0.0).fold(f64::INFINITY, f64::min);
    if d.is_finite() { d.max(1.0) } else { 1.0 }
}

/// Fig. 1 of the paper for matcomp_bn: (a) train and test loss, (b) the
/// spherical sharpness against 2/η̃_t, (c) ‖w_t‖ and η̃_t, (d) the top
/// singular values of the recovered matrix.
fn fig1<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, d: &RunData, title: &str) -> DResult
where
    DB::ErrorType: 'static,
{
    let a = grid(&root, title, 24, (2, 2))?;
    let step = d.m(C::STEP);
    panel(&a[0], "(a) train and test loss", "loss", &loss_lines(d), true, false)?;
    panel(
        &a[1],
        "(b) spherical sharpness against 2/η_eff",
        "",
        &threshold_lines(d, "sharpness λ1(∇²L(θ_t))"),
        true,
        false,
    )?;
    panel(
        &a[2],
        "(c) ‖w_t‖ and η_eff",
        "",
        &[("‖w_t‖", series(step, d.m(C::W_NORM), true), false), ("η_eff", series(step, d.m(C::EFF_LR), true), false)],
        true,
        false,
    )?;
    panel(&a[3], "(d) top singular values of the recovered matrix", "", &singular_value_lines(d, 8), true, false)?;
    root.present()?;
    Ok(())
}

/// Figs. 2/8/9/13 of the paper for a network: (a) train and test accuracy,
/// (b) the spherical sharpness against 2/η̃_t, (c) train and test loss
/// minus L_min of eq. (53), (d) ‖w_t‖ and η̃_t. `fit` is the first step
/// with 100% training accuracy, drawn as a dotted line in (a) and (b).
fn net_fig<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, d: &RunData, title: &str, fit: Option<f64>) -> DResult
where
    DB::ErrorType: 'static,
{
    let a = grid(&root, title, 24, (2, 2))?;
    let step = d.m(C::STEP);
    let vline = |lo: f64, hi: f64| -> Vec<(f64, f64)> { fit.map_or(Vec::new(), |f| vec![(f, lo), (f, hi)]) };
    // After the fit the accuracies move by a few points: draw them from the
    // fit step on, so the rise is visible.
    let from = fit.unwrap_or(f64::NEG_INFINITY);
    let after = |col: Column| -> Vec<(f64, f64)> {
        series(step, d.m(col), false).into_iter().filter(|p| p.0 >= from).collect()
    };
    let acc = [
        ("train accuracy", after(NetProblem::TRAIN_ACC), false),
        ("test accuracy", after(NetProblem::TEST_ACC), false),
    ];
    let title = match fit {
        Some(f) => format!("(a) accuracy from 100% training accuracy (step {f:.0}) on"),
        None => "(a) accuracy (training accuracy never reached 100%)".to_string(),
    };
    panel(&a[0], &title, "accuracy", &acc, false, false)?;
    let mut thr = threshold_lines(d, "spherical sharpness");
    let top = d
        .s(C::SHARPNESS)
        .iter()
        .chain(d.m(C::TWO_OVER_EFF_LR))
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(*v));
    let bottom = d
        .s(C::SHARPNESS)
        .iter()
        .chain(d.m(C::TWO_OVER_EFF_LR))
        .filter(|v| v.is_finite() && **v > 0.0)
        .fold(f64::INFINITY, |m, v| m.min(*v));
    if fit.is_some() && top > 0.0 {
        thr.push(("100% train accuracy", vline(bottom, top), true));
    }
    panel(&a[1], "(b) spherical sharpness against 2/η_eff", "", &thr, true, false)?;
    let loss = [
        ("train L − L_min", series(step, d.m(NetProblem::LOSS_MINUS_LMIN), true), false),
        ("test L − L_min", series(step, d.m(NetProblem::TEST_LOSS_MINUS_LMIN), true), false),
    ];
    panel(&a[2], "(c) loss minus L_min (eq. 53)", "L − L_min", &loss, true, false)?;
    panel(
        &a[3],
        "(d) ‖w_t‖ and η_eff",
        "",
        &[("‖w_t‖", series(step, d.m(C::W_NORM), true), false), ("η_eff", series(step, d.m(C::EFF_LR), true), false)],
        true,
        false,
    )?;
    root.present()?;
    Ok(())
}

/// A close look at the dense window (Fig. 11): the training loss and
/// 2/η̃_t against the sharpness at every step.
fn window_fig<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, d: &RunData, lo: f64, hi: f64) -> DResult
where
    DB::ErrorType: 'static,
{
    let a = grid(&root, &format!("steps {lo:.0}–{hi:.0}, every step (Fig. 11)"), 24, (1, 2))?;
    let step = d.m(C::STEP);
    panel(&a[0], "(a) training loss", "loss", &[("L(θ_t)", window(step, d.m(C::LOSS), lo, hi), false)], true, false)?;
    panel(
        &a[1],
        "(b) 2/η_eff against the spherical sharpness",
        "",
        &[
            ("2/η_eff", window(step, d.m(C::TWO_OVER_EFF_LR), lo, hi), false),
            ("sharpness", window(d.s(C::STEP), d.s(C::SHARPNESS), lo, hi), false),
        ],
        true,
        false,
    )?;
    root.present()?;
    Ok(())
}

/// One row per run of a multi-run preset (Figs. 6, 7): train/test loss,
/// sharpness against 2/η̃, and the top singular values.
fn variants_fig<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, runs: &[(String, RunData)], title: &str) -> DResult
where
    DB::ErrorType: 'static,
{
    let cells = grid(&root, title, 24, (runs.len(), 3))?;
    for (r, (label, d)) in runs.iter().enumerate() {
        panel(&cells[3 * r], &format!("{label}: train and test loss"), "loss", &loss_lines(d), true, false)?;
        panel(
            &cells[3 * r + 1],
            &format!("{label}: sharpness and 2/η_eff"),
            "",
            &threshold_lines(d, "sharpness"),
            true,
            false,
        )?;
        panel(
            &cells[3 * r + 2],
            &format!("{label}: top singular values"),
            "",
            &singular_value_lines(d, 3),
            true,
            false,
        )?;
    }
    root.present()?;
    Ok(())
}

/// Panel (b) of the overlaid figures: each run's spherical sharpness
/// (solid) and 2/η̃ (dashed) in the run's colour, on a log axis.
fn sharpness_overlay<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, runs: &[(String, RunData)]) -> DResult
where
    DB::ErrorType: 'static,
{
    let labels: Vec<(String, String)> =
        runs.iter().map(|(l, _)| (format!("{l}: sharpness"), format!("{l}: 2/η_eff"))).collect();
    let mut sharp: Vec<Line> = Vec::new();
    for ((_, d), (ls, lt)) in runs.iter().zip(&labels) {
        sharp.push((ls.as_str(), series(d.s(C::STEP), d.s(C::SHARPNESS), true), false));
        sharp.push((lt.as_str(), series(d.m(C::STEP), d.m(C::TWO_OVER_EFF_LR), true), true));
    }
    let colors: Vec<usize> = (0..sharp.len()).map(|i| i / 2).collect();
    panel_colored(area, "(b) spherical sharpness (solid) and 2/η_eff (dashed)", "", &sharp, &colors, true, false)
}

/// Runs of a problem without a combined figure of its own overlaid: the
/// training loss, the spherical sharpness (solid) with 2/η̃ (dashed), and
/// the effective learning rate η̃.
fn overlay_fig<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, runs: &[(String, RunData)], title: &str) -> DResult
where
    DB::ErrorType: 'static,
{
    let a = grid(&root, title, 24, (1, 3))?;
    let loss: Vec<Line> =
        runs.iter().map(|(l, d)| (l.as_str(), series(d.m(C::STEP), d.m(C::LOSS), true), false)).collect();
    panel(&a[0], "(a) training loss", "loss", &loss, true, false)?;
    sharpness_overlay(&a[1], runs)?;
    let eff: Vec<Line> =
        runs.iter().map(|(l, d)| (l.as_str(), series(d.m(C::STEP), d.m(C::EFF_LR), true), false)).collect();
    panel(&a[2], "(c) effective learning rate η_eff", "η_eff", &eff, true, false)?;
    root.present()?;
    Ok(())
}

/// Fig. 13 for networks: the runs of a multi-run preset overlaid — test
/// accuracy, spherical sharpness (solid) with 2/η̃ (dashed), and the
/// training loss minus L_min.
fn net_variants_fig<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[(String, RunData)],
    title: &str,
    fit: Option<f64>,
) -> DResult
where
    DB::ErrorType: 'static,
{
    let a = grid(&root, title, 24, (1, 3))?;
    let from = fit.unwrap_or(f64::NEG_INFINITY);
    let acc: Vec<Line> = runs
        .iter()
        .map(|(l, d)| {
            let pts =
                series(d.m(C::STEP), d.m(NetProblem::TEST_ACC), false).into_iter().filter(|p| p.0 >= from).collect();
            (l.as_str(), pts, false)
        })
        .collect();
    let acc_title = match fit {
        Some(f) => format!("(a) test accuracy from step {f:.0} (all runs fit)"),
        None => "(a) test accuracy".to_string(),
    };
    panel(&a[0], &acc_title, "accuracy", &acc, false, false)?;
    sharpness_overlay(&a[1], runs)?;
    let loss: Vec<Line> = runs
        .iter()
        .map(|(l, d)| (l.as_str(), series(d.m(C::STEP), d.m(NetProblem::LOSS_MINUS_LMIN), true), false))
        .collect();
    panel(&a[2], "(c) training loss minus L_min", "L − L_min", &loss, true, false)?;
    root.present()?;
    Ok(())
}

/// A problem's own figure (besides the overview every run gets): the
/// problem module says which (`ProblemKind::figure`), so every problem has
/// one and a new problem cannot silently get none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemFigure {
    /// App. F's three panels (toy3d).
    Toy3d,
    /// Fig. 4's panels (linreg_bn).
    Fig4,
    /// Fig. 1's panels (matcomp_bn).
    Fig1,
    /// The network panels (accuracy, sharpness, L − L_min, ‖w‖ and η̃).
    Network,
    /// No figure of its own: the overview only (factorization).
    OverviewOnly,
}

impl ProblemFigure {
    /// The file stem under `figures/`.
    fn stem(self) -> &'static str {
        match self {
            ProblemFigure::Toy3d => "toy3d",
            ProblemFigure::Fig4 => "fig4",
            ProblemFigure::Fig1 => "fig1",
            ProblemFigure::Network => "network",
            ProblemFigure::OverviewOnly => "overview",
        }
    }

    /// The size in pixels.
    fn size(self) -> (u32, u32) {
        match self {
            ProblemFigure::Toy3d => (1800, 600),
            ProblemFigure::Fig4 => (1800, 1000),
            ProblemFigure::Fig1 | ProblemFigure::Network | ProblemFigure::OverviewOnly => (1400, 1000),
        }
    }
}

/// The figures of one run: the overview, the problem's own, the dense window.
#[derive(Clone, Copy)]
enum Panel {
    Overview,
    Own(ProblemFigure),
    Window,
}

/// The combined figure of several runs of one problem (a multi-run preset,
/// a sweep) from their run directories `dir/<label>/`, into
/// `dir/figures/<name>.<fmt>`: one row per run for matrix completion
/// (Figs. 6, 7, with the singular values), the runs overlaid otherwise
/// (networks as Fig. 13; the other problems' loss, sharpness with 2/η̃, and
/// η̃).
pub fn plot_variants(
    dir: &Path,
    name: &str,
    figure: ProblemFigure,
    labels: &[String],
    formats: &[String],
) -> Result<Vec<PathBuf>> {
    register_font();
    let runs: Vec<(String, RunData)> =
        labels.iter().map(|l| Ok((l.clone(), RunData::load(&dir.join(l))?))).collect::<Result<_>>()?;
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).with_context(|| format!("cannot create {}", fig_dir.display()))?;
    let net = figure == ProblemFigure::Network;
    // Networks: accuracies are drawn from the step by which every run fits.
    let fit = labels
        .iter()
        .map(|l| {
            std::fs::read_to_string(dir.join(l).join("summary.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["problem"]["fit_step"].as_f64())
        })
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::max));
    let rows = figure == ProblemFigure::Fig1;
    let size = if rows { (1800, 60 + 330 * runs.len() as u32) } else { (1800, 560) };
    let title = match figure {
        ProblemFigure::Network => format!("{name}: the same network and data, one curve per run"),
        ProblemFigure::Fig1 => format!("{name}: matrix completion with BN, one row per run"),
        _ => format!("{name}: one curve per run"),
    };
    let mut out = Vec::new();
    for fmt in formats {
        let path = fig_dir.join(format!("{name}.{fmt}"));
        let png = fmt == "png";
        let res = match (net, rows, png) {
            (true, _, true) => {
                net_variants_fig(BitMapBackend::new(&path, size).into_drawing_area(), &runs, &title, fit)
            }
            (true, _, false) => net_variants_fig(SVGBackend::new(&path, size).into_drawing_area(), &runs, &title, fit),
            (false, true, true) => variants_fig(BitMapBackend::new(&path, size).into_drawing_area(), &runs, &title),
            (false, true, false) => variants_fig(SVGBackend::new(&path, size).into_drawing_area(), &runs, &title),
            (false, false, true) => overlay_fig(BitMapBackend::new(&path, size).into_drawing_area(), &runs, &title),
            (false, false, false) => overlay_fig(SVGBackend::new(&path, size).into_drawing_area(), &runs, &title),
        };
        res.map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// Draws every figure for the run in `dir` into `dir/figures`; returns the
/// paths. `problem_summary` is summary.json's `problem` object (for zoom
/// windows), if known.
pub fn plot_run(
    dir: &Path,
    figure: ProblemFigure,
    name: &str,
    formats: &[String],
    problem_summary: Option<&serde_json::Map<String, serde_json::Value>>,
    dense_window: Option<(u64, u64)>,
) -> Result<Vec<PathBuf>> {
    register_font();
    let data = RunData::load(dir)?;
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).with_context(|| format!("cannot create {}", fig_dir.display()))?;
    let mut out = Vec::new();
    // The toy3d story happens in its first ~100 of 3000 steps.
    let logx = figure == ProblemFigure::Toy3d;
    let mut figures: Vec<(Panel, &str, (u32, u32))> = vec![(Panel::Overview, "overview", (1400, 1000))];
    if figure != ProblemFigure::OverviewOnly {
        figures.push((Panel::Own(figure), figure.stem(), figure.size()));
    }
    // fig4's zoom starts at the entry on λ1(φ_t), found at every step.
    let entry = problem_summary.and_then(|m| m.get("eos_entry_step_on_phi")).and_then(|v| v.as_f64());
    let fit = problem_summary.and_then(|m| m.get("fit_step")).and_then(|v| v.as_f64());
    let net_title = match problem_summary.and_then(|m| m.get("network")).and_then(|v| v.as_str()) {
        Some(n) => format!("{name}: {n}, full-batch GD+WD with ghost BN"),
        None => format!("{name}: network, full-batch GD+WD"),
    };
    let fig1_title = format!("{name}: matrix completion with BN (Fig. 1)");
    let (lo, hi) = dense_window.map_or((0.0, 0.0), |(a, b)| (a as f64, b as f64));
    if dense_window.is_some() {
        figures.push((Panel::Window, "window", (1600, 600)));
    }
    for (panel, stem, size) in figures {
        for fmt in formats {
            let path = fig_dir.join(format!("{stem}.{fmt}"));
            let png = fmt == "png";
            let res = match (panel, png) {
                (Panel::Overview, true) => {
                    overview(BitMapBackend::new(&path, size).into_drawing_area(), &data, name, logx)
                }
                (Panel::Overview, false) => {
                    overview(SVGBackend::new(&path, size).into_drawing_area(), &data, name, logx)
                }
                (Panel::Window, true) => window_fig(BitMapBackend::new(&path, size).into_drawing_area(), &data, lo, hi),
                (Panel::Window, false) => window_fig(SVGBackend::new(&path, size).into_drawing_area(), &data, lo, hi),
                (Panel::Own(ProblemFigure::Fig1), true) => {
                    fig1(BitMapBackend::new(&path, size).into_drawing_area(), &data, &fig1_title)
                }
                (Panel::Own(ProblemFigure::Fig1), false) => {
                    fig1(SVGBackend::new(&path, size).into_drawing_area(), &data, &fig1_title)
                }
                (Panel::Own(ProblemFigure::Network), true) => {
                    net_fig(BitMapBackend::new(&path, size).into_drawing_area(), &data, &net_title, fit)
                }
                (Panel::Own(ProblemFigure::Network), false) => {
                    net_fig(SVGBackend::new(&path, size).into_drawing_area(), &data, &net_title, fit)
                }
                (Panel::Own(ProblemFigure::Toy3d), true) => {
                    toy3d(BitMapBackend::new(&path, size).into_drawing_area(), &data)
                }
                (Panel::Own(ProblemFigure::Toy3d), false) => {
                    toy3d(SVGBackend::new(&path, size).into_drawing_area(), &data)
                }
                (Panel::Own(ProblemFigure::Fig4), true) => {
                    fig4(BitMapBackend::new(&path, size).into_drawing_area(), &data, entry)
                }
                (Panel::Own(ProblemFigure::Fig4), false) => {
                    fig4(SVGBackend::new(&path, size).into_drawing_area(), &data, entry)
                }
                // Not in `figures` (the overview is all there is).
                (Panel::Own(ProblemFigure::OverviewOnly), _) => Ok(()),
            };
            res.map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))?;
            out.push(path);
        }
    }
    out.extend(plot_spectrum_along(dir, name, formats)?);
    Ok(out)
}

/// What a flow figure puts beside the flow: GD+WD's sharpness column (on or
/// near Γ) and the problem's columns, each in metrics.csv and flow.csv
/// under one name.
pub struct FlowFigure {
    /// GD+WD's sharpness to compare λ1(ζ(τ)) with, and its label.
    pub sharpness: (Column, &'static str),
    /// Further panels: (flow.csv column, GD+WD's metrics.csv column, y
    /// label, log scale).
    pub panels: Vec<(Column, Column, &'static str, bool)>,
}

/// flow.csv's own columns.
pub mod flow_columns {
    use eosflow::run::Column;
    /// τ in the flow's unit.
    pub const TAU: Column = Column::new("tau");
    /// λ1(H(ζ(τ))).
    pub const SHARPNESS: Column = Column::new("sharpness");
    /// ‖∇_Γ log λ1(ζ(τ))‖.
    pub const GRAD_GAMMA_NORM: Column = Column::new("grad_gamma_norm");
    /// The GD+WD step that τ corresponds to, t_start + τ/(τ per step).
    pub const GD_STEP: Column = Column::new("gd_step");
    /// λ2(H(ζ)).
    pub const LAMBDA2: Column = Column::new("lambda2");
    /// Distance of the step's 5th-order point from Γ before its retraction.
    pub const OFF_MANIFOLD: Column = Column::new("off_manifold");
    /// L(ζ) after the retraction.
    pub const LOSS: Column = Column::new("loss");
    /// The integrator's step in τ.
    pub const STEP_SIZE: Column = Column::new("step_size");
    /// Evaluations so far.
    pub const GRADIENTS: Column = Column::new("gradients");
    pub const HVPS: Column = Column::new("hvps");
    pub const THIRD_CONTRACTIONS: Column = Column::new("third_contractions");
}

/// The flow against GD+WD: the flow's λ1(ζ(τ)) and GD+WD's reference
/// sharpness at τ = (t − t_start)·(τ per step), the problem's columns the
/// same way, and the flow's ‖∇_Γ log λ1‖.
fn flow_fig<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    flow: &HashMap<String, Vec<f64>>,
    gd: Option<&RunData>,
    fig: &FlowFigure,
    gd_tau: &dyn Fn(f64) -> f64,
    title: &str,
    unit: &str,
) -> DResult
where
    DB::ErrorType: 'static,
{
    use flow_columns as F;
    let col = |c: Column| flow.get(c.name()).map(|v| v.as_slice()).unwrap_or(&[]);
    let tau = col(F::TAU);
    let tau_end = tau.iter().copied().fold(0.0f64, f64::max);
    let n_panels = 2 + fig.panels.len();
    let shape = if n_panels <= 3 { (1, n_panels) } else { (2, n_panels.div_ceil(2)) };
    let cells = grid(&root, title, 24, shape)?;
    // GD+WD's steps within the flow's τ range, on the flow's time axis.
    let gd_series = |c: Column, positive: bool| -> Vec<(f64, f64)> {
        let Some(d) = gd else { return Vec::new() };
        let x: Vec<f64> = d.m(C::STEP).iter().map(|&t| gd_tau(t)).collect();
        // Empty cells (the runner's sharpness between evaluations) drop out.
        series(&x, d.m(c), positive).into_iter().filter(|p| p.0 >= 0.0 && p.0 <= tau_end).collect()
    };
    let xlabel = format!("τ  ({unit})");
    let (sc, slabel) = fig.sharpness;
    // The flow dashed over GD+WD, so that both stay visible where they agree.
    let lines = [("GD+WD", gd_series(sc, true), false), ("flow: λ1(ζ(τ))", series(tau, col(F::SHARPNESS), true), true)];
    let ylabel = format!("λ1  (GD+WD: {slabel})");
    panel_x(&cells[0], "(a) sharpness: flow vs GD+WD", &ylabel, &lines, &[0, 1], false, false, Some(&xlabel))?;
    for (i, (fc, gc, label, log)) in fig.panels.iter().enumerate() {
        let lines = [("GD+WD", gd_series(*gc, *log), false), ("flow", series(tau, col(*fc), *log), true)];
        let t = format!("({}) {label}", (b'b' + i as u8) as char);
        panel_x(&cells[1 + i], &t, label, &lines, &[0, 1], *log, false, Some(&xlabel))?;
    }
    let g = [
        ("‖∇_Γ log λ1‖", series(tau, col(F::GRAD_GAMMA_NORM), true), false),
        ("distance off Γ before retraction", series(tau, col(F::OFF_MANIFOLD), true), false),
    ];
    let t = format!("({}) the flow's gradient and retraction", (b'b' + fig.panels.len() as u8) as char);
    panel_x(&cells[1 + fig.panels.len()], &t, "", &g, &[1, 2], true, false, Some(&xlabel))?;
    root.present()?;
    Ok(())
}

/// Draws `flow_dir/figures/flow.{png,svg}` from `flow_dir/flow.csv` and,
/// GD+WD's run data when there is one to compare with; `gd_tau(t)` maps a
/// GD+WD step to the flow's τ.
pub fn plot_flow(
    flow_dir: &Path,
    gd: Option<&RunData>,
    fig: &FlowFigure,
    gd_tau: &dyn Fn(f64) -> f64,
    title: &str,
    unit: &str,
    formats: &[String],
) -> Result<Vec<PathBuf>> {
    register_font();
    let flow = read_csv(&flow_dir.join("flow.csv"))?;
    let fig_dir = flow_dir.join("figures");
    std::fs::create_dir_all(&fig_dir).with_context(|| format!("cannot create {}", fig_dir.display()))?;
    let n = fig.panels.len() + 2;
    let size = if n <= 3 { (600 * n as u32, 540) } else { (1400, 1040) };
    let mut out = Vec::new();
    for fmt in formats {
        let path = fig_dir.join(format!("flow.{fmt}"));
        let res = if fmt == "png" {
            flow_fig(BitMapBackend::new(&path, size).into_drawing_area(), &flow, gd, fig, gd_tau, title, unit)
        } else {
            flow_fig(SVGBackend::new(&path, size).into_drawing_area(), &flow, gd, fig, gd_tau, title, unit)
        };
        res.map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// An [`Axis`] as a plotters coordinate: linear in drawing units, with the
/// axis's labelled positions as bold key points and its minor ones as light
/// points (plotters' `WithKeyPoints` over f64 has no label formatter).
struct AxisCoord {
    linear: RangedCoordf64,
    major: Vec<f64>,
    minor: Vec<f64>,
}

impl AxisCoord {
    fn new(a: &Axis) -> Self {
        Self { linear: (a.lo..a.hi).into(), major: a.major_positions(), minor: a.minor.clone() }
    }
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;
    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }
    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() { self.minor.clone() } else { self.major.clone() }
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.linear.range()
    }
}

/// A chart on two [`Axis`]es (drawing units: log10 of the value on a log
/// axis), labelled by the tick policy of `ticks.rs`.
type Log10Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<AxisCoord, AxisCoord>>;

/// The chart of a panel: caption, label areas, and the mesh with the axes'
/// labelled and minor positions.
fn chart_on<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: (&str, &Axis),
    y: (&str, &Axis),
) -> Result<Log10Chart<'a, DB>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let mut b = ChartBuilder::on(area);
    b.caption(title, ("sans-serif", CAPTION))
        .margin(PANEL_MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA);
    let mut chart = b.build_cartesian_2d(AxisCoord::new(x.1), AxisCoord::new(y.1))?;
    chart
        .configure_mesh()
        .x_desc(x.0)
        .y_desc(y.0)
        .x_label_formatter(&|v| x.1.label(*v))
        .y_label_formatter(&|v| y.1.label(*v))
        .label_style(("sans-serif", 15))
        .light_line_style(BLACK.mix(0.06))
        .draw()?;
    Ok(chart)
}

/// A chart whose axes are given in drawing units, `(label, lo, hi, log)`
/// (log10 of the value where `log`): the tracking, drift and spectrum
/// panels.
fn log10_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: (&str, f64, f64, bool),
    y: (&str, f64, f64, bool),
) -> Result<Log10Chart<'a, DB>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let axis = |(_, lo, hi, log): (&str, f64, f64, bool)| {
        if log { Axis::new(10f64.powf(lo), 10f64.powf(hi), true, 8, false) } else { Axis::new(lo, hi, false, 6, false) }
    };
    let (xa, ya) = (axis(x), axis(y));
    chart_on(area, title, (x.0, &xa), (y.0, &ya))
}

/// The legend box every figure draws, at `pos`.
fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Log10Chart<'a, DB>, pos: SeriesLabelPosition) -> DResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(pos)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// One log–log panel of a tracking experiment: per problem, every run's
/// value (small dots), the median over seeds (line), and reference slopes
/// rate^(1/4) (Thm 4.6's bound) and rate^(1/2) (Remark 4.7's oscillation)
/// through the first problem's median at the largest rate. Drawn on log10
/// axes labelled at the decades.
fn tracking_rates_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    ylabel: &str,
    rate_name: &str,
    series: &[(String, Vec<(f64, f64)>)],
    refs: &[(f64, &str)],
    legend_at: SeriesLabelPosition,
) -> DResult
where
    DB::ErrorType: 'static,
{
    let lg = |v: f64| v.log10();
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|p| p.0 > 0.0 && p.1 > 0.0 && p.1.is_finite())
        .collect();
    let (x0, x1) = range(pts.iter().map(|p| p.0), true);
    let (y0, y1) = range(pts.iter().map(|p| p.1), true);
    let (x0, y0, y1) = (lg(x0), lg(y0), lg(y1));
    let mut chart = log10_chart(area, title, (rate_name, x0, lg(x1), true), (ylabel, y0, y1, true))?;
    let mut anchor: Option<(f64, f64)> = None;
    for (k, (label, p)) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let good: Vec<(f64, f64)> =
            p.iter().filter(|q| q.0 > 0.0 && q.1 > 0.0 && q.1.is_finite()).map(|q| (lg(q.0), lg(q.1))).collect();
        chart.draw_series(good.iter().map(|&q| Circle::new(q, 3, c.mix(0.5).filled())))?;
        let mut rates: Vec<f64> = good.iter().map(|q| q.0).collect();
        rates.sort_by(|a, b| b.total_cmp(a));
        rates.dedup();
        let med: Vec<(f64, f64)> = rates
            .iter()
            .map(|&r| {
                let mut ys: Vec<f64> = good.iter().filter(|q| q.0 == r).map(|q| q.1).collect();
                ys.sort_by(f64::total_cmp);
                (r, ys[ys.len() / 2])
            })
            .collect();
        if anchor.is_none() {
            anchor = med.first().copied();
        }
        chart
            .draw_series(LineSeries::new(med.iter().copied(), c.stroke_width(2)))?
            .label(format!("{label} (median over seeds)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    if let Some((ax, ay)) = anchor {
        for (k, &(p, label)) in refs.iter().enumerate() {
            let line = vec![(x0, ay + p * (x0 - ax)), (ax, ay)];
            let style = BLACK.mix(if k == 0 { 0.8 } else { 0.45 }).stroke_width(2);
            let (on, off) = if k == 0 { (8, 5) } else { (3, 3) };
            chart
                .draw_series(DashedLineSeries::new(line, on, off, style))?
                .label(label.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    legend(&mut chart, legend_at)
}

fn tracking_fig<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    data: &crate::tracking::TrackingFigureData,
    title: &str,
    rate_name: &str,
) -> DResult
where
    DB::ErrorType: 'static,
{
    let n = data.problems.len();
    let panels = grid(&root, title, 26, if n <= 1 { (1, 3) } else { (2, 1 + n.div_ceil(2).max(1)) })?;
    let (bound, osc) = if rate_name == "eta_in" { (0.25, 0.5) } else { (0.5, 1.0) };
    let frac = |p: f64| {
        if p == 0.25 {
            "1/4".to_string()
        } else if p == 0.5 {
            "1/2".to_string()
        } else {
            format!("{p}")
        }
    };
    let rate_sym = if rate_name == "eta_in" { "η_in" } else { "η" };
    let bound_label = format!("∝ {rate_sym}^({}), the theorem's bound", frac(bound));
    let (iterate, osc_ref) = if rate_name == "eta_in" { ("θ_t", "Rem. 4.7") } else { ("w_t", "η·h, App. H.1") };
    let osc_label = format!("∝ {rate_sym}^({}), the oscillation ({osc_ref})", frac(osc));
    let refs = [(bound, bound_label.as_str()), (osc, osc_label.as_str())];
    let dist: Vec<(String, Vec<(f64, f64)>)> =
        data.problems.iter().map(|p| (p.label.clone(), p.points.iter().map(|q| (q.0, q.2)).collect())).collect();
    let phi: Vec<(String, Vec<(f64, f64)>)> =
        data.problems.iter().map(|p| (p.label.clone(), p.points.iter().map(|q| (q.0, q.3)).collect())).collect();
    let tau_label = if rate_name == "eta_in" { "τ = t·η_in" } else { "τ = t·η²" };
    let title_a = format!("(a) max_t ‖{iterate} − ζ(τ_t)‖");
    // Increasing data on log–log axes leave the lower right empty.
    let lr = SeriesLabelPosition::LowerRight;
    tracking_rates_panel(&panels[0], &title_a, "max distance", rate_sym, &dist, &refs, lr)?;
    let title_b = "(b) max_t ‖φ_t − ζ(τ_t)‖ (drift along Γ)";
    tracking_rates_panel(&panels[1], title_b, "max distance", rate_sym, &phi, &refs, SeriesLabelPosition::LowerRight)?;
    let letters = ['c', 'd', 'e', 'f', 'g', 'h'];
    for (k, p) in data.problems.iter().enumerate() {
        let Some(area) = panels.get(2 + k) else { break };
        let t = format!("({}) {}: ‖{iterate} − ζ(τ)‖, first seed", letters[k % letters.len()], p.label);
        tracking_traces_panel(area, &t, tau_label, rate_sym, &p.traces)?;
    }
    root.present()?;
    Ok(())
}

/// ‖θ_t − ζ(τ)‖ against τ for each rate, on a log10 axis with headroom
/// above the data for the legend (the curves end flat at their highest
/// values on the right, where a legend inside the data would cover them).
fn tracking_traces_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    xlabel: &str,
    rate_sym: &str,
    traces: &[(f64, Vec<(f64, f64)>)],
) -> DResult
where
    DB::ErrorType: 'static,
{
    let good = |p: &&(f64, f64)| p.1 > 0.0 && p.1.is_finite();
    let (x0, x1) = range(traces.iter().flat_map(|t| t.1.iter().map(|p| p.0)), false);
    let (y0, y1) = range(traces.iter().flat_map(|t| t.1.iter().filter(good).map(|p| p.1)), true);
    let (y0, y1) = (y0.log10(), y1.log10());
    // The legend takes about 1/24 of the plot's height a row.
    let share = (traces.len() as f64 / 24.0 + 0.03).min(0.6);
    let y1 = y1 + (y1 - y0) * share / (1.0 - share);
    let mut chart = log10_chart(area, title, (xlabel, x0, x1, false), ("distance", y0, y1, true))?;
    for (k, (rate, pts)) in traces.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let line: Vec<(f64, f64)> = pts.iter().filter(good).map(|p| (p.0, p.1.log10())).collect();
        chart
            .draw_series(LineSeries::new(line, c.stroke_width(1)))?
            .label(format!("{rate_sym} = {rate:.1e}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// `figures/tracking.*` of a tracking experiment.
pub fn plot_tracking(
    dir: &Path,
    title: &str,
    rate_name: &str,
    data: &crate::tracking::TrackingFigureData,
    formats: &[String],
) -> Result<Vec<PathBuf>> {
    register_font();
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).with_context(|| format!("cannot create {}", fig_dir.display()))?;
    let n = data.problems.len();
    let size = if n <= 1 { (1800, 540) } else { (600 * (1 + n.div_ceil(2)) as u32, 1040) };
    let mut out = Vec::new();
    for fmt in formats {
        let path = fig_dir.join(format!("tracking.{fmt}"));
        let res = if fmt == "png" {
            tracking_fig(BitMapBackend::new(&path, size).into_drawing_area(), data, title, rate_name)
        } else {
            tracking_fig(SVGBackend::new(&path, size).into_drawing_area(), data, title, rate_name)
        };
        res.map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// Fig. 5 from a measured run (`[drift]`): (a) the potential well of (17)
/// at the late K with the measured cycles' energies, (b) the phase
/// portrait of (log|h|, −u) over the level sets of the energy with the
/// measured trajectory on top (darker later), (c) the energy along the
/// measured path, (d) each cycle's period against (17)'s at its energy.
fn drift_fig<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, a: &crate::drift::DriftAnalysis, title: &str) -> DResult
where
    DB::ErrorType: 'static,
{
    use eosflow::drift::Hamiltonian;
    let panels = grid(&root, title, 26, (2, 2))?;
    let good: Vec<&eosflow::drift::Cycle> =
        a.cycles.iter().zip(&a.valid).filter(|(_, v)| **v).map(|(c, _)| c).collect();
    let late_k = a.summary["late"]["k"].as_f64().filter(|k| k.is_finite()).unwrap_or(2.0 * a.c_b.sqrt());
    let ham = Hamiltonian { k: late_k, c_b: a.c_b };
    let e_star = ham.fixed_point_energy();
    let e_max = good.iter().map(|c| c.energy).fold(e_star + 1.0, f64::max);
    let (x_lo, x_hi) = ham.turning_points(e_max).unwrap_or((-5.0, 1.0));
    let pad = 0.1 * (x_hi - x_lo);
    // (a) the well.
    let xs: Vec<f64> = (0..=400).map(|i| x_lo - pad + (x_hi - x_lo + 2.0 * pad) * i as f64 / 400.0).collect();
    let well: Vec<(f64, f64)> = xs.iter().map(|&x| (x, ham.potential(x))).collect();
    // Headroom above the highest level for the legend.
    let top = e_max + 0.45 * (e_max - e_star);
    let mut chart = log10_chart(
        &panels[0],
        &format!("(a) the potential well U(x) = K²e^(2x) − C_b·x, K = {late_k:.3}, C_b = {}", a.c_b),
        ("x = log|h|", x_lo - pad, x_hi + pad, false),
        ("U(x)", e_star - 0.1 * (top - e_star), top, false),
    )?;
    chart
        .draw_series(LineSeries::new(well.iter().copied().filter(|p| p.1 <= top), BLACK.stroke_width(2)))?
        .label("U(x)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    let picks: Vec<(&str, f64)> = [
        ("first valid cycle", good.first().map(|c| c.energy)),
        ("last valid cycle", good.last().map(|c| c.energy)),
        ("fixed point E*", Some(e_star)),
    ]
    .into_iter()
    .filter_map(|(l, e)| e.map(|e| (l, e)))
    .collect();
    for (k, (label, e)) in picks.iter().enumerate() {
        let c = COLORS[(k + 1) % COLORS.len()];
        let seg = match ham.turning_points(*e) {
            Some((l, r)) => vec![(l, *e), (r, *e)],
            None => vec![(ham.fixed_point_x(), *e)],
        };
        chart
            .draw_series(LineSeries::new(seg, c.stroke_width(2)).point_size(3))?
            .label(format!("{label}: E = {e:.3}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperMiddle)?;
    // (b) the phase portrait.
    let p_max = (2.0 * (e_max - e_star)).sqrt() * 1.1;
    let mut chart = log10_chart(
        &panels[1],
        "(b) phase portrait of (log|h|, −u): level sets of E, measured path",
        ("x = log|h|", x_lo - pad, x_hi + pad, false),
        ("p = −u", -p_max, p_max, false),
    )?;
    for i in 1..=6 {
        let e = e_star + (e_max - e_star) * (i as f64 / 6.0).powi(2);
        let Some((l, r)) = ham.turning_points(e) else { continue };
        let n = 200;
        let half: Vec<(f64, f64)> = (0..=n)
            .map(|j| {
                let x = l + (r - l) * (0.5 - 0.5 * (std::f64::consts::PI * j as f64 / n as f64).cos());
                (x, (2.0 * (e - ham.potential(x))).max(0.0).sqrt())
            })
            .collect();
        let ring: Vec<(f64, f64)> = half.iter().copied().chain(half.iter().rev().map(|&(x, p)| (x, -p))).collect();
        chart.draw_series(LineSeries::new(ring, BLACK.mix(0.35).stroke_width(1)))?;
    }
    // The path from where its energy is within the drawn levels (before
    // EoS u ≪ 0 and E is far above them).
    let first = a.path.iter().position(|q| q.3 <= e_max * 1.05).unwrap_or(a.path.len());
    let shown = &a.path[first..];
    let every = (shown.len() / 20_000).max(1);
    let pts: Vec<(f64, f64)> = shown.iter().step_by(every).map(|&(_, x, p, _)| (x, p)).collect();
    let chunks = 8;
    let len = pts.len().div_ceil(chunks).max(1);
    for (k, part) in pts.chunks(len).enumerate() {
        let shade = 0.25 + 0.75 * (k as f64 + 1.0) / chunks as f64;
        let c = COLORS[0].mix(shade);
        let series = chart.draw_series(LineSeries::new(part.iter().copied(), c.stroke_width(1)))?;
        if k == 0 {
            series
                .label("measured (lighter earlier)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[0].stroke_width(2)));
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    // (c) the energy along the path.
    // E from ~1e4 before EoS to E* ≈ 2 in it: a log axis.
    let every = (a.path.len() / 20_000).max(1);
    let en: Vec<(f64, f64)> =
        a.path.iter().step_by(every).filter(|q| q.3 > 0.0).map(|&(t, _, _, e)| (t / a.eta, e.log10())).collect();
    let (t0, t1) = range(en.iter().map(|p| p.0), false);
    let (e0, e1) = range(en.iter().map(|p| 10f64.powf(p.1)).chain([e_star]), true);
    let (e0, e1) = (e0.log10(), e1.log10());
    let mut chart = log10_chart(
        &panels[2],
        "(c) the energy E = ½u² + K²h² − C_b·log|h| along GD+WD",
        ("step", t0, t1, false),
        ("E", e0, e1, true),
    )?;
    let e_star_l = e_star.log10();
    chart
        .draw_series(LineSeries::new(en, COLORS[0].stroke_width(1)))?
        .label("measured E_t")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[0].stroke_width(2)));
    let cyc: Vec<(f64, f64)> =
        good.iter().filter(|c| c.energy > 0.0).map(|c| (0.5 * (c.start + c.end) / a.eta, c.energy.log10())).collect();
    chart
        .draw_series(cyc.iter().map(|&q| Circle::new(q, 3, COLORS[1].filled())))?
        .label("cycle means (valid cycles)")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, COLORS[1].filled()));
    chart
        .draw_series(DashedLineSeries::new(vec![(t0, e_star_l), (t1, e_star_l)], 6, 4, BLACK.stroke_width(2)))?
        .label("E* (fixed point, late K)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    // (d) periods.
    let meas: Vec<(f64, f64)> = good.iter().map(|c| (c.start / a.eta, c.measured_period / a.eta)).collect();
    let pred: Vec<(f64, f64)> =
        good.iter().filter_map(|c| c.predicted_period.map(|p| (c.start / a.eta, p / a.eta))).collect();
    let small = ham.small_oscillation_period() / a.eta;
    let (s0, s1) = range(meas.iter().chain(&pred).map(|p| p.0), false);
    let (q0, q1) = range(meas.iter().chain(&pred).map(|p| p.1).chain([small]), false);
    let mut chart = log10_chart(
        &panels[3],
        "(d) period of each cycle: measured and (17) at its energy",
        ("cycle start (step)", s0, s1, false),
        ("period (steps)", q0, q1, false),
    )?;
    chart
        .draw_series(meas.iter().map(|&q| Circle::new(q, 3, COLORS[0].filled())))?
        .label("measured")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, COLORS[0].filled()));
    chart
        .draw_series(LineSeries::new(pred, COLORS[1].stroke_width(2)))?
        .label("predicted by (17) at the cycle's energy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[1].stroke_width(2)));
    chart
        .draw_series(DashedLineSeries::new(vec![(s0, small), (s1, small)], 6, 4, BLACK.stroke_width(2)))?
        .label("small oscillations, 2π/(η√(2C_b))")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

/// `figures/fig5.*` of a run with `[drift]`.
pub fn plot_drift(dir: &Path, name: &str, a: &crate::drift::DriftAnalysis, formats: &[String]) -> Result<Vec<PathBuf>> {
    register_font();
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).with_context(|| format!("cannot create {}", fig_dir.display()))?;
    let title = format!("{name}: the RMS-drift process (h, u) of eq. (16) and its Hamiltonian (17), as Fig. 5");
    let mut out = Vec::new();
    for fmt in formats {
        let path = fig_dir.join(format!("fig5.{fmt}"));
        let res = if fmt == "png" {
            drift_fig(BitMapBackend::new(&path, (1500, 1100)).into_drawing_area(), a, &title)
        } else {
            drift_fig(SVGBackend::new(&path, (1500, 1100)).into_drawing_area(), a, &title)
        };
        res.map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// One problem of an `[entry]` experiment, a row per run.
pub struct EntryFigureProblem {
    pub label: String,
    pub rows: Vec<EntryFigureRow>,
}

/// One run of an `[entry]` experiment.
pub struct EntryFigureRow {
    pub eta_in: f64,
    /// |η̃_t1 − 2/λ1(θ*)|.
    pub gap: f64,
    /// ‖θ_t1 − θ*‖.
    pub dist: f64,
    /// ‖φ_t1 − φ_0‖.
    pub phi_move: f64,
    /// t1 and its lower bound.
    pub step: Option<u64>,
    pub lower_bound: Option<f64>,
}

fn entry_fig<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, data: &[EntryFigureProblem], title: &str) -> DResult
where
    DB::ErrorType: 'static,
{
    let panels = grid(&root, title, 26, (data.len().max(1), 2))?;
    for (k, p) in data.iter().enumerate() {
        let pick = |f: &dyn Fn(&EntryFigureRow) -> Option<f64>| -> Vec<(f64, f64)> {
            p.rows.iter().filter_map(|r| f(r).map(|v| (r.eta_in, v))).collect()
        };
        let series = vec![
            ("|η̃_t1 − 2/λ1(θ*)|".to_string(), pick(&|r| Some(r.gap))),
            ("‖θ_t1 − θ*‖".to_string(), pick(&|r| Some(r.dist))),
            ("‖φ_t1 − φ_0‖ (moved along Γ)".to_string(), pick(&|r| Some(r.phi_move))),
        ];
        let refs = [(0.5, "∝ η_in^(1/2), Thm 4.3's O(√η_in)")];
        let t = format!("({}) {}: at the EoS entry t1", ['a', 'c', 'e'][k % 3], p.label);
        tracking_rates_panel(&panels[2 * k], &t, "", "η_in", &series, &refs, SeriesLabelPosition::LowerRight)?;
        let excess: Vec<f64> = p.rows.iter().filter_map(|r| Some(r.step? as f64 - r.lower_bound?)).collect();
        let (lo, hi) = excess.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let steps = vec![
            (format!("entry step t1 (t1 − bound: {lo:.2} … {hi:.2} steps)"), pick(&|r| r.step.map(|s| s as f64))),
            ("lower bound from (14): η̃ grows ≤ (1 − η_in)^(−2) a step".to_string(), pick(&|r| r.lower_bound)),
        ];
        let t = format!("({}) {}: t1 against its bound", ['b', 'd', 'f'][k % 3], p.label);
        tracking_rates_panel(&panels[2 * k + 1], &t, "steps", "η_in", &steps, &[], SeriesLabelPosition::UpperRight)?;
    }
    root.present()?;
    Ok(())
}

/// `figures/entry.*` of an `[entry]` experiment.
pub fn plot_entry(dir: &Path, name: &str, data: &[EntryFigureProblem], formats: &[String]) -> Result<Vec<PathBuf>> {
    register_font();
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).with_context(|| format!("cannot create {}", fig_dir.display()))?;
    let title = format!("{name}: GD+WD from the stable regime near θ* into EoS (Thm 4.3)");
    let size = (1400, 60 + 500 * data.len().max(1) as u32);
    let mut out = Vec::new();
    for fmt in formats {
        let path = fig_dir.join(format!("entry.{fmt}"));
        let res = if fmt == "png" {
            entry_fig(BitMapBackend::new(&path, size).into_drawing_area(), data, &title)
        } else {
            entry_fig(SVGBackend::new(&path, size).into_drawing_area(), data, &title)
        };
        res.map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// `figures/spectrum.*`: (a) the SLQ density on a log scale (as Papyan's and
/// Ghorbani et al.'s), the top eigenvalue marked; (b) with blocks, each
/// block's top eigenvalue (× its ‖w_B‖²) as a bar.
pub fn plot_spectrum(
    dir: &Path,
    name: &str,
    grid: &[f64],
    density: &[f64],
    top: f64,
    bars: &[(String, f64)],
    formats: &[String],
) -> Result<Vec<PathBuf>> {
    register_font();
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).with_context(|| format!("cannot create {}", fig_dir.display()))?;
    let two = bars.len() > 1;
    let size = if two { (1600, 600) } else { (900, 600) };
    let mut out = Vec::new();
    for fmt in formats {
        let path = fig_dir.join(format!("spectrum.{fmt}"));
        let res = if fmt == "png" {
            spectrum_fig(BitMapBackend::new(&path, size).into_drawing_area(), name, grid, density, top, bars)
        } else {
            spectrum_fig(SVGBackend::new(&path, size).into_drawing_area(), name, grid, density, top, bars)
        };
        res.map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

fn spectrum_fig<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    name: &str,
    grid: &[f64],
    density: &[f64],
    top: f64,
    bars: &[(String, f64)],
) -> DResult
where
    DB::ErrorType: 'static,
{
    let panels = grid_panels(&root, name, bars.len() > 1)?;
    // Densities below 1e-10 of the peak are the Gaussians' tails: drawn at
    // that floor.
    let peak = density.iter().copied().fold(0.0f64, f64::max);
    let pts: Vec<(f64, f64)> = grid.iter().zip(density).map(|(x, d)| (*x, d.max(1e-10 * peak).log10())).collect();
    let (x0, x1) = range(grid.iter().copied(), false);
    let (y0, y1) = range(pts.iter().map(|p| 10f64.powf(p.1)), true);
    let mut chart = log10_chart(
        &panels[0],
        "(a) spectral density (SLQ, Gaussian broadening)",
        ("eigenvalue", x0, x1, false),
        ("density", y0.log10(), y1.log10(), true),
    )?;
    chart
        .draw_series(LineSeries::new(pts, COLORS[0].stroke_width(2)))?
        .label("density")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[0].stroke_width(2)));
    chart
        .draw_series(DashedLineSeries::new(
            vec![(top, y0.log10()), (top, y1.log10())],
            6,
            4,
            COLORS[1].stroke_width(2),
        ))?
        .label(format!("λ1 = {top:.4e} (Lanczos)"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[1].stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::UpperMiddle)?;
    if bars.len() > 1 {
        let n = bars.len();
        let (v0, v1) = range(bars.iter().map(|b| b.1).chain([0.0]), false);
        let mut b = ChartBuilder::on(&panels[1]);
        b.caption("(b) top eigenvalue per block, × ‖w_B‖²", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(20);
        let mut chart = b.build_cartesian_2d(v0.min(0.0)..v1, 0.0..n as f64)?;
        // Each bar carries its block's name; the y axis has no ticks.
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("λ1(block) × ‖w_B‖²")
            .label_style(("sans-serif", 13))
            .draw()?;
        let y = |i: usize| (n - 1 - i) as f64;
        chart.draw_series(
            bars.iter().enumerate().map(|(i, (_, v))| {
                Rectangle::new([(0.0, y(i) + 0.15), (*v, y(i) + 0.85)], COLORS[0].mix(0.6).filled())
            }),
        )?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (label, v))| {
            Text::new(format!("{label}: {v:.4e}"), (0.0, y(i) + 0.62), ("sans-serif", 15).into_font())
        }))?;
    }
    root.present()?;
    Ok(())
}

/// The spectrum figure's one or two panels under its title.
fn grid_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    name: &str,
    two: bool,
) -> Result<Vec<DrawingArea<DB, Shift>>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    grid(root, &format!("{name}: the Hessian's spectrum"), 24, (1, if two { 2 } else { 1 }))
}

/// spectrum.csv (`[spectrum]`) as series per block: (name, steps, top ×
/// ‖w_B‖², trace × ‖w_B‖² with its standard error when estimated).
struct BlockSeries {
    name: String,
    top: Vec<(f64, f64)>,
    trace: Vec<(f64, f64, f64)>,
}

fn read_spectrum_csv(path: &Path) -> Result<Vec<BlockSeries>> {
    let mut rd = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let head = rd.headers().with_context(|| format!("{}: no header", path.display()))?.clone();
    let col = |name: &str| {
        head.iter().position(|h| h == name).ok_or_else(|| anyhow!("{}: no column {name:?}", path.display()))
    };
    let (step, block, top, trace, se, norm2) = (
        col("step")?,
        col("block")?,
        col("top_times_w_norm2")?,
        col("trace")?,
        col("trace_std_error")?,
        col("w_norm2")?,
    );
    let mut out: Vec<BlockSeries> = Vec::new();
    for rec in rd.records() {
        let rec = rec.with_context(|| format!("{}: unreadable row", path.display()))?;
        let num = |i: usize| rec.get(i).and_then(|v| v.parse::<f64>().ok());
        let name = rec.get(block).unwrap_or("").to_string();
        let Some(t) = num(step) else { continue };
        let k = match out.iter().position(|b| b.name == name) {
            Some(k) => k,
            None => {
                out.push(BlockSeries { name, top: Vec::new(), trace: Vec::new() });
                out.len() - 1
            }
        };
        if let Some(v) = num(top) {
            out[k].top.push((t, v));
        }
        if let (Some(v), Some(e), Some(n)) = (num(trace), num(se), num(norm2)) {
            out[k].trace.push((t, v * n, e * n));
        }
    }
    Ok(out)
}

/// `figures/spectrum_blocks.*` of a run with `[spectrum]`: (a) each block's
/// top eigenvalue × ‖w_B‖² against the step on a log scale (Fig. 2's
/// falling sharpness, per layer), (b) each block's Hutch++ trace, × ‖w_B‖²
/// as well (the raw trace grows as weight decay shrinks ‖w‖), with a ±2
/// standard-error band.
pub fn plot_spectrum_along(dir: &Path, name: &str, formats: &[String]) -> Result<Vec<PathBuf>> {
    let path = dir.join(crate::rundir::SPECTRUM_CSV);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    register_font();
    let blocks = read_spectrum_csv(&path)?;
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).with_context(|| format!("cannot create {}", fig_dir.display()))?;
    let mut out = Vec::new();
    for fmt in formats {
        let p = fig_dir.join(format!("spectrum_blocks.{fmt}"));
        let res = if fmt == "png" {
            spectrum_along_fig(BitMapBackend::new(&p, (1600, 600)).into_drawing_area(), name, &blocks)
        } else {
            spectrum_along_fig(SVGBackend::new(&p, (1600, 600)).into_drawing_area(), name, &blocks)
        };
        res.map_err(|e| anyhow!("cannot draw {}: {e}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

fn spectrum_along_fig<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, name: &str, blocks: &[BlockSeries]) -> DResult
where
    DB::ErrorType: 'static,
{
    let panels = grid(&root, &format!("{name}: the Hessian's blocks along training ([spectrum])"), 24, (1, 2))?;
    let steps = || blocks.iter().flat_map(|b| b.top.iter().map(|p| p.0));
    let (x0, x1) = range(steps(), false);
    let (y0, y1) = range(blocks.iter().flat_map(|b| b.top.iter().map(|p| p.1)), true);
    let mut chart = log10_chart(
        &panels[0],
        "(a) top eigenvalue per block, × ‖w_B‖²",
        ("step", x0.max(0.0), x1, false),
        ("λ1(H_BB)·‖w_B‖²", y0.log10(), y1.log10(), true),
    )?;
    for (i, b) in blocks.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = b.top.iter().filter(|p| p.1 > 0.0).map(|p| (p.0, p.1.log10())).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(b.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    let with_trace: Vec<&BlockSeries> = blocks.iter().filter(|b| !b.trace.is_empty()).collect();
    let (v0, v1) =
        range(with_trace.iter().flat_map(|b| b.trace.iter().flat_map(|t| [t.1 - 2.0 * t.2, t.1 + 2.0 * t.2])), false);
    let mut chart = log10_chart(
        &panels[1],
        "(b) trace per block, × ‖w_B‖² (Hutch++, ±2 standard errors)",
        ("step", x0.max(0.0), x1, false),
        ("tr(H_BB)·‖w_B‖²", v0, v1, false),
    )?;
    for (i, b) in blocks.iter().enumerate().filter(|(_, b)| !b.trace.is_empty()) {
        let c = COLORS[i % COLORS.len()];
        let mut band: Vec<(f64, f64)> = b.trace.iter().map(|t| (t.0, t.1 + 2.0 * t.2)).collect();
        band.extend(b.trace.iter().rev().map(|t| (t.0, t.1 - 2.0 * t.2)));
        chart.draw_series(std::iter::once(Polygon::new(band, c.mix(0.15).filled())))?;
        chart
            .draw_series(LineSeries::new(b.trace.iter().map(|t| (t.0, t.1)), c.stroke_width(2)))?
            .label(b.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    if !with_trace.is_empty() {
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    root.present()?;
    Ok(())
}
