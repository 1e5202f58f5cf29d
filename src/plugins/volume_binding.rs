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

use crate::framework::{
    retain_nodes, CycleState, FilterPlugin, Plugin, PreFilterPlugin, ReservePlugin, Status,
};
use crate::model::{
    BindingMode, Claim, Labels, PersistentVolume, Pod, PodVolume, StorageClass, Sym, NO_PROVISIONER,
};
use crate::snapshot::{NodeIdx, PodVolumes, Snapshot, Storage};
use smallvec::SmallVec;
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

/// PreFilter's sorting of the pod's claims (upstream `PodVolumeClaims`),
/// with what every node's Filter would otherwise look up again: the bound
/// claims' volumes, the volumes of the delayed claims' classes, and how each
/// delayed claim could be provisioned.
#[derive(Debug, Default)]
struct PodClaims {
    /// Fully bound claims and their volumes (`None`: the volume does not exist).
    bound: Vec<(Arc<Claim>, Option<Arc<PersistentVolume>>)>,
    /// Unbound claims of `WaitForFirstConsumer` classes.
    delayed: Vec<Arc<Claim>>,
    /// Per delayed claim, how it would be provisioned.
    provisioning: Vec<Provisioning>,
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

/// What upstream's `checkVolumeProvisions` finds of a claim's class, the same
/// for every node.
#[derive(Debug, Clone)]
enum Provisioning {
    /// The claim has no class, or its class does not exist (upstream errors).
    Error(Status),
    /// The class provisions nothing (no provisioner, or `kubernetes.io/no-provisioner`).
    Never,
    /// The class may provision where its topologies allow; with a CSI
    /// driver that publishes capacity, where a `CSIStorageCapacity` has room.
    Class {
        class: StorageClass,
        tracks_capacity: bool,
    },
}

impl Provisioning {
    fn of(storage: &Storage, claim: &Claim) -> Provisioning {
        let class_name = claim.class.as_str();
        if class_name.is_empty() {
            return Provisioning::Error(Status::error(
                NAME,
                format!("no class for claim \"{}/{}\"", claim.namespace, claim.name),
            ));
        }
        let Some(class) = storage.class(claim.class) else {
            return Provisioning::Error(Status::error(
                NAME,
                format!("failed to find storage class {class_name:?}"),
            ));
        };
        let provisioner = class.provisioner.as_str();
        if provisioner.is_empty() || provisioner == NO_PROVISIONER {
            return Provisioning::Never;
        }
        Provisioning::Class {
            class: class.clone(),
            tracks_capacity: claim.request > 0
                && storage
                    .driver(class.provisioner)
                    .is_some_and(|d| d.storage_capacity),
        }
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
            let volume = storage.volume(&claim.volume_name).cloned();
            claims.bound.push((claim.clone(), volume));
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
        claims.provisioning.push(Provisioning::of(storage, c));
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
    excluded: &[&Arc<PersistentVolume>],
) -> Option<&'v Arc<PersistentVolume>> {
    let mut best: Option<&Arc<PersistentVolume>> = None;
    for v in volumes {
        if excluded.iter().any(|e| Arc::ptr_eq(e, v)) {
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

/// Upstream `FindPodVolumes` for one node: the conflicts, and (with `found`)
/// what the pod's unbound claims would get there.
fn find_pod_volumes(
    claims: &PodClaims,
    snap: &Snapshot,
    node: NodeIdx,
    found: Option<&mut PodVolumes>,
) -> Result<Conflicts, Status> {
    let n = &snap.nodes().node[node as usize];
    let mut conflicts = Conflicts::default();
    for (_, volume) in &claims.bound {
        match volume {
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
    if claims.delayed.is_empty() {
        return Ok(conflicts);
    }
    // Claims by position in `delayed`.
    let mut to_match: SmallVec<[usize; 4]> = SmallVec::new();
    let mut to_provision: SmallVec<[usize; 4]> = SmallVec::new();
    for (k, claim) in claims.delayed.iter().enumerate() {
        match claim.selected_node {
            // Being provisioned for another node: only that node will do.
            Some(selected) if selected != n.name => {
                conflicts.no_volume = true;
                return Ok(conflicts);
            }
            Some(_) => to_provision.push(k),
            None => to_match.push(k),
        }
    }
    // Smallest requests first, so each takes the smallest volume that fits.
    to_match.sort_by_key(|&k| claims.delayed[k].request);
    let mut chosen: SmallVec<[&Arc<PersistentVolume>; 4]> = SmallVec::new();
    let mut bindings: SmallVec<[(usize, &Arc<PersistentVolume>); 4]> = SmallVec::new();
    for k in to_match {
        let claim = &claims.delayed[k];
        let volumes = claims.volumes_of(claim.class);
        match matching_volume(volumes, claim, &n.labels, n.name, &chosen) {
            Some(v) => {
                chosen.push(v);
                bindings.push((k, v));
            }
            None => {
                conflicts.no_volume = true;
                to_provision.push(k);
            }
        }
    }
    if !to_provision.is_empty() {
        let (provisionable, enough) = provisions(snap.storage(), claims, &to_provision, &n.labels)?;
        conflicts.no_volume = !provisionable;
        conflicts.not_enough_space = !enough;
    }
    if let Some(found) = found {
        found.static_bindings = bindings
            .iter()
            .map(|&(k, v)| (claims.delayed[k].clone(), v.clone()))
            .collect();
        if !conflicts.any() {
            found.provisions = to_provision
                .iter()
                .map(|&k| claims.delayed[k].clone())
                .collect();
        }
    }
    Ok(conflicts)
}

/// Upstream `checkVolumeProvisions`: whether every claim can be provisioned
/// on a node with these labels, and whether storage capacity allows it.
fn provisions(
    storage: &Storage,
    claims: &PodClaims,
    to_provision: &[usize],
    labels: &Labels,
) -> Result<(bool, bool), Status> {
    for &k in to_provision {
        match &claims.provisioning[k] {
            Provisioning::Error(st) => return Err(st.clone()),
            Provisioning::Never => return Ok((false, true)),
            Provisioning::Class { class, .. } if !class.allows(labels) => return Ok((false, true)),
            Provisioning::Class {
                tracks_capacity: true,
                ..
            } if !enough_capacity(storage, &claims.delayed[k], labels) => return Ok((true, false)),
            Provisioning::Class { .. } => {}
        }
    }
    Ok((true, true))
}

/// Upstream `hasEnoughCapacity`, for a class whose CSI driver publishes
/// storage capacity: some `CSIStorageCapacity` of the class reachable from
/// the node must hold a volume of the claim's size.
fn enough_capacity(storage: &Storage, claim: &Claim, labels: &Labels) -> bool {
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
        match find_pod_volumes(claims, snap, node, None) {
            Ok(conflicts) if conflicts.any() => conflicts.status(),
            Ok(_) => Status::success(),
            Err(st) => st,
        }
    }

    /// Claims and volumes decide, not the pods placed on nodes.
    fn depends_on_placed_pods(&self, _: &CycleState, _: &Pod) -> bool {
        false
    }

    /// `filter` over the nodes, reading PreFilter's state once.
    fn filter_nodes(
        &self,
        state: &CycleState,
        _: &Pod,
        snap: &Snapshot,
        nodes: &mut Vec<NodeIdx>,
        rejected: &mut Vec<NodeIdx>,
    ) -> Result<(), Status> {
        let Some(claims) = state.read::<PodClaims>() else {
            return Err(Status::error(NAME, "PreFilter state missing"));
        };
        let mut error = None;
        retain_nodes(nodes, rejected, |n| {
            match find_pod_volumes(claims, snap, n, None) {
                Ok(conflicts) => !conflicts.any(),
                Err(st) => {
                    error.get_or_insert(st);
                    true
                }
            }
        });
        error.map_or(Ok(()), Err)
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
        let mut found = PodVolumes::default();
        match find_pod_volumes(claims, snap, node, Some(&mut found)) {
            Ok(conflicts) if conflicts.any() => return conflicts.status(),
            Ok(_) => {}
            Err(st) => return st,
        }
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
