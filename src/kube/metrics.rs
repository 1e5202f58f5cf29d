//! Prometheus metrics (exact names are part of the interface: dashboards use them).
//!
//! One process-wide recorder; its handle renders `/metrics`. Several schedulers in
//! one process (tests) share it.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const SCHEDULE_ATTEMPTS: &str = "spark_fleet_schedule_attempts_total";
pub const ALGORITHM_DURATION: &str = "spark_fleet_scheduling_algorithm_duration_seconds";
pub const E2E_DURATION: &str = "spark_fleet_e2e_scheduling_duration_seconds";
pub const PENDING_PODS: &str = "spark_fleet_pending_pods";
pub const BINDS: &str = "spark_fleet_binds_total";
pub const PREEMPTION_VICTIMS: &str = "spark_fleet_preemption_victims_total";
pub const CAPACITY_FALLBACKS: &str = "spark_fleet_capacity_fallbacks_total";
pub const CAPACITY_MIX_DEVIATION: &str = "spark_fleet_app_capacity_mix_deviation";
pub const LEADER: &str = "spark_fleet_leader";

/// Upstream's scheduling-duration buckets (1 ms doubling to ~16 s).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];
/// Admission reviews: 100 µs doubling to ~0.8 s (the webhook's timeout is 2 s).
const ADMISSION_BUCKETS: &[f64] = &[
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192,
];
const E2E_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus handle, installing the recorder on first use.
/// None if another recorder was installed first (metrics then go there).
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(ALGORITHM_DURATION.into()), DURATION_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(E2E_DURATION.into()), E2E_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(crate::admission::server::ADMISSION_DURATION.into()),
                        ADMISSION_BUCKETS,
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics buckets rejected");
                    PrometheusBuilder::new().build_recorder()
                }
            };
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder was already installed");
                    None
                }
            }
        })
        .clone()
}

/// Registers the counters and gauges at zero so `/metrics` lists them before the first
/// event (histograms appear with their first observation).
pub fn describe() {
    for result in ["scheduled", "unschedulable", "error"] {
        metrics::counter!(SCHEDULE_ATTEMPTS, "result" => result).increment(0);
    }
    for queue in ["active", "backoff", "unschedulable"] {
        metrics::gauge!(PENDING_PODS, "queue" => queue).set(0.0);
    }
    metrics::counter!(CAPACITY_FALLBACKS).increment(0);
    metrics::gauge!(CAPACITY_MIX_DEVIATION).set(0.0);
    metrics::gauge!(LEADER).set(0.0);
    metrics::counter!(BINDS, "role" => "none", "capacity_type" => "on-demand").increment(0);
    metrics::counter!(PREEMPTION_VICTIMS, "role" => "none").increment(0);
}

pub fn record_pending(counts: crate::queue::PendingCounts) {
    metrics::gauge!(PENDING_PODS, "queue" => "active").set(counts.active as f64);
    metrics::gauge!(PENDING_PODS, "queue" => "backoff").set(counts.backoff as f64);
    metrics::gauge!(PENDING_PODS, "queue" => "unschedulable").set(counts.unschedulable as f64);
}

/// `driver`, `executor` or `none`: the Spark role label.
pub fn role_label(pod: &crate::model::Pod) -> &'static str {
    if pod.is_driver() {
        "driver"
    } else if pod.is_executor() {
        "executor"
    } else {
        "none"
    }
}

/// Mean over applications with an executor mix and placed executors of
/// |spot share − spot target|. The application is read through its driver when placed
/// (else one executor, which the mix status then leaves out of the counts).
pub fn capacity_mix_deviation(
    config: &crate::config::Config,
    snap: &crate::snapshot::Snapshot,
) -> f64 {
    use crate::model::capacity::SPOT;
    let mut sum = 0.0;
    let mut apps = 0u32;
    for (_, app) in snap.apps() {
        let Some(id) = app.driver.or_else(|| app.executors.iter().next().copied()) else {
            continue;
        };
        let Some(entry) = snap.pod(id) else { continue };
        let Some(mix) = crate::plugins::capacity_mix::mix_status(config, &entry.pod, snap) else {
            continue;
        };
        let weights: u32 = mix.target.iter().map(|t| t.1).sum();
        let placed: u32 = mix.current.iter().map(|c| c.1).sum();
        if weights == 0 || placed == 0 {
            continue;
        }
        let of = |v: &[(String, u32)]| v.iter().filter(|e| e.0 == SPOT).map(|e| e.1).sum::<u32>();
        let target = f64::from(of(&mix.target)) / f64::from(weights);
        let share = f64::from(of(&mix.current)) / f64::from(placed);
        sum += (share - target).abs();
        apps += 1;
    }
    if apps == 0 {
        0.0
    } else {
        sum / f64::from(apps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::snapshot::Snapshot;
    use crate::testkit::{node, pod, GI};

    #[test]
    fn mix_deviation_is_the_mean_over_apps_with_executors() {
        let mut config = Config::default();
        config.spark.executor_capacity_mix = Some("spot=50,on-demand=50".into());
        let mut snap = Snapshot::new(config.capacity_types.clone());
        snap.upsert_node(node("spot1", 64_000, 64 * GI).spot().build());
        snap.upsert_node(node("od1", 64_000, 64 * GI).on_demand().build());
        assert_eq!(capacity_mix_deviation(&config, &snap), 0.0, "no apps");
        let place = |snap: &mut Snapshot, p: crate::testkit::PodBuilder| {
            snap.upsert_pod(p.arc()).unwrap();
        };
        // a: all 4 executors on spot against a 50% target → 0.5.
        place(&mut snap, pod("a-driver", 1000, GI).driver("a").on("od1"));
        for i in 0..4 {
            place(
                &mut snap,
                pod(&format!("a-exec-{i}"), 1000, GI)
                    .executor("a")
                    .on("spot1"),
            );
        }
        // b: one of each → 0.
        place(&mut snap, pod("b-driver", 1000, GI).driver("b").on("od1"));
        place(
            &mut snap,
            pod("b-exec-0", 1000, GI).executor("b").on("spot1"),
        );
        place(&mut snap, pod("b-exec-1", 1000, GI).executor("b").on("od1"));
        // c: a driver without executors is left out.
        place(&mut snap, pod("c-driver", 1000, GI).driver("c").on("od1"));
        let d = capacity_mix_deviation(&config, &snap);
        assert!((d - 0.25).abs() < 1e-9, "{d}");
    }
}
