//! The pods one seed of the FGD protocol submits, in order: the pod list
//! shuffled, then clones of pods drawn from it until the GPU they ask for
//! reaches `tune` times the cluster's GPUs (the FGD paper's "workload
//! tuning"; its simulator's `TunePodsByNodeTotalResource`).
//!
//! - The list is sorted by pod name, then shuffled (Fisher–Yates).
//! - Below the target, a pod is drawn uniformly from the name-sorted list and
//!   cloned, as `{name}-tuned-{i}`, and appended; drawing stops at the first
//!   pod whose milli *per GPU* would take the total past the target (the
//!   simulator's check; a clone's whole request, all its GPUs, is added).
//!   Pods without GPUs add nothing and never stop it.
//! - Above the target (a list asking for more than `tune` times the cluster),
//!   pods are removed from the shuffled list at random positions until the
//!   total is at most the target.
//!
//! One ChaCha8 stream seeded with the seed draws the shuffle, then the clones
//! (or removals), in that order: every policy sees the same pods for a seed.
//! The published runs drew from Go's `math/rand` seeded with the same numbers,
//! which gives other pods: seeds label runs, they do not reproduce theirs.

use crate::model::Pod;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// GPU milli a pod asks for, all its cards together.
pub fn total_milli(pod: &Pod) -> u64 {
    pod.gpu.as_deref().map_or(0, |g| g.total_milli())
}

/// GPU milli of one of its cards (0 without GPUs).
fn per_gpu_milli(pod: &Pod) -> u64 {
    pod.gpu.as_deref().map_or(0, |g| u64::from(g.milli))
}

/// The pods of one seed, in submission order. `pods` is the pod list sorted
/// by name; `capacity_milli` the cluster's GPU milli.
pub fn arrivals(pods: &[Arc<Pod>], seed: u64, tune: f64, capacity_milli: u64) -> Vec<Arc<Pod>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<Arc<Pod>> = pods.to_vec();
    order.shuffle(&mut rng);
    let target = tune * capacity_milli as f64;
    let mut total: u64 = pods.iter().map(|p| total_milli(p)).sum();
    if pods.is_empty() || tune <= 0.0 {
        return order;
    }
    if total as f64 > target {
        while total as f64 > target && !order.is_empty() {
            let k = rng.random_range(0..order.len());
            total -= total_milli(&order.remove(k));
        }
        return order;
    }
    let mut i = 0u64;
    loop {
        let drawn = &pods[rng.random_range(0..pods.len())];
        if (total + per_gpu_milli(drawn)) as f64 > target {
            break;
        }
        total += total_milli(drawn);
        let mut clone = (**drawn).clone();
        clone.key.name = format!("{}-tuned-{i}", drawn.key.name);
        clone.uid = format!("{}/{}", clone.key.namespace, clone.key.name);
        order.push(Arc::new(clone));
        i += 1;
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn list() -> Vec<Arc<Pod>> {
        vec![
            pod("a", 1000, GI).gpu(1, 500, &[]).arc(),
            pod("b", 1000, GI).gpu(2, 1000, &[]).arc(),
            pod("c", 1000, GI).arc(),
        ]
    }

    #[test]
    fn clones_reach_the_target_and_repeat_for_a_seed() {
        let pods = list();
        // 10 GPUs, 130%: 13000 milli; the list asks for 2500.
        let a = arrivals(&pods, 42, 1.3, 10_000);
        let total: u64 = a.iter().map(|p| total_milli(p)).sum();
        assert!(total <= 13_000 + 1000, "{total}");
        // It stopped because the next draw's milli per GPU would pass the target.
        assert!(total + 500 > 13_000, "{total}");
        assert!(a.len() > 3);
        let originals: Vec<&str> = a[..3].iter().map(|p| p.key.name.as_str()).collect();
        let mut sorted = originals.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c"], "the list comes first, shuffled");
        assert!(a[3..].iter().all(|p| p.key.name.contains("-tuned-")));
        let again = arrivals(&pods, 42, 1.3, 10_000);
        let names = |v: &[Arc<Pod>]| v.iter().map(|p| p.key.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&again));
        assert_ne!(names(&a), names(&arrivals(&pods, 43, 1.3, 10_000)));
    }

    #[test]
    fn a_list_above_the_target_loses_pods() {
        let pods = list();
        // 1 GPU, 130%: 1300 milli; the list asks for 2500.
        let a = arrivals(&pods, 7, 1.3, 1000);
        let total: u64 = a.iter().map(|p| total_milli(p)).sum();
        assert!(total <= 1300, "{total}");
        assert!(a.len() < 3);
    }
}
