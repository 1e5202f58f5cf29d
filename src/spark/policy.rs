//! Which Spark rules apply to a pod: its application's executor capacity mix and
//! mode, the driver's allowed capacity types, driver admission's minimum executors
//! and executor size.
//!
//! Precedence, per setting: the pod's own annotation, then (for executors) the
//! annotation on its application's driver, then the namespace defaults
//! (`spark.namespaces[ns]`), then the cluster defaults (`spark.*`). A bad value
//! anywhere on that path is an error naming the annotation (or config field) and
//! the value; it is never skipped in favour of the next source.

use super::annotations::{self, AnnotationError};
use crate::config::{Config, MixMode, NamespaceSparkDefaults};
use crate::model::{Pod, Resources, Sym};
use crate::snapshot::{AppPods, Snapshot};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    #[error("invalid annotation {annotation} {value:?}: {source}{inherited}")]
    Annotation {
        annotation: &'static str,
        value: String,
        source: AnnotationError,
        /// Empty when on the pod itself, else ` (inherited from driver ns/name)`.
        inherited: String,
    },
    #[error("invalid config {field} {value:?}: {source}")]
    Config {
        field: String,
        value: String,
        source: AnnotationError,
    },
}

/// An application's executor capacity mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// (capacity type, weight) in the order written; the total is > 0.
    pub weights: Vec<(Sym, u32)>,
    pub mode: MixMode,
}

impl Mix {
    fn total_weight(&self) -> i64 {
        self.weights.iter().map(|(_, w)| *w as i64).sum()
    }

    /// Mix types ordered by deficit for the next executor, largest first (ties in
    /// the order written). `placed` counts the application's placed executors by
    /// type; `total` is all of them, including ones on types outside the mix.
    ///
    /// The deficit of type t is target_t − c_t with target_t = w_t/W·(total+1);
    /// compared as w_t·(total+1) − c_t·W to stay in integers.
    pub fn ranking(&self, placed: impl Fn(Sym) -> u32, total: u32) -> Vec<(Sym, i64)> {
        let w_all = self.total_weight();
        let after = total as i64 + 1;
        let mut ranked: Vec<(Sym, i64)> = self
            .weights
            .iter()
            .map(|&(t, w)| (t, w as i64 * after - placed(t) as i64 * w_all))
            .collect();
        // Stable sort keeps the written order among equal deficits.
        ranked.sort_by_key(|e| std::cmp::Reverse(e.1));
        ranked
    }

    /// The type the next executor should go to (None only for a mix without types,
    /// which the parsers never produce).
    pub fn next_type(&self, placed: impl Fn(Sym) -> u32, total: u32) -> Option<Sym> {
        self.ranking(placed, total).first().map(|e| e.0)
    }

    /// Per-type executor counts the mix asks for when `n` more executors are placed
    /// on top of `placed`, following the same greedy rule one executor at a time.
    pub fn plan(&self, placed: &[(Sym, u32)], n: u32) -> Vec<(Sym, u32)> {
        let mut counts: Vec<(Sym, u32)> = placed.to_vec();
        let mut added: Vec<(Sym, u32)> = self.weights.iter().map(|&(t, _)| (t, 0)).collect();
        let count_of = |c: &[(Sym, u32)], t: Sym| c.iter().find(|e| e.0 == t).map_or(0, |e| e.1);
        for _ in 0..n {
            let total: u32 = counts.iter().map(|e| e.1).sum();
            let Some(t) = self.next_type(|t| count_of(&counts, t), total) else {
                break;
            };
            match counts.iter_mut().find(|e| e.0 == t) {
                Some(e) => e.1 += 1,
                None => counts.push((t, 1)),
            }
            if let Some(e) = added.iter_mut().find(|e| e.0 == t) {
                e.1 += 1;
            }
        }
        added
    }
}

/// Placed executors of an application by type, and their total. With `exclude`,
/// that pod is left out (callers asking about a pod already assumed).
pub fn executor_counts(snap: &Snapshot, app: &AppPods, exclude: Option<&Pod>) -> Vec<(Sym, u32)> {
    let mut counts = app.executors_by_type.clone();
    if let Some(entry) = exclude.and_then(|p| snap.pod_by_key(&p.key)) {
        if entry.pod.is_executor() && !entry.pod.terminating {
            let ty = snap.nodes().capacity_type[entry.node as usize];
            if let Some(e) = counts.iter_mut().find(|e| e.0 == ty) {
                e.1 = e.1.saturating_sub(1);
            }
        }
    }
    counts
}

/// Placed executors of `pod`'s application by capacity type (the pod itself left
/// out), with their total: what the mix rule counts against.
pub struct PlacedExecutors {
    pub by_type: Vec<(Sym, u32)>,
    pub total: u32,
}

impl PlacedExecutors {
    pub fn of_app(snap: &Snapshot, pod: &Pod) -> PlacedExecutors {
        let by_type = pod
            .spark
            .as_ref()
            .and_then(|sp| snap.app(sp.app))
            .map(|a| executor_counts(snap, a, Some(pod)))
            .unwrap_or_default();
        let total = by_type.iter().map(|e| e.1).sum();
        PlacedExecutors { by_type, total }
    }

    pub fn of(&self, ty: Sym) -> u32 {
        self.by_type.iter().find(|e| e.0 == ty).map_or(0, |e| e.1)
    }
}

/// Where a pod's Spark settings come from.
struct Sources<'a> {
    own: &'a Pod,
    driver: Option<&'a Pod>,
    namespace: Option<&'a NamespaceSparkDefaults>,
    config: &'a Config,
}

impl<'a> Sources<'a> {
    fn new(config: &'a Config, pod: &'a Pod, snap: &'a Snapshot) -> Sources<'a> {
        let driver = match &pod.spark {
            Some(sp) if pod.is_executor() => snap
                .app(sp.app)
                .and_then(|a| a.driver)
                .and_then(|id| snap.pod(id))
                .map(|e| e.pod.as_ref()),
            _ => None,
        };
        Sources {
            own: pod,
            driver,
            namespace: config.spark.namespaces.get(pod.key.namespace.as_str()),
            config,
        }
    }

    /// The annotation from the pod itself or, failing that, its driver, parsed.
    fn annotation<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, AnnotationError>,
    ) -> Result<Option<T>, PolicyError> {
        let found = match self.own.annotation(name) {
            Some(v) => Some((v, String::new())),
            None => self.driver.and_then(|d| {
                d.annotation(name)
                    .map(|v| (v, format!(" (inherited from driver {})", d.key)))
            }),
        };
        match found {
            None => Ok(None),
            Some((v, inherited)) => parse(v)
                .map(Some)
                .map_err(|source| PolicyError::Annotation {
                    annotation: name,
                    value: v.to_owned(),
                    source,
                    inherited,
                }),
        }
    }

    fn known_types(&self) -> Vec<String> {
        self.config.capacity_types.known_types()
    }
}

fn config_value<T>(
    field: String,
    value: &str,
    parse: impl Fn(&str) -> Result<T, AnnotationError>,
) -> Result<T, PolicyError> {
    parse(value).map_err(|source| PolicyError::Config {
        field,
        value: value.to_owned(),
        source,
    })
}

fn to_syms(v: Vec<(String, u32)>) -> Vec<(Sym, u32)> {
    v.into_iter().map(|(t, w)| (Sym::new(&t), w)).collect()
}

/// The executor capacity mix that applies to `pod` (an executor, or a driver for
/// its application's executors). None: no mix configured anywhere.
pub fn executor_mix(
    config: &Config,
    pod: &Pod,
    snap: &Snapshot,
) -> Result<Option<Mix>, PolicyError> {
    let src = Sources::new(config, pod, snap);
    let known = src.known_types();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let parse_mix = |v: &str| annotations::parse_mix(v, &known);
    let ns_name = pod.key.namespace.as_str();
    let weights = match src.annotation(annotations::EXECUTOR_CAPACITY_MIX, parse_mix)? {
        Some(w) => Some(w),
        None => match src
            .namespace
            .and_then(|n| n.executor_capacity_mix.as_deref())
        {
            Some(v) => Some(config_value(
                format!("spark.namespaces.{ns_name}.executorCapacityMix"),
                v,
                parse_mix,
            )?),
            None => match config.spark.executor_capacity_mix.as_deref() {
                Some(v) => Some(config_value(
                    "spark.executorCapacityMix".into(),
                    v,
                    parse_mix,
                )?),
                None => None,
            },
        },
    };
    let mode = match src.annotation(annotations::CAPACITY_MIX_MODE, annotations::parse_mode)? {
        Some(m) => m,
        None => src
            .namespace
            .and_then(|n| n.capacity_mix_mode)
            .unwrap_or(config.spark.capacity_mix_mode),
    };
    Ok(weights.map(|w| Mix {
        weights: to_syms(w),
        mode,
    }))
}

/// Capacity types a driver may run on; None = any.
pub fn driver_capacity(config: &Config, pod: &Pod) -> Result<Option<Vec<Sym>>, PolicyError> {
    let known = config.capacity_types.known_types();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let parse = |v: &str| annotations::parse_driver_capacity(v, &known);
    let to = |v: Option<Vec<String>>| v.map(|v| v.iter().map(|t| Sym::new(t)).collect());
    if let Some(v) = pod.annotation(annotations::DRIVER_CAPACITY) {
        return parse(v).map(to).map_err(|source| PolicyError::Annotation {
            annotation: annotations::DRIVER_CAPACITY,
            value: v.to_owned(),
            source,
            inherited: String::new(),
        });
    }
    let ns_name = pod.key.namespace.as_str();
    let (field, value) = match config
        .spark
        .namespaces
        .get(ns_name)
        .and_then(|n| n.driver_capacity.as_deref())
    {
        Some(v) => (format!("spark.namespaces.{ns_name}.driverCapacity"), v),
        None => (
            "spark.driverCapacity".to_owned(),
            config.spark.driver_capacity.as_str(),
        ),
    };
    config_value(field, value, parse).map(to)
}

/// The capacity type admission chose for an executor (`spark-fleet.io/capacity-type`,
/// on the pod itself only); None when it was not admitted with one.
pub fn admitted_type(config: &Config, pod: &Pod) -> Result<Option<Sym>, PolicyError> {
    let Some(v) = pod.annotation(annotations::CAPACITY_TYPE) else {
        return Ok(None);
    };
    let known = config.capacity_types.known_types();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    annotations::parse_capacity_type(v, &known)
        .map(|t| Some(Sym::new(&t)))
        .map_err(|source| PolicyError::Annotation {
            annotation: annotations::CAPACITY_TYPE,
            value: v.to_owned(),
            source,
            inherited: String::new(),
        })
}

/// Executors that must fit together with the driver; 0 = driver admission off.
pub fn min_executors(config: &Config, pod: &Pod) -> Result<u32, PolicyError> {
    if let Some(v) = pod.annotation(annotations::MIN_EXECUTORS) {
        return annotations::parse_count(v).map_err(|source| PolicyError::Annotation {
            annotation: annotations::MIN_EXECUTORS,
            value: v.to_owned(),
            source,
            inherited: String::new(),
        });
    }
    Ok(config
        .spark
        .namespaces
        .get(pod.key.namespace.as_str())
        .and_then(|n| n.min_executors)
        .unwrap_or(config.spark.min_executors))
}

/// The size of one executor of the driver's application: the
/// `spark-fleet.io/executor-resources` annotation, else the driver's own requests
/// (Spark's defaults give driver and executors the same size: 1 core, 1g).
pub fn executor_resources(driver: &Pod) -> Result<Resources, PolicyError> {
    match driver.annotation(annotations::EXECUTOR_RESOURCES) {
        None => Ok(driver.requests.clone()),
        Some(v) => annotations::parse_resources(v).map_err(|source| PolicyError::Annotation {
            annotation: annotations::EXECUTOR_RESOURCES,
            value: v.to_owned(),
            source,
            inherited: String::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespaceSparkDefaults;
    use crate::model::capacity::CapacityRules;
    use crate::testkit::*;

    fn s(x: &str) -> Sym {
        Sym::new(x)
    }

    fn mix(spec: &[(&str, u32)]) -> Mix {
        Mix {
            weights: spec.iter().map(|&(t, w)| (s(t), w)).collect(),
            mode: MixMode::Soft,
        }
    }

    #[test]
    fn next_type_table() {
        let m = mix(&[("spot", 40), ("on-demand", 60)]);
        // (spot placed, on-demand placed) → next
        let cases = [
            ((0, 0), "on-demand"),
            ((0, 1), "spot"),
            ((1, 1), "on-demand"),
            ((4, 2), "on-demand"),
            ((2, 3), "on-demand"),
            ((2, 4), "spot"),
        ];
        for ((sp, od), want) in cases {
            let placed = |t: Sym| if t == s("spot") { sp } else { od };
            assert_eq!(
                m.next_type(placed, sp + od).unwrap().as_str(),
                want,
                "{sp}/{od}"
            );
        }
        // Ties go to the type written first.
        let even = mix(&[("spot", 1), ("on-demand", 1)]);
        assert_eq!(even.next_type(|_| 0, 0).unwrap().as_str(), "spot");
        let even = mix(&[("on-demand", 1), ("spot", 1)]);
        assert_eq!(even.next_type(|_| 0, 0).unwrap().as_str(), "on-demand");
        let empty = mix(&[]);
        assert_eq!(empty.next_type(|_| 0, 0), None);
        assert!(empty.plan(&[], 3).is_empty());
        // A zero-weight type is never targeted.
        let only = mix(&[("spot", 0), ("on-demand", 1)]);
        assert_eq!(only.next_type(|_| 0, 5).unwrap().as_str(), "on-demand");
    }

    #[test]
    fn plan_follows_greedy() {
        let m = mix(&[("spot", 40), ("on-demand", 60)]);
        assert_eq!(m.plan(&[], 5), vec![(s("spot"), 2), (s("on-demand"), 3)]);
        // Starting lopsided, the plan refills the type that is short.
        assert_eq!(
            m.plan(&[(s("spot"), 4)], 4),
            vec![(s("spot"), 0), (s("on-demand"), 4)]
        );
    }

    fn snap_with_driver(driver: Pod) -> Snapshot {
        let mut sn = Snapshot::new(CapacityRules::default());
        sn.upsert_node(node("n1", 4000, 8 * GI).build());
        sn.upsert_pod(std::sync::Arc::new(driver)).unwrap();
        sn
    }

    #[test]
    fn precedence_table() {
        let mut cfg = Config::default();
        cfg.spark.executor_capacity_mix = Some("spot=1".into());
        cfg.spark.namespaces.insert(
            "team".into(),
            NamespaceSparkDefaults {
                executor_capacity_mix: Some("on-demand=1".into()),
                capacity_mix_mode: Some(MixMode::Hard),
                ..Default::default()
            },
        );
        let drv = pod("d", 100, GI)
            .driver("app")
            .on("n1")
            .annotation(annotations::EXECUTOR_CAPACITY_MIX, "serverless=1")
            .build();
        let sn = snap_with_driver(drv);
        let first = |p: &Pod| {
            let m = executor_mix(&cfg, p, &sn).unwrap().unwrap();
            (m.weights[0].0.as_str(), m.mode)
        };
        // Driver annotation applies to the app's executors.
        assert_eq!(
            first(&pod("e", 1, 1).executor("app").build()),
            ("serverless", MixMode::Soft)
        );
        // The executor's own annotation overrides the driver's.
        let own = pod("e", 1, 1)
            .executor("app")
            .annotation(annotations::EXECUTOR_CAPACITY_MIX, "on-demand=1")
            .annotation(annotations::CAPACITY_MIX_MODE, "hard")
            .build();
        assert_eq!(first(&own), ("on-demand", MixMode::Hard));
        // No driver annotation: namespace default, then cluster default.
        let other = pod("e", 1, 1).namespace("team").executor("other").build();
        assert_eq!(first(&other), ("on-demand", MixMode::Hard));
        let other = pod("e", 1, 1).executor("other").build();
        assert_eq!(first(&other), ("spot", MixMode::Soft));
        // Nothing configured: no mix.
        let bare = Config::default();
        assert_eq!(executor_mix(&bare, &other, &sn).unwrap(), None);
    }

    #[test]
    fn bad_values_name_their_source() {
        let drv = pod("d", 100, GI)
            .driver("app")
            .on("n1")
            .annotation(annotations::EXECUTOR_CAPACITY_MIX, "spot=forty")
            .build();
        let sn = snap_with_driver(drv);
        let e = pod("e", 1, 1).executor("app").build();
        let err = executor_mix(&Config::default(), &e, &sn)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "invalid annotation spark-fleet.io/executor-capacity-mix \"spot=forty\": "
            ),
            "{err}"
        );
        assert!(err.ends_with("(inherited from driver default/d)"), "{err}");

        let e = pod("e", 1, 1)
            .executor("x")
            .annotation(annotations::CAPACITY_MIX_MODE, "strict")
            .build();
        let cfg = Config {
            spark: crate::config::SparkConfig {
                executor_capacity_mix: Some("spot=1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = executor_mix(&cfg, &e, &sn).unwrap_err().to_string();
        assert!(
            err.contains("spark-fleet.io/capacity-mix-mode \"strict\""),
            "{err}"
        );

        let d = pod("d", 1, 1)
            .driver("x")
            .annotation(annotations::DRIVER_CAPACITY, "cheap")
            .build();
        assert!(driver_capacity(&Config::default(), &d).is_err());
        let d = pod("d", 1, 1)
            .driver("x")
            .annotation(annotations::MIN_EXECUTORS, "three")
            .build();
        assert!(min_executors(&Config::default(), &d).is_err());
    }

    #[test]
    fn driver_settings_defaults() {
        let mut cfg = Config::default();
        cfg.spark.min_executors = 2;
        cfg.spark.namespaces.insert(
            "team".into(),
            NamespaceSparkDefaults {
                driver_capacity: Some("any".into()),
                min_executors: Some(5),
                ..Default::default()
            },
        );
        let d = pod("d", 1000, GI).driver("x").build();
        assert_eq!(
            driver_capacity(&cfg, &d).unwrap(),
            Some(vec![s("on-demand")])
        );
        assert_eq!(min_executors(&cfg, &d).unwrap(), 2);
        assert_eq!(executor_resources(&d).unwrap(), d.requests);
        let t = pod("d", 1, 1).namespace("team").driver("x").build();
        assert_eq!(driver_capacity(&cfg, &t).unwrap(), None);
        assert_eq!(min_executors(&cfg, &t).unwrap(), 5);
        let a = pod("d", 1, 1)
            .driver("x")
            .annotation(annotations::DRIVER_CAPACITY, "spot,on-demand")
            .annotation(annotations::MIN_EXECUTORS, "0")
            .annotation(annotations::EXECUTOR_RESOURCES, "cpu=2,memory=1Gi")
            .build();
        assert_eq!(
            driver_capacity(&cfg, &a).unwrap(),
            Some(vec![s("spot"), s("on-demand")])
        );
        assert_eq!(min_executors(&cfg, &a).unwrap(), 0);
        assert_eq!(executor_resources(&a).unwrap(), res(2000, GI));
    }
}
