use super::*;
use crate::testkit::*;

fn snap() -> Snapshot {
    Snapshot::new(CapacityRules::default())
}

#[test]
fn pod_add_remove_updates_usage_and_indices() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    s.upsert_pod(pod("a", 1000, GI).label("app", "x").on("n1").arc())
        .unwrap();
    s.upsert_pod(pod("b", 0, 0).label("app", "x").on("n1").arc())
        .unwrap();
    let t = s.nodes();
    assert_eq!(t.req_cpu[n as usize], 1000);
    assert_eq!(t.pod_count[n as usize], 2);
    // Zero requests count as 100m / 200Mi for scoring only.
    assert_eq!(t.nonzero_cpu[n as usize], 1100);
    let ns = Sym::new("default");
    assert_eq!(
        s.pods_with_label(ns, Sym::new("app"), Sym::new("x"))
            .unwrap()
            .len(),
        2
    );
    assert!(s.remove_pod(&PodKey::new("default", "a")));
    assert_eq!(s.nodes().req_cpu[n as usize], 0);
    assert_eq!(s.pod_ids_on(n).len(), 1);
    assert_eq!(
        s.pods_with_label(ns, Sym::new("app"), Sym::new("x"))
            .unwrap()
            .len(),
        1
    );
    assert!(!s.remove_pod(&PodKey::new("default", "a")));
}

#[test]
fn update_replaces_instead_of_double_counting() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    s.upsert_pod(pod("a", 1000, GI).on("n1").arc()).unwrap();
    s.upsert_pod(pod("a", 1500, GI).on("n1").arc()).unwrap();
    assert_eq!(s.nodes().req_cpu[n as usize], 1500);
    assert_eq!(s.pod_count(), 1);
}

#[test]
fn assume_and_forget() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    let p = pod("a", 1000, GI).arc();
    s.assume(p.clone(), n).unwrap();
    assert!(s.pod_by_key(&p.key).unwrap().assumed);
    assert_eq!(s.nodes().req_cpu[n as usize], 1000);
    assert!(s.forget(&p.key));
    assert_eq!(s.nodes().req_cpu[n as usize], 0);
    // Once confirmed by the API, forget leaves it alone.
    s.assume(p.clone(), n).unwrap();
    s.upsert_pod(pod("a", 1000, GI).on("n1").arc()).unwrap();
    assert!(!s.forget(&p.key));
    assert_eq!(s.nodes().req_cpu[n as usize], 1000);
}

#[test]
fn pods_before_their_node_are_kept() {
    let mut s = snap();
    s.upsert_pod(pod("a", 1000, GI).on("late").arc()).unwrap();
    let n = s.upsert_node(node("late", 4000, 8 * GI).build());
    assert_eq!(s.nodes().req_cpu[n as usize], 1000);
    // Removing and re-adding the node keeps its bound pods accounted.
    assert!(s.remove_node(Sym::new("late")));
    assert_eq!(s.pod_count(), 0);
    let n2 = s.upsert_node(node("late", 4000, 8 * GI).build());
    assert_eq!(s.nodes().req_cpu[n2 as usize], 1000);
}

#[test]
fn node_slots_are_reused() {
    let mut s = snap();
    let a = s.upsert_node(node("a", 1000, GI).build());
    s.upsert_node(node("b", 1000, GI).build());
    s.remove_node(Sym::new("a"));
    assert_eq!(s.nodes().len(), 1);
    let c = s.upsert_node(node("c", 2000, GI).build());
    assert_eq!(a, c);
    assert_eq!(s.nodes().alloc_cpu[c as usize], 2000);
    assert_eq!(s.nodes().req_cpu[c as usize], 0);
    assert_eq!(s.nodes().live_indices().count(), 2);
}

#[test]
fn app_counts_by_capacity_type() {
    let mut s = snap();
    s.upsert_node(node("spot1", 8000, 32 * GI).spot().build());
    s.upsert_node(node("od1", 8000, 32 * GI).on_demand().build());
    s.upsert_pod(pod("d", 1000, GI).driver("app1").on("od1").arc())
        .unwrap();
    for i in 0..3 {
        s.upsert_pod(
            pod(&format!("e{i}"), 1000, GI)
                .executor("app1")
                .on("spot1")
                .arc(),
        )
        .unwrap();
    }
    s.upsert_pod(pod("e9", 1000, GI).executor("app1").on("od1").arc())
        .unwrap();
    let app = s.app(Sym::new("app1")).unwrap();
    assert_eq!(app.executors_of_type(Sym::new("spot")), 3);
    assert_eq!(app.executors_of_type(Sym::new("on-demand")), 1);
    assert!(app.driver.is_some());
    // A spot node relabelled on-demand moves its executors' counts.
    s.upsert_node(node("spot1", 8000, 32 * GI).on_demand().build());
    let app = s.app(Sym::new("app1")).unwrap();
    assert_eq!(app.executors_of_type(Sym::new("spot")), 0);
    assert_eq!(app.executors_of_type(Sym::new("on-demand")), 4);
    // A terminating executor no longer counts toward the mix.
    s.upsert_pod(
        pod("e0", 1000, GI)
            .executor("app1")
            .on("spot1")
            .terminating()
            .arc(),
    )
    .unwrap();
    assert_eq!(
        s.app(Sym::new("app1"))
            .unwrap()
            .executors_of_type(Sym::new("on-demand")),
        3
    );
    assert!(s.remove_node(Sym::new("spot1")));
    assert_eq!(
        s.app(Sym::new("app1"))
            .unwrap()
            .executors_of_type(Sym::new("on-demand")),
        1
    );
}

/// Each application's tally (placed executors, its driver's minimum) equals a
/// recount after every kind of change: executors come, terminate and go,
/// drivers come with good, bad or no minimums and go, nodes go (their pods
/// wait) and come back, pods are assumed and forgotten.
#[test]
fn app_tallies_follow_every_change() {
    use crate::spark::annotations::MIN_EXECUTORS;
    use rand::{Rng, SeedableRng};
    let apps = ["a", "b", "c"];
    for seed in 0..30u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut s = snap();
        let nodes = ["n0", "n1", "n2"];
        for n in nodes {
            s.upsert_node(node(n, 64_000, 256 * GI).build());
        }
        for step in 0..60 {
            let app = apps[rng.random_range(0..apps.len())];
            let n = nodes[rng.random_range(0..nodes.len())];
            match rng.random_range(0..8) {
                0..=2 => {
                    let mut b =
                        pod(&format!("e{}", rng.random_range(0..12)), 100, GI).executor(app);
                    if rng.random_bool(0.2) {
                        b = b.terminating();
                    }
                    if rng.random_bool(0.2) {
                        if let Some(idx) = s.nodes().by_name(n) {
                            let _ = s.assume(b.arc(), idx);
                        }
                    } else {
                        let _ = s.upsert_pod(b.on(n).arc());
                    }
                }
                3 => {
                    let mut b = pod(&format!("{app}-driver"), 100, GI).driver(app);
                    b = match rng.random_range(0..3) {
                        0 => b,
                        1 => b.annotation(MIN_EXECUTORS, &rng.random_range(0..5).to_string()),
                        _ => b.annotation(MIN_EXECUTORS, "many"),
                    };
                    let _ = s.upsert_pod(b.on(n).arc());
                }
                4 => {
                    let name = if rng.random_bool(0.3) {
                        format!("{app}-driver")
                    } else {
                        format!("e{}", rng.random_range(0..12))
                    };
                    s.remove_pod(&PodKey::new("default", &name));
                }
                5 => {
                    s.forget(&PodKey::new(
                        "default",
                        &format!("e{}", rng.random_range(0..12)),
                    ));
                }
                6 => {
                    s.remove_node(Sym::new(n));
                }
                _ => {
                    s.upsert_node(node(n, 64_000, 256 * GI).build());
                }
            }
            for app in apps {
                let sym = Sym::new(app);
                let want = s.app(sym).map(|pods| AppTally {
                    executors: pods.executors_by_type.iter().map(|(_, c)| *c).sum(),
                    driver_min_executors: pods
                        .driver
                        .and_then(|id| s.pod(id))
                        .and_then(|e| e.pod.annotation(MIN_EXECUTORS))
                        .and_then(|v| v.parse().ok()),
                });
                assert_eq!(s.app_tally(sym), want, "seed {seed} step {step} app {app}");
            }
        }
    }
}

#[test]
fn finished_pods_release_resources() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    s.upsert_pod(pod("a", 1000, GI).on("n1").arc()).unwrap();
    let mut done = pod("a", 1000, GI).on("n1").build();
    done.finished = true;
    s.upsert_pod(Arc::new(done)).unwrap();
    assert_eq!(s.nodes().req_cpu[n as usize], 0);
    assert_eq!(s.pod_count(), 0);
}

#[test]
fn nominations_follow_pods_and_nodes() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    let p = pod("hi", 1000, GI).priority(10).arc();
    s.nominate(p.clone(), n);
    assert_eq!(s.nominated_on(n).count(), 1);
    s.remove_pod(&p.key);
    assert_eq!(s.nominated_on(n).count(), 0);
    s.nominate(p.clone(), n);
    s.remove_node(Sym::new("n1"));
    assert!(!s.has_nominations());
}

#[test]
fn unbound_pod_is_rejected() {
    let mut s = snap();
    assert!(matches!(
        s.upsert_pod(pod("a", 1, 1).arc()),
        Err(SnapshotError::NotBound(_))
    ));
}

#[test]
fn pdbs_upsert_replace_remove() {
    use crate::preemption::Pdb;
    let mut s = snap();
    s.upsert_pdb(Pdb::new("ns", "a", selector(&[("app", "x")]), 1));
    s.upsert_pdb(Pdb::new("ns", "a", selector(&[("app", "x")]), 3));
    s.upsert_pdb(Pdb::new("other", "a", selector(&[("app", "x")]), 0));
    assert_eq!(s.pdbs().len(), 2);
    assert_eq!(s.pdbs()[0].disruptions_allowed, 3);
    assert!(s.remove_pdb(Sym::new("ns"), "a"));
    assert!(!s.remove_pdb(Sym::new("ns"), "a"));
    assert_eq!(s.pdbs().len(), 1);
}

#[test]
fn name_ranks_follow_additions_and_removals() {
    let mut s = Snapshot::new(CapacityRules::default());
    for n in ["c", "a", "d", "b"] {
        s.upsert_node(node(n, 1000, GI).build());
    }
    s.remove_node(Sym::new("a"));
    s.upsert_node(node("e", 1000, GI).build());
    let t = s.nodes();
    let mut by_rank: Vec<(u32, &str)> = t
        .live_indices()
        .map(|i| (t.name_rank[i as usize], t.name_str[i as usize]))
        .collect();
    by_rank.sort();
    assert_eq!(by_rank, vec![(0, "b"), (1, "c"), (2, "d"), (3, "e")]);
}

proptest::proptest! {
    /// Counts per node read the same in both forms, across the switches between
    /// them (a map below one node in 8, an array above, back below one in 32).
    #[test]
    fn node_counts_match_a_map_across_forms(
        slots in 1usize..200,
        bumps in proptest::collection::vec((0u32..200, proptest::bool::weighted(0.6)), 0..400),
    ) {
        let mut counts = NodeCounts::default();
        let mut model: std::collections::HashMap<NodeIdx, u32> = Default::default();
        for (node, up) in bumps {
            let node = node % slots as u32;
            let delta = if up { 1 } else { -1 };
            counts.bump(node, delta, slots);
            let m = model.entry(node).or_insert(0);
            *m = m.saturating_add_signed(delta);
            model.retain(|_, c| *c > 0);
            proptest::prop_assert_eq!(counts.len(), model.len());
            proptest::prop_assert_eq!(counts.get(node), model.get(&node).copied().unwrap_or(0));
        }
        let mut listed: Vec<(NodeIdx, u32)> = counts.iter().collect();
        listed.sort_unstable();
        let mut want: Vec<(NodeIdx, u32)> = model.into_iter().collect();
        want.sort_unstable();
        proptest::prop_assert_eq!(listed, want);
    }
}

#[test]
fn node_counts_switch_forms_both_ways() {
    let mut c = NodeCounts::default();
    for n in 0..20 {
        c.bump(n, 1, 100);
    }
    assert!(c.as_dense().is_some(), "20 of 100 slots: an array");
    for n in 0..18 {
        c.bump(n, -1, 100);
    }
    assert!(c.as_dense().is_none(), "2 of 100 slots: a map again");
    assert_eq!(c.iter().count(), 2);
    assert_eq!(c.get(19), 1);
}

#[test]
fn huge_nodes_are_counted_through_updates_and_removal() {
    let mut s = snap();
    let big = 16 * 1024 * GI; // 16 TiB, past SMALL_QUOTIENT_LIMIT
    s.upsert_node(node("a", 4000, 8 * GI).build());
    assert_eq!(s.nodes().huge_nodes, 0);
    s.upsert_node(node("a", 4000, big).build());
    assert_eq!(
        s.nodes().huge_nodes,
        1,
        "an update that grows memory counts"
    );
    s.upsert_node(node("b", 4000, big).build());
    assert_eq!(s.nodes().huge_nodes, 2);
    s.upsert_node(node("a", 4000, 8 * GI).build());
    assert_eq!(s.nodes().huge_nodes, 1, "and one that shrinks it uncounts");
    s.remove_node(crate::model::Sym::new("b"));
    assert_eq!(s.nodes().huge_nodes, 0);
}

#[test]
fn scored_usage_counts_each_pods_own_non_zero_requests() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build()) as usize;
    let scored = |s: &Snapshot| (s.nodes().nonzero_cpu[n], s.nodes().nonzero_mem[n]);
    // Two containers without requests, as converted: twice upstream's defaults.
    let mut two = pod("two", 0, 0).on("n1").build();
    two.non_zero_requests = Some((200, 400 << 20));
    s.upsert_pod(std::sync::Arc::new(two)).unwrap();
    // A pod built without them counts as one container.
    s.upsert_pod(pod("one", 0, GI).on("n1").arc()).unwrap();
    assert_eq!(scored(&s), (300, (400 << 20) + GI));
    s.remove_pod(&pod("two", 0, 0).build().key);
    assert_eq!(scored(&s), (100, GI));
}

#[test]
fn free_room_follows_pods_and_node_updates() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).pods(10).ephemeral(20 * GI).build()) as usize;
    let free = |s: &Snapshot| {
        let t = s.nodes();
        (t.free_cpu[n], t.free_mem[n], t.free_eph[n], t.free_pods[n])
    };
    assert_eq!(free(&s), (4000, 8 * GI, 20 * GI, 10));
    s.upsert_pod(pod("a", 1000, GI).ephemeral(GI).on("n1").arc())
        .unwrap();
    s.upsert_pod(pod("b", 500, 2 * GI).on("n1").arc()).unwrap();
    assert_eq!(free(&s), (2500, 5 * GI, 19 * GI, 8));
    s.remove_pod(&pod("a", 0, 0).build().key);
    assert_eq!(free(&s), (3500, 6 * GI, 20 * GI, 9));
    // A node update changes allocatable and keeps the usage.
    s.upsert_node(node("n1", 2000, 4 * GI).pods(1).build());
    assert_eq!(free(&s), (1500, 2 * GI, 0, 0));
    s.upsert_pod(pod("c", 3000, GI).on("n1").arc()).unwrap();
    assert_eq!(
        free(&s),
        (-1500, GI, 0, -1),
        "over-committed nodes go negative"
    );
}

proptest::proptest! {
    /// Every live node's taint-list id names its taints, through updates and
    /// removals, and the ids listed are exactly those in use.
    #[test]
    fn taint_set_ids_follow_node_changes(
        steps in proptest::collection::vec((0usize..12, proptest::option::of(0u8..4)), 1..80),
    ) {
        use crate::model::TaintEffect;
        let mut s = snap();
        for (k, taints) in steps {
            let name = format!("n{k}");
            match taints {
                None => {
                    s.remove_node(crate::model::Sym::new(&name));
                }
                Some(kind) => {
                    let mut b = node(&name, 1000, GI);
                    if kind & 1 == 1 {
                        b = b.taint("dedicated", "spark", TaintEffect::NoSchedule);
                    }
                    if kind & 2 == 2 {
                        b = b.taint("cheap", "yes", TaintEffect::PreferNoSchedule);
                    }
                    s.upsert_node(b.build());
                }
            }
        }
        let t = s.nodes();
        let lists: std::collections::HashMap<u32, Vec<crate::model::Taint>> =
            t.taint_sets.iter().map(|(id, l)| (id, l.to_vec())).collect();
        let mut used = std::collections::HashSet::new();
        for i in t.live_indices() {
            let id = t.taint_set[i as usize];
            used.insert(id);
            proptest::prop_assert_eq!(&lists[&id], &t.node[i as usize].taints);
        }
        let listed: std::collections::HashSet<u32> =
            lists.keys().copied().filter(|&id| id != 0).collect();
        used.remove(&0);
        proptest::prop_assert_eq!(listed, used);
    }
}

const GPU: &str = "example.com/gpu";
const HUGEPAGES: &str = "hugepages-2Mi";

/// Every usage figure of node `n` (not its stamp), for comparing states.
fn usage(s: &Snapshot, n: NodeIdx) -> String {
    let t = s.nodes();
    let u = n as usize;
    format!(
        "req={}/{}/{} pods={} nz={}/{} free={}/{}/{}/{} sc={:?} exact={:?}",
        t.req_cpu[u],
        t.req_mem[u],
        t.req_eph[u],
        t.pod_count[u],
        t.nonzero_cpu[u],
        t.nonzero_mem[u],
        t.free_cpu[u],
        t.free_mem[u],
        t.free_eph[u],
        t.free_pods[u],
        t.req_scalars[u],
        t.exact_usage(n),
    )
}

/// Bound pods asking about i64::MAX each (what `8Ei` parses to) must not
/// overflow the node's sums: the node reads as full, and taking them off in any
/// order leaves exactly the figures from before.
#[test]
fn huge_requests_fill_the_node_and_leave_it_as_it_was() {
    use crate::config::NodeResourcesFitArgs;
    use crate::framework::{CycleState, FilterPlugin};
    use crate::plugins::NodeResourcesFit;
    let fit = NodeResourcesFit::new(&NodeResourcesFitArgs::default()).unwrap();
    let verdict = |s: &Snapshot, n: NodeIdx, p: &Pod| {
        let st = fit.filter(&CycleState::default(), p, s, n);
        st.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>()
    };
    let small_mem = pod("small", 0, GI).build();
    let small_all = pod("small", 100, GI).ephemeral(GI).scalar(GPU, 1).build();
    let huge = |name: &str| {
        pod(name, i64::MAX, i64::MAX - 7)
            .ephemeral(i64::MAX)
            .scalar(GPU, i64::MAX)
            .on("n1")
            .arc()
    };
    let names = ["h1", "h2", "h3"];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for with_base in [false, true] {
        for order in orders {
            let mut s = snap();
            let n = s.upsert_node(
                node("n1", 64_000, 256 * GI)
                    .ephemeral(100 * GI)
                    .scalar(GPU, 8)
                    .build(),
            );
            if with_base {
                // A small pod stays throughout: a saturating sum would lose it.
                s.upsert_pod(pod("base", 500, GI).scalar(GPU, 1).on("n1").arc())
                    .unwrap();
            }
            let before = usage(&s, n);
            assert!(verdict(&s, n, &small_all).is_empty(), "{before}");
            for name in names {
                s.upsert_pod(huge(name)).unwrap();
            }
            let t = s.nodes();
            let u = n as usize;
            let full = (i64::MAX, i64::MAX, i64::MAX, i64::MAX, i64::MAX);
            let read = (
                t.req_cpu[u],
                t.req_mem[u],
                t.req_eph[u],
                t.nonzero_cpu[u],
                t.nonzero_mem[u],
            );
            assert_eq!(read, full);
            assert_eq!(t.req_scalar(n, Sym::new(GPU)), i64::MAX);
            assert_eq!((t.free_cpu[u], t.free_mem[u]), (FREE_FLOOR, FREE_FLOOR));
            assert_eq!(t.free_eph[u], FREE_FLOOR);
            assert_eq!(
                t.exact_usage(n).mem,
                3 * i128::from(i64::MAX - 7) + i128::from(with_base) * i128::from(GI)
            );
            assert_eq!(verdict(&s, n, &small_mem), ["Insufficient memory"]);
            assert_eq!(
                verdict(&s, n, &small_all),
                [
                    "Insufficient cpu",
                    "Insufficient memory",
                    "Insufficient ephemeral-storage",
                    "Insufficient example.com/gpu"
                ]
            );
            for (k, &i) in order.iter().enumerate() {
                assert!(s.remove_pod(&PodKey::new("default", names[i])));
                if k < 2 {
                    // One huge pod left is still more than the node has.
                    assert_eq!(verdict(&s, n, &small_mem), ["Insufficient memory"]);
                }
            }
            assert_eq!(usage(&s, n), before, "order {order:?}");
            assert!(verdict(&s, n, &small_all).is_empty());
        }
    }
}

/// The dense scan over the free columns agrees: a full node is rejected.
#[test]
fn huge_requests_fill_the_node_for_the_column_scan() {
    use crate::config::NodeResourcesFitArgs;
    use crate::framework::{CycleState, FilterPlugin};
    use crate::plugins::NodeResourcesFit;
    let fit = NodeResourcesFit::new(&NodeResourcesFitArgs::default()).unwrap();
    let mut s = snap();
    s.upsert_node(node("n1", 64_000, 256 * GI).build());
    s.upsert_node(node("n2", 64_000, 256 * GI).build());
    for name in ["h1", "h2"] {
        s.upsert_pod(pod(name, 0, i64::MAX).on("n1").arc()).unwrap();
    }
    let small = pod("small", 100, GI).build();
    let mut pass = s.nodes().live.clone();
    assert!(fit.filter_slots(&CycleState::default(), &small, &s, 0, &mut pass));
    assert_eq!(pass, [false, true]);
}

/// A request drawn from the whole range, mostly from its ends.
fn any_request() -> impl proptest::strategy::Strategy<Value = i64> {
    use proptest::prelude::*;
    prop_oneof![
        2 => Just(0i64),
        3 => Just(i64::MAX),
        2 => (i64::MAX - 1024)..=i64::MAX,
        1 => 1i64..=1024,
        1 => 0i64..=i64::MAX,
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// After any adds and removes of pods with requests anywhere in 0..=i64::MAX,
    /// every usage column is the clamped exact sum over the pods on the node,
    /// and adding then removing a pod changes nothing.
    #[test]
    fn usage_is_the_clamped_exact_sum(
        steps in proptest::collection::vec(
            (
                0usize..6,
                0usize..2,
                proptest::option::weighted(0.7, proptest::array::uniform5(any_request())),
            ),
            1..40,
        ),
        probe in proptest::array::uniform5(any_request()),
    ) {
        use std::collections::{BTreeMap, HashMap};
        let mut s = snap();
        let nodes = ["n1", "n2"].map(|n| s.upsert_node(node(n, 64_000, 256 * GI).ephemeral(GI).build()));
        let build = |name: &str, on: &str, r: [i64; 5]| {
            pod(name, r[0], r[1])
                .ephemeral(r[2])
                .scalar(GPU, r[3])
                .scalar(HUGEPAGES, r[4])
                .on(on)
                .arc()
        };
        // The model: which pods are where, summed independently.
        let mut placed: HashMap<usize, (usize, Arc<Pod>)> = HashMap::new();
        for (slot, at, requests) in steps {
            let name = format!("p{slot}");
            match requests {
                Some(r) => {
                    let p = build(&name, ["n1", "n2"][at], r);
                    s.upsert_pod(p.clone()).unwrap();
                    placed.insert(slot, (at, p));
                }
                None => {
                    let gone = s.remove_pod(&PodKey::new("default", &name));
                    proptest::prop_assert_eq!(gone, placed.remove(&slot).is_some());
                }
            }
            for (k, &n) in nodes.iter().enumerate() {
                let on: Vec<&Arc<Pod>> =
                    placed.values().filter(|(at, _)| *at == k).map(|(_, p)| p).collect();
                let sum = |f: &dyn Fn(&Pod) -> i64| -> i64 {
                    clamp_i64(on.iter().map(|p| i128::from(f(p))).sum())
                };
                let mut scalars: BTreeMap<Sym, i128> = BTreeMap::new();
                for p in &on {
                    for &(name, v) in &p.requests.scalars {
                        *scalars.entry(name).or_default() += i128::from(v);
                    }
                }
                let scalars: Vec<(Sym, i64)> = scalars
                    .into_iter()
                    .filter(|&(_, v)| v != 0)
                    .map(|(name, v)| (name, clamp_i64(v)))
                    .collect();
                let t = s.nodes();
                let u = n as usize;
                let cols = (t.req_cpu[u], t.req_mem[u], t.req_eph[u], t.nonzero_cpu[u], t.nonzero_mem[u]);
                let want = (
                    sum(&|p| p.requests.milli_cpu),
                    sum(&|p| p.requests.memory),
                    sum(&|p| p.requests.ephemeral_storage),
                    sum(&|p| p.non_zero_cpu_mem().0),
                    sum(&|p| p.non_zero_cpu_mem().1),
                );
                proptest::prop_assert_eq!(cols, want);
                proptest::prop_assert_eq!(t.pod_count[u], on.len() as i64);
                proptest::prop_assert_eq!(t.req_scalars[u].to_vec(), scalars);
                let free = |alloc: i64, used: i64| alloc.saturating_sub(used).max(FREE_FLOOR);
                proptest::prop_assert_eq!(
                    (t.free_cpu[u], t.free_mem[u], t.free_eph[u], t.free_pods[u]),
                    (
                        free(t.alloc_cpu[u], want.0),
                        free(t.alloc_mem[u], want.1),
                        free(t.alloc_eph[u], want.2),
                        free(t.alloc_pods[u], on.len() as i64),
                    )
                );
            }
            // A pod in and out again is no change at all.
            let before = usage(&s, nodes[0]);
            s.upsert_pod(build("probe", "n1", probe)).unwrap();
            proptest::prop_assert!(s.remove_pod(&PodKey::new("default", "probe")));
            proptest::prop_assert_eq!(usage(&s, nodes[0]), before);
        }
    }
}

#[test]
fn the_table_version_changes_with_every_change_and_stays_in_clones() {
    let mut s = snap();
    let mut seen = vec![s.nodes().version()];
    let mut changed = |s: &Snapshot, what: &str| {
        let v = s.nodes().version();
        assert!(!seen.contains(&v), "{what}: version {v} seen before");
        seen.push(v);
    };
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    changed(&s, "node added");
    s.upsert_node(node("n1", 2000, 8 * GI).build());
    changed(&s, "node updated");
    s.upsert_pod(pod("a", 1000, GI).on("n1").arc()).unwrap();
    changed(&s, "pod bound");
    s.assume(pod("b", 500, GI).arc(), n).unwrap();
    changed(&s, "pod assumed");
    // A clone holds the same nodes: same version, until one of them changes.
    let mut clone = s.clone();
    assert_eq!(clone.nodes().version(), s.nodes().version());
    assert!(clone.remove_pod(&PodKey::new("default", "a")));
    changed(&clone, "pod removed from the clone");
    assert!(s.remove_pod(&PodKey::new("default", "a")));
    changed(&s, "the same pod removed from the original");
    assert!(s.remove_node(Sym::new("n1")));
    changed(&s, "node removed");
}

#[test]
fn pods_removed_leave_no_entry_in_any_index() {
    let mut s = snap();
    s.upsert_node(node("n1", 64_000, 64 * GI).spot().build());
    let n2 = s.upsert_node(node("n2", 64_000, 64 * GI).on_demand().build());
    let empty = s.retained();
    assert_eq!(empty, Retained::default());
    let mut keys = Vec::new();
    for round in 0..3 {
        let app = format!("app-{round}");
        let mut add = |s: &mut Snapshot, p: PodBuilder| {
            let p = p.namespace(&format!("ns-{round}")).arc();
            keys.push(p.key.clone());
            s.upsert_pod(p).unwrap();
        };
        add(
            &mut s,
            pod(&format!("d{round}"), 100, GI).driver(&app).on("n2"),
        );
        for i in 0..5 {
            add(
                &mut s,
                pod(&format!("e{round}-{i}"), 100, GI)
                    .executor(&app)
                    .label("spark-exec-id", &i.to_string())
                    .label("unique", &format!("{round}-{i}"))
                    .required_anti_affinity(crate::model::LABEL_ZONE, &[("unique", "x")])
                    .on(if i % 2 == 0 { "n1" } else { "n2" }),
            );
        }
        // Bound to a node the snapshot has not seen: an orphan.
        add(&mut s, pod(&format!("o{round}"), 100, GI).on("n-gone"));
        // Assumed, then nominated.
        let assumed = pod(&format!("a{round}"), 100, GI)
            .namespace(&format!("ns-{round}"))
            .arc();
        keys.push(assumed.key.clone());
        s.assume(assumed.clone(), n2).unwrap();
        let nominated = pod(&format!("nom{round}"), 100, GI)
            .namespace(&format!("ns-{round}"))
            .arc();
        keys.push(nominated.key.clone());
        s.nominate(nominated, n2);
    }
    let full = s.retained();
    assert_eq!(full.pods, 3 * 7);
    assert!(full.label_index > 0 && full.apps == 3 && full.app_tallies == 3);
    assert_eq!((full.orphans, full.nominated, full.nominated_on), (1, 3, 3));
    assert_eq!(full.namespace_index, 3);
    for k in &keys {
        s.remove_pod(k);
    }
    assert_eq!(s.retained(), empty);
}
