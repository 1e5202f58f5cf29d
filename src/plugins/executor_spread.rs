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
    /// The app's counted executors per node slot (empty when it has none).
    node_counts: Vec<u32>,
    node_min: u32,
    /// Each zone holding a candidate, with its zone key score (a few zones: a
    /// linear scan beats hashing).
    zone_scores: Vec<(Sym, i64)>,
}

impl SpreadCycle {
    fn count_on(&self, node: NodeIdx) -> u32 {
        self.node_counts.get(node as usize).copied().unwrap_or(0)
    }
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
        // Candidates are the feasible nodes of this type; only executors on it count.
        let of_type = |n: NodeIdx| only_type.is_none_or(|t| ty(n) == t);
        let mut candidates = 0usize;
        // Zones holding a candidate, with the app's executors counted in each.
        let mut zone_counts: Vec<(Sym, u32)> = Vec::new();
        let mut last_zone = None;
        for &n in feasible.iter().filter(|&&n| of_type(n)) {
            candidates += 1;
            let Some(z) = nodes.zone[n as usize] else {
                continue;
            };
            if last_zone != Some(z) && !zone_counts.iter().any(|e| e.0 == z) {
                zone_counts.push((z, 0));
            }
            last_zone = Some(z);
        }
        if candidates == 0 {
            return Status::skip();
        }
        // The pod itself, if already placed (re-scheduling), does not count.
        let own_node = snap
            .pod_by_key(&pod.key)
            .filter(|e| e.pod.is_executor() && !e.pod.terminating)
            .map(|e| e.node);
        let mut node_counts: Vec<u32> = Vec::new();
        let mut nodes_with_executors = 0usize;
        if let Some(app) = snap.app(sp.app) {
            nodes_with_executors = app.executors_by_node.len();
            if !app.executors_by_node.is_empty() {
                node_counts = vec![0; nodes.slots()];
            }
            for (&n, &count) in &app.executors_by_node {
                let count = count - u32::from(own_node == Some(n));
                if count == 0 || !of_type(n) {
                    continue;
                }
                node_counts[n as usize] = count;
                if let Some(z) = nodes.zone[n as usize] {
                    if let Some(e) = zone_counts.iter_mut().find(|e| e.0 == z) {
                        e.1 += count;
                    }
                }
            }
        }
        // Fewer nodes hold executors than there are candidates: some candidate has none.
        let node_min = if nodes_with_executors < candidates {
            0
        } else {
            feasible
                .iter()
                .filter(|&&n| of_type(n))
                .map(|&n| node_counts.get(n as usize).copied().unwrap_or(0))
                .min()
                .unwrap_or(0)
        };
        let zone_min = zone_counts.iter().map(|e| e.1).min().unwrap_or(0);
        let zone_skew = self.config.spark.executor_spread.zone_max_skew;
        state.write(SpreadCycle {
            only_type,
            node_counts,
            node_min,
            zone_scores: zone_counts
                .iter()
                .map(|&(z, c)| (z, key_score(c, zone_min, zone_skew)))
                .collect(),
        });
        Status::success()
    }
}

/// 100 within the max skew, then 100·s/(s+excess).
fn key_score(count: u32, min: u32, max_skew: u32) -> i64 {
    let skew = (count + 1).saturating_sub(min);
    let excess = skew.saturating_sub(max_skew) as i64;
    if excess == 0 {
        return MAX_NODE_SCORE;
    }
    let s = max_skew.max(1) as i64;
    MAX_NODE_SCORE * s / (s + excess)
}

impl ExecutorSpread {
    fn score_one(&self, c: &SpreadCycle, snap: &Snapshot, node: NodeIdx) -> i64 {
        let nodes = snap.nodes();
        if c.only_type
            .is_some_and(|t| nodes.capacity_type[node as usize] != t)
        {
            return 0;
        }
        let node_skew = self.config.spark.executor_spread.node_max_skew;
        let node_score = key_score(c.count_on(node), c.node_min, node_skew);
        // A node without a zone label is in no zone domain: only its node skew counts.
        let zone_score = match nodes.zone[node as usize] {
            Some(z) => c
                .zone_scores
                .iter()
                .find(|e| e.0 == z)
                .map_or(MAX_NODE_SCORE, |e| e.1),
            None => MAX_NODE_SCORE,
        };
        (node_score + zone_score) / 2
    }
}

impl ScorePlugin for ExecutorSpread {
    fn score(&self, state: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        match state.read::<SpreadCycle>() {
            Some(c) => self.score_one(c, snap, node),
            None => 0,
        }
    }

    fn score_nodes(
        &self,
        state: &CycleState,
        _: &Pod,
        snap: &Snapshot,
        nodes: &[NodeIdx],
        out: &mut [i64],
    ) {
        let Some(c) = state.read::<SpreadCycle>() else {
            out.fill(0);
            return;
        };
        for (o, &n) in out.iter_mut().zip(nodes) {
            *o = self.score_one(c, snap, n);
        }
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
