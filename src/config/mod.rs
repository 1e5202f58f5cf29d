//! The configuration file: scheduler name, capacity-type rules, Spark defaults,
//! profiles (plugins, weights, args) and the live scheduler's settings.
//! Unknown fields are errors; every error names the file, line and field.

mod defaults;
mod karpenter;

use crate::model::capacity::CapacityRules;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

pub use defaults::{default_profiles, KUBE_DEFAULT, SPARK_FLEET};
pub use karpenter::{
    ConsolidationPolicy, InstanceTypeConfig, KarpenterConfig, DEFAULT_SPOT_INTERRUPTIONS_PER_MONTH,
};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Config {
    /// Pods with this `spec.schedulerName` are ours.
    pub scheduler_name: String,
    /// Profile used for our pods (the simulator compares several).
    pub default_profile: String,
    pub capacity_types: CapacityRules,
    pub spark: SparkConfig,
    pub profiles: Vec<ProfileConfig>,
    pub queue: QueueConfig,
    pub bind: BindConfig,
    pub client: ClientConfig,
    pub leader_election: LeaderElectionConfig,
    pub metrics: MetricsConfig,
    pub partition: PartitionConfig,
    pub logging: LoggingConfig,
    pub simulation: SimulationConfig,
    pub admission: AdmissionConfig,
}

/// How pods are given the capacity-type constraint autoscalers read (the
/// admission webhook, and the simulator's model of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AdmissionConfig {
    /// Who creates nodes: karpenter, eks-managed-node-groups, gke, aks, virtual-kubelet.
    pub provider: crate::admission::Provider,
    /// Weight of the preferred node-affinity term a soft mix adds (1..=100).
    pub preferred_weight: i32,
    /// An executor admitted with a capacity type under a soft mix waits this long
    /// after its creation for nodes of that type before falling back to others.
    pub soft_fallback_seconds: f64,
    /// An admission not yet seen through the watch counts for its application
    /// this long (a pod another admission step rejected is never seen).
    pub admitted_ttl_seconds: f64,
    pub webhook: WebhookConfig,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            provider: crate::admission::Provider::default(),
            preferred_weight: 100,
            soft_fallback_seconds: 180.0,
            admitted_ttl_seconds: 30.0,
            webhook: WebhookConfig::default(),
        }
    }
}

/// The mutating admission webhook `spark-fleet run` serves over HTTPS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WebhookConfig {
    pub enabled: bool,
    /// Serves `/mutate` and `/healthz` over HTTPS.
    pub address: String,
    /// PEM certificate chain and private key (a mounted Secret); re-read when they change.
    pub cert_file: String,
    pub key_file: String,
    /// How often the files are checked for a rotated certificate.
    pub cert_reload_seconds: f64,
    /// Create a self-signed certificate at start instead of reading the files, and
    /// write its CA into the MutatingWebhookConfiguration's caBundle.
    pub self_signed: SelfSignedConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            enabled: true,
            address: "0.0.0.0:8443".into(),
            cert_file: "/etc/spark-fleet-webhook-tls/tls.crt".into(),
            key_file: "/etc/spark-fleet-webhook-tls/tls.key".into(),
            cert_reload_seconds: 10.0,
            self_signed: SelfSignedConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct SelfSignedConfig {
    pub enabled: bool,
    /// The MutatingWebhookConfiguration whose caBundle is set.
    pub webhook_configuration: String,
    /// The Service in front of the webhook: the certificate is for
    /// `SERVICE.NAMESPACE.svc` (namespace: `POD_NAMESPACE`, else `spark-fleet`).
    pub service_name: String,
    /// The Secret holding the CA every replica signs with (created if missing).
    pub ca_secret: String,
    /// More names (DNS or IP) for the certificate, for a configuration that
    /// calls the webhook by `url` instead of through the Service.
    pub hosts: Vec<String>,
}

impl Default for SelfSignedConfig {
    fn default() -> Self {
        SelfSignedConfig {
            enabled: false,
            webhook_configuration: "spark-fleet".into(),
            service_name: "spark-fleet-webhook".into(),
            ca_secret: "spark-fleet-webhook-ca".into(),
            hosts: Vec::new(),
        }
    }
}

/// Settings only the simulator reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct SimulationConfig {
    /// Price of a node the trace gives no price for, in dollars per vCPU-hour by capacity
    /// type (a node-hour costs its vCPUs times this); types not listed use the default.
    pub price_per_vcpu_hour: BTreeMap<String, f64>,
    pub default_price_per_vcpu_hour: f64,
    /// The autoscaler around the simulated cluster.
    pub karpenter: KarpenterConfig,
}

impl Default for SimulationConfig {
    /// Assumptions, not data: on-demand $0.048 per vCPU-hour, spot at 35% of it.
    fn default() -> Self {
        SimulationConfig {
            price_per_vcpu_hour: BTreeMap::from([
                (crate::model::capacity::ON_DEMAND.to_owned(), 0.048),
                (crate::model::capacity::SPOT.to_owned(), 0.0168),
            ]),
            default_price_per_vcpu_hour: 0.048,
            karpenter: KarpenterConfig::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "spark-fleet".into(),
            default_profile: SPARK_FLEET.into(),
            capacity_types: CapacityRules::default(),
            spark: SparkConfig::default(),
            profiles: default_profiles(),
            queue: QueueConfig::default(),
            bind: BindConfig::default(),
            client: ClientConfig::default(),
            leader_election: LeaderElectionConfig::default(),
            metrics: MetricsConfig::default(),
            partition: PartitionConfig::default(),
            logging: LoggingConfig::default(),
            simulation: SimulationConfig::default(),
            admission: AdmissionConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MixMode {
    #[default]
    Soft,
    Hard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct SparkConfig {
    /// Capacity types drivers may use, comma-separated, or `any` (annotation `spark-fleet.io/driver-capacity`).
    pub driver_capacity: String,
    /// Cluster-wide executor mix, e.g. `spot=40,on-demand=60` (annotation `spark-fleet.io/executor-capacity-mix`).
    pub executor_capacity_mix: Option<String>,
    pub capacity_mix_mode: MixMode,
    /// Per-namespace defaults, overriding the cluster-wide ones.
    pub namespaces: BTreeMap<String, NamespaceSparkDefaults>,
    /// Driver admission: executors that must fit with the driver (annotation `spark-fleet.io/min-executors`); 0 = off.
    pub min_executors: u32,
    pub executor_spread: ExecutorSpreadConfig,
    /// Allow executors to preempt drivers (of other applications) when priorities permit. Off: never.
    pub executors_may_preempt_drivers: bool,
}

impl Default for SparkConfig {
    fn default() -> Self {
        SparkConfig {
            driver_capacity: "on-demand".into(),
            executor_capacity_mix: None,
            capacity_mix_mode: MixMode::Soft,
            namespaces: BTreeMap::new(),
            min_executors: 0,
            executor_spread: ExecutorSpreadConfig::default(),
            executors_may_preempt_drivers: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSparkDefaults {
    pub driver_capacity: Option<String>,
    pub executor_capacity_mix: Option<String>,
    pub capacity_mix_mode: Option<MixMode>,
    pub min_executors: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ExecutorSpreadConfig {
    /// Max difference in an application's executors between zones (topology.kubernetes.io/zone).
    pub zone_max_skew: u32,
    /// Max difference between nodes (kubernetes.io/hostname).
    pub node_max_skew: u32,
}

impl Default for ExecutorSpreadConfig {
    fn default() -> Self {
        ExecutorSpreadConfig {
            zone_max_skew: 1,
            node_max_skew: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileConfig {
    pub name: String,
    /// Plugins in order: filters run in this order, so put cheap ones first.
    pub plugins: Vec<PluginEntry>,
    #[serde(default)]
    pub plugin_args: PluginArgs,
    /// Upstream's percentageOfNodesToScore; 0 (default) filters and scores every node.
    #[serde(default)]
    pub percentage_of_nodes_to_score: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginEntry {
    pub name: String,
    /// Score weight; plugins without a Score extension ignore it. Default 1.
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PluginArgs {
    pub node_resources_fit: NodeResourcesFitArgs,
    pub node_resources_balanced_allocation: BalancedAllocationArgs,
    pub fragmentation_gradient_descent: FgdArgs,
    pub volume_binding: VolumeBindingArgs,
}

/// Upstream `VolumeBindingArgs` (its alpha capacity-scoring shape is not offered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct VolumeBindingArgs {
    /// How long PreBind waits for a pod's claims to be bound before the pod is
    /// tried again (upstream's default, 600).
    pub bind_timeout_seconds: u64,
}

impl Default for VolumeBindingArgs {
    fn default() -> Self {
        VolumeBindingArgs {
            bind_timeout_seconds: 600,
        }
    }
}

/// FragmentationGradientDescent: the workload whose fragmentation it minimizes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FgdArgs {
    /// Typical pod shapes with their relative frequencies; empty: learned from
    /// the pods the plugin scores.
    pub target_workload: Vec<TargetPodShape>,
}

/// One pod shape of the target workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetPodShape {
    /// CPU request, a quantity (`"4"`, `"500m"`).
    pub cpu: String,
    /// Milli of each GPU, 0..=1000 (0: no GPU).
    #[serde(default)]
    pub gpu_milli: u32,
    /// GPUs; default 1 when `gpuMilli` is set, else 0.
    #[serde(default)]
    pub gpu_count: Option<u8>,
    /// Acceptable GPU models; empty: any.
    #[serde(default)]
    pub gpu_models: Vec<String>,
    /// Relative frequency, > 0.
    #[serde(default = "one_f64")]
    pub weight: f64,
}

fn one_f64() -> f64 {
    1.0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct NodeResourcesFitArgs {
    /// Extended resources the filter does not check.
    pub ignored_resources: Vec<String>,
    /// Extended resource groups (the part before `/`) the filter does not check.
    pub ignored_resource_groups: Vec<String>,
    pub scoring_strategy: ScoringStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ScoringStrategyType {
    #[default]
    LeastAllocated,
    MostAllocated,
    RequestedToCapacityRatio,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ScoringStrategy {
    #[serde(rename = "type")]
    pub kind: ScoringStrategyType,
    pub resources: Vec<ResourceWeight>,
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatio>,
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy {
            kind: ScoringStrategyType::LeastAllocated,
            resources: default_cpu_mem(),
            requested_to_capacity_ratio: None,
        }
    }
}

pub fn default_cpu_mem() -> Vec<ResourceWeight> {
    vec![
        ResourceWeight {
            name: "cpu".into(),
            weight: 1,
        },
        ResourceWeight {
            name: "memory".into(),
            weight: 1,
        },
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceWeight {
    pub name: String,
    #[serde(default = "one")]
    pub weight: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestedToCapacityRatio {
    pub shape: Vec<UtilizationShapePoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UtilizationShapePoint {
    /// 0..=100
    pub utilization: i64,
    /// 0..=10 (scaled ×10 to node scores, as upstream)
    pub score: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct BalancedAllocationArgs {
    pub resources: Vec<ResourceWeight>,
}

impl Default for BalancedAllocationArgs {
    fn default() -> Self {
        BalancedAllocationArgs {
            resources: default_cpu_mem(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct QueueConfig {
    pub initial_backoff_seconds: f64,
    pub max_backoff_seconds: f64,
    pub unschedulable_flush_seconds: f64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff_seconds: 1.0,
            max_backoff_seconds: 10.0,
            unschedulable_flush_seconds: 300.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct BindConfig {
    /// Bindings in flight at once: what bounds our share of the API server's
    /// concurrency (and so the load we put on it), whatever `client.qps` allows.
    pub concurrency: usize,
}

impl Default for BindConfig {
    fn default() -> Self {
        BindConfig { concurrency: 64 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClientConfig {
    /// Sustained API requests per second, a ceiling against runaway request loops
    /// (kube-scheduler's default, 50, would cap binding at 50 pods/s). The API server
    /// protects itself with API Priority and Fairness; our in-flight requests are
    /// bounded by `bind.concurrency` (see `config/spark-fleet.yaml`).
    pub qps: f64,
    /// Requests allowed above `qps` in a burst.
    pub burst: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            qps: 2000.0,
            burst: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LeaderElectionConfig {
    pub enabled: bool,
    /// Default: the scheduler name.
    pub lease_name: Option<String>,
    /// Default: the POD_NAMESPACE environment variable (set by deploy/'s Deployment), else
    /// `kube-system`, where kube-scheduler keeps its own lease.
    pub lease_namespace: Option<String>,
    pub lease_duration_seconds: f64,
    pub renew_deadline_seconds: f64,
    pub retry_period_seconds: f64,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: true,
            lease_name: None,
            lease_namespace: None,
            lease_duration_seconds: 15.0,
            renew_deadline_seconds: 10.0,
            retry_period_seconds: 2.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MetricsConfig {
    /// Serves /metrics, /healthz and /readyz.
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            address: "0.0.0.0:8080".into(),
        }
    }
}

/// Lets several instances share a very large cluster, each owning a slice of the pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PartitionConfig {
    /// Only pods in these namespaces (empty: all).
    pub namespaces: Vec<String>,
    /// Only pods matching this label selector (`k=v,k2!=v2,k3`; empty: all).
    pub pod_selector: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LoggingConfig {
    pub format: LogFormat,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::parse(&text, &file)
    }

    /// Parses and validates; `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: crate::manifests::first_line(&e.to_string()),
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            field,
            message,
        };
        if self.scheduler_name.is_empty() {
            return Err(invalid("schedulerName".into(), "must not be empty".into()));
        }
        if self.profiles.is_empty() {
            return Err(invalid(
                "profiles".into(),
                "at least one profile is needed".into(),
            ));
        }
        let known = self.capacity_types.known_types();
        let types: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
        let check_mix = |field: String, mix: &Option<String>| -> Result<(), ConfigError> {
            if let Some(m) = mix {
                crate::spark::annotations::parse_mix(m, &types)
                    .map_err(|e| invalid(field, e.to_string()))?;
            }
            Ok(())
        };
        let check_driver = |field: String, d: &str| -> Result<(), ConfigError> {
            crate::spark::annotations::parse_driver_capacity(d, &types)
                .map(|_| ())
                .map_err(|e| invalid(field, e.to_string()))
        };
        check_mix(
            "spark.executorCapacityMix".into(),
            &self.spark.executor_capacity_mix,
        )?;
        check_driver("spark.driverCapacity".into(), &self.spark.driver_capacity)?;
        for (ns, d) in &self.spark.namespaces {
            check_mix(
                format!("spark.namespaces.{ns}.executorCapacityMix"),
                &d.executor_capacity_mix,
            )?;
            if let Some(dc) = &d.driver_capacity {
                check_driver(format!("spark.namespaces.{ns}.driverCapacity"), dc)?;
            }
        }
        if self.spark.executor_spread.zone_max_skew == 0
            || self.spark.executor_spread.node_max_skew == 0
        {
            return Err(invalid(
                "spark.executorSpread".into(),
                "max skews must be at least 1".into(),
            ));
        }
        let mut names = Vec::new();
        for (i, p) in self.profiles.iter().enumerate() {
            if names.contains(&p.name) {
                return Err(invalid(
                    format!("profiles[{i}].name"),
                    format!("duplicate profile {:?}", p.name),
                ));
            }
            names.push(p.name.clone());
            if p.percentage_of_nodes_to_score > 100 {
                return Err(invalid(
                    format!("profiles[{i}].percentageOfNodesToScore"),
                    "must be within 0..=100".into(),
                ));
            }
            for (j, e) in p.plugins.iter().enumerate() {
                if !crate::plugins::is_known(&e.name) {
                    return Err(invalid(
                        format!("profiles[{i}].plugins[{j}].name"),
                        format!(
                            "unknown plugin {:?} (known: {})",
                            e.name,
                            crate::plugins::KNOWN.join(", ")
                        ),
                    ));
                }
                if e.weight < 0 {
                    return Err(invalid(
                        format!("profiles[{i}].plugins[{j}].weight"),
                        "must not be negative".into(),
                    ));
                }
            }
            crate::plugins::validate_args(&p.plugin_args)
                .map_err(|(field, m)| invalid(format!("profiles[{i}].pluginArgs.{field}"), m))?;
        }
        if !names.contains(&self.default_profile) {
            return Err(invalid(
                "defaultProfile".into(),
                format!("no profile named {:?}", self.default_profile),
            ));
        }
        if self.bind.concurrency == 0 {
            return Err(invalid(
                "bind.concurrency".into(),
                "must be at least 1".into(),
            ));
        }
        if self.client.qps.is_nan() || self.client.qps <= 0.0 {
            return Err(invalid("client.qps".into(), "must be positive".into()));
        }
        let le = &self.leader_election;
        if !(le.lease_duration_seconds > le.renew_deadline_seconds
            && le.renew_deadline_seconds > le.retry_period_seconds
            && le.retry_period_seconds > 0.0)
        {
            return Err(invalid(
                "leaderElection".into(),
                "need leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds > 0".into(),
            ));
        }
        if self
            .metrics
            .address
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(invalid(
                "metrics.address".into(),
                format!("{:?} is not host:port", self.metrics.address),
            ));
        }
        if !(1..=100).contains(&self.admission.preferred_weight) {
            return Err(invalid(
                "admission.preferredWeight".into(),
                format!(
                    "{} is outside 1..=100 (the range of a node-affinity weight)",
                    self.admission.preferred_weight
                ),
            ));
        }
        self.validate_admission(file)?;
        let sim = &self.simulation;
        let prices = sim
            .price_per_vcpu_hour
            .iter()
            .map(|(t, p)| (t.as_str(), *p))
            .chain(std::iter::once((
                "default",
                sim.default_price_per_vcpu_hour,
            )));
        for (ty, price) in prices {
            if !price.is_finite() || price < 0.0 {
                return Err(invalid(
                    format!("simulation.pricePerVcpuHour.{ty}"),
                    format!("{price} is not a price"),
                ));
            }
        }
        sim.karpenter
            .check()
            .map_err(|(field, m)| invalid(format!("simulation.karpenter.{field}"), m))?;
        Ok(())
    }

    /// Seconds are finite and non-negative; with the webhook on, its address
    /// parses and every capacity type the config can ask a pod for has a
    /// constraint on the provider.
    fn validate_admission(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            message,
        };
        let a = &self.admission;
        for (field, v) in [
            ("admission.softFallbackSeconds", a.soft_fallback_seconds),
            ("admission.admittedTtlSeconds", a.admitted_ttl_seconds),
            (
                "admission.webhook.certReloadSeconds",
                a.webhook.cert_reload_seconds,
            ),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(field, format!("{v} is not a number of seconds")));
            }
        }
        if !a.webhook.enabled {
            return Ok(());
        }
        if a.webhook.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "admission.webhook.address",
                format!("{:?} is not host:port", a.webhook.address),
            ));
        }
        if !a.webhook.self_signed.enabled
            && (a.webhook.cert_file.is_empty() || a.webhook.key_file.is_empty())
        {
            return Err(invalid(
                "admission.webhook.certFile",
                "certFile and keyFile are needed unless selfSigned.enabled".into(),
            ));
        }
        let known = self.capacity_types.known_types();
        let types: Vec<&str> = known.iter().map(String::as_str).collect();
        let mut asks: Vec<(String, Vec<String>)> = Vec::new();
        let mut mix = |field: String, m: &Option<String>| {
            if let Some(Ok(w)) = m
                .as_deref()
                .map(|m| crate::spark::annotations::parse_mix(m, &types))
            {
                asks.extend(w.into_iter().map(|(t, _)| (field.clone(), vec![t])));
            }
        };
        mix(
            "spark.executorCapacityMix".into(),
            &self.spark.executor_capacity_mix,
        );
        for (ns, d) in &self.spark.namespaces {
            mix(
                format!("spark.namespaces.{ns}.executorCapacityMix"),
                &d.executor_capacity_mix,
            );
        }
        let mut driver = |field: String, d: &str| {
            if let Ok(Some(t)) = crate::spark::annotations::parse_driver_capacity(d, &types) {
                asks.push((field, t));
            }
        };
        driver("spark.driverCapacity".into(), &self.spark.driver_capacity);
        for (ns, d) in &self.spark.namespaces {
            if let Some(dc) = &d.driver_capacity {
                driver(format!("spark.namespaces.{ns}.driverCapacity"), dc);
            }
        }
        for (field, t) in asks {
            let t: Vec<&str> = t.iter().map(String::as_str).collect();
            crate::admission::capacity_constraint(&t, a.provider, &self.capacity_types)
                .map_err(|e| invalid("admission.provider", format!("{field}: {e}")))?;
        }
        Ok(())
    }

    pub fn profile(&self, name: &str) -> Option<&ProfileConfig> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests;
