//! The resource scorers' usual case, cpu + memory, as one loop over every node
//! slot that the compiler turns into vector instructions.
//!
//! The scalar loops in `resource_allocation` read the nodes of the feasible list
//! by index and convert between integers and floats with Rust's saturating
//! casts: neither vectorizes, and the two scorers cost ~4 ns per node. Here the
//! scores of all slots are computed in order, in f64, and the feasible ones
//! gathered after. The arithmetic is the scalar loops' own, operation for
//! operation, on inputs where every step is exact (`EXACT_BITS`); integers move
//! in and out of floats by adding 1.5·2^52, which is exact in that range and
//! vectorizes where `as` does not. The kernel is compiled for AVX-512, AVX2 and
//! the baseline, the best the CPU has chosen at run time (`multiversion`). Rust
//! never fuses a multiply and an add, so the FMA targets round as the scalar
//! code does.
//!
//! Equality with the scalar loops: `tests::kernels_agree_with_the_scalar_loops`
//! and `tests::kernels_agree_on_every_usage_of_small_nodes`; kept scores after
//! every kind of snapshot change: `tests::kept_slot_scores_follow_every_change_to_the_table`.

use super::resource_allocation::{ResourceKind, Usage, UsageColumn};
use crate::framework::MAX_NODE_SCORE;
use crate::snapshot::{NodeIdx, SMALL_QUOTIENT_LIMIT};
use std::cell::RefCell;

/// What the kernel scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PairScore {
    /// NodeResourcesFit LeastAllocated over the non-zero usage columns.
    Least,
    /// NodeResourcesFit MostAllocated over the non-zero usage columns.
    Most,
    /// NodeResourcesBalancedAllocation over the requested usage columns.
    Balanced,
}

/// Usage and requests below 2^50 keep every sum, product and quotient below
/// exact in f64 (and a usage plus a request cannot saturate).
const EXACT_BITS: u32 = 50;
/// 1.5·2^52: adding it to x in (-2^51, 2^51) leaves x rounded to an integer in
/// the low mantissa bits.
const MAGIC: f64 = 6_755_399_441_055_744.0;
/// 2^52: an integer below it ORed into this exponent is 2^52 + x.
const TWO_52: f64 = 4_503_599_627_370_496.0;

thread_local! {
    /// The slot scores last computed on this thread, one entry per kind: the
    /// bounded selection (`framework::cycle::bounded`) asks each scorer for
    /// the nodes of one class at a time, and all classes read one computation;
    /// a parallel cycle's threads each keep the scores of their node chunk.
    static SLOT_SCORES: RefCell<[SlotScores; 3]> = RefCell::new(Default::default());
}

#[derive(Default)]
struct SlotScores {
    /// What the scores were computed from (None: nothing valid).
    key: Option<Key>,
    /// The first slot scored: `scores[k]` is slot `first + k`'s score.
    first: usize,
    scores: Vec<i64>,
}

impl SlotScores {
    /// Whether the kept scores are `key`'s and cover slots `lo..hi`.
    fn covers(&self, key: &Key, lo: usize, hi: usize) -> bool {
        self.key.as_ref() == Some(key) && self.first <= lo && hi <= self.first + self.scores.len()
    }
}

/// Where slot scores may be reused: on a table of this version
/// (`NodeTable::version`: equal versions, equal contents), and within one cycle
/// (`CycleState::fresh_cycle`) when the cycle must compute its scores afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scope {
    pub version: u64,
    pub cycle: Option<u64>,
}

/// Every input of `kernel`: the table's contents by `Scope` and which of its
/// columns are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    scope: Scope,
    columns: [(ResourceKind, Usage); 2],
    requests: (i64, i64),
    weights: (i64, i64),
    shift: u32,
}

/// Whether `score_columns` runs the kernel for these columns and requests on
/// `nodes` (ascending), given node figures in the exact range: slots between
/// the first node and the last are few enough per node.
pub(crate) fn applies(
    kind: PairScore,
    columns: &[(UsageColumn, usize)],
    requests: &[i64],
    nodes: &[NodeIdx],
) -> bool {
    let (Some(per_node), Some(&lo), Some(&hi)) = (slots_per_node(), nodes.first(), nodes.last())
    else {
        return false;
    };
    let span = (hi as usize + 1).saturating_sub(lo as usize);
    few_enough_slots(nodes.len(), span, per_node)
        && pair_of(kind, columns, requests).is_some_and(|p| p.in_range())
}

/// Whether scoring `slots` slots for `nodes` nodes stays within `per_node`
/// slots per node, where the kernel beats the scalar loop.
fn few_enough_slots(nodes: usize, slots: usize, per_node: usize) -> bool {
    nodes.saturating_mul(per_node) >= slots
}

/// The kernel's inputs from `resource_allocation::usage_columns`, when they are
/// two and (but for BalancedAllocation, which has no weights) their weights
/// sum to a power of two.
fn pair_of<'a>(
    kind: PairScore,
    columns: &[(UsageColumn<'a>, usize)],
    requests: &[i64],
) -> Option<Pair<'a>> {
    let [(a, ka), (b, kb)] = columns else {
        return None;
    };
    let (&ra, &rb) = (requests.get(*ka)?, requests.get(*kb)?);
    let all = a.weight.saturating_add(b.weight);
    if kind != PairScore::Balanced && all.count_ones() != 1 {
        return None;
    }
    Some(Pair {
        a: (*a, ra),
        b: (*b, rb),
        shift: all.trailing_zeros(),
    })
}

/// `score_pair` for the columns of `resource_allocation::usage_columns`, when
/// they are two and (but for BalancedAllocation, which has no weights) their
/// weights sum to a power of two; `requests[k]` is the pod's request for
/// configured resource k, `scope` where the columns' scores may be reused.
pub(crate) fn score_columns(
    kind: PairScore,
    scope: Scope,
    nodes: &[NodeIdx],
    columns: &[(UsageColumn, usize)],
    requests: &[i64],
    out: &mut [i64],
) -> bool {
    pair_of(kind, columns, requests).is_some_and(|pair| score_pair(kind, scope, nodes, pair, out))
}

/// The kernel's scores of slots `first..first + out.len()` straight into
/// `out`, for a cycle that sums its scores by slot; `nodes` are the feasible
/// nodes there (ascending). False (`out` unspecified) where `score_columns`
/// would not run the kernel: too few of the slots feasible, no vector unit
/// worth it, a figure outside the exact range.
pub(crate) fn score_columns_by_slot(
    kind: PairScore,
    nodes: &[NodeIdx],
    columns: &[(UsageColumn, usize)],
    requests: &[i64],
    first: usize,
    out: &mut [i64],
) -> bool {
    let Some(per_node) = slots_per_node() else {
        return false;
    };
    if !few_enough_slots(nodes.len(), out.len(), per_node) {
        return false;
    }
    pair_of(kind, columns, requests)
        .and_then(|pair| pair.slots(first..first.saturating_add(out.len())))
        .is_some_and(|part| score_slots(kind, part, out))
}

/// The kernel's inputs: the two resources' columns, each with the pod's
/// request for it, and the shift that averages NodeResourcesFit's weighted
/// scores (weights summing to 2^shift).
#[derive(Clone, Copy)]
pub(crate) struct Pair<'a> {
    pub a: (UsageColumn<'a>, i64),
    pub b: (UsageColumn<'a>, i64),
    pub shift: u32,
}

/// Scores `nodes` into `out` with the cpu/memory `pair`; a node where both
/// resources exist gets `(score_a·wa + score_b·wb) >> shift` (NodeResourcesFit)
/// or the balanced score. The slot scores are computed once per
/// scope and inputs, and kept for the next call. False, with `out`
/// unspecified, when the kernel does not apply (no vector unit worth it, too
/// few of the slots asked for, a figure outside the exact range): the caller
/// scores the scalar way.
pub(crate) fn score_pair(
    kind: PairScore,
    scope: Scope,
    nodes: &[NodeIdx],
    pair: Pair,
    out: &mut [i64],
) -> bool {
    let Pair {
        a: (a, ra),
        b: (b, rb),
        shift,
    } = pair;
    let Some(max_slots_per_node) = slots_per_node() else {
        return false;
    };
    // The slots from the first node asked for to the last (node lists are in
    // slot order): all of them in a sequential cycle, one chunk's in a
    // parallel one. A node outside (a list out of order) is caught by `gather`.
    let (Some(&lo), Some(&hi)) = (nodes.first(), nodes.last()) else {
        return true;
    };
    let (lo, hi) = (lo as usize, (hi as usize + 1).max(lo as usize + 1));
    let key = Key {
        scope,
        columns: [a.source, b.source],
        requests: (ra, rb),
        weights: (a.weight, b.weight),
        shift,
    };
    SLOT_SCORES.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return false;
        };
        let entry = &mut cache[kind as usize];
        if !entry.covers(&key, lo, hi) {
            // Another class's nodes of the same scores: score both ranges,
            // so that the classes after read one computation again.
            let (lo, hi) = match entry.key {
                Some(k) if k == key => (
                    lo.min(entry.first),
                    hi.max(entry.first + entry.scores.len()),
                ),
                _ => (lo, hi),
            };
            entry.key = None;
            if !few_enough_slots(nodes.len(), hi - lo, max_slots_per_node) {
                return false;
            }
            let Some(part) = pair.slots(lo..hi) else {
                return false;
            };
            entry.scores.resize(hi - lo, 0);
            if !score_slots(kind, part, &mut entry.scores) {
                return false;
            }
            (entry.key, entry.first) = (Some(key), lo);
        }
        gather(&entry.scores, entry.first, nodes, out)
    })
}

impl<'a> Pair<'a> {
    /// Whether the requests, weights and shift are in the range the kernel's
    /// arithmetic is exact in (the node figures are checked as it runs).
    fn in_range(&self) -> bool {
        let request_fits = |r: i64| (0..1 << EXACT_BITS).contains(&r);
        let weight_fits = |w: i64| (0..=1 << 20).contains(&w);
        request_fits(self.a.1)
            && request_fits(self.b.1)
            && weight_fits(self.a.0.weight)
            && weight_fits(self.b.0.weight)
            && self.shift <= 20
    }

    /// The pair cut to `slots`: its columns' slot `slots.start` is slot 0 of
    /// the cut. None when a column is shorter.
    fn slots(&self, slots: std::ops::Range<usize>) -> Option<Pair<'a>> {
        let cut = |c: UsageColumn<'a>| {
            Some(UsageColumn {
                alloc: c.alloc.get(slots.clone())?,
                inv: c.inv.get(slots.clone())?,
                used: c.used.get(slots.clone())?,
                ..c
            })
        };
        Some(Pair {
            a: (cut(self.a.0)?, self.a.1),
            b: (cut(self.b.0)?, self.b.1),
            shift: self.shift,
        })
    }
}

/// `out[k] = slot_scores[nodes[k] - first]`; false, with `out` unspecified,
/// when a node lies outside the kept slots. Scalar on purpose: the AVX-512
/// build's gather instructions were slower on the CPU it was measured on
/// (`benches/README.md`).
fn gather(slot_scores: &[i64], first: usize, nodes: &[NodeIdx], out: &mut [i64]) -> bool {
    let Some(last) = slot_scores.len().checked_sub(1) else {
        return nodes.is_empty();
    };
    // Checked for all nodes at once after the loop: no branch per node.
    let mut outside = false;
    for (o, &n) in out.iter_mut().zip(nodes) {
        let k = (n as usize).wrapping_sub(first);
        outside |= k > last;
        *o = slot_scores[k.min(last)];
    }
    !outside
}

/// How many slots the kernel may score per node asked for. Per slot it costs
/// about 1/3.6 of the scalar loop's per node with AVX2 and 1/5 with AVX-512
/// (callgrind and criterion when the kernel was introduced); the bounded selection asks for a
/// few classes of nodes in turn, and all read the scores computed for the
/// first, so the AVX-512 build goes dense a little past its break-even. None
/// without AVX2: the baseline build (no packed 64-bit compare) is no faster per
/// slot than the scalar loop per node.
pub(crate) fn slots_per_node() -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        // multiversion takes its AVX-512 build only with Ice Lake's extensions.
        if has!("avx512f") && has!("avx512vbmi2") && has!("avx512dq") && has!("avx512vl") {
            Some(10)
        } else if has!("avx2") {
            Some(4)
        } else {
            None
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// The score of every slot into `out` (as long as the columns); false when a
/// figure lies outside the range the arithmetic is exact in.
pub(crate) fn score_slots(kind: PairScore, pair: Pair, out: &mut [i64]) -> bool {
    if !pair.in_range() {
        return false;
    }
    let Pair {
        a: (a, _),
        b: (b, _),
        ..
    } = pair;
    let len = out.len();
    let cols = [a.alloc, a.used, b.alloc, b.used];
    if cols.iter().any(|c| c.len() < len) || a.inv.len() < len || b.inv.len() < len {
        return false;
    }
    let bits = kernel(kind, pair, out);
    // Allocatable below SMALL_QUOTIENT_LIMIT is `small_quotient`'s domain.
    let alloc_ok = bits.alloc < SMALL_QUOTIENT_LIMIT as u64;
    let used_ok = bits.used >> EXACT_BITS == 0;
    alloc_ok && used_ok
}

/// The OR of every allocatable and every usage figure read: tells after the
/// loop whether all were in range (cheaper than a branch per node).
struct Bits {
    alloc: u64,
    used: u64,
}

/// `x` as f64 for 0 <= x < 2^52.
#[inline(always)]
fn to_f64(x: i64) -> f64 {
    f64::from_bits(x as u64 | TWO_52.to_bits()) - TWO_52
}

/// An integer-valued `s` in [0, 2^51) as i64.
#[inline(always)]
fn to_i64(s: f64) -> i64 {
    (s + MAGIC).to_bits() as i64 - MAGIC.to_bits() as i64
}

/// floor(v) for 0 <= v < 2^51: rounded to the nearest integer, one less where
/// that rounded up.
#[inline(always)]
fn floor(v: f64) -> f64 {
    let r = (v + MAGIC) - MAGIC;
    if r > v {
        r - 1.0
    } else {
        r
    }
}

/// `resource_allocation::small_quotient`'s floor((x + 0.5)·inv), for its
/// domain: there v = (x + 0.5)·inv is at least 2^-45 from any integer, so
/// v - 0.5 (exact for v >= 0.5, within 2^-54 below) is never a tie and rounds
/// to floor(v), without the correction `floor` needs.
#[inline(always)]
fn small_quotient(x: f64, inv: f64) -> f64 {
    ((x + 0.5) * inv - 0.5 + MAGIC) - MAGIC
}

#[inline(always)]
fn min(x: f64, y: f64) -> f64 {
    if x < y {
        x
    } else {
        y
    }
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn kernel(kind: PairScore, pair: Pair, out: &mut [i64]) -> Bits {
    let Pair {
        a: (a, ra),
        b: (b, rb),
        shift,
    } = pair;
    let len = out.len();
    // Every column cut to one length: the compiler then checks each index once.
    let (a_alloc, a_used, a_inv) = (&a.alloc[..len], &a.used[..len], &a.inv[..len]);
    let (b_alloc, b_used, b_inv) = (&b.alloc[..len], &b.used[..len], &b.inv[..len]);
    let (raf, rbf) = (to_f64(ra), to_f64(rb));
    let (wa, wb) = (to_f64(a.weight), to_f64(b.weight));
    let scale = 1.0 / (1u64 << shift) as f64;
    let hundred = MAX_NODE_SCORE as f64;
    let (mut alloc_bits, mut used_bits) = (0u64, 0u64);
    // One loop per kind, the kind chosen once.
    macro_rules! each_slot {
        (|$x:ident, $y:ident, $ca:ident, $cb:ident, $ia:ident, $ib:ident| $score:expr) => {
            for i in 0..len {
                let (xa, xb, ua, ub) = (a_alloc[i], b_alloc[i], a_used[i], b_used[i]);
                alloc_bits |= xa as u64 | xb as u64;
                used_bits |= ua as u64 | ub as u64;
                let ($ca, $cb) = (to_f64(xa), to_f64(xb));
                let ($x, $y) = (to_f64(ua) + raf, to_f64(ub) + rbf);
                let ($ia, $ib) = (a_inv[i], b_inv[i]);
                out[i] = to_i64($score);
            }
        };
    }
    // NodeResourcesFit: a resource the node lacks (allocatable 0) is left out.
    let fit = |sa: f64, sb: f64, ca: f64, cb: f64| {
        if ca > 0.0 && cb > 0.0 {
            floor((sa * wa + sb * wb) * scale)
        } else if ca > 0.0 {
            sa
        } else if cb > 0.0 {
            sb
        } else {
            0.0
        }
    };
    match kind {
        PairScore::Most => each_slot!(|x, y, ca, cb, ia, ib| {
            // requested.clamp(0, capacity): requests are >= 0 here.
            let sa = small_quotient(min(x, ca) * hundred, ia);
            let sb = small_quotient(min(y, cb) * hundred, ib);
            fit(sa, sb, ca, cb)
        }),
        PairScore::Least => each_slot!(|x, y, ca, cb, ia, ib| {
            // 0 when over-committed.
            let (fa, fb) = (ca - x, cb - y);
            let sa = if fa < 0.0 {
                0.0
            } else {
                small_quotient(fa * hundred, ia)
            };
            let sb = if fb < 0.0 {
                0.0
            } else {
                small_quotient(fb * hundred, ib)
            };
            fit(sa, sb, ca, cb)
        }),
        PairScore::Balanced => each_slot!(|x, y, ca, cb, _ia, _ib| {
            // The two shares, capped at 1; their deviation is half their distance.
            let sa = min(x / ca, 1.0);
            let sb = min(y / cb, 1.0);
            let std = ((sa - sb) * 0.5).abs();
            if ca > 0.0 && cb > 0.0 {
                floor((1.0 - std) * hundred)
            } else {
                hundred
            }
        }),
    }
    Bits {
        alloc: alloc_bits,
        used: used_bits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::node_resources_balanced_allocation::balanced_pair;
    use crate::plugins::node_resources_fit::{least_requested_small, most_requested_small};
    use crate::plugins::resource_allocation::weighted_average;
    use proptest::prelude::*;

    /// Node columns of one resource.
    struct Resource {
        alloc: Vec<i64>,
        used: Vec<i64>,
        inv: Vec<f64>,
    }

    impl Resource {
        fn new(alloc: Vec<i64>, used: Vec<i64>) -> Resource {
            let inv = alloc
                .iter()
                .map(|&a| if a > 0 { 1.0 / a as f64 } else { 0.0 })
                .collect();
            Resource { alloc, used, inv }
        }

        fn column(&self, weight: i64) -> UsageColumn<'_> {
            UsageColumn {
                alloc: &self.alloc,
                inv: &self.inv,
                used: &self.used,
                weight,
                source: (ResourceKind::Cpu, Usage::NonZero),
            }
        }
    }

    /// The kernel's scores of every slot, or None where it declines.
    fn kernel_scores(
        kind: PairScore,
        (a, ra): (UsageColumn, i64),
        (b, rb): (UsageColumn, i64),
    ) -> Option<Vec<i64>> {
        let mut out = vec![-1; a.alloc.len()];
        let shift = (a.weight + b.weight).trailing_zeros();
        let pair = Pair {
            a: (a, ra),
            b: (b, rb),
            shift,
        };
        score_slots(kind, pair, &mut out).then_some(out)
    }

    /// The scalar loops' scores of every slot.
    fn scalar_scores(
        kind: PairScore,
        (a, ra): (UsageColumn, i64),
        (b, rb): (UsageColumn, i64),
    ) -> Vec<i64> {
        let nodes: Vec<NodeIdx> = (0..a.alloc.len() as NodeIdx).collect();
        let mut out = vec![-1; nodes.len()];
        let columns = [(a, 0), (b, 1)];
        match kind {
            PairScore::Least => {
                weighted_average(&nodes, &columns, &[ra, rb], &mut out, least_requested_small)
            }
            PairScore::Most => {
                weighted_average(&nodes, &columns, &[ra, rb], &mut out, most_requested_small)
            }
            PairScore::Balanced => balanced_pair(&nodes, (a, ra), (b, rb), &mut out),
        }
        out
    }

    const KINDS: [PairScore; 3] = [PairScore::Least, PairScore::Most, PairScore::Balanced];

    /// Allocatable: absent, small, or up to the kernel's limit.
    fn alloc() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(0i64),
            1i64..2_000,
            1i64..(1 << 36),
            (SMALL_QUOTIENT_LIMIT - 1_000)..SMALL_QUOTIENT_LIMIT,
        ]
    }

    /// A node's usage: near a multiple of a hundredth of its allocatable (where
    /// quotients land on integers), anywhere, or past allocatable.
    fn node() -> impl Strategy<Value = (i64, i64)> {
        (alloc(), 0i64..=150, -2i64..=2, 0i64..(1 << 49)).prop_map(|(a, pct, d, any)| {
            let used = if pct == 150 {
                any
            } else {
                (a / 100 * pct + d).max(0)
            };
            (a, used)
        })
    }

    proptest! {
        #[test]
        fn kernels_agree_with_the_scalar_loops(
            cpu in prop::collection::vec(node(), 1..48),
            mem in prop::collection::vec(node(), 48),
            ra in prop_oneof![Just(0i64), 0i64..100_000, 0i64..(1 << 49)],
            rb in prop_oneof![Just(0i64), 0i64..(1 << 49)],
            weights in prop_oneof![Just((1i64, 1i64)), Just((1, 3)), Just((2, 2)), Just((5, 3)), Just((1, 0))],
        ) {
            let n = cpu.len();
            let a = Resource::new(cpu.iter().map(|c| c.0).collect(), cpu.iter().map(|c| c.1).collect());
            let b = Resource::new(mem[..n].iter().map(|c| c.0).collect(), mem[..n].iter().map(|c| c.1).collect());
            for kind in KINDS {
                let pair = ((a.column(weights.0), ra), (b.column(weights.1), rb));
                let kernel = kernel_scores(kind, pair.0, pair.1);
                // Everything here is in the kernel's range: it must not decline.
                prop_assert!(kernel.is_some(), "{kind:?} declined");
                prop_assert_eq!(kernel, Some(scalar_scores(kind, pair.0, pair.1)), "{:?}", kind);
            }
        }
    }

    #[test]
    fn kernels_agree_on_every_usage_of_small_nodes() {
        // Every usage of nodes up to 300 millicores: all the points where a
        // quotient or a share lands exactly on an integer.
        for c in 1..=300i64 {
            let used: Vec<i64> = (0..=c + 2).collect();
            let a = Resource::new(vec![c; used.len()], used.clone());
            let b = Resource::new(
                vec![300; used.len()],
                used.iter().map(|u| u * 7 % 301).collect(),
            );
            for kind in KINDS {
                for r in [0, 1, 50] {
                    let pair = ((a.column(1), r), (b.column(1), 0));
                    assert_eq!(
                        kernel_scores(kind, pair.0, pair.1),
                        Some(scalar_scores(kind, pair.0, pair.1)),
                        "{kind:?} c={c} r={r}"
                    );
                }
            }
        }
    }

    #[test]
    fn figures_outside_the_exact_range_are_declined() {
        let ok = Resource::new(vec![64_000, 0], vec![1_000, 0]);
        let huge_alloc = Resource::new(vec![SMALL_QUOTIENT_LIMIT, 1], vec![0, 0]);
        let huge_used = Resource::new(vec![64_000, 1], vec![1 << EXACT_BITS, 0]);
        let negative = Resource::new(vec![-1, 1], vec![0, 0]);
        for kind in KINDS {
            assert!(kernel_scores(kind, (ok.column(1), 0), (ok.column(1), 0)).is_some());
            for bad in [&huge_alloc, &huge_used, &negative] {
                assert!(kernel_scores(kind, (bad.column(1), 0), (ok.column(1), 0)).is_none());
                assert!(kernel_scores(kind, (ok.column(1), 0), (bad.column(1), 0)).is_none());
            }
            for r in [-1, 1 << EXACT_BITS, i64::MAX] {
                assert!(kernel_scores(kind, (ok.column(1), r), (ok.column(1), 0)).is_none());
            }
            assert!(kernel_scores(kind, (ok.column(-1), 0), (ok.column(1), 0)).is_none());
        }
    }

    /// A scope no other test shares: equal scopes promise equal columns.
    fn new_scope(cycle: Option<u64>) -> Scope {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let version = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Scope { version, cycle }
    }

    #[test]
    fn feasible_nodes_are_gathered_from_the_slot_scores() {
        // Dense enough for the kernel: every slot but one feasible.
        let n = 64;
        let a = Resource::new(vec![64_000; n], (0..n as i64).map(|i| i * 900).collect());
        let b = Resource::new(vec![1 << 30; n], (0..n as i64).map(|i| i << 23).collect());
        let nodes: Vec<NodeIdx> = (0..n as NodeIdx).filter(|&i| i != 5).collect();
        let columns = [(a.column(1), 0), (b.column(1), 1)];
        let requests = [500, 1 << 20];
        for kind in KINDS {
            let mut out = vec![-1; nodes.len()];
            let used = score_columns(kind, new_scope(None), &nodes, &columns, &requests, &mut out);
            // Without AVX2 the caller is told to score the scalar way.
            assert_eq!(used, slots_per_node().is_some(), "{kind:?}");
            if used {
                let all = scalar_scores(kind, (a.column(1), 500), (b.column(1), 1 << 20));
                let want: Vec<i64> = nodes.iter().map(|&i| all[i as usize]).collect();
                assert_eq!(out, want, "{kind:?}");
            }
            // A parallel cycle's chunks, each on its own, the later first:
            // each scores its own slots and gathers from them.
            let scope = new_scope(None);
            for chunk in [&nodes[30..], &nodes[..30], &nodes[10..20]] {
                let mut out = vec![-1; chunk.len()];
                if score_columns(kind, scope, chunk, &columns, &requests, &mut out) {
                    let all = scalar_scores(kind, (a.column(1), 500), (b.column(1), 1 << 20));
                    let want: Vec<i64> = chunk.iter().map(|&i| all[i as usize]).collect();
                    assert_eq!(out, want, "{kind:?} {chunk:?}");
                }
            }
            // A list out of slot order, a node outside its ends' slots: the
            // caller is told to score the scalar way, never given another
            // node's score.
            let scope = new_scope(None);
            let mut three = [0i64; 3];
            let unordered = [40, 10, 41];
            assert!(!score_columns(
                kind, scope, &unordered, &columns, &requests, &mut three
            ));
            // Too few of the slots between the nodes asked for: the scalar
            // loop is cheaper.
            let mut two = [0i64; 2];
            let scope = new_scope(None);
            assert!(!score_columns(
                kind,
                scope,
                &[3, 60],
                &columns,
                &requests,
                &mut two
            ));
        }
    }

    #[test]
    fn slot_scores_are_kept_for_their_scope_only() {
        let n = 32;
        let alloc = vec![64_000; n];
        let before = Resource::new(alloc.clone(), vec![8_000; n]);
        let after = Resource::new(alloc, vec![40_000; n]);
        let nodes: Vec<NodeIdx> = (0..n as NodeIdx).collect();
        let score = |r: &Resource, scope: Scope, nodes: &[NodeIdx]| {
            let mut out = vec![-1; nodes.len()];
            let pair = ((r.column(1), 0), (r.column(1), 0));
            let pair = Pair {
                a: pair.0,
                b: pair.1,
                shift: 1,
            };
            score_pair(PairScore::Most, scope, nodes, pair, &mut out).then_some(out)
        };
        let (at_8000, at_40000) = (Some(vec![12; n]), Some(vec![62; n]));
        let first = new_scope(None);
        if slots_per_node().is_none() {
            assert_eq!(score(&before, first, &nodes), None);
            return;
        }
        assert_eq!(score(&before, first, &nodes), at_8000);
        // One scope, one content: the kept scores answer, for any nodes.
        assert_eq!(score(&after, first, &nodes), at_8000);
        assert_eq!(score(&after, first, &[7]), Some(vec![12]));
        // A new version: computed again.
        let second = new_scope(None);
        assert_eq!(score(&after, second, &nodes), at_40000);
        // A fresh cycle keeps its scores for itself alone.
        let cycle = new_scope(Some(7));
        assert_eq!(score(&before, cycle, &nodes), at_8000);
        assert_eq!(score(&after, cycle, &nodes), at_8000);
        let next = Scope {
            cycle: Some(8),
            ..cycle
        };
        assert_eq!(score(&after, next, &nodes), at_40000);
    }

    #[test]
    fn kept_slot_scores_follow_every_change_to_the_table() {
        use crate::config::{BalancedAllocationArgs, NodeResourcesFitArgs, ScoringStrategyType};
        use crate::framework::{CycleState, ScorePlugin};
        use crate::model::capacity::CapacityRules;
        use crate::plugins::{NodeResourcesBalancedAllocation, NodeResourcesFit};
        use crate::snapshot::Snapshot;
        use crate::testkit::{node, pod, GI};
        let mut most = NodeResourcesFitArgs::default();
        most.scoring_strategy.kind = ScoringStrategyType::MostAllocated;
        let plugins: Vec<Box<dyn ScorePlugin>> = vec![
            Box::new(NodeResourcesFit::new(&NodeResourcesFitArgs::default()).unwrap()),
            Box::new(NodeResourcesFit::new(&most).unwrap()),
            Box::new(
                NodeResourcesBalancedAllocation::new(&BalancedAllocationArgs::default()).unwrap(),
            ),
        ];
        let mut s = Snapshot::new(CapacityRules::default());
        for i in 0..24 {
            s.upsert_node(node(&format!("n{i}"), 8_000 + 500 * i, (16 + i) * GI).build());
        }
        let incoming = pod("incoming", 1_500, 3 * GI).build();
        // Scores of every live node, in one call (the kernel's way, scores kept
        // between cycles) and node by node (the plugin's plain `score`).
        let check = |s: &Snapshot, step: &str| {
            let nodes: Vec<NodeIdx> = s.nodes().live_indices().collect();
            let state = CycleState::default();
            for p in &plugins {
                let mut out = vec![-1; nodes.len()];
                p.score_nodes(&state, &incoming, s, &nodes, &mut out);
                let one_by_one: Vec<i64> = nodes
                    .iter()
                    .map(|&n| p.score(&state, &incoming, s, n))
                    .collect();
                assert_eq!(out, one_by_one, "{} after {step}", p.name());
            }
        };
        check(&s, "the nodes came");
        for i in 0..12 {
            let p = pod(&format!("p{i}"), 700 * i, i * GI)
                .on(&format!("n{}", i % 5))
                .arc();
            s.upsert_pod(p).unwrap();
            check(&s, "a pod came");
        }
        s.assume(pod("assumed", 3_000, 6 * GI).arc(), 9).unwrap();
        check(&s, "a pod was assumed");
        s.upsert_node(node("n3", 2_000, 4 * GI).build());
        check(&s, "a node shrank");
        assert!(s.remove_pod(&crate::model::PodKey::new("default", "p4")));
        check(&s, "a pod went");
        s.remove_node(crate::model::Sym::new("n1"));
        check(&s, "a node went");
        s.upsert_node(node("n1", 30_000, 64 * GI).build());
        check(&s, "a node came back");
    }
}
