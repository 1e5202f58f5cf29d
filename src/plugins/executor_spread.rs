//! ExecutorSpread: spreads each Spark application's executors across zones and
//! nodes, by score only, with no topologySpreadConstraints needed on the pods.
//!
//! For a candidate node the skew of a key (zone, node) is what upstream's
//! PodTopologySpread computes: the app's executors in the node's domain after
//! placing this one, minus the fewest in any candidate domain. Within the
//! configured max skew a key scores 100, so packing (NodeResourcesFit
//! MostAllocated) decides; beyond it the score falls as 100·s/(s+excess).
//!
//! Only domains of the capacity type the application's mix targets next count,
//! and only executors on that type: each type's executors are spread on their
//! own, and spread never pulls an executor toward the type the mix does not want
//! (nodes of other types score 0). Without a mix, or when no feasible node has the
//! target type (soft fallback), all feasible nodes and executors count.

use crate::config::Config;
use crate::framework::{CycleState, Plugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::model::{Pod, Sym};
use crate::snapshot::{NodeIdx, Snapshot};
use crate::spark::policy;
use std::sync::Arc;

pub const NAME: &str = "ExecutorSpread";

pub struct ExecutorSpread {
    config: Arc<Config>,
}

impl ExecutorSpread {
    pub fn new(config: Arc<Config>) -> ExecutorSpread {
        ExecutorSpread { config }
    }
}

impl Plugin for ExecutorSpread {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Domain counts, computed once per cycle.
struct SpreadCycle {
    /// Only nodes of this type are candidates; None = every feasible node.
    only_type: Option<Sym>,
    /// A few zones: a linear scan beats hashing.
    zone_counts: Vec<(Sym, u32)>,
    /// Sorted by node, looked up by binary search on every scored node.
    node_counts: Vec<(NodeIdx, u32)>,
    zone_min: u32,
    node_min: u32,
}

/// The type the application's mix wants next, if any (bad annotations are
/// CapacityMix's to report; spread then just ignores types).
fn mix_target(config: &Config, pod: &Pod, snap: &Snapshot) -> Option<Sym> {
    pod.spark.as_ref()?;
    let mix = policy::executor_mix(config, pod, snap).ok()??;
    let placed = policy::PlacedExecutors::of_app(snap, pod);
    mix.next_type(|t| placed.of(t), placed.total)
}

impl PreScorePlugin for ExecutorSpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &Snapshot,
        feasible: &[NodeIdx],
    ) -> Status {
        let Some(sp) = pod.spark.as_ref().filter(|_| pod.is_executor()) else {
            return Status::skip();
        };
        let nodes = snap.nodes();
        let ty = |n: NodeIdx| nodes.capacity_type[n as usize];
        let only_type =
            mix_target(&self.config, pod, snap).filter(|t| feasible.iter().any(|&n| ty(n) == *t));
        let candidates = || {
            feasible
                .iter()
                .copied()
                .filter(move |&n| only_type.is_none_or(|t| ty(n) == t))
        };
        if candidates().next().is_none() {
            return Status::skip();
        }
        let mut zone_counts: Vec<(Sym, u32)> = Vec::new();
        let mut node_list: Vec<NodeIdx> = Vec::new();
        if let Some(app) = snap.app(sp.app) {
            for entry in app.executors.iter().filter_map(|&id| snap.pod(id)) {
                if entry.pod.terminating
                    || entry.pod.key == pod.key
                    || only_type.is_some_and(|t| ty(entry.node) != t)
                {
                    continue;
                }
                node_list.push(entry.node);
                if let Some(z) = nodes.zone[entry.node as usize] {
                    match zone_counts.iter_mut().find(|e| e.0 == z) {
                        Some(e) => e.1 += 1,
                        None => zone_counts.push((z, 1)),
                    }
                }
            }
        }
        node_list.sort_unstable();
        let mut node_counts: Vec<(NodeIdx, u32)> = Vec::new();
        for n in node_list {
            match node_counts.last_mut() {
                Some(last) if last.0 == n => last.1 += 1,
                _ => node_counts.push((n, 1)),
            }
        }
        let node_min = candidates()
            .map(|n| count_on(&node_counts, n))
            .min()
            .unwrap_or(0);
        let zone_min = candidates()
            .filter_map(|n| nodes.zone[n as usize])
            .map(|z| count_in(&zone_counts, z))
            .min()
            .unwrap_or(0);
        state.write(SpreadCycle {
            only_type,
            zone_counts,
            node_counts,
            zone_min,
            node_min,
        });
        Status::success()
    }
}

fn count_on(counts: &[(NodeIdx, u32)], node: NodeIdx) -> u32 {
    counts
        .binary_search_by_key(&node, |e| e.0)
        .map_or(0, |i| counts[i].1)
}

fn count_in(counts: &[(Sym, u32)], zone: Sym) -> u32 {
    counts.iter().find(|e| e.0 == zone).map_or(0, |e| e.1)
}

/// 100 within the max skew, then 100·s/(s+excess).
fn key_score(count: u32, min: u32, max_skew: u32) -> i64 {
    let skew = (count + 1).saturating_sub(min);
    let excess = skew.saturating_sub(max_skew) as i64;
    let s = max_skew.max(1) as i64;
    MAX_NODE_SCORE * s / (s + excess)
}

impl ScorePlugin for ExecutorSpread {
    fn score(&self, state: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let Some(c) = state.read::<SpreadCycle>() else {
            return 0;
        };
        let nodes = snap.nodes();
        if c.only_type
            .is_some_and(|t| nodes.capacity_type[node as usize] != t)
        {
            return 0;
        }
        let cfg = &self.config.spark.executor_spread;
        let on_node = count_on(&c.node_counts, node);
        let node_score = key_score(on_node, c.node_min, cfg.node_max_skew);
        // A node without a zone label is in no zone domain: only its node skew counts.
        let zone_score = match nodes.zone[node as usize] {
            Some(z) => key_score(count_in(&c.zone_counts, z), c.zone_min, cfg.zone_max_skew),
            None => MAX_NODE_SCORE,
        };
        (node_score + zone_score) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::capacity::CapacityRules;
    use crate::plugins::test_support::score_all;
    use crate::spark::annotations::EXECUTOR_CAPACITY_MIX;
    use crate::testkit::*;
    use std::collections::HashMap;

    fn plugin() -> ExecutorSpread {
        ExecutorSpread::new(Arc::new(Config::default()))
    }

    fn scores(s: &Snapshot, p: &Pod) -> HashMap<String, i64> {
        score_all(Some(&plugin()), &plugin(), p, s)
            .into_iter()
            .collect()
    }

    #[test]
    fn key_score_table() {
        // (count in domain, min, max skew) → score
        let cases = [
            ((0, 0, 1), 100),
            ((1, 0, 1), 50),
            ((2, 0, 1), 33),
            ((1, 0, 2), 100),
            ((2, 0, 2), 66),
            ((5, 5, 1), 100),
        ];
        for ((c, m, s), want) in cases {
            assert_eq!(key_score(c, m, s), want, "{c} {m} {s}");
        }
    }

    #[test]
    fn prefers_the_emptier_zone() {
        let mut s = Snapshot::new(CapacityRules::default());
        for (n, z) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
            s.upsert_node(node(n, 8000, 32 * GI).zone(z).build());
        }
        s.upsert_pod(pod("e1", 1000, GI).executor("app").on("a1").arc())
            .unwrap();
        let next = pod("e2", 1000, GI).executor("app").build();
        let sc = scores(&s, &next);
        // Zone a already has one more executor than b (skew 2 > 1 on a).
        assert_eq!(sc["b1"], 100);
        assert!(sc["a2"] < sc["b1"], "{sc:?}");
        // One executor on a1 is within the node max skew (2): a1 and a2 tie.
        assert_eq!(sc["a1"], sc["a2"]);
        // Another application's executors do not count.
        let other = pod("x", 1000, GI).executor("other").build();
        assert!(scores(&s, &other).values().all(|&v| v == 100));
        // Non-Spark pods: nothing to do.
        let plain = pod("p", 1000, GI).build();
        assert!(scores(&s, &plain).values().all(|&v| v == 0));
    }

    #[test]
    fn node_skew_allows_packing_up_to_max() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("n1", 8000, 32 * GI).build());
        s.upsert_node(node("n2", 8000, 32 * GI).build());
        s.upsert_pod(pod("e1", 1000, GI).executor("app").on("n1").arc())
            .unwrap();
        let next = pod("e2", 1000, GI).executor("app").build();
        // Default node max skew 2: a second executor on n1 is still fine.
        assert_eq!(scores(&s, &next)["n1"], 100);
        s.upsert_pod(pod("e3", 1000, GI).executor("app").on("n1").arc())
            .unwrap();
        let sc = scores(&s, &next);
        assert!(sc["n1"] < 100 && sc["n2"] == 100, "{sc:?}");
    }

    #[test]
    fn only_the_targeted_type_counts() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("spot-a", 8000, 32 * GI).zone("a").spot().build());
        s.upsert_node(node("spot-b", 8000, 32 * GI).zone("b").spot().build());
        s.upsert_node(node("od-a", 8000, 32 * GI).zone("a").on_demand().build());
        // Two on-demand executors in zone a; the mix now wants spot.
        for e in ["e1", "e2"] {
            s.upsert_pod(pod(e, 1000, GI).executor("app").on("od-a").arc())
                .unwrap();
        }
        let next = pod("e3", 1000, GI)
            .executor("app")
            .annotation(EXECUTOR_CAPACITY_MIX, "spot=50,on-demand=50")
            .build();
        let sc = scores(&s, &next);
        // On-demand executors in zone a don't push spot executors out of zone a.
        assert_eq!(sc["spot-a"], 100);
        assert_eq!(sc["spot-b"], 100);
        assert_eq!(sc["od-a"], 0);
        // Without the mix, zone a holds two executors: zone b is preferred.
        let plain = pod("e3", 1000, GI).executor("app").build();
        let sc = scores(&s, &plain);
        assert!(sc["spot-b"] > sc["spot-a"], "{sc:?}");
    }
}
