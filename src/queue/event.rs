//! Cluster events and the one table saying which rejected pods an event may help.

use crate::model::{Pod, Sym};

/// Something that changed in the cluster and may make an unschedulable pod fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    NodeAdded,
    NodeUpdated,
    NodeRemoved,
    /// A bound pod was deleted or finished, freeing room; `app` is its Spark application.
    PodDeleted {
        app: Option<Sym>,
    },
    /// An assigned pod's labels changed.
    PodUpdated,
    /// A pod was bound: seen bound for the first time, or our binding of it
    /// confirmed. It may be the pod a required pod affinity term waits for.
    PodAdded,
    /// The set of executors of a Spark application changed (mix and spread shift).
    AppExecutorsChanged {
        app: Sym,
    },
    /// A PersistentVolumeClaim was created (`added`) or changed.
    ClaimChanged {
        namespace: Sym,
        claim: ClaimId,
        added: bool,
    },
    /// A PersistentVolume was created or changed.
    VolumeChanged,
    /// A StorageClass was created, or its allowed topologies changed.
    StorageClassChanged,
    /// A CSINode was created, or its migrated plugins changed.
    CsiNodeChanged,
    /// A CSIDriver changed, or a CSIStorageCapacity was created or grew.
    StorageCapacityChanged,
}

/// A claim's name as a number (events are copied into every pod in flight):
/// a collision only retries a pod early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimId(u64);

impl ClaimId {
    pub fn of(name: &str) -> ClaimId {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same name gives the same id in one process.
        let mut h = std::hash::DefaultHasher::new();
        name.hash(&mut h);
        ClaimId(h.finish())
    }
}

/// Plugin names as the framework reports them in `rejected_by`.
pub mod plugin {
    pub const NODE_NAME: &str = "NodeName";
    pub const NODE_UNSCHEDULABLE: &str = "NodeUnschedulable";
    pub const TAINT_TOLERATION: &str = "TaintToleration";
    pub const NODE_AFFINITY: &str = "NodeAffinity";
    pub const NODE_RESOURCES_FIT: &str = "NodeResourcesFit";
    pub const NODE_PORTS: &str = "NodePorts";
    pub const POD_TOPOLOGY_SPREAD: &str = "PodTopologySpread";
    pub const INTER_POD_AFFINITY: &str = "InterPodAffinity";
    pub const CAPACITY_MIX: &str = "CapacityMix";
    pub const EXECUTOR_SPREAD: &str = "ExecutorSpread";
    pub const DRIVER_ADMISSION: &str = "DriverAdmission";
    pub const DEFAULT_PREEMPTION: &str = "DefaultPreemption";
    pub const SPARK_PREEMPTION: &str = "SparkPreemption";
    pub const VOLUME_RESTRICTIONS: &str = "VolumeRestrictions";
    pub const NODE_VOLUME_LIMITS: &str = "NodeVolumeLimits";
    pub const VOLUME_BINDING: &str = "VolumeBinding";
    pub const VOLUME_ZONE: &str = "VolumeZone";
    pub const GPU_SHARE: &str = "GpuShare";
}

use plugin::*;

/// Rejections a freed slot on some node may lift: resources (GPU cards too), ports,
/// spread counts, the app's capacity mix and admission, and preemption (fewer victims
/// needed). Node-local properties (name, cordon, taints, affinity) don't change when a
/// pod leaves.
const HELPED_BY_POD_DELETED: &[&str] = &[
    NODE_RESOURCES_FIT,
    GPU_SHARE,
    NODE_PORTS,
    VOLUME_RESTRICTIONS,
    NODE_VOLUME_LIMITS,
    POD_TOPOLOGY_SPREAD,
    INTER_POD_AFFINITY,
    CAPACITY_MIX,
    EXECUTOR_SPREAD,
    DRIVER_ADMISSION,
    DEFAULT_PREEMPTION,
    SPARK_PREEMPTION,
];

/// Label changes on assigned pods only shift the counts that spread constraints
/// and inter-pod terms select.
const HELPED_BY_POD_UPDATED: &[&str] = &[POD_TOPOLOGY_SPREAD, INTER_POD_AFFINITY, EXECUTOR_SPREAD];

/// A new pod may be the one a required pod affinity term waits for, or raise
/// the count of the emptiest spread domain, which lowers every other domain's
/// skew (upstream's PodTopologySpread registers pod adds too).
const HELPED_BY_POD_ADDED: &[&str] = &[INTER_POD_AFFINITY, POD_TOPOLOGY_SPREAD];

/// Per-application state: only that app's mix, spread and driver admission move.
const HELPED_BY_APP_EXECUTORS_CHANGED: &[&str] = &[CAPACITY_MIX, EXECUTOR_SPREAD, DRIVER_ADMISSION];

/// A claim the pod mounts was created: upstream's four volume plugins register
/// PVC creation (a missing claim is why a pod waits right after Spark creates it).
const HELPED_BY_CLAIM_ADDED: &[&str] = &[
    VOLUME_BINDING,
    VOLUME_ZONE,
    VOLUME_RESTRICTIONS,
    NODE_VOLUME_LIMITS,
];

/// A claim the pod mounts changed (bound, provisioned, its selected node reset).
const HELPED_BY_CLAIM_UPDATED: &[&str] = &[VOLUME_BINDING, VOLUME_ZONE];

/// Volumes and classes: what can be bound or provisioned, and volume zones.
const HELPED_BY_VOLUME_OR_CLASS: &[&str] = &[VOLUME_BINDING, VOLUME_ZONE];

/// A node's CSI drivers: in-tree migration and attach limits.
const HELPED_BY_CSI_NODE: &[&str] = &[VOLUME_BINDING, NODE_VOLUME_LIMITS];

/// Whether `event` could make `pod`, last rejected by the plugins in `rejected_by`, schedulable.
///
/// | event | helps |
/// |---|---|
/// | `NodeAdded`, `NodeUpdated` | every pod |
/// | `NodeRemoved` | no pod |
/// | `PodDeleted { app }` | pods rejected by `NodeResourcesFit`, `GpuShare`, `NodePorts`, `PodTopologySpread`, `InterPodAffinity`, `CapacityMix`, `ExecutorSpread`, `DriverAdmission`, `DefaultPreemption` or `SparkPreemption`; and pods of `app` |
/// | `PodUpdated` | pods rejected by `PodTopologySpread`, `InterPodAffinity` or `ExecutorSpread` |
/// | `PodAdded` | pods rejected by `InterPodAffinity` or `PodTopologySpread` |
/// | `AppExecutorsChanged { app }` | pods of `app` rejected by `CapacityMix`, `ExecutorSpread` or `DriverAdmission` |
/// | `ClaimChanged { added: true }` | pods mounting the claim rejected by `VolumeBinding`, `VolumeZone`, `VolumeRestrictions` or `NodeVolumeLimits` |
/// | `ClaimChanged { added: false }` | pods mounting the claim rejected by `VolumeBinding` or `VolumeZone` |
/// | `VolumeChanged`, `StorageClassChanged` | pods rejected by `VolumeBinding` or `VolumeZone` |
/// | `CsiNodeChanged` | pods rejected by `VolumeBinding` or `NodeVolumeLimits` |
/// | `StorageCapacityChanged` | pods rejected by `VolumeBinding` |
///
/// (`PodDeleted` also helps `VolumeRestrictions` and `NodeVolumeLimits`: a
/// disk, a ReadWriteOncePod claim or an attach slot is freed.)
///
/// A pod with no recorded rejector (it failed on an error) is helped by every event.
/// Being helped is a conservative "may": the pod is retried, not promised a node.
pub fn event_may_help(event: &ClusterEvent, pod: &Pod, rejected_by: &[&'static str]) -> bool {
    if rejected_by.is_empty() {
        return true;
    }
    let rejected_by_any = |plugins: &[&str]| rejected_by.iter().any(|r| plugins.contains(r));
    let pod_app = pod.spark.as_ref().map(|s| s.app);
    match event {
        ClusterEvent::NodeAdded | ClusterEvent::NodeUpdated => true,
        ClusterEvent::NodeRemoved => false,
        ClusterEvent::PodDeleted { app } => {
            rejected_by_any(HELPED_BY_POD_DELETED) || (app.is_some() && pod_app == *app)
        }
        ClusterEvent::PodUpdated => rejected_by_any(HELPED_BY_POD_UPDATED),
        ClusterEvent::PodAdded => rejected_by_any(HELPED_BY_POD_ADDED),
        ClusterEvent::AppExecutorsChanged { app } => {
            pod_app == Some(*app) && rejected_by_any(HELPED_BY_APP_EXECUTORS_CHANGED)
        }
        ClusterEvent::ClaimChanged {
            namespace,
            claim,
            added,
        } => {
            let plugins = if *added {
                HELPED_BY_CLAIM_ADDED
            } else {
                HELPED_BY_CLAIM_UPDATED
            };
            pod.key.namespace == *namespace
                && pod
                    .volumes
                    .iter()
                    .filter_map(crate::model::PodVolume::claim)
                    .any(|c| ClaimId::of(c) == *claim)
                && rejected_by_any(plugins)
        }
        ClusterEvent::VolumeChanged | ClusterEvent::StorageClassChanged => {
            rejected_by_any(HELPED_BY_VOLUME_OR_CLASS)
        }
        ClusterEvent::CsiNodeChanged => rejected_by_any(HELPED_BY_CSI_NODE),
        ClusterEvent::StorageCapacityChanged => rejected_by_any(&[VOLUME_BINDING]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Resources, SparkIdentity, SparkRole};

    fn pod_of_app(app: Option<&str>) -> Pod {
        let mut p = Pod::new("ns", "p", Resources::default());
        p.spark = app.map(|a| SparkIdentity {
            role: SparkRole::Executor,
            app: Sym::new(a),
        });
        p
    }

    #[test]
    fn claim_events_help_the_pods_mounting_the_claim() {
        let pod = crate::testkit::pod("exec-1", 1, 1)
            .namespace("spark")
            .claim("exec-1-pvc-0")
            .build();
        let ev = |ns: &str, claim: &str, added| ClusterEvent::ClaimChanged {
            namespace: Sym::new(ns),
            claim: ClaimId::of(claim),
            added,
        };
        // (event, rejected_by, helps)
        let table: &[(ClusterEvent, &[&'static str], bool)] = &[
            (
                ev("spark", "exec-1-pvc-0", true),
                &[VOLUME_RESTRICTIONS],
                true,
            ),
            (ev("spark", "exec-1-pvc-0", true), &[VOLUME_BINDING], true),
            (
                ev("spark", "exec-1-pvc-0", true),
                &[NODE_VOLUME_LIMITS],
                true,
            ),
            (ev("spark", "exec-1-pvc-0", false), &[VOLUME_BINDING], true),
            (
                ev("spark", "exec-1-pvc-0", false),
                &[VOLUME_RESTRICTIONS],
                false,
            ),
            (
                ev("spark", "exec-1-pvc-0", true),
                &[NODE_RESOURCES_FIT],
                false,
            ),
            (ev("spark", "exec-2-pvc-0", true), &[VOLUME_BINDING], false),
            (ev("other", "exec-1-pvc-0", true), &[VOLUME_BINDING], false),
        ];
        for (i, (event, rejected_by, want)) in table.iter().enumerate() {
            assert_eq!(event_may_help(event, &pod, rejected_by), *want, "row {i}");
        }
    }

    #[test]
    fn rule_table() {
        let a = Some(Sym::new("app-a"));
        let b = Sym::new("app-b");
        let deleted_a = ClusterEvent::PodDeleted { app: a };
        let deleted_none = ClusterEvent::PodDeleted { app: None };
        let exec_a = ClusterEvent::AppExecutorsChanged {
            app: Sym::new("app-a"),
        };
        let exec_b = ClusterEvent::AppExecutorsChanged { app: b };
        // (event, pod app, rejected_by, helps)
        let table: &[(ClusterEvent, Option<&str>, &[&'static str], bool)] = &[
            (ClusterEvent::NodeAdded, None, &[TAINT_TOLERATION], true),
            (ClusterEvent::NodeUpdated, None, &[NODE_NAME], true),
            (
                ClusterEvent::NodeRemoved,
                None,
                &[NODE_RESOURCES_FIT],
                false,
            ),
            (ClusterEvent::NodeRemoved, None, &[], true),
            (deleted_none, None, &[NODE_RESOURCES_FIT], true),
            (deleted_none, None, &[NODE_PORTS], true),
            (deleted_none, None, &[GPU_SHARE], true),
            (ClusterEvent::PodAdded, None, &[GPU_SHARE], false),
            (deleted_none, None, &[SPARK_PREEMPTION], true),
            (deleted_none, None, &[TAINT_TOLERATION], false),
            (
                deleted_none,
                None,
                &[NODE_AFFINITY, NODE_UNSCHEDULABLE],
                false,
            ),
            (
                deleted_none,
                None,
                &[TAINT_TOLERATION, NODE_RESOURCES_FIT],
                true,
            ),
            (deleted_a, Some("app-a"), &[TAINT_TOLERATION], true),
            (deleted_a, Some("app-b"), &[TAINT_TOLERATION], false),
            (deleted_none, Some("app-a"), &[TAINT_TOLERATION], false),
            (ClusterEvent::PodUpdated, None, &[POD_TOPOLOGY_SPREAD], true),
            (ClusterEvent::PodUpdated, None, &[EXECUTOR_SPREAD], true),
            (ClusterEvent::PodUpdated, None, &[NODE_RESOURCES_FIT], false),
            (ClusterEvent::PodUpdated, None, &[INTER_POD_AFFINITY], true),
            (deleted_none, None, &[INTER_POD_AFFINITY], true),
            (ClusterEvent::PodAdded, None, &[INTER_POD_AFFINITY], true),
            (ClusterEvent::PodAdded, None, &[NODE_RESOURCES_FIT], false),
            (ClusterEvent::PodAdded, None, &[POD_TOPOLOGY_SPREAD], true),
            (exec_a, Some("app-a"), &[CAPACITY_MIX], true),
            (exec_a, Some("app-a"), &[DRIVER_ADMISSION], true),
            (exec_a, Some("app-a"), &[NODE_RESOURCES_FIT], false),
            (exec_b, Some("app-a"), &[CAPACITY_MIX], false),
            (exec_a, None, &[CAPACITY_MIX], false),
            (deleted_none, None, &[VOLUME_RESTRICTIONS], true),
            (deleted_none, None, &[NODE_VOLUME_LIMITS], true),
            (deleted_none, None, &[VOLUME_BINDING], false),
            (ClusterEvent::VolumeChanged, None, &[VOLUME_BINDING], true),
            (ClusterEvent::VolumeChanged, None, &[VOLUME_ZONE], true),
            (
                ClusterEvent::VolumeChanged,
                None,
                &[NODE_VOLUME_LIMITS],
                false,
            ),
            (
                ClusterEvent::StorageClassChanged,
                None,
                &[VOLUME_BINDING],
                true,
            ),
            (
                ClusterEvent::StorageClassChanged,
                None,
                &[NODE_RESOURCES_FIT],
                false,
            ),
            (
                ClusterEvent::CsiNodeChanged,
                None,
                &[NODE_VOLUME_LIMITS],
                true,
            ),
            (ClusterEvent::CsiNodeChanged, None, &[VOLUME_ZONE], false),
            (
                ClusterEvent::StorageCapacityChanged,
                None,
                &[VOLUME_BINDING],
                true,
            ),
            (
                ClusterEvent::StorageCapacityChanged,
                None,
                &[VOLUME_ZONE],
                false,
            ),
        ];
        for (i, (event, app, rejected_by, want)) in table.iter().enumerate() {
            let pod = pod_of_app(*app);
            assert_eq!(
                event_may_help(event, &pod, rejected_by),
                *want,
                "row {i}: {event:?} app {app:?} rejected_by {rejected_by:?}"
            );
        }
    }
}
