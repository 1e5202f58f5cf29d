use super::filtering::PreFilterState;
use super::*;
use crate::framework::{
    Code, CycleState, FilterPlugin, PreFilterPlugin, PreScorePlugin, ScorePlugin,
};
use crate::model::TaintEffect;
use crate::model::{
    pod_from_k8s, InclusionPolicy, LabelSelector, Node, SelectorOp, TopologySpreadConstraint,
};
use crate::plugins::test_support::filter_all;
use crate::testkit::*;
use std::collections::BTreeMap;

const ZONE: &str = crate::model::LABEL_ZONE;
const HOST: &str = crate::model::LABEL_HOSTNAME;

fn snap(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
    crate::plugins::test_support::snapshot_of(nodes, pods)
}

fn zn(name: &str, zone: &str) -> Node {
    node(name, 1000, GI).zone(zone).build()
}

/// `n` pods labelled foo=bar on `on`, in namespace `default`.
fn foo_pods(prefix: &str, on: &str, n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| {
            pod(&format!("{prefix}-{on}-{i}"), 1, 1)
                .label("foo", "bar")
                .on(on)
                .build()
        })
        .collect()
}

fn foo() -> LabelSelector {
    selector(&[("foo", "bar")])
}

fn hard(max_skew: i32, key: &str) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: Sym::new(key),
        when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
        selector: Some(foo()),
        min_domains: None,
        node_affinity_policy: InclusionPolicy::Honor,
        node_taints_policy: InclusionPolicy::Ignore,
    }
}

fn soft(max_skew: i32, key: &str) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        when_unsatisfiable: WhenUnsatisfiable::ScheduleAnyway,
        ..hard(max_skew, key)
    }
}

fn incoming(cs: Vec<TopologySpreadConstraint>) -> PodBuilder {
    let mut b = pod("incoming", 1, 1).label("foo", "bar");
    for c in cs {
        b = b.constraint(c);
    }
    b
}

/// Names of the nodes passing the plugin's Filter.
fn passing(p: &Pod, s: &Snapshot) -> Vec<String> {
    let mut v: Vec<String> = filter_all(Some(&PodTopologySpread), &PodTopologySpread, p, s)
        .into_iter()
        .filter(|(_, st)| st.is_success())
        .map(|(n, _)| n)
        .collect();
    v.sort();
    v
}

fn four_nodes_two_zones() -> Vec<Node> {
    vec![zn("n1", "a"), zn("n2", "a"), zn("n3", "b"), zn("n4", "b")]
}

#[test]
fn filter_table() {
    let base_pods = || {
        [
            foo_pods("p", "n1", 1),
            foo_pods("p", "n2", 1),
            foo_pods("p", "n3", 1),
        ]
        .concat()
    };
    struct Case {
        name: &'static str,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        pod: Pod,
        want: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            // a=2, b=1: a would reach skew 2.
            name: "single zone constraint",
            nodes: four_nodes_two_zones(),
            pods: base_pods(),
            pod: incoming(vec![hard(1, ZONE)]).build(),
            want: vec!["n3", "n4"],
        },
        Case {
            name: "maxSkew 2 tolerates a",
            nodes: four_nodes_two_zones(),
            pods: base_pods(),
            pod: incoming(vec![hard(2, ZONE)]).build(),
            want: vec!["n1", "n2", "n3", "n4"],
        },
        Case {
            // The incoming pod does not match its own selector: it adds nothing.
            name: "selfMatch false",
            nodes: four_nodes_two_zones(),
            pods: base_pods(),
            pod: pod("incoming", 1, 1).constraint(hard(1, ZONE)).build(),
            want: vec!["n1", "n2", "n3", "n4"],
        },
        Case {
            // a=1, b=2 by zone; per host n1=1, n2=0, n3=1, n4=1.
            name: "zone and hostname",
            nodes: four_nodes_two_zones(),
            pods: [
                foo_pods("p", "n1", 1),
                foo_pods("p", "n3", 1),
                foo_pods("p", "n4", 1),
            ]
            .concat(),
            pod: incoming(vec![hard(1, ZONE), hard(1, HOST)]).build(),
            want: vec!["n2"],
        },
        Case {
            // Pods in zone b of another namespace must not lift b's count.
            name: "other namespaces ignored",
            nodes: four_nodes_two_zones(),
            pods: [
                base_pods(),
                (0..5)
                    .map(|i| {
                        pod(&format!("o{i}"), 1, 1)
                            .namespace("other")
                            .label("foo", "bar")
                            .on("n3")
                            .build()
                    })
                    .collect(),
            ]
            .concat(),
            pod: incoming(vec![hard(1, ZONE)]).build(),
            want: vec!["n3", "n4"],
        },
        Case {
            name: "terminating pods ignored",
            nodes: four_nodes_two_zones(),
            pods: [
                base_pods(),
                (0..2)
                    .map(|i| {
                        pod(&format!("t{i}"), 1, 1)
                            .label("foo", "bar")
                            .terminating()
                            .on("n3")
                            .build()
                    })
                    .collect(),
            ]
            .concat(),
            pod: incoming(vec![hard(1, ZONE)]).build(),
            want: vec!["n3", "n4"],
        },
        Case {
            // A label other than the selector's must not count either.
            name: "non-matching pods ignored",
            nodes: four_nodes_two_zones(),
            pods: [
                base_pods(),
                vec![pod("x", 1, 1).label("foo", "baz").on("n3").build()],
                vec![pod("y", 1, 1).label("foo", "baz").on("n4").build()],
            ]
            .concat(),
            pod: incoming(vec![hard(1, ZONE)]).build(),
            want: vec!["n3", "n4"],
        },
        Case {
            // n5 has no zone: rejected, and its pods do not make zone counts.
            name: "node missing the key",
            nodes: [four_nodes_two_zones(), vec![node("n5", 1000, GI).build()]].concat(),
            pods: [base_pods(), foo_pods("p", "n5", 3)].concat(),
            pod: incoming(vec![hard(1, ZONE)]).build(),
            want: vec!["n3", "n4"],
        },
        Case {
            // n5 is in zone b but lacks `rack`: upstream counts a node only when it
            // carries every constraint's key, so its 3 pods leave zone b at 1.
            name: "counting requires all keys",
            nodes: vec![
                node("n1", 1000, GI).zone("a").label("rack", "r1").build(),
                node("n3", 1000, GI).zone("b").label("rack", "r2").build(),
                node("n5", 1000, GI).zone("b").build(),
            ],
            pods: [
                foo_pods("p", "n1", 2),
                foo_pods("p", "n3", 1),
                foo_pods("p", "n5", 3),
            ]
            .concat(),
            pod: incoming(vec![hard(1, ZONE), hard(5, "rack")]).build(),
            want: vec!["n3"],
        },
        Case {
            // A nil selector matches no pod, not even the incoming one.
            name: "nil selector",
            nodes: four_nodes_two_zones(),
            pods: [foo_pods("p", "n1", 4)].concat(),
            pod: incoming(vec![TopologySpreadConstraint {
                selector: None,
                ..hard(1, ZONE)
            }])
            .build(),
            want: vec!["n1", "n2", "n3", "n4"],
        },
        Case {
            // Operator selectors (no equality hint) take the namespace scan path.
            name: "Exists selector",
            nodes: four_nodes_two_zones(),
            pods: base_pods(),
            pod: incoming(vec![TopologySpreadConstraint {
                selector: Some(LabelSelector {
                    requirements: vec![req("foo", SelectorOp::Exists, &[])],
                }),
                ..hard(1, ZONE)
            }])
            .build(),
            want: vec!["n3", "n4"],
        },
    ];
    for c in cases {
        let s = snap(c.nodes, c.pods);
        assert_eq!(passing(&c.pod, &s), c.want, "{}", c.name);
    }
}

#[test]
fn filter_reasons_and_codes() {
    let s = snap(
        [four_nodes_two_zones(), vec![node("bare", 1000, GI).build()]].concat(),
        [foo_pods("p", "n1", 2), foo_pods("p", "n3", 1)].concat(),
    );
    let p = incoming(vec![hard(1, ZONE)]).build();
    let got: BTreeMap<String, (Code, String)> =
        filter_all(Some(&PodTopologySpread), &PodTopologySpread, &p, &s)
            .into_iter()
            .map(|(n, st)| (n, (st.code, st.message())))
            .collect();
    assert_eq!(
        got["n1"],
        (
            Code::Unschedulable,
            ERR_REASON_CONSTRAINTS_NOT_MATCH.to_string()
        )
    );
    assert_eq!(
        got["bare"],
        (
            Code::UnschedulableAndUnresolvable,
            "node(s) didn't match pod topology spread constraints (missing required label)"
                .to_string()
        )
    );
    assert_eq!(got["n3"].0, Code::Success);
    let st = PodTopologySpread.filter(&CycleState::default(), &p, &s, 0);
    assert_eq!(
        st.code,
        Code::Error,
        "hard constraints but no PreFilter state"
    );
}

#[test]
fn node_affinity_policy() {
    // Pool x = zones a, b; zone c is outside the pod's nodeSelector.
    let nodes = vec![
        node("n1", 1000, GI).zone("a").label("pool", "x").build(),
        node("n2", 1000, GI).zone("b").label("pool", "x").build(),
        node("n3", 1000, GI).zone("c").build(),
    ];
    let pods = [foo_pods("p", "n1", 1), foo_pods("p", "n2", 1)].concat();
    let s = snap(nodes, pods);
    for (policy, want) in [
        // Honor: zone c is not a domain, min = 1: everything within skew.
        (InclusionPolicy::Honor, vec!["n1", "n2", "n3"]),
        // Ignore: zone c (0 pods) sets min = 0.
        (InclusionPolicy::Ignore, vec!["n3"]),
    ] {
        let p = incoming(vec![TopologySpreadConstraint {
            node_affinity_policy: policy,
            ..hard(1, ZONE)
        }])
        .node_selector("pool", "x")
        .build();
        assert_eq!(passing(&p, &s), want, "{policy:?}");
    }
    // Required node affinity terms are honoured the same way as nodeSelector.
    let p = incoming(vec![hard(1, ZONE)])
        .required_terms(vec![term(vec![req("pool", SelectorOp::In, &["x"])])])
        .build();
    assert_eq!(passing(&p, &s), vec!["n1", "n2", "n3"]);
}

#[test]
fn node_taints_policy() {
    let build = |effect: Option<TaintEffect>| {
        let mut n3 = node("n3", 1000, GI).zone("c");
        if let Some(e) = effect {
            n3 = n3.taint("dedicated", "gpu", e);
        }
        snap(
            vec![zn("n1", "a"), zn("n2", "b"), n3.build()],
            [foo_pods("p", "n1", 1), foo_pods("p", "n2", 1)].concat(),
        )
    };
    let with_policy = |policy| {
        incoming(vec![TopologySpreadConstraint {
            node_taints_policy: policy,
            ..hard(1, ZONE)
        }])
    };
    let all = vec!["n1", "n2", "n3"];
    let only_c = vec!["n3"];
    let cases = [
        (
            Some(TaintEffect::NoSchedule),
            InclusionPolicy::Honor,
            None,
            &all,
        ),
        (
            Some(TaintEffect::NoExecute),
            InclusionPolicy::Honor,
            None,
            &all,
        ),
        (
            Some(TaintEffect::NoSchedule),
            InclusionPolicy::Ignore,
            None,
            &only_c,
        ),
        // PreferNoSchedule does not exclude a node.
        (
            Some(TaintEffect::PreferNoSchedule),
            InclusionPolicy::Honor,
            None,
            &only_c,
        ),
        // A tolerated taint does not exclude it either.
        (
            Some(TaintEffect::NoSchedule),
            InclusionPolicy::Honor,
            Some(("dedicated", "gpu")),
            &only_c,
        ),
        (None, InclusionPolicy::Honor, None, &only_c),
    ];
    for (effect, policy, tol, want) in cases {
        let s = build(effect);
        let mut b = with_policy(policy);
        if let Some((k, v)) = tol {
            b = b.tolerate(k, v, None);
        }
        assert_eq!(
            &passing(&b.build(), &s),
            want,
            "{effect:?} {policy:?} {tol:?}"
        );
    }
}

#[test]
fn min_domains() {
    let s = snap(
        vec![zn("n1", "a"), zn("n2", "b")],
        [foo_pods("p", "n1", 1), foo_pods("p", "n2", 1)].concat(),
    );
    for (md, want_min, want) in [
        (None, 1, vec!["n1", "n2"]),
        (Some(2), 1, vec!["n1", "n2"]),
        // 2 domains < 3: the global minimum is 0, so 1 + 1 - 0 > 1 everywhere.
        (Some(3), 0, vec![]),
    ] {
        let p = incoming(vec![TopologySpreadConstraint {
            min_domains: md,
            ..hard(1, ZONE)
        }])
        .build();
        let mut st = CycleState::default();
        assert!(PodTopologySpread.pre_filter(&mut st, &p, &s).is_success());
        let state = st.read::<PreFilterState>().unwrap();
        assert_eq!(state.constraints[0].min_match(), want_min, "{md:?}");
        assert_eq!(passing(&p, &s), want, "{md:?}");
    }
}

/// Pods nominated to a node with at least the pod's priority count in the
/// node's domain (upstream's RunFilterPluginsWithNominatedPods): the node must
/// pass with them (which may also raise the global minimum) and without them.
#[test]
fn nominated_pods_count_in_their_node_domain() {
    // Zone a: n1, zone b: n2 with one matching pod. maxSkew 1 by zone.
    let base = || snap(vec![zn("n1", "a"), zn("n2", "b")], foo_pods("p", "n2", 1));
    let p = incoming(vec![hard(1, ZONE)]).priority(10).build();
    let n1 = |s: &Snapshot| s.nodes().by_name("n1").unwrap();
    let nominate = |s: &mut Snapshot, name: &str, prio: i32, matching: bool| {
        let mut b = pod(name, 1, 1).priority(prio);
        if matching {
            b = b.label("foo", "bar");
        }
        let at = n1(s);
        s.nominate(b.arc(), at);
    };
    assert_eq!(passing(&p, &base()), vec!["n1"]);

    // One nominated to n1: a=1, b=1, the minimum rises to 1: 1+1-1 <= 1.
    let mut s = base();
    nominate(&mut s, "nom-1", 10, true);
    assert_eq!(passing(&p, &s), vec!["n1"]);

    // Two: a=2, minimum 1: 2+1-1 > 1, though without them n1 passes.
    nominate(&mut s, "nom-2", 20, true);
    assert_eq!(passing(&p, &s), Vec::<String>::new());
    let st = filter_all(Some(&PodTopologySpread), &PodTopologySpread, &p, &s);
    assert_eq!(st[0].1.code, Code::Unschedulable);
    assert_eq!(st[0].1.message(), ERR_REASON_CONSTRAINTS_NOT_MATCH);

    // Lower priority or not matching: not counted (two of them would fail n1).
    for (name, prio, matching) in [("low", 5, true), ("other", 10, false)] {
        let mut s = base();
        nominate(&mut s, &format!("{name}-a"), prio, matching);
        nominate(&mut s, &format!("{name}-b"), prio, matching);
        assert_eq!(passing(&p, &s), vec!["n1"], "{name}");
    }
    // Nor is the pod's own nomination: with one other, a=1 and n1 passes.
    let mut s = base();
    let at = n1(&s);
    s.nominate(std::sync::Arc::new(p.clone()), at);
    nominate(&mut s, "nom-1", 10, true);
    assert_eq!(passing(&p, &s), vec!["n1"]);
}

#[test]
fn prefilter_skips_without_hard_constraints() {
    let s = snap(four_nodes_two_zones(), vec![]);
    let mut st = CycleState::default();
    let none = pod("p", 1, 1).build();
    assert_eq!(
        PodTopologySpread.pre_filter(&mut st, &none, &s).code,
        Code::Skip
    );
    let soft_only = incoming(vec![soft(1, ZONE)]).build();
    assert_eq!(
        PodTopologySpread.pre_filter(&mut st, &soft_only, &s).code,
        Code::Skip
    );
    let hard_one = incoming(vec![soft(1, ZONE), hard(1, ZONE)]).build();
    assert_eq!(
        PodTopologySpread.pre_filter(&mut st, &hard_one, &s).code,
        Code::Success
    );
}

#[test]
fn assumed_pods_count_and_forget_uncounts() {
    let mut s = snap(four_nodes_two_zones(), foo_pods("p", "n1", 1));
    let p = incoming(vec![hard(1, ZONE)]).build();
    assert_eq!(passing(&p, &s), vec!["n3", "n4"]);
    let n3 = s.nodes().by_name("n3").unwrap();
    let extra = pod("assumed", 1, 1).label("foo", "bar").arc();
    s.assume(extra.clone(), n3).unwrap();
    assert_eq!(passing(&p, &s), vec!["n1", "n2", "n3", "n4"]);
    s.forget(&extra.key);
    assert_eq!(passing(&p, &s), vec!["n3", "n4"]);
}

fn k8s_pod(yaml: &str) -> Pod {
    let p: k8s_openapi::api::core::v1::Pod = serde_saphyr::from_str(yaml).unwrap();
    pod_from_k8s(&p, &()).unwrap()
}

#[test]
fn match_label_keys_narrow_counting() {
    let web = |name: &str, hash: &str, on: &str| {
        pod(name, 1, 1)
            .label("app", "web")
            .label("pod-template-hash", hash)
            .on(on)
            .build()
    };
    // Zone a: two pods of the old revision; zone b: one of the new.
    let s = snap(
        four_nodes_two_zones(),
        vec![
            web("old1", "v1", "n1"),
            web("old2", "v1", "n2"),
            web("new1", "v2", "n3"),
        ],
    );
    let yaml = |keys: &str| {
        format!(
            r#"
metadata: {{name: incoming, namespace: default, labels: {{app: web, pod-template-hash: v2}}}}
spec:
  containers: [{{name: a, image: x}}]
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {{matchLabels: {{app: web}}}}
{keys}
"#
        )
    };
    // All revisions: a=2, b=1 → only b.
    let plain = k8s_pod(&yaml(""));
    assert_eq!(passing(&plain, &s), vec!["n3", "n4"]);
    // Only v2: a=0, b=1 → only a.
    let keyed = k8s_pod(&yaml("    matchLabelKeys: [pod-template-hash]"));
    assert_eq!(passing(&keyed, &s), vec!["n1", "n2"]);
}

/// `labelSelector: {}` selects every pod, but upstream's countPodsMatchSelector
/// counts none for an empty selector, while the incoming pod still matches it:
/// every domain counts 0, the skew is 1, and the constraint never rejects.
#[test]
fn empty_label_selector_counts_no_pods() {
    let mut pods = foo_pods("a", "n1", 3);
    pods.extend(foo_pods("a", "n2", 2));
    let s = snap(four_nodes_two_zones(), pods);
    let p = k8s_pod(
        r#"
metadata: {name: incoming, namespace: default, labels: {foo: bar}}
spec:
  containers: [{name: a, image: x}]
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector: {}
"#,
    );
    assert_eq!(passing(&p, &s), vec!["n1", "n2", "n3", "n4"]);
    assert_eq!(passing(&p, &s), reference_passing(&p, &s));
    // Soft: no node has matching pods, so all score alike.
    let sc = scores(&p, &s, &[]);
    assert!(sc.values().all(|v| *v == sc["n1"]), "{sc:?}");
}

// ---- scoring ---------------------------------------------------------------

/// Normalized scores by node name, scoring only `feasible` (all live nodes when empty).
fn scores(p: &Pod, s: &Snapshot, feasible: &[&str]) -> BTreeMap<String, i64> {
    let nodes: Vec<NodeIdx> = if feasible.is_empty() {
        s.nodes().live_indices().collect()
    } else {
        feasible
            .iter()
            .map(|n| s.nodes().by_name(n).unwrap())
            .collect()
    };
    let mut st = CycleState::default();
    assert!(PodTopologySpread
        .pre_score(&mut st, p, s, &nodes)
        .is_success());
    let mut raw: Vec<i64> = nodes
        .iter()
        .map(|&n| PodTopologySpread.score(&st, p, s, n))
        .collect();
    PodTopologySpread.normalize(&st, p, &mut raw);
    nodes
        .iter()
        .zip(raw)
        .map(|(&n, v)| (s.nodes().name[n as usize].to_string(), v))
        .collect()
}

fn expect(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}

#[test]
fn score_table() {
    struct Case {
        name: &'static str,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        pod: Pod,
        feasible: Vec<&'static str>,
        want: Vec<(&'static str, i64)>,
    }
    let three = || vec![zn("n1", "a"), zn("n2", "a"), zn("n3", "b")];
    let cases = vec![
        Case {
            // weight ln(4); a: 2 pods → round(2.77) = 3, b: 1 → 1. 100*(3+1-s)/3.
            name: "zone counts",
            nodes: three(),
            pods: [foo_pods("p", "n1", 2), foo_pods("p", "n3", 1)].concat(),
            pod: incoming(vec![soft(1, ZONE)]).build(),
            feasible: vec![],
            want: vec![("n1", 33), ("n2", 33), ("n3", 100)],
        },
        Case {
            // maxSkew 3 adds 2 to every raw score: 5, 5, 3 → 100*(5+3-s)/5.
            name: "maxSkew waters differences down",
            nodes: three(),
            pods: [foo_pods("p", "n1", 2), foo_pods("p", "n3", 1)].concat(),
            pod: incoming(vec![soft(3, ZONE)]).build(),
            feasible: vec![],
            want: vec![("n1", 60), ("n2", 60), ("n3", 100)],
        },
        Case {
            // Per node, weight ln(3+2): 2 → 3, 1 → 2, 0 → 0.
            name: "hostname counts per node",
            nodes: three(),
            pods: [foo_pods("p", "n1", 2), foo_pods("p", "n2", 1)].concat(),
            pod: incoming(vec![soft(1, HOST)]).build(),
            feasible: vec![],
            want: vec![("n1", 0), ("n2", 33), ("n3", 100)],
        },
        Case {
            name: "no matching pods anywhere",
            nodes: three(),
            pods: vec![],
            pod: incoming(vec![soft(1, ZONE)]).build(),
            feasible: vec![],
            want: vec![("n1", 100), ("n2", 100), ("n3", 100)],
        },
        Case {
            // nozone lacks the key: scored 0 and its pods not counted.
            name: "nodes missing the key are ignored",
            nodes: [three(), vec![node("nozone", 1000, GI).build()]].concat(),
            pods: [foo_pods("p", "n1", 2), foo_pods("p", "nozone", 9)].concat(),
            pod: incoming(vec![soft(1, ZONE)]).build(),
            feasible: vec![],
            want: vec![("n1", 0), ("n2", 0), ("n3", 100), ("nozone", 0)],
        },
        Case {
            // Domains come from feasible nodes (a, b; weight ln 4), but pods on
            // infeasible n2 still count for zone a; zone c is not a domain.
            name: "counts span all nodes of feasible domains",
            nodes: [three(), vec![zn("n4", "c")]].concat(),
            pods: [foo_pods("p", "n2", 2), foo_pods("p", "n4", 5)].concat(),
            pod: incoming(vec![soft(1, ZONE)]).build(),
            feasible: vec!["n1", "n3"],
            want: vec![("n1", 0), ("n3", 100)],
        },
        Case {
            // Other namespaces and terminating pods do not count.
            name: "namespace and terminating",
            nodes: three(),
            pods: [
                foo_pods("p", "n3", 1),
                vec![
                    pod("o", 1, 1)
                        .namespace("other")
                        .label("foo", "bar")
                        .on("n1")
                        .build(),
                    pod("t1", 1, 1)
                        .label("foo", "bar")
                        .terminating()
                        .on("n1")
                        .build(),
                    pod("t2", 1, 1)
                        .label("foo", "bar")
                        .terminating()
                        .on("n2")
                        .build(),
                ],
            ]
            .concat(),
            pod: incoming(vec![soft(1, ZONE)]).build(),
            feasible: vec![],
            want: vec![("n1", 100), ("n2", 100), ("n3", 0)],
        },
        Case {
            // zone (ln 4) + hostname (ln 5): n1: 1*1.39+1*1.61=3, n2: 1.39→1, n3: 0.
            name: "zone and hostname",
            nodes: three(),
            pods: foo_pods("p", "n1", 1),
            pod: incoming(vec![soft(1, ZONE), soft(1, HOST)]).build(),
            feasible: vec![],
            want: vec![("n1", 0), ("n2", 66), ("n3", 100)],
        },
    ];
    for c in cases {
        let s = snap(c.nodes, c.pods);
        assert_eq!(
            scores(&c.pod, &s, &c.feasible),
            expect(&c.want),
            "{}",
            c.name
        );
    }
}

#[test]
fn score_inclusion_policies() {
    // n2 (zone a) carries an untolerated NoSchedule taint and 3 matching pods.
    let s = snap(
        vec![
            zn("n1", "a"),
            node("n2", 1000, GI)
                .zone("a")
                .taint("k", "v", TaintEffect::NoSchedule)
                .build(),
            zn("n3", "b"),
        ],
        [foo_pods("p", "n2", 3), foo_pods("p", "n3", 1)].concat(),
    );
    let with = |policy| {
        incoming(vec![TopologySpreadConstraint {
            node_taints_policy: policy,
            ..soft(1, ZONE)
        }])
        .build()
    };
    // Ignore: a=3 (round 4.16=4), b=1 (1) → 100*(4+1-s)/4.
    assert_eq!(
        scores(&with(InclusionPolicy::Ignore), &s, &["n1", "n3"]),
        expect(&[("n1", 25), ("n3", 100)])
    );
    // Honor: n2's pods leave zone a: a=0, b=1.
    assert_eq!(
        scores(&with(InclusionPolicy::Honor), &s, &["n1", "n3"]),
        expect(&[("n1", 100), ("n3", 0)])
    );
    // nodeAffinityPolicy Honor: nodes outside the pod's selector do not count.
    let s = snap(
        vec![
            node("n1", 1000, GI).zone("a").label("pool", "x").build(),
            node("n2", 1000, GI).zone("a").build(),
            node("n3", 1000, GI).zone("b").label("pool", "x").build(),
        ],
        [foo_pods("p", "n2", 3), foo_pods("p", "n3", 1)].concat(),
    );
    let p = incoming(vec![soft(1, ZONE)])
        .node_selector("pool", "x")
        .build();
    assert_eq!(
        scores(&p, &s, &["n1", "n3"]),
        expect(&[("n1", 100), ("n3", 0)])
    );
}

#[test]
fn prescore_skips_without_soft_constraints() {
    let s = snap(four_nodes_two_zones(), vec![]);
    let mut st = CycleState::default();
    let nodes: Vec<NodeIdx> = s.nodes().live_indices().collect();
    let p = incoming(vec![hard(1, ZONE)]).build();
    assert_eq!(
        PodTopologySpread.pre_score(&mut st, &p, &s, &nodes).code,
        Code::Skip
    );
}

#[test]
fn registered_in_registry() {
    let cfg = crate::config::Config::default();
    let profile = crate::config::ProfileConfig {
        name: "t".into(),
        plugins: Vec::new(),
        plugin_args: Default::default(),
        percentage_of_nodes_to_score: 0,
    };
    let set = crate::plugins::build_plugin(
        NAME,
        &crate::plugins::BuildContext {
            config: &cfg,
            profile: &profile,
        },
    )
    .unwrap();
    assert!(set.pre_filter.is_some() && set.filter.is_some());
    assert!(set.pre_score.is_some() && set.score.is_some());
}

/// Upstream's algorithm written naively (scan every node's pods, string-free
/// maps by value), to check the indexed, domain-id implementation against.
fn reference_passing(p: &Pod, s: &Snapshot) -> Vec<String> {
    let hard: Vec<&TopologySpreadConstraint> = p
        .topology_spread
        .iter()
        .filter(|c| c.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule)
        .collect();
    let nodes = s.nodes();
    let mut counts: Vec<BTreeMap<Sym, i64>> = vec![BTreeMap::new(); hard.len()];
    for i in nodes.live_indices() {
        let n = &nodes.node[i as usize];
        if !hard.iter().all(|c| n.labels.contains_key(c.topology_key)) {
            continue;
        }
        for (ci, c) in hard.iter().enumerate() {
            if c.node_affinity_policy == InclusionPolicy::Honor && !required_affinity_matches(p, n)
            {
                continue;
            }
            if c.node_taints_policy == InclusionPolicy::Honor && has_untolerated_hard_taint(p, n) {
                continue;
            }
            let matching = s
                .pods_on(i)
                .filter(|e| {
                    e.pod.key.namespace == p.key.namespace
                        && !e.pod.terminating
                        && c.selector.as_ref().is_some_and(|sel| {
                            !sel.requirements.is_empty() && sel.matches(&e.pod.labels)
                        })
                })
                .count() as i64;
            *counts[ci]
                .entry(n.labels.get(c.topology_key).unwrap())
                .or_default() += matching;
        }
    }
    let mut out: Vec<String> = nodes
        .live_indices()
        .filter(|&i| {
            let n = &nodes.node[i as usize];
            hard.iter().enumerate().all(|(ci, c)| {
                let Some(v) = n.labels.get(c.topology_key) else {
                    return false;
                };
                let min = if (counts[ci].len() as i64) < c.min_domains.unwrap_or(1) as i64 {
                    0
                } else {
                    counts[ci].values().copied().min().unwrap_or(i64::MAX)
                };
                let own = c
                    .selector
                    .as_ref()
                    .is_some_and(|sel| sel.matches(&p.labels)) as i64;
                counts[ci].get(&v).copied().unwrap_or(0) + own - min <= c.max_skew as i64
            })
        })
        .map(|i| nodes.name[i as usize].to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn indexed_counting_agrees_with_a_full_scan() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut passed, mut rejected) = (0, 0);
    for round in 0..20 {
        let mut nodes = Vec::new();
        for i in 0..40 {
            let mut b = node(&format!("n{i}"), 1000, GI);
            if rng.random_bool(0.9) {
                b = b.zone(["a", "b", "c", "d"][rng.random_range(0..4)]);
            }
            if rng.random_bool(0.8) {
                b = b.label("rack", ["r1", "r2", "r3"][rng.random_range(0..3)]);
            }
            if rng.random_bool(0.5) {
                b = b.label("pool", "x");
            }
            if rng.random_bool(0.2) {
                b = b.taint("k", "v", TaintEffect::NoSchedule);
            }
            nodes.push(b.build());
        }
        let mut pods = Vec::new();
        for j in 0..150 {
            let mut b = pod(&format!("q{j}"), 1, 1)
                .namespace(["default", "other"][rng.random_range(0..2)])
                .label("foo", ["bar", "baz"][rng.random_range(0..2)])
                .on(&format!("n{}", rng.random_range(0..40)));
            if rng.random_bool(0.3) {
                b = b.label("tier", "web");
            }
            if rng.random_bool(0.1) {
                b = b.terminating();
            }
            pods.push(b.build());
        }
        let s = snap(nodes, pods);
        let policy = |b: bool| {
            if b {
                InclusionPolicy::Honor
            } else {
                InclusionPolicy::Ignore
            }
        };
        let mut cs = vec![TopologySpreadConstraint {
            min_domains: rng.random_bool(0.3).then(|| rng.random_range(1..6)),
            node_affinity_policy: policy(rng.random_bool(0.5)),
            node_taints_policy: policy(rng.random_bool(0.5)),
            ..hard(rng.random_range(1..4), ZONE)
        }];
        if rng.random_bool(0.5) {
            cs.push(TopologySpreadConstraint {
                selector: Some(LabelSelector {
                    requirements: vec![req("tier", SelectorOp::Exists, &[])],
                }),
                ..hard(rng.random_range(1..4), "rack")
            });
        }
        let mut b = incoming(cs);
        if rng.random_bool(0.5) {
            b = b.node_selector("pool", "x");
        }
        let p = b.build();
        let got = passing(&p, &s);
        assert_eq!(got, reference_passing(&p, &s), "round {round}");
        passed += got.len();
        rejected += 40 - got.len();
    }
    // The rounds must exercise both outcomes to mean anything.
    assert!(
        passed > 40 && rejected > 40,
        "{passed} passed, {rejected} rejected"
    );
}

fn spread_only_profile() -> crate::framework::Profile {
    let cfg = crate::config::Config::default();
    let pc = crate::config::ProfileConfig {
        name: "t".into(),
        plugins: Vec::new(),
        plugin_args: Default::default(),
        percentage_of_nodes_to_score: 0,
    };
    let ctx = crate::plugins::BuildContext {
        config: &cfg,
        profile: &pc,
    };
    let set = crate::plugins::build_plugin(NAME, &ctx).unwrap();
    crate::framework::Profile::new("t", vec![(set, 1)])
}

/// Places `n` copies of `template` one by one through the scheduling cycle,
/// assuming each on the chosen node; returns the pods per node name.
fn place_through_cycle(template: &Pod, s: &mut Snapshot, n: usize) -> BTreeMap<String, usize> {
    let profile = spread_only_profile();
    let mut placed = BTreeMap::new();
    for i in 0..n {
        let mut p = template.clone();
        p.key.name = format!("r{i}");
        let d = crate::framework::schedule(&profile, &p, s, Default::default());
        let node = d.node.unwrap_or_else(|| panic!("r{i}: {:?}", d.message()));
        s.assume(std::sync::Arc::new(p), node).unwrap();
        *placed
            .entry(s.nodes().name[node as usize].to_string())
            .or_default() += 1;
    }
    placed
}

#[test]
fn cycle_spreads_hard_by_zone_and_soft_by_host() {
    let nodes = || {
        vec![
            zn("a1", "a"),
            zn("a2", "a"),
            zn("b1", "b"),
            zn("b2", "b"),
            zn("c1", "c"),
            zn("c2", "c"),
        ]
    };
    // Hard zone spread, maxSkew 1: 9 pods land 3 per zone.
    let mut s = snap(nodes(), vec![]);
    let placed = place_through_cycle(&incoming(vec![hard(1, ZONE)]).build(), &mut s, 9);
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for (n, c) in &placed {
        *per_zone.entry(n[..1].to_string()).or_default() += c;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![3, 3, 3]
    );

    // Soft hostname spread: 6 pods on 6 nodes, one each.
    let mut s = snap(nodes(), vec![]);
    let placed = place_through_cycle(&incoming(vec![soft(1, HOST)]).build(), &mut s, 6);
    assert_eq!(placed.len(), 6, "{placed:?}");
}

#[test]
fn cycle_reports_upstream_reasons() {
    // minDomains 3 with 2 zones: the global minimum is 0, so a (1 pod) and
    // b (2 pods) both exceed maxSkew 1; `bare` has no zone.
    let mut s = snap(
        vec![zn("a1", "a"), zn("b1", "b"), node("bare", 1000, GI).build()],
        [foo_pods("p", "a1", 1), foo_pods("p", "b1", 2)].concat(),
    );
    let p = incoming(vec![TopologySpreadConstraint {
        min_domains: Some(3),
        ..hard(1, ZONE)
    }])
    .build();
    let d = crate::framework::schedule(&spread_only_profile(), &p, &mut s, Default::default());
    assert_eq!(d.node, None);
    let msg = d.message().unwrap_or_default();
    assert!(msg.starts_with("0/3 nodes are available"), "{msg}");
    assert!(
        msg.contains(
            "1 node(s) didn't match pod topology spread constraints (missing required label)"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("2 node(s) didn't match pod topology spread constraints."),
        "{msg}"
    );
}
