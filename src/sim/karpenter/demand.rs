//! A pending pod as Karpenter reads it: requests, node selector, node affinity, tolerations and
//! topology spread, with Karpenter's preference relaxation.
//!
//! Karpenter treats preferences as requirements and relaxes them one step at a time when the
//! pod cannot be placed (`pkg/controllers/provisioning/scheduling/preferences.go`): it first
//! drops the first of several ORed required node-affinity terms, then the heaviest preferred
//! node-affinity term (the next heaviest is tried in its place), then `ScheduleAnyway` topology
//! spread, then it tolerates `PreferNoSchedule` taints. Only the heaviest remaining preferred
//! term counts as a requirement (`NewPodRequirements`). Pod (anti-)affinity is not read: the
//! simulated workloads carry none, and the scheduler still honours it on real nodes.

use crate::model::{
    Labels, NodeSelectorTerm, Pod, PodKey, Resources, Sym, Taint, TaintEffect,
    TopologySpreadConstraint, WhenUnsatisfiable,
};

/// One pending pod, with how far its preferences have been relaxed.
#[derive(Debug, Clone)]
pub struct Demand {
    pub key: PodKey,
    pub namespace: Sym,
    pub labels: Labels,
    pub requests: Resources,
    node_selector: Vec<(Sym, Sym)>,
    /// ORed terms; empty: no required affinity.
    required: Vec<NodeSelectorTerm>,
    /// Heaviest first (stable for equal weights).
    preferred: Vec<NodeSelectorTerm>,
    tolerations: Vec<crate::model::Toleration>,
    spread: Vec<TopologySpreadConstraint>,
    /// Index of the required term in force.
    term: usize,
    /// Index of the preferred term in force; `preferred.len()`: none.
    preference: usize,
    soft_spread_dropped: bool,
    tolerates_prefer_no_schedule: bool,
}

/// A name no node has: new nodes are matched before they are named.
fn unnamed() -> Sym {
    Sym::new("")
}

impl Demand {
    pub fn from_pod(pod: &Pod) -> Demand {
        let mut preferred: Vec<(i32, NodeSelectorTerm)> = pod
            .node_affinity
            .preferred
            .iter()
            .map(|p| (p.weight, p.term.clone()))
            .collect();
        preferred.sort_by_key(|p| std::cmp::Reverse(p.0));
        Demand {
            key: pod.key.clone(),
            namespace: pod.key.namespace,
            labels: pod.labels.clone(),
            requests: pod.requests.clone(),
            node_selector: pod.node_selector.clone(),
            required: pod.node_affinity.required.clone().unwrap_or_default(),
            preferred: preferred.into_iter().map(|p| p.1).collect(),
            tolerations: pod.tolerations.clone(),
            spread: pod.topology_spread.clone(),
            term: 0,
            preference: 0,
            soft_spread_dropped: false,
            tolerates_prefer_no_schedule: false,
        }
    }

    /// The node selector and the required term in force: what Karpenter calls the pod's strict
    /// requirements (preferences never narrow topology domains).
    pub fn strictly_admits(&self, labels: &Labels) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(*k) == Some(*v))
            && self
                .required
                .get(self.term)
                .is_none_or(|t| t.matches(labels, unnamed()))
    }

    /// Whether a node with `labels` meets the pod's requirements as relaxed so far.
    pub fn admits(&self, labels: &Labels) -> bool {
        self.strictly_admits(labels)
            && self
                .preferred
                .get(self.preference)
                .is_none_or(|t| t.matches(labels, unnamed()))
    }

    /// Whether the strict requirements that name `key` allow the value `value` for it.
    pub fn allows_domain(&self, key: Sym, value: Sym) -> bool {
        let probe = Labels::from_pairs([(key.as_str(), value.as_str())]);
        let selector_ok = self
            .node_selector
            .iter()
            .filter(|(k, _)| *k == key)
            .all(|(_, v)| *v == value);
        let term_ok = self.required.get(self.term).is_none_or(|t| {
            t.match_expressions
                .iter()
                .filter(|r| r.key == key)
                .all(|r| r.matches(&probe))
        });
        selector_ok && term_ok
    }

    /// Every NoSchedule and NoExecute taint is tolerated, and PreferNoSchedule ones too (until
    /// relaxation tolerates those).
    pub fn tolerates(&self, taints: &[Taint]) -> bool {
        taints.iter().all(|t| {
            (t.effect == TaintEffect::PreferNoSchedule && self.tolerates_prefer_no_schedule)
                || self.tolerations.iter().any(|tol| tol.tolerates(t))
        })
    }

    /// The node selector and the required term in force.
    pub fn strict_parts(&self) -> (Vec<(Sym, Sym)>, Option<NodeSelectorTerm>) {
        (
            self.node_selector.clone(),
            self.required.get(self.term).cloned(),
        )
    }

    /// The topology spread constraints in force.
    pub fn spread(&self) -> impl Iterator<Item = &TopologySpreadConstraint> + '_ {
        self.spread.iter().filter(move |c| {
            !(self.soft_spread_dropped && c.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway)
        })
    }

    /// Relaxes one step; false when nothing is left to relax.
    pub fn relax(&mut self) -> bool {
        if self.term + 1 < self.required.len() {
            self.term += 1;
            return true;
        }
        if self.preference < self.preferred.len() {
            self.preference += 1;
            return true;
        }
        let has_soft = self
            .spread
            .iter()
            .any(|c| c.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway);
        if has_soft && !self.soft_spread_dropped {
            self.soft_spread_dropped = true;
            return true;
        }
        if !self.tolerates_prefer_no_schedule {
            self.tolerates_prefer_no_schedule = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PreferredTerm, Requirement, SelectorOp};
    use crate::testkit::{res, GI};

    fn term(key: &str, values: &[&str]) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: vec![Requirement {
                key: Sym::new(key),
                op: SelectorOp::In,
                values: values.iter().map(|v| Sym::new(v)).collect(),
                number: 0,
            }],
            match_fields: Vec::new(),
            valid: true,
        }
    }

    fn labels(ty: &str, zone: &str) -> Labels {
        Labels::from_pairs([
            ("karpenter.sh/capacity-type", ty),
            ("topology.kubernetes.io/zone", zone),
        ])
    }

    #[test]
    fn preferred_terms_are_required_heaviest_first_then_relaxed() {
        let mut pod = Pod::new("ns", "p", res(1000, GI));
        pod.node_affinity.preferred = vec![
            PreferredTerm {
                weight: 1,
                term: term("topology.kubernetes.io/zone", &["zone-b"]),
            },
            PreferredTerm {
                weight: 50,
                term: term("karpenter.sh/capacity-type", &["on-demand"]),
            },
        ];
        let mut d = Demand::from_pod(&pod);
        // Heaviest (on-demand) in force: spot refused even though it is strictly fine.
        assert!(!d.admits(&labels("spot", "zone-b")));
        assert!(d.strictly_admits(&labels("spot", "zone-b")));
        assert!(d.admits(&labels("on-demand", "zone-a")));
        assert!(d.relax());
        // Next heaviest alone: zone-b.
        assert!(d.admits(&labels("spot", "zone-b")));
        assert!(!d.admits(&labels("on-demand", "zone-a")));
        assert!(d.relax());
        assert!(d.admits(&labels("spot", "zone-a")));
    }

    #[test]
    fn required_terms_are_tried_in_order_and_never_all_dropped() {
        let mut pod = Pod::new("ns", "p", res(1000, GI));
        pod.node_affinity.required = Some(vec![
            term("karpenter.sh/capacity-type", &["spot"]),
            term("karpenter.sh/capacity-type", &["on-demand"]),
        ]);
        let mut d = Demand::from_pod(&pod);
        assert!(d.admits(&labels("spot", "a")) && !d.admits(&labels("on-demand", "a")));
        assert!(d.relax());
        assert!(!d.admits(&labels("spot", "a")) && d.admits(&labels("on-demand", "a")));
        // Only the PreferNoSchedule toleration is left, then nothing.
        assert!(d.relax());
        assert!(!d.relax());
        assert!(!d.admits(&labels("spot", "a")));
    }

    #[test]
    fn prefer_no_schedule_taints_block_until_relaxed() {
        let pod = Pod::new("ns", "p", res(1000, GI));
        let mut d = Demand::from_pod(&pod);
        let soft = Taint {
            key: Sym::new("k"),
            value: Sym::new(""),
            effect: TaintEffect::PreferNoSchedule,
        };
        assert!(!d.tolerates(std::slice::from_ref(&soft)));
        assert!(d.relax());
        assert!(d.tolerates(&[soft]));
    }

    #[test]
    fn domains_allowed_by_strict_requirements_on_the_key() {
        let mut pod = Pod::new("ns", "p", res(1000, GI));
        pod.node_affinity.required = Some(vec![term("topology.kubernetes.io/zone", &["zone-a"])]);
        let d = Demand::from_pod(&pod);
        let zone = Sym::new("topology.kubernetes.io/zone");
        assert!(d.allows_domain(zone, Sym::new("zone-a")));
        assert!(!d.allows_domain(zone, Sym::new("zone-b")));
        // Other keys are not restricted by a zone requirement.
        assert!(d.allows_domain(Sym::new("capacity-spread"), Sym::new("1")));
    }
}
