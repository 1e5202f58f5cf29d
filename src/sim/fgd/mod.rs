//! The FGD paper's evaluation protocol as a simulator mode (`simulate
//! --protocol fgd`): Weng et al., "Beware of Fragmentation: Scheduling
//! GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC '23,
//! §6, as its simulator (`hkust-adsl/kubernetes-scheduler-simulator`) runs it.
//!
//! - **Cluster**: the GPU nodes of an openb node list (nodes without GPUs are left
//!   out), each with `PODS_PER_NODE` pod slots.
//! - **Pods**: per seed, the pod list shuffled, then clones until the GPU asked
//!   reaches `tune` (1.3) times the cluster's GPUs (`arrivals`); nothing is deleted.
//! - **Scheduling**: one attempt per pod, no preemption (`run`); the policies
//!   are score plugins (`plugins::gpu_baselines`, `plugins::fgd`).
//! - **Measures**, after each pod: *arrived* = GPU milli asked by the pods
//!   submitted so far (placed or not), *allocated* = GPU milli held by placed
//!   pods, *fragmented* = the sum over nodes of `F(n)` (`plugins::fgd::workload`)
//!   under the pod list's typical pods; each as a percentage of the cluster's
//!   GPU milli, tabulated at each whole percent of arrived (`tables`).
//!
//! Definitions and the agreement with the published tables: `simulations/README.md`.

pub mod arrivals;
mod run;
pub mod tables;

use crate::model::{Node, Pod};
use crate::plugins::fgd::{Shape, Workload};
use crate::sim::trace::{import_openb, ImportOptions, TraceError};
use rayon::prelude::*;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

pub use tables::FgdReport;

/// The share of the cluster's GPUs the pods of a run ask for in all (130%).
pub const TUNE: f64 = 1.3;
/// Pod slots per node: the paper's node list gives every node 1001, so pod
/// count never limits a node (the openb importer's 110 is for the replay).
pub const PODS_PER_NODE: i64 = 1001;

#[derive(Debug, Error)]
pub enum FgdError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("{0}")]
    Usage(String),
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// A policy of the paper's evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Policy {
    Random,
    DotProd,
    GpuClustering,
    GpuPacking,
    BestFit,
    Fgd,
}

impl Policy {
    pub const ALL: [Policy; 6] = [
        Policy::Random,
        Policy::DotProd,
        Policy::GpuClustering,
        Policy::GpuPacking,
        Policy::BestFit,
        Policy::Fgd,
    ];

    /// The name in the paper and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Random => "Random",
            Policy::DotProd => "DotProd",
            Policy::GpuClustering => "GpuClustering",
            Policy::GpuPacking => "GpuPacking",
            Policy::BestFit => "BestFit",
            Policy::Fgd => "FGD",
        }
    }

    /// The `sc_policy` value of the published tables (`01-Random` ... `06-FGD`).
    pub fn label(self) -> String {
        let k = Policy::ALL.iter().position(|p| *p == self).unwrap_or(0) + 1;
        format!("{k:02}-{}", self.name())
    }

    /// The score plugin that implements it.
    pub fn plugin_name(self) -> &'static str {
        use crate::plugins::gpu_baselines as b;
        match self {
            Policy::Random => b::random::NAME,
            Policy::DotProd => b::dot_product::NAME,
            Policy::GpuClustering => b::clustering::NAME,
            Policy::GpuPacking => b::packing::NAME,
            Policy::BestFit => b::best_fit::NAME,
            Policy::Fgd => crate::plugins::fgd::NAME,
        }
    }

    /// A policy by name (any case).
    pub fn parse(s: &str) -> Result<Policy, FgdError> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                FgdError::Usage(format!(
                    "--protocol fgd: unknown policy {s:?}; the policies are {}",
                    names.join(", ")
                ))
            })
    }
}

/// Seeds as given on the command line: `42-51`, `42`, or `42,45,50`.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, FgdError> {
    let bad = || {
        FgdError::Usage(format!(
            "--seeds {s:?}: expected a range like 42-51, a seed like 42, or a list like 42,45"
        ))
    };
    let mut seeds = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u64 = a.trim().parse().map_err(|_| bad())?;
                let b: u64 = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a >= 10_000 {
                    return Err(bad());
                }
                seeds.extend(a..=b);
            }
            None => seeds.push(part.parse().map_err(|_| bad())?),
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = seeds.iter().find(|s| !seen.insert(**s)) {
        return Err(FgdError::Usage(format!(
            "--seeds: seed {dup} is listed twice"
        )));
    }
    Ok(seeds)
}

/// What a protocol run needs: the cluster, the pod list and its typical pods.
pub struct Protocol {
    /// The pod list's name (the file stem): the tables' `workload`.
    pub workload: String,
    /// GPU nodes only.
    pub nodes: Vec<Node>,
    /// The pod list, sorted by name.
    pub pods: Vec<Arc<Pod>>,
    /// The pod list's typical pods (`plugins::fgd::workload`).
    pub typical: Arc<Workload>,
    pub total_gpus: u64,
    pub capacity_milli: u64,
    pub tune: f64,
}

impl Protocol {
    /// From nodes and pods; nodes without GPU cards are left out.
    pub fn new(workload: &str, nodes: Vec<Node>, pods: Vec<Pod>, tune: f64) -> Protocol {
        let nodes: Vec<Node> = nodes
            .into_iter()
            .filter(|n| crate::model::gpu::node_cards(&n.allocatable) > 0)
            .collect();
        let total_gpus: u64 = nodes
            .iter()
            .map(|n| crate::model::gpu::node_cards(&n.allocatable) as u64)
            .sum();
        let mut pods: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
        pods.sort_by(|a, b| a.key.name.cmp(&b.key.name));
        let typical = Workload::from_shapes(
            pods.iter()
                .map(|p| Shape::of(p.non_zero_cpu_mem().0, p.gpu.as_deref())),
        );
        Protocol {
            workload: workload.to_owned(),
            nodes,
            pods,
            typical: Arc::new(typical),
            total_gpus,
            capacity_milli: total_gpus * u64::from(crate::model::gpu::MILLI_PER_GPU),
            tune,
        }
    }

    /// From the openb CSVs (read and checked by the openb importer).
    pub fn from_openb(nodes_csv: &Path, pods_csv: &Path) -> Result<Protocol, FgdError> {
        let trace = import_openb(nodes_csv, pods_csv, &ImportOptions::default())?;
        let mut nodes = Vec::new();
        for n in trace.node_adds() {
            let mut node = n.to_node()?;
            node.allocatable.pods = PODS_PER_NODE;
            nodes.push(node);
        }
        let mut pods = Vec::new();
        for (_, p) in trace.pod_submits() {
            let requests = p.requests()?;
            let mut pod = Pod::new(&p.namespace, &p.name, requests.clone());
            // The FGD converter writes every request, so none is "missing".
            pod.non_zero_requests = Some((requests.milli_cpu, requests.memory));
            pod.gpu = p.gpu_request()?.map(Box::new);
            pods.push(pod);
        }
        let stem = pods_csv
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let protocol = Protocol::new(&stem, nodes, pods, TUNE);
        if protocol.nodes.is_empty() {
            return Err(FgdError::Usage(format!(
                "{}: no node with GPUs: the FGD protocol runs on the GPU nodes",
                nodes_csv.display()
            )));
        }
        Ok(protocol)
    }
}

/// What one run recorded after each pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRows {
    /// GPU milli asked by the pods submitted so far.
    pub arrived: Vec<u64>,
    /// GPU milli held by placed pods.
    pub allocated: Vec<u64>,
    /// Expected unusable GPU milli, summed over nodes.
    pub fragmented: Vec<f64>,
    pub placed: u64,
    pub failed: u64,
}

impl RunRows {
    fn with_capacity(n: usize) -> RunRows {
        RunRows {
            arrived: Vec::with_capacity(n),
            allocated: Vec::with_capacity(n),
            fragmented: Vec::with_capacity(n),
            ..RunRows::default()
        }
    }

    fn push(&mut self, arrived: u64, allocated: u64, fragmented: f64) {
        self.arrived.push(arrived);
        self.allocated.push(allocated);
        self.fragmented.push(fragmented);
    }
}

/// One (policy, seed) run.
#[derive(Debug, Clone)]
pub struct Run {
    pub policy: Policy,
    pub seed: u64,
    pub rows: RunRows,
    pub seconds: f64,
}

/// Runs every policy for every seed, the runs spread over the machine's cores
/// (each run alone is sequential and repeats exactly).
pub fn run_all(protocol: &Protocol, policies: &[Policy], seeds: &[u64]) -> FgdReport {
    let started = std::time::Instant::now();
    let jobs: Vec<(Policy, u64)> = policies
        .iter()
        .flat_map(|&p| seeds.iter().map(move |&s| (p, s)))
        .collect();
    let mut runs: Vec<Run> = jobs
        .par_iter()
        .map(|&(policy, seed)| {
            let t = std::time::Instant::now();
            let rows = run::run(protocol, policy, seed);
            Run {
                policy,
                seed,
                rows,
                seconds: t.elapsed().as_secs_f64(),
            }
        })
        .collect();
    runs.sort_by_key(|r| (r.policy, r.seed));
    FgdReport {
        workload: protocol.workload.clone(),
        tune: protocol.tune,
        total_gpus: protocol.total_gpus,
        runs,
        wall_seconds: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_policies_parse() {
        assert_eq!(parse_seeds("42-51").unwrap(), (42..=51).collect::<Vec<_>>());
        assert_eq!(parse_seeds("7").unwrap(), [7]);
        assert_eq!(parse_seeds("1,3-4").unwrap(), [1, 3, 4]);
        for bad in ["", "x", "5-1", "1-2-3", "1,1", "-3"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
        assert_eq!(Policy::parse("fgd").unwrap(), Policy::Fgd);
        assert_eq!(Policy::parse("BestFit").unwrap().label(), "05-BestFit");
        let e = Policy::parse("Tetris").unwrap_err().to_string();
        assert!(e.contains("Tetris") && e.contains("DotProd"), "{e}");
    }
}
