//! The discrete-event loop: one run of a trace under one policy.
//!
//! Time is virtual (a [`ManualClock`] the queue reads); nothing sleeps. At each instant the
//! engine applies the trace events due, then its own events due (bind confirmations, pod and
//! application completions, preemption victims leaving, spot terminations, the autoscaler's
//! batches, launches, consolidation and interruptions), tells the queue what changed, and runs
//! scheduling cycles until the active queue is empty. It then jumps to the next instant: the
//! next trace or engine event, the next backoff expiry, or the next leftover flush.
//!
//! A run always ends: when the trace is over and every application and timed pod is done; when
//! nothing is left that could change anything; or, once the trace is over, when pods still wait
//! and for `SimOptions::stall_seconds` no pod has finished and no application has completed,
//! failed or got further than ever before, with nothing running that would (stalled). Bindings
//! alone are not progress: pods bound and lost again on nodes interrupted at once make none.
//! Pods still pending at the end are reported with the scheduler's message and the
//! autoscaler's reason.

use super::baselines::{Constraints, Pools};
use super::cluster_model::{self, NodeRecord};
use super::karpenter::{self, Disruption, Karpenter, Launch};
use super::report::{AppShareSeries, NeverBound, RunResult, Sample};
use super::sampling::SamplingProbe;
use super::spark_model::{App, AppPhase, AppSpec};
use super::trace::{Event, PodSubmit, Trace};
use super::webhook;
use super::{AutoscalerMode, SimError, SimOptions};
use crate::config::Config;
use crate::framework::{schedule, CycleOptions, Nomination, Profile};
use crate::model::capacity::SPOT;
use crate::model::{NodeSelectorTerm, Pod, PodKey, Sym};
use crate::queue::{ClusterEvent, ManualClock, QueueConfig, SchedulingQueue};
use crate::snapshot::{NodeIdx, Snapshot};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

fn secs_to_ms(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1000.0).round() as u64
    } else {
        0
    }
}

/// Whether placing `pod` on `node` falls back from its capacity mix's target type
/// (CapacityMix's own check, asked before the pod is assumed).
fn capacity_fallback(config: &Config, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> bool {
    crate::plugins::capacity_fallback(config, pod, snap, node).is_some()
}

#[derive(Debug, Clone)]
enum SimEvent {
    BindConfirm {
        key: PodKey,
        uid: String,
    },
    PodFinish {
        key: PodKey,
        uid: String,
    },
    AppCheck {
        app: usize,
        epoch: u64,
    },
    VictimDelete {
        key: PodKey,
        uid: String,
    },
    /// A trace node's spot interruption notice has run out.
    NodeTerminate {
        name: Sym,
    },
    /// A node the autoscaler launched is Ready.
    NodeReady {
        node: Box<crate::model::Node>,
        price: f64,
    },
    /// The autoscaler's batch window may have closed.
    KarpenterBatch,
    /// The autoscaler's disruption controller looks for a consolidation.
    DisruptionPoll,
    /// A spot interruption notice for an autoscaler node (drawn with `epoch`).
    InterruptionNotice {
        name: Sym,
        epoch: u64,
    },
    /// An admitted soft-mix executor stops waiting for its capacity type: retry it now, as
    /// the live scheduler does.
    WaitEnds {
        key: PodKey,
        uid: String,
    },
}

impl SimEvent {
    /// Events whose effect binds or finishes pods by itself: while one is due, the run is
    /// not stalled.
    fn makes_progress(&self) -> bool {
        matches!(
            self,
            SimEvent::BindConfirm { .. }
                | SimEvent::PodFinish { .. }
                | SimEvent::AppCheck { .. }
                | SimEvent::VictimDelete { .. }
        )
    }
}

struct Timed {
    at: u64,
    seq: u64,
    ev: SimEvent,
}

impl PartialEq for Timed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timed {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Debug, Clone)]
enum Owner {
    Plain {
        duration_ms: Option<u64>,
        /// The pod as submitted, to recreate it after it is lost (as its controller would).
        template: Arc<Pod>,
        incarnation: u32,
    },
    Driver {
        app: usize,
    },
    Executor {
        app: usize,
        n: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending,
    /// Assumed on a node; the binding is in flight.
    Binding,
    Running,
    /// Preempted: leaving its node after the grace period.
    Terminating,
}

#[derive(Debug, Clone)]
struct PodState {
    pod: Arc<Pod>,
    owner: Owner,
    submitted_ms: u64,
    phase: Phase,
    /// A scheduling attempt failed (`PodScheduled=False`, reason Unschedulable): what an
    /// autoscaler acts on.
    unschedulable: bool,
}

/// Why a node took its pods with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    SpotInterruption,
    Consolidation,
    /// The trace removed the node.
    NodeRemoved,
}

impl Loss {
    fn name(self) -> &'static str {
        match self {
            Loss::SpotInterruption => "spot-interruption",
            Loss::Consolidation => "consolidation",
            Loss::NodeRemoved => "node-removed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// Finished its work (plain pod done, application completed).
    Finished,
    /// Its node went away.
    Lost(Loss),
    Preempted,
    /// Its driver was lost, taking the executors with it.
    DriverGone,
}

impl Cause {
    fn loss_name(self) -> Option<&'static str> {
        match self {
            Cause::Lost(l) => Some(l.name()),
            Cause::Preempted => Some("preemption"),
            Cause::Finished | Cause::DriverGone => None,
        }
    }
}

/// A policy's run: its profile, the constraints its pods carry and the autoscaler's pools.
pub(crate) struct Policy<'a> {
    pub name: &'a str,
    pub profile: &'a Profile,
    /// The profile's twin scoring every node, when the profile samples nodes.
    pub full_scan: Option<&'a Profile>,
    pub constraints: Constraints,
    pub pools: Pools,
}

/// Counters and time integrals of one run.
#[derive(Debug, Default)]
struct Metrics {
    pods_submitted: u64,
    pods_bound: u64,
    apps_submitted: u64,
    apps_completed: u64,
    apps_failed: u64,
    app_resubmissions: u64,
    driver_losses: u64,
    executor_losses: u64,
    executors_failed_with_driver: u64,
    plain_pods_lost: u64,
    preemptions: u64,
    capacity_fallbacks: u64,
    decisions: u64,
    /// Placed executors and drivers lost, by cause.
    executor_losses_by: BTreeMap<String, u64>,
    driver_losses_by: BTreeMap<String, u64>,
    /// Executor-seconds lost executors had done (redone by their replacements).
    recompute_executor_seconds: f64,
    /// Executor-seconds of work done by attempts that failed with their driver.
    work_lost_with_drivers: f64,
    pending_seconds: Vec<f64>,
    completion_seconds: Vec<f64>,
    latencies_us: Vec<f64>,
    node_hours: BTreeMap<String, f64>,
    cost: BTreeMap<String, f64>,
    cpu_util_integral: f64,
    cpu_util_seconds: f64,
}

struct Engine<'a> {
    config: &'a Config,
    profile: &'a Profile,
    opts: &'a SimOptions,
    clock: ManualClock,
    queue: SchedulingQueue,
    snap: Snapshot,
    now: u64,
    heap: BinaryHeap<Reverse<Timed>>,
    seq: u64,
    pods: HashMap<PodKey, PodState>,
    apps: Vec<App>,
    nodes: HashMap<Sym, NodeRecord>,
    /// Live nodes and their summed price per capacity type.
    fleet: BTreeMap<String, (u32, f64)>,
    /// Sums over the cluster, exact: node and pod figures from the input may
    /// each be near i64::MAX.
    alloc_cpu: i128,
    placed_cpu: i128,
    cluster_events: Vec<ClusterEvent>,
    rng: ChaCha8Rng,
    m: Metrics,
    samples: Vec<Sample>,
    karpenter: Option<Karpenter>,
    /// Something changed since the autoscaler's last pass.
    karpenter_dirty: bool,
    poll_scheduled: bool,
    /// When the last batch-close event pushed is due.
    batch_event_at: Option<u64>,
    constraints: Constraints,
    /// Last time a pod was bound or finished, or an application completed or failed.
    last_progress_ms: u64,
    /// Pods with a duration not yet finished (pending or running).
    open_timed_pods: u64,
    /// Pending pods marked unschedulable (what the autoscaler acts on).
    marked: usize,
    ended_by: &'static str,
    bind_latency_ms: u64,
    /// Shadow full scans measuring a sampled profile's placement quality.
    sampling: Option<SamplingProbe<'a>>,
    shadow_scan_seconds: f64,
}

/// Runs `trace` under `policy`. With a full-scan twin, each decision is also compared with a
/// full scan, measuring what the profile's sampling costs.
pub(crate) fn run(
    trace: &Trace,
    config: &Config,
    policy: &Policy,
    opts: &SimOptions,
) -> Result<RunResult, SimError> {
    let clock = ManualClock::new(0);
    let qc = QueueConfig {
        initial_backoff_ms: secs_to_ms(config.queue.initial_backoff_seconds),
        max_backoff_ms: secs_to_ms(config.queue.max_backoff_seconds),
        unschedulable_flush_ms: secs_to_ms(config.queue.unschedulable_flush_seconds),
    };
    let queue = SchedulingQueue::new(qc, Arc::new(clock.clone()))?;
    let autoscale = match opts.autoscaler {
        AutoscalerMode::Auto => trace.has_apps(),
        AutoscalerMode::Karpenter => true,
        AutoscalerMode::Off => false,
    };
    let karpenter = if autoscale {
        Some(new_karpenter(trace, config, policy.pools, opts.seed)?)
    } else {
        None
    };
    let mut e = Engine {
        config,
        profile: policy.profile,
        opts,
        clock,
        queue,
        snap: Snapshot::new(config.capacity_types.clone()),
        now: 0,
        heap: BinaryHeap::new(),
        seq: 0,
        pods: HashMap::new(),
        apps: Vec::new(),
        nodes: HashMap::new(),
        fleet: BTreeMap::new(),
        alloc_cpu: 0,
        placed_cpu: 0,
        cluster_events: Vec::new(),
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
        m: Metrics::default(),
        samples: Vec::new(),
        karpenter,
        karpenter_dirty: false,
        poll_scheduled: false,
        batch_event_at: None,
        constraints: policy.constraints,
        last_progress_ms: 0,
        open_timed_pods: 0,
        marked: 0,
        ended_by: "no more events",
        bind_latency_ms: secs_to_ms(opts.bind_latency_seconds),
        sampling: policy
            .full_scan
            .map(|f| SamplingProbe::new(f, policy.profile.percentage_of_nodes_to_score)),
        shadow_scan_seconds: 0.0,
    };
    let progress = progress_bar(opts.progress, trace.events.len() as u64, policy.name);
    e.run_loop(trace, progress.as_ref())?;
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    Ok(e.finish(policy.name))
}

/// The autoscaler for `trace`: the config's Karpenter settings, the policy's NodePools (which
/// may depend on the applications' mixes) and the zones nodes launch in.
fn new_karpenter(
    trace: &Trace,
    config: &Config,
    pools: Pools,
    seed: u64,
) -> Result<Karpenter, SimError> {
    let cfg = &config.simulation.karpenter;
    let mut zones: Vec<Sym> = cfg.zones.iter().map(|z| Sym::new(z)).collect();
    if zones.is_empty() {
        zones = trace
            .events
            .iter()
            .filter_map(|ev| match &ev.event {
                Event::NodeAdd(n) => n.labels.get(crate::model::LABEL_ZONE).map(|z| Sym::new(z)),
                _ => None,
            })
            .collect();
        zones.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        zones.dedup();
    }
    if zones.is_empty() {
        zones = ["zone-a", "zone-b", "zone-c"].map(Sym::new).to_vec();
    }
    let mut apps = Vec::new();
    for ev in &trace.events {
        if let Event::AppSubmit(a) = &ev.event {
            let executors = match a.scaling() {
                super::trace::ExecutorScaling::Fixed(n) => n,
                super::trace::ExecutorScaling::Dynamic { max, .. } => max,
            };
            let target =
                super::spark_model::target_spot_share(config, &a.namespace, &a.annotations);
            apps.push((target, executors));
        }
    }
    Ok(Karpenter::new(cfg, pools.node_pools(&apps), &zones, seed))
}

fn progress_bar(wanted: bool, len: u64, policy: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix:>14} [{bar:40}] {pos}/{len} events {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(policy.to_owned());
    Some(bar)
}

impl Engine<'_> {
    fn run_loop(
        &mut self,
        trace: &Trace,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<(), SimError> {
        let events = &trace.events;
        let mut i = 0usize;
        loop {
            // Stale engine events (superseded completion estimates, pods already gone) must
            // not keep the clock running after the last real change.
            while self
                .heap
                .peek()
                .is_some_and(|Reverse(t)| !self.is_live(&t.ev))
            {
                self.heap.pop();
            }
            let trace_over = i >= events.len();
            if trace_over {
                if let Some(why) = self.finished_or_stalled() {
                    self.ended_by = why;
                    break;
                }
            }
            let next_trace = events.get(i).map(|e| secs_to_ms(e.t));
            let next_own = self.heap.peek().map(|Reverse(t)| t.at);
            let more_work = next_trace.is_some() || next_own.is_some();
            let mut next = min_opt(next_trace, next_own);
            next = min_opt(next, self.queue.next_backoff_expiry_ms());
            if more_work {
                // Unschedulable pods are retried on the leftover flush only while the cluster
                // can still change; after the last event no retry can succeed.
                next = min_opt(next, self.queue.next_leftover_flush_ms());
            }
            if trace_over && self.stall_deadline() > self.now {
                // Wake up when the stall horizon passes, in case nothing else happens.
                next = min_opt(next, Some(self.stall_deadline()));
            }
            let Some(t) = next else { break };
            self.advance_to(t.max(self.now));
            while i < events.len() && secs_to_ms(events[i].t) <= self.now {
                self.apply_trace(&events[i].event)?;
                i += 1;
            }
            while self.heap.peek().is_some_and(|Reverse(t)| t.at <= self.now) {
                if let Some(Reverse(t)) = self.heap.pop() {
                    self.apply(t.ev)?;
                }
            }
            self.schedule_round()?;
            self.sample();
            if let Some(p) = progress {
                p.set_position(i as u64);
            }
        }
        Ok(())
    }

    /// When the run counts as stalled if nothing has progressed since: the stall horizon after
    /// the last pod finished, application completed or failed, or application got further than
    /// ever before.
    fn stall_deadline(&self) -> u64 {
        let app_progress = self.apps.iter().map(|a| a.best_at_ms).max().unwrap_or(0);
        self.last_progress_ms
            .max(app_progress)
            .saturating_add(secs_to_ms(self.opts.stall_seconds))
    }

    /// Applications not yet completed or failed, plus pods with a duration not yet finished.
    fn open_work(&self) -> u64 {
        let apps = self.m.apps_submitted - self.m.apps_completed - self.m.apps_failed;
        apps + self.open_timed_pods
    }

    /// Whether an event that binds or finishes pods by itself is due.
    fn progress_due(&self) -> bool {
        self.heap
            .iter()
            .any(|Reverse(t)| t.ev.makes_progress() && self.is_live(&t.ev))
    }

    /// Whether work is being done right now: an application whose executors run, a timed pod
    /// running, a binding or an eviction under way.
    fn progressing_now(&self) -> bool {
        self.apps
            .iter()
            .any(|a| a.phase == AppPhase::Running && a.rate() > 0.0)
            || self.pods.values().any(|st| match st.phase {
                Phase::Binding | Phase::Terminating => true,
                Phase::Running => matches!(
                    st.owner,
                    Owner::Plain {
                        duration_ms: Some(_),
                        ..
                    }
                ),
                Phase::Pending => false,
            })
    }

    /// Once the trace is over: why the run ends now, if it does.
    fn finished_or_stalled(&self) -> Option<&'static str> {
        if self.open_work() == 0 && !self.progress_due() {
            return Some("work done");
        }
        // The cheap test first: the scans run only past the stall horizon.
        if self.now >= self.stall_deadline() && !self.progressing_now() {
            return Some("stalled");
        }
        None
    }

    /// Whether applying `ev` would still change anything.
    fn is_live(&self, ev: &SimEvent) -> bool {
        let pod_is = |key: &PodKey, uid: &str, phase: Option<Phase>| {
            self.pods
                .get(key)
                .is_some_and(|st| st.pod.uid == uid && phase.is_none_or(|p| st.phase == p))
        };
        match ev {
            SimEvent::BindConfirm { key, uid } => pod_is(key, uid, Some(Phase::Binding)),
            SimEvent::PodFinish { key, uid } => pod_is(key, uid, None),
            SimEvent::VictimDelete { key, uid } => pod_is(key, uid, Some(Phase::Terminating)),
            SimEvent::AppCheck { app, epoch } => self
                .apps
                .get(*app)
                .is_some_and(|a| a.epoch == *epoch && a.phase == AppPhase::Running),
            SimEvent::NodeTerminate { name } => self.snap.nodes().get(*name).is_some(),
            SimEvent::NodeReady { .. } => true,
            SimEvent::KarpenterBatch => self.karpenter.as_ref().is_some_and(|k| k.batch_open()),
            SimEvent::DisruptionPoll => {
                self.karpenter.as_ref().is_some_and(|k| !k.nodes.is_empty())
            }
            SimEvent::InterruptionNotice { name, epoch } => self
                .karpenter
                .as_ref()
                .is_some_and(|k| k.interruption_current(*name, *epoch)),
            SimEvent::WaitEnds { key, uid } => pod_is(key, uid, Some(Phase::Pending)),
        }
    }

    fn push(&mut self, at: u64, ev: SimEvent) {
        self.seq += 1;
        self.heap.push(Reverse(Timed {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn emit(&mut self, e: ClusterEvent) {
        if !self.cluster_events.contains(&e) {
            self.cluster_events.push(e);
        }
    }

    fn deliver_events(&mut self) {
        for e in std::mem::take(&mut self.cluster_events) {
            self.queue.on_event(&e);
        }
    }

    /// Moves virtual time to `t`, integrating node-hours, cost and utilization.
    fn advance_to(&mut self, t: u64) {
        let dt_s = t.saturating_sub(self.now) as f64 / 1000.0;
        if dt_s > 0.0 {
            let hours = dt_s / 3600.0;
            for (ty, (count, price)) in &self.fleet {
                *self.m.node_hours.entry(ty.clone()).or_default() += *count as f64 * hours;
                *self.m.cost.entry(ty.clone()).or_default() += price * hours;
            }
            if self.alloc_cpu > 0 {
                self.m.cpu_util_integral += self.placed_cpu as f64 / self.alloc_cpu as f64 * dt_s;
                self.m.cpu_util_seconds += dt_s;
            }
        }
        self.now = t.max(self.now);
        self.clock.set(self.now);
        // Rules that wait (an admitted soft-mix executor) read the virtual clock.
        self.snap.set_now_ms(Some(self.now as i64));
    }

    fn sample(&mut self) {
        let nodes: BTreeMap<String, u32> =
            self.fleet.iter().map(|(k, v)| (k.clone(), v.0)).collect();
        let pending = self.queue.len();
        if let Some(last) = self.samples.last() {
            if last.nodes == nodes && last.pending == pending {
                return;
            }
        }
        self.samples.push(Sample {
            t: self.now as f64 / 1000.0,
            nodes,
            cost: self.m.cost.clone(),
            pending,
        });
    }

    // ---- trace events --------------------------------------------------------------

    fn apply_trace(&mut self, ev: &Event) -> Result<(), SimError> {
        match ev {
            Event::NodeAdd(n) => {
                if !n.volume_limits.is_empty() {
                    let csi = crate::sim::trace::csi_node(&n.name, &n.volume_limits);
                    self.snap.storage_mut().upsert_csi_node(csi);
                    self.emit(ClusterEvent::CsiNodeChanged);
                }
                let node = n.to_node()?;
                let ty = self.config.capacity_types.classify(&node.labels);
                let price = cluster_model::node_price(
                    n.price_per_hour,
                    ty.as_str(),
                    &node.allocatable,
                    &self.opts.price_per_vcpu_hour,
                    self.opts.default_price_per_vcpu_hour,
                );
                self.add_node(node, price);
            }
            Event::NodeRemove(r) => {
                if let Some(name) = Sym::lookup(&r.name) {
                    self.remove_node(name, Loss::NodeRemoved);
                }
            }
            Event::SpotInterruption(s) => {
                let Some(name) = Sym::lookup(&s.node) else {
                    return Ok(());
                };
                let Some(idx) = self.snap.nodes().get(name) else {
                    return Ok(());
                };
                let tainted =
                    cluster_model::with_interruption_taint(&self.snap.nodes().node[idx as usize]);
                self.snap.upsert_node(tainted);
                if let Some(r) = self.nodes.get_mut(&name) {
                    r.interrupted = true;
                }
                self.emit(ClusterEvent::NodeUpdated);
                self.karpenter_dirty = true;
                let at = self.now + secs_to_ms(s.notice_seconds);
                self.push(at, SimEvent::NodeTerminate { name });
            }
            Event::SpotInterruptionRate(r) => {
                let now = self.now;
                let notices = match self.karpenter.as_mut() {
                    Some(k) => k.set_interruption_rate(&r.instance_types, r.per_month, now),
                    None => Vec::new(),
                };
                for (name, at, epoch) in notices {
                    self.push(at, SimEvent::InterruptionNotice { name, epoch });
                }
            }
            Event::AppSubmit(a) => {
                let spec = Arc::new(AppSpec::from_trace(a, self.config)?);
                let app = self.apps.len();
                self.apps.push(App::new(spec, self.now));
                self.m.apps_submitted += 1;
                self.submit_driver(app);
            }
            Event::StorageClass(c) => {
                self.snap.storage_mut().upsert_class(c.to_class());
                self.emit(ClusterEvent::StorageClassChanged);
            }
            Event::VolumeAdd(v) => {
                self.snap.storage_mut().upsert_volume(v.to_volume()?);
                self.emit(ClusterEvent::VolumeChanged);
            }
            Event::ClaimAdd(c) => {
                let claim = c.to_claim()?;
                let (namespace, id) = (claim.namespace, crate::queue::ClaimId::of(&claim.name));
                self.snap.storage_mut().upsert_claim(claim.clone());
                if let Some(v) = &c.volume {
                    let volume = self.snap.storage().volume(v).map(|v| (**v).clone());
                    let Some(volume) = volume else {
                        return Err(SimError::Options(format!(
                            "claim_add {}/{}: volume {v:?} does not exist",
                            c.namespace, c.name
                        )));
                    };
                    crate::sim::storage_model::bind_to(&mut self.snap, &claim, volume);
                }
                self.emit(ClusterEvent::ClaimChanged {
                    namespace,
                    claim: id,
                    added: true,
                });
            }
            Event::PodSubmit(p) => {
                let pod = self.plain_pod(p)?;
                let template = Arc::new(pod);
                self.submit(
                    (*template).clone(),
                    Owner::Plain {
                        duration_ms: p.duration_seconds.map(secs_to_ms),
                        template,
                        incarnation: 0,
                    },
                );
            }
        }
        Ok(())
    }

    fn plain_pod(&self, p: &PodSubmit) -> Result<Pod, SimError> {
        let mut name = p.name.clone();
        let mut k = 1;
        // Trace names may repeat (openb reuses none, but hand-written traces might); a second
        // pod of the same name while the first exists gets a suffix so both are tracked.
        while self.pods.contains_key(&PodKey::new(&p.namespace, &name)) {
            k += 1;
            name = format!("{}~{k}", p.name);
        }
        let mut pod = Pod::new(&p.namespace, &name, p.requests()?);
        pod.labels = crate::model::Labels::from_pairs(
            p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        pod.annotations = p
            .annotations
            .iter()
            .filter(|(k, _)| k.starts_with(crate::model::ANNOTATION_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pod.priority = p.priority;
        pod.scheduler_name = p.scheduler_name.clone();
        pod.tolerations = p.tolerations.iter().map(|t| t.to_toleration()).collect();
        pod.node_selector = p
            .node_selector
            .iter()
            .map(|(k, v)| (Sym::new(k), Sym::new(v)))
            .collect();
        let reqs = p.affinity_requirements()?;
        if !reqs.is_empty() {
            pod.node_affinity.required = Some(vec![NodeSelectorTerm {
                match_expressions: reqs,
                match_fields: Vec::new(),
                valid: true,
            }]);
        }
        pod.gpu = p.gpu_request()?.map(Box::new);
        pod.created_ms = self.now as i64;
        pod.spark = crate::model::spark::identify(&pod.labels, &pod.uid, None);
        pod.volumes = p
            .claims
            .iter()
            .map(|c| crate::model::PodVolume::Claim {
                claim: c.clone(),
                ephemeral: false,
            })
            .collect();
        Ok(pod)
    }

    // ---- nodes ---------------------------------------------------------------------

    fn add_node(&mut self, node: crate::model::Node, price: f64) {
        let name = node.name;
        if self.snap.nodes().get(name).is_some() {
            // A node_add for a node we have: an update. Keep its pods and accounting simple
            // by removing the old one first.
            self.remove_node(name, Loss::NodeRemoved);
        }
        let cpu = node.allocatable.milli_cpu;
        let idx = self.snap.upsert_node(node);
        let ty = self.snap.nodes().capacity_type[idx as usize];
        let f = self.fleet.entry(ty.as_str().to_owned()).or_default();
        f.0 += 1;
        f.1 += price;
        self.alloc_cpu += i128::from(cpu);
        self.nodes.insert(
            name,
            NodeRecord {
                capacity_type: ty,
                price_per_hour: price,
                interrupted: false,
            },
        );
        self.emit(ClusterEvent::NodeAdded);
        self.karpenter_dirty = true;
    }

    /// The node leaves, taking its pods with it for `loss`.
    fn remove_node(&mut self, name: Sym, loss: Loss) {
        if let Some(k) = self.karpenter.as_mut() {
            k.removed(name);
        }
        let Some(idx) = self.snap.nodes().get(name) else {
            return;
        };
        let mut keys: Vec<PodKey> = self.snap.pods_on(idx).map(|e| e.pod.key.clone()).collect();
        keys.sort();
        for k in keys {
            self.remove_pod(&k, Cause::Lost(loss));
        }
        let cpu = self.snap.nodes().alloc_cpu[idx as usize];
        self.snap.remove_node(name);
        self.alloc_cpu -= i128::from(cpu);
        if let Some(r) = self.nodes.remove(&name) {
            if let Some(f) = self.fleet.get_mut(r.capacity_type.as_str()) {
                f.0 = f.0.saturating_sub(1);
                f.1 -= r.price_per_hour;
                if f.0 == 0 {
                    f.1 = 0.0;
                }
            }
        }
        self.emit(ClusterEvent::NodeRemoved);
        self.karpenter_dirty = true;
    }

    /// An autoscaler node is Ready: it joins, replaces the node it was launched for (if any)
    /// and, on spot, gets its interruption notice drawn.
    fn karpenter_node_ready(&mut self, node: crate::model::Node, price: f64) {
        let name = node.name;
        let now = self.now;
        let Some(k) = self.karpenter.as_mut() else {
            return;
        };
        if !k.owns(name) {
            // Removed while launching (its replacement target went first).
            return;
        }
        let (replaces, notice) = k.ready(name, now);
        self.add_node(node, price);
        if let Some(old) = replaces {
            self.remove_node(old, Loss::Consolidation);
        }
        if let Some((at, epoch)) = notice {
            self.push(at, SimEvent::InterruptionNotice { name, epoch });
        }
        self.schedule_poll();
    }

    /// Launches `launch` (Ready after the provisioning delay).
    fn launch(&mut self, launch: Launch) {
        self.push(
            launch.ready_at,
            SimEvent::NodeReady {
                node: Box::new(launch.node),
                price: launch.price,
            },
        );
        self.schedule_poll();
    }

    fn schedule_poll(&mut self) {
        if self.poll_scheduled {
            return;
        }
        let Some(k) = self.karpenter.as_ref() else {
            return;
        };
        if k.nodes.is_empty() {
            return;
        }
        let every = secs_to_ms(k.config().disruption_poll_seconds).max(1);
        // On the controller's tick: the next multiple of the poll period.
        let at = (self.now / every + 1) * every;
        self.poll_scheduled = true;
        self.push(at, SimEvent::DisruptionPoll);
    }

    /// One round of the autoscaler's disruption controller.
    fn disruption_poll(&mut self) {
        self.poll_scheduled = false;
        let now = self.now;
        let Some(k) = self.karpenter.as_mut() else {
            return;
        };
        let spark_stays = k.config().spark_do_not_disrupt;
        let movable = |p: &Pod| !(spark_stays && p.spark.is_some());
        match k.poll(now, &self.snap, movable) {
            Some(Disruption::Delete(names)) => {
                for n in names {
                    self.remove_node(n, Loss::Consolidation);
                }
            }
            Some(Disruption::Replace { old, launch }) => {
                if let Some(i) = self.snap.nodes().get(old) {
                    let tainted =
                        karpenter::with_disrupted_taint(&self.snap.nodes().node[i as usize]);
                    self.snap.upsert_node(tainted);
                    self.emit(ClusterEvent::NodeUpdated);
                }
                self.launch(*launch);
            }
            None => {}
        }
        self.schedule_poll();
    }

    /// A spot notice for an autoscaler node: Karpenter drains and deletes it at once.
    fn interruption_notice(&mut self, name: Sym, epoch: u64) {
        let Some(k) = self.karpenter.as_mut() else {
            return;
        };
        if !k.interruption_current(name, epoch) {
            return;
        }
        k.stats.interruptions += 1;
        k.mark_deleting(name);
        if let Some(r) = self.nodes.get_mut(&name) {
            r.interrupted = true;
        }
        self.remove_node(name, Loss::SpotInterruption);
    }

    /// Runs the autoscaler's provisioning pass if its batch window has closed.
    fn karpenter_batch(&mut self) {
        let now = self.now;
        let due = self.karpenter.as_ref().is_some_and(|k| k.batch_due(now));
        if !due {
            return;
        }
        let mut pending: Vec<&Pod> = self
            .pods
            .values()
            .filter(|st| {
                st.phase == Phase::Pending
                    && st.unschedulable
                    && self.snap.nomination_of(&st.pod.key).is_none()
            })
            .map(|st| st.pod.as_ref())
            .collect();
        pending.sort_by(|a, b| a.key.cmp(&b.key));
        let Some(k) = self.karpenter.as_mut() else {
            return;
        };
        let launches = k.provision(now, &self.snap, &pending);
        self.karpenter_dirty = false;
        for l in launches {
            self.launch(l);
        }
    }

    /// Opens an autoscaler batch when a pod is (newly) marked unschedulable, or when the
    /// cluster changed while marked pods wait and no batch is open.
    fn karpenter_trigger(&mut self, newly_marked: bool) {
        let now = self.now;
        let Some(k) = self.karpenter.as_mut() else {
            return;
        };
        if !newly_marked && k.batch_open() {
            return;
        }
        let at = k.trigger(now);
        // Pods marked at one instant close the window at the same time: one event will do.
        if self.batch_event_at != Some(at) {
            self.batch_event_at = Some(at);
            self.push(at, SimEvent::KarpenterBatch);
        }
    }

    // ---- pods ----------------------------------------------------------------------

    fn submit(&mut self, pod: Pod, owner: Owner) {
        let pod = Arc::new(pod);
        self.m.pods_submitted += 1;
        if matches!(
            owner,
            Owner::Plain {
                duration_ms: Some(_),
                ..
            }
        ) {
            self.open_timed_pods += 1;
        }
        self.pods.insert(
            pod.key.clone(),
            PodState {
                pod: pod.clone(),
                owner,
                submitted_ms: self.now,
                phase: Phase::Pending,
                unschedulable: false,
            },
        );
        self.queue.add(pod);
    }

    fn submit_driver(&mut self, app: usize) {
        let a = &self.apps[app];
        let mut pod = a
            .spec
            .driver_pod(a.attempt, self.now, &self.config.scheduler_name);
        if self.constraints == Constraints::Webhook {
            webhook::admit_driver(self.config, &mut pod);
        } else {
            self.constraints.driver(&mut pod);
        }
        self.submit(pod, Owner::Driver { app });
    }

    fn request_executors(&mut self, app: usize, count: u32) {
        for _ in 0..count {
            let a = &mut self.apps[app];
            let n = a.next_executor;
            a.next_executor += 1;
            a.pending.insert(n);
            let spec = a.spec.clone();
            let mut pod = spec.executor_pod(n, self.now, &self.config.scheduler_name);
            if let Some((class, request)) = spec.executor_claim {
                // Spark's OnDemand claim, created with its executor.
                let name = format!("{}-pvc-0", pod.key.name);
                let c = crate::sim::trace::claim(&spec.namespace, &name, class, request);
                self.snap.storage_mut().upsert_claim(c);
                pod.volumes.push(crate::model::PodVolume::Claim {
                    claim: name,
                    ephemeral: false,
                });
            }
            if self.constraints == Constraints::Webhook {
                // Admission counts the application's executors pending with a type chosen.
                let pending: Vec<Sym> = self.apps[app]
                    .pending
                    .iter()
                    .filter_map(|&m| self.pods.get(&self.executor_key(app, m)))
                    .filter(|st| st.phase == Phase::Pending)
                    .filter_map(|st| webhook::admitted_type(&st.pod))
                    .collect();
                webhook::admit_executor(self.config, &mut pod, &self.snap, pending.into_iter());
            } else {
                self.constraints.executor(&mut pod, &spec);
            }
            self.submit(pod, Owner::Executor { app, n });
        }
    }

    fn executor_key(&self, app: usize, n: u32) -> PodKey {
        let s = &self.apps[app].spec;
        PodKey::new(&s.namespace, &format!("{}-exec-{n}", s.id))
    }

    /// The scheduler chose `node` for `pod`: assume it, then bind (now or after the latency).
    fn place(&mut self, pod: Arc<Pod>, node: NodeIdx) -> Result<(), SimError> {
        if capacity_fallback(self.config, &pod, &self.snap, node) {
            self.m.capacity_fallbacks += 1;
        }
        let node_name = self.snap.nodes().name[node as usize];
        let mut bound = (*pod).clone();
        bound.node_name = Some(node_name);
        bound.started_ms = Some(self.now as i64);
        let bound = Arc::new(bound);
        self.snap
            .assume(bound.clone(), node)
            .map_err(|e| SimError::Options(format!("internal: assume failed: {e}")))?;
        self.placed_cpu += i128::from(bound.requests.milli_cpu);
        let now = self.now;
        if let Some(k) = self.karpenter.as_mut() {
            k.pod_changed(node_name, now);
        }
        self.karpenter_dirty = true;
        let key = bound.key.clone();
        let uid = bound.uid.clone();
        if let Some(st) = self.pods.get_mut(&key) {
            st.pod = bound;
            st.phase = Phase::Binding;
            if std::mem::replace(&mut st.unschedulable, false) {
                self.marked -= 1;
            }
        }
        if self.bind_latency_ms == 0 {
            self.confirm_bind(&key, &uid);
        } else {
            let at = self.now + self.bind_latency_ms;
            self.push(at, SimEvent::BindConfirm { key, uid });
        }
        Ok(())
    }

    fn confirm_bind(&mut self, key: &PodKey, uid: &str) {
        let now = self.now;
        let Some(st) = self.pods.get_mut(key) else {
            return;
        };
        if st.phase != Phase::Binding || st.pod.uid != uid {
            return;
        }
        st.phase = Phase::Running;
        // PreBind: the volumes Reserve chose are bound (provisioned) first.
        crate::sim::storage_model::bind_reserved(&mut self.snap, key);
        // Confirms the assumed pod, as the API server's bind does.
        if self.snap.upsert_pod(st.pod.clone()).is_err() {
            return;
        }
        self.m.pods_bound += 1;
        self.m
            .pending_seconds
            .push(now.saturating_sub(st.submitted_ms) as f64 / 1000.0);
        let owner = st.owner.clone();
        let node = st.pod.node_name;
        match owner {
            Owner::Plain {
                duration_ms: Some(d),
                ..
            } => {
                let (key, uid) = (key.clone(), uid.to_owned());
                self.push(now + d, SimEvent::PodFinish { key, uid });
            }
            Owner::Plain { .. } => {}
            Owner::Driver { app } => {
                let a = &mut self.apps[app];
                a.advance(now);
                a.driver_running = true;
                a.phase = AppPhase::Running;
                let n = a.spec.executors;
                self.request_executors(app, n);
                self.reschedule_check(app);
            }
            Owner::Executor { app, n } => {
                let spot = node
                    .and_then(|name| self.nodes.get(&name))
                    .is_some_and(|r| r.capacity_type.as_str() == SPOT);
                let a = &mut self.apps[app];
                a.advance(now);
                a.executor_started(n, now, spot);
                let sym = Sym::new(&a.spec.id);
                self.emit(ClusterEvent::AppExecutorsChanged { app: sym });
                self.reschedule_check(app);
            }
        }
    }

    fn reschedule_check(&mut self, app: usize) {
        let a = &mut self.apps[app];
        a.epoch += 1;
        let epoch = a.epoch;
        if let Some(at) = a.completion_ms(self.now) {
            self.push(at, SimEvent::AppCheck { app, epoch });
        }
    }

    /// Takes a pod out of the simulation, with the consequences of `cause`.
    fn remove_pod(&mut self, key: &PodKey, cause: Cause) {
        let Some(st) = self.pods.remove(key) else {
            return;
        };
        if st.unschedulable {
            self.marked -= 1;
        }
        let now = self.now;
        let placed = st.phase != Phase::Pending;
        // Volumes reserved for a binding that will not be confirmed are released.
        self.snap.storage_mut().release(key);
        if let Owner::Executor { .. } = st.owner {
            for claim in st
                .pod
                .volumes
                .iter()
                .filter_map(crate::model::PodVolume::claim)
            {
                crate::sim::storage_model::delete_claim(&mut self.snap, key.namespace, claim);
            }
        }
        if placed {
            self.snap.remove_pod(key);
            self.placed_cpu -= i128::from(st.pod.requests.milli_cpu);
            let app = st.pod.spark.as_ref().map(|s| s.app);
            self.emit(ClusterEvent::PodDeleted { app });
            if let (Some(node), Some(k)) = (st.pod.node_name, self.karpenter.as_mut()) {
                k.pod_changed(node, now);
            }
            self.karpenter_dirty = true;
        } else {
            self.queue.delete(key);
            self.snap.clear_nomination(key);
        }
        if cause == Cause::Finished {
            self.last_progress_ms = now;
        }
        let lost = cause.loss_name();
        match st.owner {
            Owner::Plain {
                duration_ms,
                template,
                incarnation,
            } => {
                if duration_ms.is_some() {
                    self.open_timed_pods = self.open_timed_pods.saturating_sub(1);
                }
                if lost.is_some() {
                    // A plain pod is recreated by its controller and starts over.
                    self.m.plain_pods_lost += 1;
                    let mut pod = (*template).clone();
                    pod.uid = format!("{}#{}", template.uid, incarnation + 1);
                    pod.created_ms = now as i64;
                    self.submit(
                        pod,
                        Owner::Plain {
                            duration_ms,
                            template,
                            incarnation: incarnation + 1,
                        },
                    );
                }
            }
            Owner::Executor { app, n } => {
                let a = &mut self.apps[app];
                a.advance(now);
                let was_running = a.running.contains_key(&n);
                match cause {
                    Cause::Lost(_) | Cause::Preempted => {
                        if let Some(redo) = a.executor_lost(n, now) {
                            self.m.recompute_executor_seconds += redo;
                        }
                        let running = a.phase == AppPhase::Running;
                        if placed {
                            self.m.executor_losses += 1;
                            if let Some(why) = lost {
                                *self.m.executor_losses_by.entry(why.to_owned()).or_insert(0) += 1;
                            }
                        }
                        if running {
                            self.request_executors(app, 1);
                        }
                    }
                    Cause::DriverGone => {
                        a.executor_finished(n, now);
                        if placed {
                            self.m.executors_failed_with_driver += 1;
                        }
                    }
                    Cause::Finished => a.executor_finished(n, now),
                }
                if was_running {
                    let sym = Sym::new(&self.apps[app].spec.id);
                    self.emit(ClusterEvent::AppExecutorsChanged { app: sym });
                }
                if self.apps[app].phase == AppPhase::Running {
                    self.reschedule_check(app);
                }
            }
            Owner::Driver { app } => {
                if let Some(why) = lost {
                    self.m.driver_losses += 1;
                    *self.m.driver_losses_by.entry(why.to_owned()).or_insert(0) += 1;
                    self.fail_attempt(app);
                }
            }
        }
    }

    fn app_executor_keys(&self, app: usize) -> Vec<PodKey> {
        let a = &self.apps[app];
        a.running
            .keys()
            .chain(a.pending.iter())
            .map(|&n| self.executor_key(app, n))
            .collect()
    }

    /// The driver is gone: the attempt fails with its executors; resubmit or give up.
    fn fail_attempt(&mut self, app: usize) {
        let now = self.now;
        self.apps[app].advance(now);
        // Everything the attempt did is gone with its driver.
        self.m.work_lost_with_drivers += self.apps[app].work_done;
        self.apps[app].phase = AppPhase::Failed;
        for k in self.app_executor_keys(app) {
            self.remove_pod(&k, Cause::DriverGone);
        }
        if self.apps[app].attempt < self.opts.app_resubmissions {
            self.m.app_resubmissions += 1;
            self.apps[app].restart(now);
            self.submit_driver(app);
        } else {
            self.apps[app].epoch += 1;
            self.apps[app].finish_share(now);
            self.m.apps_failed += 1;
            self.last_progress_ms = now;
        }
    }

    fn complete_app(&mut self, app: usize) {
        let now = self.now;
        let a = &mut self.apps[app];
        a.advance(now);
        a.phase = AppPhase::Completed;
        a.completed_ms = Some(now);
        a.epoch += 1;
        self.m.apps_completed += 1;
        self.last_progress_ms = now;
        self.m
            .completion_seconds
            .push(now.saturating_sub(a.submitted_ms) as f64 / 1000.0);
        for k in self.app_executor_keys(app) {
            self.remove_pod(&k, Cause::Finished);
        }
        let s = &self.apps[app].spec;
        let driver = PodKey::new(&s.namespace, &format!("{}-driver", s.id));
        self.remove_pod(&driver, Cause::Finished);
        self.apps[app].finish_share(now);
    }

    // ---- engine events -------------------------------------------------------------

    fn apply(&mut self, ev: SimEvent) -> Result<(), SimError> {
        match ev {
            SimEvent::BindConfirm { key, uid } => self.confirm_bind(&key, &uid),
            SimEvent::PodFinish { key, uid } => {
                if self.pods.get(&key).is_some_and(|st| st.pod.uid == uid) {
                    self.remove_pod(&key, Cause::Finished);
                }
            }
            SimEvent::VictimDelete { key, uid } => {
                let leaving = self
                    .pods
                    .get(&key)
                    .is_some_and(|st| st.pod.uid == uid && st.phase == Phase::Terminating);
                if leaving {
                    self.remove_pod(&key, Cause::Preempted);
                }
            }
            SimEvent::AppCheck { app, epoch } => {
                let now = self.now;
                let a = &mut self.apps[app];
                if a.epoch == epoch && a.phase == AppPhase::Running {
                    a.advance(now);
                    if a.is_done() {
                        self.complete_app(app);
                    } else {
                        self.reschedule_check(app);
                    }
                }
            }
            SimEvent::NodeTerminate { name } => self.remove_node(name, Loss::SpotInterruption),
            SimEvent::NodeReady { node, price } => self.karpenter_node_ready(*node, price),
            SimEvent::KarpenterBatch => self.karpenter_batch(),
            SimEvent::DisruptionPoll => self.disruption_poll(),
            SimEvent::InterruptionNotice { name, epoch } => self.interruption_notice(name, epoch),
            SimEvent::WaitEnds { key, uid } => {
                if self.pods.get(&key).is_some_and(|st| st.pod.uid == uid) {
                    self.queue.activate(&key);
                }
            }
        }
        Ok(())
    }

    // ---- scheduling ----------------------------------------------------------------

    fn schedule_round(&mut self) -> Result<(), SimError> {
        self.deliver_events();
        self.queue.flush();
        let opts = CycleOptions {
            detail: false,
            post_filter: true,
            ..CycleOptions::default()
        };
        while let Some(qp) = self.queue.pop() {
            let pod = qp.pod.clone();
            let started = Instant::now();
            let d = schedule(self.profile, &pod, &mut self.snap, opts);
            self.m
                .latencies_us
                .push(started.elapsed().as_secs_f64() * 1e6);
            self.m.decisions += 1;
            if let Some(probe) = self.sampling.as_mut() {
                // Before the pod is assumed: the full scan sees the snapshot the sample saw.
                let shadow = Instant::now();
                probe.observe(&pod, &mut self.snap, &d);
                self.shadow_scan_seconds += shadow.elapsed().as_secs_f64();
            }
            match d.node {
                Some(node) => {
                    self.queue.done(&pod.key);
                    self.place(d.bound_pod(&pod), node)?;
                }
                None => {
                    if let Some(nom) = d.post_filter.as_ref().and_then(|r| r.nomination.as_ref()) {
                        self.preempt(&pod, nom);
                    }
                    if d.post_filter.as_ref().is_some_and(|r| r.clears_nomination) {
                        self.snap.clear_nomination(&pod.key);
                    }
                    let newly = self
                        .pods
                        .get_mut(&pod.key)
                        .is_some_and(|st| !std::mem::replace(&mut st.unschedulable, true));
                    if newly {
                        self.marked += 1;
                        self.karpenter_trigger(true);
                    }
                    let wait_ends = crate::plugins::capacity_mix::admitted_wait_ends_ms(
                        self.config,
                        &pod,
                        &self.snap,
                    );
                    if let Some(at) = wait_ends.filter(|&at| at >= self.now as i64) {
                        let (key, uid) = (pod.key.clone(), pod.uid.clone());
                        self.push(at as u64 + 1, SimEvent::WaitEnds { key, uid });
                    }
                    self.queue.requeue_unschedulable(qp, d.rejected_by())?;
                }
            }
            self.deliver_events();
        }
        if self.karpenter_dirty && self.marked > 0 {
            self.karpenter_dirty = false;
            self.karpenter_trigger(false);
        }
        Ok(())
    }

    fn preempt(&mut self, pod: &Arc<Pod>, nom: &Nomination) {
        self.snap.nominate(pod.clone(), nom.node);
        let (lo, hi) = self.opts.preemption_grace_seconds;
        for v in &nom.victims {
            let Some(st) = self.pods.get_mut(&v.key) else {
                continue;
            };
            if !matches!(st.phase, Phase::Binding | Phase::Running) {
                continue;
            }
            self.m.preemptions += 1;
            let mut leaving = (*st.pod).clone();
            leaving.terminating = true;
            // As the live scheduler's DisruptionTarget condition says.
            leaving.disrupted_by_preemption = true;
            let leaving = Arc::new(leaving);
            st.pod = leaving.clone();
            st.phase = Phase::Terminating;
            let uid = leaving.uid.clone();
            let app = leaving.spark.as_ref().map(|s| s.app);
            let executor = leaving.is_executor();
            // Still on its node until it leaves; now marked terminating.
            let _ = self.snap.upsert_pod(leaving);
            if let (Some(app), true) = (app, executor) {
                self.emit(ClusterEvent::AppExecutorsChanged { app });
            }
            let grace = if hi > lo {
                self.rng.random_range(lo..=hi)
            } else {
                lo
            };
            let at = self.now + secs_to_ms(grace);
            self.push(
                at,
                SimEvent::VictimDelete {
                    key: v.key.clone(),
                    uid,
                },
            );
        }
    }

    // ---- the end -------------------------------------------------------------------

    fn finish(mut self, policy: &str) -> RunResult {
        let now = self.now;
        for a in &mut self.apps {
            if matches!(a.phase, AppPhase::Running | AppPhase::Starting) {
                a.advance(now);
                a.finish_share(now);
            }
        }
        let (mut weighted, mut floor, mut weight) = (0.0, 0.0, 0.0);
        for a in &self.apps {
            if a.spec.target_spot_share.is_some() {
                weighted += a.share.weighted_error;
                floor += a.share.weighted_floor;
                weight += a.share.weight_seconds;
            }
        }
        let never_bound = self.never_bound();
        let mut largest: Vec<&App> = self
            .apps
            .iter()
            .filter(|a| a.spec.target_spot_share.is_some() && a.peak_executors > 0)
            .collect();
        largest.sort_by(|x, y| {
            y.peak_executors
                .cmp(&x.peak_executors)
                .then_with(|| x.spec.id.cmp(&y.spec.id))
        });
        let app_shares = largest
            .into_iter()
            .take(self.opts.chart_apps)
            .map(|a| AppShareSeries {
                app: a.spec.id.clone(),
                target: a.spec.target_spot_share.unwrap_or(0.0),
                points: a
                    .share
                    .series
                    .iter()
                    .map(|&(t, s)| (t as f64 / 1000.0, s))
                    .collect(),
            })
            .collect();
        self.sample();
        // The charts' lines run to the end of the run, changed or not.
        if let Some(last) = self.samples.last() {
            let end = self.now as f64 / 1000.0;
            if last.t < end {
                let mut s = last.clone();
                s.t = end;
                s.cost = self.m.cost.clone();
                self.samples.push(s);
            }
        }
        let stats = self.karpenter.as_ref().map(|k| k.stats.clone());
        let m = self.m;
        RunResult {
            sampling: self.sampling.map(|p| p.tally),
            shadow_scan_seconds: self.shadow_scan_seconds,
            policy: policy.to_owned(),
            pods_submitted: m.pods_submitted,
            pods_bound: m.pods_bound,
            apps_submitted: m.apps_submitted,
            apps_completed: m.apps_completed,
            apps_failed: m.apps_failed,
            app_resubmissions: m.app_resubmissions,
            driver_losses: m.driver_losses,
            executor_losses: m.executor_losses,
            executors_failed_with_driver: m.executors_failed_with_driver,
            plain_pods_lost: m.plain_pods_lost,
            preemptions: m.preemptions,
            capacity_fallbacks: m.capacity_fallbacks,
            executor_losses_by: m.executor_losses_by,
            driver_losses_by: m.driver_losses_by,
            recompute_executor_seconds: m.recompute_executor_seconds,
            work_lost_with_drivers: m.work_lost_with_drivers,
            autoscaler: stats,
            ended_by: self.ended_by,
            never_bound,
            spot_share_abs_error_mean: (weight > 0.0).then(|| weighted / weight),
            spot_share_error_floor: (weight > 0.0).then(|| floor / weight),
            cost_by_type: m.cost,
            node_hours: m.node_hours,
            pending_seconds: m.pending_seconds,
            completion_seconds: m.completion_seconds,
            cpu_utilization_mean: (m.cpu_util_seconds > 0.0)
                .then(|| m.cpu_util_integral / m.cpu_util_seconds),
            decisions: m.decisions,
            end_seconds: now as f64 / 1000.0,
            latencies_us: m.latencies_us,
            samples: self.samples,
            app_shares,
            apps: self
                .apps
                .iter()
                .map(|a| {
                    (
                        a.spec.id.clone(),
                        a.completed_ms
                            .map(|c| c.saturating_sub(a.submitted_ms) as f64 / 1000.0),
                    )
                })
                .collect(),
        }
    }
}

impl Engine<'_> {
    /// Every pod still pending at the end, with the scheduler's message (as it would write it
    /// now) and the autoscaler's view.
    fn never_bound(&mut self) -> Vec<NeverBound> {
        let mut pending: Vec<(PodKey, Arc<Pod>, u64, bool)> = self
            .pods
            .values()
            .filter(|st| st.phase == Phase::Pending)
            .map(|st| {
                (
                    st.pod.key.clone(),
                    st.pod.clone(),
                    st.submitted_ms,
                    st.unschedulable,
                )
            })
            .collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        let opts = CycleOptions {
            detail: true,
            post_filter: false,
            ..CycleOptions::default()
        };
        let mut out = Vec::new();
        for (key, pod, submitted, marked) in pending {
            let d = schedule(self.profile, &pod, &mut self.snap, opts);
            let scheduler = match d.node {
                // The last cycle before the end may simply not have come round yet.
                Some(_) => "fits a node now; not retried before the run ended".to_owned(),
                None => d.message().unwrap_or_default(),
            };
            let autoscaler = match &self.karpenter {
                None => "no autoscaler".to_owned(),
                Some(_) if !marked => "never marked unschedulable".to_owned(),
                Some(k) => match (k.reasons.get(&key), k.expected.get(&key)) {
                    (Some(r), _) => r.clone(),
                    (None, Some(n)) => format!("expects it to fit node {n}"),
                    (None, None) => "not yet in a provisioning pass".to_owned(),
                },
            };
            let role = if pod.is_driver() {
                "driver"
            } else if pod.is_executor() {
                "executor"
            } else {
                "pod"
            };
            out.push(NeverBound {
                pod: key.to_string(),
                role,
                waited_seconds: self.now.saturating_sub(submitted) as f64 / 1000.0,
                scheduler,
                autoscaler,
            });
        }
        out
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
