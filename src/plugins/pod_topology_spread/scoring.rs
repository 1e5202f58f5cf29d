//! PreScore counts matching pods per domain for each soft constraint; Score
//! sums `count * log(domains + 2) + (maxSkew - 1)`; Normalize reverses it so
//! emptier domains score higher.

use super::{
    constraints_of, for_each_matching_pod, has_all_keys, DomainMap, NodeInclusion,
    PodTopologySpread, NO_DOMAIN,
};
use crate::framework::{CycleState, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::model::{Pod, Sym, WhenUnsatisfiable, LABEL_HOSTNAME};
use crate::snapshot::{NodeIdx, Snapshot};

#[derive(Debug)]
enum Counts {
    /// Matching pods per domain; `node_domain` is indexed by `NodeIdx`.
    Domains {
        node_domain: Vec<u32>,
        counts: Vec<i64>,
    },
    /// `kubernetes.io/hostname`: matching pods per node, every node counted
    /// regardless of the inclusion policies (as upstream's Score).
    PerNode(Vec<i64>),
}

#[derive(Debug)]
struct SoftConstraint {
    max_skew: i64,
    weight: f64,
    counts: Counts,
}

#[derive(Debug)]
pub(super) struct PreScoreState {
    constraints: Vec<SoftConstraint>,
    /// Indexed by `NodeIdx`: feasible nodes missing some soft constraint's key.
    ignored: Vec<bool>,
    /// `ignored` in the order of the feasible nodes, for Normalize.
    ignored_in_order: Vec<bool>,
}

/// Upstream `topologyNormalizingWeight`: smaller topologies weigh less so their
/// counts are not watered down by bigger ones.
fn normalizing_weight(domains: usize) -> f64 {
    ((domains + 2) as f64).ln()
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &Snapshot,
        feasible: &[NodeIdx],
    ) -> Status {
        let soft = constraints_of(pod, WhenUnsatisfiable::ScheduleAnyway);
        let nodes = snap.nodes();
        if soft.is_empty() || nodes.is_empty() {
            return Status::skip();
        }
        let slots = nodes.slots();
        let hostname = Sym::new(LABEL_HOSTNAME);

        let mut ignored = vec![false; slots];
        let mut ignored_in_order = Vec::with_capacity(feasible.len());
        // Domains exist only where a scored (feasible, not ignored) node is.
        let mut maps: Vec<DomainMap> = soft.iter().map(|_| DomainMap::new(slots)).collect();
        for &i in feasible {
            let node = &nodes.node[i as usize];
            let skip = !has_all_keys(node, &soft);
            ignored[i as usize] = skip;
            ignored_in_order.push(skip);
            if skip {
                continue;
            }
            for (ci, c) in soft.iter().enumerate() {
                if c.topology_key == hostname {
                    continue;
                }
                if let Some(v) = node.labels.get(c.topology_key) {
                    maps[ci].intern(v);
                }
            }
        }
        let scored = ignored_in_order.iter().filter(|s| !**s).count();

        // Every node's domain, but only for domains a scored node is in; and
        // whether the node's pods count (all keys present, policies pass).
        let mut counting: Vec<Vec<bool>> = vec![vec![false; slots]; soft.len()];
        for i in nodes.live_indices() {
            let node = &nodes.node[i as usize];
            if !has_all_keys(node, &soft) {
                continue;
            }
            let mut inclusion = NodeInclusion::new(pod);
            for (ci, c) in soft.iter().enumerate() {
                if c.topology_key == hostname {
                    continue;
                }
                let map = &mut maps[ci];
                let Some(d) = node
                    .labels
                    .get(c.topology_key)
                    .and_then(|v| map.values.get(&v).copied())
                else {
                    continue;
                };
                map.node_domain[i as usize] = d;
                counting[ci][i as usize] = inclusion.admits(c, node);
            }
        }

        let ns = pod.key.namespace;
        let mut out = Vec::with_capacity(soft.len());
        for (ci, (c, map)) in soft.iter().zip(maps).enumerate() {
            let (counts, domains) = if c.topology_key == hostname {
                let mut per_node = vec![0i64; slots];
                for_each_matching_pod(snap, ns, c.selector.as_ref(), |n| {
                    if let Some(x) = per_node.get_mut(n as usize) {
                        *x += 1;
                    }
                });
                (Counts::PerNode(per_node), scored)
            } else {
                let mut counts = vec![0i64; map.len()];
                let eligible = &counting[ci];
                for_each_matching_pod(snap, ns, c.selector.as_ref(), |n| {
                    if eligible.get(n as usize).copied().unwrap_or(false) {
                        counts[map.node_domain[n as usize] as usize] += 1;
                    }
                });
                let domains = map.len();
                (
                    Counts::Domains {
                        node_domain: map.node_domain,
                        counts,
                    },
                    domains,
                )
            };
            out.push(SoftConstraint {
                max_skew: c.max_skew as i64,
                weight: normalizing_weight(domains),
                counts,
            });
        }
        state.write(PreScoreState {
            constraints: out,
            ignored,
            ignored_in_order,
        });
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    /// Weighted matching pods in the node's domains: lower is better.
    fn score(&self, state: &CycleState, _: &Pod, _: &Snapshot, node: NodeIdx) -> i64 {
        let Some(s) = state.read::<PreScoreState>() else {
            return 0;
        };
        let n = node as usize;
        if s.ignored.get(n).copied().unwrap_or(true) {
            return 0;
        }
        let mut score = 0.0;
        for c in &s.constraints {
            let cnt = match &c.counts {
                Counts::PerNode(per_node) => per_node[n],
                Counts::Domains {
                    node_domain,
                    counts,
                } => match node_domain[n] {
                    NO_DOMAIN => continue,
                    d => counts[d as usize],
                },
            };
            score += cnt as f64 * c.weight + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Upstream: `100 * (max + min - score) / max` over the scored nodes;
    /// ignored nodes get 0, and all 100 when every score is 0.
    fn normalize(&self, state: &CycleState, _: &Pod, scores: &mut [i64]) {
        let Some(s) = state.read::<PreScoreState>() else {
            return;
        };
        let aligned = s.ignored_in_order.len() == scores.len();
        let ignored = |k: usize| aligned && s.ignored_in_order[k];
        let mut min = i64::MAX;
        let mut max = 0i64;
        for (k, &v) in scores.iter().enumerate() {
            if !ignored(k) {
                min = min.min(v);
                max = max.max(v);
            }
        }
        for (k, v) in scores.iter_mut().enumerate() {
            *v = if ignored(k) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *v) / max
            };
        }
    }
}
