//! PodTopologySpread: hard constraints (`DoNotSchedule`) filter nodes whose
//! domain would exceed `maxSkew`; soft constraints (`ScheduleAnyway`) prefer
//! domains with fewer matching pods. Semantics follow upstream kube-scheduler.
//!
//! Default constraints: upstream derives system-default constraints for pods
//! owned by Services/ReplicaSets/StatefulSets. We do not track those owners, so
//! we behave as `defaultingType: List` with an empty `defaultConstraints`: a pod
//! without `topologySpreadConstraints` is skipped by this plugin.

mod filtering;
mod scoring;

use crate::framework::Plugin;
use crate::model::{
    InclusionPolicy, LabelSelector, Node, Pod, Sym, SymHash, TopologySpreadConstraint,
    WhenUnsatisfiable,
};
use crate::snapshot::{NodeIdx, Snapshot};
use std::collections::HashMap;

pub const NAME: &str = "PodTopologySpread";
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// Marks a node without the constraint's topology key (or, for scoring, a
/// domain that no candidate node belongs to).
const NO_DOMAIN: u32 = u32::MAX;

pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
}

fn constraints_of(pod: &Pod, kind: WhenUnsatisfiable) -> Vec<&TopologySpreadConstraint> {
    pod.topology_spread
        .iter()
        .filter(|c| c.when_unsatisfiable == kind)
        .collect()
}

/// Upstream `nodeLabelsMatchSpreadConstraints`: every constraint's key is on the node.
fn has_all_keys(node: &Node, constraints: &[&TopologySpreadConstraint]) -> bool {
    constraints
        .iter()
        .all(|c| node.labels.contains_key(c.topology_key))
}

fn required_affinity_matches(pod: &Pod, node: &Node) -> bool {
    pod.matches_required_affinity(node)
}

/// An untolerated NoSchedule/NoExecute taint (upstream's DoNotScheduleTaintsFilterFunc).
fn has_untolerated_hard_taint(pod: &Pod, node: &Node) -> bool {
    pod.first_untolerated_hard_taint(node).is_some()
}

/// Per-node answers to the inclusion policies, computed at most once per node and cycle.
struct NodeInclusion<'a> {
    pod: &'a Pod,
    affinity: Option<bool>,
    taints: Option<bool>,
}

impl<'a> NodeInclusion<'a> {
    fn new(pod: &'a Pod) -> Self {
        NodeInclusion {
            pod,
            affinity: None,
            taints: None,
        }
    }

    /// Upstream `matchNodeInclusionPolicies`.
    fn admits(&mut self, c: &TopologySpreadConstraint, node: &Node) -> bool {
        let pod = self.pod;
        if c.node_affinity_policy == InclusionPolicy::Honor
            && !*self
                .affinity
                .get_or_insert_with(|| required_affinity_matches(pod, node))
        {
            return false;
        }
        if c.node_taints_policy == InclusionPolicy::Honor
            && *self
                .taints
                .get_or_insert_with(|| has_untolerated_hard_taint(pod, node))
        {
            return false;
        }
        true
    }
}

/// Maps each node slot to a dense domain id for one topology key, so per-node
/// lookups in Filter/Score are plain indexing.
struct DomainMap {
    /// Indexed by `NodeIdx`; `NO_DOMAIN` when the node lacks the key.
    node_domain: Vec<u32>,
    values: HashMap<Sym, u32, SymHash>,
}

impl DomainMap {
    fn new(slots: usize) -> Self {
        DomainMap {
            node_domain: vec![NO_DOMAIN; slots],
            values: HashMap::default(),
        }
    }

    fn intern(&mut self, value: Sym) -> u32 {
        let next = self.values.len() as u32;
        *self.values.entry(value).or_insert(next)
    }

    fn len(&self) -> usize {
        self.values.len()
    }
}

/// Calls `f` with the node of every placed, non-terminating pod in `namespace`
/// that `selector` matches. Starts from the label index when the selector has
/// an equality requirement; a missing selector matches nothing. An empty one
/// (`labelSelector: {}`) counts nothing either, though the pod matches it itself:
/// upstream's countPodsMatchSelector returns 0 for `selector.Empty()`.
fn for_each_matching_pod(
    snap: &Snapshot,
    namespace: Sym,
    selector: Option<&LabelSelector>,
    mut f: impl FnMut(NodeIdx),
) {
    let Some(sel) = selector.filter(|s| !s.requirements.is_empty()) else {
        return;
    };
    let candidates = match sel.equality_hint() {
        Some((k, v)) => snap.pods_with_label(namespace, k, v),
        None => snap.pods_in_namespace(namespace),
    };
    for &id in candidates.into_iter().flatten() {
        let Some(e) = snap.pod(id) else {
            continue;
        };
        if !e.pod.terminating && sel.matches(&e.pod.labels) {
            f(e.node);
        }
    }
}

fn self_matches(c: &TopologySpreadConstraint, pod: &Pod) -> bool {
    c.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))
}

#[cfg(test)]
mod tests;
