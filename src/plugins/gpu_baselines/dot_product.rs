//! DotProductScore: Tetris's packing heuristic as the FGD paper's simulator
//! runs it (GPUs merged into one dimension, both dimensions divided by the
//! largest node spec): `⌊100 · (1 − (free · request) / 2)⌋` over (CPU, GPU),
//! so a pod goes where what it asks for lines up least with what is free.

use super::{cpu_left, gpu_left, pod_vector, MAX_SPEC_GPU_MILLI, MAX_SPEC_MILLI_CPU};
use crate::framework::{CycleState, Normalization, Plugin, ScorePlugin};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, NodeTable, Snapshot};

pub const NAME: &str = "DotProductScore";

pub struct DotProductScore;

impl Plugin for DotProductScore {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The score of a pod asking (`cpu`, `gpu`) on node slot `u`.
pub(super) fn dot_product(t: &NodeTable, u: usize, cpu: i64, gpu: i64) -> i64 {
    let free_cpu = cpu_left(t, u);
    if free_cpu < cpu {
        return 0;
    }
    let node = [
        free_cpu as f64 / MAX_SPEC_MILLI_CPU,
        gpu_left(t, u) as f64 / MAX_SPEC_GPU_MILLI,
    ];
    let pod = [
        cpu as f64 / MAX_SPEC_MILLI_CPU,
        gpu as f64 / MAX_SPEC_GPU_MILLI,
    ];
    let dot = node[0] * pod[0] + node[1] * pod[1];
    let score = 1.0 - dot / 2.0;
    (100.0 * score) as i64
}

impl ScorePlugin for DotProductScore {
    fn score(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let (cpu, gpu) = pod_vector(pod);
        dot_product(snap.nodes(), node as usize, cpu, gpu)
    }

    fn normalization(&self) -> Normalization {
        Normalization::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{score_all, snapshot_of};
    use crate::testkit::*;

    #[test]
    fn table() {
        let s = snapshot_of(
            vec![
                node("idle", 64_000, 64 * GI).gpus(8, "G2").build(),
                node("busy", 64_000, 64 * GI).gpus(8, "G2").build(),
            ],
            vec![pod("x", 48_000, GI)
                .gpu(6, 1000, &[])
                .cards("0-1-2-3-4-5")
                .on("busy")
                .build()],
        );
        // A pod of 16 CPU and 1 GPU: idle (64 CPU, 8 GPU free) has dot
        // 0.5·0.125 + 1·0.125 = 0.1875; busy (16 CPU, 2 GPU) 0.125·0.125 + 0.25·0.125 = 0.046875.
        let p = pod("p", 16_000, GI).gpu(1, 1000, &[]).build();
        let got = score_all(None, &DotProductScore, &p, &s);
        assert_eq!(got, [("idle".into(), 90), ("busy".into(), 97)]);
    }
}
