//! The simulator on an elastic cluster: the Karpenter model launching and removing nodes, the
//! policies a user compares (each a profile, the constraints its pods carry and its NodePools),
//! the price of a loss, and runs that always end, whatever the trace.

use spark_fleet::config::Config;
use spark_fleet::sim::trace::{native, Trace};
use spark_fleet::sim::{simulate, AutoscalerMode, PolicyReport, SimOptions, SimReport};

const HEADER: &str = r#"{"format":"spark-fleet-trace","version":1,"name":"elastic","seed":1}"#;

fn trace(lines: &[&str]) -> Trace {
    let text = std::iter::once(HEADER)
        .chain(lines.iter().copied())
        .collect::<Vec<_>>()
        .join("\n");
    native::parse_jsonl(text.as_bytes(), "elastic.jsonl").expect("test trace parses")
}

fn fixture(name: &str) -> Trace {
    let path = format!(
        "{}/tests/fixtures/traces/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Trace::load(&path, &Default::default()).expect("fixture loads")
}

fn opts(autoscaler: AutoscalerMode) -> SimOptions {
    SimOptions {
        progress: false,
        autoscaler,
        ..SimOptions::default()
    }
}

fn run(t: &Trace, policies: &[&str], autoscaler: AutoscalerMode) -> SimReport {
    let names: Vec<String> = policies.iter().map(|s| s.to_string()).collect();
    simulate(t, &Config::default(), &names, &opts(autoscaler)).expect("simulates")
}

fn completion(report: &SimReport, policy: &str, app: &str) -> Option<f64> {
    let run = report.runs.iter().find(|r| r.policy == policy).unwrap();
    run.apps.iter().find(|(id, _)| id == app).unwrap().1
}

fn launched(p: &PolicyReport, ty: &str) -> u64 {
    p.autoscaler
        .as_ref()
        .and_then(|a| a.launched.get(ty).copied())
        .unwrap_or(0)
}

const SMALL_NODE: &str = r#"{"t":0,"type":"node_add","name":"n1","labels":{"karpenter.sh/capacity-type":"on-demand","topology.kubernetes.io/zone":"zone-a"},"allocatable":{"cpu":"2","memory":"8Gi","pods":"110"},"price_per_hour":0.1}"#;
const FOUR_EXECUTORS: &str = r#"{"t":0,"type":"app_submit","id":"a","namespace":"etl","driver":{"requests":{"cpu":"1","memory":"1Gi"},"priority":100000},"executor":{"requests":{"cpu":"2","memory":"1Gi"},"priority":50000},"executors":4,"work_executor_seconds":400}"#;

/// The driver fits n1; its four 2-CPU executors do not. They are marked unschedulable at 0,
/// the batch closes a second later (nothing else arrives), one node holding all four (8 CPU:
/// the cheapest offering is spot c5.4xlarge, $0.34/h) is Ready at 46 s, and the 400
/// executor-seconds take 100 s more.
#[test]
fn karpenter_launches_one_node_for_the_batch_and_the_app_finishes_on_it() {
    let t = trace(&[SMALL_NODE, FOUR_EXECUTORS]);
    let report = run(&t, &["spark-fleet"], AutoscalerMode::Karpenter);
    let p = &report.policies["spark-fleet"];
    assert_eq!(p.apps_completed, 1);
    assert_eq!(completion(&report, "spark-fleet", "a"), Some(146.0));
    assert_eq!(launched(p, "spot"), 1);
    assert_eq!(launched(p, "on-demand"), 0);
    assert_eq!(p.pending_seconds.max, 46.0);
    assert_eq!(p.ended_by, "work done");
    assert_eq!(p.end_seconds, 146.0);
    // n1 for 146 s at $0.10, the spot node for 100 s at $0.34.
    let want = 0.1 * 146.0 / 3600.0 + 0.34 * 100.0 / 3600.0;
    assert!(
        (p.cost_total - want).abs() < 1e-6,
        "{} {want}",
        p.cost_total
    );

    // Without the autoscaler the executors never run, and the run still ends.
    let fixed = run(&t, &["spark-fleet"], AutoscalerMode::Off);
    let p = &fixed.policies["spark-fleet"];
    assert_eq!(p.apps_completed, 0);
    assert_eq!(p.ended_by, "stalled");
    assert_eq!(p.pending_at_end, 4);
}

/// After the application the spot node is empty; consolidateAfter (60 s) later, on the
/// disruption controller's next 10 s tick (210 s), it goes: 164 s of spot node-time.
#[test]
fn an_empty_node_is_consolidated_after_consolidate_after() {
    let late = r#"{"t":1000,"type":"pod_submit","name":"late","namespace":"web","requests":{"cpu":"500m","memory":"1Gi"},"duration_seconds":10}"#;
    let t = trace(&[SMALL_NODE, FOUR_EXECUTORS, late]);
    let report = run(&t, &["spark-fleet"], AutoscalerMode::Karpenter);
    let p = &report.policies["spark-fleet"];
    let stats = p.autoscaler.as_ref().unwrap();
    assert_eq!(stats.empty_deleted, 1);
    assert_eq!(
        p.node_hours["spot"],
        ((210.0 - 46.0) / 3600.0 * 1e6_f64).round() / 1e6
    );
    assert_eq!(p.end_seconds, 1010.0);
}

/// One 40/60 application (hard mix) of five executors on an empty cluster.
#[test]
fn policies_on_an_empty_cluster() {
    let t = fixture("one-app-empty.jsonl");
    let policies = [
        "all-on-demand",
        "all-spot",
        "karpenter-spread",
        "spark-fleet",
        "spark-fleet-webhook",
    ];
    let report = run(&t, &policies, AutoscalerMode::Auto);
    let p = |name: &str| &report.policies[name];
    // The webhook: the driver's node is on-demand, then two executors on spot and three on
    // on-demand. The first on-demand executor starts alone on the driver's node while the
    // others' nodes launch: one executor cannot come closer to 40% than 0.4, so the error is
    // its floor, and zero once all five run.
    let w = p("spark-fleet-webhook");
    assert_eq!(w.apps_completed, 1);
    assert!(w.spot_share_error_floor.unwrap() > 0.0);
    assert_eq!(w.spot_share_error_above_floor, Some(0.0));
    assert!(launched(w, "spot") >= 1 && launched(w, "on-demand") >= 1);
    // Without it, Karpenter launches the cheapest type the pods allow: spot. The driver, which
    // spark-fleet keeps off spot, waits next to spot nodes Karpenter believes it fits: the run
    // stalls, and says why.
    let s = p("spark-fleet");
    assert_eq!(s.apps_completed, 0);
    assert_eq!(s.ended_by, "stalled");
    assert_eq!(launched(s, "on-demand"), 0);
    assert!(launched(s, "spot") >= 1);
    let driver = s
        .never_bound_examples
        .iter()
        .find(|e| e.role == "driver")
        .expect("the driver is reported");
    assert!(
        driver.scheduler.contains("driver's allowed capacity types"),
        "{}",
        driver.scheduler
    );
    // All on-demand: nothing on spot; all spot: every executor on spot.
    assert_eq!(p("all-on-demand").spot_share_abs_error_mean, Some(0.4));
    assert_eq!(launched(p("all-on-demand"), "spot"), 0);
    assert_eq!(p("all-spot").spot_share_abs_error_mean, Some(0.6));
    // The ratio-split recipe works from an empty cluster: Karpenter registers the five
    // capacity-spread domains of both NodePools and gives each executor its own.
    let k = p("karpenter-spread");
    assert_eq!(k.apps_completed, 1);
    assert_eq!(k.spot_share_abs_error_mean, Some(0.0));
    assert_eq!(launched(k, "spot"), 2);
    // Savings against all-on-demand: filled in for every policy.
    assert_eq!(p("all-on-demand").cost_saving_vs_reference, Some(0.0));
    assert!(w.cost_saving_vs_reference.unwrap() > 0.0);
    assert!(p("all-spot").cost_saving_vs_reference.unwrap() > w.cost_saving_vs_reference.unwrap());
}

/// The recipe drifts once a spread node exists: the second application's executors see only
/// the domain of the first application's executor (kube-scheduler knows no domain without a
/// node), which has room for all five, so they all land there. The webhook keeps both at
/// their floor.
#[test]
fn the_ratio_split_drifts_where_the_webhook_holds() {
    let app = |t: f64, id: &str, n: u32| {
        format!(
            r#"{{"t":{t},"type":"app_submit","id":"{id}","namespace":"etl","driver":{{"requests":{{"cpu":"1","memory":"1Gi"}},"priority":100000}},"executor":{{"requests":{{"cpu":"1","memory":"1Gi"}},"priority":50000}},"executors":{n},"work_executor_seconds":{w},"annotations":{{"spark-fleet.io/executor-capacity-mix":"spot=40,on-demand=60","spark-fleet.io/capacity-mix-mode":"hard"}}}}"#,
            w = 3600 * n
        )
    };
    let first = app(0.0, "first", 1);
    let second = app(300.0, "second", 5);
    let t = trace(&[&first, &second]);
    let report = run(
        &t,
        &["karpenter-spread", "spark-fleet-webhook"],
        AutoscalerMode::Auto,
    );
    let spread = &report.policies["karpenter-spread"];
    let webhook = &report.policies["spark-fleet-webhook"];
    assert_eq!(spread.apps_completed, 2);
    assert_eq!(webhook.apps_completed, 2);
    let above =
        |p: &PolicyReport| p.spot_share_abs_error_mean.unwrap() - p.spot_share_error_floor.unwrap();
    // One executor alone cannot come closer than 0.4 to 40%; five can hit it. The recipe
    // puts the second application's five executors on one domain: 0.4 off for half the
    // executor-time.
    assert!(above(webhook) < 0.01, "{}", above(webhook));
    assert!(above(spread) > 0.19, "{}", above(spread));
}

/// The node group keeps its nodes at the trace's executor-weighted mix (here 40% spot).
#[test]
fn the_mixed_node_group_launches_by_node_share() {
    let app = |id: &str| {
        format!(
            r#"{{"t":0,"type":"app_submit","id":"{id}","namespace":"etl","driver":{{"requests":{{"cpu":"1","memory":"1Gi"}},"priority":100000}},"executor":{{"requests":{{"cpu":"30","memory":"8Gi"}},"priority":50000}},"executors":2,"work_executor_seconds":600,"annotations":{{"spark-fleet.io/executor-capacity-mix":"spot=40,on-demand=60"}}}}"#
        )
    };
    let (a, b) = (app("a"), app("b"));
    let t = trace(&[&a, &b]);
    let report = run(&t, &["mixed-node-group"], AutoscalerMode::Auto);
    let p = &report.policies["mixed-node-group"];
    assert_eq!(p.apps_completed, 2);
    let (spot, od) = (launched(p, "spot"), launched(p, "on-demand"));
    // Every executor needs a node of its own; the drivers share.
    assert!(spot + od >= 5, "{spot} {od}");
    let share = spot as f64 / (spot + od) as f64;
    assert!((share - 0.4).abs() <= 0.2, "{spot} spot of {}", spot + od);
}

/// Lost executors are redone: with spot nodes interrupted every few minutes, executors on
/// spot are lost, their executor-seconds counted as recompute and the job finishes later.
#[test]
fn the_price_of_a_loss_is_recompute_and_a_later_finish() {
    let rate = r#"{"t":0,"type":"spot_interruption_rate","per_month":20000}"#;
    let mut calm = fixture("one-app-empty.jsonl");
    let storm = {
        let mut t = fixture("one-app-empty.jsonl");
        let mut events = trace(&[rate]).events;
        events.append(&mut t.events);
        t.events = events;
        t
    };
    calm.header.name = Some("calm".into());
    let quiet = run(&calm, &["all-on-demand", "all-spot"], AutoscalerMode::Auto);
    let stormy = run(&storm, &["all-on-demand", "all-spot"], AutoscalerMode::Auto);
    let q = &quiet.policies["all-spot"];
    let s = &stormy.policies["all-spot"];
    assert_eq!(q.executor_losses, 0);
    assert!(s.executor_losses > 0);
    assert_eq!(
        s.executor_losses_by_cause.get("spot-interruption").copied(),
        Some(s.executor_losses)
    );
    assert!(s.recompute_executor_seconds > 0.0);
    assert!(s.autoscaler.as_ref().unwrap().interruptions > 0);
    let finish = |r: &SimReport| completion(r, "all-spot", "a");
    match (finish(&quiet), finish(&stormy)) {
        (Some(a), Some(b)) => assert!(b > a, "{a} {b}"),
        (Some(_), None) => {} // never finished: the run still ended
        other => panic!("{other:?}"),
    }
    // The on-demand run is untouched by the spot market.
    assert_eq!(stormy.policies["all-on-demand"].executor_losses, 0);
}

// ---- a run always ends ---------------------------------------------------------------

#[test]
fn an_application_and_no_node_ends_with_a_report() {
    let t = fixture("starve-no-node.jsonl");
    let off = run(&t, &["spark-fleet"], AutoscalerMode::Off);
    let p = &off.policies["spark-fleet"];
    assert_eq!(p.ended_by, "stalled");
    assert_eq!(p.end_seconds, 3600.0);
    assert_eq!(p.pending_at_end, 1);
    assert_eq!(p.pending_at_end_by_reason["driver: no autoscaler"], 1);
    assert!(
        p.never_bound_examples[0]
            .scheduler
            .contains("no nodes available"),
        "{}",
        p.never_bound_examples[0].scheduler
    );
    // With the autoscaler (the default for Spark traces) it runs.
    let auto = run(&t, &["spark-fleet-webhook"], AutoscalerMode::Auto);
    assert_eq!(auto.policies["spark-fleet-webhook"].apps_completed, 1);
}

#[test]
fn executors_no_instance_type_holds_are_reported_with_the_autoscaler_reason() {
    let t = fixture("starve-too-big.jsonl");
    let report = run(&t, &["kube-default"], AutoscalerMode::Auto);
    let p = &report.policies["kube-default"];
    assert_eq!(p.ended_by, "stalled");
    assert_eq!(p.pending_at_end, 2);
    assert_eq!(launched(p, "spot") + launched(p, "on-demand"), 0);
    let why = &p.never_bound_examples[0];
    assert_eq!(why.role, "executor");
    assert!(
        why.autoscaler.contains("no instance type"),
        "{}",
        why.autoscaler
    );
    assert!(
        why.scheduler.contains("Insufficient cpu"),
        "{}",
        why.scheduler
    );
}

#[test]
fn emptying_the_cluster_ends_the_run() {
    let t = fixture("empty-cluster.jsonl");
    let off = run(&t, &["spark-fleet"], AutoscalerMode::Off);
    let p = &off.policies["spark-fleet"];
    assert_eq!(p.driver_losses, 1);
    assert_eq!(p.driver_losses_by_cause["node-removed"], 1);
    assert_eq!(p.app_resubmissions, 1);
    assert_eq!(p.ended_by, "stalled");
    // The executors' 100 s of work went with the driver.
    assert_eq!(p.work_lost_with_drivers_executor_seconds, 400.0);
    // Karpenter replaces the capacity and the resubmitted attempt completes.
    let auto = run(&t, &["spark-fleet-webhook"], AutoscalerMode::Auto);
    assert_eq!(auto.policies["spark-fleet-webhook"].apps_completed, 1);
}

#[test]
fn interrupting_every_node_ends_the_run() {
    let t = fixture("interrupt-every-node.jsonl");
    let off = run(&t, &["spark-fleet"], AutoscalerMode::Off);
    let p = &off.policies["spark-fleet"];
    assert_eq!(p.driver_losses_by_cause["spot-interruption"], 1);
    assert_eq!(p.ended_by, "stalled");
    assert!(p.pending_at_end >= 1);
    let auto = run(&t, &["spark-fleet"], AutoscalerMode::Auto);
    assert_eq!(auto.policies["spark-fleet"].apps_completed, 1);
    // Every node the autoscaler launches interrupted within seconds: the run still ends.
    let mut storm = fixture("one-app-empty.jsonl");
    let mut events =
        trace(&[r#"{"t":0,"type":"spot_interruption_rate","per_month":5000000}"#]).events;
    events.append(&mut storm.events);
    storm.events = events;
    let report = run(&storm, &["all-spot"], AutoscalerMode::Auto);
    let p = &report.policies["all-spot"];
    assert!(p.autoscaler.as_ref().unwrap().interruptions > 10);
    assert_eq!(p.apps_completed, 0);
    assert_eq!(p.ended_by, "stalled");
}

// ---- determinism ----------------------------------------------------------------------

#[test]
fn the_bundled_trace_gives_the_same_report_for_the_same_seed() {
    let t = Trace::load(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/simulations/traces/spark-small.jsonl"
        ),
        &Default::default(),
    )
    .unwrap();
    let names = spark_fleet::sim::baselines::default_policies(true);
    let o = opts(AutoscalerMode::Auto);
    let a = simulate(&t, &Config::default(), &names, &o).unwrap();
    let b = simulate(&t, &Config::default(), &names, &o).unwrap();
    assert_eq!(
        a.deterministic_json().unwrap(),
        b.deterministic_json().unwrap()
    );
    // The seed drives the autoscaler's draws (interruptions, ties): another seed, another run.
    let other = SimOptions { seed: 2, ..o };
    let c = simulate(&t, &Config::default(), &names, &other).unwrap();
    assert_ne!(
        a.policies["all-spot"].autoscaler,
        c.policies["all-spot"].autoscaler
    );
}
