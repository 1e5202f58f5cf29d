use super::*;
use crate::model::capacity::{CapacityRule, ON_DEMAND, SERVERLESS, SPOT};
use crate::model::{pod_from_k8s, Node, Taint};
use crate::testkit::{node, pod, GI};
use proptest::prelude::*;

fn rules() -> CapacityRules {
    CapacityRules::default()
}

fn req(key: &str, op: RequirementOp, values: &[&str]) -> NodeRequirement {
    NodeRequirement {
        key: key.into(),
        operator: op,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

fn tol(key: &str, op: TolerationOp, value: &str) -> TolerationSpec {
    TolerationSpec {
        key: key.into(),
        operator: op,
        value: value.into(),
        effect: TaintEffect::NoSchedule,
    }
}

use RequirementOp::{In, NotIn};

/// Provider, types, expected requirements and tolerations.
type Case = (
    Provider,
    Vec<&'static str>,
    Vec<NodeRequirement>,
    Vec<TolerationSpec>,
);

#[test]
fn per_provider_table() {
    let aks_spot = tol(
        "kubernetes.azure.com/scalesetpriority",
        TolerationOp::Equal,
        "spot",
    );
    let gke_spot = tol("cloud.google.com/gke-spot", TolerationOp::Equal, "true");
    let vk = tol("virtual-kubelet.io/provider", TolerationOp::Exists, "");
    let cases: Vec<Case> = vec![
        (
            Provider::Karpenter,
            vec![SPOT],
            vec![req("karpenter.sh/capacity-type", In, &["spot"])],
            vec![],
        ),
        (
            Provider::Karpenter,
            vec![ON_DEMAND],
            vec![req("karpenter.sh/capacity-type", NotIn, &["spot"])],
            vec![],
        ),
        (Provider::Karpenter, vec![ON_DEMAND, SPOT], vec![], vec![]),
        (
            Provider::EksManagedNodeGroups,
            vec![SPOT],
            vec![req("eks.amazonaws.com/capacityType", In, &["SPOT"])],
            vec![],
        ),
        (
            Provider::EksManagedNodeGroups,
            vec![ON_DEMAND],
            vec![req("eks.amazonaws.com/capacityType", NotIn, &["SPOT"])],
            vec![],
        ),
        (
            Provider::Gke,
            vec![SPOT],
            vec![req("cloud.google.com/gke-spot", In, &["true"])],
            vec![gke_spot.clone()],
        ),
        (
            Provider::Gke,
            vec![ON_DEMAND],
            vec![
                req("cloud.google.com/gke-spot", NotIn, &["true"]),
                req("cloud.google.com/gke-provisioning", NotIn, &["spot"]),
            ],
            vec![],
        ),
        (
            Provider::Aks,
            vec![SPOT],
            vec![req("kubernetes.azure.com/scalesetpriority", In, &["spot"])],
            vec![aks_spot.clone()],
        ),
        (
            Provider::Aks,
            vec![ON_DEMAND],
            vec![req(
                "kubernetes.azure.com/scalesetpriority",
                NotIn,
                &["spot"],
            )],
            vec![],
        ),
        // Both: every AKS node qualifies; spot's taint must still be tolerated.
        (Provider::Aks, vec![ON_DEMAND, SPOT], vec![], vec![aks_spot]),
        (
            Provider::VirtualKubelet,
            vec![SERVERLESS],
            vec![req("type", In, &["virtual-kubelet"])],
            vec![vk],
        ),
        (
            Provider::VirtualKubelet,
            vec![ON_DEMAND],
            vec![req("type", NotIn, &["virtual-kubelet"])],
            vec![],
        ),
    ];
    for (provider, types, requirements, tolerations) in cases {
        let got = capacity_constraint(&types, provider, &rules());
        assert_eq!(
            got,
            Ok(CapacityConstraint {
                requirements,
                tolerations
            }),
            "{provider} {types:?}"
        );
    }
}

#[test]
fn errors_name_the_type_and_the_provider() {
    let e = capacity_constraint(&[SERVERLESS], Provider::Karpenter, &rules()).unwrap_err();
    assert!(matches!(e, ConstraintError::NoLabel { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("\"serverless\""), "{msg}");
    assert!(
        msg.contains("karpenter's capacity labels (karpenter.sh/capacity-type)"),
        "{msg}"
    );
    // Spot on virtual nodes: not a type the provider labels, not the default.
    assert!(capacity_constraint(&[SPOT], Provider::VirtualKubelet, &rules()).is_err());
    let e = capacity_constraint(&["cheap"], Provider::Karpenter, &rules()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown capacity type \"cheap\" (known: spot, on-demand, serverless)"
    );
    assert_eq!(
        capacity_constraint(&[], Provider::Karpenter, &rules()),
        Err(ConstraintError::Empty)
    );
    // Custom rules labelling two types on different GKE keys.
    let mut r = rules();
    r.rules.push(CapacityRule {
        label: "cloud.google.com/gke-provisioning".into(),
        value: "preemptible".into(),
        capacity_type: "preemptible".into(),
    });
    let e = capacity_constraint(&[SPOT, "preemptible"], Provider::Gke, &r).unwrap_err();
    assert!(matches!(e, ConstraintError::SplitKeys { .. }), "{e}");
    // ... while each alone is fine, on its own key, and on-demand excludes both.
    assert_eq!(
        capacity_constraint(&["preemptible"], Provider::Gke, &r)
            .unwrap()
            .requirements,
        vec![req(
            "cloud.google.com/gke-provisioning",
            In,
            &["preemptible"]
        )]
    );
    assert_eq!(
        capacity_constraint(&[ON_DEMAND], Provider::Gke, &r)
            .unwrap()
            .requirements,
        vec![
            req("cloud.google.com/gke-spot", NotIn, &["true"]),
            req(
                "cloud.google.com/gke-provisioning",
                NotIn,
                &["spot", "preemptible"]
            ),
        ]
    );
}

/// Nodes as each provider labels and taints them, with the type the rules give.
fn provider_nodes(provider: Provider) -> Vec<Node> {
    let n = |name: &str| node(name, 4000, 16 * GI);
    let nodes = match provider {
        Provider::Karpenter => vec![
            n("spot").label("karpenter.sh/capacity-type", "spot"),
            n("od").label("karpenter.sh/capacity-type", "on-demand"),
            n("reserved").label("karpenter.sh/capacity-type", "reserved"),
        ],
        Provider::EksManagedNodeGroups => vec![
            n("spot").label("eks.amazonaws.com/capacityType", "SPOT"),
            n("od").label("eks.amazonaws.com/capacityType", "ON_DEMAND"),
        ],
        Provider::Gke => vec![
            n("spot")
                .label("cloud.google.com/gke-spot", "true")
                .label("cloud.google.com/gke-provisioning", "spot")
                .taint("cloud.google.com/gke-spot", "true", TaintEffect::NoSchedule),
            n("spot-untainted").label("cloud.google.com/gke-spot", "true"),
            n("od").label("cloud.google.com/gke-provisioning", "standard"),
            n("od-old"),
        ],
        Provider::Aks => vec![
            n("spot")
                .label("kubernetes.azure.com/scalesetpriority", "spot")
                .taint(
                    "kubernetes.azure.com/scalesetpriority",
                    "spot",
                    TaintEffect::NoSchedule,
                ),
            n("od"),
        ],
        Provider::VirtualKubelet => vec![
            n("virtual").label("type", "virtual-kubelet").taint(
                "virtual-kubelet.io/provider",
                "azure",
                TaintEffect::NoSchedule,
            ),
            n("od"),
        ],
    };
    nodes.into_iter().map(|b| b.build()).collect()
}

fn fits(pod: &Pod, node: &Node) -> bool {
    pod.matches_required_affinity(node) && pod.first_untolerated_hard_taint(node).is_none()
}

/// A pod given the required constraint for a set of types lands exactly on the
/// nodes the scheduler classifies as one of them, on every provider.
#[test]
fn required_constraint_selects_exactly_the_classified_nodes() {
    let rules = rules();
    let all = rules.known_types();
    for provider in Provider::ALL {
        let nodes = provider_nodes(provider);
        for mask in 1u32..(1 << all.len()) {
            let types: Vec<&str> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, t)| t.as_str())
                .collect();
            let Ok(c) = capacity_constraint(&types, provider, &rules) else {
                continue;
            };
            let mut p = pod("p", 100, GI).build();
            apply_to_model(&mut p, &c, Placement::Required);
            for n in &nodes {
                let ty = rules.classify(&n.labels);
                assert_eq!(
                    fits(&p, n),
                    types.contains(&ty.as_str()),
                    "{provider} {types:?} node {} ({ty})",
                    n.name
                );
            }
        }
    }
}

#[test]
fn model_apply_ands_into_every_term_and_is_idempotent() {
    let c = capacity_constraint(&[SPOT], Provider::Karpenter, &rules()).unwrap();
    let zone = |z: &str| NodeSelectorTerm {
        match_expressions: vec![Requirement {
            key: Sym::new("zone"),
            op: SelectorOp::In,
            values: vec![Sym::new(z)],
            number: 0,
        }],
        match_fields: vec![],
        valid: true,
    };
    let mut p = pod("p", 100, GI).build();
    p.node_affinity.required = Some(vec![zone("a"), zone("b")]);
    apply_to_model(&mut p, &c, Placement::Required);
    let once = p.clone();
    apply_to_model(&mut p, &c, Placement::Required);
    assert_eq!(p, once);
    let terms = p.node_affinity.required.as_ref().unwrap();
    assert_eq!(terms.len(), 2);
    for (t, z) in terms.iter().zip(["a", "b"]) {
        assert_eq!(t.match_expressions.len(), 2);
        assert_eq!(t.match_expressions[0], zone(z).match_expressions[0]);
        assert_eq!(
            t.match_expressions[1].key.as_str(),
            "karpenter.sh/capacity-type"
        );
    }
    // Preferred: one term with the weight, once.
    let mut p = pod("p", 100, GI).build();
    apply_to_model(&mut p, &c, Placement::Preferred { weight: 40 });
    apply_to_model(&mut p, &c, Placement::Preferred { weight: 40 });
    assert_eq!(p.node_affinity.preferred.len(), 1);
    assert_eq!(p.node_affinity.preferred[0].weight, 40);
    assert!(p.node_affinity.required.is_none());
}

#[test]
fn patch_on_a_bare_pod() {
    let c = capacity_constraint(&[SPOT], Provider::Aks, &rules()).unwrap();
    let p: core::Pod = serde_json::from_value(json!({
        "metadata": {"name": "e", "namespace": "ns"},
        "spec": {"containers": [{"name": "c"}]}
    }))
    .unwrap();
    let ops = serde_json::to_value(pod_patch(&p, &c, Placement::Required)).unwrap();
    assert_eq!(
        ops,
        json!([
            {"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.azure.com/scalesetpriority",
                                           "operator": "In", "values": ["spot"]}]}
                ]}
            }}},
            {"op": "add", "path": "/spec/tolerations", "value": [
                {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal",
                 "value": "spot", "effect": "NoSchedule"}
            ]}
        ])
    );
}

// ---------------------------------------------------------------------------
// The JSON Patch and the model edit agree, on arbitrary pods.

fn apply_patch(pod: &core::Pod, ops: &[AddOp]) -> core::Pod {
    let mut doc = serde_json::to_value(pod).unwrap();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::to_value(ops).unwrap())
        .expect("ops deserialize as a JSON Patch");
    json_patch::patch(&mut doc, &patch).expect("patch applies");
    serde_json::from_value(doc).expect("patched pod deserializes")
}

fn expr_pool() -> Vec<Value> {
    vec![
        json!({"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}),
        json!({"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}),
        json!({"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand", "spot"]}),
        json!({"key": "kubernetes.azure.com/scalesetpriority", "operator": "NotIn", "values": ["spot"]}),
        json!({"key": "cloud.google.com/gke-spot", "operator": "In", "values": ["true"]}),
        json!({"key": "disk", "operator": "Exists"}),
    ]
}

fn toleration_pool() -> Vec<Value> {
    vec![
        json!({"operator": "Exists"}),
        json!({"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule"}),
        json!({"key": "kubernetes.azure.com/scalesetpriority", "operator": "Exists"}),
        json!({"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "azure", "effect": "NoSchedule"}),
        json!({"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "false", "effect": "NoSchedule"}),
        json!({"key": "dedicated", "value": "spark", "effect": "NoExecute"}),
    ]
}

fn exprs() -> impl Strategy<Value = Option<Vec<Value>>> {
    proptest::option::of(proptest::sample::subsequence(expr_pool(), 0..=3))
}

#[derive(Debug, Clone)]
struct PodCase {
    /// 0: no affinity, 1: affinity without nodeAffinity, 2: nodeAffinity.
    depth: u8,
    required: Option<Vec<(Option<Vec<Value>>, bool)>>,
    preferred: Option<Vec<(i32, Option<Vec<Value>>)>>,
    tolerations: Option<Vec<Value>>,
    provider: Provider,
    types: Vec<String>,
    placement: Placement,
}

fn case() -> impl Strategy<Value = PodCase> {
    let term = (exprs(), any::<bool>());
    let pref = (prop_oneof![Just(1), Just(40), Just(100)], exprs());
    (
        0u8..3,
        proptest::option::of(proptest::collection::vec(term, 0..3)),
        proptest::option::of(proptest::collection::vec(pref, 0..3)),
        proptest::option::of(proptest::sample::subsequence(toleration_pool(), 0..=3)),
        proptest::sample::select(Provider::ALL.to_vec()),
        proptest::sample::subsequence(vec![SPOT, ON_DEMAND, SERVERLESS], 1..=3),
        prop_oneof![
            Just(Placement::Required),
            Just(Placement::Preferred { weight: 100 }),
            Just(Placement::Preferred { weight: 40 }),
        ],
    )
        .prop_map(
            |(depth, required, preferred, tolerations, provider, types, placement)| PodCase {
                depth,
                required,
                preferred,
                tolerations,
                provider,
                types: types.into_iter().map(String::from).collect(),
                placement,
            },
        )
}

fn k8s_pod(c: &PodCase) -> core::Pod {
    let mut spec = json!({"containers": [{"name": "c"}]});
    if c.depth >= 1 {
        spec["affinity"] = json!({});
    }
    if c.depth >= 2 {
        let mut na = json!({});
        if let Some(req) = &c.required {
            let terms: Vec<Value> = req
                .iter()
                .map(|(e, fields)| {
                    let mut t = json!({});
                    if let Some(e) = e {
                        t["matchExpressions"] = json!(e);
                    }
                    if *fields {
                        t["matchFields"] =
                            json!([{"key": "metadata.name", "operator": "In", "values": ["n1"]}]);
                    }
                    t
                })
                .collect();
            na["requiredDuringSchedulingIgnoredDuringExecution"] =
                json!({"nodeSelectorTerms": terms});
        }
        if let Some(pref) = &c.preferred {
            let terms: Vec<Value> = pref
                .iter()
                .map(|(w, e)| {
                    let mut pref = json!({});
                    if let Some(e) = e {
                        pref["matchExpressions"] = json!(e);
                    }
                    json!({"weight": w, "preference": pref})
                })
                .collect();
            na["preferredDuringSchedulingIgnoredDuringExecution"] = json!(terms);
        }
        spec["affinity"]["nodeAffinity"] = na;
    }
    if let Some(t) = &c.tolerations {
        spec["tolerations"] = json!(t);
    }
    serde_json::from_value(json!({
        "metadata": {"name": "e", "namespace": "ns", "labels": {"spark-role": "executor"}},
        "spec": spec
    }))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Patching the Kubernetes pod and converting it gives the pod the model
    /// edit gives; the patch is empty the second time (reinvocation); every
    /// term the pod had keeps its expressions and carries the requirements.
    #[test]
    fn patch_and_model_agree(case in case()) {
        let types: Vec<&str> = case.types.iter().map(String::as_str).collect();
        let Ok(c) = capacity_constraint(&types, case.provider, &rules()) else {
            return Ok(());
        };
        let original = k8s_pod(&case);
        let ops = pod_patch(&original, &c, case.placement);
        let patched = apply_patch(&original, &ops);
        let via_patch = pod_from_k8s(&patched, &()).unwrap();
        let mut via_model = pod_from_k8s(&original, &()).unwrap();
        apply_to_model(&mut via_model, &c, case.placement);
        prop_assert_eq!(&via_patch.node_affinity, &via_model.node_affinity);
        prop_assert_eq!(&via_patch.tolerations, &via_model.tolerations);
        prop_assert_eq!(&via_patch, &via_model);

        prop_assert!(pod_patch(&patched, &c, case.placement).is_empty());

        let before = original.spec.as_ref().and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|r| r.node_selector_terms.clone()).unwrap_or_default();
        let after = patched.spec.as_ref().and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|r| r.node_selector_terms.clone()).unwrap_or_default();
        if case.placement == Placement::Required && !c.requirements.is_empty() {
            prop_assert_eq!(after.len(), before.len().max(1));
            for (i, t) in after.iter().enumerate() {
                let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
                if let Some(b) = before.get(i) {
                    let had = b.match_expressions.as_deref().unwrap_or(&[]);
                    prop_assert_eq!(&exprs[..had.len()], had);
                    prop_assert_eq!(&t.match_fields, &b.match_fields);
                }
                for w in &c.requirements {
                    prop_assert!(exprs.iter().any(|h| same_k8s_requirement(h, w)));
                }
            }
        } else {
            prop_assert_eq!(after, before);
        }
    }
}

#[test]
fn pod_without_spec_gets_no_patch() {
    let c = capacity_constraint(&[SPOT], Provider::Karpenter, &rules()).unwrap();
    let p = core::Pod::default();
    assert!(pod_patch(&p, &c, Placement::Required).is_empty());
}

#[test]
fn taint_of_provider_nodes_is_what_tolerations_cover() {
    // The toleration each provider adds tolerates the taint its nodes carry.
    for provider in Provider::ALL {
        for n in provider_nodes(provider) {
            let ty = rules().classify(&n.labels);
            let Ok(c) = capacity_constraint(&[ty.as_str()], provider, &rules()) else {
                continue;
            };
            let mut p = pod("p", 100, GI).build();
            apply_to_model(&mut p, &c, Placement::Preferred { weight: 1 });
            let untolerated: Option<&Taint> = p.first_untolerated_hard_taint(&n);
            assert!(
                untolerated.is_none(),
                "{provider} {}: {untolerated:?}",
                n.name
            );
        }
    }
}
