//! Inter-pod affinity and anti-affinity terms (`spec.affinity.podAffinity`,
//! `spec.affinity.podAntiAffinity`), as the InterPodAffinity plugin reads them.
//!
//! Namespace labels: the snapshot holds no Namespace objects, so a non-empty
//! `namespaceSelector` is evaluated against the one label every namespace
//! carries, `kubernetes.io/metadata.name` (set by the API server). A selector
//! on any other namespace label sees it missing: `team In [a]` selects no
//! namespace, `team DoesNotExist` every namespace. An empty selector `{}`
//! selects every namespace, as upstream.

use super::{LabelSelector, Labels, Pod, Sym};
use serde::Serialize;

/// The label the API server puts on every namespace, holding its name.
pub const LABEL_NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// One PodAffinityTerm, with `matchLabelKeys`/`mismatchLabelKeys` already merged
/// into the selector (as the API server does on pod creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodAffinityTerm {
    /// None (no `labelSelector`): the term selects no pod, as upstream.
    pub selector: Option<LabelSelector>,
    /// `namespaces`, or the pod's own namespace when neither `namespaces` nor
    /// `namespaceSelector` is given.
    pub namespaces: Vec<Sym>,
    /// `namespaceSelector`, when given; empty selects every namespace.
    pub namespace_selector: Option<LabelSelector>,
    pub topology_key: Sym,
}

impl PodAffinityTerm {
    /// Whether the term's namespaces include `ns`.
    pub fn matches_namespace(&self, ns: Sym) -> bool {
        if self.namespaces.contains(&ns) {
            return true;
        }
        match &self.namespace_selector {
            None => false,
            Some(s) if s.requirements.is_empty() => true,
            Some(s) => s.matches(&namespace_labels(ns)),
        }
    }

    /// Whether the term selects every namespace.
    pub fn all_namespaces(&self) -> bool {
        self.namespace_selector
            .as_ref()
            .is_some_and(|s| s.requirements.is_empty())
    }

    /// Upstream `AffinityTerm.Matches`: the pod's namespace is one of the
    /// term's and its labels match the selector.
    pub fn matches(&self, pod: &Pod) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| s.matches(&pod.labels))
            && self.matches_namespace(pod.key.namespace)
    }
}

/// The labels the scheduler knows a namespace to have.
fn namespace_labels(ns: Sym) -> Labels {
    Labels::from_pairs([(LABEL_NAMESPACE_NAME, ns.as_str())])
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedPodAffinityTerm {
    pub weight: i32,
    pub term: PodAffinityTerm,
}

/// A pod's inter-pod affinity terms. Pods without any carry `None` instead
/// (`Pod::pod_affinity`), so the common pod pays one pointer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodAffinity {
    pub required_affinity: Vec<PodAffinityTerm>,
    pub preferred_affinity: Vec<WeightedPodAffinityTerm>,
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedPodAffinityTerm>,
}

impl PodAffinity {
    pub fn is_empty(&self) -> bool {
        self.required_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
    }

    pub fn has_required(&self) -> bool {
        !self.required_affinity.is_empty() || !self.required_anti_affinity.is_empty()
    }

    pub fn has_preferred(&self) -> bool {
        !self.preferred_affinity.is_empty() || !self.preferred_anti_affinity.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SelectorOp;
    use crate::testkit::{pod, req, selector};

    fn term(ns: &[&str], ns_sel: Option<LabelSelector>) -> PodAffinityTerm {
        PodAffinityTerm {
            selector: Some(selector(&[("app", "web")])),
            namespaces: ns.iter().map(|n| Sym::new(n)).collect(),
            namespace_selector: ns_sel,
            topology_key: Sym::new("zone"),
        }
    }

    #[test]
    fn namespaces_and_selectors() {
        let web_a = pod("w", 1, 1).namespace("a").label("app", "web").build();
        let web_b = pod("w", 1, 1).namespace("b").label("app", "web").build();
        let db_a = pod("d", 1, 1).namespace("a").label("app", "db").build();
        let own = term(&["a"], None);
        assert!(own.matches(&web_a));
        assert!(!own.matches(&web_b));
        assert!(!own.matches(&db_a));
        let all = term(&[], Some(LabelSelector::default()));
        assert!(all.all_namespaces());
        assert!(all.matches(&web_a) && all.matches(&web_b));
        let by_name = term(
            &[],
            Some(LabelSelector {
                requirements: vec![req(LABEL_NAMESPACE_NAME, SelectorOp::In, &["b"])],
            }),
        );
        assert!(!by_name.matches(&web_a) && by_name.matches(&web_b));
        // Union of the list and the selector.
        let both = PodAffinityTerm {
            namespaces: vec![Sym::new("a")],
            ..by_name.clone()
        };
        assert!(both.matches(&web_a) && both.matches(&web_b));
        // Other namespace labels are unknown: missing.
        let team = term(&[], Some(selector(&[("team", "x")])));
        assert!(!team.matches(&web_a));
        // No label selector: no pod.
        let none = PodAffinityTerm {
            selector: None,
            ..all
        };
        assert!(!none.matches(&web_a));
    }
}
