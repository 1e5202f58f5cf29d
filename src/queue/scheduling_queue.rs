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
                self.unschedulable.push(key.clone(), Reverse(qp.enqueued_ms));
            }
            Location::InFlight => return,
        }
        self.queued.insert(key, Queued { qp, at });
    }

    fn take(&mut self, key: &PodKey) -> Option<QueuedPod> {
        let q = self.queued.remove(key)?;
        match q.at {
            Location::Active => self.active.remove(key).map(|_| ()),
            Location::Backoff => self.backoff.remove(key).map(|_| ()),
            Location::Unschedulable => self.unschedulable.remove(key).map(|_| ()),
            Location::InFlight => None,
        };
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
            assert_eq!(places.iter().filter(|p| **p).count(), 1, "{key} in {places:?}");
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
/// start time) can't make a pod schedulable, so it doesn't release it from the pool.
fn changed_beyond_status(old: &Pod, new: &Pod) -> bool {
    if std::ptr::eq(old, new) {
        return false;
    }
    let mut old = old.clone();
    old.nominated_node_name = new.nominated_node_name;
    old.started_ms = new.started_ms;
    old != *new
}
