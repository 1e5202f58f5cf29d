//! NodeVolumeLimits (upstream `nodevolumelimits`' CSILimits): a node may
//! attach at most `CSINode.spec.drivers[].allocatable.count` volumes of each
//! CSI driver. A volume mounted by several pods of the node counts once; an
//! in-tree volume whose plugin migrated to CSI (EBS, GCE PD, Azure Disk,
//! Cinder, Portworx) counts against its CSI driver; a claim not bound yet
//! counts against its class's provisioner.

use crate::framework::{retain_nodes, CycleState, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::model::{Claim, CsiNode, InTreePlugin, Pod, PodVolume, Sym, VolumeSource};
use crate::snapshot::{NodeIdx, Snapshot, Storage};
use std::collections::HashMap;

pub const NAME: &str = "NodeVolumeLimits";
pub const ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED: &str = "node(s) exceed max volume count";

/// Node allocatable key of a CSI driver's attach limit (from before CSINode).
const ATTACHABLE_CSI_PREFIX: &str = "attachable-volumes-csi-";

pub struct NodeVolumeLimits;

/// A volume as attach limits count it: its driver and its handle there.
type Attachable = (Sym, String);

/// Upstream `getCSIDriverInfoFromSC`: an unbound claim counts against its
/// class's provisioner (its CSI driver when an in-tree one migrated), under a
/// name no other volume has.
fn from_class(storage: &Storage, csi: Option<&CsiNode>, claim: &Claim) -> Option<Attachable> {
    if claim.class.as_str().is_empty() {
        return None;
    }
    let class = storage.class(claim.class)?;
    let provisioner = class.provisioner.as_str();
    let handle = format!("\u{0}unbound:{}/{}", claim.namespace, claim.name);
    match InTreePlugin::from_name(provisioner) {
        Some(p) if p.migrated_on(csi) => Some((Sym::new(p.csi_driver()), handle)),
        Some(_) => None,
        None => Some((class.provisioner, handle)),
    }
}

/// Upstream `getCSIDriverInfo`: a bound claim's volume as its CSI driver
/// names it; unbound, or its volume unknown, from its class.
fn from_claim(storage: &Storage, csi: Option<&CsiNode>, claim: &Claim) -> Option<Attachable> {
    if claim.volume_name.is_empty() {
        return from_class(storage, csi, claim);
    }
    let Some(pv) = storage.api_volume(&claim.volume_name) else {
        return from_class(storage, csi, claim);
    };
    match &pv.source {
        VolumeSource::Csi { driver, handle } => Some((*driver, handle.clone())),
        VolumeSource::InTree { plugin, handle } if plugin.migrated_on(csi) => {
            Some((Sym::new(plugin.csi_driver()), handle.clone()))
        }
        _ => None,
    }
}

/// Upstream `filterAttachableVolumes`: the pod's volumes that count against a
/// CSI driver's limit. For the pod being scheduled (`new`) a missing claim is
/// an error; an existing pod's is not counted.
fn attachable(
    storage: &Storage,
    csi: Option<&CsiNode>,
    pod: &Pod,
    new: bool,
    out: &mut HashMap<Attachable, ()>,
) -> Result<(), Status> {
    for v in &pod.volumes {
        let found = match v {
            PodVolume::Disk(d) => d.migrated().and_then(|(plugin, handle)| {
                plugin
                    .migrated_on(csi)
                    .then(|| (Sym::new(plugin.csi_driver()), handle))
            }),
            PodVolume::Claim { claim, ephemeral } => {
                let Some(c) = storage.api_claim(pod.key.namespace, claim) else {
                    if new {
                        return Err(Status::unresolvable(
                            NAME,
                            format!(
                                "looking up PVC {}/{claim}: persistentvolumeclaim {claim:?} not found",
                                pod.key.namespace
                            ),
                        ));
                    }
                    continue;
                };
                if *ephemeral && c.owner_uid.as_deref() != Some(pod.uid.as_str()) {
                    return Err(Status::error(
                        NAME,
                        format!(
                            "PVC {}/{claim} was not created for pod {} (pod is not owner)",
                            pod.key.namespace, pod.key
                        ),
                    ));
                }
                from_claim(storage, csi, c)
            }
        };
        if let Some(a) = found {
            out.insert(a, ());
        }
    }
    Ok(())
}

/// The node's attach limits by driver: legacy `attachable-volumes-csi-*`
/// allocatable, overridden by the CSINode's counts (upstream `getVolumeLimits`).
fn limits(snap: &Snapshot, node: NodeIdx, csi: Option<&CsiNode>) -> Vec<(Sym, i64)> {
    let mut out: Vec<(Sym, i64)> = snap.nodes().node[node as usize]
        .allocatable
        .scalars
        .iter()
        .filter_map(|&(name, v)| {
            name.as_str()
                .strip_prefix(ATTACHABLE_CSI_PREFIX)
                .map(|d| (Sym::new(d), v))
        })
        .collect();
    for (driver, count) in csi.into_iter().flat_map(|c| &c.drivers) {
        if let Some(count) = count {
            match out.iter_mut().find(|(d, _)| d == driver) {
                Some(e) => e.1 = *count,
                None => out.push((*driver, *count)),
            }
        }
    }
    out
}

impl Plugin for NodeVolumeLimits {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// What PreFilter found: the pod's claims that every node's Filter would
/// refuse alike (missing, or an ephemeral claim not the pod's).
struct LimitsState {
    error: Option<Status>,
}

impl PreFilterPlugin for NodeVolumeLimits {
    /// Only claims and migrated inline disks count.
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snap: &Snapshot) -> Status {
        let counts = |v: &PodVolume| match v {
            PodVolume::Claim { .. } => true,
            PodVolume::Disk(d) => d.migrated().is_some(),
        };
        if !pod.volumes.iter().any(counts) {
            return Status::skip();
        }
        // Upstream finds these in Filter, node by node; they do not depend on the node.
        let error = attachable(snap.storage(), None, pod, true, &mut HashMap::new()).err();
        state.write(LimitsState { error });
        Status::success()
    }
}

/// Whether the node limits how many volumes of some driver it attaches: a
/// CSINode, or a legacy `attachable-volumes-csi-*` allocatable.
fn has_limits(snap: &Snapshot, node: NodeIdx) -> bool {
    let n = &snap.nodes().node[node as usize];
    snap.storage().csi_node(n.name).is_some()
        || n.allocatable
            .scalars
            .iter()
            .any(|(name, _)| name.as_str().starts_with(ATTACHABLE_CSI_PREFIX))
}

impl FilterPlugin for NodeVolumeLimits {
    fn filter(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        if let Some(LimitsState { error: Some(st) }) = state.read::<LimitsState>() {
            return st.clone();
        }
        // Most nodes: nothing to count against.
        if !has_limits(snap, node) {
            return Status::success();
        }
        within_limits(pod, snap, node)
    }

    /// `filter` over the nodes, reading PreFilter's state once and passing
    /// the nodes without limits at a glance.
    fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &mut Vec<NodeIdx>,
        rejected: &mut Vec<NodeIdx>,
    ) -> Result<(), Status> {
        if let Some(LimitsState { error: Some(st) }) = state.read::<LimitsState>() {
            return match st.code {
                crate::framework::Code::Error => Err(st.clone()),
                _ => {
                    rejected.append(nodes);
                    Ok(())
                }
            };
        }
        let mut error = None;
        retain_nodes(nodes, rejected, |n| {
            if !has_limits(snap, n) {
                return true;
            }
            let st = within_limits(pod, snap, n);
            if st.code == crate::framework::Code::Error {
                error.get_or_insert(st);
                return true;
            }
            st.is_success()
        });
        error.map_or(Ok(()), Err)
    }

    /// Volumes are attached by the pods placed on the node.
    fn depends_on_placed_pods(&self, _: &CycleState, pod: &Pod) -> bool {
        !pod.volumes.is_empty()
    }
}

/// Upstream's count on a node with limits: the pod's new volumes against
/// each driver's limit, with the volumes the node's pods attach already.
fn within_limits(pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
    let storage = snap.storage();
    let name = snap.nodes().name[node as usize];
    let csi = storage.csi_node(name);
    let mut new = HashMap::new();
    if let Err(st) = attachable(storage, csi, pod, true, &mut new) {
        return st;
    }
    if new.is_empty() {
        return Status::success();
    }
    let limits = limits(snap, node, csi);
    if limits.is_empty() {
        return Status::success();
    }
    // Pods nominated here with priority at least the pod's attach theirs too.
    let mut attached = HashMap::new();
    let nominated = snap.nominated_for(pod, node).map(|n| n.pod.as_ref());
    for other in snap.pods_on(node).map(|e| e.pod.as_ref()).chain(nominated) {
        if other.volumes.is_empty() {
            continue;
        }
        if let Err(st) = attachable(storage, csi, other, false, &mut attached) {
            return st;
        }
    }
    for (driver, limit) in limits {
        let on_node = attached.keys().filter(|(d, _)| *d == driver).count();
        let more = new
            .keys()
            .filter(|a| a.0 == driver && !attached.contains_key(*a))
            .count();
        if more > 0 && (on_node + more) as i64 > limit {
            return Status::unschedulable(NAME, ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED);
        }
    }
    Status::success()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// name, pod, pods on the node, its CSINode, expected verdict.
    type LimitRow = (
        &'static str,
        Pod,
        Vec<Pod>,
        Option<crate::model::CsiNode>,
        (Code, String),
    );
    use crate::framework::Code;
    use crate::model::InlineDisk;
    use crate::plugins::test_support::snapshot_of;
    use crate::testkit::*;

    const EBS: &str = "ebs.csi.aws.com";
    const GCE: &str = "pd.csi.storage.gke.io";

    /// The claims and volumes of upstream's CSILimits test: `csi-ebs-{0..3}`
    /// bound to EBS CSI volumes, `csi-ebs-unbound` of an EBS class,
    /// `csi-gce-0` bound to a GCE CSI volume, `inline-ebs` bound to an in-tree
    /// EBS volume, and `missing-pv` bound to a volume that does not exist.
    fn storage(snap: &mut Snapshot) {
        let s = snap.storage_mut();
        s.upsert_class(storage_class("ebs-sc", EBS, true));
        s.upsert_class(storage_class(
            "intree-ebs-sc",
            "kubernetes.io/aws-ebs",
            true,
        ));
        for i in 0..4 {
            s.upsert_claim(
                claim(&format!("csi-ebs-{i}"), "ebs-sc")
                    .bound(&format!("pv-ebs-{i}"))
                    .build(),
            );
            s.upsert_volume(
                volume(&format!("pv-ebs-{i}"), "ebs-sc")
                    .csi(EBS, &format!("vol-{i}"))
                    .build(),
            );
        }
        s.upsert_claim(claim("csi-ebs-unbound", "ebs-sc").build());
        s.upsert_claim(claim("intree-ebs-unbound", "intree-ebs-sc").build());
        s.upsert_claim(claim("csi-gce-0", "gce-sc").bound("pv-gce-0").build());
        s.upsert_volume(volume("pv-gce-0", "gce-sc").csi(GCE, "gce-0").build());
        s.upsert_claim(claim("intree-ebs", "").bound("pv-intree-ebs").build());
        s.upsert_volume(
            volume("pv-intree-ebs", "")
                .source(VolumeSource::InTree {
                    plugin: InTreePlugin::AwsEbs,
                    handle: "vol-intree".into(),
                })
                .build(),
        );
        s.upsert_claim(claim("missing-pv", "ebs-sc").bound("pv-missing").build());
    }

    fn with_claims(name: &str, claims: &[&str]) -> crate::testkit::PodBuilder {
        claims.iter().fold(pod(name, 1, 1), |p, c| p.claim(c))
    }

    /// The Filter verdict on `n1` with `existing` pods there and the node's CSINode.
    fn verdict(new: Pod, existing: Vec<Pod>, csi: Option<crate::model::CsiNode>) -> (Code, String) {
        let mut snap = snapshot_of(vec![node("n1", 1000, GI).build()], existing);
        storage(&mut snap);
        if let Some(c) = csi {
            snap.storage_mut().upsert_csi_node(c);
        }
        let mut state = CycleState::default();
        let pre = NodeVolumeLimits.pre_filter(&mut state, &new, &snap);
        if pre.code == Code::Skip {
            return (Code::Skip, String::new());
        }
        let st = NodeVolumeLimits.filter(&state, &new, &snap, 0);
        // The batch form keeps the node exactly when `filter` passes it.
        let (mut kept, mut rejected) = (vec![0], Vec::new());
        if NodeVolumeLimits
            .filter_nodes(&state, &new, &snap, &mut kept, &mut rejected)
            .is_ok()
        {
            assert_eq!(
                kept.is_empty(),
                !st.is_success(),
                "filter_nodes and filter disagree"
            );
        }
        (st.code, st.message())
    }

    #[test]
    fn csi_limits_table() {
        let exceeded = || {
            (
                Code::Unschedulable,
                ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED.to_string(),
            )
        };
        let fits = || (Code::Success, String::new());
        let limit = |n: i64| Some(csi_node("n1", &[(EBS, Some(n)), (GCE, Some(1))]));
        let rows: Vec<LimitRow> = vec![
            (
                "no volumes",
                pod("p", 1, 1).build(),
                vec![],
                limit(1),
                (Code::Skip, String::new()),
            ),
            (
                "fits when the limit is not reached",
                with_claims("p", &["csi-ebs-0"]).build(),
                vec![with_claims("o", &["csi-ebs-1"]).on("n1").build()],
                limit(2),
                fits(),
            ),
            (
                "exceeds the limit",
                with_claims("p", &["csi-ebs-0", "csi-ebs-1"]).build(),
                vec![with_claims("o", &["csi-ebs-2"]).on("n1").build()],
                limit(2),
                exceeded(),
            ),
            (
                "a volume already attached counts once",
                with_claims("p", &["csi-ebs-0"]).build(),
                vec![with_claims("o", &["csi-ebs-0", "csi-ebs-1"])
                    .on("n1")
                    .build()],
                limit(2),
                fits(),
            ),
            (
                "other drivers do not count",
                with_claims("p", &["csi-ebs-0"]).build(),
                vec![with_claims("o", &["csi-gce-0"]).on("n1").build()],
                limit(1),
                fits(),
            ),
            (
                "per-driver limit",
                with_claims("p", &["csi-gce-0"]).build(),
                vec![with_claims("o", &["csi-ebs-0"]).on("n1").build()],
                limit(1),
                fits(),
            ),
            (
                "no CSINode: no limit",
                with_claims("p", &["csi-ebs-0", "csi-ebs-1"]).build(),
                vec![with_claims("o", &["csi-ebs-2"]).on("n1").build()],
                None,
                fits(),
            ),
            (
                "driver without a count: no limit",
                with_claims("p", &["csi-ebs-0"]).build(),
                vec![with_claims("o", &["csi-ebs-1"]).on("n1").build()],
                Some(csi_node("n1", &[(EBS, None)])),
                fits(),
            ),
            (
                "an unbound claim counts against its class's driver",
                with_claims("p", &["csi-ebs-unbound"]).build(),
                vec![with_claims("o", &["csi-ebs-1"]).on("n1").build()],
                limit(1),
                exceeded(),
            ),
            (
                "a claim bound to a missing volume counts through its class",
                with_claims("p", &["missing-pv"]).build(),
                vec![with_claims("o", &["csi-ebs-1"]).on("n1").build()],
                limit(1),
                exceeded(),
            ),
            (
                "a migrated in-tree volume counts against the CSI driver",
                with_claims("p", &["intree-ebs"]).build(),
                vec![with_claims("o", &["csi-ebs-1"]).on("n1").build()],
                limit(1),
                exceeded(),
            ),
            (
                "an in-tree class counts when migrated",
                with_claims("p", &["intree-ebs-unbound"]).build(),
                vec![with_claims("o", &["csi-ebs-1"]).on("n1").build()],
                limit(1),
                exceeded(),
            ),
            (
                "a migrated inline disk counts",
                pod("p", 1, 1)
                    .disk(InlineDisk::AwsEbs {
                        volume_id: "aws://z/vol-inline".into(),
                        read_only: false,
                    })
                    .build(),
                vec![with_claims("o", &["csi-ebs-1"]).on("n1").build()],
                limit(1),
                exceeded(),
            ),
            (
                "the same disk inline and as a volume counts once",
                pod("p", 1, 1)
                    .disk(InlineDisk::AwsEbs {
                        volume_id: "vol-intree".into(),
                        read_only: false,
                    })
                    .build(),
                vec![with_claims("o", &["intree-ebs"]).on("n1").build()],
                limit(1),
                fits(),
            ),
            (
                "a missing claim of the new pod",
                with_claims("p", &["nope"]).build(),
                vec![],
                limit(1),
                (
                    Code::UnschedulableAndUnresolvable,
                    "looking up PVC default/nope: persistentvolumeclaim \"nope\" not found".into(),
                ),
            ),
            (
                "a missing claim of a placed pod is not counted",
                with_claims("p", &["csi-ebs-0"]).build(),
                vec![with_claims("o", &["nope"]).on("n1").build()],
                limit(1),
                fits(),
            ),
        ];
        for (name, p, existing, csi, want) in rows {
            assert_eq!(verdict(p, existing, csi), want, "{name}");
        }
    }

    #[test]
    fn in_tree_volumes_count_only_where_a_csi_node_serves_them() {
        // Without a CSINode the migrated in-tree volume is not counted
        // (upstream `isCSIMigrationOn` needs one), so the legacy node
        // allocatable limit does not see it.
        let mut n = node("n1", 1000, GI).build();
        n.allocatable
            .set_scalar(Sym::new("attachable-volumes-csi-ebs.csi.aws.com"), 1);
        let mut snap = snapshot_of(
            vec![n],
            vec![with_claims("o", &["csi-ebs-1"]).on("n1").build()],
        );
        storage(&mut snap);
        let p = with_claims("p", &["intree-ebs"]).build();
        let state = CycleState::default();
        assert!(NodeVolumeLimits.filter(&state, &p, &snap, 0).is_success());
        // The legacy allocatable limit applies to CSI volumes.
        let p = with_claims("p", &["csi-ebs-0"]).build();
        assert_eq!(
            NodeVolumeLimits.filter(&state, &p, &snap, 0).message(),
            ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED
        );
    }
}
