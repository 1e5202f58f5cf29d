use super::*;
use crate::model::capacity::CapacityRules;
use crate::testkit::synthetic_cluster;
use crate::testkit::*;
use std::sync::Arc;

/// Rejects nodes whose name is listed; scores nodes by the number in their name.
struct Fake {
    reject: Vec<&'static str>,
    code: Code,
}

impl Plugin for Fake {
    fn name(&self) -> &'static str {
        "Fake"
    }
}
impl FilterPlugin for Fake {
    fn filter(&self, _: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let name = snap.nodes().name[node as usize].as_str();
        if self.reject.contains(&name) {
            Status::new(self.code, "", "node(s) were rejected by Fake")
        } else {
            Status::success()
        }
    }
}
impl ScorePlugin for Fake {
    fn score(&self, _: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let name = snap.nodes().name[node as usize].as_str();
        name.trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or(0)
    }
}

struct RejectAll;
impl Plugin for RejectAll {
    fn name(&self) -> &'static str {
        "RejectAll"
    }
}
impl PreFilterPlugin for RejectAll {
    fn pre_filter(&self, _: &mut CycleState, _: &Pod, _: &Snapshot) -> Status {
        Status::unresolvable("", "pod has a bad annotation")
    }
}

fn profile(fake: Fake) -> Profile {
    let f = Arc::new(fake);
    let mut set = PluginSet::new("Fake");
    set.filter = Some(f.clone());
    set.score = Some(f);
    Profile::new("test", vec![(set, 2)])
}

fn snapshot(names: &[&str]) -> Snapshot {
    let mut s = Snapshot::new(CapacityRules::default());
    for n in names {
        s.upsert_node(node(n, 1000, GI).build());
    }
    s
}

#[test]
fn picks_best_score_and_reports_filtered() {
    let mut snap = snapshot(&["n1", "n5", "n9", "n3"]);
    let p = profile(Fake {
        reject: vec!["n9"],
        code: Code::Unschedulable,
    });
    let d = schedule(
        &p,
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions {
            detail: true,
            post_filter: true,
            ..CycleOptions::default()
        },
    );
    assert_eq!(snap.nodes().name[d.node.unwrap() as usize].as_str(), "n5");
    assert_eq!(d.feasible.len(), 3);
    assert_eq!(d.evaluated, 4);
    assert_eq!(d.statuses.per_node.len(), 1);
    assert_eq!(d.statuses.per_node[0].1.plugin, "Fake");
    // Weighted: 5 * 2.
    assert_eq!(d.scores[0].total, 10);
    assert_eq!(d.scores[0].plugins, vec![("Fake", 10)]);
    assert!(d.message().is_none());
}

#[test]
fn ties_go_to_the_first_name() {
    let mut snap = snapshot(&["b7", "a7", "c7"]);
    let p = profile(Fake {
        reject: vec![],
        code: Code::Unschedulable,
    });
    let d = schedule(
        &p,
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions::default(),
    );
    assert_eq!(snap.nodes().name[d.node.unwrap() as usize].as_str(), "a7");
}

#[test]
fn no_node_gives_upstream_message() {
    let mut snap = snapshot(&["n1", "n2"]);
    let p = profile(Fake {
        reject: vec!["n1", "n2"],
        code: Code::UnschedulableAndUnresolvable,
    });
    let d = schedule(
        &p,
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions::default(),
    );
    assert!(d.node.is_none());
    assert_eq!(
        d.message().unwrap(),
        "0/2 nodes are available: 2 node(s) were rejected by Fake."
    );
    assert_eq!(d.rejected_by(), vec!["Fake"]);
}

/// No node at all: upstream's ErrNoNodesAvailable, not a "0/0 nodes" FitError,
/// and no preemption.
#[test]
fn no_nodes_gives_upstream_error_message() {
    let config = crate::config::Config::default();
    let profile = crate::plugins::build_named_profile(&config, "kube-default").unwrap();
    let mut snap = Snapshot::new(CapacityRules::default());
    let opts = CycleOptions {
        post_filter: true,
        ..CycleOptions::default()
    };
    let d = schedule(&profile, &pod("p", 100, GI).build(), &mut snap, opts);
    assert!(d.node.is_none() && d.error.is_none() && d.post_filter.is_none());
    assert_eq!(d.message().unwrap(), "no nodes available to schedule pods");
}

/// Upstream evaluates a nominated pod's node first and takes it if it passes
/// the filters, even when another node would score higher; if it does not pass,
/// every node is filtered and scored as usual.
#[test]
fn nominated_node_is_taken_when_it_fits() {
    let config = crate::config::Config::default();
    let profile = crate::plugins::build_named_profile(&config, "kube-default").unwrap();
    let mut snap = Snapshot::new(CapacityRules::default());
    snap.upsert_node(node("a-idle", 4000, 16 * GI).build());
    snap.upsert_node(node("b-busy", 4000, 16 * GI).build());
    snap.upsert_pod(pod("filler", 3000, GI).on("b-busy").arc())
        .unwrap();
    let (a, b) = (
        snap.nodes().by_name("a-idle"),
        snap.nodes().by_name("b-busy"),
    );
    let opts = CycleOptions::default();
    let p = pod("p", 500, GI).arc();
    // Not nominated: the emptier node scores higher.
    assert_eq!(schedule(&profile, &p, &mut snap, opts).node, a);
    snap.nominate(p.clone(), b.unwrap());
    let d = schedule(&profile, &p, &mut snap, opts);
    assert_eq!(d.node, b);
    assert_eq!(d.evaluated, 1);
    // Nominated where it no longer fits: all nodes are tried.
    let big = pod("big", 2000, GI).arc();
    snap.nominate(big.clone(), b.unwrap());
    assert_eq!(schedule(&profile, &big, &mut snap, opts).node, a);
}

#[test]
fn prefilter_rejection_covers_all_nodes() {
    let mut snap = snapshot(&["n1", "n2", "n3"]);
    let mut set = PluginSet::new("RejectAll");
    set.pre_filter = Some(Arc::new(RejectAll));
    let p = Profile::new("t", vec![(set, 1)]);
    let d = schedule(
        &p,
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions::default(),
    );
    assert!(d.node.is_none());
    assert_eq!(
        d.message().unwrap(),
        "0/3 nodes are available: pod has a bad annotation."
    );
    assert_eq!(d.statuses.get(0).unwrap().plugin, "RejectAll");
}

#[test]
fn sampling_stops_after_enough_feasible_nodes_and_rotates() {
    let names: Vec<String> = (0..400).map(|i| format!("n{i}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let mut snap = snapshot(&refs);
    let mut p = profile(Fake {
        reject: vec![],
        code: Code::Unschedulable,
    });
    p.percentage_of_nodes_to_score = 10;
    let d1 = schedule(
        &p,
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions::default(),
    );
    assert_eq!(d1.feasible.len(), 100);
    let d2 = schedule(
        &p,
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions::default(),
    );
    assert_eq!(d2.feasible[0], 100);
}

/// Windowed sampling examines exactly the nodes a node-by-node walk would: it
/// stops at the node that completes the sample, wraps around the node list, and
/// the next cycle starts right after the last node examined.
#[test]
fn sampling_windows_match_a_node_by_node_walk() {
    let names: Vec<String> = (0..400).map(|i| format!("n{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let mut snap = snapshot(&refs);
    // A dead slot in the middle: positions count live nodes only.
    snap.remove_node(crate::model::Sym::new("n150"));
    let rejected: Vec<&'static str> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, n)| &*Box::leak(n.clone().into_boxed_str()))
        .collect();
    let mut p = profile(Fake {
        reject: rejected.clone(),
        code: Code::Unschedulable,
    });
    p.percentage_of_nodes_to_score = 10;
    let live: Vec<NodeIdx> = snap.nodes().live_indices().collect();
    let mut start = 0usize;
    for round in 0..8 {
        let detail = round % 2 == 1;
        let opts = CycleOptions {
            detail,
            ..CycleOptions::default()
        };
        let d = schedule(&p, &pod("p", 1, 1).build(), &mut snap, opts);
        // The walk by hand: from `start`, wrapping, until 100 nodes pass.
        let (mut want_feasible, mut want_rejected, mut k) = (Vec::new(), 0, 0);
        while want_feasible.len() < 100 {
            let n = live[(start + k) % live.len()];
            if rejected.contains(&snap.nodes().name[n as usize].as_str()) {
                want_rejected += 1;
            } else {
                want_feasible.push(n);
            }
            k += 1;
        }
        // Feasible nodes reach plugins in ascending order, wherever the walk wrapped.
        want_feasible.sort_unstable();
        assert_eq!(d.feasible, want_feasible, "round {round}");
        assert_eq!(d.evaluated, k, "round {round}");
        // Reasons are built only when shown.
        let want_statuses = if detail { want_rejected } else { 0 };
        assert_eq!(d.statuses.per_node.len(), want_statuses, "round {round}");
        start = (start + k) % live.len();
    }
}

/// Records reserve/unreserve calls; rejects at Reserve or Permit when told to.
struct Gate {
    name: &'static str,
    reject_reserve: bool,
    permit: PermitDecision,
    log: std::sync::Mutex<Vec<String>>,
}

impl Plugin for Gate {
    fn name(&self) -> &'static str {
        self.name
    }
}
impl ReservePlugin for Gate {
    fn reserve(&self, _: &mut CycleState, _: &Pod, _: &mut Snapshot, _: NodeIdx) -> Status {
        self.log
            .lock()
            .unwrap()
            .push(format!("reserve {}", self.name));
        if self.reject_reserve {
            Status::unschedulable("", "reserve refused")
        } else {
            Status::success()
        }
    }
    fn unreserve(&self, _: &mut CycleState, _: &Pod, _: &mut Snapshot, _: NodeIdx) {
        self.log
            .lock()
            .unwrap()
            .push(format!("unreserve {}", self.name));
    }
}
impl PermitPlugin for Gate {
    fn permit(&self, _: &CycleState, _: &Pod, _: &Snapshot, _: NodeIdx) -> PermitDecision {
        self.permit.clone()
    }
}

fn gate(name: &'static str, reject_reserve: bool, permit: PermitDecision) -> Arc<Gate> {
    Arc::new(Gate {
        name,
        reject_reserve,
        permit,
        log: std::sync::Mutex::new(Vec::new()),
    })
}

fn gated_profile(gates: &[Arc<Gate>]) -> Profile {
    let f = Arc::new(Fake {
        reject: vec![],
        code: Code::Unschedulable,
    });
    let mut set = PluginSet::new("Fake");
    set.filter = Some(f.clone());
    set.score = Some(f);
    let mut sets = vec![(set, 1)];
    for g in gates {
        let mut s = PluginSet::new(g.name);
        s.reserve = Some(g.clone());
        s.permit = Some(g.clone());
        sets.push((s, 0));
    }
    Profile::new("gated", sets)
}

#[test]
fn reserve_and_permit_allow() {
    let mut snap = snapshot(&["n1", "n2"]);
    let a = gate("A", false, PermitDecision::Allow);
    let d = schedule(
        &gated_profile(std::slice::from_ref(&a)),
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions::default(),
    );
    assert!(d.node.is_some());
    assert_eq!(*a.log.lock().unwrap(), vec!["reserve A"]);
}

#[test]
fn reserve_failure_unreserves_earlier_plugins() {
    let mut snap = snapshot(&["n1", "n2"]);
    let a = gate("A", false, PermitDecision::Allow);
    let b = gate("B", true, PermitDecision::Allow);
    let d = schedule(
        &gated_profile(&[a.clone(), b.clone()]),
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions::default(),
    );
    assert!(d.node.is_none());
    assert_eq!(*a.log.lock().unwrap(), vec!["reserve A", "unreserve A"]);
    assert_eq!(*b.log.lock().unwrap(), vec!["reserve B"]);
    assert_eq!(d.rejected_by(), vec!["B"]);
    assert_eq!(
        d.message().unwrap(),
        "0/2 nodes are available: reserve refused."
    );
}

#[test]
fn permit_reject_unreserves_all() {
    let mut snap = snapshot(&["n1"]);
    let a = gate(
        "A",
        false,
        PermitDecision::Reject(Status::unschedulable("", "not now")),
    );
    let d = schedule(
        &gated_profile(std::slice::from_ref(&a)),
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions::default(),
    );
    assert!(d.node.is_none());
    assert_eq!(*a.log.lock().unwrap(), vec!["reserve A", "unreserve A"]);
    let w = gate("W", false, PermitDecision::Wait(10));
    let d = schedule(
        &gated_profile(&[w]),
        &pod("p", 1, 1).build(),
        &mut snap,
        CycleOptions::default(),
    );
    assert!(d.node.is_none());
    assert!(d.error.is_some());
}

#[test]
fn parallel_and_sequential_cycles_agree() {
    let config = crate::config::Config::default();
    // Above the parallel threshold, with failures (taints, full nodes) and ties.
    let mut snap = synthetic_cluster(5_000, 4, 3);
    let pods = [
        pod("e1", 2000, 8 * GI)
            .namespace("spark")
            .executor("spark-app-1")
            .priority(50_000)
            .build(),
        pod("big", 63_000, GI).build(),
        pod("plain", 500, GI)
            .tolerate("dedicated", "gpu", None)
            .build(),
    ];
    for name in ["spark-fleet", "kube-default"] {
        let profile = crate::plugins::build_named_profile(&config, name).unwrap();
        for p in &pods {
            let run = |parallel, snap: &mut Snapshot| {
                schedule(
                    &profile,
                    p,
                    snap,
                    CycleOptions {
                        detail: true,
                        post_filter: false,
                        parallel,
                        ..CycleOptions::default()
                    },
                )
            };
            let a = run(false, &mut snap);
            let b = run(true, &mut snap);
            assert_eq!(a.node, b.node, "{name} {}", p.key);
            assert_eq!(a.feasible, b.feasible);
            assert_eq!(a.statuses.per_node, b.statuses.per_node);
            let totals = |d: &Decision| {
                d.scores
                    .iter()
                    .map(|s| (s.node, s.total, s.plugins.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(totals(&a), totals(&b));
            assert_eq!(a.message(), b.message());
            // Without detail: dense filtering per slot chunk, every node
            // scored per chunk (no bounded selection), sums per chunk.
            for (fresh, exhaustive) in [(true, true), (true, false), (false, false)] {
                let run = |parallel, snap: &mut Snapshot| {
                    let opts = CycleOptions {
                        parallel,
                        fresh,
                        exhaustive,
                        ..CycleOptions::default()
                    };
                    schedule(&profile, p, snap, opts)
                };
                let a = run(false, &mut snap);
                let b = run(true, &mut snap);
                let what = format!("{name} {} fresh {fresh} exhaustive {exhaustive}", p.key);
                assert_eq!(a.node, b.node, "{what}");
                assert_eq!(a.feasible, b.feasible, "{what}");
                assert_eq!(totals(&a), totals(&b), "{what}");
                assert_eq!(a.message(), b.message(), "{what}");
            }
        }
    }
}

proptest::proptest! {
    /// The blockwise sum and selection give what summing node by node gives:
    /// every raw score clamped to 0..=100 and weighted, the offset added, the
    /// highest total chosen, ties to the lowest name rank; also across blocks,
    /// with large offsets, and split into chunks (a parallel cycle's), ties
    /// across chunks included.
    #[test]
    fn sum_and_select_is_the_plain_sum(
        n in 1usize..700,
        weights in proptest::collection::vec(
            proptest::prop_oneof![4 => 0i64..10, 1 => (1i64 << 32)..(1i64 << 33)],
            0..6,
        ),
        offset in proptest::prop_oneof![0i64..1_000, (1i64 << 40)..(1i64 << 41)],
        chunks in 1usize..4,
        seed in proptest::prelude::any::<u64>(),
    ) {
        // Raw scores mostly in range with many ties, some far out of it.
        let mut x = seed | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let raw: Vec<i64> = (0..n * weights.len())
            .map(|_| match next() % 10 {
                0 => (next() as i64) >> 8,
                1 => -((next() % 1000) as i64),
                _ => (next() % 4 * 33) as i64,
            })
            .collect();
        let feasible: Vec<NodeIdx> = (0..n as NodeIdx).map(|k| k * 2).collect();
        let rank: Vec<u32> = (0..2 * n).map(|_| (next() % 1_000_000) as u32).collect();
        let want: Vec<i64> = (0..n)
            .map(|k| {
                offset
                    + weights
                        .iter()
                        .enumerate()
                        .map(|(j, w)| raw[j * n + k].clamp(0, MAX_NODE_SCORE) * w)
                        .sum::<i64>()
            })
            .collect();
        let want_best = (0..n)
            .max_by(|&a, &b| {
                want[a]
                    .cmp(&want[b])
                    .then(rank[feasible[b] as usize].cmp(&rank[feasible[a] as usize]))
            })
            .unwrap();
        let sums = Sums {
            raw: &raw,
            weights: &weights,
            offset,
            nodes: Positions::Listed(&feasible),
            rank: &rank,
        };
        let parts = split::ranges(n, chunks);
        let mut totals = vec![0i64; n];
        let best = sums.best(&parts, &mut totals).unwrap();
        proptest::prop_assert_eq!(&totals, &want);
        proptest::prop_assert_eq!(
            (want[best], rank[feasible[best] as usize]),
            (want[want_best], rank[feasible[want_best] as usize])
        );
        proptest::prop_assert_eq!(total_at(&raw, &weights, offset, best), want[best]);
        let best_without_totals = sums.best(&parts, &mut []);
        proptest::prop_assert_eq!(best_without_totals, Some(best));
        // In one piece: the same node.
        let whole = split::ranges(n, 1);
        proptest::prop_assert_eq!(sums.best(&whole, &mut []), Some(best));

        // The same columns by slot from `first`, only the slots `feasible`
        // marks taking part (whole chunks and blocks of them none): the best
        // among those, and None when there is none.
        let first = (seed % 7) as usize;
        let dense = next() % 4;
        let mask: Vec<bool> = (0..n).map(|k| next() % 4 < dense && (k / 300) % 2 == 0).collect();
        let rank: Vec<u32> = (0..n + first).map(|_| (next() % 1_000_000) as u32).collect();
        let by_slot = Sums {
            nodes: Positions::Slots { first, feasible: &mask },
            rank: &rank,
            ..sums
        };
        let want_best = (0..n).filter(|&k| mask[k]).max_by(|&a, &b| {
            want[a]
                .cmp(&want[b])
                .then(rank[first + b].cmp(&rank[first + a]))
        });
        let found = by_slot.best(&parts, &mut []);
        let view = |k: Option<usize>| k.map(|k| (want[k], rank[first + k]));
        proptest::prop_assert_eq!(view(found), view(want_best));
        proptest::prop_assert_eq!(found.map(|k| mask[k]), want_best.map(|_| true));
    }
}

/// Scores kept between cycles (`plugins::score_memo`) change no decision: an
/// application's executors scheduled and assumed one after another get the same
/// node and the same per-plugin scores with kept scores as when every score is
/// computed afresh, on both built-in profiles.
#[test]
fn kept_scores_change_no_decision() {
    let config = crate::config::Config::default();
    for name in ["spark-fleet", "kube-default"] {
        let profile = crate::plugins::build_named_profile(&config, name).unwrap();
        let mut snap = synthetic_cluster_with_app(60, 6);
        for k in 0..120 {
            // Two request sizes taking turns, so kept scores are also dropped and rebuilt.
            let cpu = if k % 3 == 0 { 2_000 } else { 1_000 };
            let p = pod(&format!("exec-{k}"), cpu, 8 * GI)
                .namespace("spark")
                .executor("bench-app")
                .priority(50_000)
                .arc();
            let run = |fresh, snap: &mut Snapshot| {
                let opts = CycleOptions {
                    detail: true,
                    fresh,
                    ..CycleOptions::default()
                };
                schedule(&profile, &p, snap, opts)
            };
            let kept = run(false, &mut snap);
            let fresh = run(true, &mut snap);
            let view = |d: &Decision| {
                d.scores
                    .iter()
                    .map(|s| (s.node, s.total, s.plugins.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(kept.node, fresh.node, "{name} executor {k}");
            assert_eq!(view(&kept), view(&fresh), "{name} executor {k}");
            if let Some(n) = kept.node {
                snap.assume(p, n).unwrap();
            }
        }
    }
}

/// Kept totals (`kept_totals`) decide as fresh cycles for an application's
/// executors placed one after another on a synthetic cluster (zones, types,
/// taints), with two applications of identical executors taking turns now and
/// then, on both built-in profiles.
#[test]
fn kept_totals_change_no_decision() {
    let config = crate::config::Config::default();
    for name in ["spark-fleet", "kube-default"] {
        let profile = crate::plugins::build_named_profile(&config, name).unwrap();
        let mut snap = synthetic_cluster_with_app(60, 6);
        for k in 0..150 {
            let app = if k % 7 == 3 { "other-app" } else { "bench-app" };
            let p = bench_executor(&format!("exec-{k}")).executor(app).arc();
            let kept = schedule(&profile, &p, &mut snap, CycleOptions::default());
            let fresh_opts = CycleOptions {
                fresh: true,
                ..CycleOptions::default()
            };
            let fresh = schedule(&profile, &p, &mut snap, fresh_opts);
            let total = |d: &Decision| d.scores.first().map(|s| s.total);
            assert_eq!(kept.node, fresh.node, "{name} executor {k}");
            assert_eq!(total(&kept), total(&fresh), "{name} executor {k}");
            if let Some(n) = kept.node {
                snap.assume(p, n).unwrap();
            }
        }
    }
}

/// Totals kept from a clone with more node slots are not taken for the
/// original's: the clone's added node (the best there) does not exist in the
/// original, whose next cycle must not choose it.
#[test]
fn kept_totals_from_a_larger_clone_stay_there() {
    let config = crate::config::Config::default();
    let profile = crate::plugins::build_named_profile(&config, "kube-default").unwrap();
    let mut original = Snapshot::new(CapacityRules::default());
    for (name, used) in [("a", 3_000), ("b", 2_000), ("c", 1_000)] {
        original.upsert_node(node(name, 4_000, 16 * GI).build());
        let filler = pod(&format!("filler-{name}"), used, GI).on(name).arc();
        original.upsert_pod(filler).unwrap();
    }
    let p = pod("p", 500, GI).arc();
    let opts = CycleOptions::default();
    let c = original.nodes().by_name("c");
    assert_eq!(schedule(&profile, &p, &mut original, opts).node, c);
    let mut clone = original.clone();
    clone.upsert_node(node("d", 64_000, 256 * GI).build());
    let d = clone.nodes().by_name("d");
    assert_eq!(schedule(&profile, &p, &mut clone, opts).node, d);
    // Back on the original: "d"'s slot is past its table's end.
    assert_eq!(schedule(&profile, &p, &mut original, opts).node, c);
}

proptest::proptest! {
    /// `changed_slots` finds exactly the slots whose stamps differ, a missing
    /// slot counting as stamp 0, in ascending order.
    #[test]
    fn changed_slots_are_the_differing_ones(
        kept in proptest::collection::vec(proptest::prop_oneof![0u64..3, proptest::prelude::Just(7u64)], 0..80),
        now in proptest::collection::vec(proptest::prop_oneof![0u64..3, proptest::prelude::Just(7u64)], 0..80),
    ) {
        let mut got = Vec::new();
        changed_slots(&kept, &now, &mut got);
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        let want: Vec<NodeIdx> = (0..kept.len().max(now.len()))
            .filter(|&i| at(&kept, i) != at(&now, i))
            .map(|i| i as NodeIdx)
            .collect();
        proptest::prop_assert_eq!(got, want);
    }
}

/// Rejects the nodes listed, through its dense form when it has one; counts
/// the nodes it judges one by one.
struct Dense {
    name: &'static str,
    reject: Vec<&'static str>,
    code: Code,
    dense: bool,
    judged: std::sync::atomic::AtomicUsize,
}

impl Dense {
    fn new(name: &'static str, reject: &[&'static str], code: Code, dense: bool) -> Arc<Dense> {
        Arc::new(Dense {
            name,
            reject: reject.to_vec(),
            code,
            dense,
            judged: Default::default(),
        })
    }
    fn judged(&self) -> usize {
        self.judged.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Plugin for Dense {
    fn name(&self) -> &'static str {
        self.name
    }
}
impl FilterPlugin for Dense {
    fn filter(&self, _: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        self.judged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = snap.nodes().name[node as usize].as_str();
        if self.reject.contains(&name) {
            Status::new(
                self.code,
                "",
                format!("node(s) were rejected by {}", self.name),
            )
        } else {
            Status::success()
        }
    }
    fn filter_slots(
        &self,
        _: &CycleState,
        _: &Pod,
        snap: &Snapshot,
        first: usize,
        pass: &mut [bool],
    ) -> bool {
        if !self.dense {
            return false;
        }
        for (p, name) in pass.iter_mut().zip(slots_from(&snap.nodes().name, first)) {
            *p &= !self.reject.contains(&name.as_str());
        }
        true
    }
}

fn filter_profile(filters: &[Arc<Dense>]) -> Profile {
    let sets = filters
        .iter()
        .map(|f| {
            let mut set = PluginSet::new(f.name);
            set.filter = Some(f.clone());
            (set, 0)
        })
        .collect();
    Profile::new("test", sets)
}

const COLD: CycleOptions = CycleOptions {
    detail: false,
    post_filter: false,
    parallel: false,
    fresh: true,
    exhaustive: false,
    no_reasons: false,
};

#[test]
fn leading_dense_filters_judge_no_node_one_by_one() {
    let mut snap = snapshot(&["n1", "n2", "n3", "n4", "n5"]);
    snap.remove_node(crate::model::Sym::new("n3"));
    let a = Dense::new("A", &["n1"], Code::Unschedulable, true);
    let b = Dense::new("B", &["n4"], Code::Unschedulable, false);
    let c = Dense::new("C", &["n5"], Code::Unschedulable, true);
    let p = filter_profile(&[a.clone(), b.clone(), c.clone()]);
    let d = schedule(&p, &pod("p", 1, 1).build(), &mut snap, COLD);
    let names = &snap.nodes().name_str;
    assert_eq!(
        d.feasible
            .iter()
            .map(|&n| names[n as usize])
            .collect::<Vec<_>>(),
        ["n2"]
    );
    assert_eq!(d.node.map(|n| names[n as usize]), Some("n2"));
    // A scanned its columns; B, the first without a dense form, and C after it
    // judged the nodes still passing (n2, n4 and n5, then n2 and n5) one by one.
    assert_eq!((a.judged(), b.judged(), c.judged()), (0, 3, 2));
}

#[test]
fn a_list_filter_after_dense_ones_sees_only_their_survivors() {
    // B fails on n1, which A has already rejected: no error, as node by node.
    let mut snap = snapshot(&["n1", "n2"]);
    let a = Dense::new("A", &["n1"], Code::Unschedulable, true);
    let b = Dense::new("B", &["n1"], Code::Error, false);
    let d = schedule(
        &filter_profile(&[a.clone(), b.clone()]),
        &pod("p", 1, 1).build(),
        &mut snap,
        COLD,
    );
    assert!(d.error.is_none(), "{:?}", d.error);
    assert_eq!(
        d.node.map(|n| snap.nodes().name_str[n as usize]),
        Some("n2")
    );
    // In the other order B sees n1 and fails the cycle.
    let d = schedule(
        &filter_profile(&[b, a]),
        &pod("p", 1, 1).build(),
        &mut snap,
        COLD,
    );
    assert_eq!(d.error.map(|e| e.plugin), Some("B"));
}

#[test]
fn when_dense_filters_reject_every_node_each_rejection_is_reported() {
    let mut snap = snapshot(&["n1", "n2", "n3"]);
    let a = Dense::new("A", &["n1", "n3"], Code::UnschedulableAndUnresolvable, true);
    let b = Dense::new("B", &["n1", "n2"], Code::Unschedulable, true);
    let d = schedule(
        &filter_profile(&[a, b]),
        &pod("p", 1, 1).build(),
        &mut snap,
        COLD,
    );
    assert_eq!(d.node, None);
    let by_plugin: Vec<(&str, &str)> = d
        .statuses
        .per_node
        .iter()
        .map(|(n, st)| (snap.nodes().name_str[*n as usize], st.plugin))
        .collect();
    assert_eq!(by_plugin, [("n1", "A"), ("n2", "B"), ("n3", "A")]);
    assert_eq!(
        d.message().as_deref(),
        Some(
            "0/3 nodes are available: 1 node(s) were rejected by B, 2 node(s) were rejected by A."
        )
    );
}
