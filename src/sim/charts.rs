//! Hand-written SVG line charts of a simulation: nodes and cost by capacity type, pending pods,
//! and the spot share of the largest applications against their targets.

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

/// Per (policy, capacity type): one line from the samples.
fn by_type_chart(
    report: &SimReport,
    title: &str,
    y_label: &str,
    step: bool,
    value: impl Fn(&super::report::Sample, &str) -> f64,
) -> Chart {
    let types = capacity_types(&report.runs);
    let mut lines = Vec::new();
    for (pi, run) in report.runs.iter().enumerate() {
        for (ti, ty) in types.iter().enumerate() {
            let pts: Vec<(f64, f64)> = run
                .samples
                .iter()
                .map(|s| (hours(s.t), value(s, ty)))
                .collect();
            lines.push(Line {
                name: format!("{} {ty}", run.policy),
                segments: vec![pts],
                color: ti,
                dashed: pi % 2 == 1,
                step,
            });
        }
    }
    Chart {
        title: title.to_owned(),
        x_label: "hours".into(),
        y_label: y_label.into(),
        lines,
        y_max: None,
    }
}

/// Every chart of the report as (file name, SVG).
pub fn all(report: &SimReport) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let nodes = by_type_chart(report, "Nodes by capacity type", "nodes", true, |s, ty| {
        s.nodes.get(ty).copied().unwrap_or(0) as f64
    });
    out.push(("nodes.svg".to_owned(), nodes.render()));
    let cost = by_type_chart(
        report,
        "Cumulative cost by capacity type",
        "dollars",
        false,
        |s, ty| s.cost.get(ty).copied().unwrap_or(0.0),
    );
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
