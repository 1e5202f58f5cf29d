//! Soak: Spark applications' pods created, bound by the real scheduler and deleted,
//! round after round, against a real kube-apiserver and etcd (`testkit::control_plane`,
//! from `KUBEBUILDER_ASSETS`). After each round, when every pod of the round is bound
//! and then gone from the scheduler's snapshot, it prints this process's resident memory
//! and what the scheduler still holds per pod (`Scheduler::retained`). The API server
//! and etcd are other processes: the resident memory is the scheduler's (and this
//! driver's, which keeps nothing between rounds).
//!
//! ```sh
//! KUBEBUILDER_ASSETS=../shared/kube cargo bench --bench soak -- [--rounds 70] [--pods 300] [--nodes 50] [--qps Q]
//! ```
//!
//! Each round is one application: a driver and `pods - 1` executors, with Spark's labels
//! (`spark-app-selector` new for every application, `spark-exec-id`) and one label whose
//! value is new for every pod (as a StatefulSet's pod-name label). `--qps` sets the
//! scheduler's client rate limit (default: the product's default config).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use spark_fleet::config::Config;
use spark_fleet::kube::{Retained, Scheduler};
use spark_fleet::testkit::control_plane::{self, add_node, create_namespace, node, ControlPlane};
use std::time::{Duration, Instant};

/// Resident memory of this process in KiB (`/proc/self/statm`, 4 KiB pages).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// Entries left in every per-pod structure (0 when nothing is kept for a pod that is gone).
fn per_pod_entries(r: &Retained) -> usize {
    let s = &r.snapshot;
    r.queue
        + r.pods
        + r.reported
        + r.scheduled_false
        + r.status_patches
        + r.recent_events
        + r.admissions
        + s.pods
        + s.label_index
        + s.namespace_index
        + s.with_pod_affinity
        + s.apps
        + s.app_tallies
        + s.orphans
        + s.nominated
        + s.nominated_on
        + s.claim_users
        + s.volume_reservations
}

fn executor(app: &str, round: usize, i: usize) -> Result<Pod, serde_json::Error> {
    let role = if i == 0 { "driver" } else { "executor" };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{app}-{role}-{i}"),
            "labels": {
                "spark-role": role,
                "spark-app-selector": app,
                "spark-exec-id": i.to_string(),
                "soak-round": round.to_string(),
                "soak-pod": format!("{:032x}", rand::random::<u128>()),
            },
        },
        "spec": {
            "schedulerName": "spark-fleet",
            "containers": [{"name": "spark", "image": "spark:3.5",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
        },
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = arg("--rounds").unwrap_or(70);
    let per_round: usize = arg("--pods").unwrap_or(300);
    let nodes: usize = arg("--nodes").unwrap_or(50);
    if let Err(why) = control_plane::assets() {
        println!("soak did not run: needs a real control plane: {why}");
        return Ok(());
    }
    let cp = ControlPlane::start().await?;
    let client = cp.client();
    create_namespace(&client, "soak").await?;
    for i in 0..nodes {
        let name = format!("soak-node-{i}");
        let ty = if i % 5 < 2 { "spot" } else { "on-demand" };
        let zone = format!("zone-{}", i % 3);
        let labels = [
            ("kubernetes.io/hostname", name.as_str()),
            ("topology.kubernetes.io/zone", zone.as_str()),
            ("karpenter.sh/capacity-type", ty),
        ];
        add_node(&client, &node(&name, "64", "256Gi", 110, &labels)).await?;
    }

    let mut config = Config::default();
    config.leader_election.lease_namespace = Some("kube-system".into());
    config.metrics.address = "127.0.0.1:0".into();
    if let Some(qps) = arg::<f64>("--qps") {
        config.client.qps = qps;
        config.client.burst = qps.max(1.0) as u32;
    }
    let scheduler = Scheduler::start(client.clone(), config).await?;
    let ready = Instant::now() + Duration::from_secs(60);
    while !(scheduler.is_ready() && scheduler.is_leader()) {
        anyhow::ensure!(Instant::now() < ready, "the scheduler did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), "soak");
    println!("round,pods_so_far,rss_kib,seconds,interned_strings,per_pod_entries_left");
    let r = scheduler.retained();
    println!(
        "0,0,{},0.0,{},{}",
        rss_kib(),
        r.interned_strings,
        per_pod_entries(&r)
    );
    let start = Instant::now();
    for round in 1..=rounds {
        let app = format!("spark-{:032x}", rand::random::<u128>());
        let binds_before = scheduler.binds();
        for i in 0..per_round {
            pods.create(&PostParams::default(), &executor(&app, round, i)?)
                .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        while scheduler.binds() < binds_before + per_round as u64 {
            anyhow::ensure!(Instant::now() < deadline, "round {round}: not all bound");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let this_round = ListParams::default().labels(&format!("soak-round={round}"));
        pods.delete_collection(&DeleteParams::default().grace_period(0), &this_round)
            .await?;
        while scheduler.with_snapshot(|s| s.pod_count()) > 0 || scheduler.retained().pods > 0 {
            anyhow::ensure!(Instant::now() < deadline, "round {round}: not all deleted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = scheduler.retained();
        println!(
            "{round},{},{},{:.1},{},{}",
            round * per_round,
            rss_kib(),
            start.elapsed().as_secs_f64(),
            r.interned_strings,
            per_pod_entries(&r),
        );
    }
    if std::env::var_os("SOAK_EXIT_LIVE").is_some() {
        // Leave everything allocated, so a heap profiler reports what is live at the end.
        std::process::exit(0);
    }
    scheduler.shutdown().await;
    Ok(())
}
