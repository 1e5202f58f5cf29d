use super::*;
use crate::model::capacity::CapacityRules;
use crate::testkit::{node, pod, GI};
use kube::core::admission::AdmissionReview;
use std::sync::{Arc, Mutex};

const MIX: &str = "spot=40,on-demand=60";

/// A cluster with one spot and one on-demand node and the driver of `app`
/// (carrying the mix and mode) running.
fn cluster(mode: &str) -> Snapshot {
    let mut sn = Snapshot::new(CapacityRules::default());
    sn.upsert_node(node("spot-1", 64_000, 256 * GI).spot().build());
    sn.upsert_node(node("od-1", 64_000, 256 * GI).on_demand().build());
    let drv = pod("drv", 1000, GI)
        .namespace("spark")
        .driver("app")
        .on("od-1")
        .annotation(annotations::EXECUTOR_CAPACITY_MIX, MIX)
        .annotation(annotations::CAPACITY_MIX_MODE, mode)
        .build();
    sn.upsert_pod(Arc::new(drv)).unwrap();
    sn
}

fn review_json(object: Value, dry_run: bool) -> AdmissionRequest<core::Pod> {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "spark",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:spark:driver"},
            "object": object,
            "dryRun": dry_run,
        }
    });
    let review: AdmissionReview<core::Pod> = serde_json::from_value(body).unwrap();
    review.try_into().unwrap()
}

fn executor(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {
            "spark-role": "executor", "spark-app-selector": "app"}},
        "spec": {"schedulerName": "spark-fleet", "containers": [{"name": "c"}]}
    })
}

fn ours(p: &Pod) -> bool {
    p.scheduler_name == "spark-fleet"
}

fn run(
    config: &Config,
    snap: &Snapshot,
    ledger: &mut Ledger,
    req: &AdmissionRequest<core::Pod>,
) -> Reviewed {
    review(
        req,
        &mut Context {
            config,
            snap,
            ledger,
            now_ms: 1_000,
            is_ours: &ours,
        },
    )
}

fn patched(req: &AdmissionRequest<core::Pod>, r: &Reviewed) -> core::Pod {
    let mut doc = serde_json::to_value(req.object.as_ref().unwrap()).unwrap();
    if let Some(bytes) = &r.response.patch {
        let p: json_patch::Patch = serde_json::from_slice(bytes).unwrap();
        json_patch::patch(&mut doc, &p).unwrap();
    }
    serde_json::from_value(doc).unwrap()
}

fn admitted_type(p: &core::Pod) -> Option<String> {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::CAPACITY_TYPE).cloned())
}

/// The case: 20 executors of a 40/60 application admitted at once
/// (20 threads against one locked snapshot + ledger, as the live webhook
/// holds the scheduler's state lock) come out 8 spot and 12 on-demand.
#[test]
fn twenty_concurrent_executors_split_8_12() {
    let config = Arc::new(Config::default());
    let state = Arc::new(Mutex::new((cluster("hard"), Ledger::default())));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let (config, state) = (config.clone(), state.clone());
            std::thread::spawn(move || {
                let req = review_json(executor(&format!("app-exec-{i}")), false);
                let mut guard = state.lock().unwrap();
                let (snap, ledger) = &mut *guard;
                let r = run(&config, snap, ledger, &req);
                assert_eq!(r.decision, Decision::Executor, "{}", r.why);
                admitted_type(&patched(&req, &r)).unwrap()
            })
        })
        .collect();
    let types: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let spot = types.iter().filter(|t| *t == "spot").count();
    let od = types.iter().filter(|t| *t == "on-demand").count();
    assert_eq!((spot, od), (8, 12), "{types:?}");
    assert_eq!(state.lock().unwrap().1.len(), 20);
}

/// Without the ledger (each admission forgotten), every executor of the burst
/// sees an empty application and gets the same type: what the ledger prevents.
#[test]
fn without_the_ledger_a_burst_gets_one_type() {
    let config = Config::default();
    let snap = cluster("hard");
    let mut types = Vec::new();
    for i in 0..20 {
        let req = review_json(executor(&format!("app-exec-{i}")), false);
        let r = run(&config, &snap, &mut Ledger::default(), &req);
        types.push(admitted_type(&patched(&req, &r)).unwrap());
    }
    assert!(types.iter().all(|t| *t == types[0]), "{types:?}");
}

#[test]
fn counts_placed_and_pending_executors() {
    let config = Config::default();
    let mut snap = cluster("soft");
    // 4 placed on spot, 2 on on-demand; one pending seen with on-demand.
    for i in 0..6 {
        let node = if i < 4 { "spot-1" } else { "od-1" };
        let e = pod(&format!("placed-{i}"), 100, GI)
            .namespace("spark")
            .executor("app")
            .on(node)
            .build();
        snap.upsert_pod(Arc::new(e)).unwrap();
    }
    let mut ledger = Ledger::default();
    let pending = pod("pending-0", 100, GI)
        .namespace("spark")
        .executor("app")
        .build();
    ledger.observe(&pending, Some(Sym::new("on-demand")));
    // 7 counted: spot 4, on-demand 3; for 8, 40/60 wants 3.2 / 4.8: on-demand.
    let req = review_json(executor("next"), false);
    let r = run(&config, &snap, &mut ledger, &req);
    assert_eq!(r.decision, Decision::Executor);
    let p = patched(&req, &r);
    assert_eq!(admitted_type(&p).as_deref(), Some("on-demand"));
    assert_eq!(
        r.why,
        "mix spot=40,on-demand=60 (soft); counted spot 4 (placed 4, pending 0, admitted 0), \
         on-demand 3 (placed 2, pending 1, admitted 0); on-demand furthest below its share"
    );
    // Soft: a preferred term, no required one.
    let na = p.spec.unwrap().affinity.unwrap().node_affinity.unwrap();
    assert!(na
        .required_during_scheduling_ignored_during_execution
        .is_none());
    let pref = na
        .preferred_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(pref.len(), 1);
    assert_eq!(pref[0].weight, 100);
    let e = &pref[0].preference.match_expressions.as_ref().unwrap()[0];
    assert_eq!(
        (e.key.as_str(), e.operator.as_str()),
        ("karpenter.sh/capacity-type", "NotIn")
    );
}

#[test]
fn hard_mode_required_term_keeps_existing_terms_and_reinvocation_is_a_no_op() {
    let config = Config::default();
    let snap = cluster("hard");
    let mut ledger = Ledger::default();
    let mut obj = executor("e1");
    obj["metadata"]["annotations"] = json!({"team": "etl"});
    obj["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]},
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}]}
    ]}}});
    let req = review_json(obj, false);
    let r = run(&config, &snap, &mut ledger, &req);
    assert_eq!(r.decision, Decision::Executor);
    let p = patched(&req, &r);
    let ty = admitted_type(&p).unwrap();
    let annotations = p.metadata.annotations.clone().unwrap();
    assert_eq!(annotations.get("team").map(String::as_str), Some("etl"));
    assert!(annotations.contains_key(annotations::CAPACITY_TYPE_REASON));
    let terms = p
        .spec
        .as_ref()
        .unwrap()
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms
        .clone();
    assert_eq!(terms.len(), 2);
    for (t, zone) in terms.iter().zip(["a", "b"]) {
        let e = t.match_expressions.as_ref().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].values.as_ref().unwrap(), &vec![zone.to_owned()]);
        assert_eq!(e[1].key, "karpenter.sh/capacity-type");
    }
    // Reinvoked (another webhook changed the pod after us): same type, no patch.
    let again = review_json(serde_json::to_value(&p).unwrap(), false);
    let r2 = run(&config, &snap, &mut ledger, &again);
    assert_eq!(r2.decision, Decision::Reinvoked);
    assert!(r2.patch.is_empty(), "{:?}", r2.patch);
    assert!(r2.response.patch.is_none());
    assert_eq!(ledger.len(), 1);
    assert_eq!(admitted_type(&patched(&again, &r2)), Some(ty));
}

#[test]
fn drivers_get_a_required_term_for_their_capacity() {
    let config = Config::default();
    let snap = Snapshot::new(CapacityRules::default());
    let mut ledger = Ledger::default();
    let drv = json!({
        "metadata": {"name": "drv", "labels": {"spark-role": "driver", "spark-app-selector": "app2"}},
        "spec": {"schedulerName": "spark-fleet", "containers": [{"name": "c"}]}
    });
    let req = review_json(drv.clone(), false);
    let r = run(&config, &snap, &mut ledger, &req);
    assert_eq!(r.decision, Decision::Driver);
    let p = patched(&req, &r);
    let terms = p
        .spec
        .unwrap()
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    let e = &terms[0].match_expressions.as_ref().unwrap()[0];
    assert_eq!(e.key, "karpenter.sh/capacity-type");
    assert_eq!(e.operator, "NotIn");
    assert_eq!(e.values.as_deref(), Some(&["spot".to_owned()][..]));
    assert!(ledger.is_empty());
    // `any`: nothing to add.
    let mut any = drv;
    any["metadata"]["annotations"] = json!({"spark-fleet.io/driver-capacity": "any"});
    let r = run(&config, &snap, &mut ledger, &review_json(any, false));
    assert_eq!(r.decision, Decision::Skipped);
    assert!(r.response.patch.is_none());
}

#[test]
fn other_pods_and_bad_input_are_admitted_unchanged() {
    let config = Config::default();
    let snap = cluster("hard");
    let mut ledger = Ledger::default();
    let mut other = executor("e");
    other["spec"]["schedulerName"] = json!("default-scheduler");
    let mut bad = executor("e");
    bad["metadata"]["annotations"] = json!({"spark-fleet.io/capacity-type": "cheap"});
    let mut bad_mix = executor("e");
    bad_mix["metadata"]["annotations"] = json!({"spark-fleet.io/executor-capacity-mix": "spot"});
    let mut broken = executor("e");
    broken["spec"]["tolerations"] = json!([{"key": "k", "operator": "Sometimes"}]);
    let plain = json!({"metadata": {"name": "web"}, "spec": {"schedulerName": "spark-fleet", "containers": [{"name": "c"}]}});
    for (obj, want) in [
        (other, Decision::Skipped),
        (bad, Decision::Invalid),
        (bad_mix, Decision::Invalid),
        (broken, Decision::Invalid),
        (plain, Decision::Skipped),
    ] {
        let r = run(&config, &snap, &mut ledger, &review_json(obj, false));
        assert_eq!(r.decision, want, "{}", r.why);
        assert!(r.response.allowed);
        assert!(r.response.patch.is_none());
        assert_eq!(r.response.warnings.is_some(), want == Decision::Invalid);
    }
    assert!(ledger.is_empty());
    // No mix anywhere: skipped.
    let snap = Snapshot::new(CapacityRules::default());
    let r = run(
        &config,
        &snap,
        &mut ledger,
        &review_json(executor("e"), false),
    );
    assert_eq!(r.decision, Decision::Skipped);
}

#[test]
fn dry_run_and_generate_name() {
    let config = Config::default();
    let snap = cluster("hard");
    let mut ledger = Ledger::default();
    let r = run(
        &config,
        &snap,
        &mut ledger,
        &review_json(executor("e"), true),
    );
    assert_eq!(r.decision, Decision::Executor);
    assert!(ledger.is_empty(), "a dry run records nothing");
    let mut unnamed = executor("x");
    unnamed["metadata"] = json!({"generateName": "app-exec-", "labels": {
        "spark-role": "executor", "spark-app-selector": "app"}});
    let r = run(&config, &snap, &mut ledger, &review_json(unnamed, false));
    assert_eq!(r.decision, Decision::Executor, "{}", r.why);
    assert_eq!(ledger.len(), 1);
}

#[test]
fn provider_that_cannot_express_the_type_admits_unchanged() {
    let mut config = Config::default();
    config.admission.provider = crate::admission::Provider::VirtualKubelet;
    let snap = cluster("hard");
    let mut ledger = Ledger::default();
    let mut types = Vec::new();
    for i in 0..3 {
        let r = run(
            &config,
            &snap,
            &mut ledger,
            &review_json(executor(&format!("e{i}")), false),
        );
        types.push(r.decision);
    }
    // on-demand is expressible on virtual-kubelet, spot is not.
    assert!(types.contains(&Decision::Error), "{types:?}");
    assert!(types.contains(&Decision::Executor), "{types:?}");
}
