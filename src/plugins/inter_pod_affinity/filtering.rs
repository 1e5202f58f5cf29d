//! PreFilter counts, per topology pair, the placed pods that meet the pod's
//! required terms and the placed pods whose required anti-affinity rejects
//! the pod; Filter looks the node's pairs up.
//!
//! Pods nominated to a node (by preemption) with a priority at least the pod's
//! count there as upstream's RunFilterPluginsWithNominatedPods counts them: the
//! node must pass first with them added, then without them.

use super::{
    for_each_candidate, InterPodAffinity, TopologyCounts, ERR_REASON_AFFINITY_RULES_NOT_MATCH,
    ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH, ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH,
    NAME,
};
use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, Status};
use crate::model::{Labels, Pod, PodAffinityTerm};
use crate::snapshot::{NodeIdx, Snapshot};

#[derive(Debug, Default)]
pub(super) struct PreFilterState {
    /// Placed pods matching all of the pod's required affinity terms, counted
    /// once per term at the pair of its topology key.
    affinity: TopologyCounts,
    /// Placed pods matching each of the pod's required anti-affinity terms.
    anti_affinity: TopologyCounts,
    /// Placed pods' required anti-affinity terms that match the pod.
    existing_anti_affinity: TopologyCounts,
    /// The pod matches all of its own required affinity terms.
    self_affinity: bool,
}

fn required_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.pod_affinity
        .as_deref()
        .map_or(&[], |a| &a.required_affinity)
}

fn required_anti_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.pod_affinity
        .as_deref()
        .map_or(&[], |a| &a.required_anti_affinity)
}

/// Upstream `podMatchesAllAffinityTerms`: false without terms.
fn matches_all(terms: &[PodAffinityTerm], pod: &Pod) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod))
}

impl PreFilterState {
    /// Adds what `other`, placed on a node labelled `labels`, contributes for
    /// `pod` (upstream's AddPod / the PreFilter count of one pod).
    fn add_pod(&mut self, pod: &Pod, other: &Pod, labels: &Labels, delta: i64) {
        let aff = required_affinity(pod);
        if matches_all(aff, other) {
            for t in aff {
                if let Some(v) = labels.get(t.topology_key) {
                    self.affinity.add(t.topology_key, v, delta);
                }
            }
        }
        for t in required_anti_affinity(pod) {
            if t.matches(other) {
                if let Some(v) = labels.get(t.topology_key) {
                    self.anti_affinity.add(t.topology_key, v, delta);
                }
            }
        }
        for t in required_anti_affinity(other) {
            if t.matches(pod) {
                if let Some(v) = labels.get(t.topology_key) {
                    self.existing_anti_affinity.add(t.topology_key, v, delta);
                }
            }
        }
    }

    /// Upstream's three checks, in its order, on a node labelled `labels`;
    /// `extra` holds nominated pods' contributions to add to the counts.
    fn verdict(&self, pod: &Pod, labels: &Labels, extra: Option<&PreFilterState>) -> Status {
        let count = |which: fn(&PreFilterState) -> &TopologyCounts, k, v| {
            which(self).get(k, v) + extra.map_or(0, |e| which(e).get(k, v))
        };
        let aff = required_affinity(pod);
        if !aff.is_empty() {
            let mut pods_exist = true;
            for t in aff {
                let Some(v) = labels.get(t.topology_key) else {
                    // Every term's topology key must be on the node.
                    return Status::unresolvable(NAME, ERR_REASON_AFFINITY_RULES_NOT_MATCH);
                };
                if count(|s| &s.affinity, t.topology_key, v) <= 0 {
                    pods_exist = false;
                }
            }
            let none_anywhere =
                self.affinity.is_empty() && extra.is_none_or(|e| e.affinity.is_empty());
            // The first of a group of pods with affinity to each other may go
            // anywhere while no pod matches the terms.
            let first_of_group = none_anywhere && self.self_affinity;
            if !pods_exist && !first_of_group {
                return Status::unresolvable(NAME, ERR_REASON_AFFINITY_RULES_NOT_MATCH);
            }
        }
        for t in required_anti_affinity(pod) {
            if let Some(v) = labels.get(t.topology_key) {
                if count(|s| &s.anti_affinity, t.topology_key, v) > 0 {
                    return Status::unschedulable(NAME, ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
                }
            }
        }
        let existing = &self.existing_anti_affinity;
        let keys = existing.keys.iter().chain(
            extra
                .into_iter()
                .flat_map(|e| &e.existing_anti_affinity.keys),
        );
        for &k in keys {
            if let Some(v) = labels.get(k) {
                if count(|s| &s.existing_anti_affinity, k, v) > 0 {
                    return Status::unschedulable(
                        NAME,
                        ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH,
                    );
                }
            }
        }
        Status::success()
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snap: &Snapshot) -> Status {
        let aff = required_affinity(pod);
        let anti = required_anti_affinity(pod);
        let existing = snap.pods_with_required_anti_affinity();
        if aff.is_empty() && anti.is_empty() && existing.is_empty() {
            return Status::skip();
        }
        let nodes = snap.nodes();
        let labels_of = |n: NodeIdx| &nodes.node[n as usize].labels;
        let mut s = PreFilterState {
            self_affinity: matches_all(aff, pod),
            ..Default::default()
        };
        for &id in existing {
            let Some(e) = snap.pod(id) else {
                continue;
            };
            for t in required_anti_affinity(&e.pod) {
                if t.matches(pod) {
                    if let Some(v) = labels_of(e.node).get(t.topology_key) {
                        s.existing_anti_affinity.add(t.topology_key, v, 1);
                    }
                }
            }
        }
        // Pods matching every affinity term are among the first term's candidates.
        if let Some(first) = aff.first() {
            for_each_candidate(snap, first, |e| {
                if matches_all(aff, &e.pod) {
                    let labels = labels_of(e.node);
                    for t in aff {
                        if let Some(v) = labels.get(t.topology_key) {
                            s.affinity.add(t.topology_key, v, 1);
                        }
                    }
                }
            });
        }
        for t in anti {
            for_each_candidate(snap, t, |e| {
                if t.matches(&e.pod) {
                    if let Some(v) = labels_of(e.node).get(t.topology_key) {
                        s.anti_affinity.add(t.topology_key, v, 1);
                    }
                }
            });
        }
        // Nothing to check on any node: as good as upstream's Skip (which it
        // gives only when no placed pod has required anti-affinity), and it
        // keeps the promise of `depends_on_placed_pods` (removing pods cannot
        // make a placed pod's term match).
        if aff.is_empty() && anti.is_empty() && s.existing_anti_affinity.is_empty() {
            return Status::skip();
        }
        state.write(s);
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let Some(s) = state.read::<PreFilterState>() else {
            // PreFilter skipped: nothing to check.
            return Status::success();
        };
        let Some(n) = snap.nodes().node.get(node as usize) else {
            return Status::error(NAME, "node not found");
        };
        let labels = &n.labels;
        let mut nominated = snap.nominated_for(pod, node).peekable();
        if nominated.peek().is_some() {
            let mut extra = PreFilterState::default();
            for o in nominated {
                extra.add_pod(pod, &o.pod, labels, 1);
            }
            // Upstream's first pass has the nominated pods added and decides
            // the status when it fails; the plain pass runs only after it passes.
            let st = s.verdict(pod, labels, Some(&extra));
            if !st.is_success() {
                return st;
            }
        }
        s.verdict(pod, labels, None)
    }

    /// Without required terms of its own, the pod is checked only against placed
    /// pods' required anti-affinity terms that match it; when none does,
    /// PreFilter skips, and removing pods cannot make one.
    fn depends_on_placed_pods(&self, state: &CycleState, pod: &Pod) -> bool {
        pod.pod_affinity
            .as_deref()
            .is_some_and(|a| a.has_required())
            || state.read::<PreFilterState>().is_some()
    }
}
