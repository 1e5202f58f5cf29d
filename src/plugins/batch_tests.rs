//! Every plugin's batch form (`filter_nodes`, `score_nodes`) must agree with its
//! per-node form (`filter`, `score`): the cycle runs the batch form and asks the
//! per-node form for the reasons it shows. Checked on random clusters and pods,
//! through the plugins of every built-in profile and of the other scoring strategies.

use crate::config::{
    Config, RequestedToCapacityRatio, ResourceWeight, ScoringStrategyType, UtilizationShapePoint,
};
use crate::framework::{Code, CycleState, Profile};
use crate::model::{NodeAffinity, Pod, PreferredTerm, SelectorOp, TaintEffect};
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
        proptest::collection::vec((0u8..6, 0i64..4_000, 0i64..8), 0..6),
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

fn build_cluster(specs: &[NodeSpec], nominate: bool) -> Snapshot {
    let mut snap = Snapshot::new(Default::default());
    for (i, s) in specs.iter().enumerate() {
        let mut b = node(&format!("n{i:02}"), s.cpu, s.mem_gi * GI)
            .pods(3 + i as i64 % 5)
            .ephemeral((i as i64 % 4) * 10 * GI)
            .label("rack", &format!("r{}", i % 3));
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
    let b = pod("incoming", cpu, mem_gi * GI).namespace("spark");
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
        _ => b,
    };
    b.priority(60).build()
}

/// Profiles whose plugins are checked: the built-in ones plus the scoring
/// strategies and resource lists the built-ins do not use.
fn profiles() -> Vec<Profile> {
    let config = Config::default();
    let mut out = Vec::new();
    for pc in &config.profiles {
        out.push(build_profile(&config, pc).expect("built-in profile"));
    }
    let base = config
        .profile("kube-default")
        .expect("kube-default")
        .clone();
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
    }
    Ok(())
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
        extra in 0u8..9,
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
                    .executor("app-a")
                    .on(&name)
                    .arc();
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
        Change::Fork => {}
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
        pods in proptest::collection::vec((0u8..5, 0i64..6_000, 0i64..12, 0u8..9), 2),
    ) {
        let mut snap = build_cluster(&specs, false);
        let profiles = profiles();
        let incoming: Vec<Pod> = pods
            .iter()
            .map(|&(kind, cpu, mem_gi, extra)| incoming(kind, cpu, mem_gi, extra))
            .collect();
        let mut bound = Vec::new();
        // After a fork, changes go to the clone and the original in turn: the
        // two tables then hold different states in the same slots.
        let mut other: Option<Snapshot> = None;
        for (step, c) in changes.iter().enumerate() {
            if matches!(c, Change::Fork) && other.is_none() {
                other = Some(snap.clone());
            }
            match other.as_mut() {
                Some(o) if step % 2 == 1 => apply(o, c, &mut bound, step),
                _ => apply(&mut snap, c, &mut bound, step),
            }
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
