//! DriverAdmission: against the Spark "driver deadlock", where drivers fill the
//! cluster and none of them can get executors. A driver with
//! `spark-fleet.io/min-executors: N` (or a namespace/cluster default) is placed
//! only where the cluster can, right now, also place N executors of its
//! application.
//!
//! Approximation, checked on the snapshot without a nested scheduling run:
//! - an executor is `spark-fleet.io/executor-resources` on the driver, else the
//!   driver's own requests;
//! - executors are assumed to go where the driver could: the driver's
//!   nodeSelector, required node affinity and tolerations stand in for the
//!   executors' (which do not exist yet); ports, pod affinity and topology spread
//!   are not considered;
//! - per node, slots = how many executor-shaped pods fit in its free resources;
//!   in hard mix mode the slots are counted per capacity type against the per-type
//!   counts the mix asks for; in soft mode (or without a mix) any type counts;
//! - executors of the application already placed count toward N;
//! - nothing is reserved: pods placed after the driver may take the room.

use crate::config::{Config, MixMode};
use crate::framework::{CycleState, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::model::{Pod, Resources, Sym};
use crate::snapshot::{NodeIdx, Snapshot};
use crate::spark::policy;
use std::collections::HashMap;
use std::sync::Arc;

pub const NAME: &str = "DriverAdmission";

pub struct DriverAdmission {
    config: Arc<Config>,
}

impl DriverAdmission {
    pub fn new(config: Arc<Config>) -> DriverAdmission {
        DriverAdmission { config }
    }
}

impl Plugin for DriverAdmission {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Executor slots in the cluster, computed once per cycle.
struct Admission {
    min_executors: u32,
    executor: Resources,
    /// Executors still needed: total, or per capacity type in hard mix mode.
    need: Need,
    /// Executor slots per node slot (0 where executors could not go).
    slots: Vec<u64>,
    total: u64,
    by_type: HashMap<Sym, u64>,
}

enum Need {
    Total(u64),
    ByType(Vec<(Sym, u64)>),
}

/// Whether executors shaped like the driver's constraints may use the node.
fn executors_may_use(pod: &Pod, snap: &Snapshot, node: NodeIdx) -> bool {
    let nodes = snap.nodes();
    let n = &nodes.node[node as usize];
    if nodes.unschedulable[node as usize] {
        return false;
    }
    pod.matches_required_affinity(n)
        && (nodes.hard_taints[node as usize] == 0 || pod.first_untolerated_hard_taint(n).is_none())
}

/// How many `exec`-shaped pods fit on `node` after `extra` is also placed there.
fn executor_slots(snap: &Snapshot, node: NodeIdx, exec: &Resources, extra: &Resources) -> u64 {
    let nodes = snap.nodes();
    let i = node as usize;
    let alloc = &nodes.node[i].allocatable;
    let fits = |free: i64, each: i64| -> u64 {
        if each <= 0 {
            u64::MAX
        } else {
            (free.max(0) / each) as u64
        }
    };
    // Usage and the driver's requests may each be near i64::MAX: saturate
    // (below zero reads as no room either way).
    let left = |alloc: i64, used: i64, extra: i64| alloc.saturating_sub(used).saturating_sub(extra);
    let extra_pod = i64::from(extra != &Resources::default());
    let mut n = fits(left(nodes.alloc_pods[i], nodes.pod_count[i], extra_pod), 1);
    n = n.min(fits(
        left(nodes.alloc_cpu[i], nodes.req_cpu[i], extra.milli_cpu),
        exec.milli_cpu,
    ));
    n = n.min(fits(
        left(nodes.alloc_mem[i], nodes.req_mem[i], extra.memory),
        exec.memory,
    ));
    n = n.min(fits(
        left(
            nodes.alloc_eph[i],
            nodes.req_eph[i],
            extra.ephemeral_storage,
        ),
        exec.ephemeral_storage,
    ));
    for &(name, each) in &exec.scalars {
        let free = left(
            alloc.scalar(name),
            nodes.req_scalar(node, name),
            extra.scalar(name),
        );
        n = n.min(fits(free, each));
    }
    n
}

impl PreFilterPlugin for DriverAdmission {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snap: &Snapshot) -> Status {
        let Some(sp) = pod.spark.as_ref().filter(|_| pod.is_driver()) else {
            return Status::skip();
        };
        let resolved = policy::min_executors(&self.config, pod).and_then(|n| {
            if n == 0 {
                return Ok(None);
            }
            let exec = policy::executor_resources(pod)?;
            let mix = policy::executor_mix(&self.config, pod, snap)?;
            Ok(Some((n, exec, mix)))
        });
        let (min_executors, executor, mix) = match resolved {
            Err(e) => return Status::unresolvable(NAME, e.to_string()),
            Ok(None) => return Status::skip(),
            Ok(Some(r)) => r,
        };
        let placed = snap
            .app(sp.app)
            .map(|a| policy::executor_counts(snap, a, None))
            .unwrap_or_default();
        let placed_total: u32 = placed.iter().map(|e| e.1).sum();
        let still = min_executors.saturating_sub(placed_total);
        if still == 0 {
            return Status::skip();
        }
        let need = match mix.filter(|m| m.mode == MixMode::Hard) {
            Some(m) => Need::ByType(
                m.plan(&placed, still)
                    .into_iter()
                    .filter(|e| e.1 > 0)
                    .map(|(t, n)| (t, n as u64))
                    .collect(),
            ),
            None => Need::Total(still as u64),
        };
        let nodes = snap.nodes();
        let mut slots = vec![0u64; nodes.slots()];
        let mut total = 0u64;
        let mut by_type: HashMap<Sym, u64> = HashMap::new();
        let none = Resources::default();
        for i in nodes.live_indices() {
            if !executors_may_use(pod, snap, i) {
                continue;
            }
            let n = executor_slots(snap, i, &executor, &none);
            slots[i as usize] = n;
            total = total.saturating_add(n);
            let t = by_type.entry(nodes.capacity_type[i as usize]).or_default();
            *t = t.saturating_add(n);
        }
        state.write(Admission {
            min_executors,
            executor,
            need,
            slots,
            total,
            by_type,
        });
        Status::success()
    }
}

impl FilterPlugin for DriverAdmission {
    fn filter(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let Some(a) = state.read::<Admission>() else {
            return Status::success();
        };
        let before = a.slots.get(node as usize).copied().unwrap_or(0);
        let lost = if before == 0 {
            0
        } else {
            before - executor_slots(snap, node, &a.executor, &pod.requests).min(before)
        };
        let ty = snap.nodes().capacity_type[node as usize];
        let enough = match &a.need {
            Need::Total(n) => a.total - lost >= *n,
            Need::ByType(per) => per.iter().all(|&(t, n)| {
                let have = a.by_type.get(&t).copied().unwrap_or(0);
                let have = if t == ty { have - lost } else { have };
                have >= n
            }),
        };
        if enough {
            Status::success()
        } else {
            Status::unschedulable(
                NAME,
                format!(
                    "node(s) can't also fit the application's {} minimum executors",
                    a.min_executors
                ),
            )
        }
    }

    /// Admission counts placed executors and free room, but only for a driver that
    /// asks for executors; a bad setting is refused whatever is placed.
    fn depends_on_placed_pods(&self, _: &CycleState, pod: &Pod) -> bool {
        pod.is_driver()
            && pod.spark.is_some()
            && policy::min_executors(&self.config, pod).is_ok_and(|n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::model::capacity::CapacityRules;
    use crate::model::TaintEffect;
    use crate::plugins::test_support::filter_all;
    use crate::spark::annotations::{
        CAPACITY_MIX_MODE, EXECUTOR_CAPACITY_MIX, EXECUTOR_RESOURCES, MIN_EXECUTORS,
    };
    use crate::testkit::*;

    fn run(cfg: Config, s: &Snapshot, p: &Pod) -> Vec<(String, Status)> {
        let pl = DriverAdmission::new(Arc::new(cfg));
        filter_all(Some(&pl), &pl, p, s)
    }

    fn ok_nodes(r: &[(String, Status)]) -> Vec<&str> {
        r.iter()
            .filter(|(_, st)| st.is_success())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    #[test]
    fn driver_needs_room_for_its_executors() {
        let mut s = Snapshot::new(CapacityRules::default());
        // Executors default to the driver's size (2 cpu): od1 has 2 slots, od2 1.
        s.upsert_node(node("od1", 4000, 16 * GI).build());
        s.upsert_node(node("od2", 2000, 16 * GI).build());
        let drv = |n: &str| {
            pod("d", 2000, GI)
                .driver("app")
                .annotation(MIN_EXECUTORS, n)
                .build()
        };
        // The driver on od1 leaves 1 + 1 slots; on od2, 2 + 0.
        assert_eq!(
            ok_nodes(&run(Config::default(), &s, &drv("2"))),
            ["od1", "od2"]
        );
        let r = run(Config::default(), &s, &drv("3"));
        assert!(ok_nodes(&r).is_empty());
        assert_eq!(r[0].1.code, Code::Unschedulable);
        assert_eq!(
            r[0].1.reasons[0],
            "node(s) can't also fit the application's 3 minimum executors"
        );
        // Smaller executors by annotation (1 cpu): od1 leaves 2 + 2, od2 leaves 4 + 0.
        let small = |n: &str| {
            pod("d", 2000, GI)
                .driver("app")
                .annotation(MIN_EXECUTORS, n)
                .annotation(EXECUTOR_RESOURCES, "cpu=1,memory=1Gi")
                .build()
        };
        assert_eq!(
            ok_nodes(&run(Config::default(), &s, &small("4"))),
            ["od1", "od2"]
        );
        assert!(ok_nodes(&run(Config::default(), &s, &small("5"))).is_empty());
        // Executors already placed count toward the minimum.
        s.upsert_pod(pod("e1", 2000, GI).executor("app").on("od1").arc())
            .unwrap();
        // od1 and od2 now have 1 slot each: the driver on either leaves 1, plus e1 = 2.
        assert_eq!(
            ok_nodes(&run(Config::default(), &s, &drv("2"))),
            ["od1", "od2"]
        );
        assert!(ok_nodes(&run(Config::default(), &s, &drv("3"))).is_empty());
    }

    /// Usage and the driver's own requests near i64::MAX: room for executors is
    /// worked out without overflow (executors asking no memory fit regardless).
    #[test]
    fn huge_usage_and_requests_do_not_overflow() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("od1", 4000, 16 * GI).build());
        s.upsert_pod(pod("hog", 0, i64::MAX).on("od1").arc())
            .unwrap();
        let drv = pod("d", 1000, i64::MAX)
            .driver("app")
            .annotation(MIN_EXECUTORS, "3")
            .annotation(EXECUTOR_RESOURCES, "cpu=1")
            .build();
        // 3 cpus left after the driver: 3 executors of 1 cpu and no memory.
        assert_eq!(ok_nodes(&run(Config::default(), &s, &drv)), ["od1"]);
    }

    #[test]
    fn defaults_off_and_non_drivers_skip() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("tiny", 1000, GI).build());
        let d = pod("d", 1000, GI).driver("app").build();
        assert!(ok_nodes(&run(Config::default(), &s, &d)) == ["tiny"]);
        // Cluster default applies without an annotation.
        let mut cfg = Config::default();
        cfg.spark.min_executors = 1;
        assert!(ok_nodes(&run(cfg.clone(), &s, &d)).is_empty());
        // Executors are not gated.
        let e = pod("e", 1000, GI).executor("app").build();
        assert_eq!(ok_nodes(&run(cfg, &s, &e)), ["tiny"]);
    }

    #[test]
    fn hard_mix_counts_slots_per_type() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("spot", 8000, 32 * GI).spot().build());
        s.upsert_node(node("od", 2000, 32 * GI).on_demand().build());
        let drv = |mode: &str| {
            pod("d", 1000, GI)
                .driver("app")
                .annotation(MIN_EXECUTORS, "4")
                .annotation(EXECUTOR_CAPACITY_MIX, "spot=50,on-demand=50")
                .annotation(CAPACITY_MIX_MODE, mode)
                .build()
        };
        // Hard: 2 of the 4 must be on-demand. With the driver on od only 1 on-demand slot is left.
        assert_eq!(
            ok_nodes(&run(Config::default(), &s, &drv("hard"))),
            ["spot"]
        );
        // Soft: any type counts.
        assert_eq!(
            ok_nodes(&run(Config::default(), &s, &drv("soft"))),
            ["spot", "od"]
        );
    }

    #[test]
    fn executor_proxy_honours_driver_constraints() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("open", 2000, 8 * GI).build());
        s.upsert_node(
            node("tainted", 8000, 8 * GI)
                .taint("dedicated", "spark", TaintEffect::NoSchedule)
                .build(),
        );
        let d = pod("d", 1000, GI)
            .driver("app")
            .annotation(MIN_EXECUTORS, "2")
            .build();
        // The tainted node's room does not count for executors that can't tolerate it.
        assert_eq!(ok_nodes(&run(Config::default(), &s, &d)), ["tainted"]);
        let tol = pod("d", 1000, GI)
            .driver("app")
            .annotation(MIN_EXECUTORS, "2")
            .tolerate("dedicated", "spark", None)
            .build();
        assert_eq!(
            ok_nodes(&run(Config::default(), &s, &tol)),
            ["open", "tainted"]
        );
    }

    #[test]
    fn bad_annotations_are_rejected() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("n", 8000, 8 * GI).build());
        for (k, v) in [(MIN_EXECUTORS, "lots"), (EXECUTOR_RESOURCES, "cpu=two")] {
            let mut p = pod("d", 1000, GI).driver("app").annotation(k, v);
            if k != MIN_EXECUTORS {
                p = p.annotation(MIN_EXECUTORS, "1");
            }
            let r = run(Config::default(), &s, &p.build());
            assert_eq!(r[0].1.code, Code::UnschedulableAndUnresolvable);
            assert!(
                r[0].1.reasons[0].starts_with(&format!("invalid annotation {k} {v:?}")),
                "{:?}",
                r[0].1.reasons
            );
        }
    }
}
