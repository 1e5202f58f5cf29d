//! A stand-in for the PV controller and a CSI provisioner, through the kube
//! client, for tests whose API server runs no controllers. It does what they
//! do for the scheduler's two handshakes:
//!
//! - a claim annotated `volume.kubernetes.io/selected-node` (dynamic
//!   provisioning) gets a new volume in that node's zone, bound to it; with
//!   `fail_first`, the first such claim instead has its annotation removed, as
//!   a provisioner that failed does;
//! - a volume whose `claimRef` names an unbound claim (static binding) binds
//!   the claim to it.
//!
//! Included with `#[path]` by the live volume tests.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use serde_json::Value;
use spark_fleet::config::{Config, PluginEntry, ProfileConfig};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const EBS: &str = "ebs.csi.aws.com";

// ---- objects -------------------------------------------------------------------

/// The filters that decide here, the volume plugins among them, and a
/// scorer that prefers `zone-a` (so a volume in zone-b must win against it).
pub fn volume_config() -> Config {
    let mut c = Config::default();
    let plugins = [
        ("NodeUnschedulable", 0),
        ("NodeName", 0),
        ("NodeAffinity", 1),
        ("NodeResourcesFit", 1),
        ("VolumeRestrictions", 0),
        ("NodeVolumeLimits", 0),
        ("VolumeBinding", 0),
        ("VolumeZone", 0),
        ("DefaultPreemption", 0),
    ];
    c.profiles.push(ProfileConfig {
        name: "live-volumes".into(),
        plugins: plugins
            .iter()
            .map(|(n, w)| PluginEntry {
                name: (*n).into(),
                weight: *w,
            })
            .collect(),
        plugin_args: Default::default(),
        percentage_of_nodes_to_score: 0,
    });
    c.default_profile = "live-volumes".into();
    c.leader_election.enabled = false;
    c.metrics.address = "127.0.0.1:0".into();
    c.queue.initial_backoff_seconds = 0.05;
    c.queue.max_backoff_seconds = 0.2;
    c.bind.concurrency = 4;
    c
}

pub fn node_in_zone(name: &str, zone: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": { ZONE: zone, "kubernetes.io/hostname": name } },
        "status": { "allocatable": { "cpu": "16", "memory": "64Gi", "pods": "110" } },
    }))
    .unwrap()
}

/// An executor mounting `claims` (Spark's OnDemand claims are `<pod>-pvc-N`).
pub fn executor(name: &str, claims: &[&str], preferred_zone: Option<&str>) -> Pod {
    let volumes: Vec<Value> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"name": format!("spark-local-dir-{i}"), "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    let mut spec = json!({
        "schedulerName": "spark-fleet",
        "containers": [{ "name": "spark-kubernetes-executor", "image": "spark:3.5",
                         "resources": { "requests": { "cpu": "1", "memory": "4Gi" } } }],
        "volumes": volumes,
    });
    if let Some(z) = preferred_zone {
        spec["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [{"key": ZONE, "operator": "In", "values": [z]}]}}
        ]}});
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "spark",
                      "labels": {"spark-role": "executor", "spark-app-selector": "app-1"} },
        "spec": spec,
    }))
    .unwrap()
}

pub fn claim(name: &str, class: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    let mut c = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": name, "namespace": "spark" },
        "spec": { "storageClassName": class, "accessModes": ["ReadWriteOnce"],
                  "resources": { "requests": { "storage": "100Gi" } } },
    });
    if let Some(v) = volume {
        c["spec"]["volumeName"] = json!(v);
        c["metadata"]["annotations"] = json!({"pv.kubernetes.io/bind-completed": "yes"});
        c["status"] = json!({"phase": "Bound"});
    }
    serde_json::from_value(c).unwrap()
}

pub fn class(name: &str, provisioner: &str) -> StorageClass {
    serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": name },
        "provisioner": provisioner,
        "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .unwrap()
}

/// A volume in `zone`, bound to `claim` when given, else available.
pub fn volume(name: &str, class: &str, zone: &str, claim: Option<&str>) -> PersistentVolume {
    let mut v = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": name },
        "spec": {
            "capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "csi": {"driver": EBS, "volumeHandle": format!("vol-{name}")},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": ZONE, "operator": "In", "values": [zone]}]}
            ]}},
        },
        "status": {"phase": "Available"},
    });
    if let Some(c) = claim {
        v["spec"]["claimRef"] = json!({"namespace": "spark", "name": c, "uid": format!("uid-{c}")});
        v["status"]["phase"] = json!("Bound");
    }
    serde_json::from_value(v).unwrap()
}

pub fn csi_node(node: &str, count: i32) -> CSINode {
    serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
        "metadata": { "name": node },
        "spec": {"drivers": [{"name": EBS, "nodeID": node, "allocatable": {"count": count}}]},
    }))
    .unwrap()
}

// ---- the stand-in -----------------------------------------------------------------

/// What the stand-in did, for the tests to check.
#[derive(Default)]
pub struct Counts {
    pub provisioned: AtomicUsize,
    pub refused: AtomicUsize,
    pub bound_static: AtomicUsize,
}

/// Runs until the returned handle is aborted.
pub fn spawn(
    client: kube::Client,
    namespace: &str,
    driver: &str,
    fail_first: bool,
) -> (tokio::task::JoinHandle<()>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let (ns, driver) = (namespace.to_owned(), driver.to_owned());
    let task = tokio::spawn(async move {
        let mut refused: HashSet<String> = HashSet::new();
        let mut fail_next = fail_first;
        loop {
            if let Err(e) = step(&client, &ns, &driver, &mut fail_next, &mut refused, &c).await {
                eprintln!("volume controller: {e}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (task, counts)
}

async fn step(
    client: &kube::Client,
    ns: &str,
    driver: &str,
    fail_next: &mut bool,
    refused: &mut HashSet<String>,
    counts: &Counts,
) -> Result<(), kube::Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let pp = PatchParams::default();
    for pvc in claims.list(&ListParams::default()).await? {
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let spec = pvc.spec.clone().unwrap_or_default();
        if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
            continue;
        }
        let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
        let uid = pvc.metadata.uid.clone().unwrap_or_default();
        if let Some(node) = annotations.get(SELECTED_NODE) {
            if *fail_next && refused.insert(name.clone()) {
                *fail_next = false;
                // Counted first: the scheduler may act on the write before this task resumes.
                counts.refused.fetch_add(1, Ordering::SeqCst);
                let patch = json!({"metadata": {"annotations": {SELECTED_NODE: null}}});
                claims.patch(&name, &pp, &Patch::Merge(&patch)).await?;
                continue;
            }
            let zone = nodes
                .get(node)
                .await?
                .metadata
                .labels
                .unwrap_or_default()
                .get(ZONE)
                .cloned()
                .unwrap_or_default();
            let size = spec
                .resources
                .and_then(|r| r.requests)
                .and_then(|r| r.get("storage").map(|q| q.0.clone()))
                .unwrap_or_else(|| "1Gi".into());
            let pv_name = format!("pvc-{uid}");
            let pv: PersistentVolume = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": driver}},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": spec.storage_class_name,
                    "persistentVolumeReclaimPolicy": "Delete",
                    "csi": {"driver": driver, "volumeHandle": format!("vol-{uid}")},
                    "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                 "namespace": ns, "name": name, "uid": uid},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": ZONE, "operator": "In", "values": [zone]}]}
                    ]}},
                },
            }))
            .expect("a valid PersistentVolume");
            match volumes.create(&PostParams::default(), &pv).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e),
            }
            counts.provisioned.fetch_add(1, Ordering::SeqCst);
            bind(&claims, &volumes, &name, &pv_name).await?;
            continue;
        }
        // Static binding: a volume the scheduler pre-bound to this claim.
        for pv in volumes.list(&ListParams::default()).await? {
            let bound_here = pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_some_and(|r| {
                    r.name.as_deref() == Some(&name) && r.namespace.as_deref() == Some(ns)
                });
            if bound_here {
                let pv_name = pv.metadata.name.clone().unwrap_or_default();
                counts.bound_static.fetch_add(1, Ordering::SeqCst);
                bind(&claims, &volumes, &name, &pv_name).await?;
                break;
            }
        }
    }
    Ok(())
}

/// The PV controller's part: claim and volume both say Bound.
async fn bind(
    claims: &Api<PersistentVolumeClaim>,
    volumes: &Api<PersistentVolume>,
    claim: &str,
    volume: &str,
) -> Result<(), kube::Error> {
    let pp = PatchParams::default();
    let phase = json!({"status": {"phase": "Bound"}});
    volumes
        .patch_status(volume, &pp, &Patch::Merge(&phase))
        .await?;
    let patch = json!({
        "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                     "pv.kubernetes.io/bound-by-controller": "yes"}},
        "spec": {"volumeName": volume},
    });
    claims.patch(claim, &pp, &Patch::Merge(&patch)).await?;
    claims
        .patch_status(claim, &pp, &Patch::Merge(&phase))
        .await?;
    Ok(())
}
