//! The policies a user compares. Each is a profile of the config (the scheduler's own
//! pipeline: no policy has a scheduler of its own), the node constraints its Spark pods carry,
//! and the NodePools the autoscaler launches from. `simulations/README.md` ("Policies")
//! describes each one and where its recipe comes from.

use super::karpenter::pools::{requirement_in, CapacityChoice, NodePool, LABEL_CAPACITY_TYPE};
use super::spark_model::AppSpec;
use crate::config::{KUBE_DEFAULT, SPARK_FLEET};
use crate::model::capacity::{ON_DEMAND, SPOT};
use crate::model::spark::{LABEL_SPARK_APP, LABEL_SPARK_ROLE};
use crate::model::{
    InclusionPolicy, LabelSelector, NodeSelectorTerm, Pod, Requirement, SelectorOp, Sym,
    TopologySpreadConstraint, WhenUnsatisfiable,
};

/// What Spark pods carry beyond what the trace gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraints {
    /// Nothing: the autoscaler launches the cheapest type that fits.
    None,
    /// Drivers and executors required off spot.
    AllOnDemand,
    /// Executors required on spot, drivers off spot (background article 002's SparkApplication).
    SpotExecutors,
    /// Executors spread evenly (maxSkew 1, DoNotSchedule) over a `capacity-spread-S-O` label
    /// whose values the spot and on-demand NodePools split S:O; drivers off spot. Karpenter's
    /// "On-Demand/Spot Ratio Split" recipe.
    RatioSpread,
    /// The admission webhook (`super::webhook`): each executor carries the capacity type
    /// spark-fleet chose when it was created, each driver its allowed types.
    Webhook,
}

/// Which NodePools the autoscaler has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pools {
    /// One NodePool allowing spot and on-demand (background article 002's `ecsnodepool`).
    Default,
    /// The default pool (weight 10) plus, per executor mix of the trace, a spot and an
    /// on-demand pool sharing a `capacity-spread-S-O` label's values S:O.
    RatioSplit,
    /// One node group whose nodes are spot and on-demand in the trace's executor-weighted
    /// mean mix (an EC2 Auto Scaling group with a mixed-instances policy).
    NodeGroup,
}

/// A named policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    pub name: &'static str,
    pub profile: &'static str,
    pub constraints: Constraints,
    pub pools: Pools,
}

/// Every policy `--policy` knows by name (besides the config's profiles).
pub const BASELINES: [Baseline; 7] = [
    Baseline {
        name: "all-on-demand",
        profile: KUBE_DEFAULT,
        constraints: Constraints::AllOnDemand,
        pools: Pools::Default,
    },
    Baseline {
        name: "all-spot",
        profile: KUBE_DEFAULT,
        constraints: Constraints::SpotExecutors,
        pools: Pools::Default,
    },
    Baseline {
        name: "mixed-node-group",
        profile: KUBE_DEFAULT,
        constraints: Constraints::None,
        pools: Pools::NodeGroup,
    },
    Baseline {
        name: "karpenter-spread",
        profile: KUBE_DEFAULT,
        constraints: Constraints::RatioSpread,
        pools: Pools::RatioSplit,
    },
    Baseline {
        name: KUBE_DEFAULT,
        profile: KUBE_DEFAULT,
        constraints: Constraints::None,
        pools: Pools::Default,
    },
    Baseline {
        name: SPARK_FLEET,
        profile: SPARK_FLEET,
        constraints: Constraints::None,
        pools: Pools::Default,
    },
    Baseline {
        name: "spark-fleet-webhook",
        profile: SPARK_FLEET,
        constraints: Constraints::Webhook,
        pools: Pools::Default,
    },
];

/// The policy all others are measured against (cost saving, slowdown).
pub const REFERENCE: &str = "all-on-demand";

pub fn lookup(name: &str) -> Option<&'static Baseline> {
    BASELINES.iter().find(|b| b.name == name)
}

/// The policies a run compares when none are named: for a trace with Spark applications, the
/// ones that answer "what does a mix save and what does it risk"; otherwise the two profiles.
pub fn default_policies(has_apps: bool) -> Vec<String> {
    let names: &[&str] = if has_apps {
        &[
            REFERENCE,
            "all-spot",
            "mixed-node-group",
            "karpenter-spread",
            SPARK_FLEET,
            "spark-fleet-webhook",
        ]
    } else {
        &[SPARK_FLEET, KUBE_DEFAULT]
    };
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The capacity-type label values of Karpenter's nodes.
fn capacity(op: SelectorOp, value: &str) -> Requirement {
    Requirement {
        key: Sym::new(LABEL_CAPACITY_TYPE),
        op,
        values: vec![Sym::new(value)],
        number: 0,
    }
}

/// Adds `req` to the pod's required node affinity: ANDed into every ORed term, or as the only
/// term when there is none (a recipe's pod template keeps the pod's own affinity).
fn require(pod: &mut Pod, req: Requirement) {
    match pod.node_affinity.required.as_mut() {
        Some(terms) => {
            for t in terms {
                t.match_expressions.push(req.clone());
            }
        }
        None => {
            pod.node_affinity.required = Some(vec![NodeSelectorTerm {
                match_expressions: vec![req],
                match_fields: Vec::new(),
                valid: true,
            }]);
        }
    }
}

/// The S:O split of a target spot share, in tenths reduced to lowest terms (40% → 2:3).
pub fn spread_split(target_spot_share: f64) -> (u32, u32) {
    let s = (target_spot_share.clamp(0.0, 1.0) * 10.0).round() as u32;
    let o = 10 - s;
    let g = gcd(s, o).max(1);
    (s / g, o / g)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The label a ratio split spreads over.
pub fn spread_key((s, o): (u32, u32)) -> String {
    format!("capacity-spread-{s}-{o}")
}

impl Constraints {
    /// Decorates a driver pod at submission (the webhook's constraints are the engine's:
    /// they depend on the cluster).
    pub fn driver(self, pod: &mut Pod) {
        match self {
            Constraints::AllOnDemand | Constraints::SpotExecutors | Constraints::RatioSpread => {
                require(pod, capacity(SelectorOp::NotIn, SPOT));
            }
            Constraints::None | Constraints::Webhook => {}
        }
    }

    /// Decorates an executor pod at submission.
    pub fn executor(self, pod: &mut Pod, app: &AppSpec) {
        match self {
            Constraints::AllOnDemand => require(pod, capacity(SelectorOp::NotIn, SPOT)),
            Constraints::SpotExecutors => require(pod, capacity(SelectorOp::In, SPOT)),
            Constraints::RatioSpread => {
                let Some(target) = app.target_spot_share else {
                    return;
                };
                let selector = LabelSelector {
                    requirements: [
                        (LABEL_SPARK_APP, app.id.as_str()),
                        (LABEL_SPARK_ROLE, "executor"),
                    ]
                    .iter()
                    .map(|(k, v)| Requirement {
                        key: Sym::new(k),
                        op: SelectorOp::In,
                        values: vec![Sym::new(v)],
                        number: 0,
                    })
                    .collect(),
                };
                pod.topology_spread.push(TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: Sym::new(&spread_key(spread_split(target))),
                    when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                    selector: Some(selector),
                    min_domains: None,
                    node_affinity_policy: InclusionPolicy::Honor,
                    node_taints_policy: InclusionPolicy::Ignore,
                });
            }
            Constraints::None | Constraints::Webhook => {}
        }
    }
}

impl Pools {
    /// The NodePools for a trace whose applications have these target spot shares
    /// (and executor counts).
    pub fn node_pools(self, apps: &[(Option<f64>, u32)]) -> Vec<NodePool> {
        let mut default = NodePool::new("default", &[SPOT, ON_DEMAND]);
        match self {
            Pools::Default => vec![default],
            Pools::NodeGroup => {
                let (mut weighted, mut n) = (0.0, 0.0);
                for &(target, executors) in apps {
                    if let Some(t) = target {
                        weighted += t * f64::from(executors);
                        n += f64::from(executors);
                    }
                }
                let spot = if n > 0.0 {
                    (weighted / n * 100.0).round() as u32
                } else {
                    0
                };
                let mut group = NodePool::new("node-group", &[SPOT, ON_DEMAND]);
                group.capacity = CapacityChoice::NodeShare(vec![
                    (Sym::new(SPOT), spot),
                    (Sym::new(ON_DEMAND), 100 - spot.min(100)),
                ]);
                vec![group]
            }
            Pools::RatioSplit => {
                default.weight = 10;
                let mut pools = vec![default];
                let mut splits: Vec<(u32, u32)> = apps
                    .iter()
                    .filter_map(|&(t, _)| t.map(spread_split))
                    .collect();
                splits.sort();
                splits.dedup();
                for (s, o) in splits {
                    let key = spread_key((s, o));
                    let values: Vec<String> = (1..=s + o).map(|v| v.to_string()).collect();
                    let (spot_values, od_values) = values.split_at(s as usize);
                    for (ty, vals, name) in [
                        (SPOT, spot_values, format!("spread-spot-{s}-{o}")),
                        (ON_DEMAND, od_values, format!("spread-on-demand-{s}-{o}")),
                    ] {
                        if vals.is_empty() {
                            continue;
                        }
                        let mut p = NodePool::new(&name, &[ty]);
                        let v: Vec<&str> = vals.iter().map(String::as_str).collect();
                        p.requirements.push(requirement_in(&key, &v));
                        pools.push(p);
                    }
                }
                pools
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for b in &BASELINES {
            assert_eq!(lookup(b.name), Some(b));
            assert_eq!(BASELINES.iter().filter(|x| x.name == b.name).count(), 1);
        }
        assert_eq!(lookup("nope"), None);
        assert!(default_policies(true).iter().all(|p| lookup(p).is_some()));
    }

    #[test]
    fn splits_reduce_to_lowest_terms() {
        assert_eq!(spread_split(0.4), (2, 3));
        assert_eq!(spread_split(0.7), (7, 3));
        assert_eq!(spread_split(0.5), (1, 1));
        assert_eq!(spread_split(0.2), (1, 4));
        assert_eq!(spread_split(0.0), (0, 1));
        assert_eq!(spread_split(1.0), (1, 0));
    }

    #[test]
    fn ratio_split_pools_share_the_label_values() {
        let pools = Pools::RatioSplit.node_pools(&[(Some(0.4), 3), (Some(0.0), 2), (None, 4)]);
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "default",
                "spread-on-demand-0-1",
                "spread-spot-2-3",
                "spread-on-demand-2-3"
            ]
        );
        let spot = &pools[2];
        let values: Vec<&str> = spot.requirements[1]
            .values
            .iter()
            .map(|v| v.as_str())
            .collect();
        assert_eq!(values, ["1", "2"]);
        let od: Vec<&str> = pools[3].requirements[1]
            .values
            .iter()
            .map(|v| v.as_str())
            .collect();
        assert_eq!(od, ["3", "4", "5"]);
    }

    #[test]
    fn node_group_share_is_executor_weighted() {
        let pools = Pools::NodeGroup.node_pools(&[(Some(0.4), 30), (Some(1.0), 10), (None, 50)]);
        assert_eq!(
            pools[0].capacity,
            CapacityChoice::NodeShare(vec![(Sym::new(SPOT), 55), (Sym::new(ON_DEMAND), 45)])
        );
    }

    #[test]
    fn recipes_add_to_every_existing_term() {
        let mut pod = Pod::new("ns", "d", crate::testkit::res(1000, 1 << 30));
        pod.node_affinity.required = Some(vec![
            NodeSelectorTerm {
                match_expressions: vec![requirement_in("zone", &["a"])],
                match_fields: Vec::new(),
                valid: true,
            },
            NodeSelectorTerm {
                match_expressions: vec![requirement_in("zone", &["b"])],
                match_fields: Vec::new(),
                valid: true,
            },
        ]);
        Constraints::AllOnDemand.driver(&mut pod);
        let terms = pod.node_affinity.required.unwrap();
        assert!(terms
            .iter()
            .all(|t| t.match_expressions.len() == 2
                && t.match_expressions[1].op == SelectorOp::NotIn));
    }
}
