//! The live scheduler on Kubernetes (`spark-fleet run`).
//!
//! Watchers keep the [`Snapshot`] and the [`SchedulingQueue`] current (always, also on
//! a standby, so a takeover starts warm). The leader runs the loop: flush → pop →
//! [`schedule`] → assume → bind asynchronously through the Binding subresource with
//! bounded concurrency. Outcomes are reported as upstream kube-scheduler does
//! (PodScheduled condition, events, nominatedNodeName, preemption of victims).
//!
//! - **Load on the API server**: at most `bind.concurrency` bindings (default 64),
//!   `reporter::REPORTS_IN_FLIGHT` (8) status patches or deletions and one event are in
//!   flight at once. Events wait in a bounded queue for one sender, as upstream's
//!   broadcaster: during a burst they trail the bindings instead of halving their rate.
//! - **Client rate limit**: every request we make (bindings, status patches,
//!   deletions, lease reads and writes) first takes a token from a
//!   [`rate_limit::RateLimiter`] with `client.qps` / `client.burst` (default 2,000 /
//!   2,000, a ceiling: see `config/spark-fleet.yaml` for why that is safe); events and
//!   lease requests each take theirs from a bucket of their own of the same size, as
//!   upstream's separate event and leader-election clients. Watches are long-running
//!   and not limited.
//! - **Leader election** ([`leader`]): only the leader binds; standbys keep watching.
//! - **Partitioning** ([`partition`]): namespaces and a pod label selector.
//! - **Observability** ([`health`], [`metrics`]): `/metrics`, `/healthz`, `/readyz`.
//! - **Admission webhook** (`webhook`, [`crate::admission`]): served over HTTPS by
//!   every replica from the same snapshot, recording executor admissions in
//!   `State::admissions` under the state lock.
//! - **Shutdown** ([`Scheduler::shutdown`]): stop dequeuing, wait up to 10 s for
//!   in-flight bindings, release the lease.
//!
//! The binary wires it as `spark-fleet run [--config FILE] [--kubeconfig FILE]`:
//! `init_logging(config.logging.format)`, then [`run`] with a future that completes
//! on SIGTERM or SIGINT.

mod binder;
mod events;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod partition;
mod prebind;
pub mod rate_limit;
mod reporter;
mod watch;
mod webhook;

pub use partition::{is_ours, parse_selector, raw_is_ours, Partition};

use crate::config::{Config, LogFormat};
use crate::framework::{schedule, CycleOptions, Profile};
use crate::model::{Pod, PodKey, PriorityResolver};
use crate::queue::{QueueConfig, QueueError, QueuedPod, SchedulingQueue, SystemClock};
use crate::snapshot::Snapshot;
use kube::Client;
use rate_limit::RateLimiter;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{watch as tokio_watch, Notify, Semaphore};
use tokio::task::JoinHandle;

/// The reporting controller name on events.
pub const CONTROLLER: &str = "spark-fleet";

/// In-flight bindings get this long to finish at shutdown.
const SHUTDOWN_BIND_WAIT: Duration = Duration::from_secs(10);
/// Queued events get this long to be recorded at shutdown, after the bindings.
const SHUTDOWN_EVENT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum KubeError {
    #[error("kubeconfig {file}: {message}")]
    Kubeconfig { file: String, message: String },
    #[error("in-cluster Kubernetes config: {0}")]
    InCluster(String),
    #[error("kube client: {0}")]
    Client(#[from] kube::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("partition.podSelector {selector:?}: term {term:?}: {message}")]
    Selector {
        selector: String,
        term: String,
        message: String,
    },
    /// The scheduler cannot go on (e.g. its lease's namespace does not exist).
    #[error("{0}")]
    Fatal(String),
    #[error("metrics.address {address}: {source}")]
    MetricsBind {
        address: String,
        source: std::io::Error,
    },
}

/// The log filter without `RUST_LOG`: INFO, less the kube client's own line per failed
/// request (every failure it reports reaches the caller, which logs it once).
pub const DEFAULT_LOG_FILTER: &str = "info,kube_client=error,kube_client::client::builder=off";

/// Text or JSON logs on stderr; `RUST_LOG` filters (default [`DEFAULT_LOG_FILTER`]).
/// Safe to call twice.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Builds the client (in-cluster config, or `kubeconfig` when given), runs the
/// scheduler until `shutdown` completes, then shuts down gracefully.
pub async fn run(
    config: Config,
    kubeconfig: Option<PathBuf>,
    shutdown: impl Future,
) -> Result<(), KubeError> {
    let client = client_for(kubeconfig).await?;
    let scheduler = Scheduler::start(client, config).await?;
    tracing::info!(
        identity = %scheduler.identity(),
        scheduler_name = %scheduler.shared.config.scheduler_name,
        profile = %scheduler.shared.config.default_profile,
        leader_election = scheduler.shared.config.leader_election.enabled,
        metrics = %scheduler.metrics_addr(),
        "spark-fleet running"
    );
    let mut failure = scheduler.shared.failure.subscribe();
    let failed = tokio::select! {
        _ = shutdown => None,
        f = failure.wait_for(|f| f.is_some()) => f.ok().and_then(|f| f.clone()),
    };
    tracing::info!("shutting down");
    scheduler.shutdown().await;
    match failed {
        Some(message) => Err(KubeError::Fatal(message)),
        None => Ok(()),
    }
}

async fn client_for(kubeconfig: Option<PathBuf>) -> Result<Client, KubeError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = path.display().to_string();
            let kc =
                kube::config::Kubeconfig::read_from(&path).map_err(|e| KubeError::Kubeconfig {
                    file: file.clone(),
                    message: e.to_string(),
                })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| KubeError::Kubeconfig {
                    file,
                    message: e.to_string(),
                })?
        }
        None => kube::Config::incluster().map_err(|e| KubeError::InCluster(e.to_string()))?,
    };
    // The client sends a request answered 429, 503 or 504 again, after the answer's
    // Retry-After if it gives one (else with exponential backoff), up to 15 times: what
    // API Priority and Fairness asks of a client it sheds (tests/api_requests.rs).
    let mut config = config;
    config.default_retry = true;
    Ok(Client::try_from(config)?)
}

/// Everything the watchers, the loop, the binders and the lease task share.
pub(crate) struct Shared {
    pub config: Config,
    pub profile: Profile,
    pub partition: Partition,
    pub client: Client,
    pub limiter: RateLimiter,
    /// Events have their own bucket, as upstream's separate event client: reporting
    /// must not halve the binding rate.
    pub event_limiter: RateLimiter,
    /// Lease reads and writes have their own bucket, as upstream's separate
    /// leader-election client: a backlog of reports must not delay a renewal past the
    /// renew deadline (the leader would keep binding while its lease runs out).
    pub lease_limiter: RateLimiter,
    /// Events wait here for the one sender (`reporter::EventQueue`).
    pub events: reporter::EventQueue,
    pub identity: String,
    pub state: Mutex<State>,
    /// Something changed that may let the loop pop a pod.
    pub wake: Notify,
    /// A pod's last status patch in flight ended (`reporter::StatusPatches`).
    pub status_patches_done: Notify,
    pub leader: tokio_watch::Sender<bool>,
    pub stop: tokio_watch::Sender<bool>,
    /// Why the scheduler cannot go on, once it cannot (`run` returns it as an error).
    pub failure: tokio_watch::Sender<Option<String>>,
    /// Per watcher (nodes, pods, pdbs, priority classes, and the storage
    /// kinds, `watch::WATCHERS`): listed once.
    pub synced: [AtomicBool; watch::WATCHERS],
    /// A claim or volume changed: volume bindings waiting in PreBind look again.
    pub storage_changed: Notify,
    pub bind_slots: Arc<Semaphore>,
    /// Status patches and deletions in flight (`reporter::REPORTS_IN_FLIGHT`).
    pub report_slots: Semaphore,
    pub bind_concurrency: usize,
    pub binds: AtomicU64,
    /// Scheduling attempts that found no node (for the progress line).
    pub unschedulable: AtomicU64,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// The caches and the queue, behind one lock: a scheduling cycle sees one consistent state.
pub(crate) struct State {
    pub snap: Snapshot,
    pub queue: SchedulingQueue,
    /// Every pod seen (uid by key), so a re-list can tell which disappeared.
    pub pods: HashMap<PodKey, String>,
    pub priority_classes: PriorityClasses,
    /// PodDisruptionBudgets (namespace, name) known; the budgets live in the snapshot.
    pub pdbs: std::collections::HashSet<(String, String)>,
    /// Last FailedScheduling message reported per pod: identical ones are not re-sent.
    pub reported: HashMap<PodKey, String>,
    /// Pods whose `PodScheduled` condition is False on the server (as last watched): a
    /// new message keeps the condition's lastTransitionTime, as upstream does.
    pub scheduled_false: std::collections::HashSet<PodKey>,
    /// Status patches in flight per pod (`reporter::StatusPatches`).
    pub status_patches: HashMap<PodKey, u32>,
    /// Events sent recently per pod, for event series (`events`).
    pub events: events::RecentEvents,
    /// Executors admitted with a capacity type and not placed yet.
    pub admissions: crate::admission::ledger::Ledger,
}

/// What a running scheduler holds per pod ([`Scheduler::retained`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub snapshot: crate::snapshot::Retained,
    /// Queue entries (pending and in flight).
    pub queue: usize,
    /// Pods known to the watcher (for re-lists).
    pub pods: usize,
    /// Last FailedScheduling message per pod.
    pub reported: usize,
    pub scheduled_false: usize,
    pub status_patches: usize,
    /// Pods with recent events kept for event series.
    pub recent_events: usize,
    /// Executors admitted by the webhook and not placed yet.
    pub admissions: usize,
    /// Strings interned in the process (`model::Sym`), pinned and counted.
    pub interned_strings: usize,
}

/// `priorityClassName` → value, and the global default, from the watched PriorityClasses.
#[derive(Debug, Default, Clone)]
pub(crate) struct PriorityClasses {
    pub values: HashMap<String, (i32, bool)>,
}

impl PriorityResolver for PriorityClasses {
    fn priority_of(&self, class_name: Option<&str>) -> Option<i32> {
        match class_name {
            Some(name) => self.values.get(name).map(|v| v.0),
            None => self.values.values().find(|v| v.1).map(|v| v.0),
        }
    }
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving rather than cascade.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    pub fn set_leader(&self, leading: bool) {
        let changed = self.leader.send_if_modified(|l| {
            let changed = *l != leading;
            *l = leading;
            changed
        });
        if changed {
            ::metrics::gauge!(metrics::LEADER).set(if leading { 1.0 } else { 0.0 });
            self.wake.notify_one();
        }
    }

    pub fn is_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// The scheduler cannot go on: `run` stops it and returns `message`.
    pub fn fail(&self, message: String) {
        self.failure.send_replace(Some(message));
    }
}

/// A running scheduler. Dropping it without [`shutdown`](Self::shutdown) aborts its tasks.
pub struct Scheduler {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    lease: Option<(JoinHandle<()>, leader::LeaseSettings)>,
    metrics_addr: SocketAddr,
    webhook: Option<crate::admission::server::Webhook>,
}

impl Scheduler {
    /// Starts watchers, the metrics server, leader election (if enabled) and the loop.
    pub async fn start(client: Client, config: Config) -> Result<Scheduler, KubeError> {
        Self::start_as(client, config, leader::default_identity()).await
    }

    /// As [`start`](Self::start) with an explicit leader-election identity.
    pub async fn start_as(
        client: Client,
        config: Config,
        identity: String,
    ) -> Result<Scheduler, KubeError> {
        config
            .validate("<config>")
            .map_err(|e| KubeError::Config(e.to_string()))?;
        let profile = crate::plugins::build_named_profile(&config, &config.default_profile)
            .map_err(|e| KubeError::Config(e.to_string()))?;
        Self::start_with(client, config, profile, identity).await
    }

    /// As [`start_as`](Self::start_as) with a profile built by the caller (tests use
    /// it to plug in their own plugins).
    pub async fn start_with(
        client: Client,
        config: Config,
        profile: Profile,
        identity: String,
    ) -> Result<Scheduler, KubeError> {
        let partition = Partition::from_config(&config.partition)?;
        let q = &config.queue;
        let queue = SchedulingQueue::new(
            QueueConfig {
                initial_backoff_ms: secs_to_ms(q.initial_backoff_seconds),
                max_backoff_ms: secs_to_ms(q.max_backoff_seconds),
                unschedulable_flush_ms: secs_to_ms(q.unschedulable_flush_seconds),
            },
            Arc::new(SystemClock::new()),
        )
        .map_err(|e| KubeError::Config(e.to_string()))?;
        let metrics_handle = metrics::handle();
        metrics::describe();
        let bind_concurrency = config.bind.concurrency.max(1);
        let leader_election = config.leader_election.enabled;
        let (events, queued_events) = reporter::EventQueue::new();
        let shared = Arc::new(Shared {
            limiter: RateLimiter::for_client("main", config.client.qps, config.client.burst),
            event_limiter: RateLimiter::for_client(
                "events",
                config.client.qps,
                config.client.burst,
            ),
            lease_limiter: RateLimiter::for_client("lease", config.client.qps, config.client.burst),
            partition,
            profile,
            client,
            events,
            identity,
            state: Mutex::new(State {
                snap: Snapshot::new(config.capacity_types.clone()),
                queue,
                pods: HashMap::new(),
                priority_classes: PriorityClasses::default(),
                pdbs: Default::default(),
                reported: HashMap::new(),
                scheduled_false: Default::default(),
                status_patches: HashMap::new(),
                events: Default::default(),
                admissions: Default::default(),
            }),
            wake: Notify::new(),
            status_patches_done: Notify::new(),
            leader: tokio_watch::Sender::new(false),
            stop: tokio_watch::Sender::new(false),
            failure: tokio_watch::Sender::new(None),
            synced: Default::default(),
            storage_changed: Notify::new(),
            bind_slots: Arc::new(Semaphore::new(bind_concurrency)),
            report_slots: Semaphore::new(reporter::REPORTS_IN_FLIGHT),
            bind_concurrency,
            binds: AtomicU64::new(0),
            unschedulable: AtomicU64::new(0),
            metrics: metrics_handle,
            config,
        });
        let metrics_addr = health::serve(shared.clone(), &shared.config.metrics.address).await?;
        let webhook = shared
            .config
            .admission
            .webhook
            .enabled
            .then(|| webhook::start(&shared));
        let mut tasks = watch::spawn_all(shared.clone());
        let lease = if leader_election {
            let settings = leader::LeaseSettings::from_config(&shared.config);
            let handle = tokio::spawn(leader::run(
                shared.clone(),
                leader::LeaseSettings::from_config(&shared.config),
            ));
            Some((handle, settings))
        } else {
            shared.set_leader(true);
            None
        };
        tasks.push(tokio::spawn(reporter::send_events(
            shared.clone(),
            queued_events,
        )));
        tasks.push(tokio::spawn(scheduling_loop(shared.clone())));
        tasks.push(tokio::spawn(progress(shared.clone())));
        Ok(Scheduler {
            shared,
            tasks,
            lease,
            metrics_addr,
            webhook,
        })
    }

    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The admission webhook's address once it listens (it needs a certificate first).
    pub async fn webhook_addr(&self, timeout: Duration) -> Option<SocketAddr> {
        match &self.webhook {
            Some(w) => w.wait_listening(timeout).await,
            None => None,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// Why the scheduler cannot go on, if it cannot (e.g. its lease's namespace does
    /// not exist); [`run`] returns it as an error.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.borrow().clone()
    }

    /// Every watcher has listed once.
    pub fn is_ready(&self) -> bool {
        self.shared.is_synced()
    }

    /// Successful bindings made by this instance.
    pub fn binds(&self) -> u64 {
        self.shared.binds.load(Ordering::Relaxed)
    }

    /// Reads the snapshot (for tests and debugging).
    pub fn with_snapshot<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        f(&self.shared.lock().snap)
    }

    /// Entry counts of every structure that holds something per pod, and the
    /// strings interned: with no pod left, all but `interned_strings` are 0.
    pub fn retained(&self) -> Retained {
        let st = self.shared.lock();
        Retained {
            snapshot: st.snap.retained(),
            queue: st.queue.retained(),
            pods: st.pods.len(),
            reported: st.reported.len(),
            scheduled_false: st.scheduled_false.len(),
            status_patches: st.status_patches.len(),
            recent_events: st.events.len(),
            admissions: st.admissions.len(),
            interned_strings: crate::model::Sym::interned_count(),
        }
    }

    /// Whether the queue tracks the pod (queued or in flight).
    pub fn is_queued(&self, namespace: &str, name: &str) -> bool {
        self.shared
            .lock()
            .queue
            .contains(&PodKey::new(namespace, name))
    }

    /// Stops dequeuing, waits (bounded) for in-flight bindings, releases the lease,
    /// stops the watchers and the metrics server.
    pub async fn shutdown(mut self) {
        self.shared.stop.send_replace(true);
        self.shared.wake.notify_one();
        let all = u32::try_from(self.shared.bind_concurrency).unwrap_or(u32::MAX);
        match tokio::time::timeout(SHUTDOWN_BIND_WAIT, self.shared.bind_slots.acquire_many(all))
            .await
        {
            Ok(_) => tracing::info!("in-flight bindings finished"),
            Err(_) => tracing::warn!("in-flight bindings did not finish in time"),
        }
        if !self.shared.events.drained(SHUTDOWN_EVENT_WAIT).await {
            tracing::warn!("queued events not all recorded before shutdown");
        }
        if let Some((task, settings)) = self.lease.take() {
            let _ = task.await;
            leader::release(&self.shared, &settings).await;
        }
        self.shared.set_leader(false);
        self.webhook.take();
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
        if let Some((t, _)) = &self.lease {
            t.abort();
        }
    }
}

/// A requeue refused because the pod is not in flight means the pod is queued
/// or gone already; a bug elsewhere if it happens, so it is logged, never silent.
fn log_requeue_error(result: Result<Option<crate::queue::Location>, QueueError>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "requeue refused");
    }
}

fn secs_to_ms(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1000.0).round() as u64
    } else {
        0
    }
}

/// How often the progress line is written (when something happened meanwhile).
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// One INFO line per [`PROGRESS_EVERY`] while pods are bound or found unplaceable:
/// what an operator follows at the default level, where each pod's outcome is DEBUG.
async fn progress(shared: Arc<Shared>) {
    let mut last = (0, 0);
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let now = (
            shared.binds.load(Ordering::Relaxed),
            shared.unschedulable.load(Ordering::Relaxed),
        );
        if now == last {
            continue;
        }
        let pending = shared.lock().queue.pending_counts();
        tracing::info!(
            bound = now.0 - last.0,
            unschedulable_attempts = now.1 - last.1,
            bound_total = now.0,
            active = pending.active,
            backoff = pending.backoff,
            unschedulable = pending.unschedulable,
            "progress over the last {}s",
            PROGRESS_EVERY.as_secs()
        );
        last = now;
    }
}

/// What one cycle produced, acted on after the lock is released.
enum Outcome {
    Bind {
        qp: QueuedPod,
        node: String,
        permit: tokio::sync::OwnedSemaphorePermit,
    },
    Unschedulable {
        pod: Arc<Pod>,
        message: Option<String>,
        preemption: Option<reporter::Preemption>,
        /// `status.nominatedNodeName` is to be cleared.
        clear_nominated: bool,
        /// `PodScheduled` becomes False now (it is not already): set lastTransitionTime.
        transition: bool,
        /// The condition's reason: `Unschedulable` for a rejection, `SchedulerError` for
        /// an error (autoscalers act on the first only).
        reason: &'static str,
    },
    /// Requeued with backoff; nothing to report.
    Retry,
}

async fn scheduling_loop(shared: Arc<Shared>) {
    let mut leader = shared.leader.subscribe();
    let mut stop = shared.stop.subscribe();
    loop {
        if shared.stopping() {
            return;
        }
        // Standbys (and an instance whose caches are not yet synced) don't schedule.
        if !shared.is_leader() || !shared.is_synced() {
            tokio::select! {
                _ = leader.changed() => {}
                _ = shared.wake.notified() => {}
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        // A bind slot first, so a full pipeline doesn't pop pods it cannot bind.
        let permit = tokio::select! {
            p = shared.bind_slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => continue,
        };
        let (outcome, sleep_for) = {
            let mut st = shared.lock();
            let st = &mut *st;
            st.queue.flush();
            metrics::record_pending(st.queue.pending_counts());
            match st.queue.pop() {
                Some(qp) => (Some(cycle(&shared, st, qp, permit)), None),
                None => {
                    let now = st.queue.now_ms();
                    let next = [
                        st.queue.next_backoff_expiry_ms(),
                        st.queue.next_leftover_flush_ms(),
                    ]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|at| Duration::from_millis(at.saturating_sub(now).max(1)));
                    (None, Some(next.unwrap_or(Duration::from_secs(1))))
                }
            }
        };
        match outcome {
            Some(Outcome::Bind { qp, node, permit }) => {
                tokio::spawn(binder::bind(shared.clone(), qp, node, permit));
            }
            Some(Outcome::Unschedulable {
                pod,
                message,
                preemption,
                clear_nominated,
                transition,
                reason,
            }) => {
                if message.is_some() || clear_nominated {
                    let in_flight = reporter::StatusPatches::begin(&shared, &pod.key);
                    tokio::spawn(reporter::unschedulable(
                        shared.clone(),
                        pod.clone(),
                        message,
                        clear_nominated,
                        transition,
                        reason,
                        in_flight,
                    ));
                }
                if let Some(p) = preemption {
                    let in_flight = reporter::StatusPatches::begin(&shared, &pod.key);
                    tokio::spawn(reporter::preempt(shared.clone(), pod, p, in_flight));
                }
            }
            Some(Outcome::Retry) => {}
            None => {
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep(sleep_for.unwrap_or(Duration::from_secs(1))) => {}
                    _ = stop.changed() => {}
                    _ = leader.changed() => {}
                }
            }
        }
    }
}

/// One scheduling cycle under the state lock.
fn cycle(
    shared: &Arc<Shared>,
    st: &mut State,
    mut qp: QueuedPod,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Outcome {
    let pod = qp.pod.clone();
    let started = Instant::now();
    st.snap
        .set_now_ms(Some(chrono::Utc::now().timestamp_millis()));
    let decision = schedule(
        &shared.profile,
        &pod,
        &mut st.snap,
        CycleOptions {
            detail: false,
            post_filter: true,
            ..CycleOptions::default()
        },
    );
    ::metrics::histogram!(metrics::ALGORITHM_DURATION).record(started.elapsed().as_secs_f64());
    if let Some(idx) = decision.node {
        let node = st.snap.nodes().node[idx as usize].name.as_str().to_owned();
        let fallback = reporter::capacity_fallback(&shared.config, &pod, &st.snap, idx);
        // With the GPU cards Reserve picked, which the binding records.
        let bound = decision.bound_pod(&pod);
        match st.snap.assume(bound.clone(), idx) {
            Ok(()) => {
                qp.pod = bound;
                st.snap.clear_nomination(&pod.key);
                if let Some(fb) = fallback {
                    ::metrics::counter!(metrics::CAPACITY_FALLBACKS).increment(1);
                    reporter::capacity_fallback_event(shared, &pod, &node, fb);
                }
                return Outcome::Bind { qp, node, permit };
            }
            Err(e) => {
                // What Reserve assumed for the pod's volumes goes with it.
                st.snap.forget(&pod.key);
                tracing::warn!(pod = %pod.key, error = %e, "assume failed; retrying");
                ::metrics::counter!(metrics::SCHEDULE_ATTEMPTS, "result" => "error").increment(1);
                log_requeue_error(st.queue.requeue_backoff(qp));
                return Outcome::Retry;
            }
        }
    }
    drop(permit);
    let message = decision.message().unwrap_or_default();
    let errored = decision.error.is_some();
    let result = if errored {
        log_requeue_error(st.queue.requeue_backoff(qp));
        "error"
    } else {
        log_requeue_error(st.queue.requeue_unschedulable(qp, decision.rejected_by()));
        retry_when_wait_ends(shared, st, &pod);
        "unschedulable"
    };
    ::metrics::counter!(metrics::SCHEDULE_ATTEMPTS, "result" => result).increment(1);
    shared.unschedulable.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(pod = %pod.key, %message, "unschedulable");
    // Preemption found no node: the nomination an earlier one gave is dropped,
    // here and in status.nominatedNodeName (as upstream does).
    let clears = decision
        .post_filter
        .as_ref()
        .is_some_and(|p| p.clears_nomination);
    // The API field is cleared if the pod object shows it or we nominated the
    // pod ourselves (our patch may not have reached the queued object yet).
    let nominated = pod.nominated_node_name.is_some() || st.snap.nomination_of(&pod.key).is_some();
    if clears {
        st.snap.clear_nomination(&pod.key);
    }
    let clear_nominated = clears && nominated;
    let preemption = decision.post_filter.and_then(|p| p.nomination).map(|nom| {
        st.snap.nominate(pod.clone(), nom.node);
        reporter::Preemption {
            node: st.snap.nodes().node[nom.node as usize]
                .name
                .as_str()
                .to_owned(),
            victims: nom.victims,
        }
    });
    let fresh = st.reported.get(&pod.key) != Some(&message);
    if fresh {
        st.reported.insert(pod.key.clone(), message.clone());
    }
    Outcome::Unschedulable {
        transition: !st.scheduled_false.contains(&pod.key),
        reason: if errored {
            reporter::SCHEDULER_ERROR
        } else {
            reporter::UNSCHEDULABLE
        },
        pod,
        message: fresh.then_some(message),
        preemption,
        clear_nominated,
    }
}

/// An admitted soft-mix executor rejected while it waits for its capacity type
/// is retried when the wait ends, to fall back then rather than at the next
/// cluster event or the unschedulable flush.
fn retry_when_wait_ends(shared: &Arc<Shared>, st: &State, pod: &Arc<Pod>) {
    let Some(at) =
        crate::plugins::capacity_mix::admitted_wait_ends_ms(&shared.config, pod, &st.snap)
    else {
        return;
    };
    let wait = at.saturating_sub(chrono::Utc::now().timestamp_millis());
    if wait <= 0 {
        return;
    }
    let (shared, key) = (Arc::downgrade(shared), pod.key.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(wait as u64 + 1)).await;
        if let Some(shared) = shared.upgrade() {
            if shared.lock().queue.activate(&key) {
                shared.wake.notify_one();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_classes_resolve_names_and_the_global_default() {
        let mut pcs = PriorityClasses::default();
        assert_eq!(pcs.priority_of(None), None);
        pcs.values.insert("spark-high".into(), (1000, false));
        pcs.values.insert("standard".into(), (10, true));
        assert_eq!(pcs.priority_of(Some("spark-high")), Some(1000));
        assert_eq!(pcs.priority_of(None), Some(10));
        assert_eq!(pcs.priority_of(Some("missing")), None);
    }

    #[test]
    fn seconds_to_millis() {
        assert_eq!(secs_to_ms(0.05), 50);
        assert_eq!(secs_to_ms(-1.0), 0);
        assert_eq!(secs_to_ms(f64::NAN), 0);
    }
}
