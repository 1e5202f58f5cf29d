//! The live scheduler against a real kube-apiserver and etcd that fail mid-burst:
//! no pod lost, none bound twice, no node over its allocatable resources or pod count.
//! Needs `KUBEBUILDER_ASSETS` (see README); without it each test says so and passes.

#[path = "support/cluster.rs"]
mod cluster;

use cluster::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use spark_fleet::config::Config;
use spark_fleet::kube::Scheduler;
use spark_fleet::testkit::control_plane::{
    add_node, create_namespace, node, start_or_skip, ControlPlane,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NODES: usize = 100;
const PODS: usize = 1500;

/// 100 nodes (cpu 16, memory 64Gi, pods 110), 1,500 pending pods of 100m / 128Mi in
/// namespace `burst`, and a scheduler with the shipped profile (it packs nodes to
/// their pod count, where an over-commit shows) started on them.
async fn burst(cp: &ControlPlane) -> Scheduler {
    let client = cp.client();
    create_namespace(&client, "burst").await.unwrap();
    futures::stream::iter(0..NODES)
        .map(|i| {
            let client = client.clone();
            async move { add_node(&client, &node(&format!("n{i:03}"), "16", "64Gi", 110, &[])).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let pods = (0..PODS)
        .map(|i| pod("burst", &format!("p{i:04}"), "spark-fleet", "100m", "128Mi"))
        .collect();
    create_pods(&client, pods, 32).await;
    let mut c = fast(Config::default());
    c.client.qps = 500.0;
    c.client.burst = 500;
    started(&client, c).await
}

/// Waits (up to `limit`) until every pod of `burst` is bound; returns how many are not.
async fn wait_all_bound(cp: &ControlPlane, limit: Duration) -> usize {
    let t = Instant::now();
    loop {
        let pods = list_pods(&cp.client(), "burst").await;
        let unbound = pods.iter().filter(|p| node_name(p).is_none()).count();
        if unbound == 0 || t.elapsed() > limit {
            return unbound;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a test expects after the burst: every pod bound, no node over anything.
async fn check_outcome(cp: &ControlPlane, s: &Scheduler) {
    let unbound = wait_all_bound(cp, Duration::from_secs(120)).await;
    let pods: Vec<Pod> = list_pods(&cp.client(), "burst").await;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        if let Some(n) = node_name(p) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let fullest = per_node.values().max().copied().unwrap_or(0);
    eprintln!(
        "{} pods, {unbound} unbound, {} nodes used, at most {fullest} pods on one node; {} bound by this instance",
        pods.len(),
        per_node.len(),
        s.binds()
    );
    let over = over_committed(&cp.client()).await;
    assert!(
        over.is_empty(),
        "over-committed nodes:\n{}",
        over.join("\n")
    );
    assert_eq!(unbound, 0, "pods left unbound");
}

/// kube-apiserver SIGKILLed after ~350 bindings and started again 3 s later: bindings
/// in flight fail with transport errors, some of them committed before the process
/// died. None of those may free its node's room until the pod is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_sigkill_mid_burst_overcommits_no_node() {
    let Some(mut cp) = start_or_skip("apiserver_sigkill_mid_burst_overcommits_no_node").await
    else {
        return;
    };
    let s = burst(&cp).await;
    within("350 bound", async {
        while s.binds() < 350 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    cp.kill_apiserver();
    eprintln!("kube-apiserver killed at {} bindings", s.binds());
    tokio::time::sleep(Duration::from_secs(3)).await;
    cp.restart_apiserver().await.unwrap();
    check_outcome(&cp, &s).await;
    s.shutdown().await;
}

/// etcd SIGKILLed after ~450 bindings and started again 5 s later: the API server
/// answers bindings meanwhile with errors (409 `rpc error: code = Unavailable`, 500,
/// timeouts). A pod leaves the queue only when the server shows it bound or deleted,
/// so every pod ends bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_sigkill_mid_burst_loses_no_pod() {
    let Some(mut cp) = start_or_skip("etcd_sigkill_mid_burst_loses_no_pod").await else {
        return;
    };
    let s = burst(&cp).await;
    within("450 bound", async {
        while s.binds() < 450 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    cp.kill_etcd();
    eprintln!("etcd killed at {} bindings", s.binds());
    tokio::time::sleep(Duration::from_secs(5)).await;
    cp.restart_etcd().await.unwrap();
    check_outcome(&cp, &s).await;
    s.shutdown().await;
}
