//! PreBind for VolumeBinding, between assume and bind (upstream's binder
//! `BindPodVolumes`): the volume choices Reserve assumed for a pod
//! (`snapshot::Reservation`) are written through the API — each static volume
//! pre-bound to its claim (`spec.claimRef`), each claim to provision annotated
//! with the chosen node (`volume.kubernetes.io/selected-node`) — and the task
//! waits until every claim is bound, as the PV controller and the provisioner
//! report it, for at most `bindTimeoutSeconds`. It runs in the pod's binding
//! task, without a bind slot while it waits, so the scheduling loop and other
//! bindings go on.
//!
//! Writes are merge patches carrying the object's `resourceVersion`, so an
//! object changed since it was read is refused (409), as upstream's updates
//! are. Nothing written is undone on failure: the PV controller and
//! provisioner clear what they cannot honour (a provisioner removes the
//! selected node when provisioning fails), as upstream relies on.

use super::Shared;
use crate::model::{Claim, PersistentVolume, Pod, Sym, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE};
use crate::snapshot::Reservation;
use k8s_openapi::api::core::v1::{PersistentVolume as K8sVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// An API write that hangs this long counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the claims are looked at without a watch event (upstream polls every second).
const POLL: Duration = Duration::from_secs(1);
/// Upstream's words when the pod was deleted while its volumes were bound.
const POD_GONE: &str = "pod does not exist any more";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VolumeBinding {
    /// Nothing to bind, or every claim is bound now.
    Done,
    /// The volumes could not be bound: retry the pod with backoff, and report why.
    Failed(String),
    /// Leadership went, the scheduler stops or the pod was deleted: retry the
    /// pod (if it still exists) without a report.
    Abandoned(String),
}

/// Whether resource version `seen` is older than `written` (etcd's are integers).
fn older(seen: &str, written: &str) -> bool {
    match (seen.parse::<u64>(), written.parse::<u64>()) {
        (Ok(s), Ok(w)) => s < w,
        _ => false,
    }
}

/// The pod's volume reservation, written and waited for. `Done` at once when
/// the pod has none (no claims, or all bound at Reserve).
pub(crate) async fn bind_volumes(shared: &Arc<Shared>, pod: &Pod, node: &str) -> VolumeBinding {
    let Some(reservation) = shared.lock().snap.storage().reservation(&pod.key).cloned() else {
        return VolumeBinding::Done;
    };
    let timeout = Duration::from_secs(
        shared
            .config
            .profile(&shared.config.default_profile)
            .map_or(600, |p| p.plugin_args.volume_binding.bind_timeout_seconds),
    );
    let written = match write(shared, &reservation).await {
        Ok(w) => w,
        Err(outcome) => return outcome,
    };
    wait_bound(shared, pod, node, &reservation, &written, timeout).await
}

/// The resource versions the API gave the objects written: volumes, then claims.
struct Written {
    volumes: Vec<String>,
    claims: Vec<String>,
}

/// Upstream `bindAPIUpdate`: every static volume pre-bound, every claim to
/// provision annotated.
async fn write(shared: &Arc<Shared>, r: &Reservation) -> Result<Written, VolumeBinding> {
    let mut written = Written {
        volumes: Vec::new(),
        claims: Vec::new(),
    };
    let pp = PatchParams::default();
    for (claim, volume) in &r.static_bindings {
        let mut meta = json!({ "resourceVersion": volume.resource_version });
        if volume.bound_by_controller {
            meta["annotations"] = json!({ ANN_BOUND_BY_CONTROLLER: "yes" });
        }
        let patch = json!({
            "metadata": meta,
            "spec": {"claimRef": {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": claim.namespace.as_str(),
                "name": claim.name,
                "uid": claim.uid,
                "resourceVersion": claim.resource_version,
            }},
        });
        let api: Api<K8sVolume> = Api::all(shared.client.clone());
        let rv = apply(shared, "PersistentVolume", &volume.name, async {
            api.patch(&volume.name, &pp, &Patch::Merge(&patch)).await
        })
        .await?;
        written.volumes.push(rv);
    }
    for claim in &r.provisions {
        let patch = json!({"metadata": {
            "resourceVersion": claim.resource_version,
            "annotations": { ANN_SELECTED_NODE: r.node.as_str() },
        }});
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(shared.client.clone(), claim.namespace.as_str());
        let rv = apply(shared, "PersistentVolumeClaim", &claim.name, async {
            api.patch(&claim.name, &pp, &Patch::Merge(&patch)).await
        })
        .await?;
        written.claims.push(rv);
    }
    Ok(written)
}

/// One API write, rate-limited and timed out; the object's new resource version.
async fn apply<K: kube::Resource>(
    shared: &Arc<Shared>,
    kind: &str,
    name: &str,
    call: impl std::future::Future<Output = Result<K, kube::Error>>,
) -> Result<String, VolumeBinding> {
    if !shared.is_leader() {
        return Err(VolumeBinding::Abandoned("lost leadership".into()));
    }
    shared.limiter.acquire().await;
    match tokio::time::timeout(WRITE_TIMEOUT, call).await {
        Ok(Ok(obj)) => Ok(obj.meta().resource_version.clone().unwrap_or_default()),
        Ok(Err(kube::Error::Api(s))) => Err(VolumeBinding::Failed(s.message)),
        Ok(Err(e)) => Err(VolumeBinding::Failed(format!(
            "updating {kind} {name:?}: {e}"
        ))),
        Err(_) => Err(VolumeBinding::Failed(format!(
            "updating {kind} {name:?}: timed out"
        ))),
    }
}

/// Waits, waking on claim and volume changes (and every second), until
/// `check` finds every claim bound, fails, or the timeout passes.
async fn wait_bound(
    shared: &Arc<Shared>,
    pod: &Pod,
    node: &str,
    r: &Reservation,
    written: &Written,
    timeout: Duration,
) -> VolumeBinding {
    let deadline = Instant::now() + timeout;
    let mut stop = shared.stop.subscribe();
    loop {
        let changed = shared.storage_changed.notified();
        tokio::pin!(changed);
        // Registered before looking, so a change right after is not missed.
        changed.as_mut().enable();
        match check(shared, pod, node, r, written) {
            Ok(true) => return VolumeBinding::Done,
            Ok(false) => {}
            // Nobody to tell: the queue forgets a deleted pod.
            Err(why) if why.starts_with(POD_GONE) => return VolumeBinding::Abandoned(why),
            Err(why) => return VolumeBinding::Failed(format!("binding volumes: {why}")),
        }
        if !shared.is_leader() || shared.stopping() {
            return VolumeBinding::Abandoned("lost leadership".into());
        }
        let now = Instant::now();
        if now >= deadline {
            return VolumeBinding::Failed("binding volumes: context deadline exceeded".into());
        }
        tokio::select! {
            _ = &mut changed => {}
            _ = tokio::time::sleep(POLL.min(deadline - now)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Upstream `checkBindings`, against the API's view in the snapshot: `true`
/// when every claim is bound, `false` to wait, `Err` when binding cannot
/// succeed (the pod or its node went, a binding or a selected node was
/// undone, a provisioned volume does not fit the node).
fn check(
    shared: &Shared,
    pod: &Pod,
    node: &str,
    r: &Reservation,
    written: &Written,
) -> Result<bool, String> {
    let st = shared.lock();
    if st.pods.get(&pod.key) != Some(&pod.uid) {
        return Err(format!("{POD_GONE}: pods {:?} not found", pod.key.name));
    }
    let nodes = st.snap.nodes();
    let Some(idx) = nodes.by_name(node) else {
        return Err(format!("failed to get node {node:?}"));
    };
    let n = &nodes.node[idx as usize];
    let storage = st.snap.storage();
    let fits = |pv: &PersistentVolume| -> Result<(), String> {
        if pv.fits_node(&n.labels, n.name) {
            Ok(())
        } else {
            Err(format!(
                "pv {:?} node affinity doesn't match node {node:?}: no matching NodeSelectorTerms",
                pv.name
            ))
        }
    };
    let claim_now = |c: &Claim| storage.api_claim(c.namespace, &c.name).cloned();
    for ((claim, volume), rv) in r.static_bindings.iter().zip(&written.volumes) {
        let Some(pv) = storage.api_volume(&volume.name) else {
            return Err(format!(
                "failed to check binding: persistentvolume {:?} not found",
                volume.name
            ));
        };
        let Some(pvc) = claim_now(claim) else {
            return Err(format!(
                "failed to check binding: persistentvolumeclaim \"{}/{}\" not found",
                claim.namespace, claim.name
            ));
        };
        if older(&pv.resource_version, rv) {
            return Ok(false);
        }
        fits(pv)?;
        if pv.claim_ref.as_ref().is_none_or(|c| c.uid.is_empty()) {
            return Err(format!("ClaimRef got reset for pv {:?}", pv.name));
        }
        if !pvc.fully_bound() {
            return Ok(false);
        }
    }
    for (claim, rv) in r.provisions.iter().zip(&written.claims) {
        let Some(pvc) = claim_now(claim) else {
            return Err(format!(
                "failed to check provisioning pvc: persistentvolumeclaim \"{}/{}\" not found",
                claim.namespace, claim.name
            ));
        };
        if older(&pvc.resource_version, rv) {
            return Ok(false);
        }
        if pvc.selected_node != Some(Sym::new(node)) {
            // A provisioner that fails removes the annotation.
            return Err(format!("provisioning failed for PVC {:?}", pvc.name));
        }
        if !pvc.volume_name.is_empty() {
            let Some(pv) = storage.api_volume(&pvc.volume_name) else {
                // The volume may not have reached the watch yet.
                return Ok(false);
            };
            fits(pv)?;
        }
        if !pvc.fully_bound() {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions_compare_as_integers() {
        assert!(older("9", "10"));
        assert!(!older("10", "10"));
        assert!(!older("11", "10"));
        // Not integers: never wait on them.
        assert!(!older("a", "10"));
    }
}
