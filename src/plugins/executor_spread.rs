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
    /// Each zone holding counted executors, with its zone key score (a few
    /// zones: a linear scan beats hashing).
    zone_scores: Vec<(Sym, i64)>,
    /// The zone key score of a zone holding none.
    empty_zone_score: i64,
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
        // The pod itself, if already placed (re-scheduling), does not count.
        let own_node = snap
            .pod_by_key(&pod.key)
            .filter(|e| e.pod.is_executor() && !e.pod.terminating)
            .map(|e| e.node);
        // The app's counted executors per node slot and per zone.
        let mut node_counts: Vec<u32> = Vec::new();
        let mut zone_counts: Vec<(Sym, u32)> = Vec::new();
        if let Some(app) = snap.app(sp.app) {
            if !app.executors_by_node.is_empty() {
                node_counts = vec![0; nodes.slots()];
            }
            for (&n, &count) in &app.executors_by_node {
                let count = count.saturating_sub(u32::from(own_node == Some(n)));
                if count == 0 || !of_type(n) {
                    continue;
                }
                node_counts[n as usize] = count;
                if let Some(z) = nodes.zone[n as usize] {
                    match zone_counts.iter_mut().find(|e| e.0 == z) {
                        Some(e) => e.1 += count,
                        None => zone_counts.push((z, count)),
                    }
                }
            }
        }
        let count_in = |z: Sym| zone_counts.iter().find(|e| e.0 == z).map_or(0, |e| e.1);
        // The fewest executors on a candidate node and in a candidate's zone. Both
        // are usually 0 and show at the first candidates: the scan stops there.
        let (mut any_candidate, mut node_min, mut zone_min) = (false, u32::MAX, u32::MAX);
        for &n in feasible.iter().filter(|&&n| of_type(n)) {
            any_candidate = true;
            node_min = node_min.min(node_counts.get(n as usize).copied().unwrap_or(0));
            // A node without a zone label is in no zone domain.
            if let Some(z) = nodes.zone[n as usize] {
                zone_min = zone_min.min(count_in(z));
            }
            if node_min == 0 && zone_min == 0 {
                break;
            }
        }
        if !any_candidate {
            return Status::skip();
        }
        let zone_min = if zone_min == u32::MAX { 0 } else { zone_min };
        let zone_skew = self.config.spark.executor_spread.zone_max_skew;
        state.write(SpreadCycle {
            only_type,
            node_counts,
            node_min,
            zone_scores: zone_counts
                .iter()
                .map(|&(z, c)| (z, key_score(c, zone_min, zone_skew)))
                .collect(),
            empty_zone_score: key_score(0, zone_min, zone_skew),
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
                .map_or(c.empty_zone_score, |e| e.1),
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

    /// The scores straight from the definition: count the app's executors by
    /// walking every pod, then skew per candidate node and zone.
    fn reference_scores(s: &Snapshot, p: &Pod, feasible: &[NodeIdx]) -> Vec<i64> {
        let cfg = Config::default();
        let t = s.nodes();
        let ty = |n: NodeIdx| t.capacity_type[n as usize];
        let only_type = mix_target(&cfg, p, s).filter(|w| feasible.iter().any(|&n| ty(n) == *w));
        let of_type = |n: NodeIdx| only_type.is_none_or(|w| ty(n) == w);
        let app = p.spark.as_ref().map(|sp| sp.app);
        let counted: Vec<NodeIdx> = s
            .all_pods()
            .map(|(_, e)| e)
            .filter(|e| {
                e.pod.is_executor()
                    && !e.pod.terminating
                    && e.pod.key != p.key
                    && e.pod.spark.as_ref().map(|sp| sp.app) == app
                    && of_type(e.node)
            })
            .map(|e| e.node)
            .collect();
        let on_node = |n: NodeIdx| counted.iter().filter(|&&m| m == n).count() as u32;
        let in_zone = |z: Sym| {
            counted
                .iter()
                .filter(|&&m| t.zone[m as usize] == Some(z))
                .count() as u32
        };
        let candidates: Vec<NodeIdx> = feasible.iter().copied().filter(|&n| of_type(n)).collect();
        let node_min = candidates.iter().map(|&n| on_node(n)).min().unwrap_or(0);
        let zone_min = candidates
            .iter()
            .filter_map(|&n| t.zone[n as usize])
            .map(in_zone)
            .min()
            .unwrap_or(0);
        let spread = &cfg.spark.executor_spread;
        feasible
            .iter()
            .map(|&n| {
                if candidates.is_empty() || !of_type(n) {
                    return 0;
                }
                let node_score = key_score(on_node(n), node_min, spread.node_max_skew);
                let zone_score = t.zone[n as usize].map_or(MAX_NODE_SCORE, |z| {
                    key_score(in_zone(z), zone_min, spread.zone_max_skew)
                });
                (node_score + zone_score) / 2
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// The incremental per-node counts and the early-stopping minimum scan
        /// give the scores the definition gives.
        #[test]
        fn scores_match_the_definition(
            nodes in proptest::collection::vec((proptest::option::of(0u8..3), 0u8..3), 1..16),
            executors in proptest::collection::vec((0usize..16, 0u8..4), 0..40),
            feasible_mask in proptest::collection::vec(proptest::bool::weighted(0.8), 16),
            with_mix in proptest::bool::ANY,
            placed_self in proptest::option::of(0usize..16),
        ) {
            let mut s = Snapshot::new(CapacityRules::default());
            for (i, (zone, kind)) in nodes.iter().enumerate() {
                let mut b = node(&format!("n{i}"), 64_000, 256 * GI);
                if let Some(z) = zone {
                    b = b.zone(&format!("z{z}"));
                }
                b = match kind { 0 => b.spot(), 1 => b.on_demand(), _ => b };
                s.upsert_node(b.build());
            }
            let mut driver = pod("d", 100, GI).driver("app").on("n0");
            if with_mix {
                driver = driver.annotation(EXECUTOR_CAPACITY_MIX, "spot=1,on-demand=1");
            }
            s.upsert_pod(driver.arc()).unwrap();
            for (k, &(at, kind)) in executors.iter().enumerate() {
                let on = format!("n{}", at % nodes.len());
                let e = match kind {
                    0 => pod(&format!("e{k}"), 100, GI).executor("app"),
                    1 => pod(&format!("e{k}"), 100, GI).executor("app").terminating(),
                    2 => pod(&format!("e{k}"), 100, GI).executor("other"),
                    _ => pod(&format!("e{k}"), 100, GI).executor("app"),
                };
                s.upsert_pod(e.on(&on).arc()).unwrap();
            }
            let incoming = || pod("next", 100, GI).executor("app");
            if let Some(at) = placed_self {
                // Re-scheduling an executor that is still placed: it must not count itself.
                s.upsert_pod(incoming().on(&format!("n{}", at % nodes.len())).arc()).unwrap();
            }
            let incoming = incoming().build();
            let feasible: Vec<NodeIdx> = s
                .nodes()
                .live_indices()
                .filter(|&n| feasible_mask[n as usize])
                .collect();
            let mut state = CycleState::default();
            let st = plugin().pre_score(&mut state, &incoming, &s, &feasible);
            let mut got = vec![0i64; feasible.len()];
            if st.code != crate::framework::Code::Skip {
                plugin().score_nodes(&state, &incoming, &s, &feasible, &mut got);
            }
            proptest::prop_assert_eq!(got, reference_scores(&s, &incoming, &feasible));
        }
    }
}
