//! Synthetic Spark workload generator. Every distribution is documented in
//! `simulations/README.md`; the numbers below are the model, named where they are used.
//!
//! All randomness comes from one ChaCha8 stream seeded with [`GenerateParams::seed`] and drawn in
//! a fixed order, and floating-point values are rounded before they are written, so a seed
//! always produces a byte-identical trace.

use super::csv_import::zone_name;
use super::{AppSubmit, ResourceList};
use super::{
    DynamicAllocation, Event, NodeAdd, PodSubmit, RoleSpec, SpotInterruption, SpotInterruptionRate,
    StringMap, TimedEvent, Trace, TraceError, TraceHeader, ANNOTATION_CAPACITY_MIX,
    CAPACITY_ON_DEMAND, CAPACITY_SPOT, DEFAULT_SCHEDULER_NAME, LABEL_CAPACITY_TYPE,
};
use crate::model::{LABEL_HOSTNAME, LABEL_ZONE};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Driver-pod annotation marking the capacity mix as a hard constraint (value `hard`); without
/// it the mix is a preference.
pub const ANNOTATION_CAPACITY_MIX_MODE: &str = crate::spark::annotations::CAPACITY_MIX_MODE;
pub const LABEL_INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const DRIVER_PRIORITY: i32 = 100_000;
pub const EXECUTOR_PRIORITY: i32 = 50_000;
/// Hours in the month that `monthly_interruption_rate` refers to.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Spot price as a fraction of on-demand.
pub const SPOT_PRICE_RATIO: f64 = 0.35;
/// On-demand $/vCPU-hour of the 4 GiB-per-vCPU general-purpose shapes (m5-like list price).
pub const PRICE_PER_VCPU_HOUR: f64 = 0.048;

/// Node vCPU counts, repeated in this order over node indexes: 30% 8, 50% 16, 20% 32 vCPU.
const SHAPE_PATTERN: [u32; 10] = [16, 8, 16, 32, 16, 8, 16, 32, 16, 8];
/// Executor cores and their weights.
const EXECUTOR_CORES: [(u32, f64); 4] = [(1, 0.2), (2, 0.35), (4, 0.35), (8, 0.1)];
/// Executor GiB per core and their weights.
const EXECUTOR_GIB_PER_CORE: [(u32, f64); 4] = [(2, 0.25), (4, 0.4), (6, 0.2), (8, 0.15)];
/// Driver cores and their weights (4 GiB per driver core).
const DRIVER_CORES: [(u32, f64); 2] = [(1, 0.7), (2, 0.3)];
/// Capacity mixes of apps that carry the annotation, and their weights.
const CAPACITY_MIXES: [(&str, f64); 5] = [
    ("spot=40,on-demand=60", 0.4),
    ("spot=70,on-demand=30", 0.2),
    ("spot=50,on-demand=50", 0.15),
    ("spot=20,on-demand=80", 0.15),
    ("spot=0,on-demand=100", 0.1),
];
/// Share of apps with a capacity-mix annotation, and of those, the share marked hard.
const MIX_ANNOTATED: f64 = 0.85;
const MIX_HARD: f64 = 0.2;
/// Executor count: discrete Pareto `floor(2 · U^(-1/α))` clamped to 2..=200.
const EXECUTOR_PARETO_ALPHA: f64 = 1.2;
const EXECUTORS_MIN: u32 = 2;
const EXECUTORS_MAX: u32 = 200;
/// App run time at full executor count: log-uniform between 5 minutes and 1 hour.
const RUNTIME_SECONDS: (f64, f64) = (300.0, 3600.0);
/// Scheduled apps start within this many seconds after the top of their hour.
const BURST_JITTER_SECONDS: f64 = 120.0;

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Trace name for the header.
    pub name: Option<String>,
    pub apps: usize,
    pub nodes: usize,
    pub seed: u64,
    /// Fraction of initial nodes that are spot, in [0, 1].
    pub spot_fraction: f64,
    /// Expected interruptions per spot node per month (730 h); 0.05 is the "<5%" band of
    /// cloud spot advisors.
    pub monthly_interruption_rate: f64,
    /// Length of the arrival window; nothing is generated after it.
    pub duration_hours: f64,
    pub zones: u32,
    /// Share of apps that are scheduled jobs arriving in top-of-hour bursts; the rest arrive
    /// as a Poisson process over the whole window.
    pub scheduled_fraction: f64,
    /// Share of apps using dynamic allocation.
    pub dynamic_fraction: f64,
    /// Plain pods of other tenants.
    pub other_pods: usize,
    pub notice_seconds: f64,
    /// An interrupted spot node is replaced by a fresh spot node of the same shape and zone
    /// this long after it terminates; `None`: no replacement.
    pub replacement_delay_seconds: Option<f64>,
    /// Interruptions per node-month of the spot nodes the simulator's autoscaler launches
    /// (a `spot_interruption_rate` event at t = 0); `None`: the configured rates.
    pub spot_interruption_rate: Option<f64>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            name: None,
            apps: 60,
            nodes: 40,
            seed: 7,
            spot_fraction: 0.5,
            monthly_interruption_rate: 0.05,
            duration_hours: 4.0,
            zones: 3,
            scheduled_fraction: 0.4,
            dynamic_fraction: 0.25,
            other_pods: 8,
            notice_seconds: super::DEFAULT_NOTICE_SECONDS,
            replacement_delay_seconds: Some(90.0),
            spot_interruption_rate: None,
        }
    }
}

impl GenerateParams {
    fn check(&self) -> Result<(), TraceError> {
        let fraction = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(TraceError::Options(format!("{name} {v} is not in [0, 1]")))
            }
        };
        fraction("spot_fraction", self.spot_fraction)?;
        fraction("scheduled_fraction", self.scheduled_fraction)?;
        fraction("dynamic_fraction", self.dynamic_fraction)?;
        let non_negative = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(TraceError::Options(format!(
                    "{name} {v} must be finite and >= 0"
                )))
            }
        };
        non_negative("monthly_interruption_rate", self.monthly_interruption_rate)?;
        non_negative(
            "spot_interruption_rate",
            self.spot_interruption_rate.unwrap_or(0.0),
        )?;
        non_negative("notice_seconds", self.notice_seconds)?;
        non_negative(
            "replacement_delay_seconds",
            self.replacement_delay_seconds.unwrap_or(0.0),
        )?;
        if !(self.duration_hours.is_finite() && self.duration_hours > 0.0) {
            return Err(TraceError::Options(format!(
                "duration_hours {} must be > 0",
                self.duration_hours
            )));
        }
        if !(1..=26).contains(&self.zones) {
            return Err(TraceError::Options(format!(
                "zones {} is not in 1..=26",
                self.zones
            )));
        }
        Ok(())
    }

    /// The command line that reproduces this trace, for the header's `source`.
    pub fn describe(&self) -> String {
        let rate = self
            .spot_interruption_rate
            .map(|r| format!(" --spot-interruption-rate {r}"))
            .unwrap_or_default();
        format!(
            "spark-fleet trace generate --apps {} --nodes {} --seed {} --spot-fraction {} \
             --monthly-interruption-rate {} --duration-hours {} --zones {} --scheduled-fraction {} \
             --dynamic-fraction {} --other-pods {}{rate}",
            self.apps,
            self.nodes,
            self.seed,
            self.spot_fraction,
            self.monthly_interruption_rate,
            self.duration_hours,
            self.zones,
            self.scheduled_fraction,
            self.dynamic_fraction,
            self.other_pods
        )
    }
}

/// Seeded draws from a ChaCha8 stream, using only `next_u64` so the mapping from seed to
/// values does not depend on a `rand` version's distribution code.
pub(super) struct Sampler {
    rng: ChaCha8Rng,
}

impl Sampler {
    pub(super) fn new(seed: u64) -> Sampler {
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Uniform in [0, 1), 53 random bits.
    pub(super) fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform index in 0..n (n > 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }

    /// A uniformly random permutation of 0..n (Fisher–Yates).
    pub(super) fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i + 1);
            p.swap(i, j);
        }
        p
    }

    /// Exponential with the given rate (mean 1/rate).
    pub(super) fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.uniform()).ln() / rate
    }

    pub(super) fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.uniform() * (hi.ln() - lo.ln())).exp()
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    pub(super) fn weighted<T: Copy>(&mut self, items: &[(T, f64)]) -> T {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.uniform() * total;
        for &(item, w) in items {
            if x < w {
                return item;
            }
            x -= w;
        }
        items[items.len() - 1].0
    }
}

fn millis(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn cents(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn resources(cpu: &str, memory: &str) -> ResourceList {
    let mut r = ResourceList::new();
    r.insert("cpu".into(), cpu.into());
    r.insert("memory".into(), memory.into());
    r
}

struct NodeShape {
    vcpu: u32,
    zone: String,
    spot: bool,
}

fn node_add(name: &str, shape: &NodeShape) -> NodeAdd {
    let mut labels = StringMap::new();
    labels.insert(LABEL_HOSTNAME.into(), name.into());
    labels.insert(LABEL_ZONE.into(), shape.zone.clone());
    let capacity = if shape.spot {
        CAPACITY_SPOT
    } else {
        CAPACITY_ON_DEMAND
    };
    labels.insert(LABEL_CAPACITY_TYPE.into(), capacity.into());
    labels.insert(
        LABEL_INSTANCE_TYPE.into(),
        format!("m5.{}xlarge", shape.vcpu / 4),
    );
    // Allocatable keeps back 100m CPU and 1 GiB for the system, as kubelet reservations do.
    let mut allocatable = resources(
        &format!("{}m", shape.vcpu * 1000 - 100),
        &format!("{}Gi", shape.vcpu * 4 - 1),
    );
    allocatable.insert("pods".into(), "110".into());
    let on_demand = shape.vcpu as f64 * PRICE_PER_VCPU_HOUR;
    let price = if shape.spot {
        on_demand * SPOT_PRICE_RATIO
    } else {
        on_demand
    };
    NodeAdd {
        name: name.into(),
        labels,
        allocatable,
        taints: Vec::new(),
        price_per_hour: Some(cents(price)),
        gpu: None,
        volume_limits: Default::default(),
    }
}

/// Generates a synthetic Spark trace; the same parameters give the same trace.
pub fn generate(params: &GenerateParams) -> Result<Trace, TraceError> {
    params.check()?;
    let mut rng = Sampler::new(params.seed);
    let horizon = params.duration_hours * 3600.0;
    let mut events: Vec<TimedEvent> = Vec::new();
    if let Some(per_month) = params.spot_interruption_rate {
        events.push(TimedEvent {
            t: 0.0,
            event: Event::SpotInterruptionRate(SpotInterruptionRate {
                per_month,
                instance_types: Vec::new(),
            }),
        });
    }

    // Nodes: shapes by pattern, zones round-robin, spot chosen by a seeded shuffle.
    let spot_count = (params.nodes as f64 * params.spot_fraction).round() as usize;
    let mut spot = vec![false; params.nodes];
    for &i in rng.permutation(params.nodes).iter().take(spot_count) {
        spot[i] = true;
    }
    let shapes: Vec<NodeShape> = (0..params.nodes)
        .map(|i| NodeShape {
            vcpu: SHAPE_PATTERN[i % SHAPE_PATTERN.len()],
            zone: zone_name(i as u32 % params.zones),
            spot: spot[i],
        })
        .collect();
    for (i, shape) in shapes.iter().enumerate() {
        events.push(TimedEvent {
            t: 0.0,
            event: Event::NodeAdd(node_add(&format!("node-{i:03}"), shape)),
        });
    }

    // Spot interruptions: a Poisson process per spot node (and per replacement).
    let rate_per_second = params.monthly_interruption_rate / (HOURS_PER_MONTH * 3600.0);
    if rate_per_second > 0.0 {
        for (i, shape) in shapes.iter().enumerate().filter(|(_, s)| s.spot) {
            let mut name = format!("node-{i:03}");
            let mut since = 0.0;
            for generation in 1.. {
                let at = millis(since + rng.exponential(rate_per_second));
                if at >= horizon {
                    break;
                }
                events.push(TimedEvent {
                    t: at,
                    event: Event::SpotInterruption(SpotInterruption {
                        node: name.clone(),
                        notice_seconds: params.notice_seconds,
                    }),
                });
                let Some(delay) = params.replacement_delay_seconds else {
                    break;
                };
                since = millis(at + params.notice_seconds + delay);
                if since >= horizon {
                    break;
                }
                name = format!("node-{i:03}-r{generation}");
                events.push(TimedEvent {
                    t: since,
                    event: Event::NodeAdd(node_add(&name, shape)),
                });
            }
        }
    }

    // Applications: arrival time first, then shape; ids follow arrival order.
    let scheduled = (params.apps as f64 * params.scheduled_fraction).round() as usize;
    let bursts = (params.duration_hours.ceil() as usize).max(1);
    let mut apps: Vec<(f64, AppSubmit)> = Vec::with_capacity(params.apps);
    for k in 0..params.apps {
        let is_scheduled = k < scheduled;
        let t = if is_scheduled {
            let hour = rng.below(bursts) as f64;
            (hour * 3600.0 + rng.uniform() * BURST_JITTER_SECONDS).min(horizon)
        } else {
            rng.uniform() * horizon
        };
        apps.push((millis(t), draw_app(&mut rng, params, is_scheduled)));
    }
    apps.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (k, (t, mut app)) in apps.into_iter().enumerate() {
        app.id = format!("{}-{k:04}", app.namespace);
        events.push(TimedEvent {
            t,
            event: Event::AppSubmit(app),
        });
    }

    for k in 0..params.other_pods {
        let t = millis(rng.uniform() * horizon);
        let service = rng.chance(0.5);
        let cpu = rng.weighted(&[("250m", 0.3), ("500m", 0.3), ("1", 0.25), ("2", 0.15)]);
        let memory = rng.weighted(&[("512Mi", 0.3), ("1Gi", 0.3), ("2Gi", 0.25), ("4Gi", 0.15)]);
        let (namespace, name, priority, duration) = if service {
            ("tenant-web", format!("web-{k:03}"), 1000, None)
        } else {
            let d = rng.log_uniform(60.0, 1800.0).round();
            ("tenant-batch", format!("batch-{k:03}"), 0, Some(d))
        };
        let mut labels = StringMap::new();
        labels.insert("app".into(), namespace.into());
        events.push(TimedEvent {
            t,
            event: Event::PodSubmit(PodSubmit {
                name,
                namespace: namespace.into(),
                requests: resources(cpu, memory),
                priority,
                duration_seconds: duration,
                labels,
                node_selector: StringMap::new(),
                tolerations: Vec::new(),
                annotations: StringMap::new(),
                required_node_affinity: Vec::new(),
                scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
                gpu: None,
                claims: Vec::new(),
            }),
        });
    }

    // Stable: same-time events keep the order above (nodes before apps before pods).
    events.sort_by(|a, b| a.t.total_cmp(&b.t));
    let trace = Trace {
        header: TraceHeader::new(
            Some(params.name.clone().unwrap_or_else(|| "generated".into())),
            Some(params.describe()),
            Some(params.seed),
        ),
        events,
    };
    trace.validate()?;
    Ok(trace)
}

fn draw_app(rng: &mut Sampler, params: &GenerateParams, scheduled: bool) -> AppSubmit {
    let u = 1.0 - rng.uniform();
    let n = ((EXECUTORS_MIN as f64) * u.powf(-1.0 / EXECUTOR_PARETO_ALPHA)).floor();
    let n = (n.min(EXECUTORS_MAX as f64) as u32).max(EXECUTORS_MIN);
    let dynamic = rng.chance(params.dynamic_fraction);
    let cores = rng.weighted(&EXECUTOR_CORES);
    let gib_per_core = rng.weighted(&EXECUTOR_GIB_PER_CORE);
    let driver_cores = rng.weighted(&DRIVER_CORES);
    let runtime = rng.log_uniform(RUNTIME_SECONDS.0, RUNTIME_SECONDS.1);
    let mut annotations = StringMap::new();
    if rng.chance(MIX_ANNOTATED) {
        annotations.insert(
            ANNOTATION_CAPACITY_MIX.into(),
            rng.weighted(&CAPACITY_MIXES).into(),
        );
        if rng.chance(MIX_HARD) {
            annotations.insert(ANNOTATION_CAPACITY_MIX_MODE.into(), "hard".into());
        }
    }
    let namespace = if scheduled { "etl" } else { "analytics" };
    let mut labels = StringMap::new();
    labels.insert("team".into(), namespace.into());
    AppSubmit {
        id: String::new(),
        namespace: namespace.into(),
        driver: RoleSpec {
            requests: resources(
                &driver_cores.to_string(),
                &format!("{}Gi", driver_cores * 4),
            ),
            priority: DRIVER_PRIORITY,
        },
        executor: RoleSpec {
            requests: resources(&cores.to_string(), &format!("{}Gi", cores * gib_per_core)),
            priority: EXECUTOR_PRIORITY,
        },
        executors: (!dynamic).then_some(n),
        dynamic: dynamic.then(|| DynamicAllocation {
            min: (n / 4).max(1),
            max: n,
        }),
        work_executor_seconds: (runtime * n as f64).round(),
        annotations,
        labels,
        executor_claim: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_shapes() {
        let mut s = Sampler::new(3);
        let p = s.permutation(50);
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(p, sorted, "a 50-element shuffle left everything in place");
        let n = 20_000;
        let mean = (0..n).map(|_| s.exponential(2.0)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        let picks = (0..n)
            .filter(|_| s.weighted(&[(true, 0.25), (false, 0.75)]))
            .count();
        assert!((picks as f64 / n as f64 - 0.25).abs() < 0.02);
        for _ in 0..1000 {
            let x = s.log_uniform(300.0, 3600.0);
            assert!((300.0..=3600.0).contains(&x));
        }
    }

    #[test]
    fn rejects_bad_params() {
        for p in [
            GenerateParams {
                spot_fraction: -0.1,
                ..Default::default()
            },
            GenerateParams {
                duration_hours: 0.0,
                ..Default::default()
            },
            GenerateParams {
                zones: 0,
                ..Default::default()
            },
        ] {
            assert!(matches!(generate(&p), Err(TraceError::Options(_))), "{p:?}");
        }
    }
}
