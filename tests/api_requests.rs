//! The requests the live scheduler sends when it is busy: how many at once, in what
//! order, and how it meets an API server that sheds load (`429 TooManyRequests` with
//! `Retry-After`, as API Priority and Fairness answers when the scheduler's priority level
//! is saturated). Against the in-repo API server, which can delay any request and answer
//! 429 on demand (the real one sheds load only when it is overloaded).

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use spark_fleet::config::Config;
use spark_fleet::kube::Scheduler;
use support::apiserver::{RequestRecord, TestApiServer};

const STEP: Duration = Duration::from_secs(15);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// The defaults, but for what a test must not wait for.
fn config() -> Config {
    let mut c = Config::default();
    c.leader_election.enabled = false;
    c.metrics.address = "127.0.0.1:0".into();
    c.queue.initial_backoff_seconds = 0.05;
    c.queue.max_backoff_seconds = 0.2;
    c
}

fn node(name: &str, cpu: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name },
        "status": { "allocatable": { "cpu": cpu, "memory": "256Gi", "pods": "110" } },
    }))
    .unwrap()
}

fn pod(name: &str, cpu: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "spark" },
        "spec": {
            "schedulerName": "spark-fleet",
            "containers": [{ "name": "main", "image": "spark:3.5",
                             "resources": { "requests": { "cpu": cpu, "memory": "1Gi" } } }],
        },
    }))
    .unwrap()
}

async fn started(server: &TestApiServer, c: Config) -> Scheduler {
    let s = within("start", Scheduler::start(server.client(), c))
        .await
        .unwrap();
    wait_until("synced", || s.is_ready()).await;
    s
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

async fn wait_bound(server: &TestApiServer, name: &str) {
    let bound = server
        .wait_for::<Pod>("spark", name, STEP, |p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
        })
        .await;
    assert!(bound.is_some(), "pod {name} was not bound");
}

/// Requests with this method whose path contains `path`, in the order answered.
fn requests(server: &TestApiServer, method: &str, path: &str) -> Vec<RequestRecord> {
    server
        .request_log()
        .into_iter()
        .filter(|r| r.method == method && r.path.contains(path))
        .collect()
}

/// The most of these requests the server was serving at one time.
fn most_at_once(rs: &[RequestRecord]) -> usize {
    rs.iter()
        .map(|r| {
            rs.iter()
                .filter(|o| o.received <= r.received && r.received < o.at)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A binding answered 429 with `Retry-After: 2` is sent again, once, no sooner than two
/// seconds later. Run as `spark-fleet run --kubeconfig` runs, so the client is the one
/// the binary builds.
#[tokio::test]
async fn a_throttled_binding_is_sent_again_after_retry_after() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "64")).unwrap();
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
    server.throttle_next("POST", "/pods/p/binding", 2, 1);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(spark_fleet::kube::run(config(), Some(kubeconfig), async {
        let _ = rx.await;
    }));
    server.create(&pod("p", "1")).unwrap();
    wait_bound(&server, "p").await;
    let tries = requests(&server, "POST", "/pods/p/binding");
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!((tries[0].status, tries[1].status), (429, 201));
    let waited = tries[1].received.duration_since(tries[0].at);
    assert!(
        waited >= Duration::from_millis(1950),
        "sent again after {waited:?}"
    );
    tx.send(()).unwrap();
    within("run returns", running).await.unwrap().unwrap();
}

/// Events go out one at a time, behind the bindings: a slow event API holds up neither
/// the bindings nor the other events' order.
#[tokio::test]
async fn events_are_sent_one_at_a_time_behind_the_bindings() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "64")).unwrap();
    let s = started(&server, config()).await;
    let n = 4;
    server.delay_next("POST", "/events", Duration::from_millis(300), n);
    for i in 0..n {
        server.create(&pod(&format!("p{i}"), "1")).unwrap();
    }
    for i in 0..n {
        wait_bound(&server, &format!("p{i}")).await;
    }
    wait_until("every Scheduled event", || {
        requests(&server, "POST", "/events").len() == n
    })
    .await;
    let events = requests(&server, "POST", "/events");
    assert_eq!(most_at_once(&events), 1, "{events:#?}");
    let bindings = requests(&server, "POST", "/binding");
    let last_binding = bindings.iter().map(|r| r.at).max().unwrap();
    assert!(
        last_binding < events[1].at,
        "bindings waited for the events: {bindings:#?} {events:#?}"
    );
    s.shutdown().await;
}

/// Status patches for a burst of unschedulable pods go out at most
/// `REPORTS_IN_FLIGHT` (8) at a time, whatever the rate limit allows, and each pod is
/// still reported.
#[tokio::test]
async fn status_patches_are_bounded_in_flight() {
    let server = TestApiServer::start().await;
    server.create(&node("n1", "8")).unwrap();
    let s = started(&server, config()).await;
    let n = 20;
    server.delay_next("PATCH", "/status", Duration::from_millis(300), n);
    let t0 = Instant::now();
    for i in 0..n {
        server.create(&pod(&format!("big{i}"), "100")).unwrap();
    }
    wait_until("every pod reported", || {
        requests(&server, "PATCH", "/status").len() >= n
    })
    .await;
    let patches = requests(&server, "PATCH", "/status");
    let most = most_at_once(&patches);
    assert!((2..=8).contains(&most), "{most} at once");
    // 20 patches of 300 ms, 8 at a time: at least three rounds.
    assert!(t0.elapsed() >= Duration::from_millis(900));
    s.shutdown().await;
}
