//! Upstream's cases (`volume_binding_test.go`, `binder_test.go`'s
//! FindPodVolumes, provisioning, capacity and assume tables), written as
//! tables over a snapshot.

use super::*;
use crate::framework::{Code, CycleState};
use crate::model::{AccessModes, Claim, PersistentVolume, StorageClass, VolumePhase};
use crate::plugins::test_support::snapshot_of;
use crate::snapshot::Snapshot;
use crate::testkit::*;

/// name, the pod's claims, claims, volumes, expected (static bindings, claims to provision) or error.
type FindRow = (
    &'static str,
    Vec<&'static str>,
    Vec<Claim>,
    Vec<PersistentVolume>,
    Result<(Vec<String>, Vec<String>), String>,
);

const WAIT: &str = "wait-sc";
const WAIT_HDD: &str = "wait-hdd-sc";
const IMMEDIATE: &str = "immediate-sc";
const PROVISIONER: &str = "test-provisioner";

/// Nodes `node-a`, `node-b`, `node-c` (hostname labels), the test classes, and
/// the given claims and volumes.
fn env(claims: Vec<Claim>, volumes: Vec<PersistentVolume>) -> Snapshot {
    let nodes = ["node-a", "node-b", "node-c"]
        .map(|n| node(n, 4000, 16 * GI).label("zone", "z1").build())
        .to_vec();
    let mut snap = snapshot_of(nodes, vec![]);
    let s = snap.storage_mut();
    for c in [
        storage_class(WAIT, "", true),
        storage_class(WAIT_HDD, "", true),
        storage_class(IMMEDIATE, "", false),
    ] {
        s.upsert_class(c);
    }
    for c in claims {
        s.upsert_claim(c);
    }
    for v in volumes {
        s.upsert_volume(v);
    }
    snap
}

fn add_class(snap: &mut Snapshot, class: StorageClass) {
    snap.storage_mut().upsert_class(class);
}

/// PreFilter's status, then (when it did not reject) each node's Filter
/// status, in node order; the success message is "".
fn run(pod: &crate::model::Pod, snap: &Snapshot) -> (Code, String, Vec<String>) {
    let mut state = CycleState::default();
    let pre = VolumeBinding.pre_filter(&mut state, pod, snap);
    if pre.code != Code::Success {
        return (pre.code, pre.message(), vec![]);
    }
    let verdicts: Vec<String> = snap
        .nodes()
        .live_indices()
        .map(|n| VolumeBinding.filter(&state, pod, snap, n).message())
        .collect();
    // The batch form keeps exactly the nodes `filter` passes.
    let mut kept: Vec<u32> = snap.nodes().live_indices().collect();
    let mut rejected = Vec::new();
    VolumeBinding
        .filter_nodes(&state, pod, snap, &mut kept, &mut rejected)
        .unwrap();
    let passing: Vec<u32> = snap
        .nodes()
        .live_indices()
        .zip(&verdicts)
        .filter(|(_, v)| v.is_empty())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(kept, passing, "filter_nodes and filter disagree");
    (pre.code, String::new(), verdicts)
}

fn hostname(v: VolumeBuilder, n: &str) -> VolumeBuilder {
    v.affinity(crate::model::LABEL_HOSTNAME, &[n])
}

#[test]
fn prefilter_and_filter_table() {
    let ok = String::new;
    let bind = || ERR_REASON_BIND_CONFLICT.to_string();
    // (name, pod, claims, volumes, prefilter code, prefilter message, per-node verdicts)
    type Row = (
        &'static str,
        crate::model::Pod,
        Vec<Claim>,
        Vec<PersistentVolume>,
        Code,
        String,
        Vec<String>,
    );
    let p = || pod("pod-a", 100, GI);
    let rows: Vec<Row> = vec![
        (
            "pod has no pvcs",
            p().build(),
            vec![],
            vec![],
            Code::Skip,
            ok(),
            vec![],
        ),
        (
            "all bound",
            p().claim("pvc-a").build(),
            vec![claim("pvc-a", WAIT).bound("pv-a").build()],
            vec![volume("pv-a", WAIT).build()],
            Code::Success,
            ok(),
            vec![ok(), ok(), ok()],
        ),
        (
            "all bound with local volumes",
            p().claim("pvc-a").claim("pvc-b").build(),
            vec![
                claim("pvc-a", WAIT).bound("pv-a").build(),
                claim("pvc-b", WAIT).bound("pv-b").build(),
            ],
            vec![
                hostname(volume("pv-a", WAIT), "node-a")
                    .phase(VolumePhase::Bound)
                    .build(),
                hostname(volume("pv-b", WAIT), "node-a")
                    .phase(VolumePhase::Bound)
                    .build(),
            ],
            Code::Success,
            ok(),
            vec![
                ok(),
                ERR_REASON_NODE_CONFLICT.into(),
                ERR_REASON_NODE_CONFLICT.into(),
            ],
        ),
        (
            "PVC does not exist",
            p().claim("pvc-a").build(),
            vec![],
            vec![],
            Code::UnschedulableAndUnresolvable,
            r#"persistentvolumeclaim "pvc-a" not found"#.into(),
            vec![],
        ),
        (
            "part of PVCs do not exist",
            p().claim("pvc-a").claim("pvc-b").build(),
            vec![claim("pvc-a", WAIT).bound("pv-a").build()],
            vec![],
            Code::UnschedulableAndUnresolvable,
            r#"persistentvolumeclaim "pvc-b" not found"#.into(),
            vec![],
        ),
        (
            "immediate claims not bound",
            p().claim("pvc-a").build(),
            vec![claim("pvc-a", IMMEDIATE).build()],
            vec![],
            Code::UnschedulableAndUnresolvable,
            ERR_UNBOUND_IMMEDIATE.into(),
            vec![],
        ),
        (
            "a claim of a class that does not exist is immediate",
            p().claim("pvc-a").build(),
            vec![claim("pvc-a", "no-such-class").build()],
            vec![],
            Code::UnschedulableAndUnresolvable,
            ERR_UNBOUND_IMMEDIATE.into(),
            vec![],
        ),
        (
            "a pre-bound claim is immediate",
            p().claim("pvc-a").build(),
            vec![claim("pvc-a", WAIT).prebound("pv-a").build()],
            vec![volume("pv-a", WAIT).claimed_by("default", "pvc-a").build()],
            Code::UnschedulableAndUnresolvable,
            ERR_UNBOUND_IMMEDIATE.into(),
            vec![],
        ),
        (
            "unbound claims no matches",
            p().claim("pvc-a").build(),
            vec![claim("pvc-a", WAIT).build()],
            vec![],
            Code::Success,
            ok(),
            vec![bind(), bind(), bind()],
        ),
        (
            "bound and unbound unsatisfied",
            p().claim("pvc-a").claim("pvc-b").build(),
            vec![
                claim("pvc-a", WAIT).bound("pv-a").build(),
                claim("pvc-b", WAIT).build(),
            ],
            vec![volume("pv-a", WAIT).affinity("foo", &["bar"]).build()],
            Code::Success,
            ok(),
            vec![format!("{ERR_REASON_NODE_CONFLICT}, {ERR_REASON_BIND_CONFLICT}"); 3],
        ),
        (
            "pv not found",
            p().claim("pvc-a").build(),
            vec![claim("pvc-a", WAIT).bound("pv-a").build()],
            vec![],
            Code::Success,
            ok(),
            vec![ERR_REASON_PV_NOT_EXIST.into(); 3],
        ),
        (
            "pv not found claim lost",
            p().claim("pvc-a").build(),
            vec![claim("pvc-a", WAIT).bound("pv-a").lost().build()],
            vec![],
            Code::UnschedulableAndUnresolvable,
            r#"persistentvolumeclaim "pvc-a" bound to non-existent persistentvolume "pv-a""#.into(),
            vec![],
        ),
        (
            "claim being deleted",
            p().claim("pvc-a").build(),
            vec![claim("pvc-a", WAIT).deleting().build()],
            vec![],
            Code::UnschedulableAndUnresolvable,
            r#"persistentvolumeclaim "pvc-a" is being deleted"#.into(),
            vec![],
        ),
        (
            "local volumes with close capacity",
            p().claim("pvc-a").build(),
            vec![claim("pvc-a", WAIT).request(50 * GI).build()],
            vec![
                hostname(volume("pv-a-0", WAIT), "node-a")
                    .capacity(200 * GI)
                    .build(),
                hostname(volume("pv-b-0", WAIT), "node-b")
                    .capacity(100 * GI)
                    .build(),
            ],
            Code::Success,
            ok(),
            vec![ok(), ok(), bind()],
        ),
        (
            "local volumes of two classes (multiple pvcs)",
            p().claim("pvc-0").claim("pvc-1").build(),
            vec![
                claim("pvc-0", WAIT).request(50 * GI).build(),
                claim("pvc-1", WAIT_HDD).request(100 * GI).build(),
            ],
            vec![
                hostname(volume("pv-a-0", WAIT), "node-a")
                    .capacity(200 * GI)
                    .build(),
                hostname(volume("pv-a-2", WAIT_HDD), "node-a")
                    .capacity(200 * GI)
                    .build(),
                hostname(volume("pv-b-0", WAIT), "node-b")
                    .capacity(100 * GI)
                    .build(),
            ],
            Code::Success,
            ok(),
            vec![ok(), bind(), bind()],
        ),
    ];
    for (name, pod, claims, volumes, code, msg, verdicts) in rows {
        let snap = env(claims, volumes);
        let got = run(&pod, &snap);
        assert_eq!(got, (code, msg, verdicts), "{name}");
    }
}

/// The chosen volumes and claims to provision on `node`, or the conflicts.
fn find(
    pod: &crate::model::Pod,
    snap: &Snapshot,
    node: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut state = CycleState::default();
    let pre = VolumeBinding.pre_filter(&mut state, pod, snap);
    if !pre.is_success() {
        return Err(format!("prefilter: {}", pre.message()));
    }
    let claims = state.read::<PodClaims>().unwrap();
    let n = snap.nodes().by_name(node).unwrap();
    let mut found = PodVolumes::default();
    match find_pod_volumes(claims, snap, n, Some(&mut found)) {
        Ok(conflicts) if conflicts.any() => Err(conflicts.status().message()),
        Ok(_) => Ok((
            found
                .static_bindings
                .iter()
                .map(|(c, v)| format!("{}->{}", c.name, v.name))
                .collect(),
            found.provisions.iter().map(|c| c.name.clone()).collect(),
        )),
        Err(st) => Err(format!("error: {}", st.message())),
    }
}

#[test]
fn find_pod_volumes_without_provisioning() {
    let a = |v: VolumeBuilder| hostname(v, "node-a");
    let b = |v: VolumeBuilder| hostname(v, "node-b");
    let p = |claims: &[&str]| {
        claims
            .iter()
            .fold(pod("pod", 100, GI), |p, c| p.claim(c))
            .build()
    };
    let ok = |bindings: &[&str]| -> Result<(Vec<String>, Vec<String>), String> {
        Ok((bindings.iter().map(|s| s.to_string()).collect(), vec![]))
    };
    let rows: Vec<FindRow> = vec![
        (
            "unbound-pvc,pv-same-node",
            vec!["unbound"],
            vec![claim("unbound", WAIT).build()],
            vec![a(volume("pv-node1a", WAIT)).build()],
            ok(&["unbound->pv-node1a"]),
        ),
        (
            "unbound-pvc,pv-different-node",
            vec!["unbound"],
            vec![claim("unbound", WAIT).build()],
            vec![b(volume("pv-node2", WAIT)).build()],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "two-unbound-pvcs",
            vec!["unbound", "unbound2"],
            vec![
                claim("unbound", WAIT).build(),
                claim("unbound2", WAIT).build(),
            ],
            vec![
                a(volume("pv-node1a", WAIT)).build(),
                a(volume("pv-node1b", WAIT)).build(),
            ],
            ok(&["unbound->pv-node1a", "unbound2->pv-node1b"]),
        ),
        (
            "two-unbound-pvcs,order-by-size",
            vec!["unbound2", "unbound"],
            vec![
                claim("unbound", WAIT).request(GI).build(),
                claim("unbound2", WAIT).request(5 * GI).build(),
            ],
            vec![
                a(volume("pv-node1a", WAIT)).capacity(10 * GI).build(),
                a(volume("pv-node1b", WAIT)).capacity(GI).build(),
            ],
            ok(&["unbound->pv-node1b", "unbound2->pv-node1a"]),
        ),
        (
            "two-unbound-pvcs,partial-match",
            vec!["unbound", "unbound2"],
            vec![
                claim("unbound", WAIT).build(),
                claim("unbound2", WAIT).build(),
            ],
            vec![a(volume("pv-node1a", WAIT)).build()],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "one-bound,one-unbound",
            vec!["unbound", "bound"],
            vec![
                claim("unbound", WAIT).build(),
                claim("bound", WAIT).bound("pv-bound").build(),
            ],
            vec![
                a(volume("pv-node1a", WAIT)).build(),
                a(volume("pv-bound", WAIT))
                    .claimed_by("default", "bound")
                    .phase(VolumePhase::Bound)
                    .build(),
            ],
            ok(&["unbound->pv-node1a"]),
        ),
        (
            "one-bound,one-unbound,no-match",
            vec!["unbound", "bound"],
            vec![
                claim("unbound", WAIT).build(),
                claim("bound", WAIT).bound("pv-bound").build(),
            ],
            vec![
                b(volume("pv-node2", WAIT)).build(),
                a(volume("pv-bound", WAIT))
                    .phase(VolumePhase::Bound)
                    .build(),
            ],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "immediate-bound-pvc-wrong-node",
            vec!["immediate-bound"],
            vec![claim("immediate-bound", IMMEDIATE)
                .bound("pv-other")
                .build()],
            vec![b(volume("pv-other", IMMEDIATE)).build()],
            Err(ERR_REASON_NODE_CONFLICT.into()),
        ),
        (
            "immediate-unbound-pvc",
            vec!["immediate-unbound"],
            vec![claim("immediate-unbound", IMMEDIATE).build()],
            vec![],
            Err(format!("prefilter: {ERR_UNBOUND_IMMEDIATE}")),
        ),
        (
            "unbound-pvc,pv-too-small",
            vec!["unbound"],
            vec![claim("unbound", WAIT).request(2 * GI).build()],
            vec![a(volume("pv-small", WAIT)).capacity(GI).build()],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "unbound-pvc,pv-claimed-by-another",
            vec!["unbound"],
            vec![claim("unbound", WAIT).build()],
            vec![a(volume("pv-taken", WAIT))
                .claimed_by("default", "other")
                .build()],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "unbound-pvc,pv-wrong-access-modes",
            vec!["unbound"],
            vec![claim("unbound", WAIT).modes(AccessModes::RWX).build()],
            vec![a(volume("pv-rwo", WAIT)).build()],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "unbound-pvc,pv-block-mode-mismatch",
            vec!["unbound"],
            vec![claim("unbound", WAIT).block().build()],
            vec![a(volume("pv-fs", WAIT)).build()],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "unbound-pvc,pv-released",
            vec!["unbound"],
            vec![claim("unbound", WAIT).build()],
            vec![a(volume("pv-released", WAIT))
                .phase(VolumePhase::Released)
                .build()],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "unbound-pvc,selector-mismatch",
            vec!["unbound"],
            vec![claim("unbound", WAIT)
                .selector(selector(&[("tier", "fast")]))
                .build()],
            vec![
                a(volume("pv-slow", WAIT)).label("tier", "slow").build(),
                a(volume("pv-fast", WAIT))
                    .label("tier", "fast")
                    .capacity(9 * GI)
                    .build(),
            ],
            ok(&["unbound->pv-fast"]),
        ),
        (
            "unbound-pvc,pv-being-deleted",
            vec!["unbound"],
            vec![claim("unbound", WAIT).build()],
            vec![a(volume("pv-deleting", WAIT)).deleting().build()],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
    ];
    for (name, claim_names, claims, volumes, want) in rows {
        let snap = env(claims, volumes);
        assert_eq!(find(&p(&claim_names), &snap, "node-a"), want, "{name}");
    }
}

#[test]
fn find_pod_volumes_with_provisioning() {
    let provisioned = || claim("provisioned", "wait-provisioned");
    let rows: Vec<FindRow> = vec![
        (
            "one-provisioned",
            vec!["provisioned"],
            vec![provisioned().build()],
            vec![],
            Ok((vec![], vec!["provisioned".into()])),
        ),
        (
            "two-unbound-pvcs,one-matched,one-provisioned",
            vec!["unbound", "provisioned"],
            vec![claim("unbound", WAIT).build(), provisioned().build()],
            vec![hostname(volume("pv-node1a", WAIT), "node-a").build()],
            Ok((
                vec!["unbound->pv-node1a".into()],
                vec!["provisioned".into()],
            )),
        ),
        (
            "one-bound,one-provisioned",
            vec!["bound", "provisioned"],
            vec![
                claim("bound", WAIT).bound("pv-bound").build(),
                provisioned().build(),
            ],
            vec![volume("pv-bound", WAIT).phase(VolumePhase::Bound).build()],
            Ok((vec![], vec!["provisioned".into()])),
        ),
        (
            "one-binding,one-selected-node",
            vec!["bound", "selected"],
            vec![
                claim("bound", WAIT).bound("pv-bound").build(),
                claim("selected", "wait-provisioned")
                    .selected_node("node-a")
                    .build(),
            ],
            vec![volume("pv-bound", WAIT).phase(VolumePhase::Bound).build()],
            Ok((vec![], vec!["selected".into()])),
        ),
        (
            "selected-node-on-another-node",
            vec!["selected"],
            vec![claim("selected", "wait-provisioned")
                .selected_node("node-b")
                .build()],
            vec![],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "invalid-provisioner",
            vec!["no-provisioner"],
            vec![claim("no-provisioner", "wait-no-provisioner").build()],
            vec![],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
        (
            "volume-topology-unsatisfied",
            vec!["topo-mismatch"],
            vec![claim("topo-mismatch", "wait-topology").build()],
            vec![],
            Err(ERR_REASON_BIND_CONFLICT.into()),
        ),
    ];
    let p = |claims: &[&str]| {
        claims
            .iter()
            .fold(pod("pod", 100, GI), |p, c| p.claim(c))
            .build()
    };
    for (name, claim_names, claims, volumes, want) in rows {
        // Upstream runs each case with no CSIDriver, a driver without capacity
        // tracking and one with it (and no CSIStorageCapacity objects, which
        // then blocks provisioning).
        for (driver, tracks_capacity) in [(false, false), (true, false), (true, true)] {
            let mut snap = env(claims.clone(), volumes.clone());
            add_class(
                &mut snap,
                storage_class("wait-provisioned", PROVISIONER, true),
            );
            add_class(
                &mut snap,
                storage_class("wait-no-provisioner", NO_PROVISIONER, true),
            );
            add_class(
                &mut snap,
                with_topology(
                    storage_class("wait-topology", PROVISIONER, true),
                    "zone",
                    &["z2"],
                ),
            );
            if driver {
                snap.storage_mut()
                    .upsert_driver(csi_driver(PROVISIONER, tracks_capacity));
            }
            let got = find(&p(&claim_names), &snap, "node-a");
            let provisions_anything = want.as_ref().is_ok_and(|(_, p)| !p.is_empty());
            let want = if tracks_capacity && provisions_anything {
                Err(ERR_REASON_NOT_ENOUGH_SPACE.to_string())
            } else {
                want.clone()
            };
            assert_eq!(
                got, want,
                "{name} (driver {driver}, capacity {tracks_capacity})"
            );
        }
    }
}

#[test]
fn storage_capacity_decides_where_volumes_can_be_provisioned() {
    let zone_a = || Some(selector(&[("zone", "z1")]));
    // (name, capacities, want on node-a)
    let rows: Vec<(&str, Vec<crate::model::StorageCapacity>, Result<(), String>)> = vec![
        (
            "no capacity objects",
            vec![],
            Err(ERR_REASON_NOT_ENOUGH_SPACE.into()),
        ),
        (
            "enough capacity",
            vec![storage_capacity(
                "c1",
                "wait-provisioned",
                zone_a(),
                Some(10 * GI),
            )],
            Ok(()),
        ),
        (
            "capacity of another class",
            vec![storage_capacity("c1", "other", zone_a(), Some(10 * GI))],
            Err(ERR_REASON_NOT_ENOUGH_SPACE.into()),
        ),
        (
            "too little capacity",
            vec![storage_capacity(
                "c1",
                "wait-provisioned",
                zone_a(),
                Some(GI / 2),
            )],
            Err(ERR_REASON_NOT_ENOUGH_SPACE.into()),
        ),
        (
            "capacity in another topology",
            vec![storage_capacity(
                "c1",
                "wait-provisioned",
                Some(selector(&[("zone", "z2")])),
                Some(10 * GI),
            )],
            Err(ERR_REASON_NOT_ENOUGH_SPACE.into()),
        ),
        (
            "capacity without topology reaches no node",
            vec![storage_capacity(
                "c1",
                "wait-provisioned",
                None,
                Some(10 * GI),
            )],
            Err(ERR_REASON_NOT_ENOUGH_SPACE.into()),
        ),
        (
            "maximum volume size wins over capacity",
            vec![{
                let mut c = storage_capacity("c1", "wait-provisioned", zone_a(), Some(10 * GI));
                c.maximum_volume_size = Some(GI / 2);
                c
            }],
            Err(ERR_REASON_NOT_ENOUGH_SPACE.into()),
        ),
    ];
    for (name, capacities, want) in rows {
        let mut snap = env(vec![claim("pvc", "wait-provisioned").build()], vec![]);
        add_class(
            &mut snap,
            storage_class("wait-provisioned", PROVISIONER, true),
        );
        let s = snap.storage_mut();
        s.upsert_driver(csi_driver(PROVISIONER, true));
        for c in capacities {
            s.upsert_capacity(c);
        }
        let got = find(&pod("pod", 100, GI).claim("pvc").build(), &snap, "node-a").map(|_| ());
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn ephemeral_claims_must_exist_and_belong_to_the_pod() {
    let p = pod("p", 100, GI)
        .uid("pod-uid")
        .ephemeral_volume("scratch")
        .build();
    let snap = env(vec![], vec![]);
    let mut state = CycleState::default();
    let st = VolumeBinding.pre_filter(&mut state, &p, &snap);
    assert_eq!(
        st.message(),
        r#"waiting for ephemeral volume controller to create the persistentvolumeclaim "p-scratch""#
    );
    let snap = env(
        vec![claim("p-scratch", WAIT).owner("someone-else").build()],
        vec![],
    );
    let st = VolumeBinding.pre_filter(&mut state, &p, &snap);
    assert_eq!(st.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(
        st.message(),
        "PVC default/p-scratch was not created for pod default/p (pod is not owner)"
    );
    let snap = env(
        vec![claim("p-scratch", WAIT).owner("pod-uid").build()],
        vec![],
    );
    assert_eq!(
        VolumeBinding.pre_filter(&mut state, &p, &snap).code,
        Code::Success
    );
}

#[test]
fn a_class_without_binding_mode_is_an_error() {
    let mut snap = env(vec![claim("pvc", "broken").build()], vec![]);
    let mut broken = storage_class("broken", PROVISIONER, true);
    broken.binding_mode = None;
    add_class(&mut snap, broken);
    let mut state = CycleState::default();
    let st = VolumeBinding.pre_filter(&mut state, &pod("p", 1, 1).claim("pvc").build(), &snap);
    assert_eq!(st.code, Code::Error);
    assert_eq!(
        st.message(),
        r#"VolumeBindingMode not set for StorageClass "broken""#
    );
}

#[test]
fn reserve_assumes_so_the_next_pod_takes_another_volume_and_unreserve_releases() {
    let mut snap = env(
        vec![claim("c1", WAIT).build(), claim("c2", WAIT).build()],
        vec![hostname(volume("pv-1", WAIT), "node-a").build()],
    );
    let p1 = pod("p1", 100, GI).claim("c1").build();
    let p2 = pod("p2", 100, GI).claim("c2").build();
    let a = snap.nodes().by_name("node-a").unwrap();
    let mut state = CycleState::default();
    assert!(VolumeBinding
        .pre_filter(&mut state, &p1, &snap)
        .is_success());
    assert!(VolumeBinding
        .reserve(&mut state, &p1, &mut snap, a)
        .is_success());
    let r = snap.storage().reservation(&p1.key).unwrap();
    assert_eq!(r.node.as_str(), "node-a");
    assert_eq!(
        r.static_bindings[0].1.claim_ref.as_ref().unwrap().name,
        "c1"
    );
    assert!(r.static_bindings[0].1.bound_by_controller);
    // The second pod finds the volume taken.
    assert_eq!(
        find(&p2, &snap, "node-a"),
        Err(ERR_REASON_BIND_CONFLICT.into())
    );
    VolumeBinding.unreserve(&mut state, &p1, &mut snap, a);
    assert!(snap.storage().reservation(&p1.key).is_none());
    assert_eq!(
        find(&p2, &snap, "node-a"),
        Ok((vec!["c2->pv-1".into()], vec![]))
    );
}

#[test]
fn reserve_annotates_claims_to_provision_and_others_see_the_selected_node() {
    let mut snap = env(vec![claim("shared", "wait-provisioned").build()], vec![]);
    add_class(
        &mut snap,
        storage_class("wait-provisioned", PROVISIONER, true),
    );
    let p1 = pod("p1", 100, GI).claim("shared").build();
    let b = snap.nodes().by_name("node-b").unwrap();
    let mut state = CycleState::default();
    assert!(VolumeBinding
        .pre_filter(&mut state, &p1, &snap)
        .is_success());
    assert!(VolumeBinding
        .reserve(&mut state, &p1, &mut snap, b)
        .is_success());
    let assumed = snap
        .storage()
        .claim(crate::model::Sym::new("default"), "shared")
        .unwrap();
    assert_eq!(assumed.selected_node.map(|s| s.as_str()), Some("node-b"));
    // A second pod mounting the same claim now fits only where it is provisioned.
    let p2 = pod("p2", 100, GI).claim("shared").build();
    assert_eq!(
        find(&p2, &snap, "node-a"),
        Err(ERR_REASON_BIND_CONFLICT.into())
    );
    assert!(find(&p2, &snap, "node-b").is_ok());
    // Releasing through the snapshot (binding failed) drops the annotation.
    snap.forget(&p1.key);
    let api = snap
        .storage()
        .claim(crate::model::Sym::new("default"), "shared")
        .unwrap();
    assert!(api.selected_node.is_none());
}

#[test]
fn reserve_of_fully_bound_claims_records_nothing() {
    let mut snap = env(
        vec![claim("c", WAIT).bound("pv").build()],
        vec![volume("pv", WAIT).phase(VolumePhase::Bound).build()],
    );
    let p = pod("p", 100, GI).claim("c").build();
    let a = snap.nodes().by_name("node-a").unwrap();
    let mut state = CycleState::default();
    assert!(VolumeBinding.pre_filter(&mut state, &p, &snap).is_success());
    assert!(VolumeBinding
        .reserve(&mut state, &p, &mut snap, a)
        .is_success());
    assert!(snap.storage().reservation(&p.key).is_none());
}
