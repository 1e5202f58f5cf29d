//! The capacity-mix scenario from the issue, from real Kubernetes YAML: 4 executors
//! on spot, 2 on on-demand, mix spot=40,on-demand=60 → the next one goes on-demand.

use k8s_openapi::api::core::v1 as core;
use serde::Deserialize;
use spark_fleet::config::{Config, SPARK_FLEET};
use spark_fleet::framework::{schedule, CycleOptions, Profile};
use spark_fleet::model::{node_from_k8s, pod_from_k8s, Pod};
use spark_fleet::plugins::{build_named_profile, capacity_fallback, mix_status};
use spark_fleet::snapshot::Snapshot;
use std::sync::Arc;

const FIXTURE: &str = "tests/fixtures/scenarios/capacity_mix_4_spot_2_on_demand.yaml";

#[derive(Deserialize)]
struct List {
    items: Vec<serde_json::Value>,
}

/// The shipped `spark-fleet` profile.
fn spark_profile(cfg: &Config) -> Profile {
    build_named_profile(cfg, SPARK_FLEET).unwrap()
}

/// Loads the fixture: nodes and bound pods into a snapshot, pending pods returned.
fn load(cfg: &Config) -> (Snapshot, Vec<Pod>) {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let list: List = serde_saphyr::from_str(&text).unwrap();
    let mut snap = Snapshot::new(cfg.capacity_types.clone());
    let mut pending = Vec::new();
    for item in list.items {
        match item["kind"].as_str() {
            Some("Node") => {
                let n: core::Node = serde_json::from_value(item).unwrap();
                snap.upsert_node(node_from_k8s(&n).unwrap());
            }
            Some("Pod") => {
                let p: core::Pod = serde_json::from_value(item).unwrap();
                let p = pod_from_k8s(&p, &()).unwrap();
                if p.node_name.is_some() {
                    snap.upsert_pod(Arc::new(p)).unwrap();
                } else {
                    pending.push(p);
                }
            }
            other => panic!("unexpected kind {other:?} in {FIXTURE}"),
        }
    }
    (snap, pending)
}

#[test]
fn next_executor_goes_on_demand() {
    let cfg = Config::default();
    let (mut snap, pending) = load(&cfg);
    assert_eq!(snap.nodes().len(), 4);
    let [next] = pending.as_slice() else {
        panic!("one pending executor expected, got {}", pending.len());
    };
    assert!(next.is_executor());

    let status = mix_status(&cfg, next, &snap).unwrap();
    assert_eq!(
        status.current,
        vec![("spot".to_string(), 4), ("on-demand".to_string(), 2)]
    );
    assert_eq!(status.next.as_deref(), Some("on-demand"));

    let profile = spark_profile(&cfg);
    let d = schedule(&profile, next, &mut snap, CycleOptions::default());
    let node = d.node.expect("schedulable");
    assert_eq!(
        snap.nodes().capacity_type[node as usize].as_str(),
        "on-demand"
    );
    assert_eq!(capacity_fallback(&cfg, next, &snap, node), None);
}
