//! Score totals kept between cycles, with the best node of each class of nodes.
//!
//! A Spark application's executors are alike and come back to back: between two
//! of them only the node that took the last one changed, yet summing every
//! plugin's score over every node costs a pass per plugin. When each active
//! score plugin either keeps node scores (`ScorePlugin::keeps_node_scores`: the
//! resource scorers, TaintToleration, NodeAffinity), scores by class
//! (`ScorePlugin::scores_by_class`: CapacityMix and ExecutorSpread read only a
//! node's capacity type, zone and the application's executors there) or gives
//! every node one score (`ScorePlugin::uniform_score`), a feasible node's total is
//!
//! ```text
//! total(n) = uniform + local(n) + by_class(class(n))
//! ```
//!
//! Each node's local score is kept with its `NodeTable::stamp`, and the feasible
//! nodes are kept in groups by class, each group knowing its best member
//! (highest local score, ties to the lower name rank). A cycle re-examines only
//! the nodes whose stamp changed, scores one node per class for the class
//! plugins, and compares the groups' best members. Within a group the class part
//! is common, so its best member by local score is its best by total: the node
//! and total found are exactly those of summing every node, tie-break included.
//!
//! Plugins normalized by the highest raw score (`Normalization::ByMaximum`) keep
//! raw scores per node and a count of each raw value among the feasible nodes;
//! when the highest changes, every member's local score is worked out again.
//! Feasibility is kept on the same terms as `kept_verdicts`: every active filter
//! must promise that an unchanged node keeps its verdict for this pod.

use super::{kept_verdicts, weighted};
use crate::framework::{CycleState, FilterPlugin, ScorePlugin};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};
use std::collections::BTreeMap;
use std::sync::Mutex;

const NONE: u32 = u32::MAX;

/// The pod, in a row of alike pods, whose cycle builds the groups: building
/// costs about two passes of summing and selecting, so it pays from the third
/// pod on (an application's executors come by the hundred; pods of other
/// workloads are mostly unlike their neighbours, or alike in pairs).
const BUILD_AFTER: u32 = 3;

/// What the class-scoring plugins may read of a node: its capacity type id,
/// zone id, and how many of the pod's application's counted executors it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeClass {
    type_id: u32,
    zone_id: u32,
    executors: u32,
}

#[derive(Default)]
pub(crate) struct KeptTotals {
    kept: Mutex<Totals>,
}

/// A plugin whose scores are kept per node: its weight, and whether normalize
/// maps raw scores by the highest one (`Normalization::ByMaximum`) or leaves
/// them alone.
pub(crate) type LocalPlugin<'a> = (&'a dyn ScorePlugin, i64, bool);

/// The plugins and inputs of one cycle's scoring.
pub(crate) struct Scoring<'a> {
    pub filters: &'a [&'a dyn FilterPlugin],
    pub state: &'a CycleState,
    pub pod: &'a Pod,
    pub snap: &'a Snapshot,
    /// Ascending.
    pub feasible: &'a [NodeIdx],
    pub local: &'a [LocalPlugin<'a>],
    pub by_class: &'a [(&'a dyn ScorePlugin, i64)],
    /// The weighted uniform scores, added to every total.
    pub offset: i64,
}

#[derive(Default)]
struct Totals {
    /// The pod the entries were made for, the active filters and the local
    /// plugins (name, weight, normalized by maximum).
    pod: Option<Pod>,
    filters: Vec<&'static str>,
    local: Vec<(&'static str, i64, bool)>,
    /// The entries were made for another pod: drop them before use.
    stale: bool,
    /// Pods like `pod` in a row, while `stale`.
    alike: u32,
    /// Per node slot: the stamp its entry was made at (0: none, or a dead slot).
    stamps: Vec<u64>,
    /// Per node slot: its group (NONE: not feasible, or dead) and position there.
    group_of: Vec<u32>,
    pos: Vec<u32>,
    /// Per node slot: the weighted scores of the local plugins that leave scores
    /// alone, summed.
    plain: Vec<i64>,
    /// Per plugin normalized by maximum: raw scores per node slot, how many
    /// feasible nodes have each raw score, and the highest raw score the local
    /// scores were worked out with.
    by_max: Vec<ByMax>,
    groups: Vec<Group>,
    /// Group by class: `by_type_zone[type_id · zones + zone_id][executors]`.
    by_type_zone: Vec<Vec<u32>>,
    zones: usize,
    /// Reused buffers.
    changed: Vec<NodeIdx>,
    scored: Vec<NodeIdx>,
    locals: Vec<i64>,
    column: Vec<i64>,
}

#[derive(Default)]
struct ByMax {
    raw: Vec<i64>,
    counts: BTreeMap<i64, u32>,
    used_max: i64,
}

impl ByMax {
    fn highest(&self) -> i64 {
        self.counts.last_key_value().map_or(0, |(&v, _)| v)
    }

    fn count(&mut self, raw: i64, add: bool) {
        if add {
            *self.counts.entry(raw).or_default() += 1;
        } else if let Some(c) = self.counts.get_mut(&raw) {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(&raw);
            }
        }
    }
}

struct Group {
    class: NodeClass,
    nodes: Vec<NodeIdx>,
    /// The members' local scores, beside `nodes`.
    locals: Vec<i64>,
    /// Position of the best member; None when it must be looked for again (or
    /// the group is empty).
    best: Option<usize>,
}

/// Whether member `a` (local score, name rank) beats member `b`.
#[inline]
fn beats(a: (i64, u32), b: (i64, u32)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

impl Group {
    fn best_member(&mut self, rank: &[u32]) -> Option<usize> {
        if self.best.is_none() && !self.nodes.is_empty() {
            let mut best = 0usize;
            let mut best_local = self.locals[0];
            for (k, &v) in self.locals.iter().enumerate().skip(1) {
                // `beats`, with the ranks read only for ties (they are rare).
                if v > best_local
                    || (v == best_local
                        && rank[self.nodes[k] as usize] < rank[self.nodes[best] as usize])
                {
                    (best, best_local) = (k, v);
                }
            }
            self.best = Some(best);
        }
        self.best
    }
}

impl KeptTotals {
    /// The best feasible node and its total, as summing every node's scores
    /// finds them. `None` when totals cannot be kept for this cycle (a filter
    /// cannot keep its verdicts, another thread holds them, the pod differs
    /// from the last one, or no group holds a node): the caller sums afresh.
    /// The caller has checked that every active score plugin is uniform, kept
    /// per node or scored by class for this pod, and that the pod is not placed.
    pub(crate) fn best(&self, s: &Scoring) -> Option<(NodeIdx, i64)> {
        // Feasibility is kept only where verdicts could be (nominated pods,
        // for one, make them depend on more than the node).
        if !kept_verdicts::keepable(s.filters, s.state, s.pod, s.snap) {
            return None;
        }
        let Ok(mut guard) = self.kept.try_lock() else {
            return None;
        };
        let kept = &mut *guard;
        let t = s.snap.nodes();
        let slots = t.stamp.len();
        if !kept.reusable(s) {
            // A pod unlike the last one: building the groups costs more than a
            // pass per plugin, and pays only when more pods like it follow.
            // Remember it and sum afresh.
            kept.reset(s);
            return None;
        }
        let build = kept.stale;
        if build {
            kept.alike += 1;
            if kept.alike < BUILD_AFTER {
                return None;
            }
            kept.clear(s);
        }
        if kept.stamps.len() < slots {
            kept.stamps.resize(slots, 0);
            kept.group_of.resize(slots, NONE);
            kept.pos.resize(slots, 0);
            kept.plain.resize(slots, 0);
            for m in &mut kept.by_max {
                m.raw.resize(slots, 0);
            }
        }
        let zones = t.zone_ids.table_len();
        let type_zones = t.type_ids.table_len() * zones;
        if zones != kept.zones || type_zones > kept.by_type_zone.len() {
            kept.reindex(zones, type_zones);
        }
        if build {
            kept.build_entries(s);
        } else {
            kept.update_entries(s);
        }
        let scored = std::mem::take(&mut kept.scored);
        kept.score_raw(s, &scored);
        if kept.by_max.iter().any(|m| m.highest() != m.used_max) {
            kept.rescore_members(s);
        }
        if !scored.is_empty() {
            kept.local_scores(s, &scored);
            let counts = s
                .pod
                .spark
                .as_ref()
                .and_then(|sp| s.snap.app(sp.app))
                .map(|a| &a.executors_by_node);
            for (k, &n) in scored.iter().enumerate() {
                let i = n as usize;
                let class = NodeClass {
                    type_id: t.type_id[i],
                    zone_id: t.zone_id[i],
                    executors: counts.map_or(0, |c| c.get(n)),
                };
                let local = kept.locals[k];
                kept.insert(n, class, local, &t.name_rank);
            }
        }
        kept.scored = scored;
        kept.select(s)
    }
}

impl Totals {
    /// Entries for every node: the feasible ones are all to be scored.
    fn build_entries(&mut self, s: &Scoring) {
        let now = &s.snap.nodes().stamp;
        self.stamps[..now.len()].copy_from_slice(now);
        self.stamps[now.len()..].fill(0);
        self.scored.clear();
        self.scored.extend_from_slice(s.feasible);
    }

    /// Drops the entries of the nodes whose state changed since they were made
    /// (a dead slot has stamp 0, and so have slots past this table's end: the
    /// entries may come from a larger clone of this snapshot); the feasible
    /// ones among them are to be scored.
    fn update_entries(&mut self, s: &Scoring) {
        let now = &s.snap.nodes().stamp;
        let mut changed = std::mem::take(&mut self.changed);
        changed.clear();
        super::changed_slots(&self.stamps, now, &mut changed);
        self.scored.clear();
        // Which changed nodes are feasible: by bisection when few changed, in one
        // merge of the two ascending lists otherwise.
        let bisect = changed.len() * 16 < s.feasible.len();
        let mut f = s.feasible.iter().copied().peekable();
        for &n in &changed {
            self.remove(n);
            self.stamps[n as usize] = now.get(n as usize).copied().unwrap_or(0);
            let feasible = if bisect {
                s.feasible.binary_search(&n).is_ok()
            } else {
                while f.next_if(|&m| m < n).is_some() {}
                f.peek() == Some(&n)
            };
            if feasible {
                self.scored.push(n);
            }
        }
        self.changed = changed;
    }

    /// Whether the entries hold for `s.pod`: the same filters, each keeping
    /// its verdicts from the kept pod to this one; the same local plugins and
    /// weights, each keeping its node scores; the same application (classes
    /// count its executors).
    fn reusable(&self, s: &Scoring) -> bool {
        let Some(kept) = &self.pod else {
            return false;
        };
        let app = |p: &Pod| p.spark.as_ref().map(|sp| sp.app);
        app(kept) == app(s.pod)
            && kept_verdicts::carry_over(&self.filters, kept, s.filters, s.state, s.pod, s.snap)
            && self.local.len() == s.local.len()
            && self
                .local
                .iter()
                .zip(s.local)
                .all(|(&(name, w, m), &(p, pw, pm))| name == p.name() && w == pw && m == pm)
            && s.local
                .iter()
                .all(|(p, _, _)| p.keeps_node_scores(s.state, kept, s.pod))
    }

    /// Remembers the pod and its plugins; the entries are dropped when a pod
    /// like it comes (`clear`), so that unlike pods in a row cost little.
    fn reset(&mut self, s: &Scoring) {
        self.alike = 1;
        self.pod = Some(s.pod.clone());
        self.filters = s.filters.iter().map(|f| f.name()).collect();
        self.local = s.local.iter().map(|&(p, w, m)| (p.name(), w, m)).collect();
        self.stale = true;
    }

    fn clear(&mut self, s: &Scoring) {
        self.stale = false;
        self.stamps.fill(0);
        self.group_of.fill(NONE);
        self.groups.clear();
        self.by_type_zone.clear();
        let slots = self.stamps.len();
        self.by_max = s
            .local
            .iter()
            .filter(|l| l.2)
            .map(|_| ByMax {
                raw: vec![0; slots],
                ..ByMax::default()
            })
            .collect();
    }

    /// Rebuilds the class index for new type or zone tables.
    fn reindex(&mut self, zones: usize, type_zones: usize) {
        self.zones = zones;
        self.by_type_zone.clear();
        self.by_type_zone.resize(type_zones, Vec::new());
        for g in 0..self.groups.len() {
            let class = self.groups[g].class;
            *self.index_entry(class) = g as u32;
        }
    }

    fn index_entry(&mut self, class: NodeClass) -> &mut u32 {
        let tz = class.type_id as usize * self.zones + class.zone_id as usize;
        if tz >= self.by_type_zone.len() {
            self.by_type_zone.resize(tz + 1, Vec::new());
        }
        let by_count = &mut self.by_type_zone[tz];
        let e = class.executors as usize;
        if by_count.len() <= e {
            by_count.resize(e + 1, NONE);
        }
        &mut by_count[e]
    }

    fn group_for(&mut self, class: NodeClass) -> usize {
        let next = self.groups.len() as u32;
        let entry = self.index_entry(class);
        if *entry != NONE {
            return *entry as usize;
        }
        *entry = next;
        self.groups.push(Group {
            class,
            nodes: Vec::new(),
            locals: Vec::new(),
            best: None,
        });
        next as usize
    }

    fn insert(&mut self, n: NodeIdx, class: NodeClass, local: i64, rank: &[u32]) {
        let g = self.group_for(class);
        let group = &mut self.groups[g];
        let at = group.nodes.len();
        match group.best {
            // Empty: the newcomer is the best.
            None if at == 0 => group.best = Some(at),
            Some(b)
                if beats(
                    (local, rank[n as usize]),
                    (group.locals[b], rank[group.nodes[b] as usize]),
                ) =>
            {
                group.best = Some(at)
            }
            _ => {}
        }
        group.nodes.push(n);
        group.locals.push(local);
        self.group_of[n as usize] = g as u32;
        self.pos[n as usize] = at as u32;
    }

    fn remove(&mut self, n: NodeIdx) {
        let i = n as usize;
        let g = self.group_of[i];
        if g == NONE {
            return;
        }
        self.group_of[i] = NONE;
        for m in &mut self.by_max {
            let raw = m.raw[i];
            m.count(raw, false);
        }
        let group = &mut self.groups[g as usize];
        let at = self.pos[i] as usize;
        let last = group.nodes.len() - 1;
        group.nodes.swap_remove(at);
        group.locals.swap_remove(at);
        if at < last {
            self.pos[group.nodes[at] as usize] = at as u32;
        }
        group.best = match group.best {
            Some(b) if b == at => None,
            Some(b) if b == last => Some(at),
            other => other,
        };
    }

    /// Scores `nodes` with every local plugin: the weighted sum of those that
    /// leave scores alone into `plain`, raw scores of the others into `by_max`,
    /// counted there (the nodes are about to join groups, and the highest raw
    /// score must count them before any local score is worked out).
    fn score_raw(&mut self, s: &Scoring, nodes: &[NodeIdx]) {
        if nodes.is_empty() {
            return;
        }
        for &n in nodes {
            self.plain[n as usize] = 0;
        }
        let mut m = 0;
        for &(p, w, by_max) in s.local {
            self.column.clear();
            self.column.resize(nodes.len(), 0);
            p.score_nodes(s.state, s.pod, s.snap, nodes, &mut self.column);
            if by_max {
                let kept = &mut self.by_max[m];
                for (&n, &v) in nodes.iter().zip(&self.column) {
                    kept.raw[n as usize] = v;
                    kept.count(v, true);
                }
                m += 1;
            } else {
                for (&n, &v) in nodes.iter().zip(&self.column) {
                    self.plain[n as usize] += weighted(v, w);
                }
            }
        }
    }

    /// Local scores of `nodes` (already scored by `score_raw`) into `locals`,
    /// with the current highest raw score of each plugin normalized by it.
    fn local_scores(&mut self, s: &Scoring, nodes: &[NodeIdx]) {
        self.locals.clear();
        self.locals
            .extend(nodes.iter().map(|&n| self.plain[n as usize]));
        let mut m = 0;
        for &(p, w, by_max) in s.local {
            if !by_max {
                continue;
            }
            let kept = &self.by_max[m];
            m += 1;
            // The highest raw score joins the column, so normalize sees it.
            self.column.clear();
            self.column
                .extend(nodes.iter().map(|&n| kept.raw[n as usize]));
            self.column.push(kept.highest());
            p.normalize(s.state, s.pod, &mut self.column);
            for (l, &v) in self.locals.iter_mut().zip(&self.column) {
                *l += weighted(v, w);
            }
        }
    }

    /// A plugin's highest raw score changed: every member's local score again.
    fn rescore_members(&mut self, s: &Scoring) {
        for m in &mut self.by_max {
            m.used_max = m.highest();
        }
        for g in 0..self.groups.len() {
            if self.groups[g].nodes.is_empty() {
                continue;
            }
            let nodes = std::mem::take(&mut self.groups[g].nodes);
            self.local_scores(s, &nodes);
            let group = &mut self.groups[g];
            group.nodes = nodes;
            group.locals.clone_from(&self.locals);
            group.best = None;
        }
    }

    /// Scores one node per non-empty group for the class plugins and returns
    /// the best group's best node with its total.
    fn select(&mut self, s: &Scoring) -> Option<(NodeIdx, i64)> {
        let rank = &s.snap.nodes().name_rank;
        // (representative node, its local score), ascending by node as score
        // plugins expect.
        let mut reps: Vec<(NodeIdx, i64)> = Vec::with_capacity(self.groups.len());
        for group in &mut self.groups {
            if let Some(b) = group.best_member(rank) {
                reps.push((group.nodes[b], group.locals[b]));
            }
        }
        if reps.is_empty() {
            return None;
        }
        reps.sort_unstable();
        let nodes: Vec<NodeIdx> = reps.iter().map(|r| r.0).collect();
        let mut totals: Vec<i64> = reps.iter().map(|r| s.offset + r.1).collect();
        let mut column = vec![0i64; nodes.len()];
        for &(p, w) in s.by_class {
            p.score_nodes(s.state, s.pod, s.snap, &nodes, &mut column);
            for (t, &v) in totals.iter_mut().zip(&column) {
                *t += weighted(v, w);
            }
        }
        let mut best = 0usize;
        for k in 1..nodes.len() {
            let (a, b) = (nodes[k] as usize, nodes[best] as usize);
            if beats((totals[k], rank[a]), (totals[best], rank[b])) {
                best = k;
            }
        }
        Some((nodes[best], totals[best]))
    }
}
