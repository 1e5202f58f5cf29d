//! Every plugin's batch form (`filter_nodes`, `score_nodes`) must agree with its
//! per-node form (`filter`, `score`): the cycle runs the batch form and asks the
//! per-node form for the reasons it shows. Checked on random clusters and pods,
//! through the plugins of every built-in profile and of the other scoring strategies.

use crate::config::{
    Config, RequestedToCapacityRatio, ResourceWeight, ScoringStrategyType, UtilizationShapePoint,
};
use crate::framework::{
    schedule, Code, CycleOptions, CycleState, Decision, Normalization, Profile,
};
use crate::model::{NodeAffinity, Pod, PreferredTerm, SelectorOp, Sym, Taint, TaintEffect};
use crate::plugins::build_profile;
use crate::snapshot::{NodeIdx, Snapshot};
use crate::spark::annotations::{DRIVER_CAPACITY, EXECUTOR_CAPACITY_MIX};
use crate::testkit::*;
use proptest::prelude::*;

/// Knobs drawn per node and per pod; the builders below turn them into objects.
#[derive(Debug, Clone)]
struct NodeSpec {
    cpu: i64,
    mem_gi: i64,
    zone: Option<u8>,
    kind: u8,
    taint: u8,
    cordoned: bool,
    gpus: i64,
    pods: Vec<(u8, i64, i64)>,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        // Now and then a node of 16 TiB, past the scorers' multiply-only quotient.
        (
            prop_oneof![Just(0i64), 4_000i64..64_000],
            prop_oneof![12 => 0i64..64, 1 => Just(16 * 1024)],
        ),
        (
            proptest::option::of(0u8..3),
            0u8..3,
            0u8..6,
            proptest::bool::weighted(0.1),
        ),
        prop_oneof![3 => Just(0i64), 1 => 1i64..4],
        proptest::collection::vec((0u8..8, 0i64..4_000, 0i64..8), 0..6),
    )
        .prop_map(
            |((cpu, mem_gi), (zone, kind, taint, cordoned), gpus, pods)| NodeSpec {
                cpu,
                mem_gi,
                zone,
                kind,
                taint,
                cordoned,
                gpus,
                pods,
            },
        )
}

const GPU: &str = "example.com/gpu";
const HOSTNAME: &str = crate::model::LABEL_HOSTNAME;
const ZONE: &str = crate::model::LABEL_ZONE;

fn build_cluster(specs: &[NodeSpec], nominate: bool) -> Snapshot {
    let mut snap = Snapshot::new(Default::default());
    for (i, s) in specs.iter().enumerate() {
        let mut b = node(&format!("n{i:02}"), s.cpu, s.mem_gi * GI)
            .pods(3 + i as i64 % 5)
            .ephemeral((i as i64 % 4) * 10 * GI)
            .label("rack", &format!("r{}", i % 3))
            .label("generation", &(i % 4).to_string());
        if let Some(z) = s.zone {
            b = b.zone(&format!("z{z}"));
        }
        b = match s.kind {
            0 => b.spot(),
            1 => b.on_demand(),
            _ => b,
        };
        b = match s.taint {
            1 => b.taint("dedicated", "gpu", TaintEffect::NoSchedule),
            2 => b.taint("cheap", "yes", TaintEffect::PreferNoSchedule),
            3 => b
                .taint("cheap", "yes", TaintEffect::PreferNoSchedule)
                .taint("old", "", TaintEffect::PreferNoSchedule),
            4 => b.taint("gone", "", TaintEffect::NoExecute),
            _ => b,
        };
        if s.cordoned {
            b = b.unschedulable();
        }
        if s.gpus > 0 {
            b = b.scalar(GPU, s.gpus);
        }
        let name = format!("n{i:02}");
        snap.upsert_node(b.build());
        for (j, &(role, cpu, mem_gi)) in s.pods.iter().enumerate() {
            let p = pod(&format!("p{i}-{j}"), cpu, mem_gi * GI)
                .namespace("spark")
                .ephemeral(3 * GI);
            let p = match role {
                0 => p.executor("app-a").priority(50),
                1 => p.executor("app-b").priority(50),
                2 => p.executor("app-a").terminating(),
                3 => p.scalar(GPU, 1),
                // Inter-pod terms: a host no web pod may share, and a web pod
                // that likes app-a's executors in its zone.
                6 => p.required_anti_affinity(HOSTNAME, &[("app", "web")]),
                7 => p.label("app", "web").preferred_affinity(
                    20,
                    ZONE,
                    &[("spark-app-selector", "app-a")],
                ),
                _ => p.label("app", "web"),
            };
            let _ = snap.upsert_pod(p.on(&name).arc());
        }
    }
    for (app, mix) in [
        ("app-a", "spot=40,on-demand=60"),
        ("app-b", "hard:spot=1,on-demand=1"),
    ] {
        let first = snap.nodes().live_indices().next();
        if let Some(n) = first {
            let on = snap.nodes().name[n as usize].to_string();
            let d = pod(&format!("{app}-driver"), 100, GI)
                .namespace("spark")
                .driver(app)
                .annotation(EXECUTOR_CAPACITY_MIX, mix)
                .on(&on)
                .arc();
            let _ = snap.upsert_pod(d);
        }
    }
    if nominate {
        let live: Vec<NodeIdx> = snap.nodes().live_indices().collect();
        if let Some(&n) = live.get(live.len() / 2) {
            snap.nominate(pod("nominated", 2_000, 4 * GI).priority(100).arc(), n);
        }
    }
    snap
}

fn incoming(kind: u8, cpu: i64, mem_gi: i64, extra: u8) -> Pod {
    incoming_named("incoming", kind, cpu, mem_gi, extra)
}

fn incoming_named(name: &str, kind: u8, cpu: i64, mem_gi: i64, extra: u8) -> Pod {
    let b = pod(name, cpu, mem_gi * GI).namespace("spark");
    let b = match kind {
        0 => b.executor("app-a"),
        1 => b.executor("app-b"),
        2 => b.executor("app-c"),
        3 => b.driver("app-d").annotation(DRIVER_CAPACITY, "on-demand"),
        _ => b,
    };
    let b = match extra {
        1 => b.tolerate("dedicated", "gpu", None),
        2 => b.tolerate("cheap", "yes", Some(TaintEffect::PreferNoSchedule)),
        3 => b.node_selector("rack", "r1"),
        4 => b.affinity(NodeAffinity {
            required: None,
            preferred: vec![PreferredTerm {
                weight: 5,
                term: term(vec![req("rack", SelectorOp::In, &["r0", "r2"])]),
            }],
        }),
        5 => b.scalar(GPU, 1),
        8 => b.ephemeral(8 * GI),
        6 => b.spread(
            1,
            "topology.kubernetes.io/zone",
            true,
            selector(&[("app", "web")]),
        ),
        7 => b.tolerate(
            "node.kubernetes.io/unschedulable",
            "",
            Some(TaintEffect::NoSchedule),
        ),
        9 => b.node_selector("rack", "r2"),
        // Asks for one node by name (spec.nodeName).
        10 => b.on("n01"),
        11 => b.affinity(NodeAffinity {
            required: Some(vec![term(vec![req("rack", SelectorOp::In, &["r0", "r1"])])]),
            preferred: vec![],
        }),
        12 => b.affinity(NodeAffinity {
            required: Some(vec![term(vec![req("rack", SelectorOp::NotIn, &["r1"])])]),
            preferred: vec![],
        }),
        // Inter-pod affinity: one executor of app-a per host; next to a web
        // pod's zone; preferences; a web pod (which placed guards repel).
        13 => b.required_anti_affinity(
            HOSTNAME,
            &[("spark-role", "executor"), ("spark-app-selector", "app-a")],
        ),
        14 => b.required_affinity(ZONE, &[("app", "web")]),
        15 => b
            .preferred_affinity(30, ZONE, &[("app", "web")])
            .preferred_anti_affinity(10, HOSTNAME, &[("spark-app-selector", "app-a")]),
        16 => b.label("app", "web"),
        // Terms ORed, with every operator the label columns evaluate; one
        // that compares numbers (matched node by node); an empty term, which
        // matches nothing, beside one that does.
        17 => b.affinity(NodeAffinity {
            required: Some(vec![
                term(vec![
                    req("rack", SelectorOp::In, &["r0", "r2"]),
                    req(ZONE, SelectorOp::DoesNotExist, &[]),
                ]),
                term(vec![
                    req(ZONE, SelectorOp::Exists, &[]),
                    req(ZONE, SelectorOp::NotIn, &["z0", "z1"]),
                ]),
            ]),
            preferred: vec![],
        }),
        18 => b.affinity(NodeAffinity {
            required: Some(vec![term(vec![
                req("rack", SelectorOp::Exists, &[]),
                req("generation", SelectorOp::Gt, &["1"]),
            ])]),
            preferred: vec![],
        }),
        19 => b.node_selector("rack", "r0").affinity(NodeAffinity {
            required: Some(vec![
                term(vec![]),
                term(vec![req(ZONE, SelectorOp::In, &["z0"])]),
            ]),
            preferred: vec![],
        }),
        _ => b,
    };
    b.priority(60).build()
}

/// An incoming pod's extra, the ones that change filter verdicts more often.
fn extra() -> impl Strategy<Value = u8> {
    prop_oneof![
        2 => Just(0u8),
        1 => Just(1u8),
        1 => Just(3u8),
        1 => Just(7u8),
        1 => Just(9u8),
        1 => Just(10u8),
        2 => Just(11u8),
        2 => Just(12u8),
        1 => Just(13u8),
        1 => Just(14u8),
        1 => Just(15u8),
        1 => Just(17u8),
        1 => Just(18u8),
        1 => Just(19u8),
        1 => 0u8..20,
    ]
}

/// Profiles whose plugins are checked: the built-in ones plus the scoring
/// strategies and resource lists the built-ins do not use.
fn profiles() -> Vec<Profile> {
    let config = Config::default();
    let mut out = Vec::new();
    for pc in &config.profiles {
        out.push(build_profile(&config, pc).expect("built-in profile"));
    }
    // Spread that outweighs packing: executor counts per node decide more often.
    let mut tight = config.clone();
    tight.spark.executor_spread.node_max_skew = 1;
    let mut pc = config.profile("spark-fleet").expect("spark-fleet").clone();
    pc.name = "spark-fleet-tight-spread".into();
    for e in &mut pc.plugins {
        if e.name == "ExecutorSpread" {
            e.weight = 20;
        }
    }
    out.push(build_profile(&tight, &pc).expect("variant profile"));
    let base = config
        .profile("kube-default")
        .expect("kube-default")
        .clone();
    // Without one of the two filters that read tolerations, so that each one's
    // `keeps_verdicts` is checked on its own.
    for dropped in ["NodeUnschedulable", "TaintToleration"] {
        let mut pc = base.clone();
        pc.name = format!("kube-default-without-{dropped}");
        pc.plugins.retain(|e| e.name != dropped);
        out.push(build_profile(&config, &pc).expect("variant profile"));
    }
    for (kind, resources) in [
        (ScoringStrategyType::LeastAllocated, vec![]),
        (
            ScoringStrategyType::MostAllocated,
            vec![
                ("cpu", 3),
                ("memory", 1),
                ("ephemeral-storage", 1),
                ("pods", 1),
            ],
        ),
        (
            ScoringStrategyType::LeastAllocated,
            vec![("cpu", 1), (GPU, 2)],
        ),
        // Two columns whose weights do not sum to a power of two: the average divides.
        (
            ScoringStrategyType::MostAllocated,
            vec![("cpu", 1), ("memory", 2)],
        ),
        (ScoringStrategyType::RequestedToCapacityRatio, vec![]),
    ] {
        let mut pc = base.clone();
        let strategy = &mut pc.plugin_args.node_resources_fit.scoring_strategy;
        strategy.kind = kind;
        strategy.requested_to_capacity_ratio = Some(RequestedToCapacityRatio {
            shape: vec![
                UtilizationShapePoint {
                    utilization: 0,
                    score: 0,
                },
                UtilizationShapePoint {
                    utilization: 100,
                    score: 10,
                },
            ],
        });
        strategy.resources = resources
            .iter()
            .map(|&(name, weight)| ResourceWeight {
                name: name.into(),
                weight,
            })
            .collect();
        pc.plugin_args.node_resources_balanced_allocation.resources = resources
            .iter()
            .map(|&(name, _)| ResourceWeight {
                name: name.into(),
                weight: 1,
            })
            .collect();
        out.push(build_profile(&config, &pc).expect("variant profile"));
    }
    out
}

/// Runs each plugin both ways and reports the first disagreement.
fn check_agreement(profile: &Profile, pod: &Pod, snap: &Snapshot) -> Result<(), String> {
    let live: Vec<NodeIdx> = snap.nodes().live_indices().collect();
    let mut state = CycleState::default();
    for p in &profile.pre_filter {
        let st = p.pre_filter(&mut state, pod, snap);
        if st.code == Code::Skip {
            state.mark_skip_filter(p.name());
        } else if !st.is_success() {
            return Ok(()); // the pod is rejected before any node is looked at
        }
    }
    for f in &profile.filter {
        if state.skips_filter(f.name()) {
            continue;
        }
        let mut kept = live.clone();
        let mut rejected = Vec::new();
        let batch = f.filter_nodes(&state, pod, snap, &mut kept, &mut rejected);
        let mut want_kept = Vec::new();
        let mut want_rejected = Vec::new();
        for &n in &live {
            let st = f.filter(&state, pod, snap, n);
            if st.code == Code::Error {
                return Err(format!("{}: error on node {n}", f.name()));
            }
            if st.is_success() {
                want_kept.push(n);
            } else {
                want_rejected.push(n);
            }
        }
        if batch.is_err() || kept != want_kept || rejected != want_rejected {
            return Err(format!(
                "{} in {}: batch kept {kept:?} rejected {rejected:?}, per node kept {want_kept:?} rejected {want_rejected:?}",
                f.name(),
                profile.name
            ));
        }
        // The dense form, when the plugin has one for this pod, passes the same
        // live nodes (dead slots may be left as they were); without one it
        // touches nothing.
        let t = snap.nodes();
        let mut pass = t.live.clone();
        let dense = f.filter_slots(&state, pod, snap, 0, &mut pass);
        let passed: Vec<NodeIdx> = live.iter().copied().filter(|&n| pass[n as usize]).collect();
        if (dense && passed != want_kept) || (!dense && pass != t.live) {
            return Err(format!(
                "{} in {}: dense form ({dense}) passed {passed:?}, per node kept {want_kept:?}",
                f.name(),
                profile.name
            ));
        }
        // Over the slots from a third on (a parallel cycle's later chunk):
        // the same verdicts for those slots.
        let first = t.slots() / 3;
        let mut tail = t.live[first..].to_vec();
        let dense_tail = f.filter_slots(&state, pod, snap, first, &mut tail);
        let wanted: Vec<NodeIdx> = want_kept
            .iter()
            .copied()
            .filter(|&n| n as usize >= first)
            .collect();
        let passed_tail: Vec<NodeIdx> = live
            .iter()
            .copied()
            .filter(|&n| n as usize >= first && tail[n as usize - first])
            .collect();
        if dense_tail != dense || (dense && passed_tail != wanted) {
            return Err(format!(
                "{} in {}: dense form from slot {first} passed {passed_tail:?}, per node kept {wanted:?}",
                f.name(),
                profile.name
            ));
        }
    }
    for p in &profile.pre_score {
        let st = p.pre_score(&mut state, pod, snap, &live);
        if st.code == Code::Skip {
            state.mark_skip_score(p.name());
        }
    }
    for (s, _) in &profile.score {
        if state.skips_score(s.name()) {
            continue;
        }
        let mut batch = vec![-1i64; live.len()];
        s.score_nodes(&state, pod, snap, &live, &mut batch);
        let per_node: Vec<i64> = live
            .iter()
            .map(|&n| s.score(&state, pod, snap, n))
            .collect();
        if batch != per_node {
            return Err(format!(
                "{} in {}: batch {batch:?} per node {per_node:?}",
                s.name(),
                profile.name
            ));
        }
        // A parallel cycle's chunks: the later half of the nodes on its own,
        // then the first half (kept scores must cover the nodes asked for).
        let half = live.len() / 2;
        let mut parts = vec![-1i64; live.len()];
        let (first, second) = parts.split_at_mut(half);
        s.score_nodes(&state, pod, snap, &live[half..], second);
        s.score_nodes(&state, pod, snap, &live[..half], first);
        if parts != per_node {
            return Err(format!(
                "{} in {}: by halves {parts:?} per node {per_node:?}",
                s.name(),
                profile.name
            ));
        }
        // The slot form, in a cycle that scores afresh: every feasible slot's
        // score as per node, over all slots and from a third of them on (a
        // parallel cycle's later chunk).
        state.set_fresh_scores(true);
        let slot_form = slot_form_agrees(s.as_ref(), &state, pod, snap, &live, &per_node);
        state.set_fresh_scores(false);
        if let Err(e) = slot_form {
            return Err(format!("{} in {}: {e}", s.name(), profile.name));
        }
        // How normalize treats the scores is what the plugin says: nothing done,
        // or each score mapped by itself and the highest score alone (then the
        // highest score, put beside any one node's, normalizes it alike).
        let placed = snap.pod_by_key(&pod.key).is_some();
        let by_class = !placed && s.scores_by_class(&state, pod);
        let mut normalized = batch.clone();
        s.normalize(&state, pod, &mut normalized);
        match s.normalization() {
            Normalization::None if normalized != batch => {
                return Err(format!(
                    "{} in {}: says normalize leaves scores alone, but it changes {batch:?} to {normalized:?}",
                    s.name(),
                    profile.name
                ));
            }
            Normalization::ByMaximum => {
                let highest = batch.iter().copied().max().unwrap_or(0);
                for (k, &v) in batch.iter().enumerate() {
                    let mut pair = [v, highest];
                    s.normalize(&state, pod, &mut pair);
                    if pair[0] != normalized[k] {
                        return Err(format!(
                            "{} in {}: says normalize reads only the highest score, but {v} beside {highest} gives {} and among {batch:?} gives {}",
                            s.name(),
                            profile.name,
                            pair[0],
                            normalized[k]
                        ));
                    }
                }
            }
            _ => {}
        }
        if by_class {
            let t = snap.nodes();
            let counts = pod.spark.as_ref().and_then(|sp| snap.app(sp.app));
            let class = |n: NodeIdx| {
                let i = n as usize;
                let on_node = counts.map_or(0, |a| a.executors_by_node.get(n));
                (t.type_id[i], t.zone_id[i], on_node)
            };
            for (a, (&na, &va)) in live.iter().zip(&batch).enumerate() {
                for (&nb, &vb) in live[a + 1..].iter().zip(&batch[a + 1..]) {
                    if class(na) == class(nb) && va != vb {
                        return Err(format!(
                            "{} in {}: scores by class, but nodes {na} and {nb} of class {:?} score {va} and {vb}",
                            s.name(),
                            profile.name,
                            class(na)
                        ));
                    }
                }
            }
        }
        // A uniform score is what every node's normalized score is.
        if let Some(v) = s.uniform_score(&state, pod, snap) {
            s.normalize(&state, pod, &mut batch);
            if batch.iter().any(|&b| b != v) {
                return Err(format!(
                    "{} in {}: uniform score {v}, normalized {batch:?}",
                    s.name(),
                    profile.name
                ));
            }
        }
    }
    Ok(())
}

/// Whether `s` has a slot form for `pod` (`ScorePlugin::score_slots`), and
/// if so, that it gives each of `nodes` its score in `per_node`: over every
/// slot, and over the slots from a third on with the nodes there.
fn slot_form_agrees(
    s: &dyn crate::framework::ScorePlugin,
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    nodes: &[NodeIdx],
    per_node: &[i64],
) -> Result<bool, String> {
    if s.normalization() != Normalization::None {
        return Ok(false);
    }
    let slots = snap.nodes().slots();
    let mut all = vec![-1i64; slots];
    let whole = s.score_slots(state, pod, snap, nodes, 0, &mut all);
    for (&n, &v) in nodes.iter().zip(per_node) {
        if whole && all[n as usize] != v {
            return Err(format!(
                "slot form gives node {n} {} for {v}",
                all[n as usize]
            ));
        }
    }
    let first = slots / 3;
    let at = nodes.partition_point(|&n| (n as usize) < first);
    let mut tail = vec![-1i64; slots - first];
    if s.score_slots(state, pod, snap, &nodes[at..], first, &mut tail) {
        for (&n, &v) in nodes[at..].iter().zip(&per_node[at..]) {
            if tail[n as usize - first] != v {
                let got = tail[n as usize - first];
                return Err(format!(
                    "slot form from slot {first} gives node {n} {got} for {v}"
                ));
            }
        }
    }
    Ok(whole)
}

/// The slot forms of the spark-fleet profile's scorers are there for an
/// executor on a cluster whose nodes are all feasible, and agree with the
/// per-node scores (the property test above checks agreement wherever a
/// form is there, which without forms would be nowhere).
#[test]
fn spark_fleet_scorers_have_slot_forms_that_agree() {
    let config = Config::default();
    let profile = crate::plugins::build_named_profile(&config, "spark-fleet").unwrap();
    let snap = synthetic_cluster_with_app(64, 6);
    let pod = bench_executor("exec-new").build();
    let live: Vec<NodeIdx> = snap.nodes().live_indices().collect();
    let mut state = CycleState::default();
    state.set_fresh_scores(true);
    for p in &profile.pre_filter {
        let _ = p.pre_filter(&mut state, &pod, &snap);
    }
    for p in &profile.pre_score {
        let st = p.pre_score(&mut state, &pod, &snap, &live);
        if st.code == Code::Skip {
            state.mark_skip_score(p.name());
        }
    }
    let mut with_forms = Vec::new();
    for (s, _) in &profile.score {
        if state.skips_score(s.name()) {
            continue;
        }
        let per_node: Vec<i64> = live
            .iter()
            .map(|&n| s.score(&state, &pod, &snap, n))
            .collect();
        match slot_form_agrees(s.as_ref(), &state, &pod, &snap, &live, &per_node) {
            Ok(true) => with_forms.push(s.name()),
            Ok(false) => {}
            Err(e) => panic!("{}: {e}", s.name()),
        }
    }
    with_forms.sort_unstable();
    let mut want = vec![
        "CapacityMix",
        "ExecutorSpread",
        "ImageLocality",
        "NodeResourcesFit",
    ];
    // The resource scorers' slot form is their vector kernel's (AVX2 or better).
    if crate::plugins::pair_kernel::slots_per_node().is_none() {
        want.retain(|n| !n.starts_with("NodeResources"));
    } else {
        want.push("NodeResourcesBalancedAllocation");
        want.sort_unstable();
    }
    assert_eq!(with_forms, want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn batch_and_per_node_forms_agree(
        specs in proptest::collection::vec(node_spec(), 1..24),
        nominate in any::<bool>(),
        removed in proptest::option::of(0usize..24),
        kind in 0u8..5,
        cpu in 0i64..6_000,
        mem_gi in 0i64..12,
        extra in 0u8..20,
    ) {
        let mut snap = build_cluster(&specs, nominate);
        // A removed node leaves a dead slot the batch scans must skip.
        if let Some(r) = removed.filter(|r| *r < specs.len()) {
            snap.remove_node(crate::model::Sym::new(&format!("n{r:02}")));
        }
        let p = incoming(kind, cpu, mem_gi, extra);
        for profile in profiles() {
            if let Err(e) = check_agreement(&profile, &p, &snap) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

#[test]
fn node_flag_counts_follow_updates_and_removals() {
    let mut snap = Snapshot::new(Default::default());
    snap.upsert_node(node("a", 1000, GI).unschedulable().build());
    snap.upsert_node(
        node("b", 1000, GI)
            .taint("k", "", TaintEffect::NoSchedule)
            .taint("s", "", TaintEffect::PreferNoSchedule)
            .build(),
    );
    let t = snap.nodes();
    assert_eq!(
        (
            t.unschedulable_nodes,
            t.hard_tainted_nodes,
            t.soft_tainted_nodes
        ),
        (1, 1, 1)
    );
    snap.upsert_node(node("a", 1000, GI).build());
    snap.remove_node(crate::model::Sym::new("b"));
    let t = snap.nodes();
    assert_eq!(
        (
            t.unschedulable_nodes,
            t.hard_tainted_nodes,
            t.soft_tainted_nodes
        ),
        (0, 0, 0)
    );
    assert_eq!(t.live_list().len(), 1);
}

/// A change to the cluster between two cycles, for `kept_scores_match_fresh_ones`.
#[derive(Debug, Clone)]
enum Change {
    /// A pod of (cpu, memory GiB) bound to the node at this position among the live ones.
    Bind(usize, i64, i64),
    /// The k-th pod bound by `Bind` goes away.
    Unbind(usize),
    /// The node at this position gets new allocatable cpu (its pods stay).
    Resize(usize, i64),
    Remove(usize),
    /// A new node (reusing a freed slot when there is one).
    Add(i64),
    /// The node at this position is cordoned, or uncordoned if it was.
    Cordon(usize),
    /// The node at this position gets a NoSchedule taint, or loses its taints.
    Taint(usize),
    /// The node at this position moves to another rack (label).
    Relabel(usize),
    /// A pod of this cpu is nominated to the node at this position (preemption).
    Nominate(usize, i64),
    /// Work on a clone and the original in turn from here on.
    Fork,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (0usize..32, 0i64..3_000, 0i64..6).prop_map(|(n, c, m)| Change::Bind(n, c, m)),
        2 => (0usize..8).prop_map(Change::Unbind),
        1 => (0usize..32, 1_000i64..64_000).prop_map(|(n, c)| Change::Resize(n, c)),
        1 => (0usize..32).prop_map(Change::Remove),
        1 => (1_000i64..64_000).prop_map(Change::Add),
        1 => (0usize..32).prop_map(Change::Cordon),
        1 => (0usize..32).prop_map(Change::Taint),
        1 => (0usize..32).prop_map(Change::Relabel),
        1 => (0usize..32, 1_000i64..40_000).prop_map(|(n, c)| Change::Nominate(n, c)),
        1 => Just(Change::Fork),
    ]
}

fn apply(snap: &mut Snapshot, c: &Change, bound: &mut Vec<crate::model::PodKey>, step: usize) {
    let live: Vec<NodeIdx> = snap.nodes().live_indices().collect();
    let at = |k: usize| (!live.is_empty()).then(|| live[k % live.len()]);
    match *c {
        Change::Bind(k, cpu, mem_gi) => {
            if let Some(n) = at(k) {
                let name = snap.nodes().name[n as usize].to_string();
                let p = pod(&format!("bound-{step}"), cpu, mem_gi * GI)
                    .namespace("spark")
                    .executor("app-a");
                // Now and then one that keeps app-a's executors off its host.
                let p = if step % 4 == 3 {
                    p.required_anti_affinity(
                        HOSTNAME,
                        &[("spark-role", "executor"), ("spark-app-selector", "app-a")],
                    )
                } else {
                    p
                };
                let p = p.on(&name).arc();
                bound.push(p.key.clone());
                let _ = snap.upsert_pod(p);
            }
        }
        Change::Unbind(k) => {
            if !bound.is_empty() {
                let key = bound.remove(k % bound.len());
                snap.remove_pod(&key);
            }
        }
        Change::Resize(k, cpu) => {
            if let Some(n) = at(k) {
                let old = &snap.nodes().node[n as usize];
                let mut new = old.clone();
                new.allocatable.milli_cpu = cpu;
                snap.upsert_node(new);
            }
        }
        Change::Remove(k) => {
            if let Some(n) = at(k) {
                let name = snap.nodes().name[n as usize];
                snap.remove_node(name);
            }
        }
        Change::Add(cpu) => {
            snap.upsert_node(
                node(&format!("added-{step}"), cpu, 64 * GI)
                    .zone("z1")
                    .build(),
            );
        }
        Change::Cordon(k) => {
            if let Some(n) = at(k) {
                let mut new = snap.nodes().node[n as usize].clone();
                new.unschedulable = !new.unschedulable;
                snap.upsert_node(new);
            }
        }
        Change::Taint(k) => {
            if let Some(n) = at(k) {
                let mut new = snap.nodes().node[n as usize].clone();
                if new.taints.is_empty() {
                    new.taints.push(Taint {
                        key: Sym::new("dedicated"),
                        value: Sym::new("gpu"),
                        effect: TaintEffect::NoSchedule,
                    });
                } else {
                    new.taints.clear();
                }
                snap.upsert_node(new);
            }
        }
        Change::Relabel(k) => {
            if let Some(n) = at(k) {
                let rack = Sym::new("rack");
                let old = snap.nodes().node[n as usize].labels.get(rack);
                let next = if old.is_some_and(|v| v.as_str() == "r1") {
                    "r2"
                } else {
                    "r1"
                };
                let mut new = snap.nodes().node[n as usize].clone();
                new.labels.insert(rack, Sym::new(next));
                snap.upsert_node(new);
            }
        }
        Change::Nominate(k, cpu) => {
            if let Some(n) = at(k) {
                let p = pod(&format!("nominated-{step}"), cpu, 4 * GI).priority(100);
                snap.nominate(p.arc(), n);
            }
        }
        Change::Fork => {}
    }
}

/// Applies change number `step`: after a fork, to the clone and the original
/// in turn, so that the two tables hold different states in the same slots.
fn apply_step(
    snap: &mut Snapshot,
    other: &mut Option<Snapshot>,
    c: &Change,
    bound: &mut Vec<crate::model::PodKey>,
    step: usize,
) {
    if matches!(c, Change::Fork) && other.is_none() {
        *other = Some(snap.clone());
    }
    match other.as_mut() {
        Some(o) if step % 2 == 1 => apply(o, c, bound, step),
        _ => apply(snap, c, bound, step),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Score plugins keep node scores between cycles (`score_memo`): after any
    /// sequence of binds, unbinds, node changes, removals, additions and clones,
    /// with two pods of different requests taking turns, the batch scores (kept
    /// where a node is unchanged) equal the per-node ones computed afresh. The
    /// profiles live across the whole sequence, as in the scheduler.
    #[test]
    fn kept_scores_match_fresh_ones(
        specs in proptest::collection::vec(node_spec(), 1..16),
        changes in proptest::collection::vec(change(), 1..24),
        pods in proptest::collection::vec((0u8..5, 0i64..6_000, 0i64..12, 0u8..17), 2),
    ) {
        let mut snap = build_cluster(&specs, false);
        let profiles = profiles();
        let incoming: Vec<Pod> = pods
            .iter()
            .map(|&(kind, cpu, mem_gi, extra)| incoming(kind, cpu, mem_gi, extra))
            .collect();
        let mut bound = Vec::new();
        let mut other: Option<Snapshot> = None;
        for (step, c) in changes.iter().enumerate() {
            apply_step(&mut snap, &mut other, c, &mut bound, step);
            let snaps: Vec<&Snapshot> = std::iter::once(&snap).chain(other.iter()).collect();
            for s in snaps {
                for p in [&incoming[step % 2], &incoming[(step + 1) % 2]] {
                    for profile in &profiles {
                        if let Err(e) = check_agreement(profile, p, s) {
                            prop_assert!(false, "after {:?} (step {}): {}", c, step, e);
                        }
                    }
                }
            }
        }
    }
}

/// What a decision shows: the node, the feasible nodes, every rejected node's
/// status, the scores and the message.
fn decision_view(d: &Decision) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        d.node,
        d.feasible,
        d.statuses.per_node,
        d.scores
            .iter()
            .map(|s| (s.node, s.total, s.plugins.clone()))
            .collect::<Vec<_>>(),
        d.error,
        d.message()
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whole cycles with kept verdicts and scores (`framework::cycle::kept_verdicts`,
    /// `score_memo`) decide exactly as cycles that compute everything afresh:
    /// same node, feasible nodes, rejection statuses, scores and message, after
    /// any sequence of binds, unbinds, node resizes, cordons, taints, relabels,
    /// nominations, removals, additions and clones, with three pods taking turns.
    /// The profiles live across the whole sequence, as in the scheduler.
    #[test]
    fn kept_cycles_match_fresh_ones(
        specs in proptest::collection::vec(node_spec(), 1..16),
        changes in proptest::collection::vec(change(), 1..24),
        (kind, cpu, mem_gi) in (0u8..5, 0i64..6_000, 0i64..12),
        (extra_a, extra_b) in (extra(), extra()),
        other_pod in (0u8..5, 0i64..6_000, 0i64..12, extra()),
    ) {
        let mut snap = build_cluster(&specs, false);
        let profiles = profiles();
        // Two pods that differ only in their extra (selector, tolerations...),
        // so that the second may take the first one's kept verdicts, and one
        // drawn on its own.
        let (k, cpu_c, m, e) = other_pod;
        let (pod_a, pod_b, pod_c) = (
            incoming(kind, cpu, mem_gi, extra_a),
            incoming(kind, cpu, mem_gi, extra_b),
            incoming(k, cpu_c, m, e),
        );
        let mut bound = Vec::new();
        let mut other: Option<Snapshot> = None;
        for (step, c) in changes.iter().enumerate() {
            apply_step(&mut snap, &mut other, c, &mut bound, step);
            for s in std::iter::once(&mut snap).chain(other.as_mut()) {
                for p in [&pod_a, &pod_b, &pod_a, &pod_c] {
                    for profile in &profiles {
                        let run = |fresh, s: &mut Snapshot| {
                            let opts = CycleOptions { detail: true, fresh, ..CycleOptions::default() };
                            decision_view(&schedule(profile, p, s, opts))
                        };
                        let kept = run(false, s);
                        let fresh = run(true, s);
                        prop_assert_eq!(kept, fresh, "after {:?} (step {}) in {}", c, step, profile.name);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Decisions from kept totals (`framework::cycle::kept_totals`), and from
    /// bounded selection (`framework::cycle::bounded`), are those of cycles that
    /// score every node afresh: the same node, total, feasible nodes
    /// and message, as executors of several applications are placed one after
    /// another (each assumed where the cycle put it, so classes and scores
    /// move), between binds, unbinds, node changes, removals, additions and
    /// clones. The profiles live across the whole sequence, as in the scheduler.
    #[test]
    fn kept_totals_decide_as_fresh_cycles(
        specs in proptest::collection::vec(node_spec(), 1..16),
        changes in proptest::collection::vec(change(), 1..16),
        // Mostly executors; the pods differ from the first in one thing at
        // most (application, size or extra), so that each condition for
        // keeping totals from one pod to the next is met and missed by one.
        first in (
            prop_oneof![3 => Just(0u8), 2 => Just(2u8), 1 => 0u8..5],
            (0i64..1_500, 0i64..3),
            extra(),
        ),
        variants in proptest::collection::vec(
            prop_oneof![
                2 => Just(None),
                1 => (0u8..5).prop_map(|k| Some((Some(k), None, None))),
                1 => (0i64..3_000, 0i64..4).prop_map(|s| Some((None, Some(s), None))),
                1 => extra().prop_map(|e| Some((None, None, Some(e)))),
            ],
            0..3,
        ),
        repeats in 1usize..8,
    ) {
        let (kind, (cpu, mem_gi), extra) = first;
        let pods: Vec<(u8, i64, i64, u8)> = std::iter::once((kind, cpu, mem_gi, extra))
            .chain(variants.iter().map(|v| {
                let (k, size, e) = v.unwrap_or((None, None, None));
                let (c, m) = size.unwrap_or((cpu, mem_gi));
                (k.unwrap_or(kind), c, m, e.unwrap_or(extra))
            }))
            .collect();
        let mut snap = build_cluster(&specs, false);
        let profiles = profiles();
        let mut bound = Vec::new();
        let mut other: Option<Snapshot> = None;
        let view = |d: &Decision| {
            (
                d.node,
                d.scores.first().map(|s| s.total),
                d.feasible.clone(),
                d.error.clone().map(|e| e.message()),
                d.message(),
            )
        };
        for (step, c) in changes.iter().enumerate() {
            apply_step(&mut snap, &mut other, c, &mut bound, step);
            let snaps = std::iter::once(&mut snap).chain(other.as_mut());
            for (fork, s) in snaps.enumerate() {
                for (k, &(kind, cpu, mem_gi, extra)) in pods.iter().enumerate() {
                    for r in 0..repeats {
                        let name = format!("incoming-{step}-{fork}-{k}-{r}");
                        let p = std::sync::Arc::new(incoming_named(&name, kind, cpu, mem_gi, extra));
                        let mut chosen = None;
                        for profile in &profiles {
                            let kept = schedule(profile, &p, s, CycleOptions::default());
                            // Every node scored, and bounded selection without kept totals.
                            let every = CycleOptions { fresh: true, exhaustive: true, ..CycleOptions::default() };
                            let fresh = schedule(profile, &p, s, every);
                            let bounded_opts = CycleOptions { fresh: true, ..CycleOptions::default() };
                            let bounded = schedule(profile, &p, s, bounded_opts);
                            prop_assert_eq!(
                                view(&kept),
                                view(&fresh),
                                "{} after {:?} (step {})", profile.name, c, step
                            );
                            prop_assert_eq!(
                                view(&bounded),
                                view(&fresh),
                                "bounded: {} after {:?} (step {})", profile.name, c, step
                            );
                            chosen = chosen.or(kept.node);
                        }
                        // The application grows where the first profile put it.
                        if let Some(n) = chosen {
                            let _ = s.assume(p.clone(), n);
                            bound.push(p.key.clone());
                        }
                    }
                }
            }
        }
    }
}
