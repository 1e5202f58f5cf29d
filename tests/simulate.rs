//! The simulator end to end: hand-worked outcomes, determinism, spot interruptions, driver
//! placement, the autoscaler and error reporting.

use spark_fleet::config::Config;
use spark_fleet::sim::trace::{native, Trace};
use spark_fleet::sim::{simulate, AutoscalerMode, SimError, SimOptions, SimReport};

const HEADER: &str = r#"{"format":"spark-fleet-trace","version":1,"name":"test","seed":1}"#;

fn trace(lines: &[&str]) -> Trace {
    let text = std::iter::once(HEADER)
        .chain(lines.iter().copied())
        .collect::<Vec<_>>()
        .join("\n");
    native::parse_jsonl(text.as_bytes(), "test.jsonl").expect("test trace parses")
}

fn node(name: &str, ty: &str, cpu: &str, price: f64) -> String {
    format!(
        r#"{{"t":0,"type":"node_add","name":"{name}","labels":{{"karpenter.sh/capacity-type":"{ty}"}},"allocatable":{{"cpu":"{cpu}","memory":"64Gi","pods":"110"}},"price_per_hour":{price}}}"#
    )
}

/// A plain pod of `cpu` CPUs and 1 GiB in its own namespace.
fn plain(t: f64, name: &str, cpu: &str, priority: i32, duration: f64) -> String {
    format!(
        r#"{{"t":{t},"type":"pod_submit","name":"{name}","namespace":"{name}","requests":{{"cpu":"{cpu}","memory":"1Gi"}},"priority":{priority},"duration_seconds":{duration}}}"#
    )
}

fn app(t: f64, id: &str, driver_cpu: &str, exec_cpu: &str, executors: u32, work: f64) -> String {
    format!(
        r#"{{"t":{t},"type":"app_submit","id":"{id}","namespace":"etl","driver":{{"requests":{{"cpu":"{driver_cpu}","memory":"1Gi"}},"priority":100000}},"executor":{{"requests":{{"cpu":"{exec_cpu}","memory":"1Gi"}},"priority":50000}},"executors":{executors},"work_executor_seconds":{work}}}"#
    )
}

/// The trace's nodes only: these outcomes are worked out by hand on a fixed cluster (the
/// autoscaler has its own tests, `tests/elastic.rs`).
fn quiet() -> SimOptions {
    SimOptions {
        progress: false,
        autoscaler: AutoscalerMode::Off,
        ..SimOptions::default()
    }
}

/// Preemption victims leave exactly 10 s after eviction, so outcomes can be worked out by hand.
fn ten_second_grace() -> SimOptions {
    SimOptions {
        preemption_grace_seconds: (10.0, 10.0),
        ..quiet()
    }
}

/// `t` run with the kube-default policy alone.
fn kube_default_run(t: &Trace, opts: &SimOptions) -> SimReport {
    simulate(t, &Config::default(), &policies(&["kube-default"]), opts).unwrap()
}

fn policies(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn completion(report: &SimReport, policy: &str, app: &str) -> Option<f64> {
    let run = report.runs.iter().find(|r| r.policy == policy).unwrap();
    run.apps.iter().find(|(id, _)| id == app).unwrap().1
}

/// 3 nodes of 4 CPUs (one spot), 2 applications of 1-CPU pods, so no placement can fragment:
/// - a (t=0): driver + 4 executors = 5 CPUs, 400 executor-seconds → done at t=100;
/// - b (t=10): driver + 8 executors; 12 − 5 − 1 = 6 executors run from t=10, the other 2
///   wait for a's 5 CPUs at t=100; 6·90 = 540 done by then, 400 left for 8 → done at t=150.
#[test]
fn hand_worked_two_applications() {
    let t = trace(&[
        &node("n1", "spot", "4", 0.36),
        &node("n2", "on-demand", "4", 1.2),
        &node("n3", "on-demand", "4", 1.2),
        &app(0.0, "a", "1", "1", 4, 400.0),
        &app(10.0, "b", "1", "1", 8, 940.0),
    ]);
    let names = policies(&["spark-fleet", "kube-default"]);
    let report = simulate(&t, &Config::default(), &names, &quiet()).unwrap();
    for p in &names {
        let r = &report.policies[p];
        assert_eq!(r.pods_submitted, 14, "{p}");
        assert_eq!(r.pods_bound, 14, "{p}");
        assert_eq!(r.pods_never_bound, 0, "{p}");
        assert_eq!(r.apps_submitted, 2, "{p}");
        assert_eq!(r.apps_completed, 2, "{p}");
        assert_eq!(r.apps_failed, 0, "{p}");
        assert_eq!(completion(&report, p, "a"), Some(100.0), "{p}");
        assert_eq!(completion(&report, p, "b"), Some(140.0), "{p}");
        assert_eq!(r.app_completion_seconds.p50, 100.0, "{p}");
        assert_eq!(r.app_completion_seconds.p99, 140.0, "{p}");
        // b's last two executors waited from t=10 to t=100.
        assert_eq!(r.pending_seconds.max, 90.0, "{p}");
        assert_eq!(r.end_seconds, 150.0, "{p}");
        // Requested CPU over 12: 5 for 10 s, 12 for 90 s, 9 for 50 s.
        let util = (10.0 * 5.0 / 12.0 + 90.0 + 50.0 * 9.0 / 12.0) / 150.0;
        assert_eq!(r.cpu_utilization_mean, Some((util * 1e6_f64).round() / 1e6));
        // 150 s of one spot ($0.36/h) and two on-demand ($1.2/h) nodes.
        assert_eq!(r.node_hours["spot"], 0.041667);
        assert_eq!(r.node_hours["on-demand"], 0.083333);
        assert_eq!(r.cost_total, 0.115);
        assert_eq!(r.driver_losses + r.executor_losses + r.preemptions, 0);
    }
    let table = report.summary_table();
    assert!(table.contains("spark-fleet") && table.contains("kube-default"));
    assert!(table.contains("apps completed"));
}

#[test]
fn same_trace_seed_and_config_give_identical_reports() {
    let t = Trace::load(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/simulations/traces/spark-small.jsonl"
        ),
        &Default::default(),
    )
    .unwrap();
    let names = policies(&["spark-fleet", "kube-default"]);
    let a = simulate(&t, &Config::default(), &names, &quiet()).unwrap();
    let b = simulate(&t, &Config::default(), &names, &quiet()).unwrap();
    assert_eq!(
        a.deterministic_json().unwrap(),
        b.deterministic_json().unwrap()
    );
    let r = &a.policies["spark-fleet"];
    assert_eq!(r.apps_submitted, 60);
    assert!(r.apps_completed > 0);

    let dir = tempfile::tempdir().unwrap();
    let files = a.write(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["trace"], "spark-small");
    assert!(json["timing"]["spark-fleet"]["wall_seconds"].is_number());
    for key in [
        "pods_submitted",
        "pods_bound",
        "pods_never_bound",
        "apps_completed",
        "driver_losses",
        "executor_losses",
        "preemptions",
        "capacity_fallbacks",
        "spot_share_abs_error_mean",
        "cost_total",
        "node_hours",
        "pending_seconds",
        "app_completion_seconds",
        "cpu_utilization_mean",
        "decisions",
    ] {
        assert!(
            json["policies"]["kube-default"].get(key).is_some(),
            "missing {key}"
        );
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "nodes.svg",
        "cost.svg",
        "pending.svg",
        "spot-share-spark-fleet.svg",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        let svg = std::fs::read_to_string(dir.path().join(want)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{want}"
        );
    }
}

/// The driver fits only on the small on-demand node; both executors run on spot n1 from t=0.
/// n1's notice comes at t=50 and it terminates at t=60: the 120 executor-seconds done are
/// lost. A new spot node joins at t=70, the executors run again and need 100 s more.
#[test]
fn spot_interruption_loses_and_restores_executors() {
    let t = trace(&[
        &node("n1", "spot", "4", 0.3),
        &node("n2", "on-demand", "1", 0.3),
        &app(0.0, "a", "1", "1", 2, 200.0),
        r#"{"t":50,"type":"spot_interruption","node":"n1","notice_seconds":10}"#,
        &node("n3", "spot", "4", 0.3).replace(r#""t":0"#, r#""t":70"#),
    ]);
    let report = simulate(
        &t,
        &Config::default(),
        &policies(&["spark-fleet"]),
        &quiet(),
    )
    .unwrap();
    let r = &report.policies["spark-fleet"];
    assert_eq!(r.executor_losses, 2);
    assert_eq!(r.driver_losses, 0);
    assert_eq!(r.apps_completed, 1);
    assert_eq!(completion(&report, "spark-fleet", "a"), Some(170.0));
    // Two original executors and two replacements, plus the driver.
    assert_eq!(r.pods_submitted, 5);
    assert_eq!(r.pods_bound, 5);
}

/// Spot n1 already runs a 2-CPU service, so packing puts a driver there when drivers may use
/// any capacity type; the interruption then takes the driver. With the default
/// (`driverCapacity: on-demand`) the driver sits on n2 and survives.
#[test]
fn drivers_on_spot_are_lost_where_spark_fleet_keeps_them_on_demand() {
    let t = trace(&[
        &node("n1", "spot", "4", 0.3),
        &node("n2", "on-demand", "4", 1.0),
        r#"{"t":0,"type":"pod_submit","name":"svc","namespace":"web","requests":{"cpu":"2","memory":"1Gi"}}"#,
        &app(1.0, "a", "1", "1", 1, 100.0),
        r#"{"t":30,"type":"spot_interruption","node":"n1","notice_seconds":10}"#,
    ]);
    let names = policies(&["spark-fleet"]);
    let protected = simulate(&t, &Config::default(), &names, &quiet()).unwrap();
    assert_eq!(protected.policies["spark-fleet"].driver_losses, 0);
    assert_eq!(protected.policies["spark-fleet"].apps_completed, 1);

    let mut any = Config::default();
    any.spark.driver_capacity = "any".into();
    let exposed = simulate(&t, &any, &names, &quiet()).unwrap();
    let r = &exposed.policies["spark-fleet"];
    assert_eq!(r.driver_losses, 1);
    assert_eq!(r.app_resubmissions, 1);
    assert_eq!(r.apps_completed, 1, "the resubmitted attempt completes");

    let no_retry = SimOptions {
        app_resubmissions: 0,
        ..quiet()
    };
    let failed = simulate(&t, &any, &names, &no_retry).unwrap();
    let r = &failed.policies["spark-fleet"];
    assert_eq!(r.driver_losses, 1);
    assert_eq!((r.apps_failed, r.apps_completed), (1, 0));
    assert_eq!(r.executors_failed_with_driver, 1);
}

#[test]
fn errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        format!(
            "{HEADER}\n{}\n{{\"t\":1,\"type\":\"node_add\",\"name\":\"x\",\"cpus\":1}}\n",
            node("n1", "spot", "4", 0.1)
        ),
    )
    .unwrap();
    let e = Trace::load(path.to_str().unwrap(), &Default::default()).unwrap_err();
    let msg = SimError::from(e).to_string();
    assert!(msg.contains("bad.jsonl:3:"), "{msg}");

    let t = trace(&[&node("n1", "spot", "4", 0.1)]);
    let e = simulate(&t, &Config::default(), &policies(&["nope"]), &quiet()).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let e = simulate(&t, &Config::default(), &[], &quiet()).unwrap_err();
    assert!(matches!(e, SimError::NoPolicies));
    let bad = SimOptions {
        preemption_grace_seconds: (5.0, 1.0),
        ..quiet()
    };
    let e = simulate(&t, &Config::default(), &policies(&["spark-fleet"]), &bad).unwrap_err();
    assert!(matches!(e, SimError::Options(_)), "{e}");
}

/// A priority-1000 pod preempts the priority-0 pod filling the only node. The victim leaves
/// after the 10 s grace period (the preemptor binds then), is recreated as its controller
/// would, and runs again once the preemptor finishes 20 s later.
#[test]
fn preemption_evicts_after_the_grace_period_and_the_victim_comes_back() {
    let t = trace(&[
        &node("n1", "on-demand", "4", 1.0),
        &plain(0.0, "batch", "4", 0, 1000.0),
        &plain(5.0, "urgent", "2", 1000, 20.0),
    ]);
    let report = kube_default_run(&t, &ten_second_grace());
    let r = &report.policies["kube-default"];
    assert_eq!(r.preemptions, 1);
    assert_eq!(r.plain_pods_lost, 1);
    assert_eq!(r.pods_submitted, 3);
    assert_eq!(r.pods_bound, 3);
    // urgent waited 5→15; the recreated batch pod waited 15→35.
    assert_eq!(r.pending_seconds.max, 20.0);
    assert_eq!(r.end_seconds, 1035.0);
}

/// 200 small nodes, then one large node that LeastAllocated (kube-default) always prefers,
/// and pods of 1 CPU. A 10% sample (100 feasible nodes, rotating start) misses the large node
/// on two decisions in three.
fn sampling_trace() -> Trace {
    let mut lines: Vec<String> = (0..200)
        .map(|i| node(&format!("small-{i:03}"), "on-demand", "4", 0.2))
        .collect();
    lines.push(node("large", "on-demand", "64", 3.2));
    for i in 0..30 {
        lines.push(format!(
            r#"{{"t":{i},"type":"pod_submit","name":"job-{i}","requests":{{"cpu":"1","memory":"1Gi"}},"duration_seconds":600}}"#
        ));
    }
    trace(&lines.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn sampled_policy_reports_what_sampling_costs_without_changing_the_run() {
    let t = sampling_trace();
    let names = policies(&["kube-default", "kube-default@10"]);
    let report = simulate(&t, &Config::default(), &names, &quiet()).unwrap();
    assert!(report.policies["kube-default"].sampling_quality.is_none());
    assert!(report.timing["kube-default"].shadow_scan_seconds.is_none());
    let q = report.policies["kube-default@10"]
        .sampling_quality
        .clone()
        .expect("sampled policy has sampling_quality");
    assert_eq!(q.percentage_of_nodes_to_score, 10);
    assert_eq!(q.decisions, 30);
    assert_eq!(q.placements_compared, 30);
    assert_eq!(q.nodes_live_mean, 201.0);
    assert!(q.nodes_evaluated_mean < 201.0, "{q:?}");
    assert!(
        q.shadow_scans > 0 && q.differs > 0 && q.regret.max > 0.0,
        "{q:?}"
    );
    assert!(
        q.differs_fraction > 0.0 && q.differs_fraction < 1.0,
        "{q:?}"
    );
    assert!(report.timing["kube-default@10"]
        .shadow_scan_seconds
        .is_some());

    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert!(json["policies"]["kube-default"]["sampling_quality"].is_null());
    let section = &json["policies"]["kube-default@10"]["sampling_quality"];
    for key in [
        "differs_fraction",
        "regret",
        "nodes_evaluated_mean",
        "shadow_scans",
    ] {
        assert!(section.get(key).is_some(), "missing {key} in {section}");
    }
    let summary = report.summary_table();
    assert!(
        summary.contains("sampling: differs from full scan"),
        "{summary}"
    );

    // Same inputs, same report; and the shadow scans leave the simulation itself untouched.
    let again = simulate(&t, &Config::default(), &names, &quiet()).unwrap();
    assert_eq!(
        report.deterministic_json().unwrap(),
        again.deterministic_json().unwrap()
    );
    let unmeasured = SimOptions {
        sampling_quality: false,
        ..quiet()
    };
    let plain = simulate(&t, &Config::default(), &names, &unmeasured).unwrap();
    let mut measured = report.policies["kube-default@10"].clone();
    assert!(plain.policies["kube-default@10"].sampling_quality.is_none());
    measured.sampling_quality = None;
    assert_eq!(measured, plain.policies["kube-default@10"]);
}

#[test]
fn sampled_policy_specs_are_checked() {
    let t = sampling_trace();
    let run = |names: &[&str]| simulate(&t, &Config::default(), &policies(names), &quiet());
    let e = run(&["spark-fleet@200"]).unwrap_err().to_string();
    assert!(
        e.contains("spark-fleet@200") && e.contains("0..=100"),
        "{e}"
    );
    let e = run(&["spark-fleet@10", "spark-fleet@010"]).unwrap_err();
    assert!(
        matches!(e, SimError::DuplicatePolicy(ref p) if p == "spark-fleet@10"),
        "{e}"
    );
    let e = run(&["nope@10"]).unwrap_err().to_string();
    assert!(e.contains("nope@10"), "{e}");
    // @0 and @100 score every node: nothing to measure.
    let r = run(&["kube-default@0", "kube-default@100"]).unwrap();
    assert!(r.policies.values().all(|p| p.sampling_quality.is_none()));
}

/// A preemptor whose nomination preemption can no longer serve gives the nomination up:
/// on the 8-CPU node, `urgent` (6 CPUs, priority 1000) evicts `batch` and is nominated;
/// `vip` (4 CPUs, priority 2000) evicts the same victim and takes the node when it leaves
/// (t = 15). `urgent` no longer fits, and only higher-priority `vip` could make room, so its
/// nomination is cleared: `low` (2 CPUs, priority 0) fits in the 4 CPUs left at t = 20. A
/// nomination kept would count `urgent`'s 6 CPUs against `low` until `urgent` binds at t = 45.
#[test]
fn a_nomination_preemption_cannot_serve_is_cleared() {
    let t = trace(&[
        &node("n1", "on-demand", "8", 1.0),
        &plain(0.0, "batch", "8", 0, 1000.0),
        &plain(5.0, "urgent", "6", 1000, 100.0),
        &plain(6.0, "vip", "4", 2000, 30.0),
        &plain(20.0, "low", "2", 0, 10.0),
    ]);
    let report = kube_default_run(&t, &ten_second_grace());
    let run = report
        .runs
        .iter()
        .find(|r| r.policy == "kube-default")
        .unwrap();
    let mut pending = run.pending_seconds.clone();
    pending.sort_by(f64::total_cmp);
    // batch 0, low 0, vip 6 → 15, urgent 5 → 45; the recreated batch waits for the node.
    assert_eq!(&pending[..4], [0.0, 0.0, 9.0, 40.0], "{pending:?}");
}

/// A nominated pod that leaves while pending takes its nomination along: the executor of
/// `x` (4 CPUs) evicts `batch` from n1 and is nominated there, then `x`'s driver is lost with
/// its spot node (t = 4) and the pending executor goes with the application. When `batch`
/// leaves n1 (t = 11) and comes back, it fits at once; a nomination left behind would count
/// the executor's 4 CPUs on n1 for ever, and `batch` would never run again.
#[test]
fn a_nominated_pod_that_leaves_pending_takes_its_nomination_along() {
    let t = trace(&[
        &node("n1", "on-demand", "8", 1.0),
        &node("n2", "spot", "2", 1.0),
        &plain(0.0, "batch", "8", 0, 1000.0),
        &app(1.0, "x", "1", "4", 1, 100.0),
        r#"{"t":3,"type":"spot_interruption","node":"n2","notice_seconds":1}"#,
    ]);
    let opts = SimOptions {
        app_resubmissions: 0,
        ..ten_second_grace()
    };
    let report = kube_default_run(&t, &opts);
    let r = &report.policies["kube-default"];
    assert_eq!((r.preemptions, r.apps_failed), (1, 1));
    // batch twice (the second time at once), x's driver; its executor never ran.
    assert_eq!((r.pods_bound, r.pods_never_bound), (3, 1));
    assert_eq!(r.pending_seconds.max, 0.0);
}

// ---- volumes ---------------------------------------------------------------------

/// A node in `zone` that may attach `limit` EBS volumes (none given: no limit).
fn zonal_node(name: &str, zone: &str, cpu: &str, limit: Option<u32>) -> String {
    let limits = limit
        .map(|n| format!(r#","volume_limits":{{"ebs.csi.aws.com":{n}}}"#))
        .unwrap_or_default();
    format!(
        r#"{{"t":0,"type":"node_add","name":"{name}","labels":{{"karpenter.sh/capacity-type":"on-demand","topology.kubernetes.io/zone":"{zone}"}},"allocatable":{{"cpu":"{cpu}","memory":"64Gi","pods":"110"}},"price_per_hour":1{limits}}}"#
    )
}

/// An application whose executors each get an OnDemand claim of class gp3.
fn app_with_claims(id: &str, executors: u32, work: f64) -> String {
    format!(
        r#"{{"t":0,"type":"app_submit","id":"{id}","namespace":"etl","driver":{{"requests":{{"cpu":"1","memory":"1Gi"}},"priority":100000}},"executor":{{"requests":{{"cpu":"1","memory":"1Gi"}},"priority":50000}},"executors":{executors},"work_executor_seconds":{work},"executor_claim":{{"storage_class":"gp3","request":"200Gi"}}}}"#
    )
}

fn gp3(allowed_zones: &str) -> String {
    format!(
        r#"{{"t":0,"type":"storage_class","name":"gp3","provisioner":"ebs.csi.aws.com","allowed_zones":[{allowed_zones}]}}"#
    )
}

/// One node of 16 CPUs that attaches at most 2 EBS volumes: an application of
/// 4 executors, each with its own claim, runs 2 at a time, so 400
/// executor-seconds take 200 s instead of 100 s.
#[test]
fn the_attach_limit_holds_executors_with_claims_back() {
    for (limit, want) in [(None, 100.0), (Some(2), 200.0)] {
        let t = trace(&[
            &gp3(""),
            &zonal_node("n1", "zone-a", "16", limit),
            &app_with_claims("a", 4, 400.0),
        ]);
        for policy in ["spark-fleet", "kube-default"] {
            let report = simulate(&t, &Config::default(), &policies(&[policy]), &quiet()).unwrap();
            assert_eq!(
                completion(&report, policy, "a"),
                Some(want),
                "{policy} {limit:?}"
            );
        }
    }
}

/// Claims provisioned only in zone-b: executors go to zone-b's 4 CPUs alone
/// (the driver, without claims, to zone-a), 4 at a time instead of 6.
#[test]
fn executors_go_where_their_claims_can_be_provisioned() {
    for (zones, want) in [
        (r#""zone-a","zone-b""#, 400.0 / 6.0),
        (r#""zone-b""#, 100.0),
    ] {
        let t = trace(&[
            &gp3(zones),
            &zonal_node("n-a", "zone-a", "4", None),
            &zonal_node("n-b", "zone-b", "4", None),
            &app_with_claims("a", 6, 400.0),
        ]);
        let report = simulate(
            &t,
            &Config::default(),
            &policies(&["spark-fleet"]),
            &quiet(),
        )
        .unwrap();
        let got = completion(&report, "spark-fleet", "a").unwrap();
        assert!(
            (got - want).abs() < 1e-3,
            "zones {zones}: {got} s, want {want}"
        );
    }
}

/// A pod mounting a claim bound to a zone-b volume never runs in zone-a.
#[test]
fn a_pod_whose_volume_is_in_zone_b_waits_for_zone_b() {
    let pod = r#"{"t":1,"type":"pod_submit","name":"reader","namespace":"etl","requests":{"cpu":"1","memory":"1Gi"},"claims":["shuffle"],"duration_seconds":10}"#;
    let volume = r#"{"t":0,"type":"volume_add","name":"pv-b","storage_class":"gp3","capacity":"100Gi","zone":"zone-b","driver":"ebs.csi.aws.com"}"#;
    let claim = r#"{"t":0,"type":"claim_add","name":"shuffle","namespace":"etl","storage_class":"gp3","request":"100Gi","volume":"pv-b"}"#;
    for (nodes, bound) in [
        (vec![zonal_node("n-a", "zone-a", "8", None)], 0),
        (
            vec![
                zonal_node("n-a", "zone-a", "8", None),
                zonal_node("n-b", "zone-b", "2", None),
            ],
            1,
        ),
    ] {
        let class = gp3("");
        let mut lines: Vec<&str> = vec![&class];
        lines.extend(nodes.iter().map(String::as_str));
        lines.extend([volume, claim, pod]);
        let t = trace(&lines);
        let report = simulate(
            &t,
            &Config::default(),
            &policies(&["spark-fleet"]),
            &quiet(),
        )
        .unwrap();
        let run = report
            .runs
            .iter()
            .find(|r| r.policy == "spark-fleet")
            .unwrap();
        assert_eq!(run.pods_bound, bound, "{} nodes", nodes.len());
    }
}

#[test]
fn a_claim_naming_a_missing_volume_is_an_error() {
    let t = trace(&[
        &gp3(""),
        r#"{"t":0,"type":"claim_add","name":"c","storage_class":"gp3","volume":"nope"}"#,
    ]);
    let e = simulate(
        &t,
        &Config::default(),
        &policies(&["spark-fleet"]),
        &quiet(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("volume \"nope\" does not exist"),
        "{e}"
    );
}
