//! What the resource scorers share (upstream's `resource_allocation.go`): how a
//! configured resource name maps to a node's allocatable and requested figures,
//! and how the incoming pod's request for it is counted.

use crate::config::{default_cpu_mem, ResourceWeight};
use crate::model::{Pod, Sym};
use crate::snapshot::{NodeIdx, Snapshot};
use smallvec::SmallVec;

/// Where a configured resource's figures live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceKind {
    Cpu,
    Memory,
    EphemeralStorage,
    /// Extended, hugepages and other scalar resources.
    Scalar(Sym),
    /// Names upstream never scores (e.g. `pods`, unprefixed unknown names): always skipped.
    Unscored,
}

impl ResourceKind {
    pub(crate) fn of(name: &str) -> ResourceKind {
        match name {
            "cpu" => ResourceKind::Cpu,
            "memory" => ResourceKind::Memory,
            "ephemeral-storage" => ResourceKind::EphemeralStorage,
            n if is_scalar_resource_name(n) => ResourceKind::Scalar(Sym::new(n)),
            _ => ResourceKind::Unscored,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WeightedResource {
    pub kind: ResourceKind,
    pub weight: i64,
}

/// Resolves configured resources; an empty list means cpu and memory with weight 1,
/// as upstream's defaulting does.
pub(crate) fn resolve(resources: &[ResourceWeight]) -> Vec<WeightedResource> {
    let defaults;
    let list = if resources.is_empty() {
        defaults = default_cpu_mem();
        &defaults
    } else {
        resources
    };
    list.iter()
        .map(|r| WeightedResource {
            kind: ResourceKind::of(&r.name),
            weight: r.weight,
        })
        .collect()
}

/// Which request figures a scorer counts for cpu and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    /// Zero cpu/memory requests count as 100m / 200MiB (NodeResourcesFit's strategies).
    NonZero,
    /// Requests as they are (NodeResourcesBalancedAllocation, upstream's `useRequested`).
    Requested,
}

/// Extended resources: a domain-prefixed name outside `kubernetes.io/` (upstream's
/// `IsExtendedResourceName`; names reach us validated by the API server).
pub(crate) fn is_extended_resource_name(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// Upstream's `IsScalarResourceName`: the names NodeInfo tracks besides cpu,
/// memory, ephemeral-storage and pods.
pub(crate) fn is_scalar_resource_name(name: &str) -> bool {
    is_extended_resource_name(name)
        || name.starts_with("hugepages-")
        || name.contains("kubernetes.io/")
        || name.starts_with("attachable-volumes-")
}

/// The incoming pod's request for each resource, in the order of `resources`.
pub(crate) fn pod_requests(
    pod: &Pod,
    resources: &[WeightedResource],
    usage: Usage,
) -> SmallVec<[i64; 4]> {
    let r = &pod.requests;
    let (cpu, mem) = match usage {
        Usage::NonZero => pod.non_zero_cpu_mem(),
        Usage::Requested => (r.milli_cpu, r.memory),
    };
    resources
        .iter()
        .map(|w| match w.kind {
            ResourceKind::Cpu => cpu,
            ResourceKind::Memory => mem,
            ResourceKind::EphemeralStorage => r.ephemeral_storage,
            ResourceKind::Scalar(s) => r.scalar(s),
            ResourceKind::Unscored => 0,
        })
        .collect()
}

/// (allocatable, requested including the pod) of one resource on `node`.
/// (0, 0) tells the scorer to leave the resource out: the node lacks it, or it is
/// a scalar resource the pod does not request.
pub(crate) fn allocatable_requested(
    snap: &Snapshot,
    node: NodeIdx,
    kind: ResourceKind,
    pod_request: i64,
    usage: Usage,
) -> (i64, i64) {
    let t = snap.nodes();
    let i = node as usize;
    match kind {
        ResourceKind::Cpu => {
            let used = match usage {
                Usage::NonZero => t.nonzero_cpu[i],
                Usage::Requested => t.req_cpu[i],
            };
            (t.alloc_cpu[i], used.saturating_add(pod_request))
        }
        ResourceKind::Memory => {
            let used = match usage {
                Usage::NonZero => t.nonzero_mem[i],
                Usage::Requested => t.req_mem[i],
            };
            (t.alloc_mem[i], used.saturating_add(pod_request))
        }
        ResourceKind::EphemeralStorage => {
            (t.alloc_eph[i], t.req_eph[i].saturating_add(pod_request))
        }
        ResourceKind::Scalar(_) if pod_request == 0 => (0, 0),
        ResourceKind::Scalar(s) => {
            let alloc = t.node[i].allocatable.scalars.iter().find(|(n, _)| *n == s);
            match alloc {
                Some(&(_, a)) => (a, t.req_scalar(node, s).saturating_add(pod_request)),
                None => (0, 0),
            }
        }
        ResourceKind::Unscored => (0, 0),
    }
}

/// `x / c` rounded down for 0 <= x, 0 < c, given `inv` = 1/c as f64: a multiply
/// and one correction step instead of a division (a 64-bit division costs tens
/// of cycles, and the resource scorers divide for every node and resource).
/// For x < 2^52, x·inv is within (x/c)·2^-51 < 1 of x/c, so the estimate is off
/// by at most one, which the two integer checks repair.
#[inline]
pub(crate) fn div_by_reciprocal(x: i64, c: i64, inv: f64) -> i64 {
    const FAST: i64 = 1 << 52;
    if !(0..FAST).contains(&x) || c <= 0 || c >= FAST {
        return if c > 0 { x / c } else { 0 };
    }
    let q = (x as f64 * inv) as i64;
    q + i64::from((q + 1) * c <= x) - i64::from(q * c > x)
}

/// `x / c` rounded down for 0 <= x <= 100·c and 0 < c < 2^43
/// (`snapshot::SMALL_QUOTIENT_LIMIT`), given `inv` = 1/c as f64: one multiply, no
/// correction. x/c has denominator c, so (x + 0.5)/c is at least 0.5/c = 2^-44
/// away from any integer; x + 0.5 is exact, and the two roundings (of 1/c and of
/// the product) move a value of at most 100.5 by under 100.5·2^-52 < 2^-45, so
/// the truncation lands on the same integer.
#[inline]
pub(crate) fn small_quotient(x: i64, inv: f64) -> i64 {
    ((x as f64 + 0.5) * inv) as i64
}

/// One configured resource as node columns.
#[derive(Clone, Copy)]
pub(crate) struct UsageColumn<'a> {
    pub alloc: &'a [i64],
    /// 1 / alloc, for `div_by_reciprocal`.
    pub inv: &'a [f64],
    pub used: &'a [i64],
    pub weight: i64,
    /// Which columns these are.
    pub source: (ResourceKind, Usage),
}

/// The node columns of each configured resource, when all of them are cpu, memory
/// or ephemeral storage (None otherwise: scalar resources live per node).
/// Unscored names are dropped, as `allocatable_requested` leaves them out.
pub(crate) fn usage_columns<'a>(
    t: &'a crate::snapshot::NodeTable,
    resources: &[WeightedResource],
    usage: Usage,
) -> Option<SmallVec<[(UsageColumn<'a>, usize); 3]>> {
    let mut cols = SmallVec::new();
    for (k, w) in resources.iter().enumerate() {
        let (alloc, inv, used) = match (w.kind, usage) {
            (ResourceKind::Cpu, Usage::NonZero) => (&t.alloc_cpu, &t.inv_cpu, &t.nonzero_cpu),
            (ResourceKind::Cpu, Usage::Requested) => (&t.alloc_cpu, &t.inv_cpu, &t.req_cpu),
            (ResourceKind::Memory, Usage::NonZero) => (&t.alloc_mem, &t.inv_mem, &t.nonzero_mem),
            (ResourceKind::Memory, Usage::Requested) => (&t.alloc_mem, &t.inv_mem, &t.req_mem),
            (ResourceKind::EphemeralStorage, _) => (&t.alloc_eph, &t.inv_eph, &t.req_eph),
            (ResourceKind::Unscored, _) => continue,
            (ResourceKind::Scalar(_), _) => return None,
        };
        let col = UsageColumn {
            alloc,
            inv,
            used,
            weight: w.weight,
            source: (w.kind, usage),
        };
        cols.push((col, k));
    }
    Some(cols)
}

/// `weighted_average` over two columns (with the pod's request for each).
#[inline(always)]
fn pair_average(
    nodes: &[NodeIdx],
    (a, ra, b, rb): (UsageColumn, i64, UsageColumn, i64),
    out: &mut [i64],
    per_resource: impl Fn(i64, i64, f64) -> i64,
    average: impl Fn(i64) -> i64,
) {
    let (wa, wb) = (a.weight, b.weight);
    // Every column cut to one length: the compiler then checks each index once.
    let len = a.alloc.len();
    let (a_alloc, a_inv, a_used) = (&a.alloc[..len], &a.inv[..len], &a.used[..len]);
    let (b_alloc, b_inv, b_used) = (&b.alloc[..len], &b.inv[..len], &b.used[..len]);
    for (o, &n) in out.iter_mut().zip(nodes) {
        let i = n as usize;
        let (alloc_a, alloc_b) = (a_alloc[i], b_alloc[i]);
        let score_a = || per_resource(a_used[i].saturating_add(ra), alloc_a, a_inv[i]);
        let score_b = || per_resource(b_used[i].saturating_add(rb), alloc_b, b_inv[i]);
        *o = if alloc_a != 0 && alloc_b != 0 {
            average(score_a() * wa + score_b() * wb)
        } else if alloc_a != 0 {
            score_a()
        } else if alloc_b != 0 {
            score_b()
        } else {
            0
        };
    }
}

/// Weighted average of `per_resource(requested, allocatable, 1/allocatable)`
/// over the columns, leaving out resources a node lacks; 0 when it lacks all.
/// `requests[k]` is the pod's request for configured resource k.
pub(crate) fn weighted_average(
    nodes: &[NodeIdx],
    columns: &[(UsageColumn, usize)],
    requests: &[i64],
    out: &mut [i64],
    per_resource: impl Fn(i64, i64, f64) -> i64,
) {
    // The sum of the weights is the same on every node that has all resources.
    let all_weights: i64 = columns.iter().map(|(c, _)| c.weight).sum();
    let inv_all = 1.0 / all_weights.max(1) as f64;
    // Weights 1 + 1 (the default) make the average a shift (scores are >= 0).
    let average = |sum: i64| {
        if all_weights.count_ones() == 1 {
            sum >> all_weights.trailing_zeros()
        } else {
            div_by_reciprocal(sum, all_weights, inv_all)
        }
    };
    if let [(a, ka), (b, kb)] = columns {
        // The usual cpu + memory pair, unrolled; the average chosen once, so
        // the loop for the default weights has no division in it.
        let pair = (*a, requests[*ka], *b, requests[*kb]);
        if all_weights.count_ones() == 1 {
            let shift = all_weights.trailing_zeros();
            pair_average(nodes, pair, out, &per_resource, |sum| sum >> shift);
        } else {
            pair_average(nodes, pair, out, &per_resource, |sum| {
                div_by_reciprocal(sum, all_weights, inv_all)
            });
        }
        return;
    }
    for (o, &n) in out.iter_mut().zip(nodes) {
        let i = n as usize;
        let (mut sum, mut weights) = (0i64, 0i64);
        for &(c, k) in columns {
            let a = c.alloc[i];
            if a == 0 {
                continue;
            }
            sum += per_resource(c.used[i].saturating_add(requests[k]), a, c.inv[i]) * c.weight;
            weights += c.weight;
        }
        *o = if weights == all_weights {
            average(sum)
        } else if weights == 0 {
            0
        } else {
            sum / weights
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn division_by_reciprocal_is_integer_division(
            // Large divisors put x near 2^52, where the estimate goes wrong most.
            c in prop_oneof![1i64..1_000, (1i64 << 30)..(1i64 << 45), (1i64 << 45)..(1i64 << 53)],
            q in 0i64..=100,
            d in -3i64..=3,
            big in (1i64 << 52)..i64::MAX,
            neg in i64::MIN + 1..0,
        ) {
            // Quotients on and just around every integer, where rounding would show.
            let x = (q * c + d).max(0);
            let inv = 1.0 / c as f64;
            prop_assert_eq!(div_by_reciprocal(x, c, inv), x / c);
            prop_assert_eq!(div_by_reciprocal(big, c, inv), big / c);
            prop_assert_eq!(div_by_reciprocal(big, big - 1, 1.0 / (big - 1) as f64), 1);
            prop_assert_eq!(div_by_reciprocal(neg, c, inv), neg / c);
        }
    }

    proptest! {
        #[test]
        fn small_quotients_are_integer_division(
            c in prop_oneof![1i64..1_000, 1_000i64..(1i64 << 30), (1i64 << 30)..crate::snapshot::SMALL_QUOTIENT_LIMIT],
            q in 0i64..=100,
            d in -3i64..=3,
        ) {
            // Numerators on and around every multiple of c up to 100·c, where rounding shows.
            let x = (q * c + d).clamp(0, 100 * c);
            prop_assert_eq!(small_quotient(x, 1.0 / c as f64), x / c, "x={} c={}", x, c);
        }
    }

    #[test]
    fn small_quotients_on_and_around_every_multiple() {
        // Exact multiples are where a product that rounds down shows (49 · fl(1/49) < 1).
        let limit = crate::snapshot::SMALL_QUOTIENT_LIMIT;
        let divisors = (1..=2_000).chain([1 << 20, 1_000_000_007, limit / 3, limit - 1]);
        for c in divisors {
            for q in 0..=100i64 {
                for x in [q * c - 1, q * c, q * c + 1] {
                    let x = x.clamp(0, 100 * c);
                    assert_eq!(small_quotient(x, 1.0 / c as f64), x / c, "x={x} c={c}");
                }
            }
        }
    }

    #[test]
    fn resource_name_classes() {
        let cases = [
            ("nvidia.com/gpu", true, true),
            ("example.com/foo", true, true),
            ("kubernetes.io/something", false, true),
            ("hugepages-2Mi", false, true),
            ("attachable-volumes-aws-ebs", false, true),
            ("requests.example.com/foo", false, false),
            ("foo", false, false),
            ("pods", false, false),
        ];
        for (name, extended, scalar) in cases {
            assert_eq!(is_extended_resource_name(name), extended, "{name}");
            assert_eq!(is_scalar_resource_name(name), scalar, "{name}");
        }
        assert_eq!(ResourceKind::of("cpu"), ResourceKind::Cpu);
        assert_eq!(ResourceKind::of("pods"), ResourceKind::Unscored);
    }

    #[test]
    fn empty_resource_list_means_cpu_and_memory() {
        let r = resolve(&[]);
        assert_eq!(
            r,
            vec![
                WeightedResource {
                    kind: ResourceKind::Cpu,
                    weight: 1
                },
                WeightedResource {
                    kind: ResourceKind::Memory,
                    weight: 1
                }
            ]
        );
    }
}
