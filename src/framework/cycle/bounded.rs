//! Exact selection that scores only the nodes that could win.
//!
//! When every active score plugin that does not give all nodes one score either
//! scores by class (`ScorePlugin::scores_by_class`: CapacityMix and
//! ExecutorSpread read only a node's capacity type, zone and the application's
//! executors there) or scores each node on its own and normalizes nothing (the
//! resource scorers), a feasible node's total is
//!
//! ```text
//! total(n) = offset + class(n) + local(n),   local(n) ≤ Σ max(0, weight) · MAX_NODE_SCORE
//! ```
//!
//! Classes are visited from the highest class score down. Once a class's score
//! plus that bound falls below the best total found, neither it nor any class
//! after it can hold the winner (a class that could tie is still scored, for the
//! tie-break). Within a class the local plugins score in turn: after each but
//! the last, the node ahead gets its full total, and nodes that cannot reach the
//! best even with the most the remaining plugins can add drop out. The node and
//! total are those of scoring every node. For a Spark executor the capacity mix weighs 17
//! against 1 + 1 for the resource scorers, so the nodes of the capacity type the
//! mix does not want next are never scored by them.

use super::{weighted, MAX_NODE_SCORE};
use crate::framework::{CycleState, Normalization, ScorePlugin};
use crate::model::Pod;
use crate::snapshot::{NodeCounts, NodeIdx, Snapshot};
use std::sync::Mutex;

/// Below this many feasible nodes sorting them into classes costs more than it
/// saves (callgrind, `decision_profile N 200 spark-fleet --fresh`: 60 nodes
/// 50.7 k instructions against 42.9 k scoring every node, 200 nodes 66.4 k
/// against 81.1 k). Unit tests use small clusters, so there bounds apply from one.
const MIN_FEASIBLE: usize = if cfg!(test) { 1 } else { 128 };

/// The best feasible node (highest total, ties to the lower name rank) and its
/// total, or `None` when the active plugins do not allow bounds (a plugin
/// normalizes over all nodes, none scores by class, or the pod is placed, which
/// class scoring does not allow): the caller scores every node.
#[allow(clippy::too_many_arguments)]
pub(super) fn best(
    buffers: &ClassBuffers,
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    feasible: &[NodeIdx],
    active: &[(&dyn ScorePlugin, i64)],
    uniform: &[Option<i64>],
    offset: i64,
) -> Option<(NodeIdx, i64)> {
    if feasible.len() < MIN_FEASIBLE || snap.pod_by_key(&pod.key).is_some() {
        return None;
    }
    let mut local = Vec::new();
    let mut by_class = Vec::new();
    for (&(p, w), u) in active.iter().zip(uniform) {
        if u.is_some() {
            continue;
        }
        if p.normalization() != Normalization::None {
            return None;
        }
        if p.scores_by_class(state, pod) {
            by_class.push((p, w));
        } else {
            local.push((p, w));
        }
    }
    if by_class.is_empty() {
        return None;
    }
    // Local plugins that score every node slot at once (the resource scorers'
    // vector kernel) cost the same for one class as for all: sorting the nodes
    // into classes then costs more than scoring every node (in-process
    // alternation on a Zen 3 with AVX2, `benches/README.md`).
    let every_slot =
        |&(p, _): &(&dyn ScorePlugin, i64)| p.scores_every_slot(state, pod, snap, feasible);
    if !local.is_empty() && local.iter().all(every_slot) {
        return None;
    }
    // The most each local plugin can add, and all of them together.
    let maxima: Vec<i64> = local
        .iter()
        .map(|&(_, w)| weighted(MAX_NODE_SCORE, w).max(0))
        .collect();
    let local_max: i64 = maxima.iter().sum();

    // The profile's buckets, or new ones while another thread holds them.
    let mut own = Vec::new();
    let mut guard = buffers.buckets.try_lock().ok();
    let buckets = guard.as_deref_mut().unwrap_or(&mut own);
    let classes = Classes::sort(buckets, snap, pod, feasible)?;
    let t = snap.nodes();
    let rank = &t.name_rank;

    // Each class's score, from its first node (ascending, as plugins expect).
    let reps: Vec<NodeIdx> = classes.groups.iter().map(|g| g.members[0]).collect();
    let mut class_totals = vec![offset; reps.len()];
    let mut column = vec![0i64; reps.len()];
    for &(p, w) in &by_class {
        p.score_nodes(state, pod, snap, &reps, &mut column);
        for (t, &v) in class_totals.iter_mut().zip(&column) {
            *t += weighted(v, w);
        }
    }
    let mut visit: Vec<usize> = (0..reps.len()).collect();
    visit.sort_unstable_by_key(|&g| std::cmp::Reverse(class_totals[g]));

    let largest = classes
        .groups
        .iter()
        .map(|g| g.members.len())
        .max()
        .unwrap_or(0);
    let mut cand: Vec<NodeIdx> = Vec::with_capacity(largest);
    let mut sums: Vec<i64> = Vec::with_capacity(largest);
    column.resize(largest, 0);
    let mut best = Best {
        node: None,
        total: i64::MIN,
        rank: u32::MAX,
    };
    for g in visit {
        let class_total = class_totals[g];
        if class_total + local_max < best.total {
            break;
        }
        cand.clear();
        cand.extend_from_slice(classes.groups[g].members);
        sums.clear();
        sums.resize(cand.len(), class_total);
        let mut rest = local_max;
        for (j, &(p, w)) in local.iter().enumerate() {
            rest -= maxima[j];
            let col = &mut column[..cand.len()];
            p.score_nodes(state, pod, snap, &cand, col);
            for (s, &v) in sums.iter_mut().zip(col.iter()) {
                *s += weighted(v, w);
            }
            let later = &local[j + 1..];
            if later.is_empty() || cand.is_empty() {
                break;
            }
            // The node ahead so far gets its full total, so that the nodes
            // that cannot reach it drop out before the next plugins score.
            let ahead = (0..sums.len()).max_by_key(|&k| sums[k]).unwrap_or(0);
            let mut total = sums[ahead];
            let one = [cand[ahead]];
            let mut out = [0i64];
            for &(q, wq) in later {
                q.score_nodes(state, pod, snap, &one, &mut out);
                total += weighted(out[0], wq);
            }
            best.offer(one[0], total, rank);
            retain_reaching(&mut cand, &mut sums, best.total - rest);
        }
        for (&n, &total) in cand.iter().zip(&sums) {
            best.offer(n, total, rank);
        }
    }
    best.node.map(|n| (n, best.total))
}

/// The best node so far: highest total, ties to the lower name rank.
struct Best {
    node: Option<NodeIdx>,
    total: i64,
    rank: u32,
}

impl Best {
    #[inline]
    fn offer(&mut self, n: NodeIdx, total: i64, rank: &[u32]) {
        if total >= self.total {
            let r = rank[n as usize];
            if total > self.total || r < self.rank {
                (self.node, self.total, self.rank) = (Some(n), total, r);
            }
        }
    }
}

/// The bucket of class key `k`, made if need be; `None` from `limit` on.
#[inline]
fn bucket(buckets: &mut Vec<Vec<NodeIdx>>, k: usize, limit: usize) -> Option<&mut Vec<NodeIdx>> {
    if k >= buckets.len() {
        if k >= limit {
            return None;
        }
        buckets.resize_with(k + 1, Vec::new);
    }
    buckets.get_mut(k)
}

/// Keeps the nodes (and their partial sums, beside them) whose sum is at least
/// `floor`, in order.
fn retain_reaching(nodes: &mut Vec<NodeIdx>, sums: &mut Vec<i64>, floor: i64) {
    let mut kept = 0;
    for k in 0..nodes.len() {
        let (n, s) = (nodes[k], sums[k]);
        nodes[kept] = n;
        sums[kept] = s;
        kept += usize::from(s >= floor);
    }
    nodes.truncate(kept);
    sums.truncate(kept);
}

/// Member lists by class key, kept by the profile so that their capacity
/// outlives a cycle (they hold nothing between cycles).
#[derive(Default)]
pub(crate) struct ClassBuffers {
    buckets: Mutex<Vec<Vec<NodeIdx>>>,
}

/// The feasible nodes sorted into their classes.
struct Classes<'a> {
    /// The non-empty classes, ascending by first member.
    groups: Vec<Group<'a>>,
}

struct Group<'a> {
    /// Ascending.
    members: &'a [NodeIdx],
}

impl<'a> Classes<'a> {
    /// Sorts the feasible nodes into `buckets` by class key, executors ·
    /// places + place id (`NodeTable::place_id`). `None` when the classes are
    /// too many to be worth it (a place per node, or very many executors on a
    /// node): bounds would prune little.
    fn sort(
        buckets: &'a mut Vec<Vec<NodeIdx>>,
        snap: &Snapshot,
        pod: &Pod,
        feasible: &[NodeIdx],
    ) -> Option<Classes<'a>> {
        let t = snap.nodes();
        let places = t.place_ids.table_len().max(1);
        let limit = 4 * feasible.len() + 1024;
        let counts = pod
            .spark
            .as_ref()
            .and_then(|sp| snap.app(sp.app))
            .map(|a| &a.executors_by_node);
        if buckets.iter().map(Vec::capacity).sum::<usize>() > limit {
            buckets.clear();
        }
        buckets.iter_mut().for_each(Vec::clear);
        let place = &t.place_id;
        match counts {
            Some(NodeCounts::Dense { counts, .. }) => {
                for &n in feasible {
                    let executors = counts.get(n as usize).copied().unwrap_or(0) as usize;
                    let k = executors * places + place[n as usize] as usize;
                    bucket(buckets, k, limit)?.push(n);
                }
            }
            _ => {
                for &n in feasible {
                    bucket(buckets, place[n as usize] as usize, limit)?.push(n);
                }
            }
        }
        if let Some(sparse @ NodeCounts::Sparse(_)) = counts {
            // Few nodes hold executors: move each feasible one from its place's
            // class to its own (holders in ascending order, so that class
            // stays ascending too).
            let mut held: Vec<(NodeIdx, u32)> = sparse.iter().collect();
            held.sort_unstable();
            for (h, c) in held {
                let from = place[h as usize] as usize;
                let Some(at) = buckets.get(from).and_then(|b| b.binary_search(&h).ok()) else {
                    continue;
                };
                buckets[from].remove(at);
                bucket(buckets, c as usize * places + from, limit)?.push(h);
            }
        }
        let mut groups: Vec<Group<'a>> = buckets
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| Group { members: b })
            .collect();
        // Plugins take nodes in ascending order: groups by their first node.
        groups.sort_unstable_by_key(|g| g.members[0]);
        Some(Classes { groups })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{schedule, CycleOptions};
    use crate::framework::{CycleState, Normalization, PluginSet, Profile, ScorePlugin};
    use crate::framework::{Plugin, MAX_NODE_SCORE};
    use crate::model::capacity::CapacityRules;
    use crate::model::Pod;
    use crate::snapshot::{NodeIdx, Snapshot};
    use crate::testkit::{node, pod, GI};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Scores nodes in zone `a` MAX_NODE_SCORE, others 0: a class plugin.
    struct ByZone;
    impl Plugin for ByZone {
        fn name(&self) -> &'static str {
            "ByZone"
        }
    }
    impl ScorePlugin for ByZone {
        fn score(&self, _: &CycleState, _: &Pod, snap: &Snapshot, n: NodeIdx) -> i64 {
            let zone = snap.nodes().zone[n as usize].map(|z| z.as_str());
            if zone == Some("a") {
                MAX_NODE_SCORE
            } else {
                0
            }
        }
        fn normalization(&self) -> Normalization {
            Normalization::None
        }
        fn scores_by_class(&self, _: &CycleState, _: &Pod) -> bool {
            true
        }
    }

    /// Scores a node by the number ending its name, counting the nodes scored.
    #[derive(Default)]
    struct ByName {
        scored: AtomicUsize,
        /// What it answers to `scores_every_slot`.
        every_slot: bool,
    }
    impl Plugin for ByName {
        fn name(&self) -> &'static str {
            "ByName"
        }
    }
    impl ScorePlugin for ByName {
        fn score(&self, _: &CycleState, _: &Pod, snap: &Snapshot, n: NodeIdx) -> i64 {
            self.scored.fetch_add(1, Ordering::Relaxed);
            let name = snap.nodes().name_str[n as usize];
            let digits = name.trim_start_matches(|c: char| !c.is_ascii_digit());
            digits.parse().unwrap_or(0)
        }
        fn normalization(&self) -> Normalization {
            Normalization::None
        }
        fn scores_every_slot(&self, _: &CycleState, _: &Pod, _: &Snapshot, _: &[NodeIdx]) -> bool {
            self.every_slot
        }
    }

    fn profile(zone_weight: i64, local: Arc<ByName>) -> Profile {
        let mut zone = PluginSet::new("ByZone");
        zone.score = Some(Arc::new(ByZone));
        let mut name = PluginSet::new("ByName");
        name.score = Some(local);
        Profile::new("bounded", vec![(zone, zone_weight), (name, 1)])
    }

    /// Scores nodes from a table by name (0 elsewhere), counting the nodes scored.
    struct Table {
        name: &'static str,
        scores: Vec<(&'static str, i64)>,
        scored: AtomicUsize,
    }
    impl Plugin for Table {
        fn name(&self) -> &'static str {
            self.name
        }
    }
    impl ScorePlugin for Table {
        fn score(&self, _: &CycleState, _: &Pod, snap: &Snapshot, n: NodeIdx) -> i64 {
            self.scored.fetch_add(1, Ordering::Relaxed);
            let name = snap.nodes().name_str[n as usize];
            let hit = self.scores.iter().find(|e| e.0 == name);
            hit.map_or(0, |e| e.1)
        }
        fn normalization(&self) -> Normalization {
            Normalization::None
        }
    }

    fn cluster(nodes: &[(&str, &str)]) -> Snapshot {
        let mut s = Snapshot::new(CapacityRules::default());
        for (name, zone) in nodes {
            s.upsert_node(node(name, 1000, GI).zone(zone).build());
        }
        s
    }

    /// Reads how many nodes a test plugin scored.
    type Counter = Box<dyn Fn() -> usize>;

    /// (chosen node's name, total, nodes the counter saw scored) with bounds,
    /// then scoring every node; `make` builds the profile afresh, with the
    /// counter to read.
    fn run_both(
        snap: &mut Snapshot,
        make: impl Fn() -> (Profile, Counter),
    ) -> [(String, i64, usize); 2] {
        let p = pod("p", 100, 0).build();
        [false, true].map(|exhaustive| {
            let (prof, scored) = make();
            let opts = CycleOptions {
                exhaustive,
                ..CycleOptions::default()
            };
            let d = schedule(&prof, &p, snap, opts);
            let chosen = d.node.map(|n| snap.nodes().name_str[n as usize]);
            let total = d.scores.first().map_or(-1, |s| s.total);
            (chosen.unwrap_or("").to_owned(), total, scored())
        })
    }

    /// ByZone with `zone_weight` and ByName, counting what ByName scored.
    fn both_ways(zone_weight: i64, snap: &mut Snapshot) -> [(String, i64, usize); 2] {
        run_both(snap, || {
            let local = Arc::new(ByName::default());
            let prof = profile(zone_weight, local.clone());
            (prof, Box::new(move || local.scored.load(Ordering::Relaxed)))
        })
    }

    #[test]
    fn a_local_plugin_scoring_every_slot_at_once_is_asked_for_every_node() {
        let mut snap = cluster(&[("n10", "a"), ("n90", "b"), ("n20", "a"), ("n99", "b")]);
        let [bounded, every] = run_both(&mut snap, || {
            let local = Arc::new(ByName {
                every_slot: true,
                ..ByName::default()
            });
            let prof = profile(2, local.clone());
            (prof, Box::new(move || local.scored.load(Ordering::Relaxed)))
        });
        assert_eq!(every, ("n20".to_owned(), 220, 4));
        assert_eq!(bounded, every);
    }

    #[test]
    fn nodes_of_a_class_that_cannot_win_are_not_scored() {
        // Zone a's class score (2 · 100) beats zone b's (0) by more than any
        // local score (at most 100): zone b's nodes are never scored.
        let mut snap = cluster(&[("n10", "a"), ("n90", "b"), ("n20", "a"), ("n99", "b")]);
        let [bounded, every] = both_ways(2, &mut snap);
        assert_eq!(every, ("n20".to_owned(), 220, 4));
        assert_eq!(bounded, ("n20".to_owned(), 220, 2));
    }

    #[test]
    fn a_class_that_can_tie_is_scored() {
        // Zone a: 100 + 0; zone b: 0 + 100. The tie goes to the name that
        // sorts first, in the class with the lower score.
        let mut snap = cluster(&[("n0", "a"), ("n100", "b")]);
        let [bounded, every] = both_ways(1, &mut snap);
        assert_eq!(every, ("n0".to_owned(), 100, 2));
        assert_eq!(bounded, every);
        let mut snap = cluster(&[("x0", "a"), ("n100", "b")]);
        let [bounded, every] = both_ways(1, &mut snap);
        assert_eq!(every, ("n100".to_owned(), 100, 2));
        assert_eq!(bounded, every);
    }

    /// ByZone and two tables, counting what the second scored.
    fn two_tables(
        first: &[(&'static str, i64)],
        second: &[(&'static str, i64)],
        snap: &mut Snapshot,
    ) -> [(String, i64, usize); 2] {
        run_both(snap, || {
            let table = |name, scores: &[(&'static str, i64)]| {
                Arc::new(Table {
                    name,
                    scores: scores.to_vec(),
                    scored: AtomicUsize::new(0),
                })
            };
            let (a, b) = (table("First", first), table("Second", second));
            let mut sets = vec![(PluginSet::new("ByZone"), 1)];
            sets[0].0.score = Some(Arc::new(ByZone));
            for t in [&a, &b] {
                let mut set = PluginSet::new(t.name);
                set.score = Some(t.clone());
                sets.push((set, 1));
            }
            let prof = Profile::new("two-tables", sets);
            (prof, Box::new(move || b.scored.load(Ordering::Relaxed)))
        })
    }

    #[test]
    fn nodes_that_cannot_reach_the_best_skip_later_plugins() {
        // One class. After the first table, n1 is ahead and totals 200; the
        // others have at most 0 + 100 left: only n1 is scored by the second
        // table (once as the node ahead, once among the survivors).
        let mut snap = cluster(&[("n1", "a"), ("n2", "a"), ("n3", "a"), ("n4", "a")]);
        let first = [("n1", 100), ("n2", 0), ("n3", 0), ("n4", 0)];
        let second = [("n1", 100), ("n2", 100), ("n3", 100), ("n4", 100)];
        let [bounded, every] = two_tables(&first, &second, &mut snap);
        assert_eq!(every, ("n1".to_owned(), 300, 4));
        assert_eq!(bounded, ("n1".to_owned(), 300, 2));
    }

    #[test]
    fn a_node_that_can_still_tie_is_scored_to_the_end() {
        // n2 is ahead after the first table and totals 100 + 0; n1 has 0 and
        // can reach 100 with the second table: it does, and wins the tie.
        let mut snap = cluster(&[("n1", "a"), ("n2", "a")]);
        let first = [("n1", 0), ("n2", 100)];
        let second = [("n1", 100), ("n2", 0)];
        let [bounded, every] = two_tables(&first, &second, &mut snap);
        assert_eq!(every.0, "n1");
        assert_eq!((bounded.0, bounded.1), (every.0, every.1));
    }
}
