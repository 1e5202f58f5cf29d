//! Watchers of the storage kinds the volume plugins read: claims, persistent
//! volumes, storage classes, CSI nodes, CSI drivers and storage capacities.
//! Each change becomes the cluster event upstream's volume plugins register
//! for (`queue::event`); claim and volume changes also wake volume bindings
//! waiting in PreBind (`kube::binder`).

use super::{Followup, Handler};
use crate::kube::{Shared, State};
use crate::model::{
    capacity_from_k8s, claim_from_k8s, csi_driver_from_k8s, csi_node_from_k8s,
    storage_class_from_k8s, volume_from_k8s, Sym,
};
use crate::queue::{ClaimId, ClusterEvent};
use crate::snapshot::Change;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, CSIStorageCapacity, StorageClass};

fn split(key: &str) -> (Sym, &str) {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    (Sym::new(ns), name)
}

pub(crate) struct Claims;

impl Handler for Claims {
    type K = PersistentVolumeClaim;
    const KIND: &'static str = "PersistentVolumeClaim";

    fn apply(shared: &Shared, st: &mut State, obj: &PersistentVolumeClaim) -> Option<Followup> {
        match claim_from_k8s(obj) {
            Ok(claim) => {
                let (namespace, id) = (claim.namespace, ClaimId::of(&claim.name));
                let added = match st.snap.storage_mut().upsert_claim(claim) {
                    Change::Added => true,
                    Change::Updated(_) => false,
                    Change::Unchanged => return None,
                };
                st.queue.on_event(&ClusterEvent::ClaimChanged {
                    namespace,
                    claim: id,
                    added,
                });
                shared.storage_changed.notify_waiters();
            }
            Err(e) => {
                // A claim we cannot read is one the pods mounting it wait for.
                tracing::warn!(error = %e, "ignoring PersistentVolumeClaim");
                Self::delete(st, &super::key_of(obj));
            }
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        let (ns, name) = split(key);
        st.snap.storage_mut().remove_claim(ns, name);
    }

    fn known_keys(st: &State) -> Vec<String> {
        st.snap.storage().claim_keys()
    }
}

pub(crate) struct Volumes;

impl Handler for Volumes {
    type K = PersistentVolume;
    const KIND: &'static str = "PersistentVolume";

    fn apply(shared: &Shared, st: &mut State, obj: &PersistentVolume) -> Option<Followup> {
        match volume_from_k8s(obj) {
            Ok(v) => {
                if st.snap.storage_mut().upsert_volume(v) == Change::Unchanged {
                    return None;
                }
                st.queue.on_event(&ClusterEvent::VolumeChanged);
                shared.storage_changed.notify_waiters();
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring PersistentVolume");
                Self::delete(st, &super::key_of(obj));
            }
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        st.snap.storage_mut().remove_volume(key);
    }

    fn known_keys(st: &State) -> Vec<String> {
        st.snap.storage().volume_names()
    }
}

pub(crate) struct Classes;

impl Handler for Classes {
    type K = StorageClass;
    const KIND: &'static str = "StorageClass";

    fn apply(_: &Shared, st: &mut State, obj: &StorageClass) -> Option<Followup> {
        match storage_class_from_k8s(obj) {
            Ok(c) => {
                let topologies = c.allowed_topologies.clone();
                let helps = match st.snap.storage_mut().upsert_class(c) {
                    Change::Added => true,
                    // The binding mode cannot change; the topologies can.
                    Change::Updated(old) => old.allowed_topologies != topologies,
                    Change::Unchanged => false,
                };
                if helps {
                    st.queue.on_event(&ClusterEvent::StorageClassChanged);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring StorageClass");
                Self::delete(st, &super::key_of(obj));
            }
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        st.snap.storage_mut().remove_class(Sym::new(key));
    }

    fn known_keys(st: &State) -> Vec<String> {
        names(st.snap.storage().class_names())
    }
}

fn names(v: Vec<Sym>) -> Vec<String> {
    v.into_iter().map(|s| s.as_str().to_owned()).collect()
}

pub(crate) struct CsiNodes;

impl Handler for CsiNodes {
    type K = CSINode;
    const KIND: &'static str = "CSINode";

    fn apply(_: &Shared, st: &mut State, obj: &CSINode) -> Option<Followup> {
        match csi_node_from_k8s(obj) {
            Ok(n) => {
                if st.snap.storage_mut().upsert_csi_node(n) != Change::Unchanged {
                    st.queue.on_event(&ClusterEvent::CsiNodeChanged);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring CSINode");
                Self::delete(st, &super::key_of(obj));
            }
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        st.snap.storage_mut().remove_csi_node(Sym::new(key));
    }

    fn known_keys(st: &State) -> Vec<String> {
        names(st.snap.storage().csi_node_names())
    }
}

pub(crate) struct CsiDrivers;

impl Handler for CsiDrivers {
    type K = CSIDriver;
    const KIND: &'static str = "CSIDriver";

    fn apply(_: &Shared, st: &mut State, obj: &CSIDriver) -> Option<Followup> {
        match csi_driver_from_k8s(obj) {
            Ok(d) => {
                if st.snap.storage_mut().upsert_driver(d) != Change::Unchanged {
                    st.queue.on_event(&ClusterEvent::StorageCapacityChanged);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring CSIDriver");
                Self::delete(st, &super::key_of(obj));
            }
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        st.snap.storage_mut().remove_driver(Sym::new(key));
    }

    fn known_keys(st: &State) -> Vec<String> {
        names(st.snap.storage().driver_names())
    }
}

pub(crate) struct Capacities;

impl Handler for Capacities {
    type K = CSIStorageCapacity;
    const KIND: &'static str = "CSIStorageCapacity";

    fn apply(_: &Shared, st: &mut State, obj: &CSIStorageCapacity) -> Option<Followup> {
        match capacity_from_k8s(obj) {
            Ok(c) => {
                let limit = c.volume_limit();
                let helps = match st.snap.storage_mut().upsert_capacity(c) {
                    Change::Added => true,
                    // Upstream requeues when the volume limit grew.
                    Change::Updated(old) => limit > old.volume_limit(),
                    Change::Unchanged => false,
                };
                if helps {
                    st.queue.on_event(&ClusterEvent::StorageCapacityChanged);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring CSIStorageCapacity");
                Self::delete(st, &super::key_of(obj));
            }
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        let (ns, name) = split(key);
        st.snap.storage_mut().remove_capacity(ns, name);
    }

    fn known_keys(st: &State) -> Vec<String> {
        st.snap.storage().capacity_keys()
    }
}
