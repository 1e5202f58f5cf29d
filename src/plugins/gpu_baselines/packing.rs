//! GpuPackingScore: GPU packing as the FGD paper's simulator ranks nodes: a
//! pod that fits on partly used cards scores highest (75..=100, fuller cards
//! higher), then one that needs free cards of a node already in use (33..=50),
//! then an idle node (fewer cards higher, at most 33). Pods without GPUs
//! score 0 everywhere.

use crate::framework::{CycleState, Normalization, Plugin, ScorePlugin, MAX_NODE_SCORE};
use crate::model::gpu::MILLI_PER_GPU;
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "GpuPackingScore";

pub struct GpuPackingScore;

impl Plugin for GpuPackingScore {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The score of `count` cards of `milli` on cards with `free` milli.
pub(super) fn packing(free: &[i32], count: u8, milli: u32) -> i64 {
    let full = MILLI_PER_GPU as i32;
    let idle = free.iter().filter(|&&f| f == full).count();
    if idle == free.len() {
        return (MAX_NODE_SCORE / 3 - idle as i64).max(idle as i64);
    }
    // The fullest cards that hold it first (lowest index among equals).
    let mut order: Vec<usize> = (0..free.len()).collect();
    order.sort_by_key(|&i| free[i]);
    let mut wanted = usize::from(count);
    let mut idle_used = 0i64;
    let mut used: smallvec::SmallVec<[usize; 8]> = smallvec::SmallVec::new();
    for i in order {
        if wanted == 0 {
            break;
        }
        if i64::from(free[i]) >= i64::from(milli) {
            wanted -= 1;
            used.push(i);
            if free[i] == full {
                idle_used += 1;
            }
        }
    }
    if wanted != 0 {
        return 0;
    }
    if idle_used > 0 {
        return (MAX_NODE_SCORE / 2 - idle_used).max(MAX_NODE_SCORE / 3);
    }
    let free_percent: i64 = used
        .iter()
        .map(|&i| i64::from(free[i]) * 100 / i64::from(MILLI_PER_GPU))
        .sum();
    (MAX_NODE_SCORE - free_percent / 10).max(MAX_NODE_SCORE / 2)
}

impl ScorePlugin for GpuPackingScore {
    fn score(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        match pod.gpu.as_deref() {
            Some(g) => packing(&snap.nodes().gpu_free[node as usize], g.count, g.milli),
            None => 0,
        }
    }

    fn normalization(&self) -> Normalization {
        Normalization::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (free per card, count, milli) -> score
        let cases: &[(&[i32], u8, u32, i64)] = &[
            (&[1000; 8], 1, 500, 25),         // idle node of 8: 33 − 8
            (&[1000, 1000], 1, 500, 31),      // idle node of 2
            (&[1000, 400, 1000], 1, 300, 96), // shares card 1: 100 − 40/10
            (&[1000, 900, 1000], 1, 300, 91), // 100 − 90/10
            (&[1000, 200, 1000], 1, 500, 49), // needs a free card: 50 − 1
            (&[1000, 200, 1000, 1000], 3, 1000, 47),
            (&[1000, 0, 1000, 1000], 4, 1000, 0), // does not fit
        ];
        for &(free, count, milli, want) in cases {
            assert_eq!(
                packing(free, count, milli),
                want,
                "{free:?} {count}x{milli}"
            );
        }
    }
}
