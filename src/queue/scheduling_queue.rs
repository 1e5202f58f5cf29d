//! The scheduling queue: pending pods in three sub-queues plus the pods in flight.
//!
//! - **active**: ready to be tried, popped in [`ActiveRank`] order;
//! - **backoff**: recently failed, waiting out their per-pod backoff (ordered by expiry);
//! - **unschedulable**: failed and waiting for a [`ClusterEvent`] that may help them,
//!   or for the leftover flush;
//! - **in flight**: popped and being scheduled; the queue remembers updates, deletes and
//!   events that arrive meanwhile so the requeue decision sees them.
//!
//! Every pod added is in exactly one of these places until it is deleted or its cycle
//! ends with [`SchedulingQueue::done`] after a successful bind.

use super::backoff::QueueConfig;
use super::clock::Clock;
use super::event::{event_may_help, ClusterEvent};
use super::QueueError;
use crate::model::{Pod, PodKey};
use priority_queue::PriorityQueue;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

/// A pod in the queue with its retry bookkeeping.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub pod: Arc<Pod>,
    /// Scheduling attempts so far (incremented by `pop`).
    pub attempts: u32,
    /// When the pod first entered the queue (for scheduling-latency metrics).
    pub first_enqueued_ms: u64,
    /// When the pod last entered the queue; backoff and the leftover flush count from here.
    pub enqueued_ms: u64,
    /// Plugins that rejected the last attempt; empty for a new pod or an error.
    pub rejected_by: Vec<&'static str>,
}

impl QueuedPod {
    pub fn key(&self) -> &PodKey {
        &self.pod.key
    }
}

/// Where a pod tracked by the queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

/// Sizes of the sub-queues, for the `spark_fleet_pending_pods{queue}` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingCounts {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
}

/// Active-queue order; greater pops first: higher priority, then driver before
/// non-Spark pods before executors (an app cannot run without its driver, and
/// executors without a driver are wasted), then older, then by key so that the
/// order is total and runs are reproducible.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ActiveRank {
    priority: i32,
    role: u8,
    older_first: Reverse<i64>,
    key: Reverse<PodKey>,
}

impl ActiveRank {
    fn of(pod: &Pod) -> ActiveRank {
        let role = if pod.is_driver() {
            2
        } else if pod.is_executor() {
            0
        } else {
            1
        };
        ActiveRank {
            priority: pod.priority,
            role,
            older_first: Reverse(pod.created_ms),
            key: Reverse(pod.key.clone()),
        }
    }
}

struct Queued {
    qp: QueuedPod,
    /// Never `InFlight`: in-flight pods are held by the caller.
    at: Location,
}

/// What happened to a popped pod while its cycle ran.
struct InFlight {
    uid: String,
    /// Latest object from `add` during the flight.
    update: Option<Arc<Pod>>,
    deleted: bool,
    /// Distinct events seen during the flight.
    events: Vec<ClusterEvent>,
}

/// kube-scheduler's PriorityQueue semantics over an injectable clock. Not
/// synchronised: the live scheduler wraps it in a mutex.
pub struct SchedulingQueue {
    clock: Arc<dyn Clock>,
    config: QueueConfig,
    queued: HashMap<PodKey, Queued>,
    active: PriorityQueue<PodKey, ActiveRank>,
    /// By backoff expiry, earliest first.
    backoff: PriorityQueue<PodKey, Reverse<u64>>,
    /// By `enqueued_ms`, earliest first, so the leftover flush needn't scan the pool.
    unschedulable: PriorityQueue<PodKey, Reverse<u64>>,
    in_flight: HashMap<PodKey, InFlight>,
}

impl SchedulingQueue {
    pub fn new(config: QueueConfig, clock: Arc<dyn Clock>) -> Result<SchedulingQueue, QueueError> {
        config.validate()?;
        Ok(SchedulingQueue {
            clock,
            config,
            queued: HashMap::new(),
            active: PriorityQueue::new(),
            backoff: PriorityQueue::new(),
            unschedulable: PriorityQueue::new(),
            in_flight: HashMap::new(),
        })
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Adds a pending pod, or updates it if its key is already tracked.
    ///
    /// - new key: to active;
    /// - in active or backoff: the object is replaced in place (active order follows it);
    /// - in unschedulable: replaced, and if anything but status changed, moved to
    ///   active (or backoff while its backoff runs), as upstream does on update;
    /// - in flight: remembered and applied when the cycle ends;
    /// - same key but another uid (deleted and recreated): the old pod is
    ///   forgotten and the new one starts fresh.
    ///
    /// Returns where the pod is now.
    pub fn add(&mut self, pod: Arc<Pod>) -> Location {
        if let Some(flight) = self.in_flight.get_mut(&pod.key) {
            flight.deleted = false;
            flight.update = Some(pod);
            return Location::InFlight;
        }
        let key = pod.key.clone();
        let Some(entry) = self.queued.get_mut(&key) else {
            return self.insert_new(pod);
        };
        if entry.qp.pod.uid != pod.uid {
            self.take(&key);
            return self.insert_new(pod);
        }
        match entry.at {
            Location::Active => {
                self.active.change_priority(&key, ActiveRank::of(&pod));
                entry.qp.pod = pod;
                Location::Active
            }
            Location::Backoff | Location::InFlight => {
                entry.qp.pod = pod;
                entry.at
            }
            Location::Unschedulable => {
                let changed = changed_beyond_status(&entry.qp.pod, &pod);
                entry.qp.pod = pod;
                if !changed {
                    return Location::Unschedulable;
                }
                match self.take(&key) {
                    Some(qp) => self.insert_active_or_backoff(qp),
                    None => Location::Unschedulable,
                }
            }
        }
    }

    /// Takes the first active pod for a scheduling cycle. Call [`flush`](Self::flush)
    /// first so expired backoffs are eligible.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        let (key, _) = self.active.pop()?;
        let mut qp = self.queued.remove(&key)?.qp;
        qp.attempts = qp.attempts.saturating_add(1);
        self.in_flight.insert(
            key,
            InFlight {
                uid: qp.pod.uid.clone(),
                update: None,
                deleted: false,
                events: Vec::new(),
            },
        );
        Some(qp)
    }

    /// Ends the cycle of an in-flight pod that was bound (or that the caller
    /// abandoned). Updates seen during the flight are dropped with it, since they
    /// predate the binding, except a recreated pod (same key, new uid), which is a
    /// different pending pod and goes to active. After a `requeue_*` this is a no-op.
    /// Returns whether the pod was in flight.
    pub fn done(&mut self, key: &PodKey) -> bool {
        let Some(flight) = self.in_flight.remove(key) else {
            return false;
        };
        if let Some(update) = flight.update {
            if !flight.deleted && update.uid != flight.uid {
                self.insert_new(update);
            }
        }
        true
    }

    /// The pod failed to schedule. It goes to the unschedulable pool, unless it may
    /// already be schedulable again: an event during its flight may help it, it was
    /// updated during the flight, or it failed without a rejecting plugin (an error).
    /// Those go to backoff (or active if the backoff is already over).
    ///
    /// Returns where it went; `None` if it was deleted during the flight.
    pub fn requeue_unschedulable(
        &mut self,
        qp: QueuedPod,
        rejected_by: Vec<&'static str>,
    ) -> Result<Option<Location>, QueueError> {
        self.requeue(qp, rejected_by, false)
    }

    /// The cycle failed for a reason worth a plain retry (e.g. a bind error):
    /// to backoff. Returns as [`requeue_unschedulable`](Self::requeue_unschedulable).
    pub fn requeue_backoff(&mut self, qp: QueuedPod) -> Result<Option<Location>, QueueError> {
        self.requeue(qp, Vec::new(), true)
    }

    fn requeue(
        &mut self,
        mut qp: QueuedPod,
        rejected_by: Vec<&'static str>,
        to_backoff: bool,
    ) -> Result<Option<Location>, QueueError> {
        let Some(flight) = self.in_flight.remove(qp.key()) else {
            return Err(QueueError::NotInFlight(qp.key().clone()));
        };
        if flight.deleted {
            return Ok(None);
        }
        let mut updated = false;
        if let Some(update) = flight.update {
            if update.uid != flight.uid {
                return Ok(Some(self.insert_new(update)));
            }
            updated = changed_beyond_status(&qp.pod, &update);
            qp.pod = update;
        }
        qp.enqueued_ms = self.now_ms();
        qp.rejected_by = rejected_by;
        let may_fit_now = to_backoff
            || updated
            || qp.rejected_by.is_empty()
            || flight
                .events
                .iter()
                .any(|e| event_may_help(e, &qp.pod, &qp.rejected_by));
        if may_fit_now {
            Ok(Some(self.insert_active_or_backoff(qp)))
        } else {
            self.insert(qp, Location::Unschedulable);
            Ok(Some(Location::Unschedulable))
        }
    }

    /// Moves the unschedulable pods `event` may help (see [`event_may_help`]) to active,
    /// or to backoff while their backoff runs, and records the event for pods in flight.
    /// Returns how many pods moved.
    pub fn on_event(&mut self, event: &ClusterEvent) -> usize {
        for flight in self.in_flight.values_mut() {
            if !flight.events.contains(event) {
                flight.events.push(*event);
            }
        }
        let helped: Vec<PodKey> = self
            .unschedulable
            .iter()
            .filter(|(key, _)| {
                self.queued
                    .get(*key)
                    .is_some_and(|q| event_may_help(event, &q.qp.pod, &q.qp.rejected_by))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &helped {
            if let Some(qp) = self.take(key) {
                self.insert_active_or_backoff(qp);
            }
        }
        helped.len()
    }

    /// Moves backoff pods whose backoff is over to active, and pods that sat in the
    /// unschedulable pool longer than `unschedulable_flush_ms` to active or backoff
    /// (upstream's flushUnschedulablePodsLeftover). Returns how many pods moved.
    pub fn flush(&mut self) -> usize {
        let now = self.now_ms();
        let mut moved = 0;
        while let Some((_, &Reverse(expiry))) = self.backoff.peek() {
            if expiry > now {
                break;
            }
            let Some((key, _)) = self.backoff.pop() else {
                break;
            };
            if let Some(q) = self.queued.remove(&key) {
                self.insert(q.qp, Location::Active);
                moved += 1;
            }
        }
        while let Some((key, &Reverse(since))) = self.unschedulable.peek() {
            if now.saturating_sub(since) <= self.config.unschedulable_flush_ms {
                break;
            }
            let key = key.clone();
            if let Some(qp) = self.take(&key) {
                self.insert_active_or_backoff(qp);
                moved += 1;
            }
        }
        moved
    }

    /// Moves an unschedulable pod to active (or backoff while its backoff runs),
    /// as upstream's `Activate`: something only the caller knows may let it
    /// fit now. Returns whether it moved.
    pub fn activate(&mut self, key: &PodKey) -> bool {
        if self.location(key) != Some(Location::Unschedulable) {
            return false;
        }
        match self.take(key) {
            Some(qp) => {
                self.insert_active_or_backoff(qp);
                true
            }
            None => false,
        }
    }

    /// Removes the pod wherever it is; a pod in flight is dropped when its cycle ends.
    /// Returns whether the queue tracked it.
    pub fn delete(&mut self, key: &PodKey) -> bool {
        if let Some(flight) = self.in_flight.get_mut(key) {
            let was_tracked = !flight.deleted;
            flight.deleted = true;
            flight.update = None;
            return was_tracked;
        }
        self.take(key).is_some()
    }

    pub fn location(&self, key: &PodKey) -> Option<Location> {
        if let Some(flight) = self.in_flight.get(key) {
            return (!flight.deleted).then_some(Location::InFlight);
        }
        self.queued.get(key).map(|q| q.at)
    }

    /// Whether the pod is queued or in flight (and not deleted).
    pub fn contains(&self, key: &PodKey) -> bool {
        self.location(key).is_some()
    }

    /// The queued (not in-flight) entry for `key`.
    pub fn get(&self, key: &PodKey) -> Option<&QueuedPod> {
        self.queued.get(key).map(|q| &q.qp)
    }

    /// Pods tracked: queued plus in flight (not deleted).
    pub fn len(&self) -> usize {
        self.queued.len() + self.in_flight_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries held, deleted in-flight pods included: what the queue's memory
    /// follows (`len` counts only the pods it still tracks).
    pub fn retained(&self) -> usize {
        self.queued.len() + self.in_flight.len()
    }

    /// Pods popped whose cycle hasn't ended (not counting ones deleted meanwhile).
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.values().filter(|f| !f.deleted).count()
    }

    pub fn pending_counts(&self) -> PendingCounts {
        PendingCounts {
            active: self.active.len(),
            backoff: self.backoff.len(),
            unschedulable: self.unschedulable.len(),
        }
    }

    /// The earliest backoff expiry, when `flush` next has a backoff pod to move.
    pub fn next_backoff_expiry_ms(&self) -> Option<u64> {
        self.backoff.peek().map(|(_, &Reverse(expiry))| expiry)
    }

    /// The first time at which `flush` will move the oldest unschedulable pod.
    pub fn next_leftover_flush_ms(&self) -> Option<u64> {
        self.unschedulable.peek().map(|(_, &Reverse(since))| {
            since
                .saturating_add(self.config.unschedulable_flush_ms)
                .saturating_add(1)
        })
    }

    /// The pods waiting in the unschedulable pool, in no particular (but reproducible) order.
    pub fn unschedulable_pods(&self) -> impl Iterator<Item = &QueuedPod> + '_ {
        self.unschedulable
            .iter()
            .filter_map(|(key, _)| self.queued.get(key).map(|q| &q.qp))
    }

    fn backoff_expiry_ms(&self, qp: &QueuedPod) -> u64 {
        qp.enqueued_ms
            .saturating_add(self.config.backoff_ms(qp.attempts))
    }

    fn insert_new(&mut self, pod: Arc<Pod>) -> Location {
        let now = self.now_ms();
        let qp = QueuedPod {
            pod,
            attempts: 0,
            first_enqueued_ms: now,
            enqueued_ms: now,
            rejected_by: Vec::new(),
        };
        self.insert(qp, Location::Active);
        Location::Active
    }

    /// Upstream's isPodBackingoff: backoff still runs while its expiry is in the future.
    fn insert_active_or_backoff(&mut self, qp: QueuedPod) -> Location {
        let at = if self.backoff_expiry_ms(&qp) > self.now_ms() {
            Location::Backoff
        } else {
            Location::Active
        };
        self.insert(qp, at);
        at
    }

    fn insert(&mut self, qp: QueuedPod, at: Location) {
        let key = qp.key().clone();
        match at {
            Location::Active => {
                self.active.push(key.clone(), ActiveRank::of(&qp.pod));
            }
            Location::Backoff => {
                self.backoff
                    .push(key.clone(), Reverse(self.backoff_expiry_ms(&qp)));
            }
            Location::Unschedulable => {
                self.unschedulable
                    .push(key.clone(), Reverse(qp.enqueued_ms));
            }
            Location::InFlight => return,
        }
        self.queued.insert(key, Queued { qp, at });
    }

    fn take(&mut self, key: &PodKey) -> Option<QueuedPod> {
        let q = self.queued.remove(key)?;
        match q.at {
            Location::Active => {
                self.active.remove(key);
            }
            Location::Backoff => {
                self.backoff.remove(key);
            }
            Location::Unschedulable => {
                self.unschedulable.remove(key);
            }
            Location::InFlight => {}
        }
        Some(q.qp)
    }

    /// Checks that the index structures agree; for tests.
    #[cfg(test)]
    fn assert_consistent(&self) {
        assert_eq!(
            self.queued.len(),
            self.active.len() + self.backoff.len() + self.unschedulable.len()
        );
        for (key, q) in &self.queued {
            assert_eq!(&q.qp.pod.key, key);
            let places = [
                self.active.get(key).is_some(),
                self.backoff.get(key).is_some(),
                self.unschedulable.get(key).is_some(),
                self.in_flight.contains_key(key),
            ];
            assert_eq!(
                places.iter().filter(|p| **p).count(),
                1,
                "{key} in {places:?}"
            );
            let want = match q.at {
                Location::Active => 0,
                Location::Backoff => 1,
                Location::Unschedulable => 2,
                Location::InFlight => 3,
            };
            assert!(places[want], "{key} recorded at {:?}", q.at);
        }
    }
}

/// Upstream's isPodUpdated: an update that only touches status (nominated node,
/// start time, its own PodScheduled condition) can't make a pod schedulable, so it doesn't release it from the pool.
fn changed_beyond_status(old: &Pod, new: &Pod) -> bool {
    if std::ptr::eq(old, new) {
        return false;
    }
    let mut old = old.clone();
    old.nominated_node_name = new.nominated_node_name;
    old.started_ms = new.started_ms;
    old.unschedulable_since_ms = new.unschedulable_since_ms;
    old != *new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, Resources, SparkIdentity, SparkRole, Sym};
    use crate::queue::plugin::*;
    use crate::queue::ManualClock;

    fn queue_at(start_ms: u64) -> (ManualClock, SchedulingQueue) {
        let clock = ManualClock::new(start_ms);
        let q = SchedulingQueue::new(QueueConfig::default(), Arc::new(clock.clone())).unwrap();
        (clock, q)
    }

    fn pod_with(
        name: &str,
        priority: i32,
        spark: Option<(SparkRole, &str)>,
        created_ms: i64,
    ) -> Pod {
        let mut p = Pod::new("ns", name, Resources::default());
        p.priority = priority;
        p.created_ms = created_ms;
        p.spark = spark.map(|(role, app)| SparkIdentity {
            role,
            app: Sym::new(app),
        });
        p
    }

    fn pod(name: &str) -> Arc<Pod> {
        Arc::new(pod_with(name, 0, None, 0))
    }

    fn key(name: &str) -> PodKey {
        PodKey::new("ns", name)
    }

    /// Adds `p`, pops it and fails it with `rejected_by`; returns where it went.
    fn fail(q: &mut SchedulingQueue, p: Arc<Pod>, rejected_by: &[&'static str]) -> Location {
        q.add(p.clone());
        let qp = q.pop().unwrap();
        assert_eq!(qp.pod.key, p.key);
        q.requeue_unschedulable(qp, rejected_by.to_vec())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn active_order() {
        use SparkRole::{Driver, Executor};
        // (name, priority, spark, created_ms), listed in the expected pop order.
        type Row = (&'static str, i32, Option<(SparkRole, &'static str)>, i64);
        let table: &[Row] = &[
            ("high-exec", 100, Some((Executor, "a")), 50),
            ("drv-new", 0, Some((Driver, "a")), 30),
            ("plain-old", 0, None, 10),
            ("plain-new", 0, None, 20),
            ("exec-old-a", 0, Some((Executor, "a")), 1),
            ("exec-old-b", 0, Some((Executor, "b")), 1),
            ("exec-new", 0, Some((Executor, "a")), 2),
            ("low-drv", -5, Some((Driver, "b")), 0),
        ];
        let (_, mut q) = queue_at(0);
        // Insert in reverse and shuffled-ish order so the order comes from ranking.
        for i in [3, 7, 0, 5, 1, 6, 2, 4] {
            let (n, prio, spark, created) = table[i];
            q.add(Arc::new(pod_with(n, prio, spark, created)));
        }
        let popped: Vec<String> =
            std::iter::from_fn(|| q.pop().map(|qp| qp.pod.key.name.clone())).collect();
        let want: Vec<&str> = table.iter().map(|r| r.0).collect();
        assert_eq!(popped, want);
    }

    #[test]
    fn update_in_active_reorders() {
        let (_, mut q) = queue_at(0);
        q.add(Arc::new(pod_with("a", 0, None, 0)));
        q.add(Arc::new(pod_with("b", 5, None, 0)));
        assert_eq!(
            q.add(Arc::new(pod_with("a", 10, None, 0))),
            Location::Active
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().unwrap().pod.key.name, "a");
        assert_eq!(q.pop().unwrap().pod.key.name, "b");
    }

    #[test]
    fn backoff_durations() {
        let (clock, mut q) = queue_at(1_000_000);
        q.add(pod("p"));
        // attempts 1..=6 -> 1, 2, 4, 8, 10, 10 seconds.
        for (attempt, want_ms) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (4, 8_000),
            (5, 10_000),
            (6, 10_000),
        ] {
            let qp = q.pop().expect("pod must be active");
            assert_eq!(qp.attempts, attempt);
            let t = clock.advance(123);
            assert_eq!(q.requeue_backoff(qp).unwrap(), Some(Location::Backoff));
            assert_eq!(
                q.next_backoff_expiry_ms(),
                Some(t + want_ms),
                "attempt {attempt}"
            );
            clock.set(t + want_ms - 1);
            assert_eq!(q.flush(), 0, "attempt {attempt}: moved before expiry");
            assert!(q.pop().is_none());
            clock.set(t + want_ms);
            assert_eq!(q.flush(), 1, "attempt {attempt}: not moved at expiry");
            assert_eq!(q.location(&key("p")), Some(Location::Active));
        }
    }

    #[test]
    fn node_added_moves_unschedulable_pod_node_removed_does_not() {
        let (clock, mut q) = queue_at(0);
        assert_eq!(
            fail(&mut q, pod("p"), &[TAINT_TOLERATION]),
            Location::Unschedulable
        );
        assert_eq!(q.on_event(&ClusterEvent::NodeRemoved), 0);
        assert_eq!(q.location(&key("p")), Some(Location::Unschedulable));
        // Still within the 1 s backoff: the helped pod waits in backoff.
        clock.advance(500);
        assert_eq!(q.on_event(&ClusterEvent::NodeAdded), 1);
        assert_eq!(q.location(&key("p")), Some(Location::Backoff));
        assert_eq!(
            q.get(&key("p")).unwrap().rejected_by,
            vec![TAINT_TOLERATION]
        );
    }

    #[test]
    fn helped_pod_past_backoff_goes_straight_to_active() {
        let (clock, mut q) = queue_at(0);
        fail(&mut q, pod("p"), &[NODE_AFFINITY]);
        clock.advance(1_000);
        assert_eq!(q.on_event(&ClusterEvent::NodeUpdated), 1);
        assert_eq!(q.location(&key("p")), Some(Location::Active));
    }

    #[test]
    fn pod_deleted_helps_resource_rejections_not_taint_only() {
        let (_, mut q) = queue_at(0);
        fail(&mut q, pod("fit"), &[NODE_RESOURCES_FIT]);
        fail(&mut q, pod("taint"), &[TAINT_TOLERATION]);
        fail(&mut q, pod("both"), &[TAINT_TOLERATION, NODE_PORTS]);
        assert_eq!(q.pending_counts().unschedulable, 3);
        assert_eq!(q.on_event(&ClusterEvent::PodDeleted { app: None }), 2);
        assert_eq!(q.location(&key("fit")), Some(Location::Backoff));
        assert_eq!(q.location(&key("both")), Some(Location::Backoff));
        assert_eq!(q.location(&key("taint")), Some(Location::Unschedulable));
        let left: Vec<_> = q
            .unschedulable_pods()
            .map(|qp| qp.pod.key.name.clone())
            .collect();
        assert_eq!(left, vec!["taint"]);
    }

    #[test]
    fn pod_deleted_of_same_app_helps_any_rejection() {
        let (_, mut q) = queue_at(0);
        let exec = Arc::new(pod_with("e", 0, Some((SparkRole::Executor, "app-1")), 0));
        fail(&mut q, exec, &[TAINT_TOLERATION]);
        let other_app = Some(Sym::new("app-2"));
        assert_eq!(q.on_event(&ClusterEvent::PodDeleted { app: other_app }), 0);
        let same_app = Some(Sym::new("app-1"));
        assert_eq!(q.on_event(&ClusterEvent::PodDeleted { app: same_app }), 1);
    }

    #[test]
    fn app_executors_changed_only_helps_same_app() {
        let (_, mut q) = queue_at(0);
        let a = Arc::new(pod_with("a", 0, Some((SparkRole::Executor, "app-a")), 0));
        let b = Arc::new(pod_with("b", 0, Some((SparkRole::Executor, "app-b")), 0));
        let a_fit = Arc::new(pod_with(
            "a-fit",
            0,
            Some((SparkRole::Executor, "app-a")),
            0,
        ));
        fail(&mut q, a, &[CAPACITY_MIX]);
        fail(&mut q, b, &[CAPACITY_MIX]);
        fail(&mut q, a_fit, &[NODE_RESOURCES_FIT]);
        let moved = q.on_event(&ClusterEvent::AppExecutorsChanged {
            app: Sym::new("app-a"),
        });
        assert_eq!(moved, 1);
        assert_eq!(q.location(&key("a")), Some(Location::Backoff));
        assert_eq!(q.location(&key("b")), Some(Location::Unschedulable));
        assert_eq!(q.location(&key("a-fit")), Some(Location::Unschedulable));
    }

    #[test]
    fn leftover_flush_after_five_minutes() {
        let (clock, mut q) = queue_at(10_000);
        fail(&mut q, pod("p"), &[NODE_AFFINITY]);
        assert_eq!(q.next_leftover_flush_ms(), Some(10_000 + 300_001));
        clock.set(10_000 + 300_000);
        assert_eq!(q.flush(), 0);
        assert_eq!(q.location(&key("p")), Some(Location::Unschedulable));
        clock.set(10_000 + 300_001);
        assert_eq!(q.flush(), 1);
        assert_eq!(q.location(&key("p")), Some(Location::Active));
        assert_eq!(q.next_leftover_flush_ms(), None);
    }

    #[test]
    fn leftover_flush_respects_short_config_and_backoff() {
        let clock = ManualClock::new(0);
        let config = QueueConfig {
            unschedulable_flush_ms: 100,
            ..QueueConfig::default()
        };
        let mut q = SchedulingQueue::new(config, Arc::new(clock.clone())).unwrap();
        fail(&mut q, pod("p"), &[NODE_AFFINITY]);
        clock.set(101);
        // Out of the pool, but its 1 s backoff still runs.
        assert_eq!(q.flush(), 1);
        assert_eq!(q.location(&key("p")), Some(Location::Backoff));
        clock.set(1_000);
        assert_eq!(q.flush(), 1);
        assert_eq!(q.location(&key("p")), Some(Location::Active));
    }

    #[test]
    fn update_while_in_flight_is_not_lost() {
        let (_, mut q) = queue_at(0);
        q.add(pod("p"));
        let qp = q.pop().unwrap();
        let mut newer = pod_with("p", 0, None, 0);
        newer.labels = Labels::from_pairs([("tier", "gold")]);
        assert_eq!(q.add(Arc::new(newer)), Location::InFlight);
        assert_eq!(q.len(), 1);
        // A rejection the update may have cured: retried after backoff, with the new object.
        let at = q.requeue_unschedulable(qp, vec![NODE_AFFINITY]).unwrap();
        assert_eq!(at, Some(Location::Backoff));
        let queued = q.get(&key("p")).unwrap();
        assert_eq!(queued.pod.labels.get_str("tier"), Some("gold"));
        assert_eq!(queued.attempts, 1);
        assert!(!q.done(&key("p")), "done after requeue is a no-op");
        assert_eq!(q.location(&key("p")), Some(Location::Backoff));
    }

    #[test]
    fn status_only_update_while_in_flight_keeps_pod_unschedulable() {
        let (_, mut q) = queue_at(0);
        q.add(pod("p"));
        let qp = q.pop().unwrap();
        let mut newer = pod_with("p", 0, None, 0);
        newer.nominated_node_name = Some(Sym::new("n1"));
        q.add(Arc::new(newer));
        let at = q.requeue_unschedulable(qp, vec![NODE_AFFINITY]).unwrap();
        assert_eq!(at, Some(Location::Unschedulable));
        assert_eq!(
            q.get(&key("p")).unwrap().pod.nominated_node_name,
            Some(Sym::new("n1"))
        );
    }

    #[test]
    fn update_of_unschedulable_pod_moves_it_unless_status_only() {
        let (_, mut q) = queue_at(0);
        fail(&mut q, pod("p"), &[NODE_AFFINITY]);
        let mut status_only = pod_with("p", 0, None, 0);
        status_only.started_ms = Some(5);
        assert_eq!(q.add(Arc::new(status_only)), Location::Unschedulable);
        // Our own PodScheduled=False report coming back through the watch.
        let mut reported = pod_with("p", 0, None, 0);
        reported.unschedulable_since_ms = Some(7);
        assert_eq!(q.add(Arc::new(reported)), Location::Unschedulable);
        assert_eq!(
            q.get(&key("p")).unwrap().pod.unschedulable_since_ms,
            Some(7)
        );
        let mut spec_change = pod_with("p", 0, None, 0);
        spec_change.node_selector = vec![(Sym::new("zone"), Sym::new("a"))];
        assert_eq!(q.add(Arc::new(spec_change)), Location::Backoff);
        assert_eq!(q.get(&key("p")).unwrap().pod.node_selector.len(), 1);
    }

    #[test]
    fn done_after_bind_forgets_the_pod_and_its_update() {
        let (_, mut q) = queue_at(0);
        q.add(pod("p"));
        let _qp = q.pop().unwrap();
        q.add(pod("p"));
        assert!(q.done(&key("p")));
        assert!(!q.contains(&key("p")));
        assert!(q.is_empty());
    }

    #[test]
    fn pod_recreated_during_flight_is_queued_fresh() {
        let (_, mut q) = queue_at(0);
        q.add(pod("p"));
        let _qp = q.pop().unwrap();
        assert!(q.delete(&key("p")));
        let mut recreated = pod_with("p", 0, None, 0);
        recreated.uid = "second-uid".into();
        assert_eq!(q.add(Arc::new(recreated)), Location::InFlight);
        assert!(q.done(&key("p")));
        let queued = q.get(&key("p")).unwrap();
        assert_eq!(queued.pod.uid, "second-uid");
        assert_eq!(queued.attempts, 0);
        assert_eq!(q.location(&key("p")), Some(Location::Active));
    }

    #[test]
    fn delete_while_queued() {
        let (_, mut q) = queue_at(0);
        fail(&mut q, pod("unsched"), &[TAINT_TOLERATION]);
        q.add(pod("backoff"));
        let qp = q.pop().unwrap();
        assert_eq!(q.requeue_backoff(qp).unwrap(), Some(Location::Backoff));
        q.add(pod("active"));
        q.add(pod("active2"));
        let counts = q.pending_counts();
        assert_eq!(
            (counts.active, counts.backoff, counts.unschedulable),
            (2, 1, 1)
        );
        for name in ["active", "backoff", "unsched", "active2"] {
            assert!(q.delete(&key(name)), "{name}");
            assert!(!q.contains(&key(name)), "{name}");
            assert!(!q.delete(&key(name)), "{name} deleted twice");
        }
        assert_eq!(q.pending_counts(), PendingCounts::default());
        assert!(q.pop().is_none());
        assert_eq!(q.next_backoff_expiry_ms(), None);
    }

    #[test]
    fn delete_while_in_flight_drops_on_requeue() {
        let (_, mut q) = queue_at(0);
        q.add(pod("p"));
        let qp = q.pop().unwrap();
        assert_eq!(q.location(&key("p")), Some(Location::InFlight));
        assert!(q.delete(&key("p")));
        assert!(!q.contains(&key("p")));
        assert_eq!(q.requeue_unschedulable(qp.clone(), vec![]).unwrap(), None);
        assert!(q.is_empty());
        assert_eq!(
            q.requeue_backoff(qp),
            Err(QueueError::NotInFlight(key("p")))
        );
    }

    #[test]
    fn move_request_during_flight_sends_to_backoff() {
        // (event during the flight, rejected_by, expected place)
        let table: &[(Option<ClusterEvent>, &[&'static str], Location)] = &[
            (None, &[TAINT_TOLERATION], Location::Unschedulable),
            (
                Some(ClusterEvent::NodeAdded),
                &[TAINT_TOLERATION],
                Location::Backoff,
            ),
            (
                Some(ClusterEvent::NodeRemoved),
                &[TAINT_TOLERATION],
                Location::Unschedulable,
            ),
            (
                Some(ClusterEvent::PodDeleted { app: None }),
                &[TAINT_TOLERATION],
                Location::Unschedulable,
            ),
            (
                Some(ClusterEvent::PodDeleted { app: None }),
                &[NODE_RESOURCES_FIT],
                Location::Backoff,
            ),
            (None, &[], Location::Backoff),
        ];
        for (i, (event, rejected_by, want)) in table.iter().enumerate() {
            let (_, mut q) = queue_at(0);
            q.add(pod("p"));
            let qp = q.pop().unwrap();
            if let Some(e) = event {
                q.on_event(e);
            }
            let at = q.requeue_unschedulable(qp, rejected_by.to_vec()).unwrap();
            assert_eq!(at, Some(*want), "row {i}");
        }
    }

    #[test]
    fn events_before_the_flight_do_not_count() {
        let (_, mut q) = queue_at(0);
        q.add(pod("p"));
        q.on_event(&ClusterEvent::NodeAdded);
        let qp = q.pop().unwrap();
        let at = q.requeue_unschedulable(qp, vec![TAINT_TOLERATION]).unwrap();
        assert_eq!(at, Some(Location::Unschedulable));
    }

    #[test]
    fn config_is_validated() {
        let config = QueueConfig {
            initial_backoff_ms: 20_000,
            ..QueueConfig::default()
        };
        let err = SchedulingQueue::new(config, Arc::new(ManualClock::new(0))).err();
        assert_eq!(
            err,
            Some(QueueError::BackoffInitialAboveMax {
                initial_ms: 20_000,
                max_ms: 10_000
            })
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;
        use std::collections::{BTreeMap, HashMap};

        const PODS: usize = 6;

        #[derive(Debug, Clone)]
        enum Op {
            /// Add pod `i`; `recreate` gives it a new uid.
            Add {
                i: usize,
                priority: i32,
                recreate: bool,
            },
            Pop,
            /// Requeue the `j`-th held pod as unschedulable with a rejector subset.
            Fail {
                j: usize,
                rejectors: u8,
            },
            Backoff {
                j: usize,
            },
            /// Bind the `j`-th held pod.
            Bound {
                j: usize,
            },
            Delete {
                i: usize,
            },
            Event(u8),
            Advance(u64),
            Flush,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0..PODS, -1..2i32, proptest::bool::weighted(0.15)).prop_map(
                    |(i, priority, recreate)| Op::Add {
                        i,
                        priority,
                        recreate
                    }
                ),
                Just(Op::Pop),
                (0..4usize, any::<u8>()).prop_map(|(j, rejectors)| Op::Fail { j, rejectors }),
                (0..4usize).prop_map(|j| Op::Backoff { j }),
                (0..4usize).prop_map(|j| Op::Bound { j }),
                (0..PODS).prop_map(|i| Op::Delete { i }),
                (0..6u8).prop_map(Op::Event),
                (0..400_000u64).prop_map(Op::Advance),
                Just(Op::Flush),
            ]
        }

        const REJECTORS: [&str; 5] = [
            TAINT_TOLERATION,
            NODE_RESOURCES_FIT,
            CAPACITY_MIX,
            POD_TOPOLOGY_SPREAD,
            NODE_AFFINITY,
        ];

        fn event(n: u8) -> ClusterEvent {
            match n {
                0 => ClusterEvent::NodeAdded,
                1 => ClusterEvent::NodeUpdated,
                2 => ClusterEvent::NodeRemoved,
                3 => ClusterEvent::PodDeleted {
                    app: Some(Sym::new("app-0")),
                },
                4 => ClusterEvent::PodUpdated,
                _ => ClusterEvent::AppExecutorsChanged {
                    app: Sym::new("app-1"),
                },
            }
        }

        fn make_pod(i: usize, priority: i32, uid_gen: u32) -> Arc<Pod> {
            let role = if i % 3 == 0 {
                SparkRole::Driver
            } else {
                SparkRole::Executor
            };
            let app = format!("app-{}", i % 2);
            let mut p = pod_with(&format!("p{i}"), priority, Some((role, &app)), i as i64);
            p.uid = format!("p{i}-{uid_gen}");
            Arc::new(p)
        }

        /// Model: which pods must be tracked. `uid` is the pod's current uid;
        /// a held pod whose key has a different current uid was recreated in flight.
        #[derive(Default)]
        struct Model {
            live: BTreeMap<PodKey, String>,
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn no_pod_lost_or_duplicated(ops in proptest::collection::vec(op(), 1..80)) {
                let clock = ManualClock::new(0);
                let mut q = SchedulingQueue::new(QueueConfig::default(), Arc::new(clock.clone())).unwrap();
                let mut model = Model::default();
                let mut held: Vec<QueuedPod> = Vec::new();
                let mut uid_gen: HashMap<usize, u32> = HashMap::new();
                for op in ops {
                    match op {
                        Op::Add { i, priority, recreate } => {
                            let g = uid_gen.entry(i).or_insert(0);
                            if recreate {
                                *g += 1;
                            }
                            let p = make_pod(i, priority, *g);
                            model.live.insert(p.key.clone(), p.uid.clone());
                            q.add(p);
                        }
                        Op::Pop => {
                            if let Some(qp) = q.pop() {
                                prop_assert!(model.live.contains_key(qp.key()));
                                prop_assert!(held.iter().all(|h| h.key() != qp.key()), "popped twice");
                                held.push(qp);
                            }
                        }
                        Op::Fail { j, rejectors } if !held.is_empty() => {
                            let qp = held.remove(j % held.len());
                            let rejected_by: Vec<&'static str> = REJECTORS
                                .iter()
                                .enumerate()
                                .filter(|(b, _)| rejectors & (1 << b) != 0)
                                .map(|(_, r)| *r)
                                .collect();
                            let k = qp.key().clone();
                            let at = q.requeue_unschedulable(qp, rejected_by).unwrap();
                            prop_assert_eq!(at.is_some(), model.live.contains_key(&k));
                        }
                        Op::Backoff { j } if !held.is_empty() => {
                            let qp = held.remove(j % held.len());
                            let k = qp.key().clone();
                            let at = q.requeue_backoff(qp).unwrap();
                            prop_assert_eq!(at.is_some(), model.live.contains_key(&k));
                        }
                        Op::Bound { j } if !held.is_empty() => {
                            let qp = held.remove(j % held.len());
                            prop_assert!(q.done(qp.key()));
                            // The bound pod leaves; a pod recreated under its name stays.
                            if model.live.get(qp.key()) == Some(&qp.pod.uid) {
                                model.live.remove(qp.key());
                            }
                        }
                        Op::Fail { .. } | Op::Backoff { .. } | Op::Bound { .. } => {}
                        Op::Delete { i } => {
                            let k = key(&format!("p{i}"));
                            let was = model.live.remove(&k).is_some();
                            prop_assert_eq!(q.delete(&k), was);
                        }
                        Op::Event(n) => {
                            q.on_event(&event(n));
                        }
                        Op::Advance(ms) => {
                            clock.advance(ms);
                        }
                        Op::Flush => {
                            q.flush();
                        }
                    }
                    q.assert_consistent();
                    prop_assert_eq!(q.len(), model.live.len());
                    for i in 0..PODS {
                        let k = key(&format!("p{i}"));
                        let loc = q.location(&k);
                        prop_assert_eq!(loc.is_some(), model.live.contains_key(&k), "{}", k);
                        let in_hand = held.iter().any(|h| h.key() == &k);
                        if loc.is_some() {
                            prop_assert_eq!(loc == Some(Location::InFlight), in_hand, "{}", k);
                        }
                        if let (Some(uid), Some(queued)) = (model.live.get(&k), q.get(&k)) {
                            prop_assert_eq!(uid, &queued.pod.uid);
                        }
                    }
                    let counts = q.pending_counts();
                    prop_assert_eq!(
                        counts.active + counts.backoff + counts.unschedulable + q.in_flight_count(),
                        model.live.len()
                    );
                }
                // Given enough time and flushes, everything still tracked becomes poppable.
                for qp in held.drain(..) {
                    q.requeue_backoff(qp).unwrap();
                }
                clock.advance(301_000);
                q.flush();
                let mut drained = 0;
                while let Some(qp) = q.pop() {
                    prop_assert!(q.done(qp.key()));
                    drained += 1;
                }
                prop_assert_eq!(drained, model.live.len());
                prop_assert!(q.is_empty());
            }
        }
    }
}
