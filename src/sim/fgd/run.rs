//! One run of the FGD protocol: one policy, one seed, through the scheduler's
//! own snapshot, cycle and plugins (NodeResourcesFit and GpuShare filter, the
//! policy scores, GpuShare's Reserve takes the cards the policy picks).
//!
//! Pods are submitted in `arrivals` order and tried once each: a pod that
//! fits nowhere is dropped (no preemption, no retry); nothing is deleted.
//! Ties between equally scored nodes go to the node first in an order drawn
//! at random once per run: the paper's simulator prefixes node names with a
//! random permutation of their indices (`0042-`...) and runs a kube-scheduler
//! 1.20 changed to break ties by the smallest name "for reproducibility"
//! (`mental2008/kubernetes`, `selectHost`), instead of upstream's uniform pick.

use super::arrivals::{arrivals, total_milli};
use super::{Policy, Protocol, RunRows};
use crate::config::NodeResourcesFitArgs;
use crate::framework::{schedule, CycleOptions, PluginSet, Profile};
use crate::model::capacity::CapacityRules;
use crate::plugins::fgd::Fgd;
use crate::plugins::gpu_baselines::{
    BestFitScore, DotProductScore, GpuClusteringScore, GpuPackingScore, RandomCards, RandomScore,
};
use crate::plugins::gpu_share::{BestFit, CardPicker, GpuShare};
use crate::plugins::NodeResourcesFit;
use crate::snapshot::{NodeIdx, Snapshot};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// Random streams of a seed: the arrivals use stream 0 (`arrivals`).
const TIE_STREAM: u64 = 1;
const RANDOM_NODE_STREAM: u64 = 2;
const RANDOM_CARD_STREAM: u64 = 3;

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The profile of `policy`: the filters, the policy's score, and Reserve
/// taking the cards the policy picks.
fn profile(policy: Policy, protocol: &Protocol, seed: u64) -> Profile {
    let fit_args = NodeResourcesFitArgs::default();
    // Default args always pass validation.
    let fit = match NodeResourcesFit::new(&fit_args) {
        Ok(f) => Arc::new(f),
        Err(_) => unreachable!("default NodeResourcesFit args are valid"),
    };
    let mut fit_set = PluginSet::new(crate::plugins::NODE_RESOURCES_FIT);
    fit_set.pre_filter = Some(fit.clone());
    fit_set.filter = Some(fit);

    let mut score = PluginSet::new(policy.plugin_name());
    let picker: Arc<dyn CardPicker> = match policy {
        Policy::Random => {
            let p = Arc::new(RandomScore::from_rng(stream(seed, RANDOM_NODE_STREAM)));
            score.pre_score = Some(p.clone());
            score.score = Some(p);
            Arc::new(RandomCards::from_rng(stream(seed, RANDOM_CARD_STREAM)))
        }
        Policy::DotProd => {
            score.score = Some(Arc::new(DotProductScore));
            Arc::new(BestFit)
        }
        Policy::GpuClustering => {
            score.score = Some(Arc::new(GpuClusteringScore));
            Arc::new(BestFit)
        }
        Policy::GpuPacking => {
            score.score = Some(Arc::new(GpuPackingScore));
            Arc::new(BestFit)
        }
        Policy::BestFit => {
            score.score = Some(Arc::new(BestFitScore));
            Arc::new(BestFit)
        }
        Policy::Fgd => {
            let p = Arc::new(Fgd::with_workload((*protocol.typical).clone()));
            score.pre_score = Some(p.clone());
            score.score = Some(p.clone());
            p
        }
    };
    let gpu = Arc::new(GpuShare::with_picker(picker));
    let mut gpu_set = PluginSet::new(crate::plugins::gpu_share::NAME);
    gpu_set.pre_filter = Some(gpu.clone());
    gpu_set.filter = Some(gpu.clone());
    gpu_set.reserve = Some(gpu);
    Profile::new(policy.label(), vec![(fit_set, 0), (gpu_set, 0), (score, 1)])
}

/// Runs `policy` on the protocol's cluster with the pods of `seed`.
pub fn run(protocol: &Protocol, policy: Policy, seed: u64) -> RunRows {
    run_observed(protocol, policy, seed, |_, _| {})
}

/// `run`, telling `placed` where each pod went.
fn run_observed(
    protocol: &Protocol,
    policy: Policy,
    seed: u64,
    mut placed: impl FnMut(&crate::model::Pod, NodeIdx),
) -> RunRows {
    let profile = profile(policy, protocol, seed);
    let mut snap = Snapshot::new(CapacityRules::default());
    for n in &protocol.nodes {
        snap.upsert_node(n.clone());
    }
    let live: Vec<NodeIdx> = snap.nodes().live_list().to_vec();
    let slots = snap.nodes().slots();
    let typical = &protocol.typical;
    let node_fragmentation = |snap: &Snapshot, n: NodeIdx| {
        let t = snap.nodes();
        let u = n as usize;
        let cpu_left = t.alloc_cpu[u].saturating_sub(t.req_cpu[u]);
        typical.fragmentation(cpu_left, &t.gpu_free[u], t.gpu_model[u])
    };
    let mut fragmentation = vec![0f64; slots];
    for &n in &live {
        fragmentation[n as usize] = node_fragmentation(&snap, n);
    }
    let pods = arrivals(&protocol.pods, seed, protocol.tune, protocol.capacity_milli);
    let mut order = live.clone();
    order.shuffle(&mut stream(seed, TIE_STREAM));
    snap.set_tie_order(&order);
    let opts = CycleOptions {
        post_filter: false,
        no_reasons: true,
        ..CycleOptions::default()
    };
    let mut rows = RunRows::with_capacity(pods.len());
    let (mut arrived, mut used) = (0u64, 0u64);
    let mut fragmented: f64 = live.iter().map(|&n| fragmentation[n as usize]).sum();
    for pod in &pods {
        arrived += total_milli(pod);
        let d = schedule(&profile, pod, &mut snap, opts);
        match d.node {
            Some(n) => {
                let mut bound = (*d.bound_pod(pod)).clone();
                bound.node_name = Some(snap.nodes().name[n as usize]);
                if snap.assume(Arc::new(bound), n).is_ok() {
                    placed(pod, n);
                    used += total_milli(pod);
                    rows.placed += 1;
                    let f = node_fragmentation(&snap, n);
                    fragmented += f - fragmentation[n as usize];
                    fragmentation[n as usize] = f;
                } else {
                    rows.failed += 1;
                }
            }
            None => rows.failed += 1,
        }
        rows.push(arrived, used, fragmented);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    /// Four identical one-card nodes: every policy scores them alike for the
    /// first pod, so the tie order alone decides where it goes.
    fn identical_nodes() -> Protocol {
        let nodes = (0..4)
            .map(|i| {
                node(&format!("g{i}"), 32_000, 64 * GI)
                    .gpus(1, "T4")
                    .build()
            })
            .collect();
        let pods = vec![pod("p", 1000, GI).gpu(1, 1000, &[]).build()];
        Protocol::new("ties", nodes, pods, 1.3)
    }

    fn first_node(protocol: &Protocol, policy: Policy, seed: u64) -> NodeIdx {
        let mut first = None;
        run_observed(protocol, policy, seed, |_, n| {
            first.get_or_insert(n);
        });
        first.expect("the first pod fits")
    }

    #[test]
    fn ties_follow_an_order_drawn_once_per_seed() {
        let protocol = identical_nodes();
        for policy in [Policy::BestFit, Policy::GpuPacking, Policy::Fgd] {
            let firsts: Vec<NodeIdx> = (42..50).map(|s| first_node(&protocol, policy, s)).collect();
            let again: Vec<NodeIdx> = (42..50).map(|s| first_node(&protocol, policy, s)).collect();
            assert_eq!(firsts, again, "{policy:?}: a seed repeats");
            let distinct: std::collections::BTreeSet<_> = firsts.iter().collect();
            assert!(
                distinct.len() > 1,
                "{policy:?}: not always the first name: {firsts:?}"
            );
        }
        // The same order for every policy of a seed.
        for s in 42..50 {
            assert_eq!(
                first_node(&protocol, Policy::BestFit, s),
                first_node(&protocol, Policy::Fgd, s)
            );
        }
    }
}
