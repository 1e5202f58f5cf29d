use super::filtering::PreFilterState;
use super::*;
use crate::config::{Config, KUBE_DEFAULT, SPARK_FLEET};
use crate::framework::{
    schedule, Code, CycleOptions, CycleState, FilterPlugin, PreFilterPlugin, PreScorePlugin,
};
use crate::model::{pod_from_k8s, LabelSelector, Node, Pod};
use crate::plugins::build_named_profile;
use crate::plugins::test_support::{filter_all, score_all};
use crate::testkit::*;

const ZONE: &str = crate::model::LABEL_ZONE;
const HOST: &str = crate::model::LABEL_HOSTNAME;

fn snap(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
    crate::plugins::test_support::snapshot_of(nodes, pods)
}

/// Nodes a1, a2 in zone a, b1 in zone b, and `bare` without a zone label.
fn cluster(pods: Vec<Pod>) -> Snapshot {
    let z = |n: &str, zone: &str| node(n, 10_000, 64 * GI).zone(zone).build();
    snap(
        vec![
            z("a1", "a"),
            z("a2", "a"),
            z("b1", "b"),
            node("bare", 10_000, 64 * GI).build(),
        ],
        pods,
    )
}

fn k8s_pod(yaml: &str) -> Pod {
    let p: k8s_openapi::api::core::v1::Pod = serde_saphyr::from_str(yaml).unwrap();
    pod_from_k8s(&p, &()).unwrap()
}

fn k8s_pod_err(yaml: &str) -> crate::model::ConvertError {
    let p: k8s_openapi::api::core::v1::Pod = serde_saphyr::from_str(yaml).unwrap();
    pod_from_k8s(&p, &()).unwrap_err()
}

/// (node, code, reason) per live node.
fn verdicts(p: &Pod, s: &Snapshot) -> Vec<(String, Code, String)> {
    let pl = InterPodAffinity::default();
    filter_all(Some(&pl), &pl, p, s)
        .into_iter()
        .map(|(n, st)| {
            (
                n,
                st.code,
                st.reasons.first().map_or(String::new(), |r| r.to_string()),
            )
        })
        .collect()
}

fn passing(p: &Pod, s: &Snapshot) -> Vec<String> {
    verdicts(p, s)
        .into_iter()
        .filter(|v| v.1 == Code::Success)
        .map(|v| v.0)
        .collect()
}

fn web(name: &str, on: &str) -> Pod {
    pod(name, 1, 1).label("app", "web").on(on).build()
}

#[test]
fn required_affinity_needs_a_matching_pod_in_the_domain() {
    let s = cluster(vec![web("w", "a2")]);
    let p = pod("p", 1, 1)
        .required_affinity(ZONE, &[("app", "web")])
        .build();
    let v = verdicts(&p, &s);
    assert_eq!(passing(&p, &s), ["a1", "a2"]);
    let b1 = &v[2];
    assert_eq!(b1.1, Code::UnschedulableAndUnresolvable);
    assert_eq!(b1.2, ERR_REASON_AFFINITY_RULES_NOT_MATCH);
    // A node without the topology key fails, unresolvable.
    assert_eq!(v[3].1, Code::UnschedulableAndUnresolvable);
    // Two terms: both must be met in the node's domains.
    let p2 = pod("p", 1, 1)
        .required_affinity(ZONE, &[("app", "web")])
        .required_affinity(HOST, &[("app", "web")])
        .build();
    assert_eq!(passing(&p2, &s), ["a2"]);
}

#[test]
fn required_affinity_counts_pods_matching_every_term() {
    // The zone-a pod matches only the first term, the zone-b pod both.
    let s = cluster(vec![
        web("w", "a1"),
        pod("wx", 1, 1)
            .label("app", "web")
            .label("tier", "x")
            .on("b1")
            .build(),
    ]);
    let p = pod("p", 1, 1)
        .required_affinity(ZONE, &[("app", "web")])
        .required_affinity(ZONE, &[("tier", "x")])
        .build();
    assert_eq!(passing(&p, &s), ["b1"]);
}

#[test]
fn self_affinity_lets_the_first_pod_go_anywhere() {
    let p = pod("p", 1, 1)
        .label("app", "web")
        .required_affinity(ZONE, &[("app", "web")])
        .build();
    // No pod matches anywhere: every node with the key passes.
    let empty = cluster(vec![]);
    assert_eq!(passing(&p, &empty), ["a1", "a2", "b1"]);
    // A pod that does not match its own terms gets no such pass.
    let other = pod("q", 1, 1)
        .required_affinity(ZONE, &[("app", "web")])
        .build();
    assert!(passing(&other, &empty).is_empty());
    // Once one matches, the usual rule holds.
    let s = cluster(vec![web("w", "b1")]);
    assert_eq!(passing(&p, &s), ["b1"]);
}

#[test]
fn required_anti_affinity_rejects_the_domain() {
    let s = cluster(vec![web("w", "a1")]);
    let p = pod("p", 1, 1)
        .required_anti_affinity(ZONE, &[("app", "web")])
        .build();
    let v = verdicts(&p, &s);
    assert_eq!(passing(&p, &s), ["b1", "bare"]);
    assert_eq!(v[1].1, Code::Unschedulable);
    assert_eq!(v[1].2, ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
    let host = pod("p", 1, 1)
        .required_anti_affinity(HOST, &[("app", "web")])
        .build();
    assert_eq!(passing(&host, &s), ["a2", "b1", "bare"]);
}

#[test]
fn existing_pods_anti_affinity_rejects_the_pod() {
    let guard = pod("g", 1, 1)
        .required_anti_affinity(ZONE, &[("app", "web")])
        .on("b1")
        .build();
    let s = cluster(vec![guard]);
    let w = pod("p", 1, 1).label("app", "web").build();
    let v = verdicts(&w, &s);
    assert_eq!(passing(&w, &s), ["a1", "a2", "bare"]);
    assert_eq!(v[2].1, Code::Unschedulable);
    assert_eq!(v[2].2, ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
    // The guard's term covers its own namespace only.
    let elsewhere = pod("p", 1, 1)
        .namespace("other")
        .label("app", "web")
        .build();
    assert_eq!(passing(&elsewhere, &s).len(), 4);
    let plain = pod("p", 1, 1).build();
    assert_eq!(passing(&plain, &s).len(), 4);
}

#[test]
fn term_namespaces() {
    let s = cluster(vec![pod("w", 1, 1)
        .namespace("team-b")
        .label("app", "web")
        .on("a1")
        .build()]);
    let with_ns = |namespaces: Vec<&str>, ns_sel: Option<LabelSelector>| {
        let t = PodAffinityTerm {
            selector: Some(selector(&[("app", "web")])),
            namespaces: namespaces.into_iter().map(Sym::new).collect(),
            namespace_selector: ns_sel,
            topology_key: Sym::new(ZONE),
        };
        pod("p", 1, 1)
            .namespace("team-a")
            .pod_affinity_term(true, t)
            .build()
    };
    // Own namespace only: the team-b pod does not count.
    assert_eq!(passing(&with_ns(vec!["team-a"], None), &s).len(), 4);
    // Listed namespace, and `namespaceSelector: {}` (all namespaces).
    assert_eq!(passing(&with_ns(vec!["team-b"], None), &s), ["b1", "bare"]);
    let all = Some(LabelSelector::default());
    assert_eq!(passing(&with_ns(vec![], all), &s), ["b1", "bare"]);
    // A selector on the namespace's name label.
    let by_name = LabelSelector {
        requirements: vec![req(
            crate::model::LABEL_NAMESPACE_NAME,
            crate::model::SelectorOp::In,
            &["team-b"],
        )],
    };
    assert_eq!(passing(&with_ns(vec![], Some(by_name)), &s), ["b1", "bare"]);
}

#[test]
fn prefilter_skips_from_the_snapshot_counts() {
    let pl = InterPodAffinity::default();
    let plain = pod("p", 1, 1).label("app", "web").build();
    let mut s = cluster(vec![web("w", "a1")]);
    let skip = |s: &Snapshot, p: &Pod| pl.pre_filter(&mut CycleState::default(), p, s).code;
    assert_eq!(skip(&s, &plain), Code::Skip);
    let guard = pod("g", 1, 1)
        .required_anti_affinity(HOST, &[("app", "web")])
        .on("a2")
        .arc();
    s.upsert_pod(guard.clone()).unwrap();
    assert_eq!(s.pods_with_required_anti_affinity().len(), 1);
    assert_eq!(s.pods_with_pod_affinity().len(), 1);
    assert_eq!(skip(&s, &plain), Code::Success);
    assert_eq!(passing(&plain, &s), ["a1", "b1", "bare"]);
    s.remove_pod(&guard.key);
    assert!(s.pods_with_required_anti_affinity().is_empty());
    assert!(s.pods_with_pod_affinity().is_empty());
    assert_eq!(skip(&s, &plain), Code::Skip);
    // Only preferred terms placed: Filter still skips, PreScore does not.
    let soft = pod("s", 1, 1)
        .preferred_anti_affinity(5, HOST, &[("app", "web")])
        .on("b1")
        .arc();
    s.upsert_pod(soft).unwrap();
    assert_eq!(skip(&s, &plain), Code::Skip);
    let nodes: Vec<_> = s.nodes().live_indices().collect();
    let st = pl.pre_score(&mut CycleState::default(), &plain, &s, &nodes);
    assert_eq!(st.code, Code::Success);
    // Removing a node drops its pods from the sets.
    s.remove_node(Sym::new("b1"));
    assert!(s.pods_with_pod_affinity().is_empty());
}

#[test]
fn placed_pod_promise() {
    let pl = InterPodAffinity::default();
    let plain = pod("p", 1, 1).build();
    let s = cluster(vec![web("w", "a1")]);
    let mut state = CycleState::default();
    assert_eq!(pl.pre_filter(&mut state, &plain, &s).code, Code::Skip);
    assert!(!pl.depends_on_placed_pods(&state, &plain));
    // A placed pod's anti-affinity that does not select the pod: still Skip.
    let guarded = cluster(vec![pod("g", 1, 1)
        .required_anti_affinity(HOST, &[("app", "db")])
        .on("a1")
        .build()]);
    let mut state = CycleState::default();
    assert_eq!(pl.pre_filter(&mut state, &plain, &guarded).code, Code::Skip);
    let db = pod("d", 1, 1).label("app", "db").build();
    let mut state = CycleState::default();
    assert_eq!(pl.pre_filter(&mut state, &db, &guarded).code, Code::Success);
    assert!(pl.depends_on_placed_pods(&state, &db));
    let anti = pod("p", 1, 1)
        .required_anti_affinity(HOST, &[("app", "web")])
        .build();
    let mut state = CycleState::default();
    pl.pre_filter(&mut state, &anti, &s);
    assert!(state.read::<PreFilterState>().is_some());
    assert!(pl.depends_on_placed_pods(&state, &anti));
}

#[test]
fn nominated_pods_count_on_their_node() {
    let mut s = cluster(vec![]);
    let a1 = s.nodes().get(Sym::new("a1")).unwrap();
    let nominee = pod("n", 1, 1).label("app", "web").priority(10).arc();
    s.nominate(nominee, a1);
    let p = pod("p", 1, 1)
        .priority(5)
        .required_anti_affinity(HOST, &[("app", "web")])
        .build();
    assert_eq!(passing(&p, &s), ["a2", "b1", "bare"]);
    // A lower-priority nomination does not count.
    let high = pod("p", 1, 1)
        .priority(50)
        .required_anti_affinity(HOST, &[("app", "web")])
        .build();
    assert_eq!(passing(&high, &s).len(), 4);
}

/// Upstream runs the pass with nominated pods first and reports its failure;
/// the pass without them runs only when that one passes.
#[test]
fn nominated_pass_decides_the_status_first() {
    let mut s = cluster(vec![]);
    let a1 = s.nodes().get(Sym::new("a1")).unwrap();
    let nominee = pod("n", 1, 1)
        .label("x", "1")
        .label("y", "1")
        .priority(10)
        .arc();
    s.nominate(nominee, a1);
    let p = pod("p", 1, 1)
        .priority(5)
        .required_affinity(ZONE, &[("x", "1")])
        .required_anti_affinity(ZONE, &[("y", "1")])
        .build();
    let v = verdicts(&p, &s);
    // a1: with the nominee its affinity holds and its anti-affinity fails.
    assert_eq!(v[0].1, Code::Unschedulable);
    assert_eq!(v[0].2, ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
    // a2 has no nominee: a single pass, and no pod meets the affinity.
    assert_eq!(v[1].1, Code::UnschedulableAndUnresolvable);
    assert_eq!(v[1].2, ERR_REASON_AFFINITY_RULES_NOT_MATCH);
}

fn scores(p: &Pod, s: &Snapshot) -> Vec<(String, i64)> {
    let pl = InterPodAffinity::default();
    score_all(Some(&pl), &pl, p, s)
}

#[test]
fn preferred_terms_score_min_max() {
    let s = cluster(vec![web("w1", "a1"), web("w2", "b1"), web("w3", "b1")]);
    let p = pod("p", 1, 1)
        .preferred_affinity(10, HOST, &[("app", "web")])
        .preferred_anti_affinity(4, ZONE, &[("app", "web")])
        .build();
    // Raw: a1 = 10 - 4 = 6, a2 = -4, b1 = 20 - 8 = 12, bare = 0.
    let got = scores(&p, &s);
    let want = |v: i64| 100.0 * (v + 4) as f64 / 16.0;
    assert_eq!(
        got,
        [
            ("a1".to_string(), want(6) as i64),
            ("a2".to_string(), 0),
            ("b1".to_string(), 100),
            ("bare".to_string(), want(0) as i64),
        ]
    );
}

#[test]
fn existing_pods_terms_score_the_pod() {
    let hard = pod("h", 1, 1)
        .required_affinity(ZONE, &[("app", "web")])
        .on("a1")
        .build();
    let soft = pod("s", 1, 1)
        .preferred_anti_affinity(3, HOST, &[("app", "web")])
        .on("b1")
        .build();
    let s = cluster(vec![hard, soft]);
    let p = pod("p", 1, 1).label("app", "web").build();
    // Raw: zone a +1 (hardPodAffinityWeight), b1 -3.
    let got: Vec<i64> = scores(&p, &s).into_iter().map(|x| x.1).collect();
    assert_eq!(got, [100, 100, 0, 75]);
    // A pod the terms do not select: no score at all (PreScore skips).
    let other = pod("o", 1, 1).label("app", "db").build();
    let pl = InterPodAffinity::default();
    let nodes: Vec<_> = s.nodes().live_indices().collect();
    let st = pl.pre_score(&mut CycleState::default(), &other, &s, &nodes);
    assert_eq!(st.code, Code::Skip);
}

#[test]
fn converts_terms_from_yaml() {
    let p = k8s_pod(include_str!(
        "../../../tests/fixtures/inter-pod-affinity/spark-executor.yaml"
    ));
    let a = p.pod_affinity.as_deref().unwrap();
    assert_eq!(a.required_affinity.len(), 1);
    assert_eq!(a.required_anti_affinity.len(), 1);
    assert_eq!(a.preferred_anti_affinity[0].weight, 50);
    assert!(a.preferred_anti_affinity[0].term.all_namespaces());
    let t = &a.required_anti_affinity[0];
    assert_eq!(t.namespaces, [Sym::new("spark")]);
    // matchLabelKeys: only this application's executors.
    let mine = pod("e1", 1, 1).namespace("spark").executor("etl").build();
    let theirs = pod("e2", 1, 1).namespace("spark").executor("other").build();
    assert!(t.matches(&mine) && !t.matches(&theirs));
    let plain = k8s_pod("metadata: {name: p}\nspec: {containers: [{name: a, image: x}]}\n");
    assert!(plain.pod_affinity.is_none());
}

#[test]
fn mismatch_label_keys_exclude_own_value() {
    let p = k8s_pod(
        r#"
metadata: {name: p, namespace: ns, labels: {tenant: t1}}
spec:
  containers: [{name: a, image: x}]
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector: {matchExpressions: [{key: tenant, operator: Exists}]}
        mismatchLabelKeys: [tenant]
"#,
    );
    let t = &p.pod_affinity.as_deref().unwrap().required_anti_affinity[0];
    let same = pod("a", 1, 1).namespace("ns").label("tenant", "t1").build();
    let other = pod("b", 1, 1).namespace("ns").label("tenant", "t2").build();
    assert!(!t.matches(&same) && t.matches(&other));
}

#[test]
fn malformed_terms_are_conversion_errors() {
    let spec = |term: &str| {
        format!(
            "metadata: {{name: p, namespace: ns}}\nspec:\n  containers: [{{name: a, image: x}}]\n  affinity:\n    podAntiAffinity:\n{term}"
        )
    };
    let cases = [
        (
            "      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: \"\"\n        labelSelector: {matchLabels: {a: b}}\n",
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
        ),
        (
            "      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: zone\n        labelSelector: {matchExpressions: [{key: a, operator: Near}]}\n",
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].operator",
        ),
        (
            "      preferredDuringSchedulingIgnoredDuringExecution:\n      - weight: 0\n        podAffinityTerm: {topologyKey: zone}\n",
            "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
        ),
        (
            "      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: zone\n        matchLabelKeys: [a]\n",
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].matchLabelKeys",
        ),
        (
            "      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: zone\n        labelSelector: {}\n        namespaceSelector: {matchExpressions: [{key: a, operator: In}]}\n",
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespaceSelector.matchExpressions[0].values",
        ),
        (
            "      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: zone\n        labelSelector: {}\n        matchLabelKeys: [a]\n        mismatchLabelKeys: [a]\n",
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].mismatchLabelKeys",
        ),
    ];
    for (term, field) in cases {
        let e = k8s_pod_err(&spec(term));
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.object, "ns/p");
    }
}

#[test]
fn both_builtin_profiles_run_it_at_upstreams_weight() {
    let config = Config::default();
    for name in [KUBE_DEFAULT, SPARK_FLEET] {
        let pc = config.profile(name).unwrap();
        let names: Vec<&str> = pc.plugins.iter().map(|e| e.name.as_str()).collect();
        let at = names.iter().position(|n| *n == NAME).unwrap();
        assert_eq!(names[at - 1], "PodTopologySpread", "{name}");
        assert_eq!(pc.plugins[at].weight, 2);
        build_named_profile(&config, name).unwrap();
    }
}

/// Through a whole cycle: an executor with host anti-affinity to its
/// application's executors avoids their nodes, and when only their nodes are
/// left, preemption frees one by evicting the lower-priority executor there.
#[test]
fn cycle_and_preemption_honour_anti_affinity() {
    let config = Config::default();
    let profile = build_named_profile(&config, KUBE_DEFAULT).unwrap();
    let exec = |name: &str| {
        pod(name, 1000, GI).executor("etl").required_anti_affinity(
            HOST,
            &[("spark-role", "executor"), ("spark-app-selector", "etl")],
        )
    };
    let mut s = snap(
        vec![
            node("n1", 4000, 8 * GI).build(),
            node("n2", 4000, 8 * GI).build(),
        ],
        vec![exec("e1").on("n1").build()],
    );
    let e2 = exec("e2").build();
    let d = schedule(&profile, &e2, &mut s, CycleOptions::default());
    assert_eq!(d.node, s.nodes().get(Sym::new("n2")));
    s.upsert_pod(exec("e2").on("n2").arc()).unwrap();
    let e3 = exec("e3").priority(100).build();
    let opts = CycleOptions {
        post_filter: true,
        ..Default::default()
    };
    let d = schedule(&profile, &e3, &mut s, opts);
    assert!(d.node.is_none());
    let msg = d.statuses.per_node[0].1.message();
    assert!(
        msg.contains(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH),
        "{msg}"
    );
    let nomination = d
        .post_filter
        .and_then(|r| r.nomination)
        .expect("a nomination");
    assert_eq!(nomination.victims.len(), 1);
    assert!(nomination.victims[0].key.name.starts_with('e'));
}
