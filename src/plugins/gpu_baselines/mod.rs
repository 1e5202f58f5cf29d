//! The baseline policies of the FGD paper's evaluation (USENIX ATC '23, §6),
//! as score plugins scoring exactly as its simulator does
//! (`hkust-adsl/kubernetes-scheduler-simulator`), for the simulator's FGD
//! protocol (`sim::fgd`). Each reads a node's free CPU and its cards' free
//! milli from the snapshot (`NodeTable::gpu_free`).
//!
//! - [`RandomScore`]: a node drawn at random among the feasible ones.
//! - [`DotProductScore`]: Tetris's alignment of free and requested (CPU, GPU).
//! - [`GpuClusteringScore`]: pods of one GPU shape together.
//! - [`GpuPackingScore`]: shared cards first, then used nodes, then idle ones.
//! - [`BestFitScore`]: the node with the least (CPU, GPU) left after the pod.

pub mod best_fit;
pub mod clustering;
pub mod dot_product;
pub mod packing;
pub mod random;

pub use best_fit::BestFitScore;
pub use clustering::GpuClusteringScore;
pub use dot_product::DotProductScore;
pub use packing::GpuPackingScore;
pub use random::{RandomCards, RandomScore};

use crate::model::Pod;
use crate::snapshot::NodeTable;

/// The simulator's normalizing maxima: 128 CPUs and 8 GPUs (`MaxSpecCpu`, `MaxSpecGpu`).
pub const MAX_SPEC_MILLI_CPU: f64 = 128_000.0;
pub const MAX_SPEC_GPU_MILLI: f64 = 8_000.0;

/// Free milli-CPU of node slot `u` (allocatable minus requests).
fn cpu_left(t: &NodeTable, u: usize) -> i64 {
    t.alloc_cpu[u].saturating_sub(t.req_cpu[u])
}

/// Free GPU milli of node slot `u`, all cards together.
fn gpu_left(t: &NodeTable, u: usize) -> i64 {
    t.gpu_free[u].iter().map(|&f| i64::from(f)).sum()
}

/// The milli-CPU a pod asks for, as the simulator counts it (the scorers'
/// non-zero request), and its GPU milli, all cards together.
fn pod_vector(pod: &Pod) -> (i64, i64) {
    let cpu = pod.non_zero_cpu_mem().0;
    let gpu = pod.gpu.as_deref().map_or(0, |g| g.total_milli() as i64);
    (cpu, gpu)
}
