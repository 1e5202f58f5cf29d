//! The simulator's stand-in for the PV controller and CSI provisioners. When
//! a pod's binding is confirmed, what VolumeBinding's Reserve assumed for it
//! happens at once (the bind latency covers provisioning): each static volume
//! is bound to its claim; each claim to provision gets a new volume of its
//! size in the chosen node's zone (on the node itself when it has no zone
//! label), attached by its class's provisioner, bound to it. Spark's OnDemand
//! claims are deleted with their executor, and their volumes with them
//! (reclaim policy `Delete`).

use crate::model::{Claim, ClaimRef, PersistentVolume, PodKey, Sym, VolumePhase, LABEL_ZONE};
use crate::sim::trace::volume_at;
use crate::snapshot::Snapshot;

/// The next resource version: the snapshot then drops its assumption.
fn next_version(rv: &str) -> String {
    (rv.parse::<u64>().unwrap_or(0) + 1).to_string()
}

fn bind(snap: &mut Snapshot, claim: &Claim, mut volume: PersistentVolume, node: Option<Sym>) {
    volume.phase = VolumePhase::Bound;
    volume.claim_ref = Some(ClaimRef {
        namespace: claim.namespace,
        name: claim.name.clone(),
        uid: claim.uid.clone(),
    });
    volume.resource_version = next_version(&volume.resource_version);
    let storage = snap.storage_mut();
    let mut c = storage
        .api_claim(claim.namespace, &claim.name)
        .map(|c| (**c).clone())
        .unwrap_or_else(|| claim.clone());
    c.volume_name = volume.name.clone();
    c.bind_completed = true;
    if node.is_some() {
        c.selected_node = node;
    }
    c.resource_version = next_version(&c.resource_version);
    storage.upsert_volume(volume);
    storage.upsert_claim(c);
}

/// Binds `claim` to `volume` (a `claim_add` naming its volume).
pub fn bind_to(snap: &mut Snapshot, claim: &Claim, volume: PersistentVolume) {
    bind(snap, claim, volume, None);
}

/// Binds and provisions what Reserve assumed for `pod`; whether it had anything.
pub fn bind_reserved(snap: &mut Snapshot, pod: &PodKey) -> bool {
    let Some(r) = snap.storage_mut().complete(pod) else {
        return false;
    };
    let zone = snap.nodes().get(r.node).and_then(|i| {
        snap.nodes().node[i as usize]
            .labels
            .get(Sym::new(LABEL_ZONE))
    });
    for (claim, volume) in &r.static_bindings {
        bind(snap, claim, (**volume).clone(), None);
    }
    for claim in &r.provisions {
        let driver = snap
            .storage()
            .class(claim.class)
            .map(|c| c.provisioner.as_str());
        let node = r.node.as_str();
        let volume = volume_at(
            &format!("pvc-{}-{}", claim.namespace, claim.name),
            claim.class,
            claim.request,
            zone.map(Sym::as_str),
            zone.is_none().then_some(node),
            driver,
        );
        bind(snap, claim, volume, Some(r.node));
    }
    true
}

/// Deletes a claim and the volume bound to it.
pub fn delete_claim(snap: &mut Snapshot, namespace: Sym, name: &str) {
    let storage = snap.storage_mut();
    if let Some(c) = storage.remove_claim(namespace, name) {
        if !c.volume_name.is_empty() {
            storage.remove_volume(&c.volume_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{CycleState, PreFilterPlugin, ReservePlugin};
    use crate::plugins::VolumeBinding;
    use crate::testkit::*;

    #[test]
    fn provisioned_volumes_land_in_the_nodes_zone_and_bind() {
        let mut snap = crate::plugins::test_support::snapshot_of(
            vec![node("n1", 4000, 16 * GI).zone("zone-b").build()],
            vec![],
        );
        snap.storage_mut()
            .upsert_class(storage_class("gp3", "ebs.csi.aws.com", true));
        snap.storage_mut()
            .upsert_claim(claim("exec-pvc-0", "gp3").request(200 * GI).build());
        let p = pod("exec", 1000, GI).claim("exec-pvc-0").build();
        let mut state = CycleState::default();
        assert!(VolumeBinding.pre_filter(&mut state, &p, &snap).is_success());
        assert!(VolumeBinding
            .reserve(&mut state, &p, &mut snap, 0)
            .is_success());
        assert!(bind_reserved(&mut snap, &p.key));
        let s = snap.storage();
        let c = s.claim(Sym::new("default"), "exec-pvc-0").unwrap();
        assert!(c.fully_bound());
        assert_eq!(c.selected_node, Some(Sym::new("n1")));
        let v = s.volume(&c.volume_name).unwrap();
        assert_eq!(v.capacity, 200 * GI);
        assert_eq!(v.labels.get_str(LABEL_ZONE), Some("zone-b"));
        assert!(s.reservation(&p.key).is_none());
        // Deleted with its executor, volume and all.
        let name = c.volume_name.clone();
        delete_claim(&mut snap, Sym::new("default"), "exec-pvc-0");
        assert!(snap.storage().volume(&name).is_none());
    }
}
