//! GpuClusteringScore: pods of one GPU shape together, as the FGD paper's
//! simulator ranks nodes. A pod's shape is "share" (part of one GPU) or "n
//! whole GPUs". A node holding only pods of the pod's shape scores 75..100,
//! one holding that shape among others 50..75, a node without GPU pods
//! 25..50, a node of other shapes only 0..25; within a band, fewer free GPU
//! milli scores higher. Pods without GPUs score 0 everywhere.

use super::{gpu_left, MAX_SPEC_GPU_MILLI};
use crate::framework::{CycleState, Normalization, Plugin, ScorePlugin, MAX_NODE_SCORE};
use crate::model::{Pod, PodGpu};
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "GpuClusteringScore";

pub struct GpuClusteringScore;

impl Plugin for GpuClusteringScore {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// A GPU shape: 0 for a share, else the number of whole GPUs.
fn shape(g: &PodGpu) -> u8 {
    if g.is_share() {
        0
    } else {
        g.count
    }
}

impl ScorePlugin for GpuClusteringScore {
    fn score(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let Some(g) = pod.gpu.as_deref() else {
            return 0;
        };
        let want = shape(g);
        let (mut same, mut others) = (false, false);
        for e in snap.pods_on(node) {
            if let Some(h) = e.pod.gpu.as_deref() {
                if shape(h) == want {
                    same = true;
                } else {
                    others = true;
                }
            }
        }
        let max_spec = MAX_SPEC_GPU_MILLI as i64;
        let fill =
            MAX_NODE_SCORE / 4 * (max_spec - gpu_left(snap.nodes(), node as usize)) / max_spec;
        let band = match (same, others) {
            (true, false) => 3,
            (true, true) => 2,
            (false, false) => 1,
            (false, true) => 0,
        };
        fill + MAX_NODE_SCORE * band / 4
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
        let n = |name: &str| node(name, 64_000, 64 * GI).gpus(8, "G2").build();
        let s = snapshot_of(
            vec![n("empty"), n("shares"), n("mixed"), n("whole")],
            vec![
                pod("a", 1000, GI)
                    .gpu(1, 500, &[])
                    .cards("0")
                    .on("shares")
                    .build(),
                pod("b", 1000, GI)
                    .gpu(1, 500, &[])
                    .cards("0")
                    .on("mixed")
                    .build(),
                pod("c", 1000, GI)
                    .gpu(2, 1000, &[])
                    .cards("1-2")
                    .on("mixed")
                    .build(),
                pod("d", 1000, GI)
                    .gpu(4, 1000, &[])
                    .cards("0-1-2-3")
                    .on("whole")
                    .build(),
            ],
        );
        let p = pod("p", 1000, GI).gpu(1, 300, &[]).build();
        // fill = 25 · (8000 − free) / 8000: empty 0, shares 500 used → 1, mixed 2500 → 7, whole 4000 → 12.
        let got = score_all(None, &GpuClusteringScore, &p, &s);
        assert_eq!(
            got,
            [
                ("empty".into(), 25),
                ("shares".into(), 76),
                ("mixed".into(), 57),
                ("whole".into(), 12)
            ]
        );
        let plain = pod("q", 1000, GI).build();
        assert!(score_all(None, &GpuClusteringScore, &plain, &s)
            .iter()
            .all(|(_, v)| *v == 0));
    }
}
