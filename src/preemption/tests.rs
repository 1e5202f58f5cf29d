//! Table tests against the real scheduling cycle (`schedule` with PostFilter on).
//!
//! `TestFit` stands in for NodeResourcesFit (written in parallel); after the
//! merge these tests can use the real plugin instead.

use super::*;
use crate::config::{Config, KUBE_DEFAULT, SPARK_FLEET};
use crate::framework::{
    schedule, CycleOptions, CycleState, FilterPlugin, Plugin, PluginSet, PreFilterPlugin, Profile,
};
use crate::model::capacity::CapacityRules;
use crate::model::spark::LABEL_SPARK_EXEC_INACTIVE;
use crate::model::Sym;
use crate::plugins::{
    BuildContext, DefaultPreemption, NodePorts, NodeUnschedulable, SparkPreemption,
};
use crate::testkit::*;
use std::sync::Arc;

/// cpu / memory / pod slots against the snapshot columns, with upstream's reasons.
struct TestFit;
impl Plugin for TestFit {
    fn name(&self) -> &'static str {
        "TestFit"
    }
}
impl FilterPlugin for TestFit {
    fn filter(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let t = snap.nodes();
        let i = node as usize;
        let mut st = Status::unschedulable("NodeResourcesFit", "");
        st.reasons.clear();
        if t.pod_count[i] + 1 > t.alloc_pods[i] {
            st.reasons.push("Too many pods".into());
        }
        let r = &pod.requests;
        if r.milli_cpu > 0 && r.milli_cpu > t.alloc_cpu[i] - t.req_cpu[i] {
            st.reasons.push("Insufficient cpu".into());
        }
        if r.memory > 0 && r.memory > t.alloc_mem[i] - t.req_mem[i] {
            st.reasons.push("Insufficient memory".into());
        }
        if st.reasons.is_empty() {
            Status::success()
        } else {
            st
        }
    }
}

/// Rejects while the cluster holds `limit` pods or more, counting in PreFilter:
/// passes only if preemption re-runs PreFilter after removing victims.
struct ClusterCap {
    limit: usize,
}
struct Count(usize);
impl Plugin for ClusterCap {
    fn name(&self) -> &'static str {
        "ClusterCap"
    }
}
impl PreFilterPlugin for ClusterCap {
    fn pre_filter(&self, state: &mut CycleState, _: &Pod, snap: &Snapshot) -> Status {
        state.write(Count(snap.pod_count()));
        Status::success()
    }
}
impl FilterPlugin for ClusterCap {
    fn filter(&self, state: &CycleState, _: &Pod, _: &Snapshot, _: NodeIdx) -> Status {
        match state.read::<Count>() {
            Some(c) if c.0 < self.limit => Status::success(),
            _ => Status::unschedulable("ClusterCap", "cluster is full"),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    Default,
    Spark,
    SparkExecutorsMayPreemptDrivers,
}

fn profile_with(flavor: Flavor, extra: Vec<PluginSet>) -> Profile {
    let mut config = Config::default();
    config.spark.executors_may_preempt_drivers = flavor == Flavor::SparkExecutorsMayPreemptDrivers;
    let name = if flavor == Flavor::Default {
        KUBE_DEFAULT
    } else {
        SPARK_FLEET
    };
    let pc = config.profile(name).unwrap().clone();
    let ctx = BuildContext {
        config: &config,
        profile: &pc,
    };
    let mut sets = Vec::new();
    let mut s = PluginSet::new("NodeUnschedulable");
    s.filter = Some(Arc::new(NodeUnschedulable));
    sets.push((s, 0));
    let ports = Arc::new(NodePorts);
    let mut s = PluginSet::new("NodePorts");
    s.pre_filter = Some(ports.clone());
    s.filter = Some(ports);
    sets.push((s, 0));
    let mut s = PluginSet::new("TestFit");
    s.filter = Some(Arc::new(TestFit));
    sets.push((s, 0));
    sets.extend(extra.into_iter().map(|s| (s, 0)));
    let mut s = PluginSet::new("Preemption");
    s.post_filter = Some(if flavor == Flavor::Default {
        Arc::new(DefaultPreemption::new(&ctx))
    } else {
        Arc::new(SparkPreemption::new(&ctx))
    });
    sets.push((s, 0));
    Profile::new("test", sets)
}

fn profile(flavor: Flavor) -> Profile {
    profile_with(flavor, Vec::new())
}

/// Nodes of 4 cpu / 16Gi; pods as (name, node, priority, milli-cpu).
fn cluster(nodes: &[&str], pods: &[(&str, &str, i32, i64)]) -> Snapshot {
    let mut s = Snapshot::new(CapacityRules::default());
    for n in nodes {
        s.upsert_node(node(n, 4000, 16 * GI).build());
    }
    for (i, (name, n, prio, cpu)) in pods.iter().enumerate() {
        s.upsert_pod(
            pod(name, *cpu, GI)
                .priority(*prio)
                .on(n)
                .build_started(i as i64)
                .into(),
        )
        .unwrap();
    }
    s
}

trait Started {
    fn build_started(self, ms: i64) -> Pod;
}
impl Started for PodBuilder {
    fn build_started(self, ms: i64) -> Pod {
        let mut p = self.build();
        p.started_ms = Some(ms);
        p
    }
}

fn run(profile: &Profile, pod: &Pod, snap: &mut Snapshot) -> Decision {
    schedule(
        profile,
        pod,
        snap,
        CycleOptions {
            detail: false,
            post_filter: true,
            ..CycleOptions::default()
        },
    )
}

/// (node, victims by name) of the nomination, if any.
fn outcome(d: &Decision, snap: &Snapshot) -> Option<(String, Vec<String>)> {
    let n = d.post_filter.as_ref()?.nomination.as_ref()?;
    Some((
        snap.nodes().name[n.node as usize].to_string(),
        n.victims.iter().map(|v| v.key.name.clone()).collect(),
    ))
}

fn post_message(d: &Decision) -> String {
    d.post_filter.as_ref().unwrap().status.message()
}

#[test]
fn upstream_victim_and_node_choice_table() {
    struct Case {
        name: &'static str,
        pods: Vec<(&'static str, &'static str, i32, i64)>,
        preemptor_cpu: i64,
        want: Option<(&'static str, Vec<&'static str>)>,
    }
    let cases = [
        Case {
            name: "lowest priority victim, higher one reprieved",
            pods: vec![
                ("n1-p1", "n1", 1, 2000),
                ("n1-p5", "n1", 5, 2000),
                ("n2-p3", "n2", 3, 2000),
                ("n2-p4", "n2", 4, 2000),
            ],
            preemptor_cpu: 2000,
            want: Some(("n1", vec!["n1-p1"])),
        },
        Case {
            name: "reprieve keeps unneeded victims (two of four needed)",
            pods: vec![
                ("a1", "n1", 1, 1000),
                ("a2", "n1", 2, 1000),
                ("a3", "n1", 3, 1000),
                ("a4", "n1", 4, 1000),
                ("full", "n2", 100, 4000),
            ],
            preemptor_cpu: 1500,
            want: Some(("n1", vec!["a2", "a1"])),
        },
        Case {
            name: "fewest victims when highest priorities tie",
            pods: vec![
                ("x1", "n1", 2, 1000),
                ("x2", "n1", 2, 1000),
                ("x3", "n1", 9, 2000),
                ("y1", "n2", 2, 2000),
                ("y2", "n2", 9, 2000),
            ],
            preemptor_cpu: 2000,
            want: Some(("n2", vec!["y1"])),
        },
        Case {
            name: "equal priority is never preempted",
            pods: vec![("e1", "n1", 10, 4000), ("e2", "n2", 10, 4000)],
            preemptor_cpu: 1000,
            want: None,
        },
        Case {
            name: "higher priority is never preempted",
            pods: vec![("h", "n1", 11, 4000), ("h2", "n2", 50, 4000)],
            preemptor_cpu: 1000,
            want: None,
        },
    ];
    for c in cases {
        let mut snap = cluster(&["n1", "n2"], &c.pods);
        let p = pod("pre", c.preemptor_cpu, GI).priority(10).build();
        let d = run(&profile(Flavor::Default), &p, &mut snap);
        let got = outcome(&d, &snap);
        let want = c
            .want
            .map(|(n, v)| (n.to_string(), v.into_iter().map(String::from).collect()));
        assert_eq!(got, want, "{}", c.name);
    }
}

#[test]
fn latest_started_highest_victim_breaks_ties() {
    // Same priorities and counts: the node whose victim started last loses it.
    let mut snap = cluster(
        &["n1", "n2"],
        &[("old", "n1", 1, 4000), ("new", "n2", 1, 4000)],
    );
    let p = pod("pre", 1000, GI).priority(10).build();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(outcome(&d, &snap), Some(("n2".into(), vec!["new".into()])));
}

#[test]
fn equal_priority_message_is_upstreams() {
    let mut snap = cluster(
        &["n1", "n2"],
        &[("e1", "n1", 10, 4000), ("e2", "n2", 10, 4000)],
    );
    let p = pod("pre", 1000, GI).priority(10).build();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(
        post_message(&d),
        "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    assert_eq!(
        d.message().unwrap(),
        // As real kube-scheduler events read: one period at the end.
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    // No candidate: a nomination the pod holds is to be dropped (upstream's
    // empty NominatingInfo).
    assert!(d.post_filter.as_ref().is_some_and(|r| r.clears_nomination));
}

#[test]
fn pdbs_respected_when_possible() {
    // n1's victim is cheaper by priority but its budget allows no disruption.
    let pods = [("guarded", "n1", 1, 4000), ("free", "n2", 2, 4000)];
    let mut snap = cluster(&["n1", "n2"], &pods);
    let mut g = (*snap
        .pod_by_key(&PodKey::new("default", "guarded"))
        .unwrap()
        .pod)
        .clone();
    g.labels.insert(Sym::new("app"), Sym::new("db"));
    snap.upsert_pod(Arc::new(g)).unwrap();
    snap.upsert_pdb(Pdb::new("default", "db", selector(&[("app", "db")]), 0));
    let p = pod("pre", 1000, GI).priority(10).build();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(outcome(&d, &snap), Some(("n2".into(), vec!["free".into()])));

    // With a budget of 1 the guarded pod is fair game again.
    snap.upsert_pdb(Pdb::new("default", "db", selector(&[("app", "db")]), 1));
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["guarded".into()]))
    );

    // When violating is the only way, preemption still happens.
    snap.upsert_pdb(Pdb::new("default", "db", selector(&[("app", "db")]), 0));
    snap.remove_pod(&PodKey::new("default", "free"));
    snap.upsert_pod(pod("hi", 4000, GI).priority(100).on("n2").arc())
        .unwrap();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["guarded".into()]))
    );
}

#[test]
fn pdb_violating_victims_are_reprieved_first() {
    // Either pod frees enough; the guarded one has the lower priority but is
    // reprieved first because evicting it would break its budget.
    let mut snap = cluster(&["n1"], &[]);
    snap.upsert_pod(
        pod("guarded", 2000, GI)
            .priority(1)
            .label("app", "db")
            .on("n1")
            .arc(),
    )
    .unwrap();
    snap.upsert_pod(pod("plain", 2000, GI).priority(5).on("n1").arc())
        .unwrap();
    snap.upsert_pdb(Pdb::new("default", "db", selector(&[("app", "db")]), 0));
    let p = pod("pre", 2000, GI).priority(10).build();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["plain".into()]))
    );
}

#[test]
fn preemption_policy_never_does_not_preempt() {
    let mut snap = cluster(&["n1"], &[("low", "n1", 1, 4000)]);
    let p = pod("pre", 1000, GI).priority(10).preempt_never().build();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert!(outcome(&d, &snap).is_none());
    assert_eq!(
        post_message(&d),
        "preemption: not eligible due to preemptionPolicy=Never."
    );
}

/// Upstream waits only for pods leaving because a scheduler preempted them
/// (podTerminatingByPreemption): one deleted for another reason does not hold
/// the nominated pod back from preempting.
#[test]
fn pods_leaving_for_other_reasons_do_not_hold_preemption() {
    let mut snap = cluster(&["n1", "n2"], &[("low2", "n2", 1, 4000)]);
    snap.upsert_pod(
        pod("deleted", 4000, GI)
            .priority(1)
            .terminating()
            .on("n1")
            .arc(),
    )
    .unwrap();
    let mut p = pod("pre", 1000, GI).priority(10).build();
    p.nominated_node_name = Some(Sym::new("n1"));
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert!(outcome(&d, &snap).is_some(), "{:?}", post_message(&d));
}

#[test]
fn nominated_pod_waits_for_its_terminating_victims() {
    let mut snap = cluster(&["n1", "n2"], &[("low2", "n2", 1, 4000)]);
    snap.upsert_pod(
        pod("leaving", 4000, GI)
            .priority(1)
            .preempted()
            .on("n1")
            .arc(),
    )
    .unwrap();
    let mut p = pod("pre", 1000, GI).priority(10).build();
    p.nominated_node_name = Some(Sym::new("n1"));
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert!(outcome(&d, &snap).is_none());
    assert_eq!(
        post_message(&d),
        "preemption: not eligible due to a terminating pod on the nominated node."
    );
    // Waiting is not failing: the nomination stays.
    assert!(d.post_filter.as_ref().is_some_and(|r| !r.clears_nomination));
    // Once its nominated node is ruled out for good, it may preempt elsewhere.
    let mut n1 = snap.nodes().node[snap.nodes().by_name("n1").unwrap() as usize].clone();
    n1.unschedulable = true;
    snap.upsert_node(n1);
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(outcome(&d, &snap), Some(("n2".into(), vec!["low2".into()])));
    assert!(d.post_filter.as_ref().is_some_and(|r| !r.clears_nomination));
}

#[test]
fn unresolvable_nodes_are_skipped() {
    // n1 has the cheapest victim but is cordoned (UnschedulableAndUnresolvable).
    let mut snap = cluster(
        &["n1", "n2"],
        &[("cheap", "n1", 1, 4000), ("dear", "n2", 5, 4000)],
    );
    let mut n1 = snap.nodes().node[0].clone();
    n1.unschedulable = true;
    snap.upsert_node(n1);
    let p = pod("pre", 1000, GI).priority(10).build();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(outcome(&d, &snap), Some(("n2".into(), vec!["dear".into()])));

    let mut n2 = snap.nodes().node[1].clone();
    n2.unschedulable = true;
    snap.upsert_node(n2);
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(
        post_message(&d),
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
}

#[test]
fn failure_histogram_mixes_node_reasons() {
    // n1 cordoned; n2 only equal-priority pods; n3 too small even when emptied.
    let mut s = Snapshot::new(CapacityRules::default());
    s.upsert_node(node("n1", 4000, 16 * GI).unschedulable().build());
    s.upsert_node(node("n2", 4000, 16 * GI).build());
    s.upsert_node(node("n3", 500, 16 * GI).build());
    s.upsert_pod(pod("eq", 4000, GI).priority(10).on("n2").arc())
        .unwrap();
    s.upsert_pod(pod("lo", 500, GI).priority(1).on("n3").arc())
        .unwrap();
    let p = pod("pre", 1000, GI).priority(10).build();
    let d = run(&profile(Flavor::Default), &p, &mut s);
    assert_eq!(
        post_message(&d),
        "preemption: 0/3 nodes are available: 1 Insufficient cpu, 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
    );
}

#[test]
fn prefilter_is_rerun_with_victims_gone() {
    // The cluster cap counts pods in PreFilter: only a fresh count sees room.
    let mut snap = cluster(&["n1"], &[("a", "n1", 1, 100), ("b", "n1", 5, 100)]);
    let mut set = PluginSet::new("ClusterCap");
    let cap = Arc::new(ClusterCap { limit: 2 });
    set.pre_filter = Some(cap.clone());
    set.filter = Some(cap);
    let prof = profile_with(Flavor::Default, vec![set]);
    let p = pod("pre", 100, GI).priority(10).build();
    let d = run(&prof, &p, &mut snap);
    assert_eq!(outcome(&d, &snap), Some(("n1".into(), vec!["a".into()])));
}

#[test]
fn exact_walk_catches_what_resources_miss() {
    // Resources alone would reprieve the port holder; the port conflict makes
    // it a victim too.
    let mut snap = cluster(&["n1"], &[("other", "n1", 3, 300), ("big", "n1", 1, 1500)]);
    snap.upsert_pod(
        pod("port", 100, GI)
            .priority(5)
            .host_port(8080)
            .on("n1")
            .arc(),
    )
    .unwrap();
    snap.upsert_pod(pod("hi", 2000, GI).priority(50).on("n1").arc())
        .unwrap();
    let p = pod("pre", 1000, GI).priority(10).host_port(8080).build();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["port".into(), "big".into()]))
    );
}

#[test]
fn victims_free_gpu_cards() {
    // Two cards, each holding a 600-milli share: a whole card needs one share
    // gone, and the cheaper one goes. The dry run leaves the cards as they were.
    let mut snap = Snapshot::new(CapacityRules::default());
    snap.upsert_node(node("n1", 4000, 16 * GI).gpus(2, "T4").build());
    for (name, prio, card) in [("dear", 5, "0"), ("cheap", 1, "1")] {
        snap.upsert_pod(
            pod(name, 100, GI)
                .priority(prio)
                .gpu(1, 600, &[])
                .cards(card)
                .on("n1")
                .arc(),
        )
        .unwrap();
    }
    let before = fingerprint(&snap);
    let mut gpu = PluginSet::new("GpuShare");
    let share = Arc::new(crate::plugins::gpu_share::GpuShare::default());
    gpu.pre_filter = Some(share.clone());
    gpu.filter = Some(share);
    let p = pod("pre", 100, GI).priority(10).gpu(1, 1000, &[]).build();
    let d = run(&profile_with(Flavor::Default, vec![gpu]), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["cheap".into()]))
    );
    assert_eq!(fingerprint(&snap), before);
}

/// Everything a dry run could disturb.
pub(super) fn fingerprint(s: &Snapshot) -> String {
    let t = s.nodes();
    let mut out = format!("pods={} ", s.pod_count());
    for i in t.live_indices() {
        let u = i as usize;
        let mut on: Vec<String> = s
            .pods_on(i)
            .map(|e| format!("{}{}", e.pod.key, if e.assumed { "*" } else { "" }))
            .collect();
        on.sort();
        let mut nom: Vec<String> = s.nominated_on(i).map(|n| n.pod.key.to_string()).collect();
        nom.sort();
        out += &format!(
            "{}: cpu={} mem={} eph={} pods={} nz={}/{} sc={:?} gpu={:?} on={:?} nom={:?}; ",
            t.name[u],
            t.req_cpu[u],
            t.req_mem[u],
            t.req_eph[u],
            t.pod_count[u],
            t.nonzero_cpu[u],
            t.nonzero_mem[u],
            t.req_scalars[u],
            t.gpu_free[u],
            on,
            nom
        );
    }
    let mut apps: Vec<String> = s
        .apps()
        .map(|(a, p)| {
            let mut by: Vec<_> = p
                .executors_by_type
                .iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect();
            by.sort();
            format!("{a}:{}:{}:{:?}", p.driver.is_some(), p.executors.len(), by)
        })
        .collect();
    apps.sort();
    out + &apps.join(",")
}

#[test]
fn snapshot_restored_exactly() {
    let mut snap = cluster(
        &["n1", "n2"],
        &[
            ("a", "n1", 1, 1000),
            ("b", "n1", 2, 1000),
            ("c", "n2", 3, 3000),
        ],
    );
    snap.upsert_pod(pod("d", 1, 1).driver("app").priority(1).on("n1").arc())
        .unwrap();
    snap.upsert_pod(
        pod("e", 500, 1)
            .executor("app")
            .priority(1)
            .label("x", "y")
            .on("n2")
            .arc(),
    )
    .unwrap();
    let n1 = snap.nodes().by_name("n1").unwrap();
    snap.assume(pod("assumed", 1000, GI).priority(1).arc(), n1)
        .unwrap();
    snap.nominate(pod("waiting", 10, 1).priority(0).arc(), n1);
    let before = fingerprint(&snap);
    for (flavor, cpu) in [
        (Flavor::Default, 3000),
        (Flavor::Spark, 3000),
        (Flavor::Default, 100_000),
        (Flavor::Spark, 3500),
    ] {
        let p = pod("pre", cpu, GI).priority(10).driver("other").build();
        let d = run(&profile(flavor), &p, &mut snap);
        assert!(d.node.is_none());
        assert_eq!(fingerprint(&snap), before, "cpu {cpu}");
        if cpu == 3000 {
            assert!(
                outcome(&d, &snap).is_some(),
                "a real preemption was evaluated"
            );
        }
    }
    // The exact walk (port conflict) restores too.
    snap.upsert_pod(
        pod("port", 100, GI)
            .priority(5)
            .host_port(80)
            .on("n1")
            .arc(),
    )
    .unwrap();
    let before = fingerprint(&snap);
    let p = pod("pre", 2000, GI).priority(10).host_port(80).build();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert!(outcome(&d, &snap).is_some());
    assert_eq!(fingerprint(&snap), before);
}

// ---- Spark -----------------------------------------------------------------

fn spark_cluster() -> Snapshot {
    let mut s = Snapshot::new(CapacityRules::default());
    for n in ["n1", "n2", "n3"] {
        s.upsert_node(node(n, 4000, 16 * GI).build());
    }
    s
}

fn place(s: &mut Snapshot, p: Pod) {
    s.upsert_pod(Arc::new(p)).unwrap();
}

#[test]
fn driver_preempts_executors_not_a_lower_priority_driver() {
    let mut snap = spark_cluster();
    place(
        &mut snap,
        pod("x-driver", 2000, GI)
            .driver("x")
            .priority(1)
            .on("n1")
            .build(),
    );
    place(
        &mut snap,
        pod("y-e1", 1000, GI)
            .executor("y")
            .priority(2)
            .on("n1")
            .build(),
    );
    place(
        &mut snap,
        pod("y-e2", 1000, GI)
            .executor("y")
            .priority(2)
            .on("n1")
            .build(),
    );
    for n in ["n2", "n3"] {
        place(
            &mut snap,
            pod(&format!("{n}-hi"), 4000, GI)
                .priority(100)
                .on(n)
                .build(),
        );
    }
    let p = pod("z-driver", 2000, GI).driver("z").priority(10).build();
    let d = run(&profile(Flavor::Spark), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["y-e1".into(), "y-e2".into()]))
    );
    // Upstream takes the lowest priority, the driver.
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["x-driver".into()]))
    );
}

#[test]
fn executor_never_preempts_a_driver_unless_allowed() {
    let mut snap = spark_cluster();
    place(
        &mut snap,
        pod("x-driver", 4000, GI)
            .driver("x")
            .priority(1)
            .on("n1")
            .build(),
    );
    for n in ["n2", "n3"] {
        place(
            &mut snap,
            pod(&format!("{n}-hi"), 4000, GI)
                .priority(100)
                .on(n)
                .build(),
        );
    }
    let p = pod("z-exec", 1000, GI).executor("z").priority(10).build();
    let d = run(&profile(Flavor::Spark), &p, &mut snap);
    assert!(outcome(&d, &snap).is_none());
    assert_eq!(
        post_message(&d),
        "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    let d = run(
        &profile(Flavor::SparkExecutorsMayPreemptDrivers),
        &p,
        &mut snap,
    );
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["x-driver".into()]))
    );
}

#[test]
fn fewer_pods_lost_wins_with_cascades_counted() {
    // Each of n1, n2 holds one lower-priority driver; a's has three executors
    // elsewhere, b's one. Upstream prefers n1 (lower priority); Spark counts
    // 4 pods lost on n1 against 2 on n2.
    let mut snap = spark_cluster();
    place(
        &mut snap,
        pod("a-driver", 4000, GI)
            .driver("a")
            .priority(1)
            .on("n1")
            .build(),
    );
    place(
        &mut snap,
        pod("b-driver", 4000, GI)
            .driver("b")
            .priority(2)
            .on("n2")
            .build(),
    );
    for i in 0..3 {
        place(
            &mut snap,
            pod(&format!("a-e{i}"), 1000, GI)
                .executor("a")
                .priority(100)
                .on("n3")
                .build(),
        );
    }
    place(
        &mut snap,
        pod("b-e0", 1000, GI)
            .executor("b")
            .priority(100)
            .on("n3")
            .build(),
    );
    let p = pod("z-driver", 1000, GI).driver("z").priority(10).build();
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["a-driver".into()]))
    );
    let d = run(&profile(Flavor::Spark), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n2".into(), vec!["b-driver".into()]))
    );
    let plan = PreemptionPlan::from_decision(&p, &d, &snap).unwrap();
    assert_eq!(plan.cascade, vec![PodKey::new("default", "b-e0")]);
}

#[test]
fn node_killing_no_driver_beats_fewer_victims() {
    let mut snap = spark_cluster();
    place(
        &mut snap,
        pod("a-driver", 4000, GI)
            .driver("a")
            .priority(1)
            .on("n1")
            .build(),
    );
    for i in 0..4 {
        place(
            &mut snap,
            pod(&format!("b-e{i}"), 1000, GI)
                .executor("b")
                .priority(1)
                .on("n2")
                .build(),
        );
    }
    place(
        &mut snap,
        pod("n3-hi", 4000, GI).priority(100).on("n3").build(),
    );
    let p = pod("z-driver", 4000, GI).driver("z").priority(10).build();
    let d = run(&profile(Flavor::Spark), &p, &mut snap);
    let (node, victims) = outcome(&d, &snap).unwrap();
    assert_eq!(node, "n2");
    assert_eq!(victims.len(), 4);
}

#[test]
fn inactive_executors_are_preempted_first() {
    let mut snap = spark_cluster();
    let mut active = pod("x-active", 2000, GI)
        .executor("x")
        .priority(1)
        .on("n1")
        .build();
    active.started_ms = Some(200);
    let mut idle = pod("x-idle", 2000, GI)
        .executor("x")
        .priority(1)
        .label(LABEL_SPARK_EXEC_INACTIVE, "true")
        .on("n1")
        .build();
    idle.started_ms = Some(100);
    place(&mut snap, active);
    place(&mut snap, idle);
    for n in ["n2", "n3"] {
        place(
            &mut snap,
            pod(&format!("{n}-hi"), 4000, GI)
                .priority(100)
                .on(n)
                .build(),
        );
    }
    let p = pod("z-driver", 2000, GI).driver("z").priority(10).build();
    // Upstream evicts the one started last.
    let d = run(&profile(Flavor::Default), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["x-active".into()]))
    );
    let d = run(&profile(Flavor::Spark), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["x-idle".into()]))
    );
}

#[test]
fn spare_executors_of_big_apps_go_before_apps_at_their_minimum() {
    let mut snap = spark_cluster();
    place(
        &mut snap,
        pod("big-d", 100, GI)
            .driver("big")
            .annotation(crate::spark::annotations::MIN_EXECUTORS, "1")
            .priority(50)
            .on("n3")
            .build(),
    );
    place(
        &mut snap,
        pod("small-d", 100, GI)
            .driver("small")
            .annotation(crate::spark::annotations::MIN_EXECUTORS, "1")
            .priority(50)
            .on("n3")
            .build(),
    );
    place(
        &mut snap,
        pod("small-e", 2000, GI)
            .executor("small")
            .priority(1)
            .on("n1")
            .build(),
    );
    place(
        &mut snap,
        pod("big-e0", 2000, GI)
            .executor("big")
            .priority(1)
            .on("n1")
            .build(),
    );
    place(
        &mut snap,
        pod("big-e1", 3800, GI)
            .executor("big")
            .priority(100)
            .on("n3")
            .build(),
    );
    place(
        &mut snap,
        pod("n2-hi", 4000, GI).priority(100).on("n2").build(),
    );
    let p = pod("z-driver", 2000, GI).driver("z").priority(10).build();
    let d = run(&profile(Flavor::Spark), &p, &mut snap);
    assert_eq!(
        outcome(&d, &snap),
        Some(("n1".into(), vec!["big-e0".into()]))
    );
}

// ---- plan, messages, window -------------------------------------------------

#[test]
fn plan_lists_victims_cascade_and_nominations_to_clear() {
    let mut snap = spark_cluster();
    place(
        &mut snap,
        pod("a-driver", 4000, GI)
            .driver("a")
            .priority(1)
            .on("n1")
            .build(),
    );
    place(
        &mut snap,
        pod("a-e0", 4000, GI)
            .executor("a")
            .priority(100)
            .on("n3")
            .build(),
    );
    place(
        &mut snap,
        pod("n2-hi", 4000, GI).priority(100).on("n2").build(),
    );
    let n1 = snap.nodes().by_name("n1").unwrap();
    snap.nominate(pod("low-waiting", 1, 1).priority(5).arc(), n1);
    snap.nominate(pod("high-waiting", 1, 1).priority(50).arc(), n1);
    let p = pod("z-driver", 1000, GI)
        .namespace("spark")
        .driver("z")
        .priority(10)
        .build();
    let d = run(
        &profile(Flavor::SparkExecutorsMayPreemptDrivers),
        &p,
        &mut snap,
    );
    let plan = PreemptionPlan::from_decision(&p, &d, &snap).unwrap();
    assert_eq!(
        plan,
        PreemptionPlan {
            preemptor: p.key.clone(),
            node: "n1".into(),
            victims: vec![PodKey::new("default", "a-driver")],
            cascade: vec![PodKey::new("default", "a-e0")],
            clear_nominations: vec![PodKey::new("default", "low-waiting")],
        }
    );
    assert_eq!(
        victim_event_message(&plan.preemptor, &plan.node),
        "Preempted by spark/z-driver on node n1"
    );
    assert_eq!(
        nomination_event_message(&plan),
        "Nominated to node n1 after preempting 1 pod(s) (1 executor(s) lost with their drivers)"
    );
    assert_eq!(
        disruption_condition_message("spark-fleet"),
        "spark-fleet: preempting to accommodate a higher priority pod"
    );
}

#[test]
fn window_mirrors_upstream_sizes_and_is_deterministic() {
    let k = PodKey::new("ns", "p");
    assert_eq!(window(&k, 5000).1, 500);
    assert_eq!(window(&k, 300).1, 100);
    assert_eq!(window(&k, 40).1, 40);
    assert_eq!(window(&k, 0), (0, 0));
    assert_eq!(window(&k, 5000), window(&k, 5000));
    assert!(window(&k, 5000).0 < 5000);
    let offsets: std::collections::HashSet<usize> = (0..20)
        .map(|i| window(&PodKey::new("ns", &format!("p{i}")), 5000).0)
        .collect();
    assert!(offsets.len() > 10, "offsets spread: {offsets:?}");
}

#[test]
fn dry_run_stops_after_enough_candidates() {
    // 250 nodes, all candidates: upstream wants max(10%, 100) = 100 of them.
    let names: Vec<String> = (0..250).map(|i| format!("n{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let pods: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("{n}-low"), n.clone()))
        .collect();
    let pod_refs: Vec<(&str, &str, i32, i64)> = pods
        .iter()
        .map(|(p, n)| (p.as_str(), n.as_str(), 1, 4000))
        .collect();
    let mut snap = cluster(&refs, &pod_refs);
    let p = pod("pre", 1000, GI).priority(10).build();
    let statuses = {
        let d = run(&profile(Flavor::Default), &p, &mut snap);
        d.statuses
    };
    let ev = Evaluator::new("DefaultPreemption", VictimPolicy::Upstream);
    let prof = profile(Flavor::Default);
    let runner = FilterRunner {
        pre_filters: &prof.pre_filter,
        filters: &prof.filter,
    };
    let potential: Vec<NodeIdx> = snap.nodes().live_indices().collect();
    let pdbs = Vec::new();
    let dry = DryRun {
        pod: &p,
        policy: &ev.policy,
        filters: &runner,
        pdbs: &pdbs,
        need: Need::of(&p, &[], &[]),
        what_if: None,
        parallel: false,
        by_arithmetic: Default::default(),
        prepared_in_parallel: Default::default(),
    };
    let (offset, wanted) = window(&p.key, potential.len());
    let (cands, st) = dry.find(&mut snap, &potential, offset, wanted);
    assert_eq!(cands.len(), 100);
    assert!(st.is_empty());
    assert_eq!(cands[0].node, potential[offset]);
    assert!(statuses.per_node.len() == 250);
}

/// Full 5,000-node cluster, 30 pods per node: one preemption search.
/// `cargo test --release --lib preemption::tests::perf_full_cluster -- --ignored --nocapture`
#[test]
#[ignore]
fn perf_full_cluster() {
    for flavor in [Flavor::Default, Flavor::Spark] {
        let mut snap = Snapshot::new(CapacityRules::default());
        for n in 0..5000 {
            let name = format!("node-{n:05}");
            snap.upsert_node(
                node(&name, 32_000, 128 * GI)
                    .zone(["a", "b", "c"][n % 3])
                    .build(),
            );
            for k in 0..30 {
                let app = format!("app-{}", (n * 30 + k) / 50);
                let b = pod(&format!("{name}-p{k}"), 1050, 4 * GI)
                    .priority((k % 4) as i32)
                    .on(&name);
                let b = if k % 25 == 0 {
                    b.driver(&app)
                } else {
                    b.executor(&app)
                };
                let mut p = b.build();
                p.started_ms = Some((n * 30 + k) as i64);
                snap.upsert_pod(Arc::new(p)).unwrap();
            }
        }
        let prof = profile(flavor);
        let p = pod("pre", 2500, 8 * GI).priority(10).driver("new").build();
        let before = fingerprint(&snap);
        let t = std::time::Instant::now();
        let d = run(&prof, &p, &mut snap);
        let total = t.elapsed();
        let statuses = d.statuses.clone();
        let runner = FilterRunner {
            pre_filters: &prof.pre_filter,
            filters: &prof.filter,
        };
        let mut best = std::time::Duration::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let r = prof.post_filter[0].post_filter(&p, &mut snap, &statuses, &runner);
            best = best.min(t.elapsed());
            assert!(r.nomination.is_some());
        }
        assert!(outcome(&d, &snap).is_some());
        assert_eq!(fingerprint(&snap), before);
        println!(
            "{}: whole cycle {:?}, preemption search {:?}",
            if flavor == Flavor::Default {
                "DefaultPreemption"
            } else {
                "SparkPreemption"
            },
            total,
            best
        );
    }
}

/// The candidate list is built in one pass over the statuses; it must be what
/// looking each node up with `NodeStatuses::get` gives (statuses in node order,
/// as the cycle builds them).
#[test]
fn candidate_nodes_are_the_unschedulable_ones() {
    let mut snap = Snapshot::new(CapacityRules::default());
    for i in 0..8 {
        snap.upsert_node(node(&format!("n{i}"), 1000, GI).build());
    }
    snap.remove_node(Sym::new("n3"));
    let looked_up = |snap: &Snapshot, st: &NodeStatuses| -> Vec<NodeIdx> {
        snap.nodes()
            .live_indices()
            .filter(|&n| st.get(n).is_some_and(|s| s.code == Code::Unschedulable))
            .collect()
    };
    let unsched = || Status::unschedulable("X", "full");
    let unresolvable = || Status::unresolvable("X", "never");
    // Node order (as the cycle builds them), a node without status (n2) and a
    // removed node (n3).
    let st = NodeStatuses {
        per_node: vec![
            (0, unsched()),
            (1, unresolvable()),
            (3, unsched()),
            (4, unresolvable()),
            (5, unsched()),
            (6, unresolvable()),
            (7, unsched()),
        ],
        all_nodes: None,
    };
    assert_eq!(unschedulable_nodes(&snap, &st), looked_up(&snap, &st));
    assert_eq!(unschedulable_nodes(&snap, &st), vec![0, 5, 7]);
    for all in [unsched(), unresolvable()] {
        let st = NodeStatuses {
            per_node: vec![(1, unresolvable())],
            all_nodes: Some(all),
        };
        assert_eq!(unschedulable_nodes(&snap, &st), looked_up(&snap, &st));
    }
}
