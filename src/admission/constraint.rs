//! The node constraint that restricts a pod to some capacity types on a given
//! provider, and the two ways to put it on a pod: a JSON Patch for a Kubernetes
//! `Pod` (the admission webhook) and a direct edit of the model's [`Pod`] (the
//! simulator). No Kubernetes client, no HTTP: pure functions of the pod, the
//! provider and the capacity-type label rules the scheduler classifies nodes with.
//!
//! An autoscaler launches capacity from a pending pod's own constraints, so a
//! capacity type the scheduler wants has to be written where the autoscaler
//! reads it: node affinity on the provider's capacity label, plus the
//! toleration for the taint the provider puts on that capacity. The values come
//! from [`CapacityRules`]: a type the rules label on the provider's keys is
//! `key In [values]`; the rules' default type (on-demand) is `key NotIn [the
//! other types' values]` on each of the keys, exactly the nodes the scheduler
//! classifies as that type, whether the provider labels them (Karpenter's
//! `on-demand`, and its `reserved` which no rule names) or not (GKE, AKS).

use crate::model::capacity::CapacityRules;
use crate::model::{
    Labels, NodeSelectorTerm, Pod, PreferredTerm, Requirement, SelectorOp, Sym, TaintEffect,
    Toleration, TolerationOp,
};
use k8s_openapi::api::core::v1 as core;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;
use thiserror::Error;

/// Who creates nodes for pending pods, which decides the labels and taints that
/// mark capacity types. Config: `admission.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Karpenter (EKS, EKS Auto Mode, AKS node auto-provisioning): `karpenter.sh/capacity-type`.
    #[default]
    Karpenter,
    /// EKS managed node groups under cluster-autoscaler: `eks.amazonaws.com/capacityType`.
    #[serde(alias = "eks")]
    EksManagedNodeGroups,
    /// GKE node pools, cluster autoscaler and node auto-provisioning: `cloud.google.com/gke-spot`.
    Gke,
    /// AKS node pools under cluster-autoscaler: `kubernetes.azure.com/scalesetpriority`.
    Aks,
    /// Serverless virtual nodes (virtual-kubelet: ACI, and others): `type=virtual-kubelet`.
    #[serde(alias = "serverless")]
    VirtualKubelet,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Karpenter,
        Provider::EksManagedNodeGroups,
        Provider::Gke,
        Provider::Aks,
        Provider::VirtualKubelet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Karpenter => "karpenter",
            Provider::EksManagedNodeGroups => "eks-managed-node-groups",
            Provider::Gke => "gke",
            Provider::Aks => "aks",
            Provider::VirtualKubelet => "virtual-kubelet",
        }
    }

    /// The node labels the provider marks capacity with, the one its autoscaler
    /// is documented to read first.
    pub fn label_keys(self) -> &'static [&'static str] {
        match self {
            Provider::Karpenter => &["karpenter.sh/capacity-type"],
            Provider::EksManagedNodeGroups => &["eks.amazonaws.com/capacityType"],
            Provider::Gke => &[
                "cloud.google.com/gke-spot",
                "cloud.google.com/gke-provisioning",
            ],
            Provider::Aks => &["kubernetes.azure.com/scalesetpriority"],
            Provider::VirtualKubelet => &["type"],
        }
    }

    /// Taints the provider puts on nodes carrying `label = value`.
    fn taints(self) -> &'static [ProviderTaint] {
        match self {
            // GKE does not taint Spot nodes by itself; its documentation recommends a
            // `cloud.google.com/gke-spot=true:NoSchedule` taint on Spot pools, and
            // node auto-provisioning taints the Spot pools it creates for pods that
            // tolerate it. The toleration is harmless where the taint is absent.
            Provider::Gke => &[ProviderTaint {
                label: "cloud.google.com/gke-spot",
                value: "true",
                key: "cloud.google.com/gke-spot",
                operator: TolerationOp::Equal,
                taint_value: "true",
            }],
            // AKS taints every Spot node pool `kubernetes.azure.com/scalesetpriority=spot:NoSchedule`.
            Provider::Aks => &[ProviderTaint {
                label: "kubernetes.azure.com/scalesetpriority",
                value: "spot",
                key: "kubernetes.azure.com/scalesetpriority",
                operator: TolerationOp::Equal,
                taint_value: "spot",
            }],
            // virtual-kubelet taints its node `virtual-kubelet.io/provider=<provider>:NoSchedule`,
            // the value naming the backend (azure, ...): tolerate any.
            Provider::VirtualKubelet => &[ProviderTaint {
                label: "type",
                value: "virtual-kubelet",
                key: "virtual-kubelet.io/provider",
                operator: TolerationOp::Exists,
                taint_value: "",
            }],
            Provider::Karpenter | Provider::EksManagedNodeGroups => &[],
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Nodes labelled `label = value` carry a NoSchedule taint `key` tolerated by
/// (`operator`, `taint_value`).
struct ProviderTaint {
    label: &'static str,
    value: &'static str,
    key: &'static str,
    operator: TolerationOp,
    taint_value: &'static str,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConstraintError {
    #[error("unknown capacity type {ty:?} (known: {known})")]
    UnknownType { ty: String, known: String },
    #[error(
        "capacity type {ty:?} has no label rule on {provider}'s capacity labels ({keys}) and is \
         not the default type {default:?}: add a capacityTypes rule for it or choose another \
         admission.provider"
    )]
    NoLabel {
        ty: String,
        provider: Provider,
        keys: String,
        default: String,
    },
    #[error(
        "capacity types {types} are labelled on different keys ({keys}) on {provider}: one node \
         selector term cannot allow them together"
    )]
    SplitKeys {
        types: String,
        provider: Provider,
        keys: String,
    },
    #[error("no capacity type given")]
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RequirementOp {
    In,
    NotIn,
}

impl RequirementOp {
    pub fn as_str(self) -> &'static str {
        match self {
            RequirementOp::In => "In",
            RequirementOp::NotIn => "NotIn",
        }
    }

    fn selector_op(self) -> SelectorOp {
        match self {
            RequirementOp::In => SelectorOp::In,
            RequirementOp::NotIn => SelectorOp::NotIn,
        }
    }
}

/// One `matchExpressions` entry of a node selector term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRequirement {
    pub key: String,
    pub operator: RequirementOp,
    /// Never empty.
    pub values: Vec<String>,
}

/// A toleration for a NoSchedule taint (`value` empty with `Exists`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TolerationSpec {
    pub key: String,
    pub operator: TolerationOp,
    pub value: String,
    pub effect: TaintEffect,
}

/// What restricts a pod to some capacity types on one provider.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CapacityConstraint {
    /// ANDed into node selector terms; empty when every node qualifies.
    pub requirements: Vec<NodeRequirement>,
    /// Appended to the pod's tolerations where none covers them already.
    pub tolerations: Vec<TolerationSpec>,
}

impl CapacityConstraint {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && self.tolerations.is_empty()
    }
}

/// How the constraint binds: a required term (the autoscaler launches only
/// that capacity, the scheduler places only there) or a preferred one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Required,
    Preferred { weight: i32 },
}

/// The requirements and tolerations that restrict a pod to `types` on `provider`.
pub fn capacity_constraint(
    types: &[&str],
    provider: Provider,
    rules: &CapacityRules,
) -> Result<CapacityConstraint, ConstraintError> {
    if types.is_empty() {
        return Err(ConstraintError::Empty);
    }
    let known = rules.known_types();
    for ty in types {
        if !known.iter().any(|k| k == ty) {
            return Err(ConstraintError::UnknownType {
                ty: (*ty).to_owned(),
                known: known.join(", "),
            });
        }
    }
    let keys = provider.label_keys();
    // Values of `key` the rules map to a type (rule order, no repeats).
    let values_on = |key: &str, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in rules.rules.iter().filter(|r| r.label == key) {
            if keep(&r.capacity_type) && !v.contains(&r.value) {
                v.push(r.value.clone());
            }
        }
        v
    };
    let mut requirements = Vec::new();
    if types.contains(&rules.default.as_str()) {
        // The default type is every node the rules label as no other type: on
        // each key, NotIn the values of the types not asked for. (Where the
        // provider labels the default type too, this still admits nodes outside
        // its rules, as the scheduler's classification does.)
        for &k in keys {
            let others = values_on(k, &|t| !types.contains(&t));
            if !others.is_empty() {
                requirements.push(NodeRequirement {
                    key: k.to_owned(),
                    operator: RequirementOp::NotIn,
                    values: others,
                });
            }
        }
    } else {
        // Other types: In their values on the first provider key labelling them.
        let mut key: Option<&str> = None;
        let mut values: Vec<String> = Vec::new();
        for ty in types {
            let Some((k, v)) = keys.iter().find_map(|&k| {
                let v = values_on(k, &|t| t == *ty);
                (!v.is_empty()).then_some((k, v))
            }) else {
                return Err(ConstraintError::NoLabel {
                    ty: (*ty).to_owned(),
                    provider,
                    keys: keys.join(", "),
                    default: rules.default.clone(),
                });
            };
            if key.is_some_and(|prev| prev != k) {
                return Err(ConstraintError::SplitKeys {
                    types: types.join(", "),
                    provider,
                    keys: keys.join(", "),
                });
            }
            key = Some(k);
            for value in v {
                if !values.contains(&value) {
                    values.push(value);
                }
            }
        }
        if let Some(k) = key {
            requirements.push(NodeRequirement {
                key: k.to_owned(),
                operator: RequirementOp::In,
                values,
            });
        }
    }
    let tolerations = provider
        .taints()
        .iter()
        .filter(|t| {
            let ty = rules.classify(&Labels::from_pairs([(t.label, t.value)]));
            types.contains(&ty.as_str())
        })
        .map(|t| TolerationSpec {
            key: t.key.to_owned(),
            operator: t.operator,
            value: t.taint_value.to_owned(),
            effect: TaintEffect::NoSchedule,
        })
        .collect();
    Ok(CapacityConstraint {
        requirements,
        tolerations,
    })
}

// ---------------------------------------------------------------------------
// Applying to the model's pod (the simulator).

fn model_requirement(r: &NodeRequirement) -> Requirement {
    Requirement {
        key: Sym::new(&r.key),
        op: r.operator.selector_op(),
        values: r.values.iter().map(|v| Sym::new(v)).collect(),
        number: 0,
    }
}

/// Same key, operator and set of values.
fn same_model_requirement(a: &Requirement, b: &Requirement) -> bool {
    a.key == b.key
        && a.op == b.op
        && a.values.len() == b.values.len()
        && a.values.iter().all(|v| b.values.contains(v))
}

fn model_toleration(t: &TolerationSpec) -> Toleration {
    Toleration {
        key: Some(Sym::new(&t.key)),
        op: t.operator,
        value: Sym::new(&t.value),
        effect: Some(t.effect),
    }
}

/// Puts the constraint on a model pod with the effect the JSON Patch of
/// [`pod_patch`] has on the Kubernetes pod it was converted from.
pub fn apply_to_model(pod: &mut Pod, c: &CapacityConstraint, placement: Placement) {
    let wanted: Vec<Requirement> = c.requirements.iter().map(model_requirement).collect();
    if !wanted.is_empty() {
        match placement {
            Placement::Required => match &mut pod.node_affinity.required {
                Some(terms) if !terms.is_empty() => {
                    for term in terms.iter_mut() {
                        for w in &wanted {
                            if !term
                                .match_expressions
                                .iter()
                                .any(|r| same_model_requirement(r, w))
                            {
                                term.match_expressions.push(w.clone());
                            }
                        }
                    }
                }
                slot => {
                    *slot = Some(vec![NodeSelectorTerm {
                        match_expressions: wanted,
                        match_fields: Vec::new(),
                        valid: true,
                    }]);
                }
            },
            Placement::Preferred { weight } => {
                let present = pod.node_affinity.preferred.iter().any(|p| {
                    p.weight == weight
                        && p.term.match_fields.is_empty()
                        && p.term.match_expressions.len() == wanted.len()
                        && wanted.iter().all(|w| {
                            p.term
                                .match_expressions
                                .iter()
                                .any(|r| same_model_requirement(r, w))
                        })
                });
                if !present {
                    pod.node_affinity.preferred.push(PreferredTerm {
                        weight,
                        term: NodeSelectorTerm {
                            match_expressions: wanted,
                            match_fields: Vec::new(),
                            valid: true,
                        },
                    });
                }
            }
        }
    }
    for t in &c.tolerations {
        let covered = pod.tolerations.iter().any(|have| {
            covers(
                have.key.map(Sym::as_str),
                have.op,
                have.value.as_str(),
                have.effect,
                t,
            )
        });
        if !covered {
            pod.tolerations.push(model_toleration(t));
        }
    }
}

/// Whether an existing toleration tolerates every taint `want` is meant for.
fn covers(
    key: Option<&str>,
    op: TolerationOp,
    value: &str,
    effect: Option<TaintEffect>,
    want: &TolerationSpec,
) -> bool {
    effect.is_none_or(|e| e == want.effect)
        && key.is_none_or(|k| k == want.key)
        && match op {
            TolerationOp::Exists => true,
            TolerationOp::Equal => want.operator == TolerationOp::Equal && value == want.value,
        }
}

// ---------------------------------------------------------------------------
// Applying to a Kubernetes pod (the webhook).

/// One RFC 6902 `add` operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddOp {
    pub op: &'static str,
    pub path: String,
    pub value: Value,
}

fn add(path: impl Into<String>, value: Value) -> AddOp {
    AddOp {
        op: "add",
        path: path.into(),
        value,
    }
}

fn requirement_json(r: &NodeRequirement) -> Value {
    json!({"key": r.key, "operator": r.operator.as_str(), "values": r.values})
}

fn toleration_json(t: &TolerationSpec) -> Value {
    match t.operator {
        TolerationOp::Exists => {
            json!({"key": t.key, "operator": "Exists", "effect": t.effect.as_str()})
        }
        TolerationOp::Equal => json!({
            "key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect.as_str()
        }),
    }
}

/// Same key, operator and set of values (a missing list is empty).
fn same_k8s_requirement(have: &core::NodeSelectorRequirement, want: &NodeRequirement) -> bool {
    let values = have.values.as_deref().unwrap_or(&[]);
    have.key == want.key
        && have.operator == want.operator.as_str()
        && values.len() == want.values.len()
        && values.iter().all(|v| want.values.contains(v))
}

const NODE_AFFINITY: &str = "/spec/affinity/nodeAffinity";
const REQUIRED_FIELD: &str = "requiredDuringSchedulingIgnoredDuringExecution";
const PREFERRED_FIELD: &str = "preferredDuringSchedulingIgnoredDuringExecution";

/// The JSON Patch that puts the constraint on `pod`: required, the requirements
/// ANDed into every existing node selector term (terms are ORed, so each must
/// carry them) or one new term; preferred, one new weighted term; tolerations
/// appended where none covers them. Empty when the pod already carries it all,
/// so a reinvoked webhook changes nothing.
pub fn pod_patch(pod: &core::Pod, c: &CapacityConstraint, placement: Placement) -> Vec<AddOp> {
    let mut ops = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return ops;
    };
    let affinity = spec.affinity.as_ref();
    let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
    // Adds `field: value` under nodeAffinity, creating what is missing above it.
    let nest = |field: &str, value: Value| -> AddOp {
        match (affinity, node_affinity) {
            (_, Some(_)) => add(format!("{NODE_AFFINITY}/{field}"), value),
            (Some(_), None) => add(NODE_AFFINITY, json!({ field: value })),
            (None, None) => add("/spec/affinity", json!({"nodeAffinity": { field: value }})),
        }
    };
    if !c.requirements.is_empty() {
        let exprs: Vec<Value> = c.requirements.iter().map(requirement_json).collect();
        match placement {
            Placement::Required => {
                let terms = node_affinity
                    .and_then(|n| {
                        n.required_during_scheduling_ignored_during_execution
                            .as_ref()
                    })
                    .map(|r| r.node_selector_terms.as_slice())
                    .filter(|t| !t.is_empty());
                let Some(terms) = terms else {
                    ops.push(nest(
                        REQUIRED_FIELD,
                        json!({"nodeSelectorTerms": [{"matchExpressions": exprs}]}),
                    ));
                    return with_tolerations(ops, spec, c);
                };
                for (i, term) in terms.iter().enumerate() {
                    let path = format!(
                        "{NODE_AFFINITY}/{REQUIRED_FIELD}/nodeSelectorTerms/{i}/matchExpressions"
                    );
                    let have = term.match_expressions.as_deref();
                    let missing: Vec<Value> = c
                        .requirements
                        .iter()
                        .filter(|w| {
                            !have
                                .unwrap_or(&[])
                                .iter()
                                .any(|h| same_k8s_requirement(h, w))
                        })
                        .map(requirement_json)
                        .collect();
                    if missing.is_empty() {
                        continue;
                    }
                    if have.is_none() {
                        ops.push(add(path, Value::Array(missing)));
                    } else {
                        for m in missing {
                            ops.push(add(format!("{path}/-"), m));
                        }
                    }
                }
            }
            Placement::Preferred { weight } => {
                let preferred = node_affinity.and_then(|n| {
                    n.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                });
                let present = preferred.is_some_and(|p| {
                    p.iter().any(|t| {
                        let have = t.preference.match_expressions.as_deref().unwrap_or(&[]);
                        t.weight == weight
                            && t.preference.match_fields.as_ref().is_none_or(Vec::is_empty)
                            && have.len() == c.requirements.len()
                            && c.requirements
                                .iter()
                                .all(|w| have.iter().any(|h| same_k8s_requirement(h, w)))
                    })
                });
                let term = json!({"weight": weight, "preference": {"matchExpressions": exprs}});
                match preferred {
                    _ if present => {}
                    Some(_) => ops.push(add(format!("{NODE_AFFINITY}/{PREFERRED_FIELD}/-"), term)),
                    None => ops.push(nest(PREFERRED_FIELD, json!([term]))),
                }
            }
        }
    }
    with_tolerations(ops, spec, c)
}

/// Appends to `ops` the tolerations of `c` that none of the pod's covers.
fn with_tolerations(
    mut ops: Vec<AddOp>,
    spec: &core::PodSpec,
    c: &CapacityConstraint,
) -> Vec<AddOp> {
    let have = spec.tolerations.as_deref();
    let missing: Vec<Value> = c
        .tolerations
        .iter()
        .filter(|want| !have.unwrap_or(&[]).iter().any(|t| k8s_covers(t, want)))
        .map(toleration_json)
        .collect();
    if !missing.is_empty() {
        if have.is_none() {
            ops.push(add("/spec/tolerations", Value::Array(missing)));
        } else {
            for m in missing {
                ops.push(add("/spec/tolerations/-", m));
            }
        }
    }
    ops
}

/// [`covers`] for a Kubernetes toleration; one whose operator or effect cannot
/// be read covers nothing (the API server rejects such a pod anyway).
fn k8s_covers(t: &core::Toleration, want: &TolerationSpec) -> bool {
    let op = match t.operator.as_deref() {
        None | Some("") | Some("Equal") => TolerationOp::Equal,
        Some("Exists") => TolerationOp::Exists,
        Some(_) => return false,
    };
    let effect = match t.effect.as_deref() {
        None | Some("") => None,
        Some(e) => match TaintEffect::parse(e) {
            Some(e) => Some(e),
            None => return false,
        },
    };
    let key = t.key.as_deref().filter(|k| !k.is_empty());
    covers(key, op, t.value.as_deref().unwrap_or(""), effect, want)
}

#[cfg(test)]
mod tests;
