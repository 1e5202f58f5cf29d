//! Hand-written SVG charts of a simulation: per policy, cost against what the capacity mix
//! risked (losses, recompute, spot-share error); nodes by capacity type over time; cumulative
//! cost; pending pods; and the spot share of the largest applications against their targets.

use super::report::{RunResult, SimReport};
use std::fmt::Write as _;

const W: f64 = 900.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Points kept per line; longer lines are thinned evenly (the last point is always kept).
const MAX_POINTS: usize = 2000;
const PALETTE: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// One line: segments of (x, y) points (a gap between segments), drawn as steps or straight.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub segments: Vec<Vec<(f64, f64)>>,
    pub color: usize,
    pub dashed: bool,
    pub step: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    /// Fixed y range (e.g. 0..1 for shares); None: 0..max.
    pub y_max: Option<f64>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round tick step giving about `n` ticks over `span`.
fn tick_step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if (v * 10.0).fract().abs() < 1e-9 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let every = points.len().div_ceil(MAX_POINTS);
    let mut v: Vec<(f64, f64)> = points.iter().step_by(every).copied().collect();
    if let Some(&last) = points.last() {
        if v.last() != Some(&last) {
            v.push(last);
        }
    }
    v
}

impl Chart {
    pub fn render(&self) -> String {
        let all = self.lines.iter().flat_map(|l| l.segments.iter().flatten());
        let (mut x_max, mut y_max) = (0.0f64, 0.0f64);
        for &(x, y) in all {
            x_max = x_max.max(x);
            y_max = y_max.max(y);
        }
        let y_max = self
            .y_max
            .unwrap_or(if y_max > 0.0 { y_max * 1.05 } else { 1.0 });
        let x_max = if x_max > 0.0 { x_max } else { 1.0 };
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let sx = |x: f64| LEFT + x / x_max * pw;
        let sy = |y: f64| TOP + ph - (y / y_max).clamp(0.0, 1.0) * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            esc(&self.title)
        );
        // Grid and ticks.
        let ys = tick_step(y_max, 5.0);
        let mut y = 0.0;
        while y <= y_max + 1e-9 {
            let py = sy(y);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                py + 4.0,
                fmt_tick(y)
            );
            y += ys;
        }
        let xs = tick_step(x_max, 8.0);
        let mut x = 0.0;
        while x <= x_max + 1e-9 {
            let px = sx(x);
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#333"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 5.0,
                TOP + ph + 18.0,
                fmt_tick(x)
            );
            x += xs;
        }
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
            TOP + ph,
            TOP + ph,
            LEFT + pw,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 10.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(&self.y_label)
        );
        // Lines.
        for line in &self.lines {
            let color = PALETTE[line.color % PALETTE.len()];
            let dash = if line.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            for seg in &line.segments {
                let seg = thin(seg);
                if seg.is_empty() {
                    continue;
                }
                let mut pts = String::new();
                let mut prev: Option<(f64, f64)> = None;
                for &(x, y) in &seg {
                    if let (true, Some((_, py))) = (line.step, prev) {
                        let _ = write!(pts, "{:.1},{:.1} ", sx(x), sy(py));
                    }
                    let _ = write!(pts, "{:.1},{:.1} ", sx(x), sy(y));
                    prev = Some((x, y));
                }
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{}"/>"#,
                    pts.trim_end()
                );
            }
        }
        // Legend.
        for (i, line) in self.lines.iter().enumerate() {
            let color = PALETTE[line.color % PALETTE.len()];
            let ly = TOP + 10.0 + i as f64 * 18.0;
            let lx = W - RIGHT + 15.0;
            let dash = if line.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 24.0,
                lx + 30.0,
                ly + 4.0,
                esc(&line.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn hours(t: f64) -> f64 {
    t / 3600.0
}

fn capacity_types(runs: &[RunResult]) -> Vec<String> {
    let mut types: Vec<String> = runs
        .iter()
        .flat_map(|r| r.samples.iter().flat_map(|s| s.nodes.keys().cloned()))
        .collect();
    types.sort();
    types.dedup();
    types
}

/// One row per policy, three panels of horizontal bars side by side: total cost (with the
/// saving against the reference), executors and drivers lost, and the mean spot-share error
/// with its floor marked. Cheaper is left in the first panel; safer is left in the others.
fn cost_vs_losses(report: &SimReport) -> String {
    let policies: Vec<(&str, &super::report::PolicyReport)> = report
        .runs
        .iter()
        .filter_map(|r| {
            report
                .policies
                .get(&r.policy)
                .map(|p| (r.policy.as_str(), p))
        })
        .collect();
    let row_h = 34.0;
    let label_w = 170.0;
    // Cost, losses (the longest labels) and spot-share error panels.
    let panel = [250.0, 370.0, 220.0];
    let gap = 30.0;
    let top = 70.0;
    let x_of = |k: usize| label_w + panel[..k].iter().sum::<f64>() + k as f64 * gap;
    let width = x_of(3);
    let height = top + row_h * policies.len() as f64 + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="22" font-size="15" text-anchor="middle">What each policy cost, and what it risked ({})</text>"#,
        width / 2.0,
        esc(&report.trace)
    );
    let cost_max = policies.iter().map(|p| p.1.cost_total).fold(0.0, f64::max);
    let loss_max = policies
        .iter()
        .map(|p| (p.1.executor_losses + p.1.driver_losses) as f64)
        .fold(0.0, f64::max);
    let err_max = policies
        .iter()
        .filter_map(|p| p.1.spot_share_abs_error_mean)
        .fold(0.0, f64::max);
    let panels = [
        ("cost $ (saving vs reference)", cost_max),
        ("executors / drivers lost (work redone)", loss_max),
        ("spot share |error| (| = floor)", err_max),
    ];
    for (k, (title, _)) in panels.iter().enumerate() {
        let x = x_of(k);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" font-weight="bold">{}</text>"#,
            top - 14.0,
            esc(title)
        );
    }
    let bar = |s: &mut String, x: f64, y: f64, w: f64, h: f64, color: &str| {
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{color}"/>"#,
            w.max(0.0)
        );
    };
    // Bars take at most half a panel, leaving room for their labels.
    let scale = |v: f64, max: f64, k: usize| {
        if max > 0.0 {
            v / max * panel[k] * 0.5
        } else {
            0.0
        }
    };
    for (i, (name, p)) in policies.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            label_w - 10.0,
            y + row_h / 2.0 + 4.0,
            esc(name)
        );
        // Cost.
        let x0 = x_of(0);
        let w = scale(p.cost_total, cost_max, 0);
        bar(&mut s, x0, y + 6.0, w, row_h - 12.0, PALETTE[0]);
        let saving = match p.cost_saving_vs_reference {
            _ if report.reference.as_deref() == Some(*name) => " (reference)".to_owned(),
            Some(v) => format!(" ({:+.0}%)", -v * 100.0),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{:.2}{}</text>"#,
            x0 + w + 4.0,
            y + row_h / 2.0 + 4.0,
            p.cost_total,
            saving
        );
        // Losses: executors then drivers, stacked.
        let x1 = x_of(1);
        let we = scale(p.executor_losses as f64, loss_max, 1);
        let wd = scale(p.driver_losses as f64, loss_max, 1);
        bar(&mut s, x1, y + 6.0, we, row_h - 12.0, PALETTE[1]);
        bar(&mut s, x1 + we, y + 6.0, wd, row_h - 12.0, PALETTE[3]);
        let redone =
            (p.recompute_executor_seconds + p.work_lost_with_drivers_executor_seconds) / 3600.0;
        let unfinished = p.apps_submitted - p.apps_completed;
        let unfinished = if unfinished > 0 {
            format!(", {unfinished} unfinished")
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{} / {} ({redone:.1} h redone{unfinished})</text>"#,
            x1 + we + wd + 4.0,
            y + row_h / 2.0 + 4.0,
            p.executor_losses,
            p.driver_losses
        );
        // Spot-share error and its floor.
        let x2 = x_of(2);
        match p.spot_share_abs_error_mean {
            Some(e) => {
                let w = scale(e, err_max, 2);
                bar(&mut s, x2, y + 6.0, w, row_h - 12.0, PALETTE[2]);
                if let Some(f) = p.spot_share_error_floor {
                    let fx = x2 + scale(f, err_max, 2);
                    let _ = writeln!(
                        s,
                        r##"<line x1="{fx:.1}" y1="{:.1}" x2="{fx:.1}" y2="{:.1}" stroke="#333" stroke-width="2"/>"##,
                        y + 2.0,
                        y + row_h - 2.0
                    );
                }
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}">{:.3}</text>"#,
                    x2 + w.max(scale(p.spot_share_error_floor.unwrap_or(0.0), err_max, 2)) + 4.0,
                    y + row_h / 2.0 + 4.0,
                    e
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}">-</text>"#,
                    x2 + 4.0,
                    y + row_h / 2.0 + 4.0
                );
            }
        }
    }
    let note_y = height - 14.0;
    let reference = report.reference.as_deref().unwrap_or("none");
    let _ = writeln!(
        s,
        r##"<text x="{label_w:.1}" y="{note_y:.1}" fill="#555">Saving against {}. Losses: placed pods lost to spot interruption, consolidation, node removal or preemption.</text>"##,
        esc(reference)
    );
    s.push_str("</svg>\n");
    s
}

/// One small panel per policy: nodes of each capacity type over time, on shared axes.
fn nodes_by_policy(report: &SimReport) -> String {
    let types = capacity_types(&report.runs);
    let cols = report.runs.len().clamp(1, 3);
    let rows = report.runs.len().div_ceil(cols).max(1);
    let (pw, ph) = (300.0, 170.0);
    let (left, top, gap) = (50.0, 60.0, 40.0);
    let width = left + cols as f64 * (pw + gap);
    let height = top + rows as f64 * (ph + gap + 20.0) + 10.0;
    let x_max = report
        .runs
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| hours(s.t)))
        .fold(0.0, f64::max)
        .max(1e-9);
    let y_max = report
        .runs
        .iter()
        .flat_map(|r| r.samples.iter().flat_map(|s| s.nodes.values().copied()))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.05;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="22" font-size="15" text-anchor="middle">Nodes by capacity type over time, per policy</text>"#,
        width / 2.0
    );
    for (ti, ty) in types.iter().enumerate() {
        let lx = left + ti as f64 * 120.0;
        let color = PALETTE[ti % PALETTE.len()];
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="40" x2="{:.1}" y2="40" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="44">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            esc(ty)
        );
    }
    for (i, run) in report.runs.iter().enumerate() {
        let ox = left + (i % cols) as f64 * (pw + gap);
        let oy = top + (i / cols) as f64 * (ph + gap + 20.0) + 20.0;
        let sx = |x: f64| ox + x / x_max * pw;
        let sy = |y: f64| oy + ph - (y / y_max).clamp(0.0, 1.0) * ph;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            ox + pw / 2.0,
            oy - 6.0,
            esc(&run.policy)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{ox:.1}" y="{oy:.1}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        let ys = tick_step(y_max, 3.0);
        let mut y = 0.0;
        while y <= y_max + 1e-9 {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                ox - 4.0,
                sy(y) + 4.0,
                fmt_tick(y)
            );
            y += ys;
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{} h</text>"##,
            ox + pw,
            oy + ph + 14.0,
            fmt_tick(x_max)
        );
        for (ti, ty) in types.iter().enumerate() {
            let pts: Vec<(f64, f64)> = run
                .samples
                .iter()
                .map(|smp| (hours(smp.t), smp.nodes.get(ty).copied().unwrap_or(0) as f64))
                .collect();
            let pts = thin(&pts);
            let mut path = String::new();
            let mut prev: Option<f64> = None;
            for &(x, y) in &pts {
                if let Some(py) = prev {
                    let _ = write!(path, "{:.1},{:.1} ", sx(x), sy(py));
                }
                let _ = write!(path, "{:.1},{:.1} ", sx(x), sy(y));
                prev = Some(y);
            }
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                PALETTE[ti % PALETTE.len()],
                path.trim_end()
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Every chart of the report as (file name, SVG).
pub fn all(report: &SimReport) -> Vec<(String, String)> {
    let mut out = Vec::new();
    out.push(("cost-vs-losses.svg".to_owned(), cost_vs_losses(report)));
    out.push(("nodes.svg".to_owned(), nodes_by_policy(report)));
    let cost = Chart {
        title: "Cumulative cost".into(),
        x_label: "hours".into(),
        y_label: "dollars".into(),
        lines: report
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| Line {
                name: r.policy.clone(),
                segments: vec![r
                    .samples
                    .iter()
                    .map(|s| (hours(s.t), s.cost.values().sum()))
                    .collect()],
                color: i,
                dashed: false,
                step: false,
            })
            .collect(),
        y_max: None,
    };
    out.push(("cost.svg".to_owned(), cost.render()));
    let pending = Chart {
        title: "Pending pods".into(),
        x_label: "hours".into(),
        y_label: "pods".into(),
        lines: report
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| Line {
                name: r.policy.clone(),
                segments: vec![r
                    .samples
                    .iter()
                    .map(|s| (hours(s.t), s.pending as f64))
                    .collect()],
                color: i,
                dashed: false,
                step: true,
            })
            .collect(),
        y_max: None,
    };
    out.push(("pending.svg".to_owned(), pending.render()));
    for run in &report.runs {
        let mut lines = Vec::new();
        for (i, app) in run.app_shares.iter().enumerate() {
            let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
            let mut cur: Vec<(f64, f64)> = Vec::new();
            for &(t, share) in &app.points {
                match share {
                    Some(v) => cur.push((hours(t), v)),
                    None => {
                        if let Some(&(_, last)) = cur.last() {
                            cur.push((hours(t), last));
                        }
                        if !cur.is_empty() {
                            segments.push(std::mem::take(&mut cur));
                        }
                    }
                }
            }
            if !cur.is_empty() {
                segments.push(cur);
            }
            let span = app
                .points
                .first()
                .zip(app.points.last())
                .map(|(a, b)| (hours(a.0), hours(b.0)));
            lines.push(Line {
                name: app.app.clone(),
                segments,
                color: i,
                dashed: false,
                step: true,
            });
            if let Some((a, b)) = span {
                lines.push(Line {
                    name: format!("{} target", app.app),
                    segments: vec![vec![(a, app.target), (b, app.target)]],
                    color: i,
                    dashed: true,
                    step: false,
                });
            }
        }
        let chart = Chart {
            title: format!("Spot share of executors vs target ({})", run.policy),
            x_label: "hours".into(),
            y_label: "spot share".into(),
            lines,
            y_max: Some(1.0),
        };
        let file = format!(
            "spot-share-{}.svg",
            run.policy
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                })
                .collect::<String>()
        );
        out.push((file, chart.render()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0, 5.0), 2.0);
        assert_eq!(tick_step(1.0, 5.0), 0.2);
        assert_eq!(tick_step(730.0, 8.0), 100.0);
    }

    #[test]
    fn renders_lines_legend_and_escapes() {
        let c = Chart {
            title: "a < b".into(),
            x_label: "hours".into(),
            y_label: "nodes".into(),
            lines: vec![Line {
                name: "spark-fleet spot".into(),
                segments: vec![vec![(0.0, 1.0), (1.0, 3.0)]],
                color: 0,
                dashed: true,
                step: true,
            }],
            y_max: None,
        };
        let svg = c.render();
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt; b"));
        assert!(svg.contains("spark-fleet spot"));
        // A step line has the corner point between the two samples.
        assert_eq!(svg.matches("<polyline").count(), 1);
        let pts = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(pts.split(' ').count(), 3);
    }

    #[test]
    fn long_lines_are_thinned_keeping_the_last_point() {
        let pts: Vec<(f64, f64)> = (0..10_001).map(|i| (i as f64, 0.0)).collect();
        let t = thin(&pts);
        assert!(t.len() <= MAX_POINTS + 1);
        assert_eq!(t.last(), pts.last());
    }
}
