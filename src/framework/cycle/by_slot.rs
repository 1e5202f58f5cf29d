//! Scoring by node slot, for cycles that score every feasible node.
//!
//! The list form scores the feasible nodes in list order: a plugin that
//! computes every slot at once (the resource scorers' vector kernel) then
//! gathers the feasible slots' scores into list order: those gathers took
//! 12–15% of an every-node decision (measured in one process, skipping them).
//! Here every plugin writes the scores of all slots from the first feasible
//! node to the last (`ScorePlugin::score_slots`), and the sum takes no part
//! from the slots of nodes that are not feasible. The slots between feasible
//! nodes are scored and summed for nothing, so the form is used only where
//! they are few (`MIN_FEASIBLE_PERCENT`). The node and total are those of the
//! list form.

use super::{chunk_ranges, columns_by_chunk, split, Positions, Sums};
use crate::framework::{CycleState, Normalization, Profile, ScorePlugin};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};
use std::ops::Range;

/// The least share of the slots spanned (in percent) that must hold feasible
/// nodes: below it, scoring and summing the slots between feasible nodes
/// costs more than the list form's gathers. In one process, slots / list
/// with the slot form forced, 5,000 nodes, µs (`decision_profile --fresh
/// --exhaustive`, AVX-512 machine): 90% feasible 31.7–45.0 / 34.8–50.7, 77% 100.1–101.0
/// / 102.6–103.6, 60% 73.7–74.6 / 70.7–71.8, 54% 53.6–79.9 / 52.1–77.6.
const MIN_FEASIBLE_PERCENT: usize = 70;

/// The best feasible node (highest total, ties to the lower name rank) and its
/// total, from scores by slot; `None` when a plugin has no slot form for this
/// pod (or normalizes), or the feasible nodes are too sparse among the slots:
/// the caller scores the feasible list. `columns` are the plugins with a
/// column of scores and their weights; `offset` the uniform scores' sum.
#[allow(clippy::too_many_arguments)]
pub(super) fn best(
    profile: &Profile,
    columns: &[(&dyn ScorePlugin, i64)],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    feasible: &[NodeIdx],
    offset: i64,
    parallel: bool,
) -> Option<(NodeIdx, i64)> {
    debug_assert!(feasible.is_sorted());
    let (&lo, &hi) = (feasible.first()?, feasible.last()?);
    let (first, span) = (lo as usize, (hi as usize + 1).checked_sub(lo as usize)?);
    if columns.is_empty()
        || span.saturating_mul(MIN_FEASIBLE_PERCENT) > feasible.len().saturating_mul(100)
        || columns
            .iter()
            .any(|(p, _)| p.normalization() != Normalization::None)
    {
        return None;
    }
    let mut buffer = profile.score_columns.borrow();
    let raw = buffer.first(span * columns.len(), 0);
    let chunks = chunk_ranges(span, parallel);
    if !score(columns, state, pod, snap, feasible, first, &chunks, raw) {
        return None;
    }
    let mut mask = vec![false; span];
    for &n in feasible {
        if let Some(m) = (n as usize)
            .checked_sub(first)
            .and_then(|k| mask.get_mut(k))
        {
            *m = true;
        }
    }
    let weights: Vec<i64> = columns.iter().map(|c| c.1).collect();
    let sums = Sums {
        raw,
        weights: &weights,
        offset,
        nodes: Positions::Slots {
            first,
            feasible: &mask,
        },
        rank: &snap.nodes().name_rank,
    };
    let k = sums.best(&chunks, &mut [])?;
    Some(((first + k) as NodeIdx, sums.total_at(k)))
}

/// Every plugin's slot scores into its column of `raw` (plugin-major, one
/// column per plugin over the slots from `first`), chunk by chunk of slots,
/// the chunks on threads of their own when there are several. False when a
/// plugin declined.
#[allow(clippy::too_many_arguments)]
fn score(
    columns: &[(&dyn ScorePlugin, i64)],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    feasible: &[NodeIdx],
    first: usize,
    chunks: &[Range<usize>],
    raw: &mut [i64],
) -> bool {
    let span = raw.len() / columns.len().max(1);
    let parts = columns_by_chunk(raw, span, chunks);
    let run = |(r, cols): (Range<usize>, Vec<&mut [i64]>)| {
        // The feasible nodes among this chunk's slots.
        let (start, end) = (first + r.start, first + r.end);
        let from = feasible.partition_point(|&n| (n as usize) < start);
        let to = feasible.partition_point(|&n| (n as usize) < end);
        let nodes = &feasible[from..to];
        columns.len() == cols.len()
            && columns
                .iter()
                .zip(cols)
                .all(|((p, _), col)| p.score_slots(state, pod, snap, nodes, start, col))
    };
    if parts.len() == 1 {
        return parts.into_iter().all(run);
    }
    split::map(parts, |_, part| run(part))
        .into_iter()
        .all(|ok| ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{schedule, CycleOptions, Plugin, PluginSet};
    use crate::model::capacity::CapacityRules;
    use crate::model::TaintEffect;
    use crate::plugins::TaintToleration;
    use crate::testkit::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Scores a node by its slot (`slot % modulus`), counting calls of either form.
    struct BySlot {
        modulus: i64,
        slot_form: bool,
        lists: AtomicUsize,
        slots: AtomicUsize,
    }

    impl BySlot {
        fn new(modulus: i64, slot_form: bool) -> Self {
            BySlot {
                modulus,
                slot_form,
                lists: AtomicUsize::new(0),
                slots: AtomicUsize::new(0),
            }
        }
    }

    impl Plugin for BySlot {
        fn name(&self) -> &'static str {
            "BySlot"
        }
    }

    impl ScorePlugin for BySlot {
        fn score(&self, _: &CycleState, _: &Pod, _: &Snapshot, node: NodeIdx) -> i64 {
            node as i64 % self.modulus
        }

        fn score_nodes(
            &self,
            state: &CycleState,
            pod: &Pod,
            snap: &Snapshot,
            nodes: &[NodeIdx],
            out: &mut [i64],
        ) {
            self.lists.fetch_add(1, Ordering::Relaxed);
            for (o, &n) in out.iter_mut().zip(nodes) {
                *o = self.score(state, pod, snap, n);
            }
        }

        fn score_slots(
            &self,
            _: &CycleState,
            _: &Pod,
            _: &Snapshot,
            _: &[NodeIdx],
            first: usize,
            out: &mut [i64],
        ) -> bool {
            self.slots.fetch_add(1, Ordering::Relaxed);
            for (k, o) in out.iter_mut().enumerate() {
                // Infeasible slots get the most: they must not count.
                *o = (first + k) as i64 % self.modulus;
            }
            self.slot_form
        }

        fn normalization(&self) -> Normalization {
            Normalization::None
        }
    }

    /// A profile of TaintToleration's filter, scored by `scorer` alone.
    fn profile_with(scorer: Arc<BySlot>) -> Profile {
        let mut taints = PluginSet::new("TaintToleration");
        taints.filter = Some(Arc::new(TaintToleration));
        let mut set = PluginSet::new("BySlot");
        set.score = Some(scorer);
        Profile::new("by-slot", vec![(taints, 0), (set, 1)])
    }

    /// Nodes n00..n<count>, those whose slot is `tainted` not feasible.
    fn cluster(count: usize, tainted: impl Fn(usize) -> bool) -> Snapshot {
        let mut snap = Snapshot::new(CapacityRules::default());
        for k in 0..count {
            let mut b = node(&format!("n{k:02}"), 4000, GI);
            if tainted(k) {
                b = b.taint("dedicated", "x", TaintEffect::NoSchedule);
            }
            snap.upsert_node(b.build());
        }
        snap
    }

    /// The chosen node's name.
    fn chosen_name(d: &crate::framework::Decision, snap: &Snapshot) -> Option<String> {
        d.node
            .map(|n| snap.nodes().name_str[n as usize].to_string())
    }

    fn every_node(parallel: bool) -> CycleOptions {
        CycleOptions {
            fresh: true,
            exhaustive: true,
            parallel,
            ..CycleOptions::default()
        }
    }

    #[test]
    fn every_node_cycles_sum_scores_by_slot_and_skip_infeasible_slots() {
        // Every fourth node tainted: slots 7, 15, ... (7 % 8) would score
        // most, but are not feasible; 6, 14, ... score 6, and n06 sorts
        // first. With 12 nodes a cycle is not split; with 5,000 it is when
        // parallel.
        for (count, parallel) in [(12, false), (5_000, false), (5_000, true)] {
            let scorer = Arc::new(BySlot::new(8, true));
            let profile = profile_with(scorer.clone());
            let mut snap = cluster(count, |k| k % 4 == 3);
            let pod = pod("p", 100, GI).build();
            let d = schedule(&profile, &pod, &mut snap, every_node(parallel));
            let chosen = chosen_name(&d, &snap);
            assert_eq!(
                chosen.as_deref(),
                Some("n06"),
                "{count} nodes, parallel {parallel}"
            );
            assert_eq!(d.scores.first().map(|s| s.total), Some(6));
            assert!(scorer.slots.load(Ordering::Relaxed) > 0);
            assert_eq!(scorer.lists.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn the_list_is_scored_without_a_slot_form_or_with_few_feasible_slots() {
        // A plugin that declines: the list form decides.
        let scorer = Arc::new(BySlot::new(6, false));
        let profile = profile_with(scorer.clone());
        let mut snap = cluster(12, |k| k % 3 == 2);
        let p = pod("p", 100, GI).build();
        let d = schedule(&profile, &p, &mut snap, every_node(false));
        let chosen = chosen_name(&d, &snap);
        assert_eq!(chosen.as_deref(), Some("n04"));
        assert_eq!(scorer.lists.load(Ordering::Relaxed), 1);
        // One node in three feasible: too few of the slots spanned.
        let scorer = Arc::new(BySlot::new(6, true));
        let profile = profile_with(scorer.clone());
        let mut snap = cluster(12, |k| k % 3 != 0);
        let d = schedule(&profile, &p, &mut snap, every_node(false));
        let chosen = chosen_name(&d, &snap);
        // 0, 3, 6, 9 feasible: 3 and 9 score 3; n03 sorts first.
        assert_eq!(chosen.as_deref(), Some("n03"));
        assert_eq!(scorer.slots.load(Ordering::Relaxed), 0);
        assert_eq!(scorer.lists.load(Ordering::Relaxed), 1);
    }
}
