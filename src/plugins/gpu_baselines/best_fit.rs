//! BestFitScore: the node with the least CPU and GPU left after the pod, as
//! the FGD paper's simulator weighs them: `⌊100 · (1 − Σ ½ (free − request) / max)⌋`
//! over (CPU, GPU) divided by the largest node spec, then spread over 0..=100
//! between the lowest and the highest score of the cycle.

use super::{cpu_left, gpu_left, pod_vector, MAX_SPEC_GPU_MILLI, MAX_SPEC_MILLI_CPU};
use crate::framework::{CycleState, Plugin, ScorePlugin, MAX_NODE_SCORE};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "BestFitScore";

pub struct BestFitScore;

impl Plugin for BestFitScore {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl ScorePlugin for BestFitScore {
    fn score(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let t = snap.nodes();
        let u = node as usize;
        let (cpu, gpu) = pod_vector(pod);
        let free = [cpu_left(t, u) as f64, gpu_left(t, u) as f64];
        let request = [cpu as f64, gpu as f64];
        let max = [MAX_SPEC_MILLI_CPU, MAX_SPEC_GPU_MILLI];
        let mut left = 0.0;
        for k in 0..2 {
            if free[k] < request[k] {
                // Filtered out before scoring; the simulator's error score.
                return 0;
            }
            left += (free[k] - request[k]) / max[k] * 0.5;
        }
        ((1.0 - left) * MAX_NODE_SCORE as f64) as i64
    }

    /// Lowest to 0, highest to 100, linearly (integer division); all 0 when equal.
    fn normalize(&self, _: &CycleState, _: &Pod, scores: &mut [i64]) {
        let (lo, hi) = scores
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        let range = hi.saturating_sub(lo);
        for s in scores.iter_mut() {
            *s = if range == 0 {
                0
            } else {
                (*s - lo) * MAX_NODE_SCORE / range
            };
        }
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
                node("half", 64_000, 64 * GI).gpus(8, "G2").build(),
                node("full", 64_000, 64 * GI).gpus(8, "G2").build(),
            ],
            vec![
                pod("x", 32_000, GI)
                    .gpu(4, 1000, &[])
                    .cards("0-1-2-3")
                    .on("half")
                    .build(),
                pod("y", 60_000, GI)
                    .gpu(7, 1000, &[])
                    .cards("0-1-2-3-4-5-6")
                    .on("full")
                    .build(),
            ],
        );
        let p = pod("p", 1000, GI).gpu(1, 1000, &[]).build();
        // Raw: idle 1 − ½(63/128 + 7/8) = 31.64 → 31; half 1 − ½(31/128 + 3/8) → 69;
        // full 1 − ½(3/128 + 0) → 98. Spread: (31, 69, 98) → (0, 56, 100).
        let got = score_all(None, &BestFitScore, &p, &s);
        assert_eq!(
            got,
            [
                ("idle".into(), 0),
                ("half".into(), 56),
                ("full".into(), 100)
            ]
        );
        let mut same = [40, 40];
        BestFitScore.normalize(&CycleState::default(), &p, &mut same);
        assert_eq!(same, [0, 0]);
    }
}
