//! PodDisruptionBudgets as preemption reads them: which pods they cover and how
//! many more disruptions they allow right now (`status.disruptionsAllowed`).

use crate::model::{Interned, LabelSelector, Pod, Requirement, SelectorOp, Sym};
use k8s_openapi::api::policy::v1 as policy;
use std::collections::HashSet;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("PodDisruptionBudget {object}: {field}: {message}")]
pub struct PdbError {
    pub object: String,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdb {
    pub namespace: Sym,
    pub name: String,
    /// Empty selects nothing (upstream: a PDB with a nil or empty selector matches no pod).
    pub selector: LabelSelector,
    pub disruptions_allowed: i32,
    /// Pods the API server already counted as disrupted (`status.disruptedPods`):
    /// evicting them again does not use up the budget.
    pub disrupted_pods: HashSet<String>,
    /// Keeps the selector's values interned while the budget lives (`model::intern`).
    pub interned: Interned,
}

impl Pdb {
    pub fn new(namespace: &str, name: &str, selector: LabelSelector, allowed: i32) -> Pdb {
        Pdb {
            namespace: Sym::new(namespace),
            name: name.to_owned(),
            selector,
            disruptions_allowed: allowed,
            disrupted_pods: HashSet::new(),
            interned: Interned::default(),
        }
    }

    /// Does this budget count `pod`'s disruption?
    pub fn covers(&self, pod: &Pod) -> bool {
        pod.key.namespace == self.namespace
            && !pod.labels.is_empty()
            && !self.selector.requirements.is_empty()
            && self.selector.matches(&pod.labels)
            && !self.disrupted_pods.contains(&pod.key.name)
    }

    /// `(namespace, name)`, the snapshot's key.
    pub fn key(&self) -> (Sym, &str) {
        (self.namespace, &self.name)
    }
}

/// Converts a `policy/v1` PodDisruptionBudget. An invalid selector is an error
/// (upstream silently lets such a budget match nothing; callers may do the same
/// after reporting it).
pub fn pdb_from_k8s(pdb: &policy::PodDisruptionBudget) -> Result<Pdb, PdbError> {
    let namespace = pdb.metadata.namespace.as_deref().unwrap_or("default");
    let name = pdb.metadata.name.as_deref().unwrap_or("<unnamed>");
    let err = |field: String, message: String| PdbError {
        object: format!("{namespace}/{name}"),
        field,
        message,
    };
    let mut selector = LabelSelector::default();
    let mut interned = Interned::default();
    if let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        for (k, v) in sel.match_labels.iter().flatten() {
            selector.requirements.push(Requirement {
                key: Sym::new(k),
                op: SelectorOp::In,
                values: vec![interned.sym(v)],
                number: 0,
            });
        }
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let field = format!("spec.selector.matchExpressions[{i}]");
            let values: Vec<Sym> = e.values.iter().flatten().map(|v| interned.sym(v)).collect();
            let op = match e.operator.as_str() {
                "In" => SelectorOp::In,
                "NotIn" => SelectorOp::NotIn,
                "Exists" => SelectorOp::Exists,
                "DoesNotExist" => SelectorOp::DoesNotExist,
                other => {
                    return Err(err(
                        format!("{field}.operator"),
                        format!("{other:?} is not a valid label selector operator"),
                    ))
                }
            };
            let needs_values = matches!(op, SelectorOp::In | SelectorOp::NotIn);
            if needs_values == values.is_empty() {
                return Err(err(
                    format!("{field}.values"),
                    if needs_values {
                        format!("must be non-empty for {}", e.operator)
                    } else {
                        format!("must be empty for {}", e.operator)
                    },
                ));
            }
            selector.requirements.push(Requirement {
                key: Sym::new(&e.key),
                op,
                values,
                number: 0,
            });
        }
    }
    let status = pdb.status.as_ref();
    Ok(Pdb {
        namespace: Sym::new(namespace),
        name: name.to_owned(),
        selector,
        disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
        disrupted_pods: status
            .and_then(|s| s.disrupted_pods.as_ref())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        interned,
    })
}

/// Upstream's filterPodsWithPDBViolation: walks `pods` in order, spending each
/// matching budget; a pod whose eviction takes any budget below zero violates.
/// Returns one flag per pod.
pub fn violations<'a>(pods: impl Iterator<Item = &'a Pod>, pdbs: &[Pdb]) -> Vec<bool> {
    let mut allowed: Vec<i32> = pdbs.iter().map(|p| p.disruptions_allowed).collect();
    pods.map(|pod| {
        let mut violated = false;
        for (i, pdb) in pdbs.iter().enumerate() {
            if pdb.covers(pod) {
                allowed[i] -= 1;
                violated |= allowed[i] < 0;
            }
        }
        violated
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{pod, selector};

    fn k8s(yaml: &str) -> policy::PodDisruptionBudget {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn converts_selector_and_status() {
        let p = pdb_from_k8s(&k8s(r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: shop}
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: web}
    matchExpressions:
      - {key: tier, operator: NotIn, values: [batch]}
status:
  disruptionsAllowed: 1
  currentHealthy: 3
  desiredHealthy: 2
  expectedPods: 3
  observedGeneration: 1
  disruptedPods: {web-0: "2024-01-01T00:00:00Z"}
"#))
        .unwrap();
        assert_eq!(p.disruptions_allowed, 1);
        assert_eq!(p.namespace.as_str(), "shop");
        let web1 = pod("web-1", 1, 1)
            .namespace("shop")
            .label("app", "web")
            .build();
        let web0 = pod("web-0", 1, 1)
            .namespace("shop")
            .label("app", "web")
            .build();
        let other_ns = pod("web-1", 1, 1).label("app", "web").build();
        let batch = pod("b", 1, 1)
            .namespace("shop")
            .label("app", "web")
            .label("tier", "batch")
            .build();
        assert!(p.covers(&web1));
        assert!(!p.covers(&web0), "already disrupted");
        assert!(!p.covers(&other_ns));
        assert!(!p.covers(&batch));
    }

    #[test]
    fn bad_operator_is_an_error_naming_the_field() {
        let e = pdb_from_k8s(&k8s(r#"
metadata: {name: x, namespace: ns}
spec:
  selector:
    matchExpressions:
      - {key: a, operator: Gt, values: ["1"]}
"#))
        .unwrap_err();
        assert_eq!(e.field, "spec.selector.matchExpressions[0].operator");
        assert!(e.to_string().contains("ns/x"));
    }

    #[test]
    fn empty_selector_matches_nothing() {
        let p = Pdb::new("default", "all", LabelSelector::default(), 0);
        assert!(!p.covers(&pod("a", 1, 1).label("x", "y").build()));
    }

    #[test]
    fn budget_is_spent_in_order() {
        let pdbs = [Pdb::new("default", "b", selector(&[("app", "a")]), 1)];
        let pods = [
            pod("a1", 1, 1).label("app", "a").build(),
            pod("z", 1, 1).label("app", "z").build(),
            pod("a2", 1, 1).label("app", "a").build(),
        ];
        assert_eq!(violations(pods.iter(), &pdbs), vec![false, false, true]);
    }
}
