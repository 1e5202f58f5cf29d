//! One trait per extension point, as in kube-scheduler's framework.
//! Plugins are pure functions of (cycle state, pod, snapshot): no I/O.

use super::{CycleState, NodeStatuses, Status};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};
use std::sync::Arc;

pub const MAX_NODE_SCORE: i64 = 100;

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
}

/// Runs once per cycle before filtering; may compute state or reject the pod outright.
/// `Skip` means the plugin's Filter is not needed for this pod.
pub trait PreFilterPlugin: Plugin {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snap: &Snapshot) -> Status;
}

/// Decides whether `node` can run `pod`.
pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status;

    /// Can this plugin's answer for `pod` change when pods are added to or removed
    /// from nodes? `false` promises that its Filter status on every node, and what
    /// its PreFilter decides (including Skip), stay the same whatever is placed,
    /// so preemption may work out victims without touching the snapshot.
    /// `state` is as the PreFilters left it. The default is the safe answer.
    fn depends_on_placed_pods(&self, _state: &CycleState, _pod: &Pod) -> bool {
        true
    }

    /// Whether this Filter gives `pod`, on every node whose state is unchanged
    /// (same `NodeTable::stamp`), the verdict it gave `kept` there: true when it
    /// reads nothing but that node's own object and pods and fields of the pod
    /// that are equal in `kept` and `pod` (`state` is `pod`'s, as the PreFilters
    /// left it). The cycle then keeps verdicts between the executors of one
    /// application (`framework::cycle::kept_verdicts`). The default, false, is
    /// always safe.
    fn keeps_verdicts(
        &self,
        _state: &CycleState,
        _kept: &Pod,
        _pod: &Pod,
        _snap: &Snapshot,
    ) -> bool {
        false
    }

    /// The cycle's batch form of [`filter`](Self::filter): keeps in `nodes` (in
    /// order) those that pass and appends the others to `rejected`. `Err` aborts
    /// the cycle (`Code::Error`).
    ///
    /// The cycle asks `filter` for a rejected node's `Status` only when it is shown
    /// (no node fits, or `explain`), so an override must reject exactly the nodes
    /// `filter` rejects. The default calls `filter` per node; plugins override it
    /// with a scan over the snapshot's node columns.
    fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &mut Vec<NodeIdx>,
        rejected: &mut Vec<NodeIdx>,
    ) -> Result<(), Status> {
        let mut error = None;
        nodes.retain(|&n| {
            if error.is_some() {
                return true;
            }
            let st = self.filter(state, pod, snap, n);
            match st.code {
                super::Code::Success => true,
                super::Code::Error => {
                    error = Some(st);
                    true
                }
                _ => {
                    rejected.push(n);
                    false
                }
            }
        });
        error.map_or(Ok(()), Err)
    }

    /// The dense form of [`filter_nodes`](Self::filter_nodes), for cycles that
    /// filter every node: clears `pass[k]` for every node slot `first + k` this
    /// plugin rejects (`pass` covers all slots, `NodeTable::slots`, from `first`
    /// on, or one chunk of them in a parallel cycle), and returns true. Slots already
    /// clear and slots of deleted nodes may be left as they are. Returns false,
    /// touching nothing, when the plugin has no such form for `pod` or could
    /// fail; the cycle then calls `filter_nodes` on the nodes still passing.
    ///
    /// Scanning whole columns in slot order, with no node list to read and none
    /// to write, lets the compiler vectorize the loop. An override must reject
    /// exactly the nodes `filter` rejects.
    fn filter_slots(
        &self,
        _state: &CycleState,
        _pod: &Pod,
        _snap: &Snapshot,
        _first: usize,
        _pass: &mut [bool],
    ) -> bool {
        false
    }
}

/// A node column from slot `first` on (empty past its end): what `pass[k]` of
/// [`FilterPlugin::filter_slots`] pairs with.
#[inline]
pub fn slots_from<T>(column: &[T], first: usize) -> &[T] {
    column.get(first..).unwrap_or(&[])
}

/// Keeps the nodes for which `pass` holds and moves the others to `rejected`:
/// the body of most `filter_nodes` overrides.
#[inline]
pub fn retain_nodes(
    nodes: &mut Vec<NodeIdx>,
    rejected: &mut Vec<NodeIdx>,
    mut pass: impl FnMut(NodeIdx) -> bool,
) {
    // Both lists are written at every step and only their ends move: no branch
    // on the verdict, which is unpredictable when many nodes fail.
    let len = nodes.len();
    let base = rejected.len();
    rejected.resize(base + len, 0);
    let (mut kept, mut out) = (0usize, base);
    for r in 0..len {
        let n = nodes[r];
        let ok = pass(n);
        nodes[kept] = n;
        rejected[out] = n;
        kept += usize::from(ok);
        out += usize::from(!ok);
    }
    nodes.truncate(kept);
    rejected.truncate(out);
}

/// What PostFilter (preemption) proposes when no node passed.
#[derive(Debug, Clone, PartialEq)]
pub struct PostFilterResult {
    pub status: Status,
    pub nomination: Option<Nomination>,
    /// Preemption looked for a node and found none: a nomination the pod holds
    /// from an earlier preemption is dropped, in the snapshot and in
    /// `status.nominatedNodeName` (upstream's NominatingInfo with an empty node
    /// name). False when preemption did not look (e.g. the pod is waiting for
    /// earlier victims to leave).
    pub clears_nomination: bool,
}

/// Run the pod on `node` once `victims` are gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Nomination {
    pub node: NodeIdx,
    pub victims: Vec<Arc<Pod>>,
}

/// Runs a profile's PreFilter and Filter plugins for one pod, so PostFilter
/// (preemption) can ask "would the pod fit on this node if these pods were gone?".
pub struct FilterRunner<'a> {
    pub pre_filters: &'a [Arc<dyn PreFilterPlugin>],
    pub filters: &'a [Arc<dyn FilterPlugin>],
}

impl FilterRunner<'_> {
    /// Runs every PreFilter; `Err` carries the rejection.
    pub fn prepare(&self, pod: &Pod, snap: &Snapshot) -> Result<CycleState, Status> {
        let mut state = CycleState::default();
        for p in self.pre_filters {
            let st = p.pre_filter(&mut state, pod, snap);
            match st.code {
                super::Code::Success => {}
                super::Code::Skip => state.mark_skip_filter(p.name()),
                _ => return Err(st),
            }
        }
        Ok(state)
    }

    /// Runs the filters on one node with a prepared state; the first failure wins.
    pub fn filter(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        for f in self.filters {
            if state.skips_filter(f.name()) {
                continue;
            }
            let st = f.filter(state, pod, snap, node);
            if !st.is_success() {
                return st;
            }
        }
        Status::success()
    }

    /// Whether, for `pod` with `state` from [`Self::prepare`], placed pods matter to
    /// no plugin but `except`: every filter other than `except` says so, and every
    /// PreFilter belongs to one of the filters (so its promise covers it).
    pub fn placed_pods_matter_only_to(&self, state: &CycleState, pod: &Pod, except: &str) -> bool {
        let filter_named = |name: &str| self.filters.iter().any(|f| f.name() == name);
        self.pre_filters.iter().all(|p| filter_named(p.name()))
            && self
                .filters
                .iter()
                .all(|f| f.name() == except || !f.depends_on_placed_pods(state, pod))
    }

    /// PreFilter then Filter on one node, against the snapshot as it is now.
    pub fn check(&self, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        match self.prepare(pod, snap) {
            Ok(state) => self.filter(&state, pod, snap, node),
            Err(st) => st,
        }
    }
}

/// PostFilter may change the snapshot to try things out (remove victims, re-run
/// filters) but must leave it exactly as it found it.
pub trait PostFilterPlugin: Plugin {
    fn post_filter(
        &self,
        pod: &Pod,
        snap: &mut Snapshot,
        statuses: &NodeStatuses,
        filters: &FilterRunner,
    ) -> PostFilterResult;
}

pub trait PreScorePlugin: Plugin {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &Snapshot,
        feasible: &[NodeIdx],
    ) -> Status;
}

pub trait ScorePlugin: Plugin {
    fn score(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64;

    /// The cycle's batch form of [`score`](Self::score): `out[k]` is the raw score
    /// of `nodes[k]` and must equal `score` for that node. The default calls `score`
    /// per node; plugins override it with a scan over the snapshot's node columns.
    /// The cycle passes `nodes` in ascending order (feasible nodes always are), so
    /// an override may find a node in them by bisection.
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &[NodeIdx],
        out: &mut [i64],
    ) {
        for (o, &n) in out.iter_mut().zip(nodes) {
            *o = self.score(state, pod, snap, n);
        }
    }

    /// The normalized score every feasible node gets, when the plugin can tell
    /// without looking at them (e.g. no node has anything it scores): the cycle
    /// then adds it to every total instead of scoring node by node. It must be
    /// what [`score_nodes`](Self::score_nodes) and [`normalize`](Self::normalize)
    /// give each node. Called after PreScore. The default: `None`.
    fn uniform_score(&self, _state: &CycleState, _pod: &Pod, _snap: &Snapshot) -> Option<i64> {
        None
    }

    /// Whether `score_nodes`, for this pod in this cycle, costs about the same
    /// for any part of `feasible` as for all of it: it scores every node slot
    /// at once (a vector kernel) and picks the asked nodes' scores after. The
    /// bounded selection (`framework::cycle::bounded`) then saves nothing by
    /// leaving nodes unscored, and scoring every node is faster. Called after
    /// PreScore. The default, false, keeps the bounded selection.
    fn scores_every_slot(
        &self,
        _state: &CycleState,
        _pod: &Pod,
        _snap: &Snapshot,
        _feasible: &[NodeIdx],
    ) -> bool {
        false
    }

    /// The slot form of [`score_nodes`](Self::score_nodes), for cycles that
    /// score every feasible node: writes into `out[k]` the raw score of node
    /// slot `first + k`, for every slot of `out` whose node is in `feasible`
    /// (ascending, all within those slots), equal to what `score_nodes` gives
    /// it; other slots may get any value. Returns false (`out` unspecified)
    /// when the plugin has no such form for `pod` in this cycle; the cycle then
    /// scores the feasible list. Asked only of plugins whose `normalization`
    /// is `None`.
    ///
    /// Scores laid out by slot are summed by slot with the infeasible slots
    /// masked: nothing is gathered into feasible-list order (those gathers
    /// took 12–15% of an every-node decision, `benches/README.md`). The
    /// default: false.
    fn score_slots(
        &self,
        _state: &CycleState,
        _pod: &Pod,
        _snap: &Snapshot,
        _feasible: &[NodeIdx],
        _first: usize,
        _out: &mut [i64],
    ) -> bool {
        false
    }

    /// Maps raw scores (one per feasible node, in order) into 0..=MAX_NODE_SCORE.
    /// The default leaves scores that are already in range alone.
    fn normalize(&self, _state: &CycleState, _pod: &Pod, _scores: &mut [i64]) {}

    /// How `normalize` treats raw scores, for scores kept between cycles
    /// (`framework::cycle::kept_totals`). The default, `Other`, is always safe.
    fn normalization(&self) -> Normalization {
        Normalization::Other
    }

    /// Whether this plugin's raw score of a node, for `pod`, is the one it gave
    /// `kept` there as long as the node's state is unchanged (same
    /// `NodeTable::stamp`): true when the score reads nothing but that node's own
    /// object and pods and fields of the pod that are equal in `kept` and `pod`.
    /// `state` is `pod`'s, after PreScore. With a `normalization` other than
    /// `Other`, the cycle then keeps each node's score between the executors of
    /// one application (`framework::cycle::kept_totals`). The default, false, is
    /// always safe.
    fn keeps_node_scores(&self, _state: &CycleState, _kept: &Pod, _pod: &Pod) -> bool {
        false
    }

    /// Whether this plugin's raw score of every feasible node is a function of
    /// the node's class alone (given what its PreScore computed from the
    /// feasible nodes): its capacity type id, zone id, and the number of `pod`'s
    /// application's counted executors placed on it. With `normalization`
    /// `None`, any one node of a class then stands for all of them, and the cycle
    /// scores one node per class (`framework::cycle::kept_totals`). Asked only
    /// for pods not placed in the snapshot, after PreScore. The default, false,
    /// is always safe.
    fn scores_by_class(&self, _state: &CycleState, _pod: &Pod) -> bool {
        false
    }
}

/// How a score plugin's `normalize` treats raw scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// It leaves every score alone (out-of-range scores are clamped when weighed).
    None,
    /// It maps each score by a function of that score and of the highest score
    /// among the nodes alone, as upstream's `DefaultNormalizeScore` does.
    ByMaximum,
    /// Anything else.
    Other,
}

/// Reserve runs when a node is chosen, before binding; Unreserve undoes it on
/// failure. Reserve may record in the snapshot what the pod takes beyond its
/// node (VolumeBinding assumes the volumes it chose), so the next cycles see it.
pub trait ReservePlugin: Plugin {
    fn reserve(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &mut Snapshot,
        node: NodeIdx,
    ) -> Status;
    fn unreserve(&self, state: &mut CycleState, pod: &Pod, snap: &mut Snapshot, node: NodeIdx);
}

#[derive(Debug, Clone, PartialEq)]
pub enum PermitDecision {
    Allow,
    /// Hold the pod for at most this many milliseconds.
    Wait(u64),
    Reject(Status),
}

pub trait PermitPlugin: Plugin {
    fn permit(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        node: NodeIdx,
    ) -> PermitDecision;
}

/// Carries out a binding. The live scheduler binds through the API server; the
/// simulator confirms the assumed pod in its snapshot.
pub trait BindPlugin: Plugin {
    fn bind(&self, pod: &Pod, node: &str) -> Status;
}

/// Helpers for normalize implementations, as upstream's `helper.DefaultNormalizeScore`.
pub fn default_normalize(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max_priority);
        }
        return;
    }
    let normalized = |s: i64| {
        let v = max_priority * s / max;
        if reverse {
            max_priority - v
        } else {
            v
        }
    };
    // Raw scores here are small counts (taints, preferred-term weights): a table
    // over 0..=max spares a division per node.
    if max <= 1024 {
        let table: Vec<i64> = (0..=max).map(normalized).collect();
        for s in scores.iter_mut() {
            *s = match table.get(*s as usize) {
                Some(&v) if *s >= 0 => v,
                _ => normalized(*s),
            };
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = normalized(*s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_normalize_table() {
        let mut s = [10, 20, 0];
        default_normalize(100, false, &mut s);
        assert_eq!(s, [50, 100, 0]);
        let mut s = [10, 20, 0];
        default_normalize(100, true, &mut s);
        assert_eq!(s, [50, 0, 100]);
        let mut s = [0, 0];
        default_normalize(100, true, &mut s);
        assert_eq!(s, [100, 100]);
        let mut s = [0, 0];
        default_normalize(100, false, &mut s);
        assert_eq!(s, [0, 0]);
    }

    proptest::proptest! {
        /// The table taken for small maxima gives what the division gives.
        #[test]
        fn default_normalize_is_the_division(
            scores in proptest::collection::vec(-5i64..3_000, 1..40),
            reverse in proptest::bool::ANY,
        ) {
            let max = scores.iter().copied().max().unwrap_or(0);
            let mut got = scores.clone();
            default_normalize(100, reverse, &mut got);
            let want: Vec<i64> = scores
                .iter()
                .map(|&s| match (max, reverse) {
                    (0, true) => 100,
                    (0, false) => s,
                    (_, true) => 100 - 100 * s / max,
                    (_, false) => 100 * s / max,
                })
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
