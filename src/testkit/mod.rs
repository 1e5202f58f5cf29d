//! Small builders for nodes and pods, shared by unit tests, integration tests,
//! benchmarks and the synthetic trace generator.

pub mod control_plane;

use crate::model::{
    HostPort, InclusionPolicy, LabelSelector, Labels, Node, NodeAffinity, NodeSelectorTerm, Pod,
    Protocol, Requirement, Resources, SelectorOp, SparkIdentity, SparkRole, Sym, Taint,
    TaintEffect, Toleration, TolerationOp, TopologySpreadConstraint, WhenUnsatisfiable,
};
use std::sync::Arc;

pub const GI: i64 = 1 << 30;

pub fn res(milli_cpu: i64, memory: i64) -> Resources {
    Resources {
        milli_cpu,
        memory,
        ..Default::default()
    }
}

pub struct NodeBuilder(Node);

/// A node with `cpu` millicores, `mem` bytes and 110 pod slots.
pub fn node(name: &str, milli_cpu: i64, memory: i64) -> NodeBuilder {
    let mut r = res(milli_cpu, memory);
    r.pods = 110;
    NodeBuilder(Node::new(name, r))
}

impl NodeBuilder {
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels.insert(Sym::new(k), Sym::new(v));
        self
    }
    pub fn zone(self, z: &str) -> Self {
        self.label(crate::model::LABEL_ZONE, z)
    }
    pub fn spot(self) -> Self {
        self.label("karpenter.sh/capacity-type", "spot")
    }
    pub fn on_demand(self) -> Self {
        self.label("karpenter.sh/capacity-type", "on-demand")
    }
    pub fn taint(mut self, k: &str, v: &str, effect: TaintEffect) -> Self {
        self.0.taints.push(Taint {
            key: Sym::new(k),
            value: Sym::new(v),
            effect,
        });
        self
    }
    pub fn pods(mut self, n: i64) -> Self {
        self.0.allocatable.pods = n;
        self
    }
    pub fn ephemeral(mut self, bytes: i64) -> Self {
        self.0.allocatable.ephemeral_storage = bytes;
        self
    }
    pub fn scalar(mut self, name: &str, v: i64) -> Self {
        self.0.allocatable.set_scalar(Sym::new(name), v);
        self
    }
    pub fn unschedulable(mut self) -> Self {
        self.0.unschedulable = true;
        self
    }
    /// `cards` GPU cards of `model` (`model::gpu`).
    pub fn gpus(self, cards: i64, model: &str) -> Self {
        self.scalar(crate::model::gpu::RESOURCE_GPU_COUNT, cards)
            .label(crate::model::gpu::LABEL_GPU_MODEL, model)
    }
    pub fn build(self) -> Node {
        self.0
    }
}

pub struct PodBuilder(Pod);

/// A pod in namespace `default` requesting `cpu` millicores and `mem` bytes.
pub fn pod(name: &str, milli_cpu: i64, memory: i64) -> PodBuilder {
    PodBuilder(Pod::new("default", name, res(milli_cpu, memory)))
}

impl PodBuilder {
    pub fn namespace(mut self, ns: &str) -> Self {
        self.0.key.namespace = Sym::new(ns);
        self.0.uid = format!("{ns}/{}", self.0.key.name);
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels.insert(Sym::new(k), Sym::new(v));
        self.0.spark =
            crate::model::spark::identify(&self.0.labels, &self.0.uid, self.0.owner.as_ref());
        self
    }
    pub fn priority(mut self, p: i32) -> Self {
        self.0.priority = p;
        self
    }
    pub fn created(mut self, ms: i64) -> Self {
        self.0.created_ms = ms;
        self
    }
    pub fn on(mut self, node: &str) -> Self {
        self.0.node_name = Some(Sym::new(node));
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.0.annotations.retain(|(key, _)| key != k);
        self.0.annotations.push((k.into(), v.into()));
        self
    }
    pub fn driver(self, app: &str) -> Self {
        self.label("spark-app-selector", app)
            .label("spark-role", "driver")
    }
    pub fn executor(self, app: &str) -> Self {
        self.label("spark-app-selector", app)
            .label("spark-role", "executor")
    }
    pub fn scalar(mut self, name: &str, v: i64) -> Self {
        self.0.requests.set_scalar(Sym::new(name), v);
        self
    }
    pub fn ephemeral(mut self, bytes: i64) -> Self {
        self.0.requests.ephemeral_storage = bytes;
        self
    }
    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.0.node_selector.push((Sym::new(k), Sym::new(v)));
        self
    }
    pub fn tolerate(mut self, k: &str, v: &str, effect: Option<TaintEffect>) -> Self {
        self.0.tolerations.push(Toleration {
            key: Some(Sym::new(k)),
            op: TolerationOp::Equal,
            value: Sym::new(v),
            effect,
        });
        self
    }
    pub fn toleration(mut self, t: Toleration) -> Self {
        self.0.tolerations.push(t);
        self
    }
    pub fn host_port(mut self, port: u16) -> Self {
        self.0.host_ports.push(HostPort {
            protocol: Protocol::Tcp,
            host_ip: Sym::new(""),
            port,
        });
        self
    }
    pub fn required_terms(mut self, terms: Vec<NodeSelectorTerm>) -> Self {
        self.0.node_affinity.required = Some(terms);
        self
    }
    pub fn affinity(mut self, a: NodeAffinity) -> Self {
        self.0.node_affinity = a;
        self
    }
    pub fn spread(mut self, max_skew: i32, key: &str, hard: bool, selector: LabelSelector) -> Self {
        self.0.topology_spread.push(TopologySpreadConstraint {
            max_skew,
            topology_key: Sym::new(key),
            when_unsatisfiable: if hard {
                WhenUnsatisfiable::DoNotSchedule
            } else {
                WhenUnsatisfiable::ScheduleAnyway
            },
            selector: Some(selector),
            min_domains: None,
            node_affinity_policy: InclusionPolicy::Honor,
            node_taints_policy: InclusionPolicy::Ignore,
        });
        self
    }
    /// A PodAffinityTerm over the pod's own namespace (set `namespace` first).
    fn pod_term(&self, key: &str, sel: &[(&str, &str)]) -> crate::model::PodAffinityTerm {
        crate::model::PodAffinityTerm {
            selector: Some(selector(sel)),
            namespaces: vec![self.0.key.namespace],
            namespace_selector: None,
            topology_key: Sym::new(key),
        }
    }
    fn pod_affinity_mut(&mut self) -> &mut crate::model::PodAffinity {
        self.0.pod_affinity.get_or_insert_with(Default::default)
    }
    pub fn pod_affinity_term(mut self, anti: bool, t: crate::model::PodAffinityTerm) -> Self {
        let a = self.pod_affinity_mut();
        if anti {
            a.required_anti_affinity.push(t);
        } else {
            a.required_affinity.push(t);
        }
        self
    }
    pub fn required_affinity(self, key: &str, sel: &[(&str, &str)]) -> Self {
        let t = self.pod_term(key, sel);
        self.pod_affinity_term(false, t)
    }
    pub fn required_anti_affinity(self, key: &str, sel: &[(&str, &str)]) -> Self {
        let t = self.pod_term(key, sel);
        self.pod_affinity_term(true, t)
    }
    pub fn preferred_affinity(mut self, weight: i32, key: &str, sel: &[(&str, &str)]) -> Self {
        let term = self.pod_term(key, sel);
        let w = crate::model::WeightedPodAffinityTerm { weight, term };
        self.pod_affinity_mut().preferred_affinity.push(w);
        self
    }
    pub fn preferred_anti_affinity(mut self, weight: i32, key: &str, sel: &[(&str, &str)]) -> Self {
        let term = self.pod_term(key, sel);
        let w = crate::model::WeightedPodAffinityTerm { weight, term };
        self.pod_affinity_mut().preferred_anti_affinity.push(w);
        self
    }
    pub fn constraint(mut self, c: TopologySpreadConstraint) -> Self {
        self.0.topology_spread.push(c);
        self
    }
    pub fn preempt_never(mut self) -> Self {
        self.0.preemption_policy = crate::model::PreemptionPolicy::Never;
        self
    }
    /// `count` GPU cards of `milli` each (a share when below 1000), of any of
    /// `models` (`model::gpu`).
    pub fn gpu(mut self, count: u8, milli: u32, models: &[&str]) -> Self {
        self.0.gpu = Some(Box::new(crate::model::PodGpu {
            count,
            milli,
            models: models.iter().map(|m| Sym::new(m)).collect(),
            cards: None,
        }));
        self
    }
    /// The cards its binding recorded (`0-1`); after `gpu`.
    pub fn cards(mut self, cards: &str) -> Self {
        if let (Some(g), Ok(c)) = (self.0.gpu.as_mut(), crate::model::Cards::parse(cards)) {
            g.cards = Some(c);
        }
        self
    }
    pub fn terminating(mut self) -> Self {
        self.0.terminating = true;
        self
    }
    /// Terminating because a scheduler preempted it.
    pub fn preempted(mut self) -> Self {
        self.0.terminating = true;
        self.0.disrupted_by_preemption = true;
        self
    }
    pub fn spark(mut self, role: SparkRole, app: &str) -> Self {
        self.0.spark = Some(SparkIdentity {
            role,
            app: Sym::new(app),
        });
        self
    }
    pub fn build(self) -> Pod {
        self.0
    }
    pub fn arc(self) -> Arc<Pod> {
        Arc::new(self.0)
    }
}

/// `key op values` for selectors and node affinity terms.
pub fn req(key: &str, op: SelectorOp, values: &[&str]) -> Requirement {
    Requirement {
        key: Sym::new(key),
        op,
        values: values.iter().map(|v| Sym::new(v)).collect(),
        number: values.first().and_then(|v| v.parse().ok()).unwrap_or(0),
    }
}

pub fn term(exprs: Vec<Requirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: exprs,
        match_fields: Vec::new(),
        valid: true,
    }
}

pub fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        requirements: pairs
            .iter()
            .map(|(k, v)| req(k, SelectorOp::In, &[v]))
            .collect(),
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// The config the live layer's integration tests start from: the default config
/// plus a profile `live-test` (the default) of the plugins every build has, so
/// outcomes do not depend on the scoring plugins.
pub fn live_test_config() -> crate::config::Config {
    use crate::config::{Config, PluginEntry, ProfileConfig};
    let mut c = Config::default();
    let plugins = [
        "NodeUnschedulable",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodePorts",
        "NodeResourcesFit",
    ];
    c.profiles.push(ProfileConfig {
        name: "live-test".into(),
        plugins: plugins
            .iter()
            .map(|n| PluginEntry {
                name: (*n).into(),
                weight: 1,
            })
            .collect(),
        plugin_args: Default::default(),
        percentage_of_nodes_to_score: 0,
    });
    c.default_profile = "live-test".into();
    c
}

/// A seeded synthetic cluster for benchmarks and the memory probe: `nodes` nodes
/// over 3 zones, 40% spot, 1 in 10 tainted for Spark, some labelled by team, each
/// with about `pods_per_node` bound pods (a mix of Spark executors of many
/// applications and plain pods), leaving room for more.
pub fn synthetic_cluster(
    nodes: usize,
    pods_per_node: usize,
    seed: u64,
) -> crate::snapshot::Snapshot {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut snap = crate::snapshot::Snapshot::new(crate::model::capacity::CapacityRules::default());
    let zones = ["zone-a", "zone-b", "zone-c"];
    for i in 0..nodes {
        let name = format!("node-{i:05}");
        let mut b = node(&name, 64_000, 256 * GI)
            .pods(pods_per_node as i64 + 80)
            .zone(zones[i % 3])
            .label(
                "node.kubernetes.io/instance-type",
                if i % 2 == 0 {
                    "m6i.16xlarge"
                } else {
                    "r6i.16xlarge"
                },
            );
        b = if rng.random_bool(0.4) {
            b.spot()
        } else {
            b.on_demand()
        };
        if i % 10 == 0 {
            b = b.taint("dedicated", "gpu", TaintEffect::NoSchedule);
        }
        if i % 7 == 0 {
            b = b.label("team", "analytics");
        }
        snap.upsert_node(b.build());
    }
    let apps = (nodes * pods_per_node / 40).max(1);
    let mut n = 0usize;
    for i in 0..nodes {
        let node_name = format!("node-{i:05}");
        for j in 0..pods_per_node {
            n += 1;
            let cpu = 500 * rng.random_range(1..=3);
            let p = if j % 3 == 0 {
                pod(&format!("web-{n}"), cpu, GI)
                    .namespace("web")
                    .label("app", &format!("web-{}", n % 50))
            } else {
                let app = rng.random_range(0..apps);
                pod(&format!("app-{app}-exec-{n}"), cpu, 2 * GI)
                    .namespace("spark")
                    .executor(&format!("spark-app-{app}"))
                    .priority(50_000)
            };
            let p = if i % 10 == 0 {
                p.tolerate("dedicated", "gpu", None)
            } else {
                p
            };
            // Bound pods always have a node here.
            let _ = snap.upsert_pod(p.on(&node_name).arc());
        }
    }
    snap
}

/// `synthetic_cluster` plus one Spark application, `bench-app`: a driver asking
/// for a `spot=40,on-demand=60` executor mix on an untainted on-demand node and six
/// executors. The benchmarks and profilers schedule its next executors
/// ([`bench_executor`]).
pub fn synthetic_cluster_with_app(nodes: usize, pods_per_node: usize) -> crate::snapshot::Snapshot {
    let mut snap = synthetic_cluster(nodes, pods_per_node, 42);
    let t = snap.nodes();
    let od = t
        .live_indices()
        .find(|&i| {
            t.capacity_type[i as usize].as_str() == "on-demand" && t.hard_taints[i as usize] == 0
        })
        .map(|i| t.name[i as usize].to_string())
        .unwrap_or_default();
    let driver = pod("bench-driver", 1000, 4 * GI)
        .namespace("spark")
        .driver("bench-app")
        .priority(100_000)
        .annotation(
            "spark-fleet.io/executor-capacity-mix",
            "spot=40,on-demand=60",
        )
        .on(&od)
        .arc();
    let _ = snap.upsert_pod(driver);
    let names: Vec<String> = t_names(&snap, 6);
    for (k, n) in names.iter().enumerate() {
        let e = bench_executor(&format!("bench-exec-{k}")).on(n).arc();
        let _ = snap.upsert_pod(e);
    }
    snap
}

fn t_names(snap: &crate::snapshot::Snapshot, n: usize) -> Vec<String> {
    let t = snap.nodes();
    t.live_indices()
        .take(n)
        .map(|i| t.name[i as usize].to_string())
        .collect()
}

/// An executor of `bench-app` (2 CPUs, 8 GiB).
pub fn bench_executor(name: &str) -> PodBuilder {
    pod(name, 2000, 8 * GI)
        .namespace("spark")
        .executor("bench-app")
        .priority(50_000)
}

/// The preemption benchmark's pod: a 48-CPU driver (priority 100000) that fits on
/// no node of a full `synthetic_cluster` (~30 pods of priority 50000 each) without
/// preemption.
pub fn preempting_driver() -> Pod {
    pod("big-driver", 48_000, 8 * GI)
        .namespace("spark")
        .driver("urgent")
        .priority(100_000)
        .tolerate("dedicated", "gpu", None)
        .annotation("spark-fleet.io/driver-capacity", "any")
        .build()
}

// ---- storage ---------------------------------------------------------------

use crate::model::{
    AccessModes, BindingMode, Claim, ClaimRef, CsiDriver, CsiNode, InlineDisk, PersistentVolume,
    PodVolume, StorageCapacity, StorageClass, TopologyTerm, VolumePhase, VolumeSource,
};

impl PodBuilder {
    /// Mounts the claim `name` (in the pod's namespace).
    pub fn claim(mut self, name: &str) -> Self {
        self.0.volumes.push(PodVolume::Claim {
            claim: name.into(),
            ephemeral: false,
        });
        self
    }
    /// A generic ephemeral volume `volume`: its claim is `<pod>-<volume>`.
    pub fn ephemeral_volume(mut self, volume: &str) -> Self {
        self.0.volumes.push(PodVolume::Claim {
            claim: format!("{}-{volume}", self.0.key.name),
            ephemeral: true,
        });
        self
    }
    pub fn disk(mut self, disk: InlineDisk) -> Self {
        self.0.volumes.push(PodVolume::Disk(disk));
        self
    }
    /// A container running `image` (normalized as the pod converter does).
    pub fn image(mut self, image: &str) -> Self {
        let mut images = self.0.images.to_vec();
        images.push(Sym::new(&crate::model::normalized_image_name(image)));
        self.0.images = images.into_boxed_slice();
        self
    }
    pub fn uid(mut self, uid: &str) -> Self {
        self.0.uid = uid.into();
        self
    }
}

impl NodeBuilder {
    /// The node holds an image known by `name`, of `size` bytes.
    pub fn image(mut self, name: &str, size: i64) -> Self {
        let mut pairs: Vec<(Sym, i64)> = self.0.images.iter().collect();
        pairs.push((Sym::new(name), size));
        self.0.images = crate::model::NodeImages::from_pairs(pairs);
        self
    }
}

pub struct ClaimBuilder(Claim);

/// An unbound `ReadWriteOnce` claim in namespace `default` of class `class`
/// asking for 1 GiB.
pub fn claim(name: &str, class: &str) -> ClaimBuilder {
    ClaimBuilder(Claim {
        uid: format!("uid-{name}"),
        ..Claim::new("default", name, Sym::new(class), GI)
    })
}

impl ClaimBuilder {
    pub fn namespace(mut self, ns: &str) -> Self {
        self.0.namespace = Sym::new(ns);
        self
    }
    /// Fully bound to volume `pv` (`volumeName` and `bind-completed`).
    pub fn bound(mut self, pv: &str) -> Self {
        self.0.volume_name = pv.into();
        self.0.bind_completed = true;
        self
    }
    /// Pre-bound to volume `pv` by name (no `bind-completed` yet).
    pub fn prebound(mut self, pv: &str) -> Self {
        self.0.volume_name = pv.into();
        self
    }
    pub fn request(mut self, bytes: i64) -> Self {
        self.0.request = bytes;
        self
    }
    pub fn modes(mut self, modes: AccessModes) -> Self {
        self.0.access_modes = modes;
        self
    }
    pub fn selected_node(mut self, node: &str) -> Self {
        self.0.selected_node = Some(Sym::new(node));
        self
    }
    pub fn lost(mut self) -> Self {
        self.0.lost = true;
        self
    }
    pub fn deleting(mut self) -> Self {
        self.0.deleting = true;
        self
    }
    pub fn owner(mut self, uid: &str) -> Self {
        self.0.owner_uid = Some(uid.into());
        self
    }
    pub fn selector(mut self, s: LabelSelector) -> Self {
        self.0.selector = Some(s);
        self
    }
    pub fn block(mut self) -> Self {
        self.0.block = true;
        self
    }
    pub fn build(self) -> Claim {
        self.0
    }
}

pub struct VolumeBuilder(PersistentVolume);

/// An available `ReadWriteOnce` volume of class `class` holding 1 GiB, with no
/// node affinity and no CSI source.
pub fn volume(name: &str, class: &str) -> VolumeBuilder {
    VolumeBuilder(PersistentVolume {
        name: name.into(),
        labels: Labels::default(),
        class: Sym::new(class),
        capacity: GI,
        access_modes: AccessModes::RWO,
        block: false,
        attributes_class: Sym::new(""),
        claim_ref: None,
        phase: VolumePhase::Available,
        node_affinity: None,
        source: VolumeSource::Other,
        deleting: false,
        bound_by_controller: false,
        resource_version: "1".into(),
    })
}

impl VolumeBuilder {
    pub fn capacity(mut self, bytes: i64) -> Self {
        self.0.capacity = bytes;
        self
    }
    pub fn phase(mut self, phase: VolumePhase) -> Self {
        self.0.phase = phase;
        self
    }
    /// Node affinity `key In values` (one term).
    pub fn affinity(mut self, key: &str, values: &[&str]) -> Self {
        self.0.node_affinity = Some(vec![term(vec![req(key, SelectorOp::In, values)])]);
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels.insert(Sym::new(k), Sym::new(v));
        self
    }
    /// Bound (or pre-bound) to the claim `namespace/name`, any uid.
    pub fn claimed_by(mut self, namespace: &str, name: &str) -> Self {
        self.0.claim_ref = Some(ClaimRef {
            namespace: Sym::new(namespace),
            name: name.into(),
            uid: String::new(),
        });
        self
    }
    pub fn modes(mut self, modes: AccessModes) -> Self {
        self.0.access_modes = modes;
        self
    }
    pub fn csi(mut self, driver: &str, handle: &str) -> Self {
        self.0.source = VolumeSource::Csi {
            driver: Sym::new(driver),
            handle: handle.into(),
        };
        self
    }
    pub fn source(mut self, source: VolumeSource) -> Self {
        self.0.source = source;
        self
    }
    pub fn deleting(mut self) -> Self {
        self.0.deleting = true;
        self
    }
    pub fn build(self) -> PersistentVolume {
        self.0
    }
}

/// A storage class with `provisioner` and a binding mode.
pub fn storage_class(name: &str, provisioner: &str, wait: bool) -> StorageClass {
    StorageClass {
        name: Sym::new(name),
        provisioner: Sym::new(provisioner),
        binding_mode: Some(if wait {
            BindingMode::WaitForFirstConsumer
        } else {
            BindingMode::Immediate
        }),
        allowed_topologies: Vec::new(),
    }
}

/// `class` allowed only where `key` is one of `values`.
pub fn with_topology(mut class: StorageClass, key: &str, values: &[&str]) -> StorageClass {
    class.allowed_topologies.push(TopologyTerm(vec![(
        Sym::new(key),
        values.iter().map(|v| Sym::new(v)).collect(),
    )]));
    class
}

/// A CSINode for `node` whose drivers may attach the given counts.
pub fn csi_node(node: &str, drivers: &[(&str, Option<i64>)]) -> CsiNode {
    CsiNode {
        name: Sym::new(node),
        drivers: drivers.iter().map(|&(d, c)| (Sym::new(d), c)).collect(),
        migrated_plugins: Vec::new(),
    }
}

pub fn csi_driver(name: &str, storage_capacity: bool) -> CsiDriver {
    CsiDriver {
        name: Sym::new(name),
        storage_capacity,
    }
}

/// A storage capacity of `class` for nodes matching `topology`.
pub fn storage_capacity(
    name: &str,
    class: &str,
    topology: Option<LabelSelector>,
    capacity: Option<i64>,
) -> StorageCapacity {
    StorageCapacity {
        namespace: Sym::new("kube-system"),
        name: name.into(),
        class: Sym::new(class),
        node_topology: topology,
        capacity,
        maximum_volume_size: None,
    }
}

/// An inline GCE persistent disk.
pub fn gce_disk(name: &str, read_only: bool) -> InlineDisk {
    InlineDisk::GcePd {
        pd_name: name.into(),
        read_only,
    }
}
