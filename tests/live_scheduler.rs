//! The live scheduler against the in-repo test API server, through the real kube client.

mod support;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use spark_fleet::config::{Config, PluginEntry, ProfileConfig};
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

/// Plugins available in every build of the crate, so outcomes do not depend on others' work.
fn config() -> Config {
    let mut c = Config::default();
    let plugins = [
        "NodeUnschedulable",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodePorts",
        "NodeResourcesFit",
    ];
    c.profiles.push(ProfileConfig {
        name: "live-test".into(),
        plugins: plugins
            .iter()
            .map(|n| PluginEntry {
                name: (*n).into(),
                weight: 1,
            })
            .collect(),
        plugin_args: Default::default(),
        percentage_of_nodes_to_score: 0,
    });
    c.default_profile = "live-test".into();
    c.leader_election.enabled = false;
    c.metrics.address = "127.0.0.1:0".into();
    c.queue.initial_backoff_seconds = 0.05;
    c.queue.max_backoff_seconds = 0.2;
    c.bind.concurrency = 4;
    c
}

/// The test profile with one more plugin.
fn with_plugin(mut c: Config, name: &str, weight: i64) -> Config {
    let profile = c
        .profiles
        .iter_mut()
        .find(|p| p.name == "live-test")
        .unwrap();
    profile.plugins.push(PluginEntry {
        name: name.into(),
        weight,
    });
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

#[tokio::test]
async fn pending_pods_get_bound() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    server.create(&node("n2", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    for i in 0..6 {
        server
            .create(&pod(&format!("p{i}"), "spark-fleet", "1"))
            .unwrap();
    }
    for i in 0..6 {
        let name = format!("p{i}");
        let node = within("bind", wait_bound(&server, &name)).await;
        assert!(node == "n1" || node == "n2");
        let p: Pod = server.get("spark", &name).unwrap();
        assert_eq!(condition(&p, "PodScheduled").unwrap().status, "True");
    }
    wait_until("Scheduled events", || {
        (0..6).all(|i| !events(&server, &format!("p{i}"), "Scheduled").is_empty())
    })
    .await;
    let ev = &events(&server, "p0", "Scheduled")[0];
    let node = node_name(&server.get::<Pod>("spark", "p0").unwrap()).unwrap();
    assert_eq!(
        ev["note"],
        format!("Successfully assigned spark/p0 to {node}")
    );
    assert_eq!(ev["reportingController"], "spark-fleet");
    wait_until("binds counted", || s.binds() == 6).await;
    s.shutdown().await;
}

#[tokio::test]
async fn unplaceable_pod_is_reported_once_per_message() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    server.create(&node("n2", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    let mut p = pod("picky", "spark-fleet", "1");
    p.spec.as_mut().unwrap().node_selector = Some([("disk".to_owned(), "ssd".to_owned())].into());
    server.create(&p).unwrap();
    let want = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.";
    let got = server
        .wait_for::<Pod>("spark", "picky", STEP, |p| {
            condition(p, "PodScheduled").is_some()
        })
        .await
        .expect("PodScheduled condition set");
    let c = condition(&got, "PodScheduled").unwrap();
    assert_eq!(c.status, "False");
    assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(c.message.as_deref(), Some(want));
    wait_until("FailedScheduling", || {
        !events(&server, "picky", "FailedScheduling").is_empty()
    })
    .await;
    let ev = &events(&server, "picky", "FailedScheduling")[0];
    assert_eq!(ev["note"], want);
    assert_eq!(ev["type"], "Warning");

    // A node change retries the pod; the same answer is not reported again.
    let attempts = server.count_requests("PATCH", "/pods/picky/status");
    let mut n1: Node = server.get("", "n1").unwrap();
    n1.metadata.labels = Some([("zone".to_owned(), "a".to_owned())].into());
    server.replace(&n1).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.count_requests("PATCH", "/pods/picky/status"),
        attempts
    );
    assert_eq!(events(&server, "picky", "FailedScheduling").len(), 1);

    // A new answer is; the condition's status did not change, so neither does its
    // lastTransitionTime (as upstream's UpdatePodCondition keeps it).
    let first_transition = c.last_transition_time.clone();
    assert!(first_transition.is_some());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    server.create(&node("n3", "8", json!({}))).unwrap();
    let want3 = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.";
    let got3 = server
        .wait_for::<Pod>("spark", "picky", STEP, |p| {
            condition(p, "PodScheduled").and_then(|c| c.message.as_deref()) == Some(want3)
        })
        .await
        .expect("message updated");
    assert_eq!(
        condition(&got3, "PodScheduled")
            .unwrap()
            .last_transition_time,
        first_transition
    );

    // And a matching node gets it bound.
    server
        .create(&node("n4", "8", json!({"disk": "ssd"})))
        .unwrap();
    assert_eq!(within("bind", wait_bound(&server, "picky")).await, "n4");
    s.shutdown().await;
}

/// A pod with `spec.schedulingGates` is not ready for scheduling: the real server refuses
/// to bind it (409), and upstream does not attempt it (nor preempt for it) until the
/// gates are removed.
#[tokio::test]
async fn gated_pods_wait_for_their_gates_to_be_removed() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let s = started(&server, config()).await;
    let mut p = pod("gated", "spark-fleet", "1");
    p.spec.as_mut().unwrap().scheduling_gates = Some(vec![serde_json::from_value(
        json!({"name": "example.com/wait"}),
    )
    .unwrap()]);
    server.create(&p).unwrap();
    server.create(&pod("free", "spark-fleet", "1")).unwrap();
    within("bind free", wait_bound(&server, "free")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.count_requests("POST", "/pods/gated/binding"), 0);
    assert!(!s.is_queued("spark", "gated"));
    assert_eq!(server.count_requests("PATCH", "/pods/gated/status"), 0);

    // Gates removed: scheduled like any other pod.
    server
        .patch::<Pod>(
            "spark",
            "gated",
            &json!({"spec": {"schedulingGates": null}}),
        )
        .unwrap();
    assert_eq!(
        within("bind gated", wait_bound(&server, "gated")).await,
        "n1"
    );
    s.shutdown().await;
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

/// The real server refuses an events.k8s.io/v1 Event whose note exceeds 1024 bytes (422);
/// a message listing many distinct taints is longer than that.
#[tokio::test]
async fn long_failure_message_is_truncated_in_the_event() {
    let server = TestApiServer::start().await;
    let nodes = 24;
    for i in 0..nodes {
        let n: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": format!("n{i:02}") },
            "spec": { "taints": [{
                "key": format!("teams.example.com/dedicated-to-team-{i:02}"),
                "value": format!("reserved-for-the-analytics-team-number-{i:02}"),
                "effect": "NoSchedule",
            }] },
            "status": { "allocatable": { "cpu": "8", "memory": "256Gi", "pods": "110" } },
        }))
        .unwrap();
        server.create(&n).unwrap();
    }
    let s = started(&server, config()).await;
    server
        .create(&pod("tainted-out", "spark-fleet", "1"))
        .unwrap();
    let got = server
        .wait_for::<Pod>("spark", "tainted-out", STEP, |p| {
            condition(p, "PodScheduled").is_some()
        })
        .await
        .expect("PodScheduled condition set");
    // The condition keeps the whole message, as upstream.
    let full = condition(&got, "PodScheduled")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(full.len() > 1024, "{}", full.len());
    wait_until("FailedScheduling", || {
        !events(&server, "tainted-out", "FailedScheduling").is_empty()
    })
    .await;
    let ev = &events(&server, "tainted-out", "FailedScheduling")[0];
    let note = ev["note"].as_str().unwrap();
    assert!(note.len() <= 1024, "{}", note.len());
    assert!(
        note.starts_with(&format!("0/{nodes} nodes are available: ")),
        "{note}"
    );
    assert!(note.ends_with(" ..."), "{note}");
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
async fn other_schedulers_pods_are_ignored_but_counted() {
    let server = TestApiServer::start().await;
    server
        .create(&node("n1", "4", json!({"kubernetes.io/hostname": "n1"})))
        .unwrap();
    server
        .create(&node("n2", "4", json!({"kubernetes.io/hostname": "n2"})))
        .unwrap();
    // Bound by another scheduler on n1: holds its CPU and host port 7077.
    let mut foreign = with_host_port(pod("foreign", "default-scheduler", "3"), 7077);
    foreign.spec.as_mut().unwrap().node_name = Some("n1".into());
    server.create(&foreign).unwrap();
    server
        .create(&pod("theirs", "default-scheduler", "1"))
        .unwrap();
    let s = started(&server, config()).await;
    let n1 = spark_fleet::model::Sym::new("n1");
    let requested_on_n1 = || {
        s.with_snapshot(|snap| {
            snap.nodes()
                .get(n1)
                .map(|i| snap.nodes().req_cpu[i as usize])
        })
    };
    assert_eq!(requested_on_n1(), Some(3000));
    // Each of ours wants the same host port: only n2 has it free.
    for i in 0..2 {
        server
            .create(&with_host_port(
                pod(&format!("mine{i}"), "spark-fleet", "1"),
                7077,
            ))
            .unwrap();
    }
    assert_eq!(within("bind", wait_bound(&server, "mine0")).await, "n2");
    // The second has no node left; it must not land on n1 beside the foreign pod.
    server
        .wait_for::<Pod>("spark", "mine1", STEP, |p| {
            condition(p, "PodScheduled").is_some()
        })
        .await
        .expect("mine1 reported unschedulable");
    assert_eq!(
        node_name(&server.get::<Pod>("spark", "mine1").unwrap()),
        None
    );

    // Only 1 CPU is left on n1: a 2-CPU pod pinned there does not fit.
    let mut big = pod("big", "spark-fleet", "2");
    big.spec.as_mut().unwrap().node_selector =
        Some([("kubernetes.io/hostname".to_owned(), "n1".to_owned())].into());
    server.create(&big).unwrap();
    let big = server
        .wait_for::<Pod>("spark", "big", STEP, |p| {
            condition(p, "PodScheduled").is_some()
        })
        .await
        .expect("big reported unschedulable");
    let msg = condition(&big, "PodScheduled")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(msg.contains("1 Insufficient cpu"), "{msg}");

    assert!(!s.is_queued("spark", "theirs"));
    let theirs: Pod = server.get("spark", "theirs").unwrap();
    assert_eq!(node_name(&theirs), None);
    assert_eq!(server.count_requests("POST", "/pods/theirs/binding"), 0);
    assert!(condition(&theirs, "PodScheduled").is_none());
    s.shutdown().await;
}

#[tokio::test]
async fn only_the_leader_binds_and_a_standby_takes_over() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "64", json!({}))).unwrap();
    let a = within(
        "start a",
        Scheduler::start_as(server.client(), with_leader_election(config()), "a".into()),
    )
    .await
    .unwrap();
    wait_until("a leads", || a.is_leader()).await;
    let b = within(
        "start b",
        Scheduler::start_as(server.client(), with_leader_election(config()), "b".into()),
    )
    .await
    .unwrap();
    wait_until("b synced", || b.is_ready()).await;
    assert_eq!(
        http_get(b.metrics_addr(), "/readyz").await.0,
        200,
        "a standby is ready"
    );
    for i in 0..8 {
        server
            .create(&pod(&format!("p{i}"), "spark-fleet", "1"))
            .unwrap();
    }
    for i in 0..8 {
        within("bind", wait_bound(&server, &format!("p{i}"))).await;
    }
    // Several renewals later b still follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.is_leader());
    assert!(!b.is_leader());
    wait_until("a counted its binds", || a.binds() == 8).await;
    assert_eq!(b.binds(), 0);
    let lease: Lease = server.get("kube-system", "spark-fleet").unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("a"));

    // a leaves and releases the lease: b takes over well before it would expire.
    a.shutdown().await;
    let lease: Lease = server.get("kube-system", "spark-fleet").unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None);
    wait_until("b leads", || b.is_leader()).await;
    server.create(&pod("late", "spark-fleet", "1")).unwrap();
    within("bind late", wait_bound(&server, "late")).await;
    wait_until("b counted its bind", || b.binds() == 1).await;
    b.shutdown().await;
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
async fn shutdown_mid_burst_loses_no_pod() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "200", json!({}))).unwrap();
    let mut c = config();
    c.bind.concurrency = 2;
    c.client.qps = 40.0;
    c.client.burst = 4;
    let s = started(&server, c.clone()).await;
    server.delay_next("POST", "/binding", Duration::from_millis(100), 1000);
    let n = 40;
    for i in 0..n {
        server
            .create(&pod(&format!("p{i}"), "spark-fleet", "1"))
            .unwrap();
    }
    wait_until("some bound", || s.binds() >= 5).await;
    let t = std::time::Instant::now();
    s.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(11));
    let pods: Vec<Pod> = server.list(Some("spark"));
    let bound = pods.iter().filter(|p| node_name(p).is_some()).count();
    assert!(bound < n, "shutdown came mid-burst ({bound} bound)");
    for p in &pods {
        let scheduled = condition(p, "PodScheduled").map(|c| c.status.as_str());
        match node_name(p) {
            Some(_) => assert_eq!(scheduled, Some("True")),
            None => assert_ne!(scheduled, Some("True")),
        }
    }
    // Nothing is lost: a new instance binds the rest.
    let s2 = started(&server, c).await;
    for i in 0..n {
        within("bind rest", wait_bound(&server, &format!("p{i}"))).await;
    }
    wait_until("s2 bound the rest", || s2.binds() as usize == n - bound).await;
    s2.shutdown().await;
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

    #[tokio::test]
    async fn preemption_nominates_marks_and_deletes_victims() {
        let (server, s) = victim_on_n1_and_evict_n1(config()).await;

        server
            .create(&with_host_port(pod("preemptor", "spark-fleet", "1"), 7077))
            .unwrap();
        // The victim is marked and deleted gracefully (it is terminating, still on n1).
        let v = server
            .wait_for::<Pod>("spark", "victim", STEP, |p| {
                p.metadata.deletion_timestamp.is_some()
            })
            .await
            .expect("victim deleted gracefully");
        let c = condition(&v, "DisruptionTarget").expect("DisruptionTarget condition");
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("PreemptionByScheduler"));
        let p = server
            .wait_for::<Pod>("spark", "preemptor", STEP, |p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_deref())
                    == Some("n1")
            })
            .await
            .expect("preemptor nominated to n1");
        assert_eq!(node_name(&p), None, "waits for the victim to leave");
        wait_until("events", || {
            !events(&server, "victim", "Preempted").is_empty()
                && !events(&server, "preemptor", "Nominated").is_empty()
        })
        .await;
        let note = events(&server, "victim", "Preempted")[0]["note"].clone();
        assert!(note.as_str().unwrap().ends_with("on node n1"), "{note}");

        // The kubelet finishes the victim: the preemptor gets n1.
        server.delete::<Pod>("spark", "victim").unwrap();
        assert_eq!(within("bind", wait_bound(&server, "preemptor")).await, "n1");
        s.shutdown().await;
    }

    /// A Filter that fails with an error (not a rejection), e.g. a backend it needs is down.
    struct Broken;

    impl Plugin for Broken {
        fn name(&self) -> &'static str {
            "Broken"
        }
    }

    impl spark_fleet::framework::FilterPlugin for Broken {
        fn filter(
            &self,
            _state: &spark_fleet::framework::CycleState,
            _pod: &ModelPod,
            _snap: &Snapshot,
            _node: spark_fleet::snapshot::NodeIdx,
        ) -> Status {
            Status::error("Broken", "backend unavailable")
        }
    }

    /// A scheduling error is reported with reason SchedulerError, not Unschedulable (which
    /// cluster autoscalers act on), as upstream's handleSchedulingFailure does.
    #[tokio::test]
    async fn a_scheduling_error_is_reported_as_scheduler_error() {
        let server = TestApiServer::start().await;
        server.create(&node("n1", "8", json!({}))).unwrap();
        let c = config();
        let mut profile =
            spark_fleet::plugins::build_named_profile(&c, &c.default_profile).unwrap();
        profile.filter.push(Arc::new(Broken));
        let s = within(
            "start",
            Scheduler::start_with(server.client(), c, profile, "me".into()),
        )
        .await
        .unwrap();
        wait_until("synced", || s.is_ready()).await;
        server.create(&pod("p", "spark-fleet", "1")).unwrap();
        let got = server
            .wait_for::<Pod>("spark", "p", STEP, |p| {
                condition(p, "PodScheduled").is_some()
            })
            .await
            .expect("PodScheduled condition set");
        let c = condition(&got, "PodScheduled").unwrap();
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("SchedulerError"));
        assert!(
            c.message
                .as_deref()
                .is_some_and(|m| m.contains("backend unavailable")),
            "{c:?}"
        );
        s.shutdown().await;
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

#[tokio::test]
async fn partitions_split_the_pods_between_instances() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "64", json!({}))).unwrap();
    let mut ca = config();
    ca.partition.namespaces = vec!["spark".into()];
    ca.partition.pod_selector = Some("shard=a".into());
    let mut cb = config();
    cb.partition.pod_selector = Some("shard!=a".into());
    let a = started(&server, ca).await;
    let b = started(&server, cb).await;
    let labelled = |name: &str, ns: &str, shard: &str| {
        let mut p = pod(name, "spark-fleet", "1");
        p.metadata.namespace = Some(ns.into());
        p.metadata.labels = Some([("shard".to_owned(), shard.to_owned())].into());
        p
    };
    for i in 0..3 {
        server
            .create(&labelled(&format!("a{i}"), "spark", "a"))
            .unwrap();
        server
            .create(&labelled(&format!("b{i}"), "spark", "b"))
            .unwrap();
    }
    // In shard a's selector but outside its namespaces, and not b's: nobody's.
    server.create(&labelled("orphan", "other", "a")).unwrap();
    for i in 0..3 {
        within("bind a", wait_bound(&server, &format!("a{i}"))).await;
        within("bind b", wait_bound(&server, &format!("b{i}"))).await;
    }
    wait_until("binds counted", || a.binds() == 3 && b.binds() == 3).await;
    let orphan: Pod = server.get("other", "orphan").unwrap();
    assert_eq!(node_name(&orphan), None);
    assert!(!a.is_queued("other", "orphan") && !b.is_queued("other", "orphan"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn capacity_fallback_is_reported() {
    let server = TestApiServer::start().await;
    // The spot node is tainted: executors cannot follow their spot-only mix.
    let mut spot = node("spot1", "8", json!({"karpenter.sh/capacity-type": "spot"}));
    spot.spec = Some(
        serde_json::from_value(
            json!({"taints": [{"key": "spot", "value": "x", "effect": "NoSchedule"}]}),
        )
        .unwrap(),
    );
    server.create(&spot).unwrap();
    server
        .create(&node(
            "od1",
            "8",
            json!({"karpenter.sh/capacity-type": "on-demand"}),
        ))
        .unwrap();
    let mut c = with_plugin(config(), "CapacityMix", 10);
    c.spark.executor_capacity_mix = Some("spot=100".into());
    let s = started(&server, c).await;
    let mut exec = pod("exec-1", "spark-fleet", "1");
    exec.metadata.labels = Some(
        [
            ("spark-role".to_owned(), "executor".to_owned()),
            ("spark-app-selector".to_owned(), "app-1".to_owned()),
        ]
        .into(),
    );
    server.create(&exec).unwrap();
    assert_eq!(within("bind", wait_bound(&server, "exec-1")).await, "od1");
    wait_until("CapacityFallback event", || {
        !events(&server, "exec-1", "CapacityFallback").is_empty()
    })
    .await;
    let note = events(&server, "exec-1", "CapacityFallback")[0]["note"].clone();
    let note = note.as_str().unwrap();
    assert!(
        note.contains("on-demand") && note.contains("spot"),
        "{note}"
    );
    let (_, body) = http_get(s.metrics_addr(), "/metrics").await;
    let fallbacks = body
        .lines()
        .find(|l| l.starts_with("spark_fleet_capacity_fallbacks_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert!(fallbacks >= 1.0, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn default_preemption_end_to_end() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "4", json!({}))).unwrap();
    let c = with_plugin(config(), "DefaultPreemption", 0);
    let s = started(&server, c).await;
    let with_priority = |mut p: Pod, prio: i32| {
        p.spec.as_mut().unwrap().priority = Some(prio);
        p
    };
    server
        .create(&with_priority(pod("low", "spark-fleet", "3"), 0))
        .unwrap();
    within("bind low", wait_bound(&server, "low")).await;
    server
        .create(&with_priority(pod("high", "spark-fleet", "3"), 100))
        .unwrap();
    assert_eq!(within("bind high", wait_bound(&server, "high")).await, "n1");
    assert!(
        server.get::<Pod>("spark", "low").is_none(),
        "victim deleted"
    );
    wait_until("Preempted event", || {
        !events(&server, "low", "Preempted").is_empty()
    })
    .await;
    s.shutdown().await;
}

/// A pod nominated by an earlier preemption that preemption can no longer help
/// loses its nomination, in status.nominatedNodeName too (as upstream).
#[tokio::test]
async fn hopeless_preemptor_loses_its_nomination() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "4", json!({}))).unwrap();
    let c = with_plugin(config(), "DefaultPreemption", 0);
    // Nominated to n1 once, but now asking for more than n1 has at all.
    let mut p = pod("hopeless", "spark-fleet", "8");
    p.spec.as_mut().unwrap().priority = Some(100);
    p.status = Some(k8s_openapi::api::core::v1::PodStatus {
        nominated_node_name: Some("n1".into()),
        ..Default::default()
    });
    server.create(&p).unwrap();
    let nominated = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
    };
    assert_eq!(
        server
            .get::<Pod>("spark", "hopeless")
            .as_ref()
            .and_then(nominated),
        Some("n1".into()),
        "the test server keeps the status it is given"
    );
    let s = started(&server, c).await;
    let got = server
        .wait_for::<Pod>("spark", "hopeless", STEP, |p| {
            condition(p, "PodScheduled").is_some() && nominated(p).is_none()
        })
        .await
        .expect("nomination cleared and the pod reported");
    let c = condition(&got, "PodScheduled").unwrap();
    assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
    s.shutdown().await;
}

#[tokio::test]
async fn disruption_budgets_reach_the_snapshot() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "4", json!({}))).unwrap();
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": "drivers", "namespace": "spark" },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "spark-role": "driver" } } },
        "status": { "disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1,
                    "expectedPods": 1, "observedGeneration": 1 }
    }))
    .unwrap();
    server.create(&pdb).unwrap();
    let s = started(&server, config()).await;
    let names = || {
        s.with_snapshot(|snap| {
            snap.pdbs()
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        })
    };
    wait_until("pdb in snapshot", || names() == ["drivers"]).await;
    // Deleted while the watch was down and the log compacted: the re-list removes it.
    server.drop_watches();
    server
        .delete::<k8s_openapi::api::policy::v1::PodDisruptionBudget>("spark", "drivers")
        .unwrap();
    server.compact();
    wait_until("pdb gone", || names().is_empty()).await;
    s.shutdown().await;
}

#[tokio::test]
async fn shipped_default_profile_schedules_a_spark_app() {
    let server = TestApiServer::start().await;
    server
        .create(&node(
            "od1",
            "16",
            json!({"karpenter.sh/capacity-type": "on-demand", "topology.kubernetes.io/zone": "a"}),
        ))
        .unwrap();
    server
        .create(&node(
            "spot1",
            "16",
            json!({"karpenter.sh/capacity-type": "spot", "topology.kubernetes.io/zone": "a"}),
        ))
        .unwrap();
    let mut c = Config::default();
    c.leader_election.enabled = false;
    c.metrics.address = "127.0.0.1:0".into();
    c.queue.initial_backoff_seconds = 0.05;
    c.queue.max_backoff_seconds = 0.2;
    let s = started(&server, c).await;
    let spark = |name: &str, role: &str| {
        let mut p = pod(name, "spark-fleet", "1");
        p.metadata.labels = Some(
            [
                ("spark-role".to_owned(), role.to_owned()),
                ("spark-app-selector".to_owned(), "app-1".to_owned()),
            ]
            .into(),
        );
        p
    };
    server.create(&spark("driver", "driver")).unwrap();
    assert_eq!(
        within("bind driver", wait_bound(&server, "driver")).await,
        "od1"
    );
    for i in 0..3 {
        server
            .create(&spark(&format!("exec-{i}"), "executor"))
            .unwrap();
    }
    for i in 0..3 {
        within("bind executor", wait_bound(&server, &format!("exec-{i}"))).await;
    }
    s.shutdown().await;
}

#[tokio::test]
async fn run_with_a_kubeconfig_until_shutdown() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8", json!({}))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n\
             users:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\n",
            server.url()
        ),
    )
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(spark_fleet::kube::run(config(), Some(kubeconfig), async {
        let _ = rx.await;
    }));
    server.create(&pod("p", "spark-fleet", "1")).unwrap();
    within("bind", wait_bound(&server, "p")).await;
    tx.send(()).unwrap();
    within("run returns", running).await.unwrap().unwrap();

    let missing = dir.path().join("nope");
    let err = spark_fleet::kube::run(config(), Some(missing.clone()), async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
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
