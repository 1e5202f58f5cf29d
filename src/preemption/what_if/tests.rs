//! The arithmetic dry run against the snapshot walk on random clusters, and the
//! `depends_on_placed_pods` promises it relies on.

use super::super::tests::fingerprint;
use super::super::*;
use crate::config::{Config, KUBE_DEFAULT, SPARK_FLEET};
use crate::framework::{schedule, CycleOptions, Profile};
use crate::model::capacity::CapacityRules;
use crate::model::spark::LABEL_SPARK_EXEC_INACTIVE;
use crate::model::{Sym, TaintEffect};
use crate::plugins::{build_profile, BuildContext};
use crate::spark::annotations::{
    CAPACITY_MIX_MODE, DRIVER_CAPACITY, EXECUTOR_CAPACITY_MIX, MIN_EXECUTORS,
};
use crate::testkit::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const GPU: &str = "example.com/gpu";
const APPS: [&str; 3] = ["a", "b", "c"];

fn random_pod(rng: &mut ChaCha8Rng, name: &str, priority: i32) -> PodBuilder {
    let mut b = pod(
        name,
        rng.random_range(1..=8) * 250,
        rng.random_range(1..=4) * GI,
    )
    .priority(priority);
    b = match rng.random_range(0..6) {
        0 if rng.random_bool(0.5) => b
            .driver(APPS[rng.random_range(0..3)])
            .annotation(EXECUTOR_CAPACITY_MIX, "spot=50,on-demand=50")
            .annotation(CAPACITY_MIX_MODE, "soft"),
        0 => b.driver(APPS[rng.random_range(0..3)]),
        1 | 2 => b.executor(APPS[rng.random_range(0..3)]),
        _ => b,
    };
    if rng.random_bool(0.2) {
        b = b.scalar(GPU, rng.random_range(1..=2));
    }
    if rng.random_bool(0.4) {
        b = b.label("tier", ["web", "batch"][rng.random_range(0..2)]);
    }
    if rng.random_bool(0.1) {
        b = b.label(LABEL_SPARK_EXEC_INACTIVE, "true");
    }
    if rng.random_bool(0.1) {
        b = b.host_port(80);
    }
    b
}

/// Nodes of mixed size, type and taints, full of pods of mixed priority; PDBs;
/// nominated pods, some counting for the preemptor.
fn random_cluster(rng: &mut ChaCha8Rng) -> Snapshot {
    let nodes = rng.random_range(3..=8);
    random_cluster_of(rng, nodes)
}

fn random_cluster_of(rng: &mut ChaCha8Rng, nodes: usize) -> Snapshot {
    let mut s = Snapshot::new(CapacityRules::default());
    for n in 0..nodes {
        let mut b = node(
            &format!("n{n}"),
            rng.random_range(4..=8) * 1000,
            rng.random_range(8..=16) * GI,
        )
        .pods(rng.random_range(4..=9))
        .zone(["z1", "z2"][n % 2]);
        b = if rng.random_bool(0.5) {
            b.spot()
        } else {
            b.on_demand()
        };
        if rng.random_bool(0.5) {
            b = b.scalar(GPU, rng.random_range(0..=4));
        }
        if rng.random_bool(0.15) {
            b = b.taint("dedicated", "x", TaintEffect::NoSchedule);
        }
        if rng.random_bool(0.05) {
            b = b.unschedulable();
        }
        s.upsert_node(b.build());
    }
    let mut k = 0;
    for n in 0..nodes {
        let name = format!("n{n}");
        let idx = s.nodes().by_name(&name).unwrap();
        for _ in 0..rng.random_range(1..=8) {
            k += 1;
            let prio = rng.random_range(0..5);
            let mut p = random_pod(rng, &format!("p{k}"), prio);
            if rng.random_bool(0.2) {
                p = p.annotation(MIN_EXECUTORS, &rng.random_range(0..3).to_string());
            }
            let assumed = rng.random_bool(0.15);
            // Now and then a placed pod no web pod may join on its host.
            if rng.random_bool(0.05) {
                p = p.required_anti_affinity(crate::model::LABEL_HOSTNAME, &[("tier", "web")]);
            }
            let mut built = if assumed { p } else { p.on(&name) }.build();
            if rng.random_bool(0.8) {
                built.started_ms = Some(rng.random_range(0..1000));
            }
            if assumed {
                s.assume(Arc::new(built), idx).unwrap();
            } else {
                s.upsert_pod(Arc::new(built)).unwrap();
            }
        }
    }
    for i in 0..rng.random_range(0..3) {
        let tier = ["web", "batch"][rng.random_range(0..2)];
        s.upsert_pdb(Pdb::new(
            "default",
            &format!("pdb{i}"),
            selector(&[("tier", tier)]),
            rng.random_range(0..3),
        ));
    }
    for i in 0..rng.random_range(0..6) {
        let prio = rng.random_range(0..8);
        let p = random_pod(rng, &format!("nom{i}"), prio).arc();
        let n = rng.random_range(0..nodes);
        let idx = s.nodes().by_name(&format!("n{n}")).unwrap();
        s.nominate(p, idx);
    }
    s
}

/// A preemptor mostly of the kind the arithmetic covers, sometimes not (host
/// ports, hard spread, executors with a hard mix, drivers asking for executors).
fn random_preemptor(rng: &mut ChaCha8Rng) -> Pod {
    let mut b = pod(
        "pre",
        rng.random_range(2..=16) * 500,
        rng.random_range(1..=8) * GI,
    )
    .priority(rng.random_range(3..=7));
    b = match rng.random_range(0..8) {
        0 => b.executor(APPS[rng.random_range(0..3)]),
        1 | 2 => b.driver("new"),
        3 => b.driver("new").annotation(
            DRIVER_CAPACITY,
            ["on-demand", "spot"][rng.random_range(0..2)],
        ),
        _ => b,
    };
    if rng.random_bool(0.25) {
        b = b.scalar(GPU, rng.random_range(1..=3));
    }
    if rng.random_bool(0.3) {
        b = b.tolerate("dedicated", "x", None);
    }
    if rng.random_bool(0.1) {
        b = b.host_port(80);
    }
    if rng.random_bool(0.1) {
        b = b.spread(1, LABEL_ZONE_KEY, true, selector(&[("tier", "web")]));
    }
    if rng.random_bool(0.1) {
        b = b.annotation(MIN_EXECUTORS, "2");
    }
    if rng.random_bool(0.1) {
        b = b.annotation(EXECUTOR_CAPACITY_MIX, "spot=50,on-demand=50");
        b = b.annotation(CAPACITY_MIX_MODE, "hard");
    }
    // Inter-pod anti-affinity: the victims matching it are what frees a node.
    if rng.random_bool(0.1) {
        b = b.required_anti_affinity(crate::model::LABEL_HOSTNAME, &[("tier", "web")]);
    }
    // A web pod, which placed pods with anti-affinity keep off their hosts.
    if rng.random_bool(0.1) {
        b = b.label("tier", "web");
    }
    b.build()
}

const LABEL_ZONE_KEY: &str = crate::model::LABEL_ZONE;

struct Setup {
    profile: Profile,
    evaluator: Evaluator,
}

fn setups() -> Vec<Setup> {
    let mut out = Vec::new();
    for (name, ignore_gpu) in [
        (KUBE_DEFAULT, false),
        (SPARK_FLEET, false),
        (KUBE_DEFAULT, true),
        (SPARK_FLEET, true),
    ] {
        let mut config = Config::default();
        let mut pc = config.profile(name).unwrap().clone();
        if ignore_gpu {
            pc.plugin_args
                .node_resources_fit
                .ignored_resource_groups
                .push("example.com".into());
        }
        // Drivers then ask for executors: DriverAdmission reads placed pods.
        config.spark.min_executors = u32::from(ignore_gpu);
        if ignore_gpu {
            // Executors inheriting a driver's soft mix would be hard without it.
            config.spark.capacity_mix_mode = crate::config::MixMode::Hard;
        }
        let profile = build_profile(&config, &pc).unwrap();
        let ctx = BuildContext {
            config: &config,
            profile: &pc,
        };
        let policy = if name == SPARK_FLEET {
            VictimPolicy::Spark(SparkPolicy {
                executors_may_preempt_drivers: ignore_gpu,
                min_executors: 1,
                namespace_min_executors: if ignore_gpu {
                    [(Sym::new("default"), 2)].into_iter().collect()
                } else {
                    Default::default()
                },
            })
        } else {
            VictimPolicy::Upstream
        };
        let evaluator = Evaluator::for_profile("Preemption", policy, &ctx);
        out.push(Setup { profile, evaluator });
    }
    out
}

/// What a preemption decided, in comparable form.
fn outcome(r: &PostFilterResult, snap: &Snapshot) -> (String, Option<(String, Vec<String>)>) {
    (
        format!("{:?} {}", r.status.code, r.status.message()),
        r.nomination.as_ref().map(|n| {
            (
                snap.nodes().name[n.node as usize].to_string(),
                n.victims.iter().map(|v| v.key.to_string()).collect(),
            )
        }),
    )
}

#[test]
fn arithmetic_and_snapshot_walk_agree_on_random_clusters() {
    let setups = setups();
    let (mut by_arithmetic, mut walked, mut nominated, mut failed) = (0, 0, 0, 0);
    for seed in 0..800u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut snap = random_cluster(&mut rng);
        let p = random_preemptor(&mut rng);
        let setup = &setups[seed as usize % setups.len()];
        let d = schedule(
            &setup.profile,
            &p,
            &mut snap,
            CycleOptions {
                detail: false,
                post_filter: false,
                ..CycleOptions::default()
            },
        );
        let runner = FilterRunner {
            pre_filters: &setup.profile.pre_filter,
            filters: &setup.profile.filter,
        };
        let before = fingerprint(&snap);
        let (slow, none) = setup
            .evaluator
            .preempt_with(&p, &mut snap, &d.statuses, &runner, false);
        assert_eq!(none.by_arithmetic, 0);
        let (fast, decided) =
            setup
                .evaluator
                .preempt_with(&p, &mut snap, &d.statuses, &runner, true);
        assert_eq!(fingerprint(&snap), before, "seed {seed}");
        assert_eq!(
            outcome(&fast, &snap),
            outcome(&slow, &snap),
            "seed {seed}: {p:?}"
        );
        if decided.by_arithmetic > 0 {
            by_arithmetic += 1;
        } else {
            walked += 1;
        }
        if fast.nomination.is_some() {
            nominated += 1;
        } else {
            failed += 1;
        }
    }
    // Both paths and both outcomes were exercised.
    assert!(by_arithmetic > 200, "{by_arithmetic} by arithmetic");
    assert!(walked > 50, "{walked} walked");
    assert!(nominated > 100 && failed > 100, "{nominated} / {failed}");
}

/// The dry run prepared on several cores gives the one-thread answer (node,
/// victims, the statuses in a failure's message, how many nodes the arithmetic
/// decided) and leaves the snapshot as it found it. Clusters are big enough for
/// several batches: a tenth of the nodes (at least 100) is wanted.
#[test]
fn parallel_dry_run_gives_the_one_thread_answer() {
    let setups = setups();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let (mut parallel, mut nominated, mut walked) = (0, 0, 0);
    for seed in 0..48u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes = rng.random_range(120..=260);
        let mut snap = random_cluster_of(&mut rng, nodes);
        // Every node's CPU taken, so every node needs preemption.
        for n in 0..nodes {
            let name = format!("n{n}");
            let idx = snap.nodes().by_name(&name).unwrap();
            let free = i128::from(snap.nodes().alloc_cpu[idx as usize])
                - snap.nodes().exact_usage(idx).cpu;
            if free > 0 {
                let fill = pod(&format!("fill{n}"), free as i64, 0)
                    .priority(rng.random_range(0..5))
                    .on(&name);
                snap.upsert_pod(fill.arc()).unwrap();
            }
        }
        let p = random_preemptor(&mut rng);
        let setup = &setups[seed as usize % setups.len()];
        let opts = CycleOptions {
            post_filter: false,
            ..CycleOptions::default()
        };
        let d = schedule(&setup.profile, &p, &mut snap, opts);
        let runner = FilterRunner {
            pre_filters: &setup.profile.pre_filter,
            filters: &setup.profile.filter,
        };
        let before = fingerprint(&snap);
        let mut one_thread = setup.evaluator.clone();
        one_thread.parallel = false;
        let (want, want_counts) =
            one_thread.preempt_with(&p, &mut snap, &d.statuses, &runner, true);
        let (got, counts) = pool.install(|| {
            setup
                .evaluator
                .preempt_with(&p, &mut snap, &d.statuses, &runner, true)
        });
        assert_eq!(fingerprint(&snap), before, "seed {seed}");
        assert_eq!(outcome(&got, &snap), outcome(&want, &snap), "seed {seed}");
        assert_eq!(
            counts.by_arithmetic, want_counts.by_arithmetic,
            "seed {seed}"
        );
        assert_eq!(want_counts.prepared_in_parallel, 0);
        if counts.prepared_in_parallel > 0 {
            parallel += 1;
        }
        if got.nomination.is_some() {
            nominated += 1;
        }
        if WhatIf::new(&p, &snap, &runner).is_none() {
            walked += 1;
        }
    }
    assert!(parallel > 30, "{parallel} prepared in parallel");
    assert!(
        nominated > 10 && walked > 3,
        "{nominated} nominated, {walked} walked"
    );
}

/// With the arithmetic, a preemption leaves the snapshot untouched: not even its
/// generation moves (the walk removes and re-adds victims).
#[test]
fn arithmetic_leaves_the_snapshot_alone() {
    let setup = &setups()[0];
    let mut snap = Snapshot::new(CapacityRules::default());
    snap.upsert_node(node("n1", 4000, 16 * GI).scalar(GPU, 2).build());
    snap.upsert_node(node("n2", 4000, 16 * GI).build());
    for (name, n, prio) in [("a", "n1", 1), ("b", "n1", 2), ("c", "n2", 1)] {
        snap.upsert_pod(pod(name, 2000, GI).priority(prio).on(n).arc())
            .unwrap();
    }
    let p = pod("pre", 3000, GI).priority(10).scalar(GPU, 1).build();
    let d = schedule(&setup.profile, &p, &mut snap, CycleOptions::default());
    let runner = FilterRunner {
        pre_filters: &setup.profile.pre_filter,
        filters: &setup.profile.filter,
    };
    let generation = snap.generation();
    let (r, decided) = setup
        .evaluator
        .preempt_with(&p, &mut snap, &d.statuses, &runner, true);
    assert_eq!(decided.by_arithmetic, 1, "n1 only: n2 has no gpu");
    assert_eq!(snap.generation(), generation);
    let (_, nom) = outcome(&r, &snap);
    assert_eq!(
        nom,
        Some(("n1".into(), vec!["default/b".into(), "default/a".into()]))
    );
    let _ = setup
        .evaluator
        .preempt_with(&p, &mut snap, &d.statuses, &runner, false);
    assert_ne!(snap.generation(), generation);
}

/// Pods of about i64::MAX memory on n1, one of them a victim: evicting it
/// leaves more than n1 has (the other pod; or, on a node of i64::MAX memory, a
/// small pod plus a nominated one), which a clamped sum minus the victim would
/// miss. Both the arithmetic and the walk must go to n2.
#[test]
fn huge_requests_are_not_freed_twice() {
    const MAX: i64 = i64::MAX;
    // (n1's memory, the pod that stays on n1, the nominated pod's memory)
    let cases = [(16 * GI, MAX, None), (MAX, GI, Some(MAX - GI))];
    for (n1_mem, stays, nominated) in cases {
        for setup in &setups()[..2] {
            let mut snap = Snapshot::new(CapacityRules::default());
            let n1 = snap.upsert_node(node("n1", 16_000, n1_mem).build());
            snap.upsert_node(node("n2", 4000, 16 * GI).build());
            for (name, n, prio, mem) in [
                ("h1", "n1", 1, MAX),
                ("h2", "n1", 100, stays),
                ("c", "n2", 5, GI),
            ] {
                snap.upsert_pod(pod(name, 3000, mem).priority(prio).on(n).arc())
                    .unwrap();
            }
            if let Some(mem) = nominated {
                snap.nominate(pod("held", 0, mem).priority(50).arc(), n1);
            }
            let p = pod("pre", 2000, GI).priority(10).build();
            let d = schedule(&setup.profile, &p, &mut snap, CycleOptions::default());
            let runner = FilterRunner {
                pre_filters: &setup.profile.pre_filter,
                filters: &setup.profile.filter,
            };
            let want = Some(("n2".to_string(), vec!["default/c".to_string()]));
            for arithmetic in [true, false] {
                let (r, _) =
                    setup
                        .evaluator
                        .preempt_with(&p, &mut snap, &d.statuses, &runner, arithmetic);
                assert_eq!(
                    outcome(&r, &snap).1,
                    want,
                    "n1 memory {n1_mem}, arithmetic {arithmetic}"
                );
            }
        }
    }
}

/// A nominated pod of the preemptor's priority or more holds room on its node,
/// as NodeResourcesFit counts it: the arithmetic must evict one more victim.
#[test]
fn nominated_pods_count_as_the_filter_counts_them() {
    let setup = &setups()[0];
    let mut snap = Snapshot::new(CapacityRules::default());
    let n1 = snap.upsert_node(node("n1", 4000, 16 * GI).build());
    for (name, prio) in [("a", 1), ("b", 2), ("c", 3)] {
        snap.upsert_pod(pod(name, 1000, GI).priority(prio).on("n1").arc())
            .unwrap();
    }
    let p = pod("pre", 2000, GI).priority(10).build();
    let mut victims = Vec::new();
    for nominated_priority in [5, 10, 20] {
        let mut s = snap.clone();
        s.nominate(pod("held", 1000, GI).priority(nominated_priority).arc(), n1);
        let d = schedule(&setup.profile, &p, &mut s, CycleOptions::default());
        let runner = FilterRunner {
            pre_filters: &setup.profile.pre_filter,
            filters: &setup.profile.filter,
        };
        let (r, decided) = setup
            .evaluator
            .preempt_with(&p, &mut s, &d.statuses, &runner, true);
        assert_eq!(decided.by_arithmetic, 1);
        victims.push(outcome(&r, &s).1.unwrap().1.len());
    }
    // Lower-priority nominations do not count; equal and higher ones do.
    assert_eq!(victims, [1, 2, 2]);
}

/// Every filter that says it ignores placed pods gives the same status (and its
/// PreFilter the same Skip) on a node emptied of its pods.
#[test]
fn placed_pod_promises_hold() {
    let setups = setups();
    let mut checked = 0;
    for seed in 0..300u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let snap = random_cluster(&mut rng);
        let p = random_preemptor(&mut rng);
        let setup = &setups[seed as usize % setups.len()];
        let runner = FilterRunner {
            pre_filters: &setup.profile.pre_filter,
            filters: &setup.profile.filter,
        };
        let node = rng.random_range(0..snap.nodes().len()) as NodeIdx;
        let mut empty = snap.clone();
        let keys: Vec<_> = snap.pods_on(node).map(|e| e.pod.key.clone()).collect();
        for k in &keys {
            empty.remove_pod(k);
        }
        let (Ok(full_state), Ok(empty_state)) =
            (runner.prepare(&p, &snap), runner.prepare(&p, &empty))
        else {
            continue;
        };
        for f in runner.filters {
            if f.depends_on_placed_pods(&full_state, &p) {
                continue;
            }
            checked += 1;
            assert_eq!(
                full_state.skips_filter(f.name()),
                empty_state.skips_filter(f.name()),
                "seed {seed}: {}",
                f.name()
            );
            if full_state.skips_filter(f.name()) {
                continue;
            }
            let a = f.filter(&full_state, &p, &snap, node);
            let b = f.filter(&empty_state, &p, &empty, node);
            assert_eq!(
                (a.code, a.message()),
                (b.code, b.message()),
                "seed {seed}: {}",
                f.name()
            );
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn which_plugins_read_placed_pods() {
    let config = Config::default();
    let profile = build_profile(&config, config.profile(SPARK_FLEET).unwrap()).unwrap();
    let runner = FilterRunner {
        pre_filters: &profile.pre_filter,
        filters: &profile.filter,
    };
    let mut snap = Snapshot::new(CapacityRules::default());
    snap.upsert_node(node("n", 1000, GI).build());
    // The driver of application "soft" asks for a soft mix; its executors inherit it.
    snap.upsert_pod(
        pod("soft-driver", 1, 1)
            .driver("soft")
            .annotation(EXECUTOR_CAPACITY_MIX, "spot=50,on-demand=50")
            .annotation(CAPACITY_MIX_MODE, "soft")
            .on("n")
            .arc(),
    )
    .unwrap();
    let reads_with = |profile: &Profile, p: &Pod| -> Vec<&'static str> {
        let runner = FilterRunner {
            pre_filters: &profile.pre_filter,
            filters: &profile.filter,
        };
        // A PreFilter rejection leaves nothing to promise about; ask anyway.
        let state = runner.prepare(p, &snap).unwrap_or_default();
        profile
            .filter
            .iter()
            .filter(|f| f.depends_on_placed_pods(&state, p))
            .map(|f| f.name())
            .collect()
    };
    let reads = |p: &Pod| reads_with(&profile, p);
    let _ = &runner;
    let plain = pod("p", 1, 1).build();
    assert_eq!(reads(&plain), ["NodeResourcesFit"]);
    let ports = pod("p", 1, 1).host_port(80).build();
    assert_eq!(reads(&ports), ["NodePorts", "NodeResourcesFit"]);
    let spread = pod("p", 1, 1)
        .spread(1, "zone", true, selector(&[("a", "b")]))
        .build();
    assert_eq!(reads(&spread), ["NodeResourcesFit", "PodTopologySpread"]);
    let soft = pod("p", 1, 1)
        .spread(1, "zone", false, selector(&[("a", "b")]))
        .build();
    assert_eq!(reads(&soft), ["NodeResourcesFit"]);
    // Executors: without a mix, or with a soft one, the filter is skipped either way.
    let exec = pod("p", 1, 1).executor("x").build();
    assert_eq!(reads(&exec), ["NodeResourcesFit"]);
    let soft_exec = pod("p", 1, 1).executor("soft").build();
    assert_eq!(reads(&soft_exec), ["NodeResourcesFit"]);
    let hard_exec = pod("p", 1, 1)
        .executor("x")
        .annotation(EXECUTOR_CAPACITY_MIX, "spot=50,on-demand=50")
        .annotation(CAPACITY_MIX_MODE, "hard")
        .build();
    assert_eq!(reads(&hard_exec), ["NodeResourcesFit", "CapacityMix"]);
    // Hard by default: the inherited soft mode holds only while the driver is placed.
    let mut hard_config = Config::default();
    hard_config.spark.capacity_mix_mode = crate::config::MixMode::Hard;
    let hard_profile =
        build_profile(&hard_config, hard_config.profile(SPARK_FLEET).unwrap()).unwrap();
    assert_eq!(
        reads_with(&hard_profile, &soft_exec),
        ["NodeResourcesFit"],
        "no mix without the driver"
    );
    hard_config.spark.executor_capacity_mix = Some("spot=1".into());
    let hard_profile =
        build_profile(&hard_config, hard_config.profile(SPARK_FLEET).unwrap()).unwrap();
    assert_eq!(
        reads_with(&hard_profile, &soft_exec),
        ["NodeResourcesFit", "CapacityMix"]
    );
    let driver = pod("p", 1, 1).driver("x").build();
    assert_eq!(reads(&driver), ["NodeResourcesFit"]);
    let admitted = pod("p", 1, 1)
        .driver("x")
        .annotation(MIN_EXECUTORS, "2")
        .build();
    assert_eq!(reads(&admitted), ["NodeResourcesFit", "DriverAdmission"]);
    let bad = pod("p", 1, 1)
        .driver("x")
        .annotation(MIN_EXECUTORS, "many")
        .build();
    assert_eq!(reads(&bad), ["NodeResourcesFit"], "refused either way");
    // GPU cards are freed by victims: the walk, not the arithmetic, decides.
    let share = pod("p", 1, 1).gpu(1, 500, &[]).build();
    assert_eq!(reads(&share), ["NodeResourcesFit", "GpuShare"]);
}

/// When a filter that ignores placed pods rejects the node but NodeResourcesFit,
/// earlier in the profile, would reject it too with every victim gone, the walk
/// reports NodeResourcesFit's status: so must the arithmetic.
#[test]
fn first_failing_filter_in_profile_order_is_reported() {
    let setup = &setups()[1];
    let mut snap = Snapshot::new(CapacityRules::default());
    let n1 = snap.upsert_node(node("n1", 4000, 16 * GI).spot().build());
    snap.upsert_pod(pod("a", 2000, GI).priority(1).on("n1").arc())
        .unwrap();
    // Counts for NodeResourcesFit, not for the resource pre-check.
    snap.nominate(pod("held", 2000, GI).priority(10).arc(), n1);
    let p = pod("pre", 3000, GI)
        .priority(5)
        .driver("new")
        .annotation(DRIVER_CAPACITY, "on-demand")
        .build();
    let d = schedule(&setup.profile, &p, &mut snap, CycleOptions::default());
    let runner = FilterRunner {
        pre_filters: &setup.profile.pre_filter,
        filters: &setup.profile.filter,
    };
    assert!(WhatIf::new(&p, &snap, &runner).is_some());
    let (fast, decided) = setup
        .evaluator
        .preempt_with(&p, &mut snap, &d.statuses, &runner, true);
    assert_eq!(
        decided.by_arithmetic, 0,
        "NodeResourcesFit's own status is needed"
    );
    let (slow, _) = setup
        .evaluator
        .preempt_with(&p, &mut snap, &d.statuses, &runner, false);
    assert_eq!(outcome(&fast, &snap), outcome(&slow, &snap));
    assert!(
        fast.status.message().contains("Insufficient cpu"),
        "{}",
        fast.status.message()
    );
}
