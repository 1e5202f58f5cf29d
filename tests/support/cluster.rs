//! Helpers for tests of the live scheduler against the real control plane
//! (`spark_fleet::testkit::control_plane`).
// Each test binary that includes this file uses only part of it.
#![allow(dead_code)]

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use spark_fleet::config::{Config, PluginEntry};
use spark_fleet::kube::Scheduler;
use spark_fleet::model::Quantity;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// One step of a test (a bind, a condition) gets this long on the real server.
pub const STEP: Duration = Duration::from_secs(20);

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Polls `cond` (synchronous) every 20 ms for up to [`STEP`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A profile of plugins available in every build, for outcomes that do not depend on
/// others' work; no leader election, metrics on a free port, short backoffs.
pub fn config() -> Config {
    fast(spark_fleet::testkit::live_test_config())
}

/// `c` without leader election, with metrics on a free port and short backoffs.
pub fn fast(mut c: Config) -> Config {
    c.leader_election.enabled = false;
    c.metrics.address = "127.0.0.1:0".into();
    c.queue.initial_backoff_seconds = 0.05;
    c.queue.max_backoff_seconds = 0.5;
    c
}

/// The test profile with one more plugin.
pub fn with_plugin(mut c: Config, name: &str, weight: i64) -> Config {
    if let Some(profile) = c.profiles.iter_mut().find(|p| p.name == "live-test") {
        profile.plugins.push(PluginEntry {
            name: name.into(),
            weight,
        });
    }
    c
}

/// Leader election on, in `kube-system`, with a 3 s lease.
pub fn with_leader_election(mut c: Config) -> Config {
    c.leader_election.enabled = true;
    c.leader_election.lease_namespace = Some("kube-system".into());
    c.leader_election.lease_duration_seconds = 3.0;
    c.leader_election.renew_deadline_seconds = 2.0;
    c.leader_election.retry_period_seconds = 0.1;
    c
}

/// A pod of `scheduler` in `namespace` requesting `cpu` and `memory`.
pub fn pod(namespace: &str, name: &str, scheduler: &str, cpu: &str, memory: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "schedulerName": scheduler,
            "containers": [{ "name": "main", "image": "spark:3.5",
                             "resources": { "requests": { "cpu": cpu, "memory": memory } } }],
        },
    }))
    .unwrap()
}

/// A Spark pod (`spark-role`, `spark-app-selector`) of spark-fleet.
pub fn spark_pod(namespace: &str, name: &str, role: &str, app: &str, cpu: &str) -> Pod {
    let mut p = pod(namespace, name, "spark-fleet", cpu, "1Gi");
    p.metadata.labels = Some(
        [
            ("spark-role".to_owned(), role.to_owned()),
            ("spark-app-selector".to_owned(), app.to_owned()),
        ]
        .into(),
    );
    p
}

/// Creates `pods`, `parallel` requests at a time.
pub async fn create_pods(client: &Client, pods: Vec<Pod>, parallel: usize) {
    futures::stream::iter(pods)
        .map(|p| {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap());
            async move { api.create(&PostParams::default(), &p).await.map(|_| ()) }
        })
        .buffer_unordered(parallel)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
}

pub fn node_name(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

pub fn condition<'a>(p: &'a Pod, ty: &str) -> Option<&'a PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

/// Waits until pod `namespace/name` is bound; returns its node.
pub async fn wait_bound(client: &Client, namespace: &str, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let p =
        spark_fleet::testkit::control_plane::wait_for(&api, name, STEP, |p| node_name(p).is_some())
            .await
            .unwrap_or_else(|| panic!("pod {namespace}/{name} was not bound"));
    node_name(&p).unwrap()
}

/// Waits until pod `namespace/name` satisfies `cond`.
pub async fn wait_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    cond: impl FnMut(&Pod) -> bool,
) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    spark_fleet::testkit::control_plane::wait_for(&api, name, STEP, cond)
        .await
        .unwrap_or_else(|| panic!("pod {namespace}/{name}: {what}"))
}

/// Every pod of a namespace (retrying while the server restarts).
pub async fn list_pods(client: &Client, namespace: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for _ in 0..200 {
        if let Ok(l) = api.list(&ListParams::default()).await {
            return l.items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot list pods in {namespace}");
}

/// events.k8s.io/v1 events (as JSON) about pod `namespace/name` with `reason`.
pub async fn events(client: &Client, namespace: &str, pod: &str, reason: &str) -> Vec<Value> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().fields(&format!("regarding.name={pod}"));
    match api.list(&lp).await {
        Ok(l) => l
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| serde_json::to_value(e).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until pod `namespace/name` has an events.k8s.io/v1 event with `reason`.
pub async fn wait_event(client: &Client, namespace: &str, pod: &str, reason: &str) -> Value {
    for _ in 0..(STEP.as_millis() / 100) {
        if let Some(e) = events(client, namespace, pod, reason)
            .await
            .into_iter()
            .next()
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {reason} event for {namespace}/{pod}");
}

/// Starts a scheduler and waits until its caches are synced. With `RUST_LOG` set, its
/// log goes to stderr.
pub async fn started(client: &Client, c: Config) -> Scheduler {
    if std::env::var_os("RUST_LOG").is_some() {
        spark_fleet::kube::init_logging(spark_fleet::config::LogFormat::Text);
    }
    let s = within("start", Scheduler::start(client.clone(), c))
        .await
        .unwrap();
    wait_until("synced", || s.is_ready()).await;
    s
}

/// Per node: pods bound there, and whether they fit its allocatable cpu, memory and
/// pod count. Returns the nodes over any of them, with what they hold.
pub async fn over_committed(client: &Client) -> Vec<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = nodes.list(&ListParams::default()).await.unwrap().items;
    let pods: Api<Pod> = Api::all(client.clone());
    let pods = pods.list(&ListParams::default()).await.unwrap().items;
    let mut held: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for p in &pods {
        let Some(n) = node_name(p) else { continue };
        let (mut cpu, mut mem) = (0, 0);
        for c in &p.spec.as_ref().unwrap().containers {
            if let Some(r) = c.resources.as_ref().and_then(|r| r.requests.as_ref()) {
                cpu += r.get("cpu").map_or(0, |q| milli(&q.0));
                mem += r.get("memory").map_or(0, |q| milli(&q.0) / 1000);
            }
        }
        let e = held.entry(n).or_default();
        e.0 += 1;
        e.1 += cpu;
        e.2 += mem;
    }
    let mut over = Vec::new();
    for n in &nodes {
        let name = n.metadata.name.clone().unwrap();
        let alloc = n.status.as_ref().unwrap().allocatable.clone().unwrap();
        let cap = (
            alloc.get("pods").map_or(0, |q| milli(&q.0) / 1000),
            alloc.get("cpu").map_or(0, |q| milli(&q.0)),
            alloc.get("memory").map_or(0, |q| milli(&q.0) / 1000),
        );
        let h = held.get(&name).copied().unwrap_or_default();
        if h.0 > cap.0 || h.1 > cap.1 || h.2 > cap.2 {
            over.push(format!(
                "{name}: {} pods / {} allowed, {}m cpu / {}m, {} B memory / {} B",
                h.0, cap.0, h.1, cap.1, h.2, cap.2
            ));
        }
    }
    over
}

/// A quantity in thousandths (cpu: millicores; counts and bytes: ×1000).
fn milli(q: &str) -> i64 {
    Quantity::parse(q)
        .map(|v| v.milli_value())
        .unwrap_or_else(|e| panic!("quantity {q}: {e}"))
}
