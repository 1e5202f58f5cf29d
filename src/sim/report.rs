//! What a simulation measured: `report.json`, the summary table and the data behind the charts.
//!
//! Everything except `timing` depends only on the trace, seed and config, and is written
//! byte-identically: maps are ordered and floats are rounded to 6 decimals.

use super::sampling::{SamplingQuality, SamplingTally};
use super::trace::Trace;
use super::SimError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The raw outcome of one policy's run (engine → report).
#[derive(Debug, Clone)]
pub struct RunResult {
    pub policy: String,
    pub pods_submitted: u64,
    pub pods_bound: u64,
    pub apps_submitted: u64,
    pub apps_completed: u64,
    pub apps_failed: u64,
    pub app_resubmissions: u64,
    pub driver_losses: u64,
    pub executor_losses: u64,
    pub executors_failed_with_driver: u64,
    pub plain_pods_lost: u64,
    pub preemptions: u64,
    pub capacity_fallbacks: u64,
    pub executor_losses_by: BTreeMap<String, u64>,
    pub driver_losses_by: BTreeMap<String, u64>,
    pub recompute_executor_seconds: f64,
    pub work_lost_with_drivers: f64,
    /// None when the run had no autoscaler.
    pub autoscaler: Option<crate::sim::karpenter::Stats>,
    pub ended_by: &'static str,
    /// Pods still pending at the end.
    pub never_bound: Vec<NeverBound>,
    pub spot_share_abs_error_mean: Option<f64>,
    pub spot_share_error_floor: Option<f64>,
    pub cost_by_type: BTreeMap<String, f64>,
    pub node_hours: BTreeMap<String, f64>,
    pub pending_seconds: Vec<f64>,
    pub completion_seconds: Vec<f64>,
    pub cpu_utilization_mean: Option<f64>,
    pub decisions: u64,
    pub end_seconds: f64,
    pub latencies_us: Vec<f64>,
    pub samples: Vec<Sample>,
    pub app_shares: Vec<AppShareSeries>,
    /// (application id, completion seconds) in submission order.
    pub apps: Vec<(String, Option<f64>)>,
    /// How sampled decisions compare with full scans; None when the policy scores every node.
    pub sampling: Option<SamplingTally>,
    /// Wall time spent in the shadow full scans (part of the run's wall time).
    pub shadow_scan_seconds: f64,
}

/// A pod still pending when the run ended, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeverBound {
    pub pod: String,
    pub role: &'static str,
    pub waited_seconds: f64,
    /// The scheduler's FailedScheduling message at the end.
    pub scheduler: String,
    /// The autoscaler's view: its reason for launching nothing, or the node it expects the
    /// pod on.
    pub autoscaler: String,
}

/// The cluster at one instant (recorded when nodes or pending pods change).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub nodes: BTreeMap<String, u32>,
    /// Cumulative cost by capacity type.
    pub cost: BTreeMap<String, f64>,
    pub pending: usize,
}

/// One application's spot share over time (None: no executors running).
#[derive(Debug, Clone, PartialEq)]
pub struct AppShareSeries {
    pub app: String,
    pub target: f64,
    pub points: Vec<(f64, Option<f64>)>,
}

/// Rounds to 6 decimals (and turns -0 into 0) so reports are byte-stable.
pub fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6 + 0.0
}

/// Nearest-rank percentile of sorted values; 0 for none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingSeconds {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionSeconds {
    pub p50: f64,
    pub p99: f64,
}

/// Completion time relative to the reference policy, over applications both completed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slowdown {
    pub p50: f64,
    pub p99: f64,
    /// Applications completed under both policies.
    pub apps: u64,
}

/// One policy's deterministic metrics (`report.json` → `policies.NAME`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    pub pods_submitted: u64,
    pub pods_bound: u64,
    /// Pods submitted that never ran (still pending at the end, or dropped while pending,
    /// e.g. executors of an application that completed or failed first).
    pub pods_never_bound: u64,
    pub apps_submitted: u64,
    pub apps_completed: u64,
    /// Applications that lost their driver on their last allowed attempt.
    pub apps_failed: u64,
    pub app_resubmissions: u64,
    pub driver_losses: u64,
    /// Placed executors lost to node loss or preemption.
    pub executor_losses: u64,
    /// The same, by cause: `spot-interruption`, `consolidation`, `node-removed`, `preemption`.
    pub executor_losses_by_cause: BTreeMap<String, u64>,
    pub driver_losses_by_cause: BTreeMap<String, u64>,
    /// Executor-seconds the lost executors had done, redone by their replacements.
    pub recompute_executor_seconds: f64,
    /// Executor-seconds done by attempts that failed with their driver (redone by the
    /// resubmitted attempt, or lost with a failed application).
    pub work_lost_with_drivers_executor_seconds: f64,
    /// Placed executors that went down with their driver.
    pub executors_failed_with_driver: u64,
    /// Plain pods lost (and recreated) to node loss or preemption.
    pub plain_pods_lost: u64,
    pub preemptions: u64,
    /// Decisions whose node was not of the type the application's mix wanted.
    pub capacity_fallbacks: u64,
    /// null when no application with a mix target ran executors.
    pub spot_share_abs_error_mean: Option<f64>,
    /// The same time weighting of the error no placement of the running executors could avoid
    /// (with n executors and target t: min over k of |k/n − t|).
    pub spot_share_error_floor: Option<f64>,
    /// `spot_share_abs_error_mean − spot_share_error_floor`.
    pub spot_share_error_above_floor: Option<f64>,
    pub cost_total: f64,
    pub cost: BTreeMap<String, f64>,
    /// `1 − cost_total / cost_total of the reference policy` (null without it).
    pub cost_saving_vs_reference: Option<f64>,
    pub node_hours: BTreeMap<String, f64>,
    /// Nodes the autoscaler launched and took away (null without an autoscaler).
    pub autoscaler: Option<crate::sim::karpenter::Stats>,
    /// From submission to running, over pods that ran.
    pub pending_seconds: PendingSeconds,
    /// From first submission to completion, over completed applications.
    pub app_completion_seconds: CompletionSeconds,
    /// Per application completed under this and the reference policy, completion time over
    /// the reference's (null without it).
    pub completion_slowdown_vs_reference: Option<Slowdown>,
    pub cpu_utilization_mean: Option<f64>,
    pub decisions: u64,
    /// Virtual time at which the run ended.
    pub end_seconds: f64,
    /// `work done`, `stalled` or `no more events`.
    pub ended_by: String,
    /// Pods still pending at the end, by role and the autoscaler's reason.
    pub pending_at_end: u64,
    pub pending_at_end_by_reason: BTreeMap<String, u64>,
    /// The first pods still pending at the end (by key), with both messages.
    pub never_bound_examples: Vec<NeverBound>,
    /// What node sampling cost in placement quality; null when the policy scores every node.
    pub sampling_quality: Option<SamplingQuality>,
}

/// Pods listed in `never_bound_examples`.
const NEVER_BOUND_EXAMPLES: usize = 20;

impl PolicyReport {
    fn from_run(r: &RunResult) -> PolicyReport {
        let pending = sorted(&r.pending_seconds);
        let completion = sorted(&r.completion_seconds);
        let round_map =
            |m: &BTreeMap<String, f64>| m.iter().map(|(k, v)| (k.clone(), r6(*v))).collect();
        let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
        for nb in &r.never_bound {
            // Grouped without node names: which node Karpenter expects is in the examples.
            let why = match nb.autoscaler.split_once(" node ") {
                Some((head, _)) if nb.autoscaler.starts_with("expects it to fit") => {
                    format!("{head} a node (existing or launching)")
                }
                _ => nb.autoscaler.clone(),
            };
            *by_reason.entry(format!("{}: {why}", nb.role)).or_insert(0) += 1;
        }
        PolicyReport {
            pods_submitted: r.pods_submitted,
            pods_bound: r.pods_bound,
            pods_never_bound: r.pods_submitted.saturating_sub(r.pods_bound),
            apps_submitted: r.apps_submitted,
            apps_completed: r.apps_completed,
            apps_failed: r.apps_failed,
            app_resubmissions: r.app_resubmissions,
            driver_losses: r.driver_losses,
            executor_losses: r.executor_losses,
            executor_losses_by_cause: r.executor_losses_by.clone(),
            driver_losses_by_cause: r.driver_losses_by.clone(),
            recompute_executor_seconds: r6(r.recompute_executor_seconds),
            work_lost_with_drivers_executor_seconds: r6(r.work_lost_with_drivers),
            executors_failed_with_driver: r.executors_failed_with_driver,
            plain_pods_lost: r.plain_pods_lost,
            preemptions: r.preemptions,
            capacity_fallbacks: r.capacity_fallbacks,
            spot_share_abs_error_mean: r.spot_share_abs_error_mean.map(r6),
            spot_share_error_floor: r.spot_share_error_floor.map(r6),
            spot_share_error_above_floor: r
                .spot_share_abs_error_mean
                .zip(r.spot_share_error_floor)
                .map(|(e, f)| r6(e - f)),
            cost_total: r6(r.cost_by_type.values().sum()),
            cost: round_map(&r.cost_by_type),
            cost_saving_vs_reference: None,
            node_hours: round_map(&r.node_hours),
            autoscaler: r.autoscaler.clone(),
            pending_seconds: PendingSeconds {
                p50: r6(percentile(&pending, 50.0)),
                p99: r6(percentile(&pending, 99.0)),
                max: r6(pending.last().copied().unwrap_or(0.0)),
            },
            app_completion_seconds: CompletionSeconds {
                p50: r6(percentile(&completion, 50.0)),
                p99: r6(percentile(&completion, 99.0)),
            },
            completion_slowdown_vs_reference: None,
            cpu_utilization_mean: r.cpu_utilization_mean.map(r6),
            decisions: r.decisions,
            end_seconds: r6(r.end_seconds),
            ended_by: r.ended_by.to_owned(),
            pending_at_end: r.never_bound.len() as u64,
            pending_at_end_by_reason: by_reason,
            never_bound_examples: r
                .never_bound
                .iter()
                .take(NEVER_BOUND_EXAMPLES)
                .map(|nb| NeverBound {
                    waited_seconds: r6(nb.waited_seconds),
                    ..nb.clone()
                })
                .collect(),
            sampling_quality: r.sampling.as_ref().map(SamplingQuality::from_tally),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

/// Wall-clock measurements: vary between runs, kept out of the deterministic part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    pub wall_seconds: f64,
    /// Of `wall_seconds`, the shadow full scans that measure sampling quality (sampled runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_scan_seconds: Option<f64>,
    /// The real decisions only (shadow full scans excluded).
    pub decision_latency_us: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub trace: String,
    pub seed: u64,
    /// The policy savings and slowdowns are measured against, when it ran.
    pub reference: Option<String>,
    pub policies: BTreeMap<String, PolicyReport>,
    pub timing: BTreeMap<String, Timing>,
    /// Policy order as given, and the runs behind the charts.
    #[serde(skip)]
    pub runs: Vec<RunResult>,
}

impl SimReport {
    pub fn new(trace: &Trace, seed: u64) -> SimReport {
        SimReport {
            trace: trace
                .header
                .name
                .clone()
                .or_else(|| trace.header.source.clone())
                .unwrap_or_default(),
            seed,
            reference: None,
            policies: BTreeMap::new(),
            timing: BTreeMap::new(),
            runs: Vec::new(),
        }
    }

    pub fn add_policy(&mut self, name: &str, run: RunResult, wall_seconds: f64) {
        let lat = sorted(&run.latencies_us);
        self.timing.insert(
            name.to_owned(),
            Timing {
                wall_seconds: r6(wall_seconds),
                shadow_scan_seconds: run.sampling.is_some().then(|| r6(run.shadow_scan_seconds)),
                decision_latency_us: Latency {
                    p50: r6(percentile(&lat, 50.0)),
                    p99: r6(percentile(&lat, 99.0)),
                },
            },
        );
        self.policies
            .insert(name.to_owned(), PolicyReport::from_run(&run));
        self.runs.push(run);
    }

    /// Fills in each policy's cost saving and completion slowdown against `reference`, when
    /// that policy ran.
    pub fn compare_with(&mut self, reference: &str) {
        let Some(base) = self.runs.iter().find(|r| r.policy == reference) else {
            return;
        };
        let base_cost: f64 = base.cost_by_type.values().sum();
        let base_apps: BTreeMap<&str, f64> = base
            .apps
            .iter()
            .filter_map(|(id, c)| c.map(|c| (id.as_str(), c)))
            .collect();
        let mut filled = Vec::new();
        for run in &self.runs {
            let cost: f64 = run.cost_by_type.values().sum();
            let saving = (base_cost > 0.0).then(|| r6(1.0 - cost / base_cost));
            let ratios: Vec<f64> = run
                .apps
                .iter()
                .filter_map(|(id, c)| {
                    let mine = (*c)?;
                    let theirs = *base_apps.get(id.as_str())?;
                    (theirs > 0.0).then(|| mine / theirs)
                })
                .collect();
            let ratios = sorted(&ratios);
            let slowdown = (!ratios.is_empty()).then(|| Slowdown {
                p50: r6(percentile(&ratios, 50.0)),
                p99: r6(percentile(&ratios, 99.0)),
                apps: ratios.len() as u64,
            });
            filled.push((run.policy.clone(), saving, slowdown));
        }
        for (policy, saving, slowdown) in filled {
            if let Some(p) = self.policies.get_mut(&policy) {
                p.cost_saving_vs_reference = saving;
                p.completion_slowdown_vs_reference = slowdown;
            }
        }
        self.reference = Some(reference.to_owned());
    }

    /// Pretty JSON of the whole report.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The report without `timing`: identical for the same trace, seed and config.
    pub fn deterministic_json(&self) -> Result<String, serde_json::Error> {
        let mut v = serde_json::to_value(self)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("timing");
        }
        serde_json::to_string_pretty(&v)
    }

    /// Writes `report.json` and the charts into `dir` (created if missing); returns the files.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, SimError> {
        let io = |file: &Path, source| SimError::Io {
            file: file.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut written = Vec::new();
        let path = dir.join("report.json");
        let json = self.to_json().map_err(|source| SimError::Json {
            file: path.display().to_string(),
            source,
        })?;
        std::fs::write(&path, json + "\n").map_err(|e| io(&path, e))?;
        written.push(path);
        for (name, svg) in super::charts::all(self) {
            let path = dir.join(name);
            std::fs::write(&path, svg).map_err(|e| io(&path, e))?;
            written.push(path);
        }
        Ok(written)
    }

    /// For each policy that ended with pods pending: why, by role and the autoscaler's reason,
    /// with the scheduler's message for the first such pod. Empty when every pod ran.
    pub fn never_bound_summary(&self) -> String {
        let mut out = String::new();
        for run in &self.runs {
            let Some(p) = self.policies.get(&run.policy) else {
                continue;
            };
            if p.pending_at_end == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "{}: {} pod(s) never bound ({} at {:.0} s)",
                run.policy, p.pending_at_end, p.ended_by, p.end_seconds
            );
            for (why, n) in &p.pending_at_end_by_reason {
                let _ = writeln!(out, "  {n} × {why}");
            }
            if let Some(e) = p.never_bound_examples.first() {
                let _ = writeln!(out, "  e.g. {}: {}", e.pod, e.scheduler);
            }
        }
        out
    }

    /// Policies side by side, one row per metric.
    pub fn summary_table(&self) -> String {
        let names: Vec<&String> = self.runs.iter().map(|r| &r.policy).collect();
        let reports: Vec<&PolicyReport> =
            names.iter().filter_map(|n| self.policies.get(*n)).collect();
        let opt = |v: Option<f64>, digits: usize| match v {
            Some(x) => format!("{x:.digits$}"),
            None => "-".to_owned(),
        };
        type Row<'a> = (&'a str, Box<dyn Fn(&PolicyReport) -> String + 'a>);
        let by_cause = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                return String::new();
            }
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            format!(" ({})", parts.join(", "))
        };
        let mut rows: Vec<Row> = vec![
            ("cost total $", Box::new(|p| format!("{:.2}", p.cost_total))),
            (
                "saving vs reference",
                Box::new(|p| {
                    p.cost_saving_vs_reference
                        .map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
                }),
            ),
            (
                "node hours",
                Box::new(|p| {
                    p.node_hours
                        .iter()
                        .map(|(k, v)| format!("{k} {v:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
            ),
            (
                "executor losses",
                Box::new(move |p| {
                    format!(
                        "{}{}",
                        p.executor_losses,
                        by_cause(&p.executor_losses_by_cause)
                    )
                }),
            ),
            (
                "driver losses",
                Box::new(move |p| {
                    format!("{}{}", p.driver_losses, by_cause(&p.driver_losses_by_cause))
                }),
            ),
            (
                "recompute executor-hours",
                Box::new(|p| {
                    format!(
                        "{:.1} (+{:.1} with drivers)",
                        p.recompute_executor_seconds / 3600.0,
                        p.work_lost_with_drivers_executor_seconds / 3600.0
                    )
                }),
            ),
            (
                "apps completed/failed/of",
                Box::new(|p| {
                    format!(
                        "{}/{}/{}",
                        p.apps_completed, p.apps_failed, p.apps_submitted
                    )
                }),
            ),
            (
                "app completion s p50/p99",
                Box::new(|p| {
                    let s = &p.app_completion_seconds;
                    format!("{:.0}/{:.0}", s.p50, s.p99)
                }),
            ),
            (
                "slowdown vs reference p50/p99",
                Box::new(|p| {
                    p.completion_slowdown_vs_reference
                        .as_ref()
                        .map_or("-".into(), |s| format!("{:.2}/{:.2}", s.p50, s.p99))
                }),
            ),
            (
                "spot share |error| (floor)",
                Box::new(move |p| {
                    format!(
                        "{} ({})",
                        opt(p.spot_share_abs_error_mean, 3),
                        opt(p.spot_share_error_floor, 3)
                    )
                }),
            ),
            (
                "capacity fallbacks",
                Box::new(|p| p.capacity_fallbacks.to_string()),
            ),
            (
                "pending s p50/p99/max",
                Box::new(|p| {
                    let s = &p.pending_seconds;
                    format!("{:.1}/{:.1}/{:.1}", s.p50, s.p99, s.max)
                }),
            ),
            (
                "nodes launched",
                Box::new(|p| {
                    p.autoscaler.as_ref().map_or("-".into(), |a| {
                        a.launched
                            .iter()
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                }),
            ),
            (
                "pods bound/submitted",
                Box::new(|p| format!("{}/{}", p.pods_bound, p.pods_submitted)),
            ),
            ("preemptions", Box::new(|p| p.preemptions.to_string())),
            (
                "pending at end",
                Box::new(|p| format!("{} ({})", p.pending_at_end, p.ended_by)),
            ),
            (
                "cpu utilization mean",
                Box::new(move |p| opt(p.cpu_utilization_mean, 3)),
            ),
            ("decisions", Box::new(|p| p.decisions.to_string())),
        ];
        // Only when a policy samples nodes, so full-scan comparisons read as before.
        if reports.iter().any(|p| p.sampling_quality.is_some()) {
            type Quality = super::sampling::SamplingQuality;
            let sq = |f: fn(&Quality) -> String| {
                move |p: &PolicyReport| p.sampling_quality.as_ref().map_or("-".to_owned(), f)
            };
            rows.push((
                "sampling: nodes evaluated/live",
                Box::new(sq(|q| {
                    format!("{:.0}/{:.0}", q.nodes_evaluated_mean, q.nodes_live_mean)
                })),
            ));
            rows.push((
                "sampling: differs from full scan",
                Box::new(sq(|q| {
                    format!(
                        "{:.1}% (worse {:.1}%) of {}",
                        q.differs_fraction * 100.0,
                        q.worse_fraction * 100.0,
                        q.placements_compared
                    )
                })),
            ));
            rows.push((
                "sampling: regret p50/p99/max",
                Box::new(sq(|q| {
                    let r = &q.regret;
                    format!(
                        "{:.0}/{:.0}/{:.0} (best ~{:.0})",
                        r.p50, r.p99, r.max, q.best_total_mean
                    )
                })),
            ));
        }
        type TimingRow<'a> = (&'a str, Box<dyn Fn(&Timing) -> String + 'a>);
        let mut timing_rows: Vec<TimingRow> = vec![
            (
                "wall seconds",
                Box::new(|t| format!("{:.2}", t.wall_seconds)),
            ),
            (
                "decision µs p50/p99",
                Box::new(|t| {
                    let l = &t.decision_latency_us;
                    format!("{:.0}/{:.0}", l.p50, l.p99)
                }),
            ),
        ];
        if self
            .timing
            .values()
            .any(|t| t.shadow_scan_seconds.is_some())
        {
            timing_rows.insert(
                1,
                (
                    "of which shadow full scans",
                    Box::new(|t| {
                        t.shadow_scan_seconds
                            .map_or("-".into(), |s| format!("{s:.2}"))
                    }),
                ),
            );
        }
        let mut table: Vec<Vec<String>> = Vec::new();
        let mut header = vec![format!("trace {}", self.trace)];
        header.extend(names.iter().map(|n| n.to_string()));
        table.push(header);
        for (label, f) in &rows {
            let mut row = vec![label.to_string()];
            row.extend(reports.iter().map(|p| f(p)));
            table.push(row);
        }
        for (label, f) in &timing_rows {
            let mut row = vec![label.to_string()];
            row.extend(
                names
                    .iter()
                    .map(|n| self.timing.get(*n).map_or("-".into(), f)),
            );
            table.push(row);
        }
        let cols = table.first().map_or(0, Vec::len);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                table
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (i, row) in table.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c].saturating_sub(cell.chars().count());
                if c == 0 {
                    let _ = write!(out, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(out, "  {}{cell}", " ".repeat(pad));
                }
            }
            out.push('\n');
            if i == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[1.0, 2.0], 50.0), 1.0);
    }

    #[test]
    fn rounding_is_stable() {
        assert_eq!(r6(0.1 + 0.2), 0.3);
        assert_eq!(r6(-1e-9).to_string(), "0");
        assert_eq!(r6(2.0 / 3.0), 0.666667);
    }
}
