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
use crate::framework::{
    CycleState, Normalization, Plugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::model::{Pod, Sym};
use crate::snapshot::{NodeCounts, NodeIdx, NodeTable, Snapshot};
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

/// Key scores, worked out once per cycle, so that scoring a node is a few table
/// lookups.
struct SpreadCycle {
    /// Per node type id: all ones if nodes of that type are candidates (the
    /// type the mix targets; every type without one), else 0 (they score 0).
    type_mask: Vec<i64>,
    node_min: u32,
    /// The node key score by the app's counted executors on the node, for counts
    /// below the table's length (`node_key_score` beyond).
    node_scores: Vec<i64>,
    /// The zone key score by zone id (id 0, no zone label: no zone domain, 100).
    zone_scores: Vec<i64>,
    /// The incoming pod's own node when it is already placed: it does not count there.
    own_node: Option<NodeIdx>,
}

impl SpreadCycle {
    fn node_key_score(&self, count: u32, max_skew: u32) -> i64 {
        match self.node_scores.get(count as usize) {
            Some(&s) => s,
            None => key_score(count, self.node_min, max_skew),
        }
    }

    /// The app's executors on `node` that count: its own placement does not.
    fn counted(&self, node: NodeIdx, on_node: u32) -> u32 {
        on_node.saturating_sub(u32::from(self.own_node == Some(node)))
    }

    /// A node's score from its type and zone ids and its counted executors.
    /// The type only masks the score: node types alternate unpredictably, so
    /// no branch on them. Key scores are in 0..=100, so `>> 1` halves.
    #[inline]
    fn score(&self, type_id: u32, zone_id: u32, count: u32, max_skew: u32) -> i64 {
        let sum = self.node_key_score(count, max_skew) + self.zone_scores[zone_id as usize];
        (sum >> 1) & self.type_mask[type_id as usize]
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

/// The application's counted executors per node (empty when it has none).
fn app_counts<'a>(snap: &'a Snapshot, pod: &Pod) -> Option<&'a NodeCounts> {
    let sp = pod.spark.as_ref()?;
    snap.app(sp.app)
        .map(|a| &a.executors_by_node)
        .filter(|c| !c.is_empty())
}

impl PreScorePlugin for ExecutorSpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &Snapshot,
        feasible: &[NodeIdx],
    ) -> Status {
        if pod.spark.is_none() || !pod.is_executor() {
            return Status::skip();
        }
        let nodes = snap.nodes();
        let (tid, zid) = (&nodes.type_id, &nodes.zone_id);
        let only_type = mix_target(&self.config, pod, snap)
            .and_then(|t| nodes.type_ids.get(t))
            .filter(|&t| feasible.iter().any(|&n| tid[n as usize] == t));
        // Candidates are the feasible nodes of this type; only executors on it count.
        let of_type = |n: usize| only_type.is_none_or(|t| tid[n] == t);
        // The pod itself, if already placed (re-scheduling), does not count.
        let own_node = snap
            .pod_by_key(&pod.key)
            .filter(|e| e.pod.is_executor() && !e.pod.terminating)
            .map(|e| e.node);
        let counts = app_counts(snap, pod);
        let count_on = |n: NodeIdx| {
            counts
                .map_or(0, |c| c.get(n))
                .saturating_sub(u32::from(own_node == Some(n)))
        };
        // The app's counted executors per zone id.
        let mut zone_counts = vec![0u32; nodes.zone_ids.table_len()];
        match counts {
            Some(NodeCounts::Dense { counts, .. }) => {
                for (n, (&c, &z)) in counts.iter().zip(zid).enumerate() {
                    zone_counts[z as usize] += c * u32::from(of_type(n));
                }
            }
            Some(sparse) => {
                for (n, c) in sparse.iter() {
                    zone_counts[zid[n as usize] as usize] += c * u32::from(of_type(n as usize));
                }
            }
            None => {}
        }
        if let Some(n) = own_node.filter(|&n| counts.is_some() && of_type(n as usize)) {
            let z = &mut zone_counts[zid[n as usize] as usize];
            *z = z.saturating_sub(1);
        }
        // The fewest executors on a candidate node and in a candidate's zone. Both
        // are usually 0 and show at the first candidates: the scans stop there.
        let mut candidates = feasible.iter().copied().filter(|&n| of_type(n as usize));
        let Some(first) = candidates.clone().next() else {
            return Status::skip();
        };
        let node_min = match counts {
            None => 0,
            Some(c) => match c.as_dense() {
                Some(dense) => dense_min(dense, feasible, &of_type).min(
                    own_node
                        .filter(|&n| of_type(n as usize) && feasible.binary_search(&n).is_ok())
                        .map_or(u32::MAX, count_on),
                ),
                None => {
                    let mut min = count_on(first);
                    for n in candidates.clone() {
                        if min == 0 {
                            break;
                        }
                        min = min.min(count_on(n));
                    }
                    min
                }
            },
        };
        // Zones are few: stop once every zone holding a node has been seen, or at 0.
        // A node without a zone label (id 0) is in no zone domain.
        let zones = (nodes.zone_ids.table_len() - 1) as u32;
        let (mut zone_min, mut seen, mut seen_zones) =
            (u32::MAX, vec![false; zones as usize + 1], 0);
        for n in candidates.by_ref() {
            let z = zid[n as usize];
            if z == 0 || seen[z as usize] {
                continue;
            }
            seen[z as usize] = true;
            seen_zones += 1;
            zone_min = zone_min.min(zone_counts[z as usize]);
            if zone_min == 0 || seen_zones == zones {
                break;
            }
        }
        let zone_min = if zone_min == u32::MAX { 0 } else { zone_min };
        let spread = &self.config.spark.executor_spread;
        let mut zone_scores: Vec<i64> = zone_counts
            .iter()
            .map(|&c| key_score(c, zone_min, spread.zone_max_skew))
            .collect();
        zone_scores[0] = MAX_NODE_SCORE;
        // Counts up to a little past the point where the score starts falling
        // (bounded: the max skew comes from config and may be huge).
        let table_len = node_min
            .saturating_add(spread.node_max_skew)
            .saturating_add(64)
            .min(1024) as usize;
        let type_mask = (0..nodes.type_ids.table_len() as u32)
            .map(|t| {
                if only_type.is_none_or(|o| o == t) {
                    -1
                } else {
                    0
                }
            })
            .collect();
        state.write(SpreadCycle {
            type_mask,
            node_min,
            node_scores: (0..table_len as u32)
                .map(|c| key_score(c, node_min, spread.node_max_skew))
                .collect(),
            zone_scores,
            own_node,
        });
        Status::success()
    }
}

/// The fewest of `dense` counts on the candidate nodes (those of `of_type`) among
/// `feasible`, `u32::MAX` if none; the scan stops at the first block holding a 0.
fn dense_min(dense: &[u32], feasible: &[NodeIdx], of_type: &impl Fn(usize) -> bool) -> u32 {
    let mut min = u32::MAX;
    for block in feasible.chunks(64) {
        for &n in block {
            let i = n as usize;
            let c = dense.get(i).copied().unwrap_or(0);
            min = min.min(if of_type(i) { c } else { u32::MAX });
        }
        if min == 0 {
            break;
        }
    }
    min
}

/// The score of a node holding none of the app's executors, by zone id and
/// type id (`table[zone * types + type]`), with `types`.
fn empty_node_scores(c: &SpreadCycle, t: &NodeTable, skew: u32) -> (Vec<i64>, usize) {
    let types = t.type_ids.table_len();
    let zones = t.zone_ids.table_len();
    let table = (0..zones * types)
        .map(|k| c.score((k % types) as u32, (k / types) as u32, 0, skew))
        .collect();
    (table, types)
}

/// 100 within the max skew, then 100·s/(s+excess).
fn key_score(count: u32, min: u32, max_skew: u32) -> i64 {
    let skew = count.saturating_add(1).saturating_sub(min);
    let excess = skew.saturating_sub(max_skew) as i64;
    if excess == 0 {
        return MAX_NODE_SCORE;
    }
    let s = max_skew.max(1) as i64;
    MAX_NODE_SCORE * s / (s + excess)
}

impl ExecutorSpread {
    fn score_one(&self, c: &SpreadCycle, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let nodes = snap.nodes();
        let i = node as usize;
        let count = c.counted(node, app_counts(snap, pod).map_or(0, |a| a.get(node)));
        let skew = self.config.spark.executor_spread.node_max_skew;
        c.score(nodes.type_id[i], nodes.zone_id[i], count, skew)
    }
}

impl ScorePlugin for ExecutorSpread {
    fn score(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        match state.read::<SpreadCycle>() {
            Some(c) => self.score_one(c, pod, snap, node),
            None => 0,
        }
    }

    /// With the app's counts as an array, every node reads its count there;
    /// otherwise every node is first scored as holding none of the app's
    /// executors, then the few that hold some are patched.
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &[NodeIdx],
        out: &mut [i64],
    ) {
        let Some(c) = state.read::<SpreadCycle>() else {
            out.fill(0);
            return;
        };
        let t = snap.nodes();
        let (tid, zid) = (&t.type_id, &t.zone_id);
        let skew = self.config.spark.executor_spread.node_max_skew;
        let counts = app_counts(snap, pod);
        if let Some(dense) = counts.and_then(|c| c.as_dense()) {
            for (o, &n) in out.iter_mut().zip(nodes) {
                let i = n as usize;
                *o = c.score(tid[i], zid[i], dense.get(i).copied().unwrap_or(0), skew);
            }
            // The pod's own node, if it is placed there, counts one fewer.
            if let Some(k) = c.own_node.and_then(|own| nodes.binary_search(&own).ok()) {
                let i = nodes[k] as usize;
                let count = c.counted(nodes[k], dense.get(i).copied().unwrap_or(0));
                out[k] = c.score(tid[i], zid[i], count, skew);
            }
            return;
        }
        // Most nodes hold none of the app's executors: their score is a function
        // of type and zone alone, one table lookup per node.
        let (by_zone_type, types) = empty_node_scores(c, t, skew);
        let len = tid.len().min(zid.len());
        let (tid, zid) = (&tid[..len], &zid[..len]);
        for (o, &n) in out.iter_mut().zip(nodes) {
            let i = n as usize;
            *o = by_zone_type[zid[i] as usize * types + tid[i] as usize];
        }
        // Few nodes hold executors here (the map form): patch them. `nodes` is in
        // ascending order (the cycle's contract), so each is found by bisection.
        debug_assert!(nodes.is_sorted());
        for (n, on_node) in counts.iter().flat_map(|c| c.iter()) {
            if let Ok(k) = nodes.binary_search(&n) {
                let i = n as usize;
                out[k] = c.score(tid[i], zid[i], c.counted(n, on_node), skew);
            }
        }
    }

    /// `score_nodes` over slots: the same two forms, every slot scored.
    fn score_slots(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        _: &[NodeIdx],
        first: usize,
        out: &mut [i64],
    ) -> bool {
        let Some(c) = state.read::<SpreadCycle>() else {
            out.fill(0);
            return true;
        };
        let t = snap.nodes();
        let slots = first..first.saturating_add(out.len());
        let (Some(tid), Some(zid)) = (t.type_id.get(slots.clone()), t.zone_id.get(slots.clone()))
        else {
            return false;
        };
        let skew = self.config.spark.executor_spread.node_max_skew;
        let counts = app_counts(snap, pod);
        let (by_zone_type, types) = empty_node_scores(c, t, skew);
        // Ids (of live and removed nodes alike) are below their tables'
        // lengths: the id tables only grow.
        let lookup = |ty: u32, zone: u32| {
            let k = (zone as usize)
                .saturating_mul(types)
                .saturating_add(ty as usize);
            by_zone_type.get(k).copied().unwrap_or(0)
        };
        let len = out.len();
        let at = |n: NodeIdx| (n as usize).checked_sub(first).filter(|&k| k < len);
        if let Some(dense) = counts.and_then(|c| c.as_dense()) {
            // The counts may end before the table's last slot: none past their end.
            let dense = dense.get(first..).unwrap_or(&[]);
            for (k, (o, (&ty, &zone))) in out.iter_mut().zip(tid.iter().zip(zid)).enumerate() {
                *o = match dense.get(k) {
                    Some(&n) if n > 0 => c.score(ty, zone, n, skew),
                    _ => lookup(ty, zone),
                };
            }
            // The pod's own node, if it is placed there, counts one fewer.
            if let Some((own, k)) = c.own_node.and_then(|own| Some((own, at(own)?))) {
                let count = c.counted(own, dense.get(k).copied().unwrap_or(0));
                out[k] = c.score(tid[k], zid[k], count, skew);
            }
            return true;
        }
        for (o, (&ty, &zone)) in out.iter_mut().zip(tid.iter().zip(zid)) {
            *o = lookup(ty, zone);
        }
        // The few nodes holding executors (the pod's own counting one fewer).
        for (n, on_node) in counts.iter().flat_map(|c| c.iter()) {
            if let Some(k) = at(n) {
                out[k] = c.score(tid[k], zid[k], c.counted(n, on_node), skew);
            }
        }
        true
    }

    fn normalization(&self) -> Normalization {
        Normalization::None
    }

    /// A node's score is a function of its type and zone ids and the app's
    /// executors on it (`SpreadCycle::score`), PreScore having worked out the
    /// tables from the feasible nodes; with the pod not placed, none is its own.
    fn scores_by_class(&self, state: &CycleState, _: &Pod) -> bool {
        state
            .read::<SpreadCycle>()
            .is_none_or(|c| c.own_node.is_none())
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
            // Up to 48 nodes, so the app's counts take both forms (a map below one node in 8).
            nodes in proptest::collection::vec((proptest::option::of(0u8..3), 0u8..3), 1..48),
            executors in proptest::collection::vec((0usize..48, 0u8..4), 0..40),
            feasible_mask in proptest::collection::vec(proptest::bool::weighted(0.8), 48),
            with_mix in proptest::bool::ANY,
            placed_self in proptest::option::of(0usize..48),
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
