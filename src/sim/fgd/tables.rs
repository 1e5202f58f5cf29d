//! The FGD protocol's output, in the layout of the paper's published tables
//! (`experiments/analysis/expected_results/analysis_allo_discrete.csv` in
//! `hkust-adsl/kubernetes-scheduler-simulator`): one row per (policy, seed),
//! columns `workload,sc_policy,tune,seed,total_gpus,0,1,…,130`.
//!
//! Column `k` is computed from the values recorded after each pod as the
//! paper's analysis scripts do: each pod's arrived share (arrived GPU milli /
//! cluster GPU milli, in percent) rounded to a whole percent, half to even;
//! the value is the mean, over the pods whose arrived share rounds to `k`, of
//! the measure in percent rounded to 2 decimals, then rounded to 2 decimals;
//! with no such pod, the mean over the pods rounding to `k − 1 ..= k + 1`;
//! with none of those either, the cell is empty. Fragmentation per pod is
//! first rounded to 2 decimals of milli (their log's precision).

use super::{FgdError, Policy, Run};
use crate::sim::charts::{Chart, Line};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The last arrived percentage tabulated.
pub const LAST_COLUMN: usize = 130;

/// Every run of one invocation.
#[derive(Debug, Clone)]
pub struct FgdReport {
    pub workload: String,
    pub tune: f64,
    pub total_gpus: u64,
    /// Sorted by policy, then seed.
    pub runs: Vec<Run>,
    pub wall_seconds: f64,
}

/// `x` rounded to 2 decimals as Python's `round(x, 2)` does (correctly rounded).
fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

/// `x` rounded to 2 decimals as numpy's `round` does (scaled, rounded half to even).
fn np_round2(x: f64) -> f64 {
    (x * 100.0).round_ties_even() / 100.0
}

/// A value as pandas writes a float: its shortest form, with `.0` when whole.
fn py_float(x: f64) -> String {
    let s = format!("{x}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// Columns 0..=130 from per-pod `(arrived milli, measure in percent)`.
pub fn discretize(arrived: &[u64], percent: &[f64], total_gpus: u64) -> Vec<Option<f64>> {
    let total = total_gpus.max(1) as f64;
    // Sum and count of the values by rounded arrived percent (0..=131 and beyond).
    let mut sums = vec![(0.0f64, 0usize); LAST_COLUMN + 2];
    for (&a, &v) in arrived.iter().zip(percent) {
        let r = (a as f64 / total / 10.0).round_ties_even();
        if (0.0..=(LAST_COLUMN + 1) as f64).contains(&r) {
            let b = &mut sums[r as usize];
            b.0 += v;
            b.1 += 1;
        }
    }
    (0..=LAST_COLUMN)
        .map(|k| {
            let exact = sums[k];
            let (sum, n) = if exact.1 > 0 {
                exact
            } else {
                let lo = k.saturating_sub(1);
                sums[lo..=k + 1]
                    .iter()
                    .fold((0.0, 0), |(s, n), b| (s + b.0, n + b.1))
            };
            (n > 0).then(|| np_round2(sum / n as f64))
        })
        .collect()
}

impl Run {
    /// Allocated GPU, percent of the cluster's, by arrived percent.
    pub fn allocation_columns(&self, total_gpus: u64) -> Vec<Option<f64>> {
        let total = total_gpus.max(1) as f64;
        let percent: Vec<f64> = self
            .rows
            .allocated
            .iter()
            .map(|&u| round2(u as f64 / total / 10.0))
            .collect();
        discretize(&self.rows.arrived, &percent, total_gpus)
    }

    /// Fragmented GPU, percent of the cluster's, by arrived percent.
    pub fn fragmentation_columns(&self, total_gpus: u64) -> Vec<Option<f64>> {
        let total = total_gpus.max(1) as f64;
        let milli: Vec<f64> = self.rows.fragmented.iter().map(|&f| round2(f)).collect();
        let mut cols = discretize(&self.rows.arrived, &milli, total_gpus);
        for c in cols.iter_mut().flatten() {
            // The mean milli to percent, after averaging (as the scripts do).
            *c = np_round2(100.0 * *c / 1000.0 / total);
        }
        cols
    }
}

impl FgdReport {
    fn csv(&self, columns: impl Fn(&Run) -> Vec<Option<f64>>) -> String {
        let mut out = String::from("workload,sc_policy,tune,seed,total_gpus");
        for k in 0..=LAST_COLUMN {
            let _ = write!(out, ",{k}");
        }
        out.push('\n');
        for r in &self.runs {
            let _ = write!(
                out,
                "{},{},{},{},{}",
                self.workload,
                r.policy.label(),
                py_float(self.tune),
                r.seed,
                self.total_gpus
            );
            for v in columns(r) {
                out.push(',');
                if let Some(v) = v {
                    out.push_str(&py_float(v));
                }
            }
            out.push('\n');
        }
        out
    }

    /// `fgd-allocation.csv`: allocated GPU % at each arrived %.
    pub fn allocation_csv(&self) -> String {
        self.csv(|r| r.allocation_columns(self.total_gpus))
    }

    /// `fgd-fragmentation.csv`: fragmented GPU % at each arrived %.
    pub fn fragmentation_csv(&self) -> String {
        self.csv(|r| r.fragmentation_columns(self.total_gpus))
    }

    /// The policies run, in order.
    pub fn policies(&self) -> Vec<Policy> {
        let mut p: Vec<Policy> = self.runs.iter().map(|r| r.policy).collect();
        p.dedup();
        p
    }

    /// Per policy: the value at `column` of each seed's run.
    pub fn at(&self, policy: Policy, column: usize, fragmentation: bool) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.policy == policy)
            .filter_map(|r| {
                let cols = if fragmentation {
                    r.fragmentation_columns(self.total_gpus)
                } else {
                    r.allocation_columns(self.total_gpus)
                };
                cols.get(column).copied().flatten()
            })
            .collect()
    }

    /// Allocated GPU % against arrived % per policy, the mean over seeds.
    pub fn chart(&self) -> String {
        let mut lines = Vec::new();
        for (i, policy) in self.policies().into_iter().enumerate() {
            let runs: Vec<Vec<Option<f64>>> = self
                .runs
                .iter()
                .filter(|r| r.policy == policy)
                .map(|r| r.allocation_columns(self.total_gpus))
                .collect();
            let mut points = Vec::new();
            for k in 0..=LAST_COLUMN {
                let vals: Vec<f64> = runs.iter().filter_map(|c| c[k]).collect();
                if !vals.is_empty() {
                    points.push((k as f64, vals.iter().sum::<f64>() / vals.len() as f64));
                }
            }
            lines.push(Line {
                name: policy.name().to_owned(),
                segments: vec![points],
                color: i,
                dashed: false,
                step: false,
            });
        }
        let seeds = self
            .runs
            .iter()
            .filter(|r| Some(r.policy) == self.policies().first().copied())
            .count();
        Chart {
            title: format!(
                "{}: allocated GPU vs arrived GPU (mean of {seeds} seed(s))",
                self.workload
            ),
            x_label: "arrived GPU, % of the cluster's".into(),
            y_label: "allocated GPU, %".into(),
            lines,
            y_max: Some(100.0),
        }
        .render()
    }

    /// A table: per policy, allocated and fragmented GPU at 130% arrived.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let seeds: Vec<u64> = {
            let mut s: Vec<u64> = self.runs.iter().map(|r| r.seed).collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let _ = writeln!(
            out,
            "FGD protocol: {} on {} GPUs, arrived up to {}%, {} seed(s)",
            self.workload,
            self.total_gpus,
            (self.tune * 100.0).round(),
            seeds.len()
        );
        let _ = writeln!(
            out,
            "{:<16} {:>28} {:>22} {:>12}",
            "policy", "allocated % at 130 (mean min max)", "fragmented % at 130", "pods failed"
        );
        for p in self.policies() {
            let alloc = self.at(p, LAST_COLUMN, false);
            let frag = self.at(p, LAST_COLUMN, true);
            let runs: Vec<&Run> = self.runs.iter().filter(|r| r.policy == p).collect();
            let failed =
                runs.iter().map(|r| r.rows.failed).sum::<u64>() as f64 / runs.len().max(1) as f64;
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let min = alloc.iter().copied().fold(f64::INFINITY, f64::min);
            let max = alloc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let _ = writeln!(
                out,
                "{:<16} {:>12.2} {:>7.2} {:>7.2} {:>22.2} {:>12.1}",
                p.label(),
                mean(&alloc),
                min,
                max,
                mean(&frag),
                failed
            );
        }
        let busy: f64 = self.runs.iter().map(|r| r.seconds).sum();
        let _ = writeln!(
            out,
            "{} runs in {:.2} s wall time ({:.2} s of run time)",
            self.runs.len(),
            self.wall_seconds,
            busy
        );
        out
    }

    /// Writes `fgd-allocation.csv`, `fgd-fragmentation.csv` and `fgd-allocation.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, FgdError> {
        let io = |file: &Path| {
            let file = file.display().to_string();
            move |source| FgdError::Io { file, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let files = [
            ("fgd-allocation.csv", self.allocation_csv()),
            ("fgd-fragmentation.csv", self.fragmentation_csv()),
            ("fgd-allocation.svg", self.chart()),
        ];
        let mut written = Vec::new();
        for (name, body) in files {
            let path = dir.join(name);
            std::fs::write(&path, body).map_err(io(&path))?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_and_formats() {
        assert_eq!(round2(87.255), 87.25, "87.255 is below the tie in binary");
        assert_eq!(round2(0.125), 0.12, "ties go to even");
        assert_eq!(np_round2(91.0), 91.0);
        assert_eq!(py_float(91.0), "91.0");
        assert_eq!(py_float(87.26), "87.26");
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(1.3), "1.3");
    }

    #[test]
    fn columns_average_pods_by_rounded_arrival() {
        // 10 GPUs (10000 milli). Arrived 40 → 0%, 60 → 1% (0.6 rounds up), 1040 → 10%.
        let arrived = [40, 60, 1040];
        let values = [1.0, 3.0, 8.0];
        let c = discretize(&arrived, &values, 10);
        assert_eq!(c[0], Some(1.0));
        assert_eq!(c[1], Some(3.0));
        // No pod at 2: the pods at 1..=3 stand in.
        assert_eq!(c[2], Some(3.0));
        assert_eq!(c[10], Some(8.0));
        assert_eq!(c[5], None);
        assert_eq!(c.len(), 131);
        // 0.5% rounds to 0 (half to even), 1.5% to 2.
        let c = discretize(&[50, 150], &[2.0, 4.0], 10);
        assert_eq!((c[0], c[2]), (Some(2.0), Some(4.0)));
    }
}
