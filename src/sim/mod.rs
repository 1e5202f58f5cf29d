//! The simulator: replays a [`trace::Trace`] against the same snapshot, queue, plugins and
//! preemption as the live scheduler, with simulated events in place of the API server.
//!
//! [`simulate`] runs the trace once per policy (a profile of the config) on a virtual clock and
//! returns a [`SimReport`]: metrics that are identical for the same trace, seed and config,
//! plus wall-clock timing kept apart. [`SimReport::write`] puts `report.json` and SVG charts
//! in a directory; [`SimReport::summary_table`] compares the policies side by side.

pub mod charts;
pub mod cluster_model;
pub mod engine;
pub mod report;
pub mod spark_model;
pub mod trace;

pub use cluster_model::{AutoscalerOptions, NodeShape};
pub use report::{PolicyReport, SimReport, Timing};

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
    /// Karpenter-like node provisioning; off when `None`.
    pub autoscaler: Option<AutoscalerOptions>,
    /// Price of a node the trace gives no price for: dollars per vCPU-hour, by capacity type.
    /// Types not listed use `default_price_per_vcpu_hour`.
    pub price_per_vcpu_hour: BTreeMap<String, f64>,
    pub default_price_per_vcpu_hour: f64,
    /// Applications drawn in the spot-share chart (the largest by executor count).
    pub chart_apps: usize,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
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
            autoscaler: None,
            price_per_vcpu_hour: prices,
            default_price_per_vcpu_hour: 0.048,
            chart_apps: 10,
            progress: true,
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
        if let Some(a) = &self.autoscaler {
            a.validate().map_err(SimError::Options)?;
        }
        Ok(())
    }
}

/// Runs `trace` once per policy (profile names of `config`), each on a fresh cluster and clock.
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
    for (i, p) in policies.iter().enumerate() {
        if policies[..i].contains(p) {
            return Err(SimError::DuplicatePolicy(p.clone()));
        }
    }
    // Build every profile first so a bad policy name fails before any run.
    let mut profiles = Vec::new();
    for name in policies {
        let profile = crate::plugins::build_named_profile(config, name).map_err(|source| {
            SimError::Policy {
                policy: name.clone(),
                source,
            }
        })?;
        profiles.push((name.clone(), profile));
    }
    let mut report = SimReport::new(trace, opts.seed);
    for (name, profile) in &profiles {
        let started = std::time::Instant::now();
        let run = engine::run(trace, config, profile, opts, name)?;
        let wall = started.elapsed().as_secs_f64();
        report.add_policy(name, run, wall);
    }
    Ok(report)
}
