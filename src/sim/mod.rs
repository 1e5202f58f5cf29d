//! The simulator: replays a [`trace::Trace`] against the same snapshot, queue, plugins and
//! preemption as the live scheduler, with simulated events in place of the API server.
//!
//! [`simulate`] runs the trace once per policy (a profile of the config) on a virtual clock and
//! returns a [`SimReport`]: metrics that are identical for the same trace, seed and config,
//! plus wall-clock timing kept apart. [`SimReport::write`] puts `report.json` and SVG charts
//! in a directory; [`SimReport::summary_table`] compares the policies side by side.

pub mod baselines;
pub mod charts;
pub mod cluster_model;
pub mod engine;
pub mod fgd;
pub mod karpenter;
pub mod report;
pub mod sampling;
pub mod spark_model;
pub mod storage_model;
pub mod trace;
pub mod webhook;

pub use baselines::{Constraints, Pools};
pub use report::{PolicyReport, SimReport, Timing};
pub use sampling::SamplingQuality;

use crate::config::Config;
use crate::model::capacity::{ON_DEMAND, SPOT};
use std::collections::BTreeMap;
use thiserror::Error;
use trace::Trace;

#[derive(Debug, Error)]
pub enum SimError {
    #[error(transparent)]
    Trace(#[from] trace::TraceError),
    #[error("policy {policy:?}: {source}")]
    Policy {
        policy: String,
        #[source]
        source: crate::plugins::PluginError,
    },
    #[error("policy {policy:?}: {message}")]
    PolicySpec { policy: String, message: String },
    #[error("no policies to simulate")]
    NoPolicies,
    #[error("policy {0:?} is listed twice")]
    DuplicatePolicy(String),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error("invalid simulator options: {0}")]
    Options(String),
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
}

/// How the simulated cluster behaves beyond what the trace says.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Seeds the simulator's own randomness (preemption grace periods).
    pub seed: u64,
    /// Time from the scheduler's decision to the pod running on its node.
    pub bind_latency_seconds: f64,
    /// A preemption victim terminates after a grace period drawn uniformly from this range.
    pub preemption_grace_seconds: (f64, f64),
    /// How often an application whose driver was lost is submitted again.
    pub app_resubmissions: u32,
    /// Whether Karpenter (configured by the config's `simulation.karpenter`) launches nodes.
    pub autoscaler: AutoscalerMode,
    /// After the trace's last event, a run in which for this long no pod has finished and no
    /// application has completed, failed or got further than ever before, with nothing running
    /// that would, ends (reported as stalled): nothing in the simulation helps the pods still
    /// pending.
    pub stall_seconds: f64,
    /// Price of a node the trace gives no price for: dollars per vCPU-hour, by capacity type.
    /// Types not listed use `default_price_per_vcpu_hour`.
    pub price_per_vcpu_hour: BTreeMap<String, f64>,
    pub default_price_per_vcpu_hour: f64,
    /// Applications drawn in the spot-share chart (the largest by executor count).
    pub chart_apps: usize,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// For policies that sample nodes, compare every decision with a shadow full scan
    /// (`sampling_quality` in the report). Off: sampled runs time like the live scheduler.
    pub sampling_quality: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        // Same assumptions as the trace generator: on-demand $0.048 per vCPU-hour, spot 35% of it.
        let mut prices = BTreeMap::new();
        prices.insert(ON_DEMAND.to_owned(), 0.048);
        prices.insert(SPOT.to_owned(), 0.048 * 0.35);
        SimOptions {
            seed: 1,
            bind_latency_seconds: 0.0,
            preemption_grace_seconds: (0.0, 30.0),
            app_resubmissions: 1,
            autoscaler: AutoscalerMode::Auto,
            stall_seconds: 3600.0,
            price_per_vcpu_hour: prices,
            default_price_per_vcpu_hour: 0.048,
            chart_apps: 10,
            progress: true,
            sampling_quality: true,
        }
    }
}

impl SimOptions {
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Options(m));
        let (lo, hi) = self.preemption_grace_seconds;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi) {
            return bad(format!(
                "preemption grace range {lo}..{hi} must be finite with 0 <= min <= max"
            ));
        }
        if !(self.bind_latency_seconds.is_finite() && self.bind_latency_seconds >= 0.0) {
            return bad(format!(
                "bind latency {} must be finite and >= 0",
                self.bind_latency_seconds
            ));
        }
        let prices = self
            .price_per_vcpu_hour
            .values()
            .chain(std::iter::once(&self.default_price_per_vcpu_hour));
        for p in prices {
            if !(p.is_finite() && *p >= 0.0) {
                return bad(format!("price {p} must be finite and >= 0"));
            }
        }
        if !(self.stall_seconds.is_finite() && self.stall_seconds > 0.0) {
            return bad(format!(
                "stall horizon {} must be finite and > 0",
                self.stall_seconds
            ));
        }
        Ok(())
    }
}

/// When the simulated cluster has an autoscaler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoscalerMode {
    /// Karpenter for traces with Spark applications; none for the others (openb, spot-gpu).
    #[default]
    Auto,
    Karpenter,
    Off,
}

/// A policy as given on the command line: a named baseline (`baselines::BASELINES`), or a
/// profile of the config, optionally with `@N` forcing its `percentageOfNodesToScore` to N
/// (0..=100; 0 scores every node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// The name in the report: the baseline, the profile, or `profile@N`.
    pub label: String,
    pub profile: String,
    pub sample_percent: Option<u32>,
    /// What its Spark pods carry.
    pub constraints: Constraints,
    /// The autoscaler's NodePools.
    pub pools: Pools,
}

impl PolicySpec {
    /// A baseline name, else a profile name of `config` as it is (even if it contains `@`),
    /// else `profile@N`.
    pub fn parse(spec: &str, config: &Config) -> Result<PolicySpec, SimError> {
        if let Some(b) = baselines::lookup(spec) {
            if config.profile(b.profile).is_none() {
                return Err(SimError::PolicySpec {
                    policy: spec.to_owned(),
                    message: format!("needs profile {:?}, which the config lacks", b.profile),
                });
            }
            return Ok(PolicySpec {
                label: spec.to_owned(),
                profile: b.profile.to_owned(),
                sample_percent: None,
                constraints: b.constraints,
                pools: b.pools,
            });
        }
        let plain = || PolicySpec {
            label: spec.to_owned(),
            profile: spec.to_owned(),
            sample_percent: None,
            constraints: Constraints::None,
            pools: Pools::Default,
        };
        if config.profile(spec).is_some() {
            return Ok(plain());
        }
        let Some((profile, pct)) = spec.rsplit_once('@') else {
            let named: Vec<&str> = baselines::BASELINES.iter().map(|b| b.name).collect();
            let profiles: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
            return Err(SimError::PolicySpec {
                policy: spec.to_owned(),
                message: format!(
                    "not a policy ({}) nor a profile of the config ({})",
                    named.join(", "),
                    profiles.join(", ")
                ),
            });
        };
        let bad = || SimError::PolicySpec {
            policy: spec.to_owned(),
            message: format!(
                "{pct:?} after '@' must be a percentage of nodes to score, an integer 0..=100 \
                 (e.g. {profile}@10; 0 scores every node)"
            ),
        };
        if pct.is_empty() || !pct.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u32 = pct.parse().map_err(|_| bad())?;
        if n > 100 {
            return Err(bad());
        }
        Ok(PolicySpec {
            label: format!("{profile}@{n}"),
            profile: profile.to_owned(),
            sample_percent: Some(n),
            constraints: Constraints::None,
            pools: Pools::Default,
        })
    }
}

/// Whether the framework samples with this percentage (on clusters of 100 nodes or more).
fn samples(percentage: u32) -> bool {
    (1..100).contains(&percentage)
}

/// Runs `trace` once per policy, each on a fresh cluster and clock. A policy is a profile name
/// of `config`, or `profile@N` for that profile with `percentageOfNodesToScore: N`; a policy that
/// samples nodes also gets `sampling_quality` (unless `opts.sampling_quality` is off).
pub fn simulate(
    trace: &Trace,
    config: &Config,
    policies: &[String],
    opts: &SimOptions,
) -> Result<SimReport, SimError> {
    opts.validate()?;
    trace.validate()?;
    if policies.is_empty() {
        return Err(SimError::NoPolicies);
    }
    let mut specs: Vec<PolicySpec> = Vec::new();
    for p in policies {
        let spec = PolicySpec::parse(p, config)?;
        if specs.iter().any(|s| s.label == spec.label) {
            return Err(SimError::DuplicatePolicy(spec.label));
        }
        specs.push(spec);
    }
    // Build every profile first so a bad policy fails before any run.
    let mut profiles = Vec::new();
    for spec in specs {
        let policy_error = |source| SimError::Policy {
            policy: spec.label.clone(),
            source,
        };
        let mut pc = config
            .profile(&spec.profile)
            .ok_or_else(|| {
                policy_error(crate::plugins::PluginError::NoProfile(spec.profile.clone()))
            })?
            .clone();
        if let Some(n) = spec.sample_percent {
            pc.percentage_of_nodes_to_score = n;
        }
        let profile = crate::plugins::build_profile(config, &pc).map_err(policy_error)?;
        let full_scan = if opts.sampling_quality && samples(pc.percentage_of_nodes_to_score) {
            pc.percentage_of_nodes_to_score = 0;
            Some(crate::plugins::build_profile(config, &pc).map_err(policy_error)?)
        } else {
            None
        };
        profiles.push((spec, profile, full_scan));
    }
    let mut report = SimReport::new(trace, opts.seed);
    for (spec, profile, full_scan) in &profiles {
        let started = std::time::Instant::now();
        let policy = engine::Policy {
            name: &spec.label,
            profile,
            full_scan: full_scan.as_ref(),
            constraints: spec.constraints,
            pools: spec.pools,
        };
        let run = engine::run(trace, config, &policy, opts)?;
        let wall = started.elapsed().as_secs_f64();
        report.add_policy(&spec.label, run, wall);
    }
    report.compare_with(baselines::REFERENCE);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_specs() {
        let c = Config::default();
        let p = PolicySpec::parse("spark-fleet", &c).unwrap();
        assert_eq!((p.label.as_str(), p.sample_percent), ("spark-fleet", None));
        let p = PolicySpec::parse("spark-fleet@10", &c).unwrap();
        assert_eq!(
            (p.label.as_str(), p.profile.as_str(), p.sample_percent),
            ("spark-fleet@10", "spark-fleet", Some(10))
        );
        assert_eq!(
            PolicySpec::parse("kube-default@007", &c).unwrap().label,
            "kube-default@7"
        );
        for bad in [
            "spark-fleet@",
            "spark-fleet@x",
            "spark-fleet@101",
            "spark-fleet@-1",
            "spark-fleet@+5",
        ] {
            let e = PolicySpec::parse(bad, &c).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("0..=100"), "{e}");
        }
        // A profile whose name has '@' is taken as it is.
        let mut c = Config::default();
        let mut pc = c.profile("spark-fleet").unwrap().clone();
        pc.name = "team@5".into();
        c.profiles.push(pc);
        assert_eq!(
            PolicySpec::parse("team@5", &c).unwrap().sample_percent,
            None
        );
        // Named policies: a profile plus constraints and pools.
        let p = PolicySpec::parse("all-spot", &c).unwrap();
        assert_eq!(
            (p.profile.as_str(), p.constraints, p.pools),
            ("kube-default", Constraints::SpotExecutors, Pools::Default)
        );
        let p = PolicySpec::parse("spark-fleet-webhook", &c).unwrap();
        assert_eq!(
            (p.profile.as_str(), p.constraints),
            ("spark-fleet", Constraints::Webhook)
        );
        let e = PolicySpec::parse("nope", &c).unwrap_err().to_string();
        assert!(
            e.contains("nope") && e.contains("karpenter-spread") && e.contains("kube-default"),
            "{e}"
        );
    }
}
