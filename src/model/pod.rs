//! Pods as the scheduler sees them: requests, placement constraints, identity.

use super::{
    Interned, LabelSelector, Labels, PodAffinity, Requirement, Resources, Sym, TaintEffect,
};
use crate::model::spark::SparkIdentity;
use serde::Serialize;
use std::fmt;

/// `namespace/name`, the identity the scheduler and its reports use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PodKey {
    pub namespace: Sym,
    pub name: String,
}

impl PodKey {
    pub fn new(namespace: &str, name: &str) -> PodKey {
        PodKey {
            namespace: Sym::new(namespace),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum PreemptionPolicy {
    #[default]
    PreemptLowerPriority,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TolerationOp {
    Equal,
    Exists,
}

/// A toleration; `key: None` with `Exists` tolerates every taint, `effect: None` every effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Toleration {
    pub key: Option<Sym>,
    pub op: TolerationOp,
    pub value: Sym,
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// Upstream `Toleration.ToleratesTaint`.
    pub fn tolerates(&self, taint: &super::Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if self.key.is_some_and(|k| k != taint.key) {
            return false;
        }
        match self.op {
            TolerationOp::Exists => true,
            TolerationOp::Equal => self.value == taint.value,
        }
    }
}

/// A NodeSelectorTerm: all expressions and fields must match. A term with
/// neither, or one that failed validation, matches no node (as upstream).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NodeSelectorTerm {
    pub match_expressions: Vec<Requirement>,
    /// Only `metadata.name` exists upstream; requirement keys are ignored here.
    pub match_fields: Vec<Requirement>,
    pub valid: bool,
}

impl NodeSelectorTerm {
    pub fn matches(&self, node_labels: &Labels, node_name: Sym) -> bool {
        if !self.valid || (self.match_expressions.is_empty() && self.match_fields.is_empty()) {
            return false;
        }
        self.match_expressions
            .iter()
            .all(|r| r.matches(node_labels))
            && self.match_fields.iter().all(|r| match r.op {
                super::SelectorOp::In => r.values.contains(&node_name),
                super::SelectorOp::NotIn => !r.values.contains(&node_name),
                _ => false,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreferredTerm {
    pub weight: i32,
    pub term: NodeSelectorTerm,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NodeAffinity {
    /// `requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms` (ORed); None = no requirement.
    pub required: Option<Vec<NodeSelectorTerm>>,
    pub preferred: Vec<PreferredTerm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WhenUnsatisfiable {
    DoNotSchedule,
    ScheduleAnyway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum InclusionPolicy {
    Honor,
    Ignore,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologySpreadConstraint {
    pub max_skew: i32,
    pub topology_key: Sym,
    pub when_unsatisfiable: WhenUnsatisfiable,
    /// None: the constraint selects no pod (upstream treats a nil selector as matching nothing).
    /// `matchLabelKeys` are already merged in as `key In [value]` requirements.
    pub selector: Option<LabelSelector>,
    pub min_domains: Option<i32>,
    /// Default Honor.
    pub node_affinity_policy: InclusionPolicy,
    /// Default Ignore.
    pub node_taints_policy: InclusionPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPort {
    pub protocol: Protocol,
    /// Empty or `0.0.0.0` means every address (`::` does not: upstream's
    /// HostPortInfo treats only those two as the wildcard).
    pub host_ip: Sym,
    pub port: u16,
}

impl HostPort {
    fn wildcard(&self) -> bool {
        let ip = self.host_ip.as_str();
        ip.is_empty() || ip == "0.0.0.0"
    }

    /// Upstream `HostPortInfo` semantics: same protocol and port, and the
    /// addresses equal or one of them a wildcard.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.host_ip == other.host_ip || self.wildcard() || other.wildcard())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
}

/// A pod converted once from the Kubernetes object.
///
/// `repr(C)` keeps the fields in the order written: what the snapshot and the
/// preemption search read of every placed pod (requests, priority, Spark
/// identity, start, key, labels) shares the first cache lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[repr(C)]
pub struct Pod {
    /// max(sum of app containers and sidecars, each init container) + overhead.
    pub requests: Resources,
    pub priority: i32,
    pub spark: Option<SparkIdentity>,
    /// Milliseconds since the epoch the pod started (status.startTime), for preemption's tiebreak.
    pub started_ms: Option<i64>,
    /// When `PodScheduled` last became False with reason `Unschedulable` (ms since
    /// the epoch; the condition's lastTransitionTime): None while it is not so.
    pub unschedulable_since_ms: Option<i64>,
    pub key: PodKey,
    pub labels: Labels,
    /// Milli-CPU and memory as the resource scorers count them (upstream's
    /// NonZeroRequested): `requests` summed the same way with upstream's
    /// defaults (100m, 200 MiB) standing in for each container's *missing*
    /// cpu or memory request (an explicit 0 stays 0). Set when converting a
    /// Kubernetes object; `None` counts the pod as one container whose zero
    /// requests are missing (`Resources::non_zero_cpu_mem`).
    pub non_zero_requests: Option<(i64, i64)>,
    pub terminating: bool,
    /// A scheduler preempted it: condition DisruptionTarget=True with reason
    /// PreemptionByScheduler. With `terminating`, upstream's podTerminatingByPreemption.
    pub disrupted_by_preemption: bool,
    /// `spec.schedulingGates` is not empty: upstream's SchedulingGates PreEnqueue
    /// plugin keeps the pod from being scheduled until the gates are removed.
    pub scheduling_gated: bool,
    /// Terminal phase (Succeeded/Failed): holds no resources.
    pub finished: bool,
    pub preemption_policy: PreemptionPolicy,
    /// `spec.nodeName`: set for bound pods (and for pods asking for one node).
    pub node_name: Option<Sym>,
    pub nominated_node_name: Option<Sym>,
    /// Milliseconds since the epoch (creation time; used for queue order).
    pub created_ms: i64,
    pub uid: String,
    /// Only our own `spark-fleet.io/*` annotations are kept.
    pub annotations: Vec<(String, String)>,
    pub scheduler_name: String,
    pub tolerations: Vec<Toleration>,
    pub node_selector: Vec<(Sym, Sym)>,
    pub node_affinity: NodeAffinity,
    pub topology_spread: Vec<TopologySpreadConstraint>,
    /// Inter-pod affinity and anti-affinity; `None` when the pod has no term.
    pub pod_affinity: Option<Box<PodAffinity>>,
    pub host_ports: Vec<HostPort>,
    pub owner: Option<OwnerRef>,
    /// GPUs at card level (`model::gpu`); `None` for a pod asking for none.
    pub gpu: Option<Box<super::PodGpu>>,
    /// Keeps the pod's per-object strings (label and selector values, its
    /// application, node names) interned while the pod lives (`model::intern`).
    #[serde(skip)]
    pub interned: Interned,
    /// The volumes the volume plugins look at (claims, inline in-tree disks);
    /// empty for most pods, whose volume plugins then skip.
    pub volumes: Vec<super::PodVolume>,
    /// Each init container's and container's image, normalized (`:latest`
    /// added where no tag is given), for ImageLocality.
    pub images: Box<[Sym]>,
}

impl Pod {
    /// Milli-CPU and memory as the resource scorers count them (see
    /// `non_zero_requests`).
    pub fn non_zero_cpu_mem(&self) -> (i64, i64) {
        self.non_zero_requests
            .unwrap_or_else(|| self.requests.non_zero_cpu_mem())
    }

    /// A bare pod for tests and synthetic workloads.
    pub fn new(namespace: &str, name: &str, requests: Resources) -> Pod {
        Pod {
            key: PodKey::new(namespace, name),
            uid: format!("{namespace}/{name}"),
            labels: Labels::default(),
            annotations: Vec::new(),
            scheduler_name: "spark-fleet".into(),
            priority: 0,
            preemption_policy: PreemptionPolicy::default(),
            requests,
            non_zero_requests: None,
            tolerations: Vec::new(),
            node_selector: Vec::new(),
            node_affinity: NodeAffinity::default(),
            topology_spread: Vec::new(),
            pod_affinity: None,
            host_ports: Vec::new(),
            owner: None,
            gpu: None,
            volumes: Vec::new(),
            images: Box::default(),
            node_name: None,
            nominated_node_name: None,
            terminating: false,
            disrupted_by_preemption: false,
            scheduling_gated: false,
            finished: false,
            created_ms: 0,
            started_ms: None,
            unschedulable_since_ms: None,
            spark: None,
            interned: Interned::default(),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `nodeSelector` and required node affinity both match (upstream's
    /// `GetRequiredNodeAffinity(pod).Match(node)`).
    pub fn matches_required_affinity(&self, node: &super::Node) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| node.labels.get(*k) == Some(*v))
            && self
                .node_affinity
                .required
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(&node.labels, node.name)))
    }

    /// The first NoSchedule/NoExecute taint of `node` this pod does not tolerate.
    pub fn first_untolerated_hard_taint<'n>(
        &self,
        node: &'n super::Node,
    ) -> Option<&'n super::Taint> {
        self.first_untolerated_hard_taint_in(&node.taints)
    }

    /// `first_untolerated_hard_taint` over a taint list.
    pub fn first_untolerated_hard_taint_in<'n>(
        &self,
        taints: &'n [super::Taint],
    ) -> Option<&'n super::Taint> {
        taints.iter().find(|t| {
            matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute)
                && !self.tolerations.iter().any(|tol| tol.tolerates(t))
        })
    }

    /// Whether the pod has a required anti-affinity term.
    pub fn has_required_anti_affinity(&self) -> bool {
        self.pod_affinity
            .as_ref()
            .is_some_and(|a| !a.required_anti_affinity.is_empty())
    }

    pub fn is_driver(&self) -> bool {
        self.spark
            .as_ref()
            .is_some_and(|s| s.role == super::SparkRole::Driver)
    }

    pub fn is_executor(&self) -> bool {
        self.spark
            .as_ref()
            .is_some_and(|s| s.role == super::SparkRole::Executor)
    }
}
