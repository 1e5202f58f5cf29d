//! The live scheduler against the in-repo test API server, through the real kube client,
//! for the faults a real kube-apiserver cannot be made to produce on cue:
//! - a binding answered 500 or 409 while nothing was written, or committed but answered
//!   500 (the real server does so only when it or etcd dies mid-request; those runs are
//!   in `control_plane_faults.rs`, these pin each case down);
//! - a stale pending copy of a bound pod (a lagging cache's list);
//! - status patches answered 500, held for seconds or never answered;
//! - events answered 500 or refused as invalid;
//! - lease requests answered 500 or never answered, and a backlog of reports against
//!   the lease's renewals (counted per request);
//! - the first pod list failing (readiness), watches dropped and the event log
//!   compacted (the re-list);
//! - a victim's DisruptionTarget patch refused;
//! - a pod the real server would refuse at creation (cpu "lots"), standing in for one
//!   the scheduler cannot read.
//!
//! Everything else the live layer promises is tested on a real control plane:
//! `control_plane_scheduler.rs`, `control_plane_faults.rs`, `control_plane_run.rs`.

mod support;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use spark_fleet::config::{Config, PluginEntry};
use spark_fleet::kube::Scheduler;
use support::apiserver::TestApiServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// The live-test profile (`testkit::live_test_config`), no leader election, short backoffs.
fn config() -> Config {
    let mut c = spark_fleet::testkit::live_test_config();
    c.leader_election.enabled = false;
    c.metrics.address = "127.0.0.1:0".into();
    c.queue.initial_backoff_seconds = 0.05;
    c.queue.max_backoff_seconds = 0.2;
    c.bind.concurrency = 4;
    c
}

fn with_leader_election(mut c: Config) -> Config {
    c.leader_election.enabled = true;
    c.leader_election.lease_namespace = Some("kube-system".into());
    c.leader_election.lease_duration_seconds = 3.0;
    c.leader_election.renew_deadline_seconds = 2.0;
    c.leader_election.retry_period_seconds = 0.1;
    c
}

fn node(name: &str, cpu: &str, labels: Value) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": labels },
        "status": { "allocatable": { "cpu": cpu, "memory": "256Gi", "pods": "110" } },
    }))
    .unwrap()
}

fn pod(name: &str, scheduler: &str, cpu: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "spark" },
        "spec": {
            "schedulerName": scheduler,
            "containers": [{ "name": "main", "image": "spark:3.5",
                             "resources": { "requests": { "cpu": cpu, "memory": "1Gi" } } }],
        },
    }))
    .unwrap()
}

fn node_name(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

fn condition<'a>(p: &'a Pod, ty: &str) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

async fn wait_bound(server: &TestApiServer, name: &str) -> String {
    let p = server
        .wait_for::<Pod>("spark", name, STEP, |p| node_name(p).is_some())
        .await
        .unwrap_or_else(|| panic!("pod {name} was not bound"));
    node_name(&p).unwrap()
}

/// events.k8s.io/v1 events about `pod` with `reason`.
fn events(server: &TestApiServer, pod: &str, reason: &str) -> Vec<Value> {
    server
        .raw_list("events.k8s.io", "events")
        .into_iter()
        .filter(|e| e["reason"] == reason && e["regarding"]["name"] == pod)
        .collect()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}

async fn started(server: &TestApiServer, c: Config) -> Scheduler {
    let s = within("start", Scheduler::start(server.client(), c))
        .await
        .unwrap();
    wait_until("synced", || s.is_ready()).await;
    s
}

/// A real server answers 429/5xx now and then: a refused status patch is sent again at
/// the next attempt, not forgotten as "already reported".
#[tokio::test]
async fn failed_status_patch_is_reported_again() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    server.fail_next("PATCH", "/pods/picky/status", 500, 1);
    let mut p = pod("picky", "spark-fleet", "1");
    p.spec.as_mut().unwrap().node_selector = Some([("disk".to_owned(), "ssd".to_owned())].into());
    server.create(&p).unwrap();
    assert!(
        server
            .wait_for_requests("PATCH", "/pods/picky/status", 1, STEP)
            .await
    );
    // Let the reporter take in the refusal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A node change retries the pod, with the same answer.
    let mut n1: Node = server.get("", "n1").unwrap();
    n1.metadata.labels = Some([("zone".to_owned(), "a".to_owned())].into());
    server.replace(&n1).unwrap();
    let got = server
        .wait_for::<Pod>("spark", "picky", STEP, |p| {
            condition(p, "PodScheduled").is_some()
        })
        .await
        .expect("PodScheduled condition set after the failed patch");
    assert_eq!(condition(&got, "PodScheduled").unwrap().status, "False");
    s.shutdown().await;
}

/// A failure's `PodScheduled=False` patch still in flight when the pod becomes
/// placeable must not land after the binding: the pod would run while reported
/// unschedulable. The binding waits for it.
#[tokio::test]
async fn a_late_unschedulable_patch_does_not_overwrite_the_binding() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    let delay = Duration::from_secs(3);
    server.delay_next("PATCH", "/pods/late/status", delay, 1);
    let mut p = pod("late", "spark-fleet", "1");
    p.spec.as_mut().unwrap().node_selector = Some([("disk".to_owned(), "ssd".to_owned())].into());
    server.create(&p).unwrap();
    let created = std::time::Instant::now();
    // The patch is on its way (held by the server); now the node fits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut n1: Node = server.get("", "n1").unwrap();
    n1.metadata.labels = Some([("disk".to_owned(), "ssd".to_owned())].into());
    server.replace(&n1).unwrap();
    within("bind", wait_bound(&server, "late")).await;
    // Past the moment the held patch is applied.
    tokio::time::sleep((delay + Duration::from_millis(500)).saturating_sub(created.elapsed()))
        .await;
    let got: Pod = server.get("spark", "late").unwrap();
    let c = condition(&got, "PodScheduled").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("True", None),
        "{c:?}"
    );
    assert_eq!(server.count_requests("PATCH", "/pods/late/status"), 1);
    s.shutdown().await;
}

/// A status patch that never gets an answer (dead connection, the client has no read
/// timeout) ends as a failure after the reporter's 30 s, so the pod is reported again.
#[tokio::test]
async fn a_hung_status_patch_is_given_up_and_reported_again() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    server.delay_next("PATCH", "/pods/picky/status", Duration::from_secs(3600), 1);
    let mut p = pod("picky", "spark-fleet", "1");
    p.spec.as_mut().unwrap().node_selector = Some([("disk".to_owned(), "ssd".to_owned())].into());
    server.create(&p).unwrap();
    // Past the reporter's timeout, a node change retries the pod with the same answer.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let mut n1: Node = server.get("", "n1").unwrap();
    n1.metadata.labels = Some([("zone".to_owned(), "a".to_owned())].into());
    server.replace(&n1).unwrap();
    server
        .wait_for::<Pod>("spark", "picky", STEP, |p| {
            condition(p, "PodScheduled").is_some()
        })
        .await
        .expect("PodScheduled condition set after the hung patch");
    s.shutdown().await;
}

#[tokio::test]
async fn invalid_pod_of_ours_is_reported() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    server.create(&pod("bad", "spark-fleet", "lots")).unwrap();
    let got = server
        .wait_for::<Pod>("spark", "bad", STEP, |p| {
            condition(p, "PodScheduled").is_some()
        })
        .await
        .expect("condition on the invalid pod");
    let c = condition(&got, "PodScheduled").unwrap();
    assert_eq!(c.status, "False");
    let msg = c.message.clone().unwrap();
    assert!(msg.contains("spark/bad") && msg.contains("cpu"), "{msg}");
    wait_until("event", || {
        !events(&server, "bad", "FailedScheduling").is_empty()
    })
    .await;
    // Another scheduler's invalid pod is not ours to report.
    server
        .create(&pod("bad-other", "default-scheduler", "lots"))
        .unwrap();
    server.create(&pod("fine", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "fine")).await;
    let other: Pod = server.get("spark", "bad-other").unwrap();
    assert!(condition(&other, "PodScheduled").is_none());
    s.shutdown().await;
}

fn with_host_port(mut p: Pod, port: i32) -> Pod {
    p.spec.as_mut().unwrap().containers[0].ports = Some(vec![serde_json::from_value(
        json!({"containerPort": port, "hostPort": port}),
    )
    .unwrap()]);
    p
}

#[tokio::test]
async fn dropped_watches_resume_without_loss() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    server.create(&node("n2", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    server.create(&pod("before", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "before")).await;

    // Changes while the streams are broken arrive when they resume.
    server.drop_watches();
    server.delete::<Node>("", "n2").unwrap();
    server.create(&pod("during", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "during")).await;
    wait_until("n2 deletion seen", || {
        s.with_snapshot(|snap| {
            snap.nodes()
                .get(spark_fleet::model::Sym::new("n2"))
                .is_none()
        })
    })
    .await;
    server.create(&pod("during2", "spark-fleet", "1")).unwrap();
    assert_eq!(within("bind", wait_bound(&server, "during2")).await, "n1");

    // Past the event log: the watchers must re-list, and what vanished meanwhile is removed.
    server.drop_watches();
    server.delete::<Pod>("spark", "before").unwrap();
    server.compact();
    server.create(&pod("after", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "after")).await;
    wait_until("deleted pod gone from the snapshot", || {
        s.with_snapshot(|snap| {
            snap.pod_by_key(&spark_fleet::model::PodKey::new("spark", "before"))
                .is_none()
                && snap
                    .nodes()
                    .get(spark_fleet::model::Sym::new("n2"))
                    .is_none()
        })
    })
    .await;
    s.shutdown().await;
}

#[tokio::test]
async fn bind_answered_500_is_retried() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    server.fail_next("POST", "/pods/p/binding", 500, 1);
    server.create(&pod("p", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "p")).await;
    assert_eq!(server.count_requests("POST", "/pods/p/binding"), 2);
    wait_until("bind counted", || s.binds() == 1).await;
    s.shutdown().await;
}

/// A 409 while the pod is still pending (the real server answers so while etcd is
/// down: `rpc error: code = Unavailable`) does not drop the pod: it is read, found
/// pending, and tried again.
#[tokio::test]
async fn bind_conflict_on_a_pending_pod_is_retried() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    server.fail_next("POST", "/pods/p/binding", 409, 1);
    server.create(&pod("p", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "p")).await;
    assert_eq!(server.count_requests("POST", "/pods/p/binding"), 2);
    assert_eq!(
        server.count_requests("GET", "/pods/p"),
        1,
        "read before the retry"
    );
    wait_until("bind counted", || s.binds() == 1).await;
    s.shutdown().await;
}

/// A binding the server committed but whose answer was lost (here: answered 500)
/// is not sent again blindly nor forgotten: the pod is read, found bound to the node
/// chosen, and counted as bound (its Scheduled event sent), its node's room never freed.
#[tokio::test]
async fn a_committed_binding_whose_answer_was_lost_counts_as_bound() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    server.serve_then_fail_next("POST", "/pods/p/binding", 500, 1);
    server.create(&pod("p", "spark-fleet", "1")).unwrap();
    assert_eq!(within("bind", wait_bound(&server, "p")).await, "n1");
    wait_until("bind counted", || s.binds() == 1).await;
    wait_until("Scheduled event", || {
        !events(&server, "p", "Scheduled").is_empty()
    })
    .await;
    assert_eq!(
        server.count_requests("POST", "/pods/p/binding"),
        1,
        "not sent again"
    );
    let key = spark_fleet::model::PodKey::new("spark", "p");
    assert!(s.with_snapshot(|snap| snap.pod_by_key(&key).is_some()));
    s.shutdown().await;
}

/// A pod's nodeName is never cleared, so a pending copy of a pod known bound is stale
/// (a list served by a lagging API server cache can show one). It must not free the
/// pod's room on its node. The test server stands in for such a cache by serving a
/// copy without nodeName.
#[tokio::test]
async fn a_stale_pending_copy_of_a_bound_pod_keeps_its_room() {
    let server = TestApiServer::start().await;
    let mut n1 = node("n1", "8", json!({}));
    n1.status
        .as_mut()
        .unwrap()
        .allocatable
        .as_mut()
        .unwrap()
        .insert(
            "pods".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
        );
    server.create(&n1).unwrap();
    let mut held = pod("held", "default-scheduler", "1");
    held.spec.as_mut().unwrap().node_name = Some("n1".into());
    server.create(&held).unwrap();
    let s = started(&server, config()).await;
    let mut stale = pod("held", "default-scheduler", "1");
    stale.metadata = server.get::<Pod>("spark", "held").unwrap().metadata;
    assert_eq!(node_name(&server.replace(&stale).unwrap()), None);
    server.create(&pod("mine", "spark-fleet", "1")).unwrap();
    let got = server
        .wait_for::<Pod>("spark", "mine", STEP, |p| {
            condition(p, "PodScheduled").is_some()
        })
        .await
        .expect("mine reported unschedulable");
    assert_eq!(
        node_name(&got),
        None,
        "placed on a node whose pod count is used up"
    );
    s.shutdown().await;
}

/// An event the server cannot take for now (500 twice; the client itself retries only
/// 429, 503 and 504) is sent again with backoff.
#[tokio::test]
async fn event_answered_500_is_sent_again() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    server.fail_next("POST", "/events", 500, 2);
    server.create(&pod("p", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "p")).await;
    wait_until("Scheduled event", || {
        !events(&server, "p", "Scheduled").is_empty()
    })
    .await;
    assert_eq!(server.count_requests("POST", "/events"), 3);
    s.shutdown().await;
}

/// An event the server refuses as invalid (422) is not sent again: it would be refused again.
#[tokio::test]
async fn event_refused_as_invalid_is_not_sent_again() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    server.fail_next("POST", "/events", 422, 1);
    server.create(&pod("p", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "p")).await;
    assert!(server.wait_for_requests("POST", "/events", 1, STEP).await);
    // Longer than the first two retries would take.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(server.count_requests("POST", "/events"), 1);
    assert!(events(&server, "p", "Scheduled").is_empty());
    s.shutdown().await;
}

#[tokio::test]
async fn metrics_and_readiness() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    // The first pod list fails: not ready until the watcher's retry succeeds.
    server.fail_next("GET", "/api/v1/pods", 500, 1);
    let s = within("start", Scheduler::start(server.client(), config()))
        .await
        .unwrap();
    let addr = s.metrics_addr();
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 503);
    within("ready", async {
        while http_get(addr, "/readyz").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server.create(&pod("p", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "p")).await;
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for name in [
        "spark_fleet_schedule_attempts_total{result=\"scheduled\"}",
        "spark_fleet_scheduling_algorithm_duration_seconds",
        "spark_fleet_e2e_scheduling_duration_seconds",
        "spark_fleet_pending_pods{queue=\"active\"}",
        "spark_fleet_pending_pods{queue=\"backoff\"}",
        "spark_fleet_pending_pods{queue=\"unschedulable\"}",
        "spark_fleet_binds_total{role=\"none\",capacity_type=\"on-demand\"}",
        "spark_fleet_preemption_victims_total",
        "spark_fleet_capacity_fallbacks_total",
        "spark_fleet_app_capacity_mix_deviation",
        "spark_fleet_leader",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn losing_the_lease_stops_binding() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "64", json!({}))).unwrap();
    let s = within(
        "start",
        Scheduler::start_as(server.client(), with_leader_election(config()), "me".into()),
    )
    .await
    .unwrap();
    wait_until("leads", || s.is_leader()).await;
    server.create(&pod("first", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "first")).await;

    // Another holder takes the lease over (e.g. after a partition): we follow at once.
    let mut lease: Lease = server.get("kube-system", "spark-fleet").unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.lease_duration_seconds = Some(3600);
    server.replace(&lease).unwrap();
    wait_until("stepped down", || !s.is_leader()).await;
    server.create(&pod("second", "spark-fleet", "1")).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        node_name(&server.get::<Pod>("spark", "second").unwrap()),
        None
    );
    assert!(
        s.is_queued("spark", "second"),
        "kept warm for a later takeover"
    );

    // The intruder releases it: we take over and bind.
    let mut lease: Lease = server.get("kube-system", "spark-fleet").unwrap();
    lease.spec.as_mut().unwrap().holder_identity = None;
    server.replace(&lease).unwrap();
    assert!(!within("bind", wait_bound(&server, "second"))
        .await
        .is_empty());
    assert!(s.is_leader());

    // Renewals fail past the renew deadline: binding stops although nobody else holds it.
    server.fail_next("PUT", "/leases/spark-fleet", 500, 1_000_000);
    wait_until("stepped down after renew deadline", || !s.is_leader()).await;
    server.create(&pod("third", "spark-fleet", "1")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        node_name(&server.get::<Pod>("spark", "third").unwrap()),
        None
    );
    s.shutdown().await;
}

/// A real API server (or the network to it) can stop answering without closing the
/// connection; the kube client has no read timeout. A leader whose lease requests hang
/// must still step down by its renew deadline, as a standby may take the lease after it.
#[tokio::test]
async fn hung_lease_requests_stop_binding_by_the_renew_deadline() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "64", json!({}))).unwrap();
    let s = within(
        "start",
        Scheduler::start_as(server.client(), with_leader_election(config()), "me".into()),
    )
    .await
    .unwrap();
    wait_until("leads", || s.is_leader()).await;
    server.delay_next(
        "GET",
        "/leases/spark-fleet",
        Duration::from_secs(60),
        1_000_000,
    );
    let hung_at = std::time::Instant::now();
    wait_until("stepped down with the lease requests hanging", || {
        !s.is_leader()
    })
    .await;
    // Renew deadline 2 s (with_leader_election); the lease itself lasts 3 s.
    let took = hung_at.elapsed();
    assert!(took < Duration::from_millis(2_900), "{took:?}");
    server.create(&pod("after", "spark-fleet", "1")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        node_name(&server.get::<Pod>("spark", "after").unwrap()),
        None
    );
    within("shutdown with a hung server", s.shutdown()).await;
}

/// Many pending pods queue many status patches behind the client rate limit; the lease
/// renewal must not wait behind them (upstream gives leader election its own client),
/// or the leader misses its renew deadline and stops scheduling under load.
#[tokio::test]
async fn a_backlog_of_reports_does_not_starve_the_lease() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "64", json!({}))).unwrap();
    let mut c = with_leader_election(config());
    c.client.qps = 5.0;
    c.client.burst = 1;
    let s = within(
        "start",
        Scheduler::start_as(server.client(), c, "me".into()),
    )
    .await
    .unwrap();
    wait_until("leads", || s.is_leader()).await;
    wait_until("synced", || s.is_ready()).await;
    // 30 reports at 5/s: six seconds of backlog, against a 2 s renew deadline and a
    // 3 s lease.
    for i in 0..30 {
        let mut p = pod(&format!("picky{i}"), "spark-fleet", "1");
        p.spec.as_mut().unwrap().node_selector =
            Some([("disk".to_owned(), "ssd".to_owned())].into());
        server.create(&p).unwrap();
    }
    wait_until("reporting started", || {
        server.count_requests("PATCH", "/status") > 0
    })
    .await;
    let renewals = server.count_requests("PUT", "/leases/spark-fleet");
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        assert!(s.is_leader(), "lost the lease behind the report backlog");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still renewed on the server, not only believed held.
    let renewed = server.count_requests("PUT", "/leases/spark-fleet") - renewals;
    assert!(renewed >= 3, "{renewed} renewals in 4 s");
    assert!(
        server.count_requests("PATCH", "/status") < 30,
        "the backlog drained early: the test shows nothing"
    );
    s.shutdown().await;
}

mod preemption {
    use super::*;
    use spark_fleet::framework::{
        FilterRunner, NodeStatuses, Nomination, Plugin, PluginSet, PostFilterPlugin,
        PostFilterResult, Status,
    };
    use spark_fleet::model::{Pod as ModelPod, Sym};
    use spark_fleet::snapshot::Snapshot;
    use std::sync::Arc;

    /// Nominates n1 with every pod on it as a victim: isolates the live reporting path
    /// from the real preemption plugins' victim selection.
    struct EvictN1;

    impl Plugin for EvictN1 {
        fn name(&self) -> &'static str {
            "EvictN1"
        }
    }

    impl PostFilterPlugin for EvictN1 {
        fn post_filter(
            &self,
            _pod: &ModelPod,
            snap: &mut Snapshot,
            _statuses: &NodeStatuses,
            _filters: &FilterRunner,
        ) -> PostFilterResult {
            let Some(node) = snap.nodes().get(Sym::new("n1")) else {
                return PostFilterResult {
                    status: Status::unschedulable("EvictN1", "no n1"),
                    nomination: None,
                    clears_nomination: false,
                };
            };
            let victims: Vec<_> = snap.pods_on(node).map(|e| e.pod.clone()).collect();
            if victims.is_empty() {
                return PostFilterResult {
                    status: Status::unschedulable("EvictN1", "no victims"),
                    nomination: None,
                    clears_nomination: false,
                };
            }
            PostFilterResult {
                status: Status::success(),
                nomination: Some(Nomination { node, victims }),
                clears_nomination: false,
            }
        }
    }

    /// A server whose node n1 runs `victim` (another scheduler's pod holding host
    /// port 7077), and a synced scheduler whose profile preempts with EvictN1.
    async fn victim_on_n1_and_evict_n1(c: Config) -> (TestApiServer, Scheduler) {
        let server = TestApiServer::start_with(support::apiserver::ServerOptions {
            graceful_pod_deletion: true,
            ..Default::default()
        })
        .await;
        server.create(&node("n1", "8", json!({}))).unwrap();
        let mut victim = with_host_port(pod("victim", "default-scheduler", "1"), 7077);
        victim.spec.as_mut().unwrap().node_name = Some("n1".into());
        server.create(&victim).unwrap();
        let mut profile =
            spark_fleet::plugins::build_named_profile(&c, &c.default_profile).unwrap();
        let mut set = PluginSet::new("EvictN1");
        set.post_filter = Some(Arc::new(EvictN1));
        profile.post_filter.push(set.post_filter.unwrap());
        let s = within(
            "start",
            Scheduler::start_with(server.client(), c, profile, "me".into()),
        )
        .await
        .unwrap();
        wait_until("synced", || s.is_ready()).await;
        (server, s)
    }

    /// Upstream deletes a victim only once its DisruptionTarget condition is written (the
    /// victim's owner reads why it went); a refused condition patch defers the deletion
    /// to a later attempt instead of deleting without it.
    #[tokio::test]
    async fn a_victim_is_not_deleted_without_its_disruption_condition() {
        let mut c = config();
        // Retries the nominated preemptor soon.
        c.queue.unschedulable_flush_seconds = 0.3;
        let (server, s) = victim_on_n1_and_evict_n1(c).await;

        server.fail_next("PATCH", "/pods/victim/status", 500, 1);
        server
            .create(&with_host_port(pod("preemptor", "spark-fleet", "1"), 7077))
            .unwrap();
        let v = server
            .wait_for::<Pod>("spark", "victim", STEP, |p| {
                p.metadata.deletion_timestamp.is_some()
            })
            .await
            .expect("victim deleted gracefully at a later attempt");
        assert!(
            condition(&v, "DisruptionTarget").is_some(),
            "deleted without its DisruptionTarget condition"
        );
        assert!(server.count_requests("PATCH", "/pods/victim/status") >= 2);
        s.shutdown().await;
    }
}

/// Throughput figures for the report: `cargo test --test live_scheduler -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn burst_throughput() {
    for (qps, burst, n) in [(1e6, 1_000_000, 1000), (50.0, 100, 300)] {
        let server = TestApiServer::start().await;
        for i in 0..20 {
            server
                .create(&node(&format!("n{i}"), "64", json!({})))
                .unwrap();
        }
        let mut c = config();
        c.client.qps = qps;
        c.client.burst = burst;
        c.bind.concurrency = 16;
        let s = started(&server, c).await;
        let t = std::time::Instant::now();
        for i in 0..n {
            server
                .create(&pod(&format!("p{i}"), "spark-fleet", "1"))
                .unwrap();
        }
        wait_until_long(|| s.binds() as usize == n).await;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "qps {qps} burst {burst}: {n} pods bound in {secs:.2} s: {:.0} pods/s",
            n as f64 / secs
        );
        s.shutdown().await;
    }
}

async fn wait_until_long(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(120), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("in time");
}

/// A pod asking for a share of a GPU card, as Alibaba's GPU-sharing clusters do.
fn gpu_pod(name: &str, milli: &str) -> Pod {
    let mut p = pod(name, "spark-fleet", "1");
    p.metadata.annotations =
        Some([("alibabacloud.com/gpu-milli".to_owned(), milli.to_owned())].into());
    p
}

fn gpu_index(server: &TestApiServer, name: &str) -> Option<String> {
    let p: Pod = server.get("spark", name)?;
    p.metadata
        .annotations?
        .get("alibabacloud.com/gpu-index")
        .cloned()
}

#[tokio::test]
async fn gpu_shares_are_placed_on_cards_and_the_binding_records_them() {
    let server = TestApiServer::start().await;
    let mut n = node("n1", "8", json!({"alibabacloud.com/gpu-card-model": "T4"}));
    n.status
        .as_mut()
        .unwrap()
        .allocatable
        .as_mut()
        .unwrap()
        .insert(
            "alibabacloud.com/gpu-count".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
        );
    server.create(&n).unwrap();
    // Bound before the scheduler starts, on card 1: best fit alone would have said card 0.
    let mut held = gpu_pod("held", "500");
    held.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("alibabacloud.com/gpu-index".into(), "1".into());
    held.spec.as_mut().unwrap().node_name = Some("n1".into());
    server.create(&held).unwrap();
    let mut c = config();
    if let Some(p) = c.profiles.iter_mut().find(|p| p.name == "live-test") {
        p.plugins.push(PluginEntry {
            name: "GpuShare".into(),
            weight: 0,
        });
    }
    let s = started(&server, c).await;
    // 600 fits card 0 only (card 1 has 500 free); then 500 fits card 1 exactly.
    for (name, milli, card) in [("a", "600", "0"), ("b", "500", "1")] {
        server.create(&gpu_pod(name, milli)).unwrap();
        assert_eq!(within("bind", wait_bound(&server, name)).await, "n1");
        assert_eq!(gpu_index(&server, name).as_deref(), Some(card), "{name}");
    }
    // 400 milli left on card 0, none on card 1: a whole card does not fit.
    let mut whole = pod("whole", "spark-fleet", "1");
    whole.metadata.annotations =
        Some([("alibabacloud.com/gpu-count".to_owned(), "1".to_owned())].into());
    server.create(&whole).unwrap();
    wait_until("FailedScheduling", || {
        !events(&server, "whole", "FailedScheduling").is_empty()
    })
    .await;
    let note = events(&server, "whole", "FailedScheduling")[0]["note"].clone();
    assert!(
        note.as_str().unwrap().contains("Insufficient free GPUs"),
        "{note}"
    );
    s.shutdown().await;
}
