//! End-to-end scheduling throughput on a real control plane (etcd + kube-apiserver from
//! `KUBEBUILDER_ASSETS`): N nodes, a backlog of M pending pods, and the time from the first
//! binding to the last for three binders taken by turns in one run, so all three see the
//! same machine:
//!
//! - **spark-fleet**, the `spark-fleet run` binary with the default config (or
//!   `--spark-fleet-config FILE`), its default profile placing every pod;
//! - **kube-scheduler** from the same folder, client QPS / burst 5,000 (`--kube-scheduler-qps`);
//! - **raw binder**: no logic, bindings round-robin over the nodes, 64 in flight
//!   (`--raw-in-flight`), this program started again as a separate process.
//!
//! Each binder starts after its backlog has been created and etcd and the API server
//! have come to rest ([`settle`]), as a separate process
//! authenticated as a ServiceAccount (outside `kube-system`), so API Priority and Fairness
//! classifies all three alike (flow schema `service-accounts`, priority level
//! `workload-low`). spark-fleet runs as deployed: `deploy/`'s namespace, ServiceAccount
//! and RBAC are applied, and `POD_NAMESPACE` is set as the Deployment sets it.
//!
//! **What is timed.** This program watches the pods itself and stamps each pod when the
//! watch first shows it with `spec.nodeName`. The same observer times all three binders,
//! so whatever the watch adds (the API server's delivery, this process's wake-up) is
//! added to each alike; a binder's own count could not be read the same way from all
//! three. pods/s = (M − 1) / (last stamp − first stamp).
//!
//! ```sh
//! KUBEBUILDER_ASSETS=/path/to/kube cargo bench --bench end_to_end -- \
//!     [--nodes 100] [--pods 2000] [--rounds 3] [--workload plain|spark|both] \
//!     [--only spark-fleet,kube-scheduler,raw-binder] [--spark-fleet-config FILE]
//! ```

use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Binding, Event as CoreEvent, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;
use spark_fleet::config::Config;
use spark_fleet::testkit::control_plane::{self, ControlPlane, Supervised};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The namespace of the pods.
const NS: &str = "bench";
/// spark-fleet's namespace and ServiceAccount, as `deploy/` makes them.
const SF_NS: &str = "spark-fleet";
const SF_SA: &str = "spark-fleet";
/// The manifests applied so spark-fleet runs with its own permissions.
const DEPLOY_FILES: [&str; 3] = ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"];
/// Capacity of every node: the backlog never runs out of room.
const NODE_CPU: &str = "32";
const NODE_MEMORY: &str = "128Gi";
const NODE_PODS: u32 = 110;
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// How long a trial waits, after the last binding, for the `Scheduled` events.
const EVENT_WAIT: Duration = Duration::from_secs(60);
/// How long a trial waits at most for the API server to come to rest before it starts.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Two nodes in five are spot.
fn is_spot(i: usize) -> bool {
    i % 5 < 2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Contender {
    SparkFleet,
    KubeScheduler,
    RawBinder,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Contender::SparkFleet => "spark-fleet",
            Contender::KubeScheduler => "kube-scheduler",
            Contender::RawBinder => "raw binder",
        }
    }

    /// `spec.schedulerName` of its pods (the raw binder's name is one nobody serves).
    fn scheduler_name(self) -> &'static str {
        match self {
            Contender::SparkFleet => "spark-fleet",
            Contender::KubeScheduler => "default-scheduler",
            Contender::RawBinder => "raw-binder",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkloadArg {
    Plain,
    Spark,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// Pods of 100m / 128Mi with no Spark labels.
    Plain,
    /// Applications of one driver and executors (500m / 1Gi), labelled as Spark labels
    /// them, with the executor mix `spot=40,on-demand=60` on driver and executors.
    Spark,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Plain => "plain",
            Workload::Spark => "spark",
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "End-to-end scheduling throughput on a real control plane")]
struct Args {
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Pods in the backlog of each trial.
    #[arg(long, default_value_t = 2000)]
    pods: usize,
    /// Rounds; each round times every contender once, in an order that rotates.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, value_enum, default_value = "both")]
    workload: WorkloadArg,
    /// Executors per application in the spark workload (plus one driver).
    #[arg(long, default_value_t = 20)]
    executors_per_app: usize,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "spark-fleet,kube-scheduler,raw-binder"
    )]
    only: Vec<Contender>,
    /// spark-fleet's config (default: the built-in defaults). `metrics.address` is
    /// replaced by a free loopback port.
    #[arg(long)]
    spark_fleet_config: Option<PathBuf>,
    #[arg(long, default_value_t = 5000.0)]
    kube_scheduler_qps: f32,
    #[arg(long, default_value_t = 5000)]
    kube_scheduler_burst: i32,
    #[arg(long, default_value_t = 64)]
    raw_in_flight: usize,
    /// Give up on a trial after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Print spark-fleet's own metrics (`spark_fleet_*` lines) after each of its trials.
    #[arg(long)]
    show_metrics: bool,
    /// Internal: run as the raw binder against this kubeconfig, then exit.
    #[arg(long, hide = true)]
    raw_binder_kubeconfig: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("end_to_end: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = match &args.raw_binder_kubeconfig {
        Some(kubeconfig) => runtime.block_on(raw_binder(kubeconfig, args.raw_in_flight)),
        None => runtime.block_on(run(args)),
    };
    if let Err(e) = result {
        eprintln!("end_to_end: {e}");
        std::process::exit(1);
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn fail(message: impl Into<String>) -> Error {
    message.into().into()
}

// ---- the raw binder (a child process) ------------------------------------------------

/// Binds every pending pod of [`NS`] round-robin over the nodes (sorted by name),
/// `in_flight` bindings at once; nothing else.
async fn raw_binder(kubeconfig: &Path, in_flight: usize) -> Result<(), Error> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = Client::try_from(config)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let mut names: Vec<String> = nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(fail("no nodes"));
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pending = pods
        .list(&ListParams::default().fields("spec.nodeName="))
        .await?
        .items;
    let failures = futures::stream::iter(pending.into_iter().enumerate())
        .map(|(i, pod)| {
            let pods = pods.clone();
            let node = names[i % names.len()].clone();
            async move {
                let name = pod.metadata.name.unwrap_or_default();
                let binding = Binding {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(NS.into()),
                        uid: pod.metadata.uid,
                        ..Default::default()
                    },
                    target: ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Node".into()),
                        name: Some(node),
                        ..Default::default()
                    },
                };
                pods.create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await
                .err()
                .map(|e| format!("{name}: {e}"))
            }
        })
        .buffer_unordered(in_flight.max(1))
        .filter_map(|r| async move { r })
        .collect::<Vec<String>>()
        .await;
    for f in &failures {
        eprintln!("binding failed: {f}");
    }
    Ok(())
}

// ---- the observer ----------------------------------------------------------------------

/// When each pod of [`NS`] was first seen with something, by pod name.
#[derive(Default)]
struct Stamps(Mutex<HashMap<String, Instant>>);

impl Stamps {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stamp(&self, name: &str) {
        let now = Instant::now();
        self.lock().entry(name.to_owned()).or_insert(now);
    }

    /// (first, last, how many) among names starting with `prefix`.
    fn span(&self, prefix: &str) -> (Option<Instant>, Option<Instant>, usize) {
        let map = self.lock();
        let times = map
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, t)| *t);
        let (mut first, mut last, mut n) = (None::<Instant>, None::<Instant>, 0);
        for t in times {
            first = Some(first.map_or(t, |f| f.min(t)));
            last = Some(last.map_or(t, |l| l.max(t)));
            n += 1;
        }
        (first, last, n)
    }

    fn forget(&self, prefix: &str) {
        self.lock().retain(|k, _| !k.starts_with(prefix));
    }
}

/// What the watches saw: pods bound, and `Scheduled` events recorded.
#[derive(Default)]
struct Observed {
    bound: Stamps,
    scheduled_events: Stamps,
}

/// Watches pods and `Scheduled` events in [`NS`]; the tasks run until aborted.
fn spawn_observers(client: Client) -> (Arc<Observed>, Vec<tokio::task::JoinHandle<()>>) {
    let observed = Arc::new(Observed::default());
    let o = observed.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pods = tokio::spawn(async move {
        let mut stream = watcher::watcher(pods, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => {
                    let bound = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                    if let (true, Some(name)) = (bound, &p.metadata.name) {
                        o.bound.stamp(name);
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("observer: pod watch: {e}"),
            }
        }
    });
    let o = observed.clone();
    let events: Api<CoreEvent> = Api::namespaced(client, NS);
    let events = tokio::spawn(async move {
        let config = watcher::Config::default().fields("reason=Scheduled");
        let mut stream = watcher::watcher(events, config).default_backoff().boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Apply(e)) | Ok(Event::InitApply(e)) => {
                    if let Some(name) = &e.involved_object.name {
                        o.scheduled_events.stamp(name);
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("observer: event watch: {e}"),
            }
        }
    });
    (observed, vec![pods, events])
}

// ---- cluster setup ---------------------------------------------------------------------

/// Applies every object of `deploy/{namespace,serviceaccount,rbac}.yaml` (created; one
/// that exists is kept).
async fn apply_deploy(client: &Client) -> Result<(), Error> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for file in DEPLOY_FILES {
        let (name, text) = spark_fleet::manifests::read_file(&dir.join(file))?;
        for raw in spark_fleet::manifests::parse_objects(&name, &text)? {
            let obj: DynamicObject = serde_json::from_value(raw.value)?;
            let types = obj
                .types
                .clone()
                .ok_or_else(|| fail(format!("{name}:{}: no apiVersion/kind", raw.line)))?;
            let gvk = GroupVersionKind::try_from(&types)?;
            let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
            let api: Api<DynamicObject> = match (&obj.metadata.namespace, caps.scope) {
                (Some(ns), kube::discovery::Scope::Namespaced) => {
                    Api::namespaced_with(client.clone(), ns, &resource)
                }
                _ => Api::all_with(client.clone(), &resource),
            };
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(fail(format!("{name}:{}: {e}", raw.line))),
            }
        }
    }
    Ok(())
}

/// A ServiceAccount `bench/kube-scheduler` with upstream's roles for kube-scheduler.
async fn kube_scheduler_account(client: &Client) -> Result<(), Error> {
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), NS);
    let sa = serde_json::from_value(json!({"metadata": {"name": "kube-scheduler"}}))?;
    create_or_keep(sas.create(&PostParams::default(), &sa).await)?;
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
    for role in ["system:kube-scheduler", "system:volume-scheduler"] {
        let b = serde_json::from_value(json!({
            "metadata": {"name": format!("bench-{}", role.replace(':', "-"))},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "kube-scheduler", "namespace": NS}],
        }))?;
        create_or_keep(bindings.create(&PostParams::default(), &b).await)?;
    }
    Ok(())
}

fn create_or_keep<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A kubeconfig for ServiceAccount `ns/name` (a fresh one-hour token).
async fn account_kubeconfig(cp: &ControlPlane, ns: &str, name: &str) -> Result<PathBuf, Error> {
    let token = cp.service_account_token(ns, name).await?;
    Ok(cp.kubeconfig_for(&format!("{ns}-{name}"), &token)?)
}

fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

async fn add_nodes(client: &Client, n: usize) -> Result<(), Error> {
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let capacity = if is_spot(i) { "spot" } else { "on-demand" };
                let name = node_name(i);
                let node = control_plane::node(
                    &name,
                    NODE_CPU,
                    NODE_MEMORY,
                    NODE_PODS,
                    &[
                        ("kubernetes.io/hostname", name.as_str()),
                        ("topology.kubernetes.io/zone", ZONES[i % ZONES.len()]),
                        ("karpenter.sh/capacity-type", capacity),
                    ],
                );
                control_plane::add_node(&client, &node).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    Ok(())
}

/// The backlog of one trial: pod names start with `prefix`.
fn backlog(
    workload: Workload,
    prefix: &str,
    m: usize,
    per_app: usize,
    scheduler: &str,
) -> Vec<Pod> {
    let pod = |name: String,
               cpu: &str,
               memory: &str,
               labels: serde_json::Value,
               annotations: serde_json::Value|
     -> Pod {
        let value = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels, "annotations": annotations},
            "spec": {
                "schedulerName": scheduler,
                "containers": [{
                    "name": "main", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": cpu, "memory": memory}},
                }],
            },
        });
        match serde_json::from_value(value) {
            Ok(p) => p,
            Err(e) => panic!("a Pod built from literals deserializes: {e}"),
        }
    };
    match workload {
        Workload::Plain => (0..m)
            .map(|i| {
                pod(
                    format!("{prefix}{i:05}"),
                    "100m",
                    "128Mi",
                    json!({}),
                    json!({}),
                )
            })
            .collect(),
        Workload::Spark => {
            let mut mix = serde_json::Map::new();
            mix.insert(
                spark_fleet::spark::annotations::EXECUTOR_CAPACITY_MIX.into(),
                json!("spot=40,on-demand=60"),
            );
            let mix = serde_json::Value::Object(mix);
            let mut out = Vec::with_capacity(m);
            let mut app = 0;
            while out.len() < m {
                let selector = format!("{prefix}app{app:04}");
                let labels =
                    |role: &str| json!({"spark-role": role, "spark-app-selector": selector});
                out.push(pod(
                    format!("{selector}-driver"),
                    "1",
                    "2Gi",
                    labels("driver"),
                    mix.clone(),
                ));
                for e in 0..per_app {
                    if out.len() == m {
                        break;
                    }
                    out.push(pod(
                        format!("{selector}-exec-{e}"),
                        "500m",
                        "1Gi",
                        labels("executor"),
                        mix.clone(),
                    ));
                }
                app += 1;
            }
            out
        }
    }
}

async fn create_pods(client: &Client, pods: Vec<Pod>) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(pods)
        .map(|p| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &p).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await?;
    Ok(())
}

/// Deletes every pod of [`NS`] and waits until none is left.
async fn clear_pods(client: &Client) -> Result<(), Error> {
    control_plane::delete_pods_now(client, NS).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let gone = control_plane::wait_until(Duration::from_secs(120), || async {
        api.list_metadata(&ListParams::default().limit(1))
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await;
    if gone {
        Ok(())
    } else {
        Err(fail("pods of a trial still there after 120 s"))
    }
}

// ---- measurement -----------------------------------------------------------------------

/// CPU time (user + system) a process has used, from `/proc/PID/stat`. The kernel reports
/// it in USER_HZ ticks, 100 per second on every Linux ABI this runs on.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_seconds(*p)).sum()
}

/// Waits until etcd and kube-apiserver are at rest (under a tenth of a core over
/// half a second), at most [`SETTLE_LIMIT`], so that no binder starts into work left
/// from creating its backlog or clearing the last trial. Returns how long it waited.
async fn settle(server_pids: &[u32], tag: &str) -> Duration {
    let start = Instant::now();
    let limit = start + SETTLE_LIMIT;
    let mut before = cpu_of(server_pids);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = cpu_of(server_pids);
        if now - before < 0.05 {
            return start.elapsed();
        }
        if Instant::now() >= limit {
            eprintln!(
                "  {tag}: the API server was still busy ({:.0}% of a core) after {} s; starting anyway",
                (now - before) * 200.0,
                SETTLE_LIMIT.as_secs()
            );
            return start.elapsed();
        }
        before = now;
    }
}

#[derive(Debug, Clone)]
struct Trial {
    workload: Workload,
    contender: Contender,
    round: usize,
    /// (M − 1) / (last − first); None if not every pod was bound in time.
    rate: Option<f64>,
    span: f64,
    start_to_first: f64,
    start_to_last: f64,
    /// CPU seconds the binder used from its start to the last binding.
    cpu: f64,
    /// CPU seconds etcd + kube-apiserver used meanwhile.
    server_cpu: f64,
    /// Spark workload: share of executors placed on spot nodes.
    spot_share: Option<f64>,
    /// Seconds from the last binding to the last `Scheduled` event (schedulers only).
    events_after: Option<f64>,
    /// Seconds waited, after creating the backlog, for the API server to come to rest.
    settled: f64,
}

/// A binder process running for one trial.
enum Running {
    Process(Supervised),
    KubeScheduler,
}

struct Bench {
    args: Args,
    cp: ControlPlane,
    admin: Client,
    observed: Arc<Observed>,
    dir: tempfile::TempDir,
    trials: Vec<Trial>,
}

impl Bench {
    async fn start_contender(&mut self, c: Contender, tag: &str) -> Result<Running, Error> {
        match c {
            Contender::SparkFleet => {
                let kubeconfig = account_kubeconfig(&self.cp, SF_NS, SF_SA).await?;
                let mut config = match &self.args.spark_fleet_config {
                    Some(path) => Config::load(path)?,
                    None => Config::default(),
                };
                config.metrics.address = format!("127.0.0.1:{}", free_port()?);
                let config_path = self.dir.path().join("spark-fleet.json");
                std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
                let mut p = Supervised::new(
                    "spark-fleet",
                    env!("CARGO_BIN_EXE_spark-fleet"),
                    vec![
                        "run".into(),
                        "--config".into(),
                        config_path.display().to_string(),
                        "--kubeconfig".into(),
                        kubeconfig.display().to_string(),
                    ],
                    self.dir.path().join(format!("spark-fleet-{tag}.log")),
                )
                .env("POD_NAMESPACE", SF_NS)
                .env("POD_NAME", &format!("spark-fleet-{tag}"));
                p.spawn()?;
                Ok(Running::Process(p))
            }
            Contender::KubeScheduler => {
                let kubeconfig = account_kubeconfig(&self.cp, NS, "kube-scheduler").await?;
                self.cp
                    .start_kube_scheduler_as(
                        &kubeconfig,
                        self.args.kube_scheduler_qps,
                        self.args.kube_scheduler_burst,
                    )
                    .await?;
                Ok(Running::KubeScheduler)
            }
            Contender::RawBinder => {
                let kubeconfig = account_kubeconfig(&self.cp, SF_NS, SF_SA).await?;
                let mut p = Supervised::new(
                    "raw binder",
                    std::env::current_exe()?,
                    vec![
                        "--raw-binder-kubeconfig".into(),
                        kubeconfig.display().to_string(),
                        "--raw-in-flight".into(),
                        self.args.raw_in_flight.to_string(),
                    ],
                    self.dir.path().join(format!("raw-binder-{tag}.log")),
                );
                p.spawn()?;
                Ok(Running::Process(p))
            }
        }
    }

    fn pid_of(&self, running: &Running) -> Option<u32> {
        match running {
            Running::Process(p) => p.pid(),
            // etcd, kube-apiserver, then kube-scheduler.
            Running::KubeScheduler => self.cp.pids().get(2).copied(),
        }
    }

    async fn trial(
        &mut self,
        workload: Workload,
        c: Contender,
        round: usize,
    ) -> Result<Trial, Error> {
        let tag = format!("{}-{}-{round}", workload.label(), c.scheduler_name());
        let prefix = format!("{tag}-");
        let pods = backlog(
            workload,
            &prefix,
            self.args.pods,
            self.args.executors_per_app,
            c.scheduler_name(),
        );
        let executors: Vec<String> = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("spark-role"))
                    .map(String::as_str)
                    == Some("executor")
            })
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        create_pods(&self.admin, pods).await?;
        let server_pids: Vec<u32> = self.cp.pids().into_iter().take(2).collect();
        let settled = settle(&server_pids, &tag).await.as_secs_f64();
        let server_cpu0 = cpu_of(&server_pids);
        let started = Instant::now();
        let mut running = self.start_contender(c, &tag).await?;
        let pid = self.pid_of(&running);
        let m = self.args.pods;
        let deadline = started + Duration::from_secs(self.args.timeout);
        let mut cpu = 0.0;
        let mut server_cpu;
        let (first, last, n) = loop {
            // Read before the count, so the CPU figures stop close to the last binding.
            cpu = pid.and_then(cpu_seconds).unwrap_or(cpu);
            server_cpu = cpu_of(&server_pids) - server_cpu0;
            let (first, last, n) = self.observed.bound.span(&prefix);
            if n >= m || Instant::now() >= deadline {
                break (first, last, n);
            }
            if let Running::Process(p) = &mut running {
                if let (Contender::SparkFleet, Some(status)) = (c, p.exited()) {
                    return Err(fail(format!(
                        "spark-fleet exited ({status}):\n{}",
                        control_plane::log_tail(p.log(), 20)
                    )));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Schedulers record a `Scheduled` event per pod; how long after the last binding
        // the last one is recorded (the binder keeps running meanwhile).
        let events_after = if c == Contender::RawBinder {
            None
        } else {
            let wait = Instant::now() + EVENT_WAIT;
            loop {
                let (_, last_event, k) = self.observed.scheduled_events.span(&prefix);
                if k >= m || Instant::now() >= wait {
                    break match (last_event, last) {
                        (Some(e), Some(l)) if k >= m => {
                            Some(e.saturating_duration_since(l).as_secs_f64())
                        }
                        _ => {
                            eprintln!("  {}: {k} of {m} Scheduled events recorded", c.label());
                            Some(f64::NAN)
                        }
                    };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if c == Contender::SparkFleet && self.args.show_metrics {
            self.print_metrics().await;
        }
        match running {
            Running::Process(mut p) => {
                p.terminate();
                if p.wait(Duration::from_secs(15)).await.is_none() {
                    p.kill();
                }
            }
            Running::KubeScheduler => self.cp.stop_kube_scheduler(),
        }
        let secs =
            |t: Option<Instant>| t.map_or(f64::NAN, |t| t.duration_since(started).as_secs_f64());
        let span = match (first, last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => f64::NAN,
        };
        let spot_share = if executors.is_empty() {
            None
        } else {
            Some(self.spot_share(&executors).await?)
        };
        let trial = Trial {
            workload,
            contender: c,
            round,
            rate: (n >= m && span > 0.0).then(|| (m - 1) as f64 / span),
            span,
            start_to_first: secs(first),
            start_to_last: secs(last),
            cpu,
            server_cpu,
            spot_share,
            events_after,
            settled,
        };
        if n < m {
            eprintln!(
                "  {}: only {n} of {m} pods bound after {} s",
                c.label(),
                self.args.timeout
            );
        }
        clear_pods(&self.admin).await?;
        let events: Api<CoreEvent> = Api::namespaced(self.admin.clone(), NS);
        events
            .delete_collection(&Default::default(), &ListParams::default())
            .await?;
        self.observed.bound.forget(&prefix);
        self.observed.scheduled_events.forget(&prefix);
        Ok(trial)
    }

    /// Share of `executors` bound to spot nodes.
    async fn spot_share(&self, executors: &[String]) -> Result<f64, Error> {
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), NS);
        let pods = api.list(&ListParams::default()).await?.items;
        let wanted: std::collections::HashSet<&str> =
            executors.iter().map(String::as_str).collect();
        let (mut spot, mut all) = (0usize, 0usize);
        for p in &pods {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
            if let (true, Some(node)) = (wanted.contains(name), node) {
                all += 1;
                let idx: usize = node
                    .trim_start_matches("node-")
                    .parse()
                    .unwrap_or(usize::MAX);
                if is_spot(idx) {
                    spot += 1;
                }
            }
        }
        Ok(if all == 0 {
            f64::NAN
        } else {
            spot as f64 / all as f64
        })
    }

    async fn print_metrics(&self) {
        let Some(port) = self.spark_fleet_metrics_port() else {
            return;
        };
        match http_get(port, "/metrics").await {
            Ok(body) => {
                for line in body
                    .lines()
                    .filter(|l| l.starts_with("spark_fleet_") && !l.contains("_bucket"))
                {
                    println!("    {line}");
                }
            }
            Err(e) => eprintln!("    metrics: {e}"),
        }
    }

    fn spark_fleet_metrics_port(&self) -> Option<u16> {
        let text = std::fs::read_to_string(self.dir.path().join("spark-fleet.json")).ok()?;
        let config: Config = serde_json::from_str(&text).ok()?;
        config.metrics.address.rsplit(':').next()?.parse().ok()
    }
}

async fn http_get(port: u16, path: &str) -> Result<String, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf)
}

fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} × {model}")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn apiserver_version(assets: &Path) -> String {
    std::process::Command::new(assets.join("kube-apiserver"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| e.to_string())
}

async fn run(args: Args) -> Result<(), Error> {
    let assets =
        ControlPlane::assets().map_err(|why| fail(format!("needs a real control plane: {why}")))?;
    if args.only.contains(&Contender::KubeScheduler) && !assets.join("kube-scheduler").is_file() {
        return Err(fail(format!(
            "{} has no kube-scheduler (use --only)",
            assets.display()
        )));
    }
    if args.pods < 2 || args.nodes == 0 || args.rounds == 0 {
        return Err(fail("needs --pods ≥ 2, --nodes ≥ 1, --rounds ≥ 1"));
    }
    let cp = ControlPlane::start().await?;
    let admin = cp.client();
    control_plane::create_namespace(&admin, NS).await?;
    apply_deploy(&admin).await?;
    kube_scheduler_account(&admin).await?;
    add_nodes(&admin, args.nodes).await?;
    let (observed, observers) = spawn_observers(admin.clone());
    let workloads = match args.workload {
        WorkloadArg::Plain => vec![Workload::Plain],
        WorkloadArg::Spark => vec![Workload::Spark],
        WorkloadArg::Both => vec![Workload::Plain, Workload::Spark],
    };
    println!(
        "end_to_end: {} nodes, {} pods per trial, {} rounds; machine: {} (shared: other work may run); \
         load average {}; {}",
        args.nodes,
        args.pods,
        args.rounds,
        machine(),
        load_average(),
        apiserver_version(&assets),
    );
    let mut bench = Bench {
        cp,
        admin,
        observed,
        dir: tempfile::Builder::new()
            .prefix("spark-fleet-e2e-")
            .tempdir()?,
        trials: Vec::new(),
        args,
    };
    let contenders = bench.args.only.clone();
    for &workload in &workloads {
        for round in 0..bench.args.rounds {
            // The order rotates, so no contender always runs first (or after the same one).
            for k in 0..contenders.len() {
                let c = contenders[(k + round) % contenders.len()];
                let t = bench.trial(workload, c, round).await?;
                println!(
                    "{:<6} round {} {:<15} {:>7.1} pods/s  first→last {:>6.2} s  start→first {:>5.2} s  \
                     start→last {:>6.2} s  cpu {:>5.2} s  apiserver+etcd cpu {:>6.2} s  rest {:.1} s{}{}",
                    workload.label(),
                    round + 1,
                    c.label(),
                    t.rate.unwrap_or(f64::NAN),
                    t.span,
                    t.start_to_first,
                    t.start_to_last,
                    t.cpu,
                    t.server_cpu,
                    t.settled,
                    t.events_after
                        .map(|s| format!("  last Scheduled event +{s:.2} s"))
                        .unwrap_or_default(),
                    t.spot_share
                        .map(|s| format!("  executors on spot {:.1}%", s * 100.0))
                        .unwrap_or_default(),
                );
                bench.trials.push(t);
            }
        }
    }
    summary(&bench.trials, &workloads, &contenders, bench.args.rounds);
    println!("load average at the end {}", load_average());
    for o in observers {
        o.abort();
    }
    Ok(())
}

fn summary(trials: &[Trial], workloads: &[Workload], contenders: &[Contender], rounds: usize) {
    for &w in workloads {
        println!("\n{} workload, medians of {rounds} rounds:", w.label());
        let rate = |c: Contender, r: usize| {
            trials
                .iter()
                .find(|t| t.workload == w && t.contender == c && t.round == r)
                .and_then(|t| t.rate)
                .unwrap_or(f64::NAN)
        };
        for &c in contenders {
            let of = |f: &dyn Fn(&Trial) -> f64| {
                median(
                    trials
                        .iter()
                        .filter(|t| t.workload == w && t.contender == c)
                        .map(f)
                        .collect(),
                )
            };
            let per_round: Vec<String> =
                (0..rounds).map(|r| format!("{:.1}", rate(c, r))).collect();
            let events = if c == Contender::RawBinder {
                String::new()
            } else {
                format!(
                    "  last Scheduled event +{:.2} s",
                    of(&|t| t.events_after.unwrap_or(f64::NAN))
                )
            };
            println!(
                "  {:<15} {:>7.1} pods/s (rounds: {})  cpu {:.2} s  apiserver+etcd cpu {:.2} s{events}",
                c.label(),
                of(&|t| t.rate.unwrap_or(f64::NAN)),
                per_round.join(", "),
                of(&|t| t.cpu),
                of(&|t| t.server_cpu),
            );
        }
        for base in [Contender::KubeScheduler, Contender::RawBinder] {
            if !contenders.contains(&Contender::SparkFleet) || !contenders.contains(&base) {
                continue;
            }
            let ratios: Vec<f64> = (0..rounds)
                .map(|r| rate(Contender::SparkFleet, r) / rate(base, r))
                .collect();
            println!(
                "  spark-fleet ÷ {:<14} {:.2} (same-round ratios: {})",
                base.label(),
                median(ratios.clone()),
                ratios
                    .iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }
}
