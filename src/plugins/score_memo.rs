//! Scores kept between cycles for score plugins whose score of a node depends
//! only on that node's state and a few numbers from the pod (its requests).
//!
//! A Spark application asks for hundreds of identical executors, scheduled back
//! to back: between two of them only the node that took the last one changed.
//! Each node's score is kept with the node's `NodeTable::stamp` at the time; a
//! later cycle for a pod with the same key takes the kept score where the stamp
//! is unchanged and computes only the other nodes. The scores are exactly those
//! a fresh computation gives (the stamp changes with every change to the node
//! or its usage), so decisions do not change; only the work does.

use crate::snapshot::{NodeIdx, NodeTable};
use smallvec::SmallVec;
use std::sync::Mutex;

/// What a pod contributes to a plugin's score (e.g. its request per configured
/// resource); pods with equal keys get equal scores on a node in a given state.
pub(crate) type MemoKey = SmallVec<[i64; 4]>;

#[derive(Default)]
pub(crate) struct ScoreMemo {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    key: MemoKey,
    /// Per node slot: the stamp the score was computed at (0: none).
    stamps: Vec<u64>,
    scores: Vec<i64>,
    /// Reused buffers for the nodes to compute.
    todo: Vec<NodeIdx>,
    todo_at: Vec<usize>,
    todo_out: Vec<i64>,
}

impl ScoreMemo {
    /// Whether scores kept for `key` may be reused (as far as can be told
    /// without waiting for a thread scoring another chunk: then false).
    pub(crate) fn holds(&self, key: &[i64]) -> bool {
        self.kept
            .try_lock()
            .is_ok_and(|kept| kept.key.as_slice() == key)
    }

    /// Fills `out[k]` with the score of `nodes[k]`: kept scores where the node's
    /// stamp is unchanged since they were computed for `key`, `compute(nodes,
    /// out)` for the rest. `reuse` false computes all and keeps nothing.
    pub(crate) fn score_nodes(
        &self,
        key: &[i64],
        reuse: bool,
        table: &NodeTable,
        nodes: &[NodeIdx],
        out: &mut [i64],
        compute: impl Fn(&[NodeIdx], &mut [i64]),
    ) {
        if !reuse {
            compute(nodes, out);
            return;
        }
        // Another thread scoring another chunk holds it: compute, keep nothing.
        let Ok(mut kept) = self.kept.try_lock() else {
            compute(nodes, out);
            return;
        };
        let kept = &mut *kept;
        let slots = table.stamp.len();
        if kept.stamps.len() < slots {
            kept.stamps.resize(slots, 0);
            kept.scores.resize(slots, 0);
        }
        if kept.key.as_slice() != key {
            compute(nodes, out);
            kept.key = SmallVec::from_slice(key);
            kept.stamps.fill(0);
            for (&n, &v) in nodes.iter().zip(out.iter()) {
                kept.stamps[n as usize] = table.stamp[n as usize];
                kept.scores[n as usize] = v;
            }
            return;
        }
        let Kept {
            stamps,
            scores,
            todo,
            todo_at,
            todo_out,
            ..
        } = kept;
        let (stamps, scores) = (&mut stamps[..slots], &mut scores[..slots]);
        let now = &table.stamp[..slots];
        todo.clear();
        todo_at.clear();
        for (k, (o, &n)) in out.iter_mut().zip(nodes).enumerate() {
            let i = n as usize;
            *o = scores[i];
            if stamps[i] != now[i] {
                todo.push(n);
                todo_at.push(k);
            }
        }
        if todo.is_empty() {
            return;
        }
        todo_out.clear();
        todo_out.resize(todo.len(), 0);
        compute(todo, todo_out);
        for ((&n, &k), &v) in todo.iter().zip(todo_at.iter()).zip(todo_out.iter()) {
            out[k] = v;
            stamps[n as usize] = now[n as usize];
            scores[n as usize] = v;
        }
    }
}
