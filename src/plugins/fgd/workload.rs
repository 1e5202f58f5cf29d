//! The target workload and a node's expected GPU fragmentation under it, as
//! the FGD paper defines them (Weng et al., "Beware of Fragmentation",
//! USENIX ATC '23, §4) and its simulator computes them.
//!
//! **Target workload.** Pods are grouped by shape (milli-CPU, milli per GPU,
//! GPU count, acceptable GPU models); shapes are taken from the most frequent
//! down until they cover 95% of the pods, and their frequencies renormalized
//! to sum to 1 (ties between equally frequent shapes: the larger shape first,
//! comparing CPU, then milli, then count, then models).
//!
//! **Fragmentation of a node for one pod shape** (its GPU milli that shape
//! cannot use): all the node's free GPU milli when the shape asks for no GPU,
//! when the node's model is not one it accepts, when the node's free CPU is
//! short of it, or when no set of cards holds it; otherwise (the shape fits)
//! the free milli of the cards too small for one of its GPUs.
//!
//! **Node fragmentation** `F(n)` is the frequency-weighted sum over the
//! typical shapes. The sums follow the simulator's order (per kind of fit,
//! then the kinds), so scores quantized from them agree with its.

use crate::model::{PodGpu, Sym};
use smallvec::SmallVec;

/// The share of the pods the typical shapes cover.
pub const POPULARITY: f64 = 0.95;

/// A pod's shape as the fragmentation measure sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    pub milli_cpu: i64,
    /// Milli of each GPU; 0 for a pod without GPUs.
    pub gpu_milli: u32,
    pub gpu_count: u8,
    /// Acceptable models (empty: any), in order.
    pub models: SmallVec<[Sym; 2]>,
}

impl Shape {
    /// The shape of a pod requesting `milli_cpu` (the scorers' non-zero CPU) and `gpu`.
    pub fn of(milli_cpu: i64, gpu: Option<&PodGpu>) -> Shape {
        match gpu {
            Some(g) => Shape {
                milli_cpu,
                gpu_milli: g.milli,
                gpu_count: g.count,
                models: g.models.clone(),
            },
            None => Shape {
                milli_cpu,
                gpu_milli: 0,
                gpu_count: 0,
                models: SmallVec::new(),
            },
        }
    }

    fn models_key(&self) -> String {
        let v: Vec<&str> = self.models.iter().map(|m| m.as_str()).collect();
        v.join("|")
    }

    fn accepts(&self, model: Option<Sym>) -> bool {
        self.models.is_empty() || model.is_some_and(|m| self.models.contains(&m))
    }
}

/// A typical shape and its frequency (the frequencies sum to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Typical {
    pub shape: Shape,
    pub frequency: f64,
}

/// The typical pods of a workload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    pub typical: Vec<Typical>,
}

/// The kinds of fit the simulator sums separately (its Q1..Q4, XL, XR, no access).
const KINDS: usize = 7;
const LACK_BOTH: usize = 0;
const LACK_GPU: usize = 1;
const SATISFIED: usize = 2;
const LACK_CPU: usize = 3;
const NO_GPU_FITS_CPU: usize = 4;
const NO_GPU_LACKS_CPU: usize = 5;
const NO_ACCESS: usize = 6;

impl Workload {
    /// The typical pods of `shapes` (one entry per pod): the most frequent
    /// shapes covering `POPULARITY` of the pods, renormalized.
    pub fn from_shapes(shapes: impl IntoIterator<Item = Shape>) -> Workload {
        let mut counts: foldhash::HashMap<Shape, u64> = Default::default();
        let mut total = 0u64;
        for s in shapes {
            *counts.entry(s).or_default() += 1;
            total += 1;
        }
        Workload::from_counts(counts.into_iter().collect(), total)
    }

    /// As [`from_shapes`](Self::from_shapes), from shape counts.
    pub fn from_counts(mut counts: Vec<(Shape, u64)>, total: u64) -> Workload {
        if total == 0 {
            return Workload::default();
        }
        counts.sort_by(|(a, ca), (b, cb)| {
            cb.cmp(ca)
                .then(b.milli_cpu.cmp(&a.milli_cpu))
                .then(b.gpu_milli.cmp(&a.gpu_milli))
                .then(b.gpu_count.cmp(&a.gpu_count))
                .then_with(|| b.models_key().cmp(&a.models_key()))
        });
        let wanted = POPULARITY * 100.0 * total as f64 / 100.0;
        let mut covered = 0u64;
        let mut taken = 0usize;
        while (covered as f64) < wanted && taken < counts.len() {
            covered += counts[taken].1;
            taken += 1;
        }
        // All shapes taken: the plain shares; a cut: divided by the share covered.
        let cut = taken < counts.len();
        let covered_share = covered as f64 / total as f64;
        let typical = counts
            .into_iter()
            .take(taken)
            .map(|(shape, c)| {
                let share = c as f64 / total as f64;
                Typical {
                    frequency: if cut { share / covered_share } else { share },
                    shape,
                }
            })
            .collect();
        Workload { typical }
    }

    pub fn is_empty(&self) -> bool {
        self.typical.is_empty()
    }

    /// `F(n)`: the expected GPU milli of a node (free CPU `cpu_left`, cards
    /// with free milli `free`, of `model`) that the workload cannot use.
    pub fn fragmentation(&self, cpu_left: i64, free: &[i32], model: Option<Sym>) -> f64 {
        let mut kinds = [0f64; KINDS];
        let left_total: i64 = free.iter().map(|&f| i64::from(f)).sum();
        for t in &self.typical {
            let s = &t.shape;
            let cpu_fits = cpu_left >= s.milli_cpu;
            let kind = if s.gpu_milli == 0 {
                if cpu_fits {
                    NO_GPU_FITS_CPU
                } else {
                    NO_GPU_LACKS_CPU
                }
            } else if !s.accepts(model) {
                NO_ACCESS
            } else {
                let milli = i64::from(s.gpu_milli);
                let cards = free.iter().filter(|&&f| i64::from(f) >= milli).count();
                match (cards >= usize::from(s.gpu_count.max(1)), cpu_fits) {
                    (true, true) => SATISFIED,
                    (true, false) => LACK_CPU,
                    (false, true) => LACK_GPU,
                    (false, false) => LACK_BOTH,
                }
            };
            if kind == SATISFIED {
                let milli = i64::from(s.gpu_milli);
                let too_small: i64 = free
                    .iter()
                    .map(|&f| i64::from(f))
                    .filter(|&f| f < milli)
                    .sum();
                kinds[LACK_GPU] += t.frequency * too_small as f64;
                kinds[SATISFIED] += t.frequency * (left_total - too_small) as f64;
            } else {
                kinds[kind] += t.frequency * left_total as f64;
            }
        }
        kinds
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != SATISFIED)
            .map(|(_, v)| *v)
            .sum()
    }
}

/// The FGD score of a move that changes a node's fragmentation from `before`
/// to `after`: `⌊100 · sigmoid((before − after) / 1000)⌋`, 0..=100, higher
/// for less growth (the simulator's quantization, which makes nodes tie).
pub fn score_of(before: f64, after: f64) -> i64 {
    let x = (before - after) / 1000.0;
    let s = 1.0 / (1.0 + (-x).exp());
    (s * 100.0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(cpu: i64, milli: u32, count: u8) -> Shape {
        Shape {
            milli_cpu: cpu,
            gpu_milli: milli,
            gpu_count: count,
            models: SmallVec::new(),
        }
    }

    #[test]
    fn typical_pods_cover_the_popular_shapes() {
        // 10 pods: 5 of A, 3 of B, 1 of C, 1 of D. 95% needs A, B, C and D? 5+3+1 = 9 < 9.5.
        let (a, b, c, d) = (
            shape(1000, 500, 1),
            shape(2000, 1000, 1),
            shape(500, 0, 0),
            shape(4000, 1000, 2),
        );
        let mut pods = vec![a.clone(); 5];
        pods.extend(vec![b.clone(); 3]);
        pods.push(c.clone());
        pods.push(d.clone());
        let w = Workload::from_shapes(pods);
        assert_eq!(w.typical.len(), 4);
        assert_eq!(w.typical[0].shape, a);
        assert_eq!(w.typical[1].shape, b);
        // C and D tie at 1: the larger shape (CPU first) comes first.
        assert_eq!(w.typical[2].shape, d);
        let sum: f64 = w.typical.iter().map(|t| t.frequency).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        // 20 pods, one shape of 1 pod left out: the others renormalized.
        let mut pods = vec![a.clone(); 19];
        pods.push(b.clone());
        let w = Workload::from_shapes(pods);
        assert_eq!(w.typical.len(), 1);
        assert_eq!(w.typical[0].frequency, 1.0);
    }

    #[test]
    fn fragmentation_table() {
        // One typical pod: half a GPU and 1 CPU.
        let w = Workload {
            typical: vec![Typical {
                shape: shape(1000, 500, 1),
                frequency: 1.0,
            }],
        };
        // (cpu left, free per card) -> F
        let cases: &[(i64, &[i32], f64)] = &[
            (8000, &[1000, 1000], 0.0),   // fits: nothing fragmented
            (8000, &[300, 1000], 300.0),  // card 0 too small for half a GPU
            (8000, &[300, 200], 500.0),   // fits nowhere: all free milli
            (500, &[1000, 1000], 2000.0), // CPU short: all free milli
            (8000, &[], 0.0),
        ];
        for &(cpu, free, want) in cases {
            assert_eq!(w.fragmentation(cpu, free, None), want, "{cpu} {free:?}");
        }
        // A pod without GPUs: every free GPU milli is fragmented for it.
        let cpu_only = Workload {
            typical: vec![Typical {
                shape: shape(1000, 0, 0),
                frequency: 1.0,
            }],
        };
        assert_eq!(cpu_only.fragmentation(8000, &[1000, 400], None), 1400.0);
        // A model the shape does not accept: all free milli.
        let mut t4 = shape(1000, 500, 1);
        t4.models.push(Sym::new("T4"));
        let t4 = Workload {
            typical: vec![Typical {
                shape: t4,
                frequency: 1.0,
            }],
        };
        assert_eq!(
            t4.fragmentation(8000, &[1000], Some(Sym::new("A10"))),
            1000.0
        );
        assert_eq!(t4.fragmentation(8000, &[1000], Some(Sym::new("T4"))), 0.0);
    }

    #[test]
    fn scores_quantize_the_sigmoid() {
        assert_eq!(score_of(0.0, 0.0), 50);
        assert_eq!(score_of(0.0, 500.0), 37); // sigmoid(-0.5) = 0.3775
        assert_eq!(score_of(500.0, 0.0), 62); // sigmoid(0.5) = 0.6225
        assert_eq!(score_of(0.0, 8000.0), 0);
    }
}
