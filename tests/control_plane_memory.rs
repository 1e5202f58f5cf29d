//! Memory bounded by what is alive, on a real kube-apiserver and etcd: Spark pods
//! created, bound (or reported unschedulable, or bound by someone else to a node the
//! scheduler has not seen) and deleted, round after round, leave nothing behind in the
//! scheduler, and the strings it interned stay as many as after the first round. Memory
//! figures are the soak benchmark's (`benches/soak.rs`); this test counts entries only.
//! Needs `KUBEBUILDER_ASSETS` (see README); without it the test says so and passes.
//!
//! One test in this binary: the interned-string count is process-wide.

#[path = "support/cluster.rs"]
mod cluster;

use cluster::*;
use k8s_openapi::api::core::v1::Pod;
use spark_fleet::config::Config;
use spark_fleet::kube::{Retained, Scheduler};
use spark_fleet::testkit::control_plane::{
    add_node, create_namespace, delete_pods_now, node, start_or_skip,
};

const NS: &str = "spark";

/// The round's pods: one application (a driver, executors each with a label value of
/// its own), a pod asking for more than any node has, and a pod bound by someone else
/// to a node the cluster does not have.
fn round_pods(round: usize) -> Vec<Pod> {
    let app = format!("spark-app-{round}-{:x}", rand::random::<u64>());
    let mut pods = vec![spark_pod(
        NS,
        &format!("r{round}-driver"),
        "driver",
        &app,
        "100m",
    )];
    for i in 0..19 {
        let mut p = spark_pod(NS, &format!("r{round}-exec-{i}"), "executor", &app, "100m");
        let labels = p.metadata.labels.get_or_insert_with(Default::default);
        labels.insert("spark-exec-id".into(), i.to_string());
        labels.insert(
            "pod-unique".into(),
            format!("{round}-{i}-{:x}", rand::random::<u64>()),
        );
        pods.push(p);
    }
    pods.push(pod(
        NS,
        &format!("r{round}-too-big"),
        "spark-fleet",
        "1000",
        "1Gi",
    ));
    let mut elsewhere = pod(
        NS,
        &format!("r{round}-elsewhere"),
        "other-scheduler",
        "100m",
        "1Gi",
    );
    if let Some(spec) = elsewhere.spec.as_mut() {
        spec.node_name = Some(format!("gone-node-{round}"));
    }
    pods.push(elsewhere);
    pods
}

fn per_pod_entries(r: &Retained) -> Vec<(&'static str, usize)> {
    let s = &r.snapshot;
    vec![
        ("queue", r.queue),
        ("pods", r.pods),
        ("reported", r.reported),
        ("scheduled_false", r.scheduled_false),
        ("status_patches", r.status_patches),
        ("recent_events", r.recent_events),
        ("admissions", r.admissions),
        ("snapshot.pods", s.pods),
        ("snapshot.label_index", s.label_index),
        ("snapshot.namespace_index", s.namespace_index),
        ("snapshot.with_pod_affinity", s.with_pod_affinity),
        ("snapshot.apps", s.apps),
        ("snapshot.app_tallies", s.app_tallies),
        ("snapshot.orphans", s.orphans),
        ("snapshot.nominated", s.nominated),
        ("snapshot.nominated_on", s.nominated_on),
        ("snapshot.claim_users", s.claim_users),
        ("snapshot.volume_reservations", s.volume_reservations),
    ]
}

fn left(s: &Scheduler) -> Vec<(&'static str, usize)> {
    per_pod_entries(&s.retained())
        .into_iter()
        .filter(|e| e.1 > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pods_leave_nothing_behind() {
    let Some(cp) = start_or_skip("deleted_pods_leave_nothing_behind").await else {
        return;
    };
    let client = cp.client();
    create_namespace(&client, NS).await.unwrap();
    for (i, ty) in ["spot", "on-demand", "on-demand"].iter().enumerate() {
        let name = format!("n{i}");
        let labels = [
            ("kubernetes.io/hostname", name.as_str()),
            ("karpenter.sh/capacity-type", *ty),
        ];
        add_node(&client, &node(&name, "16", "64Gi", 110, &labels))
            .await
            .unwrap();
    }
    // The product's profile (every plugin), as users run it.
    let s = started(&client, fast(Config::default())).await;
    let mut interned_after_first = None;
    for round in 0..3 {
        let pods = round_pods(round);
        let names: Vec<String> = pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        create_pods(&client, pods, 8).await;
        for name in names
            .iter()
            .filter(|n| n.contains("driver") || n.contains("exec"))
        {
            wait_bound(&client, NS, name).await;
        }
        let too_big = format!("r{round}-too-big");
        wait_event(&client, NS, &too_big, "FailedScheduling").await;
        wait_until("the orphan and the binds seen", || {
            let r = s.retained();
            r.snapshot.orphans == 1 && r.reported == 1 && r.snapshot.pods == 20
        })
        .await;
        wait_until("events kept for series", || s.retained().recent_events > 0).await;

        delete_pods_now(&client, NS).await.unwrap();
        let settled = tokio::time::timeout(STEP, async {
            while !left(&s).is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            settled.is_ok(),
            "round {round}: entries left for deleted pods: {:?}",
            left(&s)
        );
        let interned = s.retained().interned_strings;
        match interned_after_first {
            None => interned_after_first = Some(interned),
            Some(first) => assert_eq!(
                interned, first,
                "round {round}: strings interned after the pods went, against round 0"
            ),
        }
    }
    s.shutdown().await;
}
