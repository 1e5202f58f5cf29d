//! Storage as the scheduler sees it: the volumes a pod mounts, claims,
//! persistent volumes, storage classes, and the CSI objects that bound where a
//! volume can go (attach limits, storage capacity). Converted once from the
//! Kubernetes objects (`volume_convert`); names that come and go with pods
//! (claims, volumes) stay strings, names from a bounded set are interned.

use super::{LabelSelector, Labels, NodeSelectorTerm, Sym};
use serde::Serialize;

/// On a claim: the node the scheduler chose for dynamic provisioning.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On a claim: the PV controller finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a volume or claim: the binding was made by a controller (the scheduler's
/// static binding sets it on the volume, as the PV controller does).
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The storage class name, before `spec.storageClassName` existed; still read first.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// On a CSINode: the in-tree plugins whose volumes the node's CSI drivers serve.
pub const ANN_MIGRATED_PLUGINS: &str = "storage.alpha.kubernetes.io/migrated-plugins";
/// A storage class provisioner that provisions nothing (static volumes only).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Access modes as bits (`ReadWriteOnce`, `ReadOnlyMany`, `ReadWriteMany`, `ReadWriteOncePod`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct AccessModes(pub u8);

impl AccessModes {
    pub const RWO: AccessModes = AccessModes(1);
    pub const ROX: AccessModes = AccessModes(2);
    pub const RWX: AccessModes = AccessModes(4);
    pub const RWOP: AccessModes = AccessModes(8);

    pub fn parse(mode: &str) -> Option<AccessModes> {
        Some(match mode {
            "ReadWriteOnce" => AccessModes::RWO,
            "ReadOnlyMany" => AccessModes::ROX,
            "ReadWriteMany" => AccessModes::RWX,
            "ReadWriteOncePod" => AccessModes::RWOP,
            _ => return None,
        })
    }

    pub fn with(self, other: AccessModes) -> AccessModes {
        AccessModes(self.0 | other.0)
    }

    pub fn contains(self, other: AccessModes) -> bool {
        self.0 & other.0 == other.0
    }
}

/// An in-tree disk a pod declares inline (no claim). VolumeRestrictions checks
/// the first four for conflicts; NodeVolumeLimits counts the ones whose plugin
/// migrated to a CSI driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum InlineDisk {
    GcePd {
        pd_name: String,
        read_only: bool,
    },
    AwsEbs {
        volume_id: String,
        read_only: bool,
    },
    Iscsi {
        iqn: String,
        read_only: bool,
    },
    Rbd {
        monitors: Vec<String>,
        pool: String,
        image: String,
        read_only: bool,
    },
    AzureDisk {
        disk_uri: String,
    },
    Cinder {
        volume_id: String,
    },
    Portworx {
        volume_id: String,
    },
}

impl InlineDisk {
    /// Upstream VolumeRestrictions' `isVolumeConflict` for one pair of volumes:
    /// the same GCE disk unless both mount it read-only, the same EBS volume,
    /// the same iSCSI IQN or RBD image (a shared monitor, pool and image)
    /// unless both are read-only.
    pub fn conflicts(&self, other: &InlineDisk) -> bool {
        use InlineDisk::*;
        match (self, other) {
            (
                GcePd {
                    pd_name: a,
                    read_only: ra,
                },
                GcePd {
                    pd_name: b,
                    read_only: rb,
                },
            ) => a == b && !(*ra && *rb),
            (AwsEbs { volume_id: a, .. }, AwsEbs { volume_id: b, .. }) => a == b,
            (
                Iscsi {
                    iqn: a,
                    read_only: ra,
                },
                Iscsi {
                    iqn: b,
                    read_only: rb,
                },
            ) => a == b && !(*ra && *rb),
            (
                Rbd {
                    monitors: ma,
                    pool: pa,
                    image: ia,
                    read_only: ra,
                },
                Rbd {
                    monitors: mb,
                    pool: pb,
                    image: ib,
                    read_only: rb,
                },
            ) => ma.iter().any(|m| mb.contains(m)) && pa == pb && ia == ib && !(*ra && *rb),
            _ => false,
        }
    }

    /// Whether VolumeRestrictions checks it for conflicts.
    pub fn restricted(&self) -> bool {
        matches!(
            self,
            InlineDisk::GcePd { .. }
                | InlineDisk::AwsEbs { .. }
                | InlineDisk::Iscsi { .. }
                | InlineDisk::Rbd { .. }
        )
    }

    /// The in-tree plugin, and the volume as its CSI driver would name it, for
    /// the disks whose plugin migrated to CSI (upstream's inline translation).
    pub fn migrated(&self) -> Option<(InTreePlugin, String)> {
        Some(match self {
            InlineDisk::AwsEbs { volume_id, .. } => {
                (InTreePlugin::AwsEbs, ebs_volume_handle(volume_id))
            }
            InlineDisk::GcePd { pd_name, .. } => (InTreePlugin::GcePd, pd_name.clone()),
            InlineDisk::AzureDisk { disk_uri } => (InTreePlugin::AzureDisk, disk_uri.clone()),
            InlineDisk::Cinder { volume_id } => (InTreePlugin::Cinder, volume_id.clone()),
            InlineDisk::Portworx { volume_id } => (InTreePlugin::Portworx, volume_id.clone()),
            InlineDisk::Iscsi { .. } | InlineDisk::Rbd { .. } => return None,
        })
    }
}

/// An EBS volume ID as the EBS CSI driver names it: `aws://zone/vol-x` → `vol-x`.
pub fn ebs_volume_handle(volume_id: &str) -> String {
    volume_id.rsplit('/').next().unwrap_or(volume_id).to_owned()
}

/// The in-tree volume plugins whose volumes the scheduler counts against a CSI
/// driver's attach limit once migrated (upstream's `isCSIMigrationOn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum InTreePlugin {
    AwsEbs,
    GcePd,
    AzureDisk,
    Cinder,
    Portworx,
}

impl InTreePlugin {
    pub fn name(self) -> &'static str {
        match self {
            InTreePlugin::AwsEbs => "kubernetes.io/aws-ebs",
            InTreePlugin::GcePd => "kubernetes.io/gce-pd",
            InTreePlugin::AzureDisk => "kubernetes.io/azure-disk",
            InTreePlugin::Cinder => "kubernetes.io/cinder",
            InTreePlugin::Portworx => "kubernetes.io/portworx-volume",
        }
    }

    /// The CSI driver the plugin migrated to.
    pub fn csi_driver(self) -> &'static str {
        match self {
            InTreePlugin::AwsEbs => "ebs.csi.aws.com",
            InTreePlugin::GcePd => "pd.csi.storage.gke.io",
            InTreePlugin::AzureDisk => "disk.csi.azure.com",
            InTreePlugin::Cinder => "cinder.csi.openstack.org",
            InTreePlugin::Portworx => "pxd.portworx.com",
        }
    }

    pub fn from_name(name: &str) -> Option<InTreePlugin> {
        [
            InTreePlugin::AwsEbs,
            InTreePlugin::GcePd,
            InTreePlugin::AzureDisk,
            InTreePlugin::Cinder,
            InTreePlugin::Portworx,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }

    /// Upstream (1.33) `isCSIMigrationOn`: a node with a CSINode serves the
    /// migrated EBS, GCE PD, Azure Disk and Cinder volumes through their CSI
    /// drivers; Portworx only where the CSINode lists it as migrated.
    pub fn migrated_on(self, csi_node: Option<&CsiNode>) -> bool {
        let Some(csi) = csi_node else {
            return false;
        };
        match self {
            InTreePlugin::Portworx => csi.migrated_plugins.iter().any(|p| p == self.name()),
            _ => true,
        }
    }
}

/// A volume of a pod that the volume plugins look at (other kinds, such as
/// `emptyDir` or `configMap`, are not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PodVolume {
    /// A PersistentVolumeClaim in the pod's namespace: named in the pod, or
    /// (`ephemeral`, a generic ephemeral volume) `<pod>-<volume>`, which must
    /// then be owned by the pod.
    Claim {
        claim: String,
        ephemeral: bool,
    },
    Disk(InlineDisk),
}

impl PodVolume {
    pub fn claim(&self) -> Option<&str> {
        match self {
            PodVolume::Claim { claim, .. } => Some(claim),
            PodVolume::Disk(_) => None,
        }
    }

    /// The claim the pod names itself (not a generic ephemeral volume's).
    pub fn named_claim(&self) -> Option<&String> {
        match self {
            PodVolume::Claim {
                claim,
                ephemeral: false,
            } => Some(claim),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VolumePhase {
    Pending,
    Available,
    Bound,
    Released,
    Failed,
}

/// What backs a persistent volume, as far as attach limits go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum VolumeSource {
    Csi {
        driver: Sym,
        handle: String,
    },
    /// An in-tree volume whose plugin migrated to CSI, with the handle its CSI
    /// driver gives it.
    InTree {
        plugin: InTreePlugin,
        handle: String,
    },
    Other,
}

/// A claim a volume is (pre-)bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimRef {
    pub namespace: Sym,
    pub name: String,
    /// Empty when the binding names the claim only (pre-bound by a user).
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersistentVolume {
    pub name: String,
    pub labels: Labels,
    /// `volume.beta.kubernetes.io/storage-class` if set, else `spec.storageClassName`.
    pub class: Sym,
    /// `spec.capacity.storage` in bytes.
    pub capacity: i64,
    pub access_modes: AccessModes,
    pub block: bool,
    pub attributes_class: Sym,
    pub claim_ref: Option<ClaimRef>,
    pub phase: VolumePhase,
    /// `spec.nodeAffinity.required` terms (ORed); `None`: any node.
    pub node_affinity: Option<Vec<NodeSelectorTerm>>,
    pub source: VolumeSource,
    pub deleting: bool,
    pub bound_by_controller: bool,
    pub resource_version: String,
}

impl PersistentVolume {
    /// Upstream `CheckNodeAffinity`: the required terms match the node's labels.
    pub fn fits_node(&self, node_labels: &Labels, node_name: Sym) -> bool {
        match &self.node_affinity {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(node_labels, node_name)),
        }
    }

    /// Upstream `IsVolumeBoundToClaim`.
    pub fn bound_to(&self, claim: &Claim) -> bool {
        self.claim_ref.as_ref().is_some_and(|r| {
            r.name == claim.name
                && r.namespace == claim.namespace
                && (r.uid.is_empty() || r.uid == claim.uid)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub namespace: Sym,
    pub name: String,
    pub uid: String,
    /// The beta annotation if set, else `spec.storageClassName`; empty when neither.
    pub class: Sym,
    /// `spec.resources.requests.storage` in bytes (0 when absent).
    pub request: i64,
    pub access_modes: AccessModes,
    pub block: bool,
    pub attributes_class: Sym,
    /// `spec.selector`: volumes it may bind to must match.
    pub selector: Option<LabelSelector>,
    /// `spec.volumeName`, empty when unbound.
    pub volume_name: String,
    /// `pv.kubernetes.io/bind-completed` is set.
    pub bind_completed: bool,
    /// `volume.kubernetes.io/selected-node`, when set (possibly empty).
    pub selected_node: Option<Sym>,
    /// `status.phase` is `Lost`.
    pub lost: bool,
    pub deleting: bool,
    /// The controller owner's uid (a generic ephemeral volume's claim is owned by its pod).
    pub owner_uid: Option<String>,
    pub resource_version: String,
}

impl Claim {
    /// An unbound `ReadWriteOnce` filesystem claim asking for `request` bytes of
    /// `class`, as a user or Spark creates one (uid `namespace/name`, resource version 1).
    pub fn new(namespace: &str, name: &str, class: Sym, request: i64) -> Claim {
        Claim {
            namespace: Sym::new(namespace),
            name: name.to_owned(),
            uid: format!("{namespace}/{name}"),
            class,
            request,
            access_modes: AccessModes::RWO,
            block: false,
            attributes_class: Sym::new(""),
            selector: None,
            volume_name: String::new(),
            bind_completed: false,
            selected_node: None,
            lost: false,
            deleting: false,
            owner_uid: None,
            resource_version: "1".into(),
        }
    }

    /// Upstream `isPVCFullyBound`.
    pub fn fully_bound(&self) -> bool {
        !self.volume_name.is_empty() && self.bind_completed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BindingMode {
    Immediate,
    WaitForFirstConsumer,
}

/// A `TopologySelectorTerm`: every `key In values` must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologyTerm(pub Vec<(Sym, Vec<Sym>)>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageClass {
    pub name: Sym,
    pub provisioner: Sym,
    /// `None` when unset (the API server defaults it; a file may not).
    pub binding_mode: Option<BindingMode>,
    pub allowed_topologies: Vec<TopologyTerm>,
}

impl StorageClass {
    /// Upstream `MatchTopologySelectorTerms`: no terms allow every node; an
    /// empty term allows none; otherwise one term must match.
    pub fn allows(&self, node_labels: &Labels) -> bool {
        if self.allowed_topologies.is_empty() {
            return true;
        }
        self.allowed_topologies.iter().any(|t| {
            !t.0.is_empty()
                && t.0
                    .iter()
                    .all(|(k, values)| node_labels.get(*k).is_some_and(|v| values.contains(&v)))
        })
    }
}

/// A node's CSI drivers and how many volumes each may attach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsiNode {
    /// The node's name (a CSINode is named after its node).
    pub name: Sym,
    /// Driver and `allocatable.count` (None: no limit reported).
    pub drivers: Vec<(Sym, Option<i64>)>,
    /// The annotation's in-tree plugin names.
    pub migrated_plugins: Vec<String>,
}

impl CsiNode {
    pub fn limit(&self, driver: Sym) -> Option<i64> {
        self.drivers
            .iter()
            .find(|(d, _)| *d == driver)
            .and_then(|(_, c)| *c)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsiDriver {
    pub name: Sym,
    /// `spec.storageCapacity`: the driver publishes CSIStorageCapacity objects
    /// and the scheduler must check them.
    pub storage_capacity: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageCapacity {
    pub namespace: Sym,
    pub name: String,
    pub class: Sym,
    /// `nodeTopology`; `None`: no node has access.
    pub node_topology: Option<LabelSelector>,
    pub capacity: Option<i64>,
    pub maximum_volume_size: Option<i64>,
}

impl StorageCapacity {
    /// Upstream `volumeLimit`: the maximum volume size when given, else the capacity.
    pub fn volume_limit(&self) -> Option<i64> {
        self.maximum_volume_size.or(self.capacity)
    }
}

/// A node's container images (`status.images`): every name an image is known
/// by, with the image's size, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeImages(pub Box<[(Sym, i64)]>);

impl NodeImages {
    pub fn from_pairs(mut pairs: Vec<(Sym, i64)>) -> NodeImages {
        pairs.sort_by_key(|p| p.0);
        pairs.dedup_by_key(|p| p.0);
        NodeImages(pairs.into_boxed_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Sym, i64)> + '_ {
        self.0.iter().copied()
    }

    pub fn contains(&self, name: Sym) -> bool {
        self.0.binary_search_by_key(&name, |p| p.0).is_ok()
    }
}

/// Upstream ImageLocality's `normalizedImageName`: an image without a tag is `:latest`.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    if colon.is_none_or(|c| slash.is_some_and(|s| c < s)) {
        format!("{name}:latest")
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_without_a_tag_get_latest() {
        assert_eq!(normalized_image_name("spark"), "spark:latest");
        assert_eq!(normalized_image_name("spark:3.5"), "spark:3.5");
        assert_eq!(
            normalized_image_name("registry:5000/spark"),
            "registry:5000/spark:latest"
        );
        assert_eq!(
            normalized_image_name("registry:5000/spark:3.5"),
            "registry:5000/spark:3.5"
        );
    }

    #[test]
    fn inline_disk_conflicts_follow_upstream() {
        let gce = |n: &str, ro| InlineDisk::GcePd {
            pd_name: n.into(),
            read_only: ro,
        };
        assert!(gce("a", false).conflicts(&gce("a", true)));
        assert!(!gce("a", true).conflicts(&gce("a", true)));
        assert!(!gce("a", false).conflicts(&gce("b", false)));
        let ebs = |n: &str, ro| InlineDisk::AwsEbs {
            volume_id: n.into(),
            read_only: ro,
        };
        // EBS forbids any two mounts, read-only or not.
        assert!(ebs("v", true).conflicts(&ebs("v", true)));
        let rbd = |mons: &[&str], ro| InlineDisk::Rbd {
            monitors: mons.iter().map(|m| m.to_string()).collect(),
            pool: "rbd".into(),
            image: "img".into(),
            read_only: ro,
        };
        assert!(rbd(&["a", "b"], false).conflicts(&rbd(&["b", "c"], false)));
        assert!(!rbd(&["a"], false).conflicts(&rbd(&["c"], false)));
        assert!(!rbd(&["a"], true).conflicts(&rbd(&["a"], true)));
        assert!(!gce("a", false).conflicts(&ebs("a", false)));
    }

    #[test]
    fn ebs_handles_drop_the_zone_prefix() {
        assert_eq!(ebs_volume_handle("aws://us-east-1a/vol-123"), "vol-123");
        assert_eq!(ebs_volume_handle("vol-123"), "vol-123");
    }
}
