//! The admission webhook in the simulator: when a Spark pod is created, it gets the node
//! constraint an autoscaler reads, so the autoscaler launches the capacity spark-fleet chose.
//!
//! The constraint is the webhook's own (`admission::constraint`, for the configured
//! provider); the choice is the scheduler's largest-deficit rule (`spark::policy::Mix`) over
//! the application's executors placed (bound or assumed) and pending with a type chosen at
//! their own admission, the counting the webhook does (in the simulator, admission knows every
//! pending pod at once: nothing is "admitted moments ago but not yet seen").
//! - a driver: a required term for its allowed capacity types;
//! - an executor of an application with a mix: the type recorded on the pod
//!   (`spark-fleet.io/capacity-type`, which CapacityMix then targets) and the constraint,
//!   required in hard mode, preferred in soft mode;
//! - a bad annotation or an unknown type: the pod is admitted unchanged (the scheduler
//!   reports it), as the webhook's `failurePolicy: Ignore` does.

use crate::admission::{apply_to_model, capacity_constraint, Placement};
use crate::config::{Config, MixMode};
use crate::model::{Pod, Sym};
use crate::snapshot::Snapshot;
use crate::spark::annotations::CAPACITY_TYPE;
use crate::spark::policy::{self, PlacedExecutors};

/// The capacity type `pod` was admitted with, if any.
pub fn admitted_type(pod: &Pod) -> Option<Sym> {
    pod.annotation(CAPACITY_TYPE).map(Sym::new)
}

/// Puts the driver's allowed capacity types on it as a required term.
pub fn admit_driver(config: &Config, pod: &mut Pod) {
    let Ok(Some(allowed)) = policy::driver_capacity(config, pod) else {
        return;
    };
    let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
    if let Ok(c) = capacity_constraint(&names, config.admission.provider, &config.capacity_types) {
        apply_to_model(pod, &c, Placement::Required);
    }
}

/// Chooses the executor's capacity type and puts it on the pod. `pending` are the capacity
/// types chosen for the application's executors still pending.
pub fn admit_executor(
    config: &Config,
    pod: &mut Pod,
    snap: &Snapshot,
    pending: impl Iterator<Item = Sym>,
) -> Option<Sym> {
    let mix = policy::executor_mix(config, pod, snap).ok()??;
    let placed = PlacedExecutors::of_app(snap, pod);
    let mut counts = placed.by_type.clone();
    for ty in pending {
        match counts.iter_mut().find(|e| e.0 == ty) {
            Some(e) => e.1 += 1,
            None => counts.push((ty, 1)),
        }
    }
    let total: u32 = counts.iter().map(|e| e.1).sum();
    let of = |t: Sym| counts.iter().find(|e| e.0 == t).map_or(0, |e| e.1);
    let ty = mix.next_type(of, total)?;
    let c = capacity_constraint(
        &[ty.as_str()],
        config.admission.provider,
        &config.capacity_types,
    )
    .ok()?;
    let placement = match mix.mode {
        MixMode::Hard => Placement::Required,
        MixMode::Soft => Placement::Preferred {
            weight: config.admission.preferred_weight,
        },
    };
    pod.annotations
        .push((CAPACITY_TYPE.to_owned(), ty.as_str().to_owned()));
    apply_to_model(pod, &c, placement);
    Some(ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::capacity::CapacityRules;
    use crate::model::SelectorOp;
    use crate::testkit::{node, pod, GI};
    use std::sync::Arc;

    fn snap_with_driver(mix: &str, mode: &str) -> Snapshot {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("od", 64_000, 256 * GI).on_demand().build());
        let d = pod("d", 1000, GI)
            .driver("app")
            .on("od")
            .annotation("spark-fleet.io/executor-capacity-mix", mix)
            .annotation("spark-fleet.io/capacity-mix-mode", mode)
            .build();
        s.upsert_pod(Arc::new(d)).unwrap();
        s
    }

    #[test]
    fn executors_created_together_follow_the_mix() {
        let config = Config::default();
        let snap = snap_with_driver("spot=40,on-demand=60", "hard");
        let mut chosen: Vec<Sym> = Vec::new();
        for i in 0..20 {
            let mut e = pod(&format!("e{i}"), 1000, GI).executor("app").build();
            let ty = admit_executor(&config, &mut e, &snap, chosen.iter().copied()).unwrap();
            assert_eq!(admitted_type(&e), Some(ty));
            // Hard mode: a required Karpenter capacity-type term.
            let terms = e.node_affinity.required.as_ref().unwrap();
            assert_eq!(
                terms[0].match_expressions[0].key.as_str(),
                "karpenter.sh/capacity-type"
            );
            chosen.push(ty);
        }
        let spot = chosen.iter().filter(|t| t.as_str() == "spot").count();
        assert_eq!((spot, 20 - spot), (8, 12));
    }

    #[test]
    fn soft_mixes_get_a_preferred_term_and_drivers_a_required_one() {
        let config = Config::default();
        let snap = snap_with_driver("spot=100", "soft");
        let mut e = pod("e", 1000, GI).executor("app").build();
        assert_eq!(
            admit_executor(&config, &mut e, &snap, std::iter::empty())
                .unwrap()
                .as_str(),
            "spot"
        );
        assert!(e.node_affinity.required.is_none());
        assert_eq!(e.node_affinity.preferred.len(), 1);
        let mut d = pod("d2", 1000, GI).driver("other").build();
        admit_driver(&config, &mut d);
        let r = &d.node_affinity.required.as_ref().unwrap()[0].match_expressions[0];
        assert_eq!(
            (r.key.as_str(), r.op),
            ("karpenter.sh/capacity-type", SelectorOp::NotIn)
        );
        // No mix: the executor is left alone.
        let mut other = pod("x", 1000, GI).executor("nomix").build();
        assert_eq!(
            admit_executor(&config, &mut other, &snap, std::iter::empty()),
            None
        );
        assert!(other.annotations.is_empty() && other.node_affinity.required.is_none());
    }
}
