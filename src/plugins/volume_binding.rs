//! VolumeBinding: a pod's claims must be bound, or bindable, where it goes.
//!
//! As upstream (`volumebinding`, the binder's `FindPodVolumes` and
//! `AssumePodVolumes`): PreFilter requires every claim to exist (a missing
//! one makes the pod wait, UnschedulableAndUnresolvable, until the claim's
//! creation requeues it) and every claim of an `Immediate` class to be bound.
//! Filter checks, per node, that bound claims' volumes have node affinity for
//! it, and that each unbound `WaitForFirstConsumer` claim either gets an
//! available static volume there (the smallest that fits) or can be
//! provisioned there (the class's `allowedTopologies`, and a
//! `CSIStorageCapacity` with room when its CSI driver publishes capacity).
//! Reserve assumes the choices in the snapshot (the next pod does not take the
//! same volume); the live scheduler's PreBind (`kube::binder`) writes them
//! through the API and waits for the claims to be bound. There is no Score:
//! upstream's volume capacity scoring is an alpha feature, off by default.
//!
//! Deviation: a bound in-tree volume's node affinity is checked as written,
//! not as translated for its CSI driver.

use crate::framework::{CycleState, FilterPlugin, Plugin, PreFilterPlugin, ReservePlugin, Status};
use crate::model::{
    BindingMode, Claim, Labels, PersistentVolume, Pod, PodVolume, Sym, NO_PROVISIONER,
};
use crate::snapshot::{NodeIdx, PodVolumes, Snapshot, Storage};
use std::sync::Arc;

pub const NAME: &str = "VolumeBinding";

pub const ERR_REASON_BIND_CONFLICT: &str =
    "node(s) didn't find available persistent volumes to bind";
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_REASON_NOT_ENOUGH_SPACE: &str = "node(s) did not have enough free storage";
pub const ERR_REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// Upstream `bindTimeoutSeconds`: how long PreBind waits for the claims to be bound.
pub const DEFAULT_BIND_TIMEOUT_SECONDS: u64 = 600;

pub struct VolumeBinding;

/// PreFilter's sorting of the pod's claims (upstream `PodVolumeClaims`).
#[derive(Debug, Default)]
struct PodClaims {
    bound: Vec<Arc<Claim>>,
    /// Unbound claims of `WaitForFirstConsumer` classes.
    delayed: Vec<Arc<Claim>>,
    /// The volumes of the delayed claims' classes, listed once for every node
    /// (upstream `unboundVolumesDelayBinding`).
    volumes_by_class: Vec<(Sym, Vec<Arc<PersistentVolume>>)>,
}

impl PodClaims {
    fn volumes_of(&self, class: Sym) -> &[Arc<PersistentVolume>] {
        self.volumes_by_class
            .iter()
            .find(|(c, _)| *c == class)
            .map_or(&[], |(_, v)| v.as_slice())
    }
}

/// Why a node cannot take the pod's volumes, in upstream's order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Conflicts {
    node_affinity: bool,
    no_volume: bool,
    not_enough_space: bool,
    volume_missing: bool,
}

impl Conflicts {
    fn any(self) -> bool {
        self.node_affinity || self.no_volume || self.not_enough_space || self.volume_missing
    }

    fn status(self) -> Status {
        let mut st = Status::unresolvable(NAME, "");
        st.reasons.clear();
        for (on, reason) in [
            (self.node_affinity, ERR_REASON_NODE_CONFLICT),
            (self.no_volume, ERR_REASON_BIND_CONFLICT),
            (self.not_enough_space, ERR_REASON_NOT_ENOUGH_SPACE),
            (self.volume_missing, ERR_REASON_PV_NOT_EXIST),
        ] {
            if on {
                st.reasons.push(reason.into());
            }
        }
        st
    }
}

/// Upstream `podHasPVCs`' checks on one claim, with its messages: the claim
/// exists, is not lost or being deleted, and a generic ephemeral volume's
/// claim belongs to the pod. Shared with the other volume plugins.
pub fn claim_of<'s>(
    pod: &Pod,
    storage: &'s Storage,
    name: &str,
    ephemeral: bool,
) -> Result<&'s Arc<Claim>, Status> {
    let ns = pod.key.namespace;
    let Some(claim) = storage.api_claim(ns, name) else {
        let why = if ephemeral {
            format!(
                "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
            )
        } else {
            format!("persistentvolumeclaim {name:?} not found")
        };
        return Err(Status::unresolvable(NAME, why));
    };
    if claim.lost {
        return Err(Status::unresolvable(
            NAME,
            format!(
                "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {:?}",
                claim.volume_name
            ),
        ));
    }
    if claim.deleting {
        return Err(Status::unresolvable(
            NAME,
            format!("persistentvolumeclaim {name:?} is being deleted"),
        ));
    }
    if ephemeral && claim.owner_uid.as_deref() != Some(pod.uid.as_str()) {
        return Err(Status::unresolvable(
            NAME,
            format!(
                "PVC {}/{name} was not created for pod {} (pod is not owner)",
                pod.key.namespace, pod.key
            ),
        ));
    }
    Ok(claim)
}

/// The pod's claims as PreFilter sorts them, or why the pod cannot be scheduled.
fn pod_claims(pod: &Pod, snap: &Snapshot) -> Result<Option<PodClaims>, Status> {
    let storage = snap.storage();
    let mut any = false;
    for v in &pod.volumes {
        if let PodVolume::Claim { claim, ephemeral } = v {
            any = true;
            claim_of(pod, storage, claim, *ephemeral)?;
        }
    }
    if !any {
        return Ok(None);
    }
    let mut claims = PodClaims::default();
    let mut immediate = false;
    for name in pod.volumes.iter().filter_map(PodVolume::claim) {
        // Assumed claims first (upstream reads the assume cache here).
        let Some(claim) = storage.claim(pod.key.namespace, name) else {
            continue;
        };
        if claim.fully_bound() {
            claims.bound.push(claim.clone());
            continue;
        }
        if delay_binding(storage, claim)? && claim.volume_name.is_empty() {
            claims.delayed.push(claim.clone());
        } else {
            // Pre-bound claims count as immediate: the PV controller binds them.
            immediate = true;
        }
    }
    if immediate {
        return Err(Status::unresolvable(NAME, ERR_UNBOUND_IMMEDIATE));
    }
    for c in &claims.delayed {
        if !claims.volumes_by_class.iter().any(|(k, _)| *k == c.class) {
            let volumes = storage.volumes_of_class(c.class).cloned().collect();
            claims.volumes_by_class.push((c.class, volumes));
        }
    }
    Ok(Some(claims))
}

/// Upstream `IsDelayBindingMode`: the claim's class exists and waits for the
/// first consumer. A class without a binding mode is an error.
fn delay_binding(storage: &Storage, claim: &Claim) -> Result<bool, Status> {
    if claim.class.as_str().is_empty() {
        return Ok(false);
    }
    let Some(class) = storage.class(claim.class) else {
        return Ok(false);
    };
    match class.binding_mode {
        Some(mode) => Ok(mode == BindingMode::WaitForFirstConsumer),
        None => Err(Status::error(
            NAME,
            format!(
                "VolumeBindingMode not set for StorageClass {:?}",
                claim.class.as_str()
            ),
        )),
    }
}

/// Upstream `FindMatchingVolume` in the scheduler's path: a volume pre-bound
/// to the claim if there is one (none at all when its node affinity does not
/// fit), else the smallest available volume of the claim's class that fits
/// the claim and the node; `excluded` are volumes chosen for the pod's other claims.
fn matching_volume<'v>(
    volumes: &'v [Arc<PersistentVolume>],
    claim: &Claim,
    labels: &Labels,
    node: Sym,
    excluded: &[&str],
) -> Option<&'v Arc<PersistentVolume>> {
    let mut best: Option<&Arc<PersistentVolume>> = None;
    for v in volumes {
        if excluded.contains(&v.name.as_str()) {
            continue;
        }
        if v.claim_ref.is_some() && !v.bound_to(claim) {
            continue;
        }
        if v.capacity < claim.request
            || v.block != claim.block
            || v.attributes_class != claim.attributes_class
            || v.deleting
        {
            continue;
        }
        let fits = v.fits_node(labels, node);
        if v.bound_to(claim) {
            return fits.then_some(v);
        }
        if v.phase != crate::model::VolumePhase::Available
            || claim
                .selector
                .as_ref()
                .is_some_and(|s| !s.matches(&v.labels))
            || v.class != claim.class
            || !fits
            || !v.access_modes.contains(claim.access_modes)
        {
            continue;
        }
        if best.is_none_or(|b| v.capacity < b.capacity) {
            best = Some(v);
        }
    }
    best
}

/// Upstream `FindPodVolumes` for one node: what the pod's unbound claims
/// would get there, or why the node does not do.
fn find_pod_volumes(
    claims: &PodClaims,
    snap: &Snapshot,
    node: NodeIdx,
) -> Result<Result<PodVolumes, Conflicts>, Status> {
    let storage = snap.storage();
    let n = &snap.nodes().node[node as usize];
    let mut conflicts = Conflicts::default();
    for claim in &claims.bound {
        match storage.volume(&claim.volume_name) {
            None => {
                conflicts.volume_missing = true;
                break;
            }
            Some(v) if !v.fits_node(&n.labels, n.name) => {
                conflicts.node_affinity = true;
                break;
            }
            Some(_) => {}
        }
    }
    let mut found = PodVolumes::default();
    if !claims.delayed.is_empty() {
        let mut to_match: Vec<&Arc<Claim>> = Vec::new();
        let mut to_provision: Vec<&Arc<Claim>> = Vec::new();
        for claim in &claims.delayed {
            match claim.selected_node {
                // Being provisioned for another node: only that node will do.
                Some(selected) if selected != n.name => {
                    conflicts.no_volume = true;
                    return Ok(Err(conflicts));
                }
                Some(_) => to_provision.push(claim),
                None => to_match.push(claim),
            }
        }
        // Smallest requests first, so each takes the smallest volume that fits.
        to_match.sort_by_key(|c| c.request);
        let mut chosen: Vec<&str> = Vec::new();
        let mut all_matched = true;
        for claim in to_match {
            let volumes = claims.volumes_of(claim.class);
            match matching_volume(volumes, claim, &n.labels, n.name, &chosen) {
                Some(v) => {
                    chosen.push(&v.name);
                    found.static_bindings.push((claim.clone(), v.clone()));
                }
                None => {
                    all_matched = false;
                    to_provision.push(claim);
                }
            }
        }
        conflicts.no_volume = !all_matched;
        if !to_provision.is_empty() {
            let (provisionable, enough) = provisions(storage, &to_provision, &n.labels)?;
            conflicts.no_volume = !provisionable;
            conflicts.not_enough_space = !enough;
            if provisionable && enough {
                found.provisions = to_provision.into_iter().cloned().collect();
            }
        }
    }
    Ok(if conflicts.any() {
        Err(conflicts)
    } else {
        Ok(found)
    })
}

/// Upstream `checkVolumeProvisions`: whether every claim can be provisioned
/// on a node with these labels, and whether storage capacity allows it.
fn provisions(
    storage: &Storage,
    claims: &[&Arc<Claim>],
    labels: &Labels,
) -> Result<(bool, bool), Status> {
    for claim in claims {
        let class_name = claim.class.as_str();
        if class_name.is_empty() {
            return Err(Status::error(
                NAME,
                format!("no class for claim \"{}/{}\"", claim.namespace, claim.name),
            ));
        }
        let Some(class) = storage.class(claim.class) else {
            return Err(Status::error(
                NAME,
                format!("failed to find storage class {class_name:?}"),
            ));
        };
        let provisioner = class.provisioner.as_str();
        if provisioner.is_empty() || provisioner == NO_PROVISIONER || !class.allows(labels) {
            return Ok((false, true));
        }
        if !enough_capacity(storage, claim, class.provisioner, labels) {
            return Ok((true, false));
        }
    }
    Ok((true, true))
}

/// Upstream `hasEnoughCapacity`: when the class's provisioner is a CSI driver
/// that publishes storage capacity, some `CSIStorageCapacity` of the class
/// reachable from the node must hold a volume of the claim's size.
fn enough_capacity(storage: &Storage, claim: &Claim, provisioner: Sym, labels: &Labels) -> bool {
    if claim.request == 0 {
        return true;
    }
    if !storage
        .driver(provisioner)
        .is_some_and(|d| d.storage_capacity)
    {
        return true;
    }
    storage.capacities().any(|c| {
        c.class == claim.class
            && c.volume_limit().is_some_and(|l| l >= claim.request)
            && c.node_topology.as_ref().is_some_and(|t| t.matches(labels))
    })
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snap: &Snapshot) -> Status {
        if pod.volumes.is_empty() {
            return Status::skip();
        }
        match pod_claims(pod, snap) {
            Ok(None) => Status::skip(),
            Ok(Some(claims)) => {
                state.write(claims);
                Status::success()
            }
            Err(st) => st,
        }
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let Some(claims) = state.read::<PodClaims>() else {
            return Status::error(NAME, "PreFilter state missing");
        };
        match find_pod_volumes(claims, snap, node) {
            Ok(Ok(_)) => Status::success(),
            Ok(Err(conflicts)) => conflicts.status(),
            Err(st) => st,
        }
    }

    /// Claims and volumes decide, not the pods placed on nodes.
    fn depends_on_placed_pods(&self, _: &CycleState, _: &Pod) -> bool {
        false
    }
}

impl ReservePlugin for VolumeBinding {
    /// Upstream `AssumePodVolumes` on the chosen node (what Filter found there,
    /// worked out again against the same snapshot).
    fn reserve(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &mut Snapshot,
        node: NodeIdx,
    ) -> Status {
        let Some(claims) = state.read::<PodClaims>() else {
            // PreFilter skipped: the pod has no claims.
            return Status::success();
        };
        if snap
            .storage()
            .pod_volumes_bound(pod.key.namespace, &pod.volumes)
        {
            return Status::success();
        }
        let found = match find_pod_volumes(claims, snap, node) {
            Ok(Ok(found)) => found,
            Ok(Err(conflicts)) => return conflicts.status(),
            Err(st) => return st,
        };
        let name = snap.nodes().name[node as usize];
        snap.storage_mut().reserve(&pod.key, name, &found);
        Status::success()
    }

    fn unreserve(&self, _: &mut CycleState, pod: &Pod, snap: &mut Snapshot, _: NodeIdx) {
        snap.storage_mut().release(&pod.key);
    }
}

#[cfg(test)]
mod tests;
