//! Storage objects the volume plugins read (claims, persistent volumes,
//! storage classes, CSI nodes, drivers and storage capacities), and what
//! VolumeBinding's Reserve assumed for pods whose volumes are being bound.
//!
//! Claims and volumes are seen two ways, as upstream's assume cache sees them:
//! as the API server last reported them, and as the scheduler assumes them
//! until the API catches up (a static volume pre-bound to the claim a pod
//! chose, a claim annotated with the node chosen for provisioning). An
//! assumption lasts until the API reports a newer version of the object, or
//! until the pod's reservation is released.

use crate::model::{
    Claim, CsiDriver, CsiNode, PersistentVolume, PodKey, PodVolume, StorageCapacity, StorageClass,
    Sym,
};
use foldhash::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A claim's identity: namespace and name.
pub type ClaimKey = (Sym, String);

/// What VolumeBinding found for a pod on one node (upstream `PodVolumes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodVolumes {
    /// Unbound claims and the available static volumes chosen for them.
    pub static_bindings: Vec<(Arc<Claim>, Arc<PersistentVolume>)>,
    /// Unbound claims to provision dynamically.
    pub provisions: Vec<Arc<Claim>>,
}

impl PodVolumes {
    pub fn is_empty(&self) -> bool {
        self.static_bindings.is_empty() && self.provisions.is_empty()
    }
}

/// The volume work Reserve assumed for one pod: the PreBind step turns it into
/// API writes (a volume's `claimRef`, a claim's selected node) and waits for
/// every claim to be bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub node: Sym,
    /// As assumed: each volume pre-bound to its claim.
    pub static_bindings: Vec<(Arc<Claim>, Arc<PersistentVolume>)>,
    /// As assumed: each claim annotated with `node`.
    pub provisions: Vec<Arc<Claim>>,
}

/// How an upsert changed what the snapshot holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    Added,
    Updated(T),
    Unchanged,
}

#[derive(Debug, Default, Clone)]
pub struct Storage {
    /// As the API reports them: by namespace, then name.
    claims: HashMap<Sym, HashMap<String, Arc<Claim>>>,
    volumes: HashMap<String, Arc<PersistentVolume>>,
    /// Volume names by storage class, in name order (ties between equally
    /// small matches go to the first name, so runs repeat).
    by_class: HashMap<Sym, BTreeSet<String>>,
    classes: HashMap<Sym, StorageClass>,
    csi_nodes: HashMap<Sym, CsiNode>,
    drivers: HashMap<Sym, CsiDriver>,
    capacities: BTreeMap<(Sym, String), StorageCapacity>,
    /// Assumed versions, ahead of the API's.
    assumed_claims: HashMap<ClaimKey, Arc<Claim>>,
    assumed_volumes: HashMap<String, Arc<PersistentVolume>>,
    reservations: HashMap<PodKey, Reservation>,
    /// Placed pods (bound or assumed) mounting each claim by name (upstream's
    /// `IsPVCUsedByPods`, for ReadWriteOncePod).
    claim_users: HashMap<ClaimKey, u32>,
}

/// Puts `value` under `key` unless an equal value is there already.
fn upsert<V: PartialEq>(map: &mut HashMap<Sym, V>, key: Sym, value: V) -> Change<V> {
    if map.get(&key) == Some(&value) {
        return Change::Unchanged;
    }
    match map.insert(key, value) {
        Some(old) => Change::Updated(old),
        None => Change::Added,
    }
}

/// Whether resource version `new` is newer than `old` (integers, as etcd's
/// are; anything else counts as newer, so the API's view wins).
fn newer(new: &str, old: &str) -> bool {
    match (new.parse::<u64>(), old.parse::<u64>()) {
        (Ok(n), Ok(o)) => n > o,
        _ => new != old,
    }
}

impl Storage {
    // ---- reads ---------------------------------------------------------------

    /// The claim as the API reports it.
    pub fn api_claim(&self, namespace: Sym, name: &str) -> Option<&Arc<Claim>> {
        self.claims.get(&namespace).and_then(|m| m.get(name))
    }

    /// The claim as assumed, else as the API reports it.
    pub fn claim(&self, namespace: Sym, name: &str) -> Option<&Arc<Claim>> {
        if !self.assumed_claims.is_empty() {
            if let Some(c) = self.assumed_claims.get(&(namespace, name.to_owned())) {
                return Some(c);
            }
        }
        self.api_claim(namespace, name)
    }

    pub fn api_volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.volumes.get(name)
    }

    /// The volume as assumed, else as the API reports it.
    pub fn volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.assumed_volumes
            .get(name)
            .or_else(|| self.volumes.get(name))
    }

    /// The volumes of a storage class as assumed (upstream `ListPVs`), in name order.
    pub fn volumes_of_class(&self, class: Sym) -> impl Iterator<Item = &Arc<PersistentVolume>> {
        self.by_class
            .get(&class)
            .into_iter()
            .flatten()
            .filter_map(|n| self.volume(n))
    }

    pub fn class(&self, name: Sym) -> Option<&StorageClass> {
        self.classes.get(&name)
    }

    pub fn csi_node(&self, node: Sym) -> Option<&CsiNode> {
        self.csi_nodes.get(&node)
    }

    pub fn driver(&self, name: Sym) -> Option<&CsiDriver> {
        self.drivers.get(&name)
    }

    pub fn capacities(&self) -> impl Iterator<Item = &StorageCapacity> {
        self.capacities.values()
    }

    /// Whether a placed pod mounts the claim.
    pub fn claim_in_use(&self, namespace: Sym, name: &str) -> bool {
        !self.claim_users.is_empty()
            && self
                .claim_users
                .get(&(namespace, name.to_owned()))
                .is_some_and(|&n| n > 0)
    }

    /// Upstream `arePodVolumesBound`: every claim the pod mounts exists and is
    /// fully bound, as assumed.
    pub fn pod_volumes_bound(&self, namespace: Sym, volumes: &[PodVolume]) -> bool {
        volumes.iter().filter_map(PodVolume::claim).all(|c| {
            self.claim(namespace, c)
                .is_some_and(|claim| claim.fully_bound())
        })
    }

    pub fn reservation(&self, pod: &PodKey) -> Option<&Reservation> {
        self.reservations.get(pod)
    }

    /// Counts of objects, for logs and tests: claims, volumes, classes,
    /// CSI nodes, drivers, capacities.
    pub fn counts(&self) -> [usize; 6] {
        [
            self.claims.values().map(HashMap::len).sum(),
            self.volumes.len(),
            self.classes.len(),
            self.csi_nodes.len(),
            self.drivers.len(),
            self.capacities.len(),
        ]
    }

    // ---- the API's view --------------------------------------------------------

    /// Adds or replaces a claim as the API reports it. An assumption made from
    /// an older version is dropped.
    pub fn upsert_claim(&mut self, claim: Claim) -> Change<Arc<Claim>> {
        let key = (claim.namespace, claim.name.clone());
        if let Some(a) = self.assumed_claims.get(&key) {
            if newer(&claim.resource_version, &a.resource_version) {
                self.assumed_claims.remove(&key);
            }
        }
        let by_name = self.claims.entry(claim.namespace).or_default();
        match by_name.get(&claim.name) {
            Some(old) if **old == claim => Change::Unchanged,
            _ => match by_name.insert(claim.name.clone(), Arc::new(claim)) {
                Some(old) => Change::Updated(old),
                None => Change::Added,
            },
        }
    }

    pub fn remove_claim(&mut self, namespace: Sym, name: &str) -> Option<Arc<Claim>> {
        self.assumed_claims.remove(&(namespace, name.to_owned()));
        let by_name = self.claims.get_mut(&namespace)?;
        let old = by_name.remove(name);
        if by_name.is_empty() {
            self.claims.remove(&namespace);
        }
        old
    }

    pub fn upsert_volume(&mut self, volume: PersistentVolume) -> Change<Arc<PersistentVolume>> {
        if let Some(a) = self.assumed_volumes.get(&volume.name) {
            if newer(&volume.resource_version, &a.resource_version) {
                self.assumed_volumes.remove(&volume.name);
            }
        }
        if let Some(old) = self.volumes.get(&volume.name) {
            if **old == volume {
                return Change::Unchanged;
            }
            if old.class != volume.class {
                self.unindex_volume(&old.name.clone(), old.class);
            }
        }
        self.by_class
            .entry(volume.class)
            .or_default()
            .insert(volume.name.clone());
        match self.volumes.insert(volume.name.clone(), Arc::new(volume)) {
            Some(old) => Change::Updated(old),
            None => Change::Added,
        }
    }

    fn unindex_volume(&mut self, name: &str, class: Sym) {
        if let Some(set) = self.by_class.get_mut(&class) {
            set.remove(name);
            if set.is_empty() {
                self.by_class.remove(&class);
            }
        }
    }

    pub fn remove_volume(&mut self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.assumed_volumes.remove(name);
        let old = self.volumes.remove(name)?;
        self.unindex_volume(name, old.class);
        Some(old)
    }

    pub fn upsert_class(&mut self, class: StorageClass) -> Change<StorageClass> {
        upsert(&mut self.classes, class.name, class)
    }

    pub fn remove_class(&mut self, name: Sym) -> bool {
        self.classes.remove(&name).is_some()
    }

    pub fn upsert_csi_node(&mut self, node: CsiNode) -> Change<CsiNode> {
        upsert(&mut self.csi_nodes, node.name, node)
    }

    pub fn remove_csi_node(&mut self, name: Sym) -> bool {
        self.csi_nodes.remove(&name).is_some()
    }

    pub fn upsert_driver(&mut self, driver: CsiDriver) -> Change<CsiDriver> {
        upsert(&mut self.drivers, driver.name, driver)
    }

    pub fn remove_driver(&mut self, name: Sym) -> bool {
        self.drivers.remove(&name).is_some()
    }

    pub fn upsert_capacity(&mut self, c: StorageCapacity) -> Change<StorageCapacity> {
        let key = (c.namespace, c.name.clone());
        match self.capacities.get(&key) {
            Some(old) if *old == c => Change::Unchanged,
            _ => match self.capacities.insert(key, c) {
                Some(old) => Change::Updated(old),
                None => Change::Added,
            },
        }
    }

    pub fn remove_capacity(&mut self, namespace: Sym, name: &str) -> bool {
        self.capacities
            .remove(&(namespace, name.to_owned()))
            .is_some()
    }

    /// Every claim name the API reports (`namespace/name`), for a re-list.
    pub fn claim_keys(&self) -> Vec<String> {
        self.claims
            .iter()
            .flat_map(|(ns, m)| m.keys().map(move |n| format!("{ns}/{n}")))
            .collect()
    }

    pub fn volume_names(&self) -> Vec<String> {
        self.volumes.keys().cloned().collect()
    }

    pub fn class_names(&self) -> Vec<Sym> {
        self.classes.keys().copied().collect()
    }

    pub fn csi_node_names(&self) -> Vec<Sym> {
        self.csi_nodes.keys().copied().collect()
    }

    pub fn driver_names(&self) -> Vec<Sym> {
        self.drivers.keys().copied().collect()
    }

    pub fn capacity_keys(&self) -> Vec<String> {
        self.capacities
            .keys()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .collect()
    }

    // ---- assumptions -------------------------------------------------------------

    /// Upstream `AssumePodVolumes`: each chosen volume pre-bound to its claim
    /// (`claimRef`, and `bound-by-controller` unless already bound to it), each
    /// claim to provision annotated with `node`; recorded for the pod. A pod
    /// reserved before releases its earlier reservation first.
    pub fn reserve(&mut self, pod: &PodKey, node: Sym, found: &PodVolumes) {
        self.release(pod);
        let mut reservation = Reservation {
            node,
            static_bindings: Vec::with_capacity(found.static_bindings.len()),
            provisions: Vec::with_capacity(found.provisions.len()),
        };
        for (claim, volume) in &found.static_bindings {
            let mut bound = (**volume).clone();
            if !volume.bound_to(claim) {
                bound.bound_by_controller = true;
            }
            bound.claim_ref = Some(crate::model::ClaimRef {
                namespace: claim.namespace,
                name: claim.name.clone(),
                uid: claim.uid.clone(),
            });
            let bound = Arc::new(bound);
            if bound != *volume {
                self.assumed_volumes
                    .insert(bound.name.clone(), bound.clone());
            }
            reservation.static_bindings.push((claim.clone(), bound));
        }
        for claim in &found.provisions {
            let mut annotated = (**claim).clone();
            annotated.selected_node = Some(node);
            let annotated = Arc::new(annotated);
            self.assumed_claims.insert(
                (annotated.namespace, annotated.name.clone()),
                annotated.clone(),
            );
            reservation.provisions.push(annotated);
        }
        self.reservations.insert(pod.clone(), reservation);
    }

    /// Upstream `RevertAssumedPodVolumes`: the pod's assumptions give way to the
    /// API's view, and its reservation is forgotten.
    pub fn release(&mut self, pod: &PodKey) -> bool {
        let Some(r) = self.reservations.remove(pod) else {
            return false;
        };
        for (_, volume) in &r.static_bindings {
            self.assumed_volumes.remove(&volume.name);
        }
        for claim in &r.provisions {
            self.assumed_claims
                .remove(&(claim.namespace, claim.name.clone()));
        }
        true
    }

    /// Puts back a reservation taken out with [`release`](Self::release)'s
    /// caller holding a copy (a what-if cycle that must leave the pod's real
    /// reservation as it was).
    pub fn reinstate(&mut self, pod: &PodKey, r: Reservation) {
        self.release(pod);
        for (_, volume) in &r.static_bindings {
            self.assumed_volumes
                .insert(volume.name.clone(), volume.clone());
        }
        for claim in &r.provisions {
            self.assumed_claims
                .insert((claim.namespace, claim.name.clone()), claim.clone());
        }
        self.reservations.insert(pod.clone(), r);
    }

    /// The pod's volumes are bound: its reservation is done. Its assumptions
    /// stay until the API reports the objects as they now are.
    pub fn complete(&mut self, pod: &PodKey) -> Option<Reservation> {
        self.reservations.remove(pod)
    }

    // ---- placed pods ---------------------------------------------------------------

    /// A placed pod's named claims gain (`delta` 1) or lose (-1) a user.
    /// Entries of the per-pod maps: claims with placed users, volume reservations.
    pub(super) fn per_pod_entries(&self) -> (usize, usize) {
        (self.claim_users.len(), self.reservations.len())
    }

    pub(super) fn count_users(&mut self, namespace: Sym, volumes: &[PodVolume], delta: i32) {
        for claim in volumes.iter().filter_map(PodVolume::named_claim) {
            let key = (namespace, claim.clone());
            let n = self.claim_users.entry(key.clone()).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                self.claim_users.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccessModes, VolumePhase, VolumeSource};

    pub(crate) fn claim(ns: &str, name: &str, rv: &str) -> Claim {
        Claim {
            uid: format!("uid-{name}"),
            resource_version: rv.into(),
            ..Claim::new(ns, name, Sym::new("gp3"), 1 << 30)
        }
    }

    fn volume(name: &str, rv: &str) -> PersistentVolume {
        PersistentVolume {
            name: name.into(),
            labels: Default::default(),
            class: Sym::new("gp3"),
            capacity: 1 << 30,
            access_modes: AccessModes::RWO,
            block: false,
            attributes_class: Sym::new(""),
            claim_ref: None,
            phase: VolumePhase::Available,
            node_affinity: None,
            source: VolumeSource::Other,
            deleting: false,
            bound_by_controller: false,
            resource_version: rv.into(),
        }
    }

    #[test]
    fn assumptions_last_until_the_api_reports_a_newer_version() {
        let mut s = Storage::default();
        s.upsert_claim(claim("ns", "c", "5"));
        s.upsert_volume(volume("pv", "7"));
        let c = s.claim(Sym::new("ns"), "c").unwrap().clone();
        let v = s.volume("pv").unwrap().clone();
        let pod = PodKey::new("ns", "p");
        let found = PodVolumes {
            static_bindings: vec![(c.clone(), v)],
            provisions: vec![c],
        };
        s.reserve(&pod, Sym::new("n1"), &found);
        let pv = s.volume("pv").unwrap();
        assert_eq!(pv.claim_ref.as_ref().map(|r| r.name.as_str()), Some("c"));
        assert!(pv.bound_by_controller);
        assert!(s.api_volume("pv").unwrap().claim_ref.is_none());
        assert_eq!(
            s.claim(Sym::new("ns"), "c").unwrap().selected_node,
            Some(Sym::new("n1"))
        );
        // A resync of the same version keeps the assumption; a newer version ends it.
        s.upsert_claim(claim("ns", "c", "5"));
        assert!(s
            .claim(Sym::new("ns"), "c")
            .unwrap()
            .selected_node
            .is_some());
        s.upsert_claim(claim("ns", "c", "6"));
        assert!(s
            .claim(Sym::new("ns"), "c")
            .unwrap()
            .selected_node
            .is_none());
        // Releasing gives the volume back to the API's view.
        assert!(s.release(&pod));
        assert!(s.volume("pv").unwrap().claim_ref.is_none());
        assert!(s.reservation(&pod).is_none());
    }

    #[test]
    fn a_reinstated_reservation_is_the_one_taken_out() {
        let mut s = Storage::default();
        s.upsert_claim(claim("ns", "c", "5"));
        s.upsert_volume(volume("pv", "7"));
        let c = s.claim(Sym::new("ns"), "c").unwrap().clone();
        let v = s.volume("pv").unwrap().clone();
        let pod = PodKey::new("ns", "p");
        let found = PodVolumes {
            static_bindings: vec![(c.clone(), v)],
            provisions: vec![c],
        };
        s.reserve(&pod, Sym::new("n1"), &found);
        let kept = s.reservation(&pod).cloned().unwrap();
        s.reserve(&pod, Sym::new("n2"), &PodVolumes::default());
        assert!(s.volume("pv").unwrap().claim_ref.is_none());
        s.reinstate(&pod, kept.clone());
        assert_eq!(s.reservation(&pod), Some(&kept));
        assert!(s.volume("pv").unwrap().claim_ref.is_some());
        assert_eq!(
            s.claim(Sym::new("ns"), "c").unwrap().selected_node,
            Some(Sym::new("n1"))
        );
    }

    #[test]
    fn volumes_are_listed_by_class_in_name_order() {
        let mut s = Storage::default();
        s.upsert_volume(volume("b", "1"));
        s.upsert_volume(volume("a", "1"));
        let mut other = volume("c", "1");
        other.class = Sym::new("io2");
        s.upsert_volume(other.clone());
        let names: Vec<_> = s
            .volumes_of_class(Sym::new("gp3"))
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        // A class change moves the volume.
        other.class = Sym::new("gp3");
        other.resource_version = "2".into();
        s.upsert_volume(other);
        assert_eq!(s.volumes_of_class(Sym::new("gp3")).count(), 3);
        assert_eq!(s.volumes_of_class(Sym::new("io2")).count(), 0);
        s.remove_volume("a");
        assert_eq!(s.volumes_of_class(Sym::new("gp3")).count(), 2);
    }

    #[test]
    fn claim_users_count_named_claims_only() {
        let mut s = Storage::default();
        let ns = Sym::new("ns");
        let vols = [
            PodVolume::Claim {
                claim: "a".into(),
                ephemeral: false,
            },
            PodVolume::Claim {
                claim: "p-eph".into(),
                ephemeral: true,
            },
        ];
        s.count_users(ns, &vols, 1);
        s.count_users(ns, &vols, 1);
        assert!(s.claim_in_use(ns, "a"));
        assert!(!s.claim_in_use(ns, "p-eph"));
        s.count_users(ns, &vols, -1);
        assert!(s.claim_in_use(ns, "a"));
        s.count_users(ns, &vols, -1);
        assert!(!s.claim_in_use(ns, "a"));
    }
}
