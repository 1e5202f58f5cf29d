//! InterPodAffinity: `spec.affinity.podAffinity` and `podAntiAffinity`, with
//! upstream kube-scheduler's semantics.
//!
//! Filter: every required affinity term of the pod must be met by some placed
//! pod in the node's domain of the term's topology key (a pod whose terms match
//! itself may go anywhere while no pod matches them anywhere); no placed pod in
//! the node's domain may match one of its required anti-affinity terms; and no
//! placed pod's required anti-affinity term may match the pod in that pod's
//! domain. PreFilter counts matching pods per (topology key, value) once, so
//! Filter is a few lookups per node.
//!
//! Score: the pod's preferred terms (+weight for affinity, −weight for
//! anti-affinity) over the placed pods they match, and placed pods' terms that
//! match the pod (required affinity at `hardPodAffinityWeight`, preferred
//! affinity +weight, preferred anti-affinity −weight), summed per domain;
//! normalized min–max to 0..=100 over the feasible nodes.
//!
//! Cost: when neither the pod nor any placed pod has a term, PreFilter and
//! PreScore return Skip from the snapshot's incrementally kept sets of pods
//! with terms; otherwise the work starts from the pods a term can select (the
//! label index) and from the pods with terms, never from every pod.
//!
//! Namespace labels are not in the snapshot: see `model::pod_affinity`.

mod filtering;
mod scoring;

use crate::framework::Plugin;
use crate::model::{PodAffinityTerm, Sym, SymHash};
use crate::snapshot::{PodEntry, Snapshot};
use std::collections::HashMap;

pub const NAME: &str = "InterPodAffinity";
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's default `hardPodAffinityWeight`.
pub const DEFAULT_HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub struct InterPodAffinity {
    hard_pod_affinity_weight: i64,
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        InterPodAffinity {
            hard_pod_affinity_weight: DEFAULT_HARD_POD_AFFINITY_WEIGHT,
        }
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// A count (or score) per topology pair (key, value), with the keys it holds
/// listed so a node is looked up by the few keys in use, not by all its labels.
#[derive(Debug, Default)]
struct TopologyCounts {
    counts: HashMap<(Sym, Sym), i64, SymHash>,
    keys: Vec<Sym>,
}

impl TopologyCounts {
    fn add(&mut self, key: Sym, value: Sym, delta: i64) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
        *self.counts.entry((key, value)).or_insert(0) += delta;
    }

    fn get(&self, key: Sym, value: Sym) -> i64 {
        self.counts.get(&(key, value)).copied().unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Calls `f` with every placed pod `term` could select: those in its
/// namespaces carrying its selector's equality requirement, if it has one.
/// `f` must still check `term.matches`. A term without a selector selects none.
fn for_each_candidate<'s>(
    snap: &'s Snapshot,
    term: &PodAffinityTerm,
    mut f: impl FnMut(&'s PodEntry),
) {
    let Some(sel) = term.selector.as_ref() else {
        return;
    };
    let hint = sel.equality_hint();
    let mut visit = |ns: Sym| {
        let ids = match hint {
            Some((k, v)) => snap.pods_with_label(ns, k, v),
            None => snap.pods_in_namespace(ns),
        };
        for &id in ids.into_iter().flatten() {
            if let Some(e) = snap.pod(id) {
                f(e);
            }
        }
    };
    if term.namespace_selector.is_some() {
        for ns in snap.namespaces() {
            if term.matches_namespace(ns) {
                visit(ns);
            }
        }
    } else {
        for &ns in &term.namespaces {
            visit(ns);
        }
    }
}

#[cfg(test)]
mod tests;
