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
    /// Per node slot: the stamp the verdict was found at (0: none).
    stamps: Vec<u64>,
    /// `PASSED`, or the position in `filters` of the filter that rejected the node.
    verdicts: Vec<u16>,
    todo: Vec<NodeIdx>,
}

impl KeptVerdicts {
    /// The live nodes that pass every filter, in order, with the rejected ones in
    /// `rejections`, as `filter_nodes` over all of them finds them. `None` when
    /// verdicts cannot be kept for `pod` (some filter reads more than the node,
    /// or another thread holds the kept verdicts): the caller filters afresh.
    pub(crate) fn filter_live(
        &self,
        filters: &[&dyn FilterPlugin],
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        rejections: &mut Rejections,
    ) -> Option<Result<Vec<NodeIdx>, Status>> {
        if filters.len() >= PASSED as usize
            || !filters
                .iter()
                .all(|f| f.keeps_verdicts(state, pod, pod, snap))
        {
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
        let same_filters = kept.filters.len() == filters.len()
            && kept
                .filters
                .iter()
                .zip(filters)
                .all(|(&k, f)| k == f.name());
        let reusable = same_filters
            && kept.pod.as_ref().is_some_and(|k| {
                filters
                    .iter()
                    .all(|f| f.keeps_verdicts(state, k, pod, snap))
            });
        let live = t.live_list();
        if !reusable {
            kept.pod = Some(pod.clone());
            kept.filters = filters.iter().map(|f| f.name()).collect();
            kept.stamps.fill(0);
            let passed = match filter_nodes(filters, state, pod, snap, live.to_vec(), rejections) {
                Ok(p) => p,
                Err(st) => return Some(Err(st)),
            };
            kept.record(&passed, rejections, live, &t.stamp);
            return Some(Ok(passed));
        }
        let Kept {
            stamps,
            verdicts,
            todo,
            ..
        } = kept;
        let (stamps, verdicts, now) = (&stamps[..slots], &verdicts[..slots], &t.stamp[..slots]);
        // One pass: kept verdicts where the stamp is unchanged (both lists written
        // at every node, only their ends move: no branch on the verdict), changed
        // nodes aside (rare: the branch is predictable).
        let mut feasible: Vec<NodeIdx> = vec![0; live.len()];
        let base = rejections.len();
        rejections.resize(base + live.len(), (0, 0));
        let (mut passed, mut out) = (0usize, base);
        todo.clear();
        let mut take = |n: NodeIdx, stamp: u64, now: u64, v: u16| {
            if stamp != now {
                todo.push(n);
                return;
            }
            feasible[passed] = n;
            rejections[out] = (n, v);
            passed += usize::from(v == PASSED);
            out += usize::from(v != PASSED);
        };
        if live.len() == slots {
            // No removed node: every slot is live, and the columns zip unchecked.
            for (i, ((&s, &n), &v)) in stamps.iter().zip(now).zip(verdicts).enumerate() {
                take(i as NodeIdx, s, n, v);
            }
        } else {
            for &n in live {
                let i = n as usize;
                take(n, stamps[i], now[i], verdicts[i]);
            }
        }
        feasible.truncate(passed);
        rejections.truncate(out);
        if !todo.is_empty() {
            let changed = std::mem::take(todo);
            let mut fresh = Rejections::new();
            let mut now_passing =
                match filter_nodes(filters, state, pod, snap, changed.clone(), &mut fresh) {
                    Ok(p) => p,
                    Err(st) => return Some(Err(st)),
                };
            kept.record(&now_passing, &fresh, &changed, &t.stamp);
            rejections.extend_from_slice(&fresh);
            if now_passing.len() <= 8 {
                for n in now_passing {
                    let at = feasible.partition_point(|&m| m < n);
                    feasible.insert(at, n);
                }
            } else {
                feasible.append(&mut now_passing);
                feasible.sort_unstable();
            }
            kept.todo = changed;
        }
        Some(Ok(feasible))
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
