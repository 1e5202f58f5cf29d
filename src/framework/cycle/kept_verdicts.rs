//! Filter verdicts kept between cycles.
//!
//! A Spark application's executors are alike and come back to back: between two
//! of them only the node that took the last one changed. When every active
//! filter promises (`FilterPlugin::keeps_verdicts`) that its verdict on a node
//! depends only on that node's own state and on pod fields equal in both pods,
//! each node's verdict (pass, or which filter rejected it) is kept with the
//! node's `NodeTable::stamp`; the next cycle takes it where the stamp is
//! unchanged and runs the filters over the other nodes only. Verdicts are exactly
//! those a fresh run gives, so the feasible nodes and the rejections do not
//! change; only the work does.

use super::{filter_nodes, Rejections};
use crate::framework::{CycleState, FilterPlugin, Status};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};
use std::sync::Mutex;

/// A node's kept verdict: passed every filter.
const PASSED: u16 = u16::MAX;

#[derive(Default)]
pub(crate) struct KeptVerdicts {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// The pod the verdicts were found for, and the active filters then.
    pod: Option<Pod>,
    filters: Vec<&'static str>,
    /// Per node slot: the stamp the verdict was found at (0: none, or a dead slot).
    stamps: Vec<u64>,
    /// `PASSED`, or the position in `filters` of the filter that rejected the node.
    verdicts: Vec<u16>,
    /// The nodes with a kept `PASSED` verdict, ascending.
    feasible: Vec<NodeIdx>,
    /// Reused buffers.
    changed: Vec<NodeIdx>,
    examined: Vec<NodeIdx>,
}

/// Whether every active filter keeps its verdicts for `pod` on unchanged nodes
/// (`FilterPlugin::keeps_verdicts` of the pod with itself).
pub(super) fn keepable(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
) -> bool {
    filters
        .iter()
        .all(|f| f.keeps_verdicts(state, pod, pod, snap))
}

/// Whether verdicts found for `kept` by the filters named `names` hold for
/// `pod` on unchanged nodes: the same filters, each keeping its verdicts from
/// `kept` to `pod`.
pub(super) fn carry_over(
    names: &[&'static str],
    kept: &Pod,
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
) -> bool {
    names.len() == filters.len()
        && names.iter().zip(filters).all(|(&n, f)| n == f.name())
        && filters
            .iter()
            .all(|f| f.keeps_verdicts(state, kept, pod, snap))
}

/// Above this many changed nodes, the feasible list is made anew from the
/// verdicts rather than patched node by node.
const PATCH_MAX: usize = 64;

impl KeptVerdicts {
    /// The live nodes that pass every filter, in order, as `filter_nodes` over
    /// all of them finds them, with the rejected ones in `rejections` when
    /// `show_all` or when none passes (the cycle shows rejections only then).
    /// `None` when verdicts cannot be kept for `pod` (some filter reads more
    /// than the node, or another thread holds the kept verdicts): the caller
    /// filters afresh.
    pub(crate) fn filter_live(
        &self,
        filters: &[&dyn FilterPlugin],
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        show_all: bool,
        rejections: &mut Rejections,
    ) -> Option<Result<Vec<NodeIdx>, Status>> {
        if filters.len() >= PASSED as usize || !keepable(filters, state, pod, snap) {
            return None;
        }
        let Ok(mut guard) = self.kept.try_lock() else {
            return None;
        };
        let kept = &mut *guard;
        let t = snap.nodes();
        let slots = t.stamp.len();
        if kept.stamps.len() < slots {
            kept.stamps.resize(slots, 0);
            kept.verdicts.resize(slots, PASSED);
        }
        let reusable = kept
            .pod
            .as_ref()
            .is_some_and(|k| carry_over(&kept.filters, k, filters, state, pod, snap));
        let live = t.live_list();
        if !reusable {
            kept.pod = Some(pod.clone());
            kept.filters = filters.iter().map(|f| f.name()).collect();
            kept.stamps.fill(0);
            kept.feasible.clear();
            let mut fresh = Rejections::new();
            let passed = match filter_nodes(filters, state, pod, snap, live.to_vec(), &mut fresh) {
                Ok(p) => p,
                Err(st) => return Some(Err(st)),
            };
            kept.record(&passed, &fresh, live, &t.stamp);
            kept.feasible.clone_from(&passed);
            rejections.extend_from_slice(&fresh);
            return Some(Ok(passed));
        }

        // The nodes changed since their verdict was found (a dead slot has stamp
        // 0, and so have slots past this table's end: the verdicts may come
        // from a larger clone of this snapshot).
        let mut changed = std::mem::take(&mut kept.changed);
        changed.clear();
        super::changed_slots(&kept.stamps, &t.stamp, &mut changed);
        if !changed.is_empty() {
            // Those still here are filtered again; the others lose their entry.
            let mut examined = std::mem::take(&mut kept.examined);
            examined.clear();
            examined.extend(
                changed
                    .iter()
                    .copied()
                    .filter(|&n| t.stamp.get(n as usize).is_some_and(|&s| s != 0)),
            );
            for &n in &changed {
                kept.stamps[n as usize] = 0;
            }
            let mut fresh = Rejections::new();
            let passing =
                match filter_nodes(filters, state, pod, snap, examined.clone(), &mut fresh) {
                    Ok(p) => p,
                    Err(st) => return Some(Err(st)),
                };
            kept.record(&passing, &fresh, &examined, &t.stamp);
            if changed.len() > PATCH_MAX {
                kept.feasible.clear();
                let (stamps, verdicts) = (&kept.stamps, &kept.verdicts);
                kept.feasible.extend(
                    live.iter()
                        .copied()
                        .filter(|&n| stamps[n as usize] != 0 && verdicts[n as usize] == PASSED),
                );
            } else {
                // Looked up in the list itself, so an entry left by a cycle that
                // ended in an error is mended too.
                for &n in &changed {
                    let now = passing.binary_search(&n).is_ok();
                    match kept.feasible.binary_search(&n) {
                        Ok(at) if !now => {
                            kept.feasible.remove(at);
                        }
                        Err(at) if now => kept.feasible.insert(at, n),
                        _ => {}
                    }
                }
            }
            kept.examined = examined;
        }
        kept.changed = changed;
        if show_all || kept.feasible.is_empty() {
            let (stamps, verdicts) = (&kept.stamps, &kept.verdicts);
            rejections.extend(live.iter().filter_map(|&n| {
                let v = verdicts[n as usize];
                (stamps[n as usize] != 0 && v != PASSED).then_some((n, v))
            }));
        }
        Some(Ok(kept.feasible.clone()))
    }
}

impl Kept {
    /// Keeps the verdicts just found for `examined` nodes: `passed` passed,
    /// `rejections` (possibly with others' entries) rejected.
    fn record(
        &mut self,
        passed: &[NodeIdx],
        rejections: &Rejections,
        examined: &[NodeIdx],
        now: &[u64],
    ) {
        for &n in passed {
            self.verdicts[n as usize] = PASSED;
        }
        for &(n, k) in rejections {
            self.verdicts[n as usize] = k;
        }
        for &n in examined {
            self.stamps[n as usize] = now[n as usize];
        }
    }
}
