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

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const ZONE: &str = "topology.kubernetes.io/zone";

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
