//! The internal model: compact, interned types converted once from Kubernetes objects.

pub mod capacity;
mod convert;
pub mod gpu;
mod intern;
mod labels;
mod node;
mod pod;
mod pod_affinity;
mod quantity;
mod resources;
pub mod spark;
mod volume;
mod volume_convert;

pub use convert::{node_from_k8s, pod_from_k8s, ConvertError, PriorityResolver};
pub use gpu::{Cards, PodGpu};
pub use intern::{Interned, Sym, SymHash};
pub use labels::{LabelSelector, Labels, Requirement, SelectorOp};
pub use node::{Node, Taint, TaintEffect};
pub use pod::{
    HostPort, InclusionPolicy, NodeAffinity, NodeSelectorTerm, OwnerRef, Pod, PodKey,
    PreemptionPolicy, PreferredTerm, Protocol, Toleration, TolerationOp, TopologySpreadConstraint,
    WhenUnsatisfiable,
};
pub use pod_affinity::{
    PodAffinity, PodAffinityTerm, WeightedPodAffinityTerm, LABEL_NAMESPACE_NAME,
};
pub use quantity::{Quantity, QuantityError};
pub use resources::Resources;
pub use spark::{SparkIdentity, SparkRole};
pub use volume::*;
pub use volume_convert::{
    capacity_from_k8s, claim_from_k8s, csi_driver_from_k8s, csi_node_from_k8s,
    storage_class_from_k8s, volume_from_k8s,
};

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// Prefix of the annotations spark-fleet reads.
pub const ANNOTATION_PREFIX: &str = "spark-fleet.io/";
