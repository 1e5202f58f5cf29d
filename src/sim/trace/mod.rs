//! Simulator traces: what happens to a cluster over time.
//!
//! A [`Trace`] is a header plus time-ordered [`TimedEvent`]s. It is read from and written to the
//! native JSON Lines format ([`native`]), imported from the Alibaba openb CSVs ([`openb`]) or the
//! Alibaba spot GPU CSVs ([`spot_gpu`]), or generated synthetically ([`mod@generate`]). Every trace that reaches the engine has been validated:
//! times are finite, non-negative and non-decreasing, every quantity parses, every enum-like string
//! is known, and all seconds/prices are quantized to micro-units (see [`quantize`]).
//!
//! Event semantics the engine should follow (the format is documented in `simulations/README.md`):
//! - [`NodeAdd`]: the node joins, empty and schedulable, at `t`.
//! - [`NodeRemove`]: the node leaves at `t`; pods on it are lost.
//! - [`SpotInterruption`]: notice at `t`; the node is terminated at `t + notice_seconds`. No separate
//!   `node_remove` is written for it: the engine removes the node when the notice expires.
//! - [`SpotInterruptionRate`]: from `t`, the autoscaler's spot nodes are interrupted at this rate.
//! - [`AppSubmit`]: a Spark application's driver pod is submitted at `t`; once it runs, it asks for
//!   executors. The app needs `work_executor_seconds` of executor run time in total (n executors
//!   running for s seconds contribute n·s); when that is done, all its pods finish.
//! - [`PodSubmit`]: a plain pod; once running it finishes after `duration_seconds` (never if absent).

pub mod csv_import;
pub mod generate;
pub mod native;
pub mod openb;
pub mod spot_gpu;
mod storage;

use crate::model::{self, Labels, Quantity, Resources, Sym};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

pub use csv_import::ImportOptions;
pub use generate::{generate, GenerateParams};
pub use openb::{import_openb, OpenbOptions};
pub use spot_gpu::import_spot_gpu;
pub use storage::{
    claim, csi_node, volume_at, ClaimAdd, ExecutorClaim, StorageClassAdd, VolumeAdd,
    VolumeBindingMode,
};

/// `format` value of the header line.
pub const FORMAT_NAME: &str = "spark-fleet-trace";
/// The only native format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Label carrying the capacity type (`spot` or `on-demand`), as Karpenter sets it.
pub const LABEL_CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
pub const CAPACITY_SPOT: &str = "spot";
pub const CAPACITY_ON_DEMAND: &str = "on-demand";
/// Label carrying the GPU model of a node (set by the openb and spot-gpu importers).
pub const LABEL_GPU_MODEL: &str = "spark-fleet.io/gpu-model";
/// Driver-pod annotation with the executor capacity mix of an application.
pub const ANNOTATION_CAPACITY_MIX: &str = "spark-fleet.io/executor-capacity-mix";
pub const RESOURCE_GPU: &str = "nvidia.com/gpu";
pub const DEFAULT_NOTICE_SECONDS: f64 = 120.0;
pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_SCHEDULER_NAME: &str = "spark-fleet";

/// A resource list: resource name → Kubernetes quantity string (`"500m"`, `"64Gi"`).
/// Ordered so that written traces are byte-stable.
pub type ResourceList = BTreeMap<String, String>;
/// Labels, annotations or a node selector: key → value.
pub type StringMap = BTreeMap<String, String>;

#[derive(Debug, Error)]
pub enum TraceError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A problem on one line of a trace or CSV file (1-based line number).
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    /// A problem in a trace built in memory (event index is 0-based), found before writing it.
    #[error("event {index} at t={t}: {message}")]
    Event {
        index: usize,
        t: f64,
        message: String,
    },
    /// A field of an event that cannot be converted to the model.
    #[error("{object}: {field}: {message}")]
    Field {
        object: String,
        field: String,
        message: String,
    },
    #[error("invalid trace spec {spec:?}: {message}")]
    Spec { spec: String, message: String },
    #[error("invalid options: {0}")]
    Options(String),
}

/// First line of a native trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceHeader {
    pub format: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the events came from (generator parameters, imported files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl TraceHeader {
    pub fn new(name: Option<String>, source: Option<String>, seed: Option<u64>) -> TraceHeader {
        TraceHeader {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            name,
            source,
            seed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub header: TraceHeader,
    /// Sorted by `t` (non-decreasing); events at the same `t` apply in file order.
    pub events: Vec<TimedEvent>,
}

/// One event and its time, in seconds since the trace start. On the wire `t` sits beside the
/// event's `type` and fields: `{"t":12.5,"type":"node_remove","name":"n1"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimedEvent {
    pub t: f64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    NodeAdd(NodeAdd),
    NodeRemove(NodeRemove),
    SpotInterruption(SpotInterruption),
    SpotInterruptionRate(SpotInterruptionRate),
    AppSubmit(AppSubmit),
    PodSubmit(PodSubmit),
    StorageClass(StorageClassAdd),
    VolumeAdd(VolumeAdd),
    ClaimAdd(ClaimAdd),
}

impl Event {
    /// The `type` tag as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::NodeAdd(_) => "node_add",
            Event::NodeRemove(_) => "node_remove",
            Event::SpotInterruption(_) => "spot_interruption",
            Event::SpotInterruptionRate(_) => "spot_interruption_rate",
            Event::AppSubmit(_) => "app_submit",
            Event::PodSubmit(_) => "pod_submit",
            Event::StorageClass(_) => "storage_class",
            Event::VolumeAdd(_) => "volume_add",
            Event::ClaimAdd(_) => "claim_add",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAdd {
    pub name: String,
    /// Capacity type and zone are labels ([`LABEL_CAPACITY_TYPE`], [`model::LABEL_ZONE`]).
    #[serde(default)]
    pub labels: StringMap,
    pub allocatable: ResourceList,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<TaintSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_hour: Option<f64>,
    /// GPU cards (`model::gpu`): `count` cards of `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<NodeGpuSpec>,
    /// CSI driver → how many of its volumes the node may attach (its CSINode).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_limits: BTreeMap<String, u32>,
}

/// A node's GPU cards in a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGpuSpec {
    /// Cards, 0..=64.
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A pod's GPU request in a trace: `count` cards of `milli` each (a share of
/// one card when below 1000), of any of `models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodGpuSpec {
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Milli of each card, 1..=1000; default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milli: Option<u32>,
    /// Acceptable card models; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

impl PodGpuSpec {
    /// The model form (validated as the live annotations are); `None` for 0 cards.
    pub fn to_model(&self) -> Result<Option<model::PodGpu>, String> {
        use model::gpu::*;
        let count = self.count.map(|c| c.to_string());
        let milli = self.milli.map(|m| m.to_string());
        let models = self.models.join("|");
        let get = |k: &str| -> Option<&str> {
            match k {
                ANNOTATION_GPU_COUNT => count.as_deref().or(Some("1")),
                ANNOTATION_GPU_MILLI => milli.as_deref(),
                ANNOTATION_GPU_MODEL => Some(models.as_str()),
                _ => None,
            }
        };
        let field = |key: &str| match key {
            ANNOTATION_GPU_COUNT => "count",
            ANNOTATION_GPU_MILLI => "milli",
            _ => "models",
        };
        pod_gpu_from_annotations(get).map_err(|(key, m)| format!("field `gpu.{}`: {m}", field(key)))
    }
}

impl NodeAdd {
    /// The node's capacity type label, if any.
    pub fn capacity_type(&self) -> Option<&str> {
        self.labels.get(LABEL_CAPACITY_TYPE).map(String::as_str)
    }

    /// Converts to the scheduler's node model. `kubernetes.io/hostname` defaults to the name.
    pub fn to_node(&self) -> Result<model::Node, TraceError> {
        let object = format!("node_add {}", self.name);
        let allocatable = resources_from(&self.allocatable, &object, "allocatable")?;
        let mut node = model::Node::new(&self.name, allocatable);
        // `from_pairs` keeps the first of duplicate keys, so a hostname label in the trace wins.
        node.labels = Labels::from_pairs(
            self.labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(std::iter::once((model::LABEL_HOSTNAME, self.name.as_str()))),
        );
        node.taints = self
            .taints
            .iter()
            .map(|t| model::Taint {
                key: Sym::new(&t.key),
                value: Sym::new(&t.value),
                effect: t.effect.into(),
            })
            .collect();
        if let Some(g) = &self.gpu {
            if g.count as usize > model::gpu::MAX_CARDS {
                return Err(TraceError::Field {
                    object,
                    field: "gpu.count".into(),
                    message: format!("{} cards: at most 64 per node", g.count),
                });
            }
            node.allocatable
                .set_scalar(Sym::new(model::gpu::RESOURCE_GPU_COUNT), i64::from(g.count));
            if let Some(m) = &g.model {
                node.labels
                    .insert(Sym::new(model::gpu::LABEL_GPU_MODEL), Sym::new(m));
            }
        }
        Ok(node)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaintSpec {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: Effect,
}

/// A taint or toleration effect, spelled as in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl From<Effect> for model::TaintEffect {
    fn from(e: Effect) -> model::TaintEffect {
        match e {
            Effect::NoSchedule => model::TaintEffect::NoSchedule,
            Effect::PreferNoSchedule => model::TaintEffect::PreferNoSchedule,
            Effect::NoExecute => model::TaintEffect::NoExecute,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRemove {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotInterruption {
    pub node: String,
    #[serde(default = "default_notice")]
    pub notice_seconds: f64,
}

/// From `t` on, spot nodes the autoscaler launches (of `instance_types`, or of every type when
/// empty) are interrupted at `per_month` notices per node per 730-hour month: the spot market the
/// trace was recorded in, overriding the configured rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotInterruptionRate {
    pub per_month: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<String>,
}

fn default_notice() -> f64 {
    DEFAULT_NOTICE_SECONDS
}

pub(crate) fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

fn default_scheduler_name() -> String {
    DEFAULT_SCHEDULER_NAME.to_owned()
}

fn is_zero(p: &i32) -> bool {
    *p == 0
}

/// Requests and priority of one Spark role (driver or executors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub requests: ResourceList,
    #[serde(default)]
    pub priority: i32,
}

/// Executor count range under Spark dynamic allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicAllocation {
    pub min: u32,
    pub max: u32,
}

/// How many executors an application runs; see [`AppSubmit::scaling`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorScaling {
    Fixed(u32),
    Dynamic { min: u32, max: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSubmit {
    /// Application id; unique within the trace.
    pub id: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub driver: RoleSpec,
    pub executor: RoleSpec,
    /// Fixed executor count; exactly one of `executors` and `dynamic` is set (checked at load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executors: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicAllocation>,
    /// Total executor run time the application needs, in executor-seconds.
    pub work_executor_seconds: f64,
    /// Applied to the driver pod (e.g. [`ANNOTATION_CAPACITY_MIX`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: StringMap,
    /// Applied to driver and executor pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: StringMap,
    /// Each executor's own claim (Spark's OnDemand claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_claim: Option<ExecutorClaim>,
}

impl AppSubmit {
    /// The executor count; a loaded trace always has exactly one of the two forms.
    pub fn scaling(&self) -> ExecutorScaling {
        match (self.executors, self.dynamic) {
            (_, Some(d)) => ExecutorScaling::Dynamic {
                min: d.min,
                max: d.max,
            },
            (Some(n), None) => ExecutorScaling::Fixed(n),
            (None, None) => ExecutorScaling::Fixed(0),
        }
    }

    pub fn driver_requests(&self) -> Result<Resources, TraceError> {
        resources_from(
            &self.driver.requests,
            &format!("app_submit {}", self.id),
            "driver.requests",
        )
    }

    pub fn executor_requests(&self) -> Result<Resources, TraceError> {
        resources_from(
            &self.executor.requests,
            &format!("app_submit {}", self.id),
            "executor.requests",
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSubmit {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub requests: ResourceList,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Run time once started; absent: runs until the trace ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: StringMap,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: StringMap,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<TolerationSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: StringMap,
    /// One node selector term: all requirements must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_node_affinity: Vec<AffinityRequirement>,
    #[serde(default = "default_scheduler_name")]
    pub scheduler_name: String,
    /// GPUs at card level (`model::gpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<PodGpuSpec>,
    /// Claims (in the pod's namespace) the pod mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<String>,
}

impl PodSubmit {
    /// The pod's GPU request in the model's form.
    pub fn gpu_request(&self) -> Result<Option<model::PodGpu>, TraceError> {
        match &self.gpu {
            None => Ok(None),
            Some(g) => g.to_model().map_err(|message| TraceError::Field {
                object: format!("pod_submit {}/{}", self.namespace, self.name),
                field: "gpu".into(),
                message,
            }),
        }
    }

    pub fn requests(&self) -> Result<Resources, TraceError> {
        resources_from(
            &self.requests,
            &format!("pod_submit {}/{}", self.namespace, self.name),
            "requests",
        )
    }

    /// The required node affinity as model requirements (one term, ANDed).
    pub fn affinity_requirements(&self) -> Result<Vec<model::Requirement>, TraceError> {
        self.required_node_affinity
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.to_requirement().map_err(|message| TraceError::Field {
                    object: format!("pod_submit {}/{}", self.namespace, self.name),
                    field: format!("required_node_affinity[{i}]"),
                    message,
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TolerationSpec {
    /// Absent with `Exists`: tolerates every taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub operator: TolerationOperator,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Absent: matches every effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
}

impl TolerationSpec {
    pub fn to_toleration(&self) -> model::Toleration {
        model::Toleration {
            key: self.key.as_deref().map(Sym::new),
            op: match self.operator {
                TolerationOperator::Equal => model::TolerationOp::Equal,
                TolerationOperator::Exists => model::TolerationOp::Exists,
            },
            value: Sym::new(&self.value),
            effect: self.effect.map(Into::into),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffinityRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl AffinityRequirement {
    /// Checks the Kubernetes rules on `values` for the operator, then converts.
    pub fn to_requirement(&self) -> Result<model::Requirement, String> {
        let op = match self.operator {
            SelectorOperator::In => model::SelectorOp::In,
            SelectorOperator::NotIn => model::SelectorOp::NotIn,
            SelectorOperator::Exists => model::SelectorOp::Exists,
            SelectorOperator::DoesNotExist => model::SelectorOp::DoesNotExist,
            SelectorOperator::Gt => model::SelectorOp::Gt,
            SelectorOperator::Lt => model::SelectorOp::Lt,
        };
        let mut number = 0;
        match self.operator {
            SelectorOperator::In | SelectorOperator::NotIn if self.values.is_empty() => {
                return Err(format!("{:?} needs at least one value", self.operator));
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist
                if !self.values.is_empty() =>
            {
                return Err(format!("{:?} takes no values", self.operator));
            }
            SelectorOperator::Gt | SelectorOperator::Lt => {
                let [v] = self.values.as_slice() else {
                    return Err(format!("{:?} needs exactly one value", self.operator));
                };
                number = v
                    .parse::<i64>()
                    .map_err(|_| format!("{:?} value {v:?} is not an integer", self.operator))?;
            }
            _ => {}
        }
        Ok(model::Requirement {
            key: Sym::new(&self.key),
            op,
            values: self.values.iter().map(|v| Sym::new(v)).collect(),
            number,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// Converts a resource list to model resources, the way the kubelet/scheduler read them:
/// `cpu` in millicores, `memory`/`ephemeral-storage`/`pods` and extended resources as integers.
/// Errors name `object` and `field.resource`; negative quantities are rejected.
pub fn resources_from(
    list: &ResourceList,
    object: &str,
    field: &str,
) -> Result<Resources, TraceError> {
    let mut r = Resources::default();
    for (name, q) in list {
        let err = |message: String| TraceError::Field {
            object: object.to_owned(),
            field: format!("{field}.{name}"),
            message,
        };
        let parsed = Quantity::parse(q).map_err(|e| err(e.to_string()))?;
        if parsed.is_negative() {
            return Err(err(format!("negative quantity {q:?}")));
        }
        match name.as_str() {
            "cpu" => r.milli_cpu = parsed.milli_value(),
            "memory" => r.memory = parsed.value(),
            "ephemeral-storage" => r.ephemeral_storage = parsed.value(),
            "pods" => r.pods = parsed.value(),
            other => r.set_scalar(Sym::new(other), parsed.value()),
        }
    }
    Ok(r)
}

/// Rounds seconds (or dollars) to a whole number of micro-units. Traces keep times at this
/// resolution so that the shortest decimal form written for a value always parses back to the
/// same `f64` (serde_json's default float parser is exact for such values, up to ~9e9).
pub fn quantize(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

impl Trace {
    /// The node additions, in order.
    pub fn node_adds(&self) -> Vec<&NodeAdd> {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                Event::NodeAdd(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// The pod submissions with their times, in order.
    /// Whether the trace submits Spark applications.
    pub fn has_apps(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e.event, Event::AppSubmit(_)))
    }

    pub fn pod_submits(&self) -> Vec<(f64, &PodSubmit)> {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                Event::PodSubmit(p) => Some((e.t, p)),
                _ => None,
            })
            .collect()
    }

    /// Loads a trace named on the command line: `openb:NODES.csv,PODS.csv` imports the Alibaba
    /// openb CSVs and `spot-gpu:NODES.csv,JOBS.csv` the Alibaba spot GPU CSVs, both with
    /// `options`; anything else is a native JSON Lines file.
    pub fn load(spec: &str, options: &ImportOptions) -> Result<Trace, TraceError> {
        type Importer = fn(&Path, &Path, &ImportOptions) -> Result<Trace, TraceError>;
        let importers: [(&str, &str, Importer); 2] = [
            ("openb:", "PODS.csv", import_openb),
            ("spot-gpu:", "JOBS.csv", import_spot_gpu),
        ];
        for (prefix, second, import) in importers {
            if let Some(files) = spec.strip_prefix(prefix) {
                let Some((nodes, other)) = files.split_once(',') else {
                    return Err(TraceError::Spec {
                        spec: spec.to_owned(),
                        message: format!("expected {prefix}NODES.csv,{second}"),
                    });
                };
                return import(Path::new(nodes), Path::new(other), options);
            }
        }
        Trace::read_file(Path::new(spec))
    }

    /// Reads a native JSON Lines trace file.
    pub fn read_file(path: &Path) -> Result<Trace, TraceError> {
        let file = std::fs::File::open(path).map_err(|source| TraceError::Io {
            file: path.display().to_string(),
            source,
        })?;
        native::parse_jsonl(std::io::BufReader::new(file), &path.display().to_string())
    }

    /// Writes the native JSON Lines form. The trace is validated first, so a written trace
    /// always loads. `parse(write(t)) == t` when its seconds and prices are whole micro-units,
    /// as in every loaded, imported or generated trace (see [`quantize`]).
    pub fn write_jsonl<W: std::io::Write>(&self, w: W) -> Result<(), TraceError> {
        native::write_jsonl(self, w)
    }

    /// The checks applied at load time, for traces built in memory.
    pub fn validate(&self) -> Result<(), TraceError> {
        native::validate_trace(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: &[(&str, &str)], allocatable: &[(&str, &str)]) -> NodeAdd {
        NodeAdd {
            name: "n1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            allocatable: allocatable
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            taints: vec![TaintSpec {
                key: "k".into(),
                value: String::new(),
                effect: Effect::NoExecute,
            }],
            price_per_hour: None,
            gpu: None,
            volume_limits: Default::default(),
        }
    }

    #[test]
    fn node_conversion_reads_quantities_and_labels() {
        let n = node(
            &[
                (model::LABEL_HOSTNAME, "host-1"),
                (LABEL_CAPACITY_TYPE, "spot"),
            ],
            &[
                ("cpu", "1500m"),
                ("memory", "2Gi"),
                ("pods", "110"),
                (RESOURCE_GPU, "4"),
            ],
        )
        .to_node()
        .unwrap();
        assert_eq!(n.labels.get_str(model::LABEL_HOSTNAME), Some("host-1"));
        assert_eq!(n.labels.get_str(LABEL_CAPACITY_TYPE), Some("spot"));
        assert_eq!(n.allocatable.milli_cpu, 1500);
        assert_eq!(n.allocatable.memory, 2 << 30);
        assert_eq!(n.allocatable.pods, 110);
        assert_eq!(n.allocatable.scalar(Sym::new(RESOURCE_GPU)), 4);
        assert_eq!(n.taints[0].effect, model::TaintEffect::NoExecute);
        let plain = node(&[], &[]).to_node().unwrap();
        assert_eq!(plain.labels.get_str(model::LABEL_HOSTNAME), Some("n1"));
    }

    #[test]
    fn conversion_errors_name_object_and_field() {
        let e = node(&[], &[("memory", "2Gb")]).to_node().unwrap_err();
        assert_eq!(
            e.to_string(),
            "node_add n1: allocatable.memory: invalid quantity \"2Gb\": unknown suffix"
        );
        let e = node(&[], &[("cpu", "-1")]).to_node().unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
    }

    #[test]
    fn validate_rejects_unsorted_in_memory_traces() {
        let ev = |t: f64| TimedEvent {
            t,
            event: Event::NodeRemove(NodeRemove { name: "n".into() }),
        };
        let t = Trace {
            header: TraceHeader::new(None, None, None),
            events: vec![ev(2.0), ev(1.0)],
        };
        assert!(matches!(
            t.validate(),
            Err(TraceError::Event { index: 1, .. })
        ));
        assert!(
            t.write_jsonl(Vec::new()).is_err(),
            "an invalid trace is not written"
        );
    }
}
