//! `simulation.karpenter`: the autoscaler the simulator runs around the scheduler. Only the
//! simulator reads it. What each setting models, and where its default comes from, is in
//! `simulations/README.md` ("The autoscaler").

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Karpenter as the simulator models it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KarpenterConfig {
    /// A batch of pending pods closes after this long without a new one (Karpenter's
    /// `BATCH_IDLE_DURATION`, default 1 s).
    pub batch_idle_seconds: f64,
    /// ... or this long after it opened (`BATCH_MAX_DURATION`, default 10 s).
    pub batch_max_seconds: f64,
    /// From launch to a Ready node (background article 002: 40–45 s on Karpenter).
    pub provision_delay_seconds: f64,
    /// How long a node waits after its last pod came or went before consolidation may take
    /// it (NodePool `consolidateAfter`; the NodePool of background article 002 sets 1m).
    pub consolidate_after_seconds: f64,
    pub consolidation_policy: ConsolidationPolicy,
    /// How often the disruption controller looks for a consolidation (Karpenter: 10 s).
    pub disruption_poll_seconds: f64,
    /// NodePool disruption budget: nodes of a pool that may be disrupted at once, in percent
    /// (Karpenter's default budget is `nodes: 10%`).
    pub disruption_budget_percent: u32,
    /// Spark drivers and executors carry `karpenter.sh/do-not-disrupt: "true"`, so
    /// consolidation never evicts them (Karpenter's advice for batch jobs that would start over).
    pub spark_do_not_disrupt: bool,
    /// Spot interruption notice (EC2: two minutes).
    pub interruption_notice_seconds: f64,
    /// Zones nodes are launched in; empty: the zones of the trace's nodes, else
    /// `zone-a`, `zone-b`, `zone-c`.
    pub zones: Vec<String>,
    /// Instance types Karpenter may launch; empty: the built-in list (c5, m5, r5 sizes with
    /// AWS prices, see `simulations/README.md`).
    pub instance_types: Vec<InstanceTypeConfig>,
    /// Most nodes Karpenter keeps at once (NodePool `limits`, as a node count).
    pub max_nodes: u32,
}

impl Default for KarpenterConfig {
    fn default() -> Self {
        KarpenterConfig {
            batch_idle_seconds: 1.0,
            batch_max_seconds: 10.0,
            provision_delay_seconds: 45.0,
            consolidate_after_seconds: 60.0,
            consolidation_policy: ConsolidationPolicy::WhenEmptyOrUnderutilized,
            disruption_poll_seconds: 10.0,
            disruption_budget_percent: 10,
            spark_do_not_disrupt: true,
            interruption_notice_seconds: 120.0,
            zones: Vec::new(),
            instance_types: Vec::new(),
            max_nodes: 1000,
        }
    }
}

/// NodePool `spec.disruption.consolidationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsolidationPolicy {
    /// Only empty nodes are removed.
    WhenEmpty,
    /// Empty nodes are removed; a node whose pods fit elsewhere is removed, or replaced by
    /// one cheaper node.
    WhenEmptyOrUnderutilized,
    /// No consolidation.
    Never,
}

/// One instance type and its prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstanceTypeConfig {
    pub name: String,
    pub vcpu: u32,
    pub memory_gib: f64,
    /// Pod slots (kubelet `maxPods`).
    #[serde(default = "default_max_pods")]
    pub max_pods: u32,
    /// Dollars per hour.
    pub on_demand_price: f64,
    pub spot_price: f64,
    /// Expected spot interruptions per node per 730-hour month (the Spot Instance Advisor's
    /// "frequency of interruption").
    #[serde(default = "default_interruptions")]
    pub spot_interruptions_per_month: f64,
    /// Extended resources (e.g. `nvidia.com/gpu: 1`) and labels the nodes carry.
    #[serde(default)]
    pub extended_resources: BTreeMap<String, i64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_max_pods() -> u32 {
    110
}

/// The Spot Instance Advisor's lowest band, "<5%" of instances interrupted a month.
pub const DEFAULT_SPOT_INTERRUPTIONS_PER_MONTH: f64 = 0.05;

fn default_interruptions() -> f64 {
    DEFAULT_SPOT_INTERRUPTIONS_PER_MONTH
}

impl KarpenterConfig {
    /// (field under `simulation.karpenter`, message) of the first bad value.
    pub fn check(&self) -> Result<(), (String, String)> {
        let durations = [
            ("batchIdleSeconds", self.batch_idle_seconds),
            ("batchMaxSeconds", self.batch_max_seconds),
            ("provisionDelaySeconds", self.provision_delay_seconds),
            ("consolidateAfterSeconds", self.consolidate_after_seconds),
            (
                "interruptionNoticeSeconds",
                self.interruption_notice_seconds,
            ),
        ];
        for (field, v) in durations {
            if !(v.is_finite() && v >= 0.0) {
                return Err((field.into(), format!("{v} must be a finite number >= 0")));
            }
        }
        if !(self.disruption_poll_seconds.is_finite() && self.disruption_poll_seconds > 0.0) {
            return Err((
                "disruptionPollSeconds".into(),
                format!("{} must be > 0", self.disruption_poll_seconds),
            ));
        }
        if self.disruption_budget_percent > 100 {
            return Err((
                "disruptionBudgetPercent".into(),
                "must be within 0..=100".into(),
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, t) in self.instance_types.iter().enumerate() {
            let field = |f: &str| format!("instanceTypes[{i}].{f}");
            if t.name.is_empty() {
                return Err((field("name"), "must not be empty".into()));
            }
            if names.contains(&t.name.as_str()) {
                return Err((
                    field("name"),
                    format!("duplicate instance type {:?}", t.name),
                ));
            }
            names.push(&t.name);
            if t.vcpu == 0 {
                return Err((field("vcpu"), "must be at least 1".into()));
            }
            if !(t.memory_gib.is_finite() && t.memory_gib > 0.0 && t.memory_gib < 1e6) {
                return Err((
                    field("memoryGib"),
                    format!("{} is not a size", t.memory_gib),
                ));
            }
            if t.max_pods == 0 {
                return Err((field("maxPods"), "must be at least 1".into()));
            }
            for (f, v) in [
                ("onDemandPrice", t.on_demand_price),
                ("spotPrice", t.spot_price),
                ("spotInterruptionsPerMonth", t.spot_interruptions_per_month),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err((field(f), format!("{v} must be a finite number >= 0")));
                }
            }
            if let Some((k, v)) = t.extended_resources.iter().find(|(_, v)| **v < 0) {
                return Err((
                    field(&format!("extendedResources.{k}")),
                    format!("{v} must be >= 0"),
                ));
            }
        }
        Ok(())
    }
}
