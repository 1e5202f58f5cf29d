//! Spark applications in the simulator: their pods and how their work progresses.
//!
//! Model (documented in `simulations/README.md` terms):
//! - the driver is submitted with the application; executors are requested once it runs
//!   (all at once: the fixed count, or `max` under dynamic allocation);
//! - work progresses at one executor-second per second per running executor, but only while
//!   at least `min` executors run (dynamic allocation) or at least one (fixed count); an
//!   application with no executors at all is driver-only and progresses at rate 1;
//! - an executor that is lost (node gone, preempted) loses all the work it did since it
//!   started (Spark recomputes the lost tasks and shuffle output: no checkpoint is assumed),
//!   and a replacement executor is requested;
//! - when the work is done the application completes and its pods finish.

use super::trace::{AppSubmit, ExecutorScaling, TraceError};
use crate::config::Config;
use crate::model::spark::{identify, LABEL_SPARK_APP, LABEL_SPARK_ROLE};
use crate::model::{Labels, Pod, Resources, Sym, ANNOTATION_PREFIX};
use crate::spark::annotations;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An application as submitted, converted once.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub id: String,
    pub namespace: String,
    pub driver_requests: Resources,
    pub executor_requests: Resources,
    pub driver_priority: i32,
    pub executor_priority: i32,
    /// Executors requested once the driver runs.
    pub executors: u32,
    /// Executors needed for work to progress.
    pub min_running: u32,
    pub work_executor_seconds: f64,
    pub annotations: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// Target share of executors on spot, from the application's capacity mix (if any).
    pub target_spot_share: Option<f64>,
    /// Each executor's OnDemand claim: storage class and request in bytes.
    pub executor_claim: Option<(crate::model::Sym, i64)>,
}

impl AppSpec {
    pub fn from_trace(a: &AppSubmit, config: &Config) -> Result<AppSpec, TraceError> {
        let (executors, min_running) = match a.scaling() {
            ExecutorScaling::Fixed(n) => (n, n.min(1)),
            ExecutorScaling::Dynamic { min, max } => (max, min.max(1).min(max)),
        };
        let annotations: Vec<(String, String)> = a
            .annotations
            .iter()
            .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let executor_requests = a.executor_requests()?;
        Ok(AppSpec {
            id: a.id.clone(),
            namespace: a.namespace.clone(),
            driver_requests: a.driver_requests()?,
            executor_requests,
            driver_priority: a.driver.priority,
            executor_priority: a.executor.priority,
            executors,
            min_running,
            work_executor_seconds: a.work_executor_seconds,
            target_spot_share: target_spot_share(config, &a.namespace, &a.annotations),
            executor_claim: match &a.executor_claim {
                Some(c) => Some((
                    crate::model::Sym::new(&c.storage_class),
                    c.request_bytes(&a.id)?,
                )),
                None => None,
            },
            annotations,
            labels: a
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    fn labels(&self, role: &str) -> Labels {
        Labels::from_pairs(
            [
                (LABEL_SPARK_ROLE, role),
                (LABEL_SPARK_APP, self.id.as_str()),
            ]
            .into_iter()
            .chain(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )
    }

    /// The driver pod of attempt `attempt` (0-based), created at `now_ms`.
    pub fn driver_pod(&self, attempt: u32, now_ms: u64, scheduler: &str) -> Pod {
        let name = format!("{}-driver", self.id);
        let mut p = Pod::new(&self.namespace, &name, self.driver_requests.clone());
        p.uid = format!("{}/{}/a{attempt}", self.namespace, name);
        p.labels = self.labels("driver");
        p.annotations = self.annotations.clone();
        if let Some(v) = executor_resources_annotation(&self.executor_requests) {
            p.annotations.push(v);
        }
        p.priority = self.driver_priority;
        p.scheduler_name = scheduler.to_owned();
        p.created_ms = now_ms as i64;
        p.spark = identify(&p.labels, &p.uid, None);
        p
    }

    /// Executor number `n` (numbers keep counting across attempts, as names must stay unique).
    pub fn executor_pod(&self, n: u32, now_ms: u64, scheduler: &str) -> Pod {
        let name = format!("{}-exec-{n}", self.id);
        let mut p = Pod::new(&self.namespace, &name, self.executor_requests.clone());
        p.labels = self.labels("executor");
        p.priority = self.executor_priority;
        p.scheduler_name = scheduler.to_owned();
        p.created_ms = now_ms as i64;
        p.spark = identify(&p.labels, &p.uid, None);
        p
    }
}

/// `spark-fleet.io/executor-resources` on the driver tells driver admission how large an
/// executor is: `cpu=<millicores>m,memory=<bytes>` plus any other requested resources.
fn executor_resources_annotation(r: &Resources) -> Option<(String, String)> {
    let mut parts = vec![
        format!("cpu={}m", r.milli_cpu),
        format!("memory={}", r.memory),
    ];
    if r.ephemeral_storage > 0 {
        parts.push(format!("ephemeral-storage={}", r.ephemeral_storage));
    }
    parts.extend(r.scalars.iter().map(|(n, v)| format!("{n}={v}")));
    Some((annotations::EXECUTOR_RESOURCES.to_owned(), parts.join(",")))
}

/// The spot share an application's executor mix asks for: its driver annotation, else the
/// namespace default, else the cluster default. None when no mix applies or it does not parse
/// (the scheduler reports a bad mix on the pod itself).
pub fn target_spot_share(
    config: &Config,
    namespace: &str,
    app_annotations: &BTreeMap<String, String>,
) -> Option<f64> {
    let value = app_annotations
        .get(annotations::EXECUTOR_CAPACITY_MIX)
        .map(String::as_str)
        .or_else(|| {
            config
                .spark
                .namespaces
                .get(namespace)
                .and_then(|n| n.executor_capacity_mix.as_deref())
        })
        .or(config.spark.executor_capacity_mix.as_deref())?;
    let known = config.capacity_types.known_types();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let mix = annotations::parse_mix(value, &known).ok()?;
    let total: u64 = mix.iter().map(|(_, w)| *w as u64).sum();
    let spot: u64 = mix
        .iter()
        .filter(|(t, _)| t == crate::model::capacity::SPOT)
        .map(|(_, w)| *w as u64)
        .sum();
    (total > 0).then(|| spot as f64 / total as f64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppPhase {
    /// Submitted; the driver is not running yet.
    Starting,
    Running,
    Completed,
    Failed,
}

/// A running executor: when it started and whether its node is spot.
#[derive(Debug, Clone, Copy)]
pub struct RunningExecutor {
    pub started_ms: u64,
    pub spot: bool,
}

/// One application's state across its attempts.
#[derive(Debug, Clone)]
pub struct App {
    pub spec: Arc<AppSpec>,
    pub attempt: u32,
    pub submitted_ms: u64,
    pub phase: AppPhase,
    pub driver_running: bool,
    pub work_done: f64,
    last_update_ms: u64,
    pub running: BTreeMap<u32, RunningExecutor>,
    pub pending: BTreeSet<u32>,
    pub next_executor: u32,
    /// Bumped whenever the completion estimate changes, so stale checks are ignored.
    pub epoch: u64,
    pub share: ShareTracker,
    pub completed_ms: Option<u64>,
    /// Largest number of executors running at once.
    pub peak_executors: usize,
    /// The most work the application has had done at once, and when it first got there: an
    /// application whose executors keep being lost before they pass it makes no progress.
    pub best_work: f64,
    pub best_at_ms: u64,
}

impl App {
    pub fn new(spec: Arc<AppSpec>, now_ms: u64) -> App {
        App {
            spec,
            attempt: 0,
            submitted_ms: now_ms,
            phase: AppPhase::Starting,
            driver_running: false,
            work_done: 0.0,
            last_update_ms: now_ms,
            running: BTreeMap::new(),
            pending: BTreeSet::new(),
            next_executor: 1,
            epoch: 0,
            share: ShareTracker::default(),
            completed_ms: None,
            peak_executors: 0,
            best_work: 0.0,
            best_at_ms: now_ms,
        }
    }

    /// Executor-seconds per second right now.
    pub fn rate(&self) -> f64 {
        if !self.driver_running {
            return 0.0;
        }
        if self.spec.executors == 0 {
            return 1.0;
        }
        let n = self.running.len() as u32;
        if n >= self.spec.min_running.max(1) {
            n as f64
        } else {
            0.0
        }
    }

    /// Accrues work up to `now_ms`.
    pub fn advance(&mut self, now_ms: u64) {
        let dt = now_ms.saturating_sub(self.last_update_ms) as f64 / 1000.0;
        self.work_done += self.rate() * dt;
        self.last_update_ms = now_ms.max(self.last_update_ms);
        if self.work_done > self.best_work + 1e-9 {
            self.best_work = self.work_done;
            self.best_at_ms = self.last_update_ms;
        }
    }

    pub fn remaining(&self) -> f64 {
        (self.spec.work_executor_seconds - self.work_done).max(0.0)
    }

    /// When the work will be done at the current rate (call after `advance`).
    pub fn completion_ms(&self, now_ms: u64) -> Option<u64> {
        let rate = self.rate();
        if rate <= 0.0 {
            return None;
        }
        let ms = (self.remaining() / rate * 1000.0).ceil();
        Some(now_ms.saturating_add(ms as u64))
    }

    /// Whether the work is done (within one millisecond of work at the current rate).
    pub fn is_done(&self) -> bool {
        self.remaining() <= self.rate() * 1e-3 + 1e-9
    }

    /// An executor started; call `advance(now)` first.
    pub fn executor_started(&mut self, n: u32, now_ms: u64, spot: bool) {
        self.pending.remove(&n);
        self.running.insert(
            n,
            RunningExecutor {
                started_ms: now_ms,
                spot,
            },
        );
        self.peak_executors = self.peak_executors.max(self.running.len());
        self.sample_share(now_ms);
    }

    /// A running executor was lost: the work it did is lost with it and must be redone.
    /// Returns the executor-seconds lost (None when it was not running).
    pub fn executor_lost(&mut self, n: u32, now_ms: u64) -> Option<f64> {
        self.pending.remove(&n);
        let e = self.running.remove(&n)?;
        let did = now_ms.saturating_sub(e.started_ms) as f64 / 1000.0;
        // Never more than the application has done (work before a restart is gone already).
        let lost = did.min(self.work_done);
        self.work_done -= lost;
        self.sample_share(now_ms);
        Some(lost)
    }

    /// An executor finished with the application (no work lost).
    pub fn executor_finished(&mut self, n: u32, now_ms: u64) {
        self.pending.remove(&n);
        if self.running.remove(&n).is_some() {
            self.sample_share(now_ms);
        }
    }

    /// Starts a new attempt after the driver was lost: all progress is gone.
    pub fn restart(&mut self, now_ms: u64) {
        self.attempt += 1;
        self.phase = AppPhase::Starting;
        self.driver_running = false;
        self.work_done = 0.0;
        self.last_update_ms = now_ms;
        self.running.clear();
        self.pending.clear();
        self.epoch += 1;
        self.sample_share(now_ms);
    }

    pub fn spot_share(&self) -> Option<f64> {
        let n = self.running.len();
        (n > 0).then(|| self.running.values().filter(|e| e.spot).count() as f64 / n as f64)
    }

    /// (spot executors, executors) running, when any run.
    fn running_counts(&self) -> Option<(usize, usize)> {
        let n = self.running.len();
        (n > 0).then(|| (self.running.values().filter(|e| e.spot).count(), n))
    }

    fn sample_share(&mut self, now_ms: u64) {
        let counts = self.running_counts();
        self.share
            .sample(now_ms, counts, self.spec.target_spot_share);
    }

    /// Closes the open share interval at the end of the simulation.
    pub fn finish_share(&mut self, now_ms: u64) {
        let counts = self.running_counts();
        self.share
            .sample(now_ms, counts, self.spec.target_spot_share);
    }
}

/// The closest any placement of `n` executors can come to `target`: min over k of |k/n − target|.
pub fn share_floor(n: usize, target: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n_f = n as f64;
    let k = (target * n_f).floor();
    let below = (k / n_f - target).abs();
    let above = ((k + 1.0).min(n_f) / n_f - target).abs();
    below.min(above)
}

/// Time-weighted |actual − target| spot share of one application, sampled at every change of
/// its executor set, and the same weighting of the floor its executor counts allow. Time with
/// no running executors carries no weight (there is no share).
#[derive(Debug, Clone, Default)]
pub struct ShareTracker {
    since_ms: u64,
    /// The current share, its error and its floor, while executors run.
    current: Option<(f64, f64, f64)>,
    pub weighted_error: f64,
    /// ∫ floor dt: the error no placement of the running executors could avoid.
    pub weighted_floor: f64,
    pub weight_seconds: f64,
    /// (time, share) at each change, for charts; None = no executors.
    pub series: Vec<(u64, Option<f64>)>,
}

impl ShareTracker {
    /// `counts`: (spot executors, executors) running, None when none run.
    fn sample(&mut self, now_ms: u64, counts: Option<(usize, usize)>, target: Option<f64>) {
        if let Some((_, err, floor)) = self.current {
            let dt = now_ms.saturating_sub(self.since_ms) as f64 / 1000.0;
            self.weighted_error += err * dt;
            self.weighted_floor += floor * dt;
            self.weight_seconds += dt;
        }
        self.since_ms = now_ms;
        let share = counts.map(|(spot, n)| spot as f64 / n as f64);
        self.current = match (counts, share, target) {
            (Some((_, n)), Some(s), Some(t)) => Some((s, (s - t).abs(), share_floor(n, t))),
            _ => None,
        };
        // Several changes at one instant (executors starting together) chart as one point.
        if let Some(last) = self.series.last_mut().filter(|l| l.0 == now_ms) {
            last.1 = share;
            let n = self.series.len();
            if n >= 2 && self.series[n - 2].1 == share {
                self.series.pop();
            }
        } else if self.series.last().map(|x| x.1) != Some(share) {
            self.series.push((now_ms, share));
        }
    }
}

/// Used by the engine to name symbols once.
pub fn app_sym(spec: &AppSpec) -> Sym {
    Sym::new(&spec.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(executors: u32, min_running: u32, work: f64) -> Arc<AppSpec> {
        Arc::new(AppSpec {
            id: "a".into(),
            namespace: "ns".into(),
            driver_requests: Resources::default(),
            executor_requests: crate::testkit::res(1500, 3 << 30),
            driver_priority: 0,
            executor_priority: 0,
            executors,
            min_running,
            work_executor_seconds: work,
            annotations: Vec::new(),
            labels: Vec::new(),
            target_spot_share: Some(0.5),
            executor_claim: None,
        })
    }

    #[test]
    fn work_rate_follows_running_executors_and_lost_work_is_redone() {
        let mut a = App::new(spec(2, 1, 100.0), 0);
        a.driver_running = true;
        assert_eq!(a.rate(), 0.0, "no executors yet");
        a.executor_started(1, 0, true);
        a.executor_started(2, 0, false);
        a.advance(10_000);
        assert_eq!(a.work_done, 20.0);
        assert_eq!(a.completion_ms(10_000), Some(50_000));
        // Executor 1 is lost after 10 s: its 10 executor-seconds go.
        assert_eq!(a.executor_lost(1, 10_000), Some(10.0));
        assert_eq!(a.executor_lost(1, 10_000), None);
        assert_eq!(a.work_done, 10.0);
        assert_eq!(a.completion_ms(10_000), Some(100_000));
    }

    #[test]
    fn dynamic_allocation_needs_min_executors() {
        let mut a = App::new(spec(4, 2, 10.0), 0);
        a.driver_running = true;
        a.executor_started(1, 0, true);
        assert_eq!(a.rate(), 0.0);
        a.executor_started(2, 0, true);
        assert_eq!(a.rate(), 2.0);
    }

    #[test]
    fn share_error_is_time_weighted_over_time_with_executors() {
        let mut a = App::new(spec(2, 1, 100.0), 0);
        a.driver_running = true;
        a.executor_started(1, 0, true); // share 1.0, error 0.5 for 10 s
        a.executor_started(2, 10_000, false); // share 0.5, error 0 for 30 s
        a.executor_finished(1, 40_000);
        a.executor_finished(2, 40_000);
        a.finish_share(100_000); // no executors: no weight
        assert_eq!(a.share.weight_seconds, 40.0);
        // One chart point per instant: the two finishes at 40 s leave a single "no executors".
        assert_eq!(
            a.share.series,
            vec![(0, Some(1.0)), (10_000, Some(0.5)), (40_000, None)]
        );
        assert_eq!(a.share.weighted_error / a.share.weight_seconds, 5.0 / 40.0);
        // One executor cannot come closer to 0.5 than 0.5; two can hit it.
        assert_eq!(a.share.weighted_floor, 0.5 * 10.0);
    }

    #[test]
    fn share_floor_is_the_closest_count() {
        // The example: 3 executors, 40%: 1/3 is 0.067 away.
        assert!((share_floor(3, 0.4) - 0.066_666_666).abs() < 1e-6);
        assert_eq!(share_floor(5, 0.4), 0.0);
        assert!((share_floor(1, 0.7) - 0.3).abs() < 1e-12);
        assert_eq!(share_floor(4, 1.0), 0.0);
        assert_eq!(share_floor(4, 0.0), 0.0);
        assert_eq!(share_floor(0, 0.4), 0.0);
    }

    #[test]
    fn target_share_from_annotation_then_config() {
        let mut cfg = Config::default();
        let mut ann = BTreeMap::new();
        assert_eq!(target_spot_share(&cfg, "ns", &ann), None);
        cfg.spark.executor_capacity_mix = Some("spot=1,on-demand=3".into());
        assert_eq!(target_spot_share(&cfg, "ns", &ann), Some(0.25));
        ann.insert(
            annotations::EXECUTOR_CAPACITY_MIX.to_owned(),
            "spot=70,on-demand=30".into(),
        );
        assert_eq!(target_spot_share(&cfg, "ns", &ann), Some(0.7));
        ann.insert(
            annotations::EXECUTOR_CAPACITY_MIX.to_owned(),
            "nonsense".into(),
        );
        assert_eq!(target_spot_share(&cfg, "ns", &ann), None);
    }

    #[test]
    fn pods_carry_spark_identity_and_deterministic_names() {
        let s = spec(2, 1, 1.0);
        let d = s.driver_pod(1, 5_000, "spark-fleet");
        assert_eq!(d.key.name, "a-driver");
        assert_ne!(d.uid, s.driver_pod(0, 0, "x").uid, "attempts differ by uid");
        assert!(d.is_driver());
        assert_eq!(d.created_ms, 5_000);
        let declared = d.annotation(annotations::EXECUTOR_RESOURCES).unwrap();
        assert_eq!(
            annotations::parse_resources(declared).unwrap(),
            s.executor_requests
        );
        let e = s.executor_pod(3, 0, "spark-fleet");
        assert_eq!(e.key.name, "a-exec-3");
        assert!(e.is_executor());
        assert_eq!(e.spark.unwrap().app.as_str(), "a");
    }
}
