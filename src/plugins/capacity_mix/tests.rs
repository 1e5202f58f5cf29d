use super::*;
use crate::config::{NamespaceSparkDefaults, PluginEntry};
use crate::framework::{schedule, Code, CycleOptions, Profile};
use crate::model::capacity::CapacityRules;
use crate::plugins::build_named_profile;
use crate::plugins::test_support::{filter_all, score_all};
use crate::spark::annotations::{CAPACITY_MIX_MODE, DRIVER_CAPACITY, EXECUTOR_CAPACITY_MIX};
use crate::testkit::*;
use proptest::prelude::*;
use std::collections::HashMap;

const MIX_40_60: &str = "spot=40,on-demand=60";

/// The shipped `spark-fleet` profile.
pub(crate) fn spark_profile(cfg: &Config) -> Profile {
    build_named_profile(cfg, crate::config::SPARK_FLEET).unwrap()
}

fn plugin(cfg: Config) -> CapacityMix {
    CapacityMix::new(Arc::new(cfg))
}

/// spot-1..n spot nodes and od-1..n on-demand nodes, big enough for everything here.
fn cluster(spot: usize, od: usize) -> Snapshot {
    let mut s = Snapshot::new(CapacityRules::default());
    for i in 1..=spot {
        s.upsert_node(node(&format!("spot-{i}"), 64_000, 256 * GI).spot().build());
    }
    for i in 1..=od {
        s.upsert_node(
            node(&format!("od-{i}"), 64_000, 256 * GI)
                .on_demand()
                .build(),
        );
    }
    s
}

fn place(s: &mut Snapshot, p: Pod, node_name: &str) {
    let mut p = p;
    p.node_name = Some(Sym::new(node_name));
    s.upsert_pod(Arc::new(p)).unwrap();
}

fn executor(name: &str, app: &str) -> crate::testkit::PodBuilder {
    pod(name, 1000, 4 * GI).executor(app)
}

fn chosen_type(s: &Snapshot, d: &crate::framework::Decision) -> Option<&'static str> {
    d.node.map(|n| s.nodes().capacity_type[n as usize].as_str())
}

/// The issue's scenario: 4 executors on spot, 2 on on-demand, mix 40/60.
fn issue_scenario(s: &mut Snapshot) {
    let drv = pod("drv", 1000, 4 * GI)
        .driver("app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .build();
    place(s, drv, "od-1");
    for i in 0..4 {
        place(s, executor(&format!("e{i}"), "app").build(), "spot-1");
    }
    for i in 4..6 {
        place(s, executor(&format!("e{i}"), "app").build(), "od-1");
    }
}

#[test]
fn issue_scenario_next_executor_goes_on_demand() {
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = cluster(2, 2);
    issue_scenario(&mut s);
    let next = executor("e6", "app").build();
    let d = schedule(&profile, &next, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("on-demand"));
    // It got what it wanted: no fallback.
    assert_eq!(capacity_fallback(&cfg, &next, &s, d.node.unwrap()), None);
    let st = mix_status(&cfg, &next, &s).unwrap();
    assert_eq!(
        st.current,
        vec![("spot".to_string(), 4), ("on-demand".to_string(), 2)]
    );
    assert_eq!(st.next.as_deref(), Some("on-demand"));
    // The driver shows its application's mix too.
    let drv = s
        .pod_by_key(&crate::model::PodKey::new("default", "drv"))
        .unwrap();
    assert_eq!(mix_status(&cfg, &drv.pod.clone(), &s), Some(st.clone()));
    assert_eq!(st.mode, MixMode::Soft);
    assert_eq!(
        st.target,
        vec![("spot".to_string(), 40), ("on-demand".to_string(), 60)]
    );
}

#[test]
fn sequence_follows_the_mix() {
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = cluster(2, 2);
    let drv = pod("drv", 1000, 4 * GI)
        .driver("app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .build();
    place(&mut s, drv, "od-1");
    let mut got = Vec::new();
    for i in 0..10 {
        let p = executor(&format!("e{i}"), "app").arc();
        let d = schedule(&profile, &p, &mut s, CycleOptions::default());
        got.push(chosen_type(&s, &d).unwrap());
        s.assume(p, d.node.unwrap()).unwrap();
    }
    let od = got.iter().filter(|t| **t == "on-demand").count();
    assert_eq!(od, 6, "{got:?}");
    assert_eq!(
        &got[..5],
        ["on-demand", "spot", "on-demand", "spot", "on-demand"]
    );
}

#[test]
fn executors_lost_with_a_spot_node_are_refilled() {
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = cluster(1, 1);
    s.upsert_node(node("spot-2", 64_000, 256 * GI).spot().build());
    let drv = pod("drv", 1000, 4 * GI)
        .driver("app")
        .annotation(EXECUTOR_CAPACITY_MIX, "spot=50,on-demand=50")
        .build();
    place(&mut s, drv, "od-1");
    for i in 0..4 {
        place(&mut s, executor(&format!("s{i}"), "app").build(), "spot-2");
        place(&mut s, executor(&format!("o{i}"), "app").build(), "od-1");
    }
    // The spot node is reclaimed with its 4 executors.
    assert!(s.remove_node(Sym::new("spot-2")));
    let mut got = Vec::new();
    for i in 0..4 {
        let p = executor(&format!("n{i}"), "app").arc();
        let d = schedule(&profile, &p, &mut s, CycleOptions::default());
        got.push(chosen_type(&s, &d).unwrap());
        s.assume(p, d.node.unwrap()).unwrap();
    }
    assert_eq!(got, ["spot"; 4]);
}

#[test]
fn soft_falls_back_when_target_type_has_no_room() {
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = cluster(1, 0);
    // The only on-demand node is cordoned: no feasible node of the target type.
    s.upsert_node(
        node("od-1", 64_000, 256 * GI)
            .on_demand()
            .unschedulable()
            .build(),
    );
    let next = executor("e0", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .arc();
    let d = schedule(&profile, &next, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("spot"));
    let fb = capacity_fallback(&cfg, &next, &s, d.node.unwrap()).unwrap();
    assert_eq!((fb.wanted.as_str(), fb.got.as_str()), ("on-demand", "spot"));
    // Also after the pod is assumed (it is left out of its own counts).
    s.assume(next.clone(), d.node.unwrap()).unwrap();
    assert_eq!(
        capacity_fallback(&cfg, &next, &s, d.node.unwrap()),
        Some(fb)
    );
}

#[test]
fn hard_mode_stays_pending_with_exact_message() {
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = cluster(3, 0);
    let p = executor("e0", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .annotation(CAPACITY_MIX_MODE, "hard")
        .build();
    let d = schedule(&profile, &p, &mut s, CycleOptions::default());
    assert_eq!(d.node, None);
    assert_eq!(
        d.message().unwrap(),
        "0/3 nodes are available: 3 node(s) didn't match the application's capacity mix (wants on-demand)."
    );
    assert_eq!(d.rejected_by(), vec![NAME]);
    assert_eq!(d.statuses.per_node[0].1.code, Code::Unschedulable);
    // Add an on-demand node: it goes there.
    s.upsert_node(node("od-1", 64_000, 256 * GI).on_demand().build());
    let d = schedule(&profile, &p, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("on-demand"));
}

#[test]
fn drivers_land_only_on_allowed_types() {
    let s = cluster(2, 1);
    let drv = pod("d", 1000, GI).driver("app").build();
    let r = filter_all(
        Some(&plugin(Config::default())),
        &plugin(Config::default()),
        &drv,
        &s,
    );
    let ok: Vec<&str> = r
        .iter()
        .filter(|(_, st)| st.is_success())
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(ok, ["od-1"]);
    let rejected = &r[0].1;
    assert_eq!(rejected.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(
        rejected.reasons[0],
        "node(s) didn't match the driver's allowed capacity types (on-demand)"
    );
    // Whole profile: lands on on-demand even though spot nodes sort first.
    let mut s2 = s.clone();
    let d = schedule(
        &spark_profile(&Config::default()),
        &drv,
        &mut s2,
        CycleOptions::default(),
    );
    assert_eq!(chosen_type(&s2, &d), Some("on-demand"));
    // `any` lifts the restriction; a list allows each listed type.
    let any = pod("d", 1000, GI)
        .driver("app")
        .annotation(DRIVER_CAPACITY, "any")
        .build();
    let r = filter_all(
        Some(&plugin(Config::default())),
        &plugin(Config::default()),
        &any,
        &s,
    );
    assert!(r.iter().all(|(_, st)| st.is_success()));
    let spot = pod("d", 1000, GI)
        .driver("app")
        .annotation(DRIVER_CAPACITY, "spot")
        .build();
    let r = filter_all(
        Some(&plugin(Config::default())),
        &plugin(Config::default()),
        &spot,
        &s,
    );
    assert_eq!(
        r.iter().filter(|(_, st)| st.is_success()).count(),
        2,
        "{r:?}"
    );
}

#[test]
fn bad_annotations_reject_in_prefilter() {
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = cluster(1, 1);
    let cases = [
        (EXECUTOR_CAPACITY_MIX, "spot=forty"),
        (EXECUTOR_CAPACITY_MIX, "gpu=1"),
        (EXECUTOR_CAPACITY_MIX, "spot=0,on-demand=0"),
        (CAPACITY_MIX_MODE, "strict"),
    ];
    for (k, v) in cases {
        let p = executor("e", "app")
            .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
            .annotation(k, v)
            .build();
        let d = schedule(&profile, &p, &mut s, CycleOptions::default());
        let all = d.statuses.all_nodes.as_ref().expect("prefilter rejection");
        assert_eq!(all.code, Code::UnschedulableAndUnresolvable, "{k}={v}");
        assert_eq!(all.plugin, NAME);
        let want = format!("invalid annotation {k} {v:?}: ");
        assert!(all.reasons[0].starts_with(&want), "{:?}", all.reasons);
    }
    // Inherited from the driver.
    let drv = pod("drv", 1000, GI)
        .driver("app")
        .annotation(EXECUTOR_CAPACITY_MIX, "spot=forty")
        .build();
    place(&mut s, drv, "od-1");
    let p = executor("e", "app").build();
    let d = schedule(&profile, &p, &mut s, CycleOptions::default());
    let msg = d.message().unwrap();
    assert!(
        msg.starts_with(
            "0/2 nodes are available: invalid annotation spark-fleet.io/executor-capacity-mix \"spot=forty\": "
        ),
        "{msg}"
    );
    assert!(msg.contains("inherited from driver default/drv"), "{msg}");
    // A driver whose mix for its executors is bad is refused itself.
    let bad_mix = pod("d3", 1000, GI)
        .driver("app3")
        .annotation(EXECUTOR_CAPACITY_MIX, "spot=40,on-demand=sixty")
        .build();
    let d = schedule(&profile, &bad_mix, &mut s, CycleOptions::default());
    assert_eq!(d.node, None);
    assert!(d.message().unwrap().contains(
        "invalid annotation spark-fleet.io/executor-capacity-mix \"spot=40,on-demand=sixty\""
    ));
    // A driver with a bad driver-capacity.
    let bad = pod("d2", 1000, GI)
        .driver("app2")
        .annotation(DRIVER_CAPACITY, "cheap")
        .build();
    let d = schedule(&profile, &bad, &mut s, CycleOptions::default());
    assert_eq!(d.node, None);
    assert!(d
        .message()
        .unwrap()
        .contains("invalid annotation spark-fleet.io/driver-capacity \"cheap\""));
}

#[test]
fn executor_annotation_overrides_driver() {
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = cluster(1, 1);
    let drv = pod("drv", 1000, GI)
        .driver("app")
        .annotation(EXECUTOR_CAPACITY_MIX, "on-demand=1")
        .annotation(CAPACITY_MIX_MODE, "hard")
        .build();
    place(&mut s, drv, "od-1");
    let inherits = executor("e1", "app").build();
    let d = schedule(&profile, &inherits, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("on-demand"));
    let own = executor("e2", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, "spot=1")
        .build();
    let d = schedule(&profile, &own, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("spot"));
    // The driver's hard mode still applies to the overriding executor: only spot passes.
    assert_eq!(d.feasible.len(), 1);
}

#[test]
fn namespace_default_applies() {
    let mut cfg = Config::default();
    cfg.spark.executor_capacity_mix = Some("on-demand=1".into());
    cfg.spark.namespaces.insert(
        "batch".into(),
        NamespaceSparkDefaults {
            executor_capacity_mix: Some("spot=1".into()),
            capacity_mix_mode: Some(MixMode::Hard),
            ..Default::default()
        },
    );
    let profile = spark_profile(&cfg);
    let mut s = cluster(1, 1);
    let in_batch = executor("e", "app").namespace("batch").build();
    let d = schedule(&profile, &in_batch, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("spot"));
    assert_eq!(d.feasible.len(), 1, "hard mode from the namespace");
    let elsewhere = executor("e", "app").namespace("other").build();
    let d = schedule(&profile, &elsewhere, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("on-demand"));
    assert_eq!(d.feasible.len(), 2, "cluster default mode is soft");
}

#[test]
fn score_table() {
    let mut s = cluster(1, 1);
    s.upsert_node(
        node("vk", 64_000, 256 * GI)
            .label("type", "virtual-kubelet")
            .build(),
    );
    let p = executor("e", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .build();
    let pl = plugin(Config::default());
    let sc: HashMap<String, i64> = score_all(Some(&pl), &pl, &p, &s).into_iter().collect();
    assert_eq!(sc["od-1"], 100);
    assert_eq!(sc["spot-1"], MAX_OTHER_TYPE_SCORE);
    assert_eq!(sc["vk"], 0);
    // Three types: the runner-up by deficit scores above the last.
    let p3 = executor("e", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, "spot=1,on-demand=2,serverless=3")
        .build();
    let sc: HashMap<String, i64> = score_all(Some(&pl), &pl, &p3, &s).into_iter().collect();
    assert_eq!(sc["vk"], 100);
    assert!(sc["od-1"] > sc["spot-1"] && sc["spot-1"] > 0, "{sc:?}");
    // Non-Spark pods and executors without a mix: no opinion.
    for p in [pod("x", 1, 1).build(), executor("e", "app").build()] {
        assert!(score_all(Some(&pl), &pl, &p, &s)
            .iter()
            .all(|(_, v)| *v == 0));
    }
}

#[test]
fn non_spark_pods_skip() {
    let s = cluster(1, 1);
    let pl = plugin(Config::default());
    let mut st = CycleState::default();
    let plain = pod("x", 1, 1).build();
    assert_eq!(pl.pre_filter(&mut st, &plain, &s).code, Code::Skip);
    assert_eq!(pl.pre_score(&mut st, &plain, &s, &[0, 1]).code, Code::Skip);
    assert_eq!(mix_status(&Config::default(), &plain, &s), None);
    assert_eq!(capacity_fallback(&Config::default(), &plain, &s, 0), None);
}

/// Soft mode must win against every other scorer at once: its weight times the
/// gap between the target type and the best other type exceeds the most all
/// other plugins together can add (each at most 100 times its weight).
#[test]
fn weight_dominates_the_rest_of_the_profile() {
    let cfg = Config::default();
    let pc = cfg.profile(crate::config::SPARK_FLEET).unwrap();
    let weight_of = |e: &PluginEntry| e.weight;
    let mine = pc
        .plugins
        .iter()
        .find(|e| e.name == NAME)
        .map(weight_of)
        .unwrap();
    let others: i64 = pc
        .plugins
        .iter()
        .filter(|e| e.name != NAME)
        .map(weight_of)
        .sum();
    assert!(
        mine * (MAX_NODE_SCORE - MAX_OTHER_TYPE_SCORE) > MAX_NODE_SCORE * others,
        "CapacityMix weight {mine} vs others {others}"
    );
}

/// The target type wins even when every other plugin prefers the other node.
#[test]
fn soft_target_beats_other_preferences() {
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = Snapshot::new(CapacityRules::default());
    s.upsert_node(
        node("od-1", 64_000, 256 * GI)
            .on_demand()
            .taint("cheap", "no", crate::model::TaintEffect::PreferNoSchedule)
            .build(),
    );
    s.upsert_node(
        node("spot-1", 64_000, 256 * GI)
            .spot()
            .label("fast", "yes")
            .build(),
    );
    let mut p = executor("e", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .build();
    p.node_affinity.preferred.push(crate::model::PreferredTerm {
        weight: 100,
        term: term(vec![req("fast", crate::model::SelectorOp::In, &["yes"])]),
    });
    let d = schedule(&profile, &p, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("on-demand"));
}

#[derive(Debug, Clone)]
enum Op {
    Place,
    Remove(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![3 => Just(Op::Place), 1 => (0usize..64).prop_map(Op::Remove)],
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// With room on every type, each type stays within one executor of its share
    /// after every placement, once the placements since the last removals have
    /// made up for them (removals may skew the counts; later executors restore them).
    #[test]
    fn mix_stays_within_one(ws in prop::collection::vec(0u32..6, 3), ops in ops()) {
        prop_assume!(ws.iter().sum::<u32>() > 0);
        let types = ["spot", "on-demand", "serverless"];
        let spec: Vec<String> = types.iter().zip(&ws).map(|(t, w)| format!("{t}={w}")).collect();
        let cfg = Config::default();
        let profile = spark_profile(&cfg);
        let mut s = cluster(2, 2);
        for i in 1..=2 {
            s.upsert_node(node(&format!("vk-{i}"), 64_000, 256 * GI).label("type", "virtual-kubelet").build());
        }
        let drv = pod("drv", 1000, GI).driver("app").annotation(EXECUTOR_CAPACITY_MIX, &spec.join(",")).build();
        place(&mut s, drv, "od-1");
        let w_all: u32 = ws.iter().sum();
        let mut placed: Vec<Arc<Pod>> = Vec::new();
        let mut debt = 0usize;
        for (k, op) in ops.iter().enumerate() {
            match op {
                Op::Place => {
                    let p = pod(&format!("e{k}"), 100, GI / 4).executor("app").arc();
                    let d = schedule(&profile, &p, &mut s, CycleOptions::default());
                    let n = d.node.expect("room on every type");
                    s.assume(p.clone(), n).unwrap();
                    placed.push(p);
                    debt = debt.saturating_sub(1);
                    if debt > 0 {
                        continue;
                    }
                    let c_all = placed.len() as f64;
                    for (t, w) in types.iter().zip(&ws) {
                        let c = placed.iter().filter(|p| {
                            let e = s.pod_by_key(&p.key).unwrap();
                            s.nodes().capacity_type[e.node as usize].as_str() == *t
                        }).count() as f64;
                        let target = *w as f64 / w_all as f64 * c_all;
                        prop_assert!((c - target).abs() <= 1.0 + 1e-9,
                            "{t}: {c} vs target {target} (mix {spec:?})");
                    }
                }
                Op::Remove(i) => {
                    if !placed.is_empty() {
                        let p = placed.swap_remove(i % placed.len());
                        s.remove_pod(&p.key);
                        debt += 1;
                    }
                }
            }
        }
    }

    /// Whatever the driver's allowed types, it never lands elsewhere.
    #[test]
    fn drivers_never_on_disallowed_types(allowed in prop::sample::subsequence(vec!["spot", "on-demand", "serverless"], 0..=3), spot in 0usize..3, od in 0usize..3) {
        let cfg = Config::default();
        let profile = spark_profile(&cfg);
        let mut s = cluster(spot, od);
        s.upsert_node(node("vk-1", 64_000, 256 * GI).label("type", "virtual-kubelet").build());
        let mut b = pod("d", 1000, GI).driver("app");
        if !allowed.is_empty() {
            b = b.annotation(DRIVER_CAPACITY, &allowed.join(","));
        }
        let effective: Vec<&str> = if allowed.is_empty() { vec!["on-demand"] } else { allowed.clone() };
        let d = schedule(&profile, &b.build(), &mut s, CycleOptions::default());
        match chosen_type(&s, &d) {
            Some(t) => prop_assert!(effective.contains(&t), "{t} not in {effective:?}"),
            None => {
                // Only when no node of an allowed type exists.
                let any = s.nodes().live_indices().any(|i| effective.contains(&s.nodes().capacity_type[i as usize].as_str()));
                prop_assert!(!any);
            }
        }
    }
}

/// Spread and mix together: each type's executors alternate zones, and the mix holds.
#[test]
fn spread_composes_with_the_mix() {
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = Snapshot::new(CapacityRules::default());
    for z in ["a", "b"] {
        s.upsert_node(
            node(&format!("spot-{z}"), 64_000, 256 * GI)
                .spot()
                .zone(z)
                .build(),
        );
        s.upsert_node(
            node(&format!("od-{z}"), 64_000, 256 * GI)
                .on_demand()
                .zone(z)
                .build(),
        );
    }
    let drv = pod("drv", 1000, GI)
        .driver("app")
        .annotation(EXECUTOR_CAPACITY_MIX, "spot=50,on-demand=50")
        .build();
    place(&mut s, drv, "od-a");
    let mut per_node: HashMap<&str, i32> = HashMap::new();
    for i in 0..8 {
        let p = executor(&format!("e{i}"), "app").arc();
        let d = schedule(&profile, &p, &mut s, CycleOptions::default());
        let n = d.node.unwrap();
        *per_node
            .entry(s.nodes().name[n as usize].as_str())
            .or_default() += 1;
        s.assume(p, n).unwrap();
    }
    for n in ["spot-a", "spot-b", "od-a", "od-b"] {
        assert_eq!(per_node.get(n), Some(&2), "{per_node:?}");
    }
}

/// The type admission chose is the target whatever the counts say now: the
/// counts would pick on-demand next, admission chose spot.
#[test]
fn admitted_type_is_the_target() {
    use crate::spark::annotations::CAPACITY_TYPE;
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = cluster(2, 2);
    issue_scenario(&mut s);
    let next = executor("e6", "app")
        .annotation(CAPACITY_TYPE, "spot")
        .arc();
    let d = schedule(&profile, &next, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("spot"));
    assert_eq!(capacity_fallback(&cfg, &next, &s, d.node.unwrap()), None);
    // Without the annotation the same executor goes on-demand.
    let plain = executor("e6", "app").build();
    let d = schedule(&profile, &plain, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("on-demand"));
}

/// The wait is counted from when the pod became unschedulable, not from its
/// creation: an executor created long ago (held back behind its driver, say) still
/// waits its full time for the type it was admitted with.
#[test]
fn admitted_soft_wait_counts_from_unschedulable() {
    use crate::spark::annotations::CAPACITY_TYPE;
    let mut cfg = Config::default();
    cfg.admission.soft_fallback_seconds = 60.0;
    let profile = spark_profile(&cfg);
    let mut s = cluster(2, 0);
    let mut pod = executor("e0", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .annotation(CAPACITY_TYPE, "on-demand")
        .created(1_000_000)
        .build();
    pod.unschedulable_since_ms = Some(5_000_000);
    let pod = std::sync::Arc::new(pod);
    assert_eq!(admitted_wait_ends_ms(&cfg, &pod, &s), Some(5_060_000));
    s.set_now_ms(Some(5_059_999));
    let d = schedule(&profile, &pod, &mut s, CycleOptions::default());
    assert_eq!(d.node, None, "still within 60 s of becoming unschedulable");
    s.set_now_ms(Some(5_060_000));
    let d = schedule(&profile, &pod, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("spot"));
}

/// Hard: an admitted executor waits for its type, with the mix's message.
/// Soft: it waits while `now` is within `softFallbackSeconds` of its creation,
/// then falls back (a CapacityFallback); without a clock it does not wait.
#[test]
fn admitted_soft_executor_waits_then_falls_back() {
    use crate::spark::annotations::CAPACITY_TYPE;
    let mut cfg = Config::default();
    cfg.admission.soft_fallback_seconds = 60.0;
    let profile = spark_profile(&cfg);
    let mut s = cluster(2, 0);
    let soft = executor("e0", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .annotation(CAPACITY_TYPE, "on-demand")
        .created(1_000_000)
        .arc();
    s.set_now_ms(Some(1_000_000 + 59_999));
    let d = schedule(&profile, &soft, &mut s, CycleOptions::default());
    assert_eq!(d.node, None);
    assert_eq!(
        d.message().unwrap(),
        "0/2 nodes are available: 2 node(s) didn't match the capacity type the executor \
         was admitted with (on-demand; other types after 60s)."
    );
    assert_eq!(
        admitted_wait_ends_ms(&cfg, &soft, &s),
        Some(1_000_000 + 60_000)
    );
    s.set_now_ms(Some(1_000_000 + 60_000));
    let d = schedule(&profile, &soft, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("spot"));
    let fb = capacity_fallback(&cfg, &soft, &s, d.node.unwrap()).unwrap();
    assert_eq!((fb.wanted.as_str(), fb.got.as_str()), ("on-demand", "spot"));
    s.set_now_ms(None);
    let d = schedule(&profile, &soft, &mut s, CycleOptions::default());
    assert_eq!(chosen_type(&s, &d), Some("spot"));

    let hard = executor("e1", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .annotation(CAPACITY_MIX_MODE, "hard")
        .annotation(CAPACITY_TYPE, "on-demand")
        .build();
    let d = schedule(&profile, &hard, &mut s, CycleOptions::default());
    assert_eq!(
        d.message().unwrap(),
        "0/2 nodes are available: 2 node(s) didn't match the application's capacity mix (wants on-demand)."
    );
    assert_eq!(admitted_wait_ends_ms(&cfg, &hard, &s), None);
}

#[test]
fn bad_admitted_type_is_reported() {
    use crate::spark::annotations::CAPACITY_TYPE;
    let cfg = Config::default();
    let profile = spark_profile(&cfg);
    let mut s = cluster(1, 1);
    let p = executor("e0", "app")
        .annotation(EXECUTOR_CAPACITY_MIX, MIX_40_60)
        .annotation(CAPACITY_TYPE, "cheap")
        .build();
    let d = schedule(&profile, &p, &mut s, CycleOptions::default());
    assert_eq!(d.node, None);
    let msg = d.message().unwrap();
    assert!(
        msg.contains("invalid annotation spark-fleet.io/capacity-type \"cheap\": unknown capacity type \"cheap\""),
        "{msg}"
    );
}
