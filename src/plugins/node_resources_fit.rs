//! NodeResourcesFit: the node must have room for the pod's requests (Filter), and
//! feasible nodes are ranked by one of upstream's scoring strategies (Score).
//!
//! Semantics follow kube-scheduler v1.34+ (`noderesources/fit.go` after PR #131345):
//! - every insufficient resource is a reason of one status, in upstream's order
//!   (pods, cpu, memory, ephemeral-storage, then scalar resources; upstream walks a
//!   Go map for those, we sort them by name so messages repeat);
//! - the code is `UnschedulableAndUnresolvable` when some request exceeds the node's
//!   allocatable outright (preemption cannot help), `Unschedulable` otherwise;
//!   "Too many pods" alone is always `Unschedulable`;
//! - a resource the pod requests zero of never fails, even on an over-committed node;
//! - `ignoredResources` / `ignoredResourceGroups` apply to extended resources only.
//!
//! Pods nominated to the node with priority >= the pod's count as placed there, as
//! upstream's RunFilterPluginsWithNominatedPods does (for a monotone check like this
//! one the "with nominated pods" pass decides alone).
//!
//! Scoring uses non-zero requests for cpu and memory (100m / 200MiB for a pod that
//! requests none; upstream applies that default per container, our model per pod),
//! raw requests for everything else; resources the node lacks (allocatable 0) and
//! scalar resources the pod does not request are left out, weight included.

use super::pair_kernel::{self, PairScore, Scope};
use super::resource_allocation::{
    allocatable_requested, div_by_reciprocal, is_extended_resource_name, is_scalar_resource_name,
    pod_requests, resolve, small_quotient, usage_columns, weighted_average, Usage,
    WeightedResource,
};
use super::score_memo::ScoreMemo;
use crate::config::{NodeResourcesFitArgs, ScoringStrategyType, UtilizationShapePoint};
use crate::framework::{
    retain_nodes, slots_from, Code, CycleState, FilterPlugin, Normalization, Plugin,
    PreFilterPlugin, PreScorePlugin, Reason, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::model::{Pod, Sym};
use crate::snapshot::{NodeIdx, NodeTable, Snapshot, FREE_FLOOR};
use smallvec::SmallVec;
use std::borrow::Cow;

pub const NAME: &str = "NodeResourcesFit";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_CPU: &str = "Insufficient cpu";
pub const REASON_MEMORY: &str = "Insufficient memory";
pub const REASON_EPHEMERAL_STORAGE: &str = "Insufficient ephemeral-storage";

/// Upstream's MaxCustomPriorityScore: shape scores are 0..=10, node scores 0..=100.
const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;
const MAX_UTILIZATION: i64 = 100;

enum Scorer {
    LeastAllocated,
    MostAllocated,
    /// Shape points as (utilization, node score already scaled to 0..=100).
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

pub struct NodeResourcesFit {
    ignored_resources: Vec<String>,
    ignored_resource_groups: Vec<String>,
    strategy: Scorer,
    resources: Vec<WeightedResource>,
    /// A node's score depends on its state and the pod's requests only.
    memo: ScoreMemo,
}

impl NodeResourcesFit {
    /// Builds the plugin from validated args; `Err` carries (field, message) like `validate_args`.
    pub fn new(args: &NodeResourcesFitArgs) -> Result<NodeResourcesFit, (String, String)> {
        validate_args(args)?;
        let s = &args.scoring_strategy;
        let strategy = match s.kind {
            ScoringStrategyType::LeastAllocated => Scorer::LeastAllocated,
            ScoringStrategyType::MostAllocated => Scorer::MostAllocated,
            ScoringStrategyType::RequestedToCapacityRatio => {
                let shape = s
                    .requested_to_capacity_ratio
                    .as_ref()
                    .map(|r| r.shape.as_slice())
                    .unwrap_or_default();
                Scorer::RequestedToCapacityRatio(
                    shape
                        .iter()
                        .map(|p| {
                            (
                                p.utilization,
                                p.score * (MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE),
                            )
                        })
                        .collect(),
                )
            }
        };
        Ok(NodeResourcesFit {
            ignored_resources: args.ignored_resources.clone(),
            ignored_resource_groups: args.ignored_resource_groups.clone(),
            strategy,
            resources: resolve(&s.resources),
            memo: ScoreMemo::default(),
        })
    }

    fn ignores(&self, name: &str) -> bool {
        if !is_extended_resource_name(name) {
            return false;
        }
        if self.ignored_resources.iter().any(|r| r == name) {
            return true;
        }
        let group = name.split('/').next().unwrap_or(name);
        self.ignored_resource_groups.iter().any(|g| g == group)
    }

    /// The node's score for the pod whose per-resource requests are `pod_requests`.
    fn score_node(&self, snap: &Snapshot, node: NodeIdx, pod_requests: &[i64]) -> i64 {
        let mut node_score: i64 = 0;
        let mut weight_sum: i64 = 0;
        for (w, &pod_request) in self.resources.iter().zip(pod_requests) {
            let (alloc, requested) =
                allocatable_requested(snap, node, w.kind, pod_request, Usage::NonZero);
            if alloc == 0 {
                continue;
            }
            let resource_score = match &self.strategy {
                Scorer::LeastAllocated => {
                    least_requested_score(requested, alloc, 1.0 / alloc as f64)
                }
                Scorer::MostAllocated => most_requested_score(requested, alloc, 1.0 / alloc as f64),
                Scorer::RequestedToCapacityRatio(shape) => {
                    let s = ratio_score(shape, requested, alloc);
                    // Upstream leaves zero-scoring resources out of the average.
                    if s <= 0 {
                        continue;
                    }
                    s
                }
            };
            node_score += resource_score * w.weight;
            weight_sum += w.weight;
        }
        if weight_sum == 0 {
            return 0;
        }
        match self.strategy {
            Scorer::RequestedToCapacityRatio(_) => {
                (node_score as f64 / weight_sum as f64).round() as i64
            }
            _ => node_score / weight_sum,
        }
    }
}

/// Free share of the resource after placing the pod, 0..=100. `inv` is 1/capacity.
fn least_requested_score(requested: i64, capacity: i64, inv: f64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    // i64 is exact up to 92 PB of memory; saturation keeps larger values in range.
    div_by_reciprocal(
        (capacity - requested).saturating_mul(MAX_NODE_SCORE),
        capacity,
        inv,
    )
}

/// `least_requested_score` for capacity below `SMALL_QUOTIENT_LIMIT`.
#[inline]
pub(super) fn least_requested_small(requested: i64, capacity: i64, inv: f64) -> i64 {
    if requested < 0 {
        return least_requested_score(requested, capacity, inv);
    }
    let free = capacity - requested;
    if free < 0 || capacity <= 0 {
        return 0;
    }
    small_quotient(free * MAX_NODE_SCORE, inv)
}

/// `most_requested_score` for capacity below `SMALL_QUOTIENT_LIMIT`.
#[inline]
pub(super) fn most_requested_small(requested: i64, capacity: i64, inv: f64) -> i64 {
    if capacity <= 0 {
        return 0;
    }
    small_quotient(requested.clamp(0, capacity) * MAX_NODE_SCORE, inv)
}

/// Used share of the resource after placing the pod, 0..=100 (over-commit counts
/// as full). `inv` is 1/capacity.
fn most_requested_score(requested: i64, capacity: i64, inv: f64) -> i64 {
    if capacity <= 0 {
        return 0;
    }
    let requested = requested.clamp(0, capacity);
    div_by_reciprocal(requested.saturating_mul(MAX_NODE_SCORE), capacity, inv)
}

fn ratio_score(shape: &[(i64, i64)], requested: i64, capacity: i64) -> i64 {
    let utilization = if capacity <= 0 || requested > capacity {
        MAX_UTILIZATION
    } else {
        requested.max(0).saturating_mul(MAX_UTILIZATION) / capacity
    };
    broken_linear(shape, utilization)
}

/// Upstream's `BuildBrokenLinearFunction`: flat before the first point and after
/// the last, linear (integer arithmetic) between points.
fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(util, score)) in shape.iter().enumerate() {
        if p <= util {
            if i == 0 {
                return score;
            }
            let (u0, s0) = shape[i - 1];
            return s0 + (score - s0) * (p - u0) / (util - u0);
        }
    }
    shape.last().map_or(0, |&(_, s)| s)
}

/// Checks the args serde cannot; `Err((field, message))` with `field` relative to `pluginArgs`.
pub fn validate_args(args: &NodeResourcesFitArgs) -> Result<(), (String, String)> {
    const P: &str = "nodeResourcesFit";
    for (i, r) in args.ignored_resources.iter().enumerate() {
        if let Some(m) = resource_name_problem(r) {
            return Err((format!("{P}.ignoredResources[{i}]"), m));
        }
    }
    for (i, g) in args.ignored_resource_groups.iter().enumerate() {
        if g.contains('/') {
            return Err((
                format!("{P}.ignoredResourceGroups[{i}]"),
                "resource group name can't contain '/'".into(),
            ));
        }
        if g.is_empty() {
            return Err((
                format!("{P}.ignoredResourceGroups[{i}]"),
                "must not be empty".into(),
            ));
        }
    }
    let s = &args.scoring_strategy;
    for (i, r) in s.resources.iter().enumerate() {
        if r.name.is_empty() {
            return Err((
                format!("{P}.scoringStrategy.resources[{i}].name"),
                "must not be empty".into(),
            ));
        }
        if !(1..=100).contains(&r.weight) {
            return Err((
                format!("{P}.scoringStrategy.resources[{i}].weight"),
                format!(
                    "resource weight of {} not in valid range [1, 100]: {}",
                    r.name, r.weight
                ),
            ));
        }
    }
    match &s.requested_to_capacity_ratio {
        Some(r) => validate_shape(
            &r.shape,
            &format!("{P}.scoringStrategy.requestedToCapacityRatio.shape"),
        )?,
        None if s.kind == ScoringStrategyType::RequestedToCapacityRatio => {
            return Err((
                format!("{P}.scoringStrategy.requestedToCapacityRatio"),
                "required when type is RequestedToCapacityRatio".into(),
            ))
        }
        None => {}
    }
    Ok(())
}

fn validate_shape(shape: &[UtilizationShapePoint], path: &str) -> Result<(), (String, String)> {
    if shape.is_empty() {
        return Err((path.into(), "at least one point must be specified".into()));
    }
    for (i, p) in shape.iter().enumerate() {
        if !(0..=MAX_UTILIZATION).contains(&p.utilization) {
            return Err((
                format!("{path}[{i}].utilization"),
                format!(
                    "{} not in valid range [0, {MAX_UTILIZATION}]",
                    p.utilization
                ),
            ));
        }
        if !(0..=MAX_CUSTOM_PRIORITY_SCORE).contains(&p.score) {
            return Err((
                format!("{path}[{i}].score"),
                format!(
                    "{} not in valid range [0, {MAX_CUSTOM_PRIORITY_SCORE}]",
                    p.score
                ),
            ));
        }
        if i > 0 && shape[i - 1].utilization >= p.utilization {
            return Err((
                format!("{path}[{i}].utilization"),
                "values must be sorted in increasing order".into(),
            ));
        }
    }
    Ok(())
}

/// A resource name as upstream's qualified-name rule sees it: `[prefix/]name`, both non-empty.
fn resource_name_problem(name: &str) -> Option<String> {
    let mut parts = name.split('/');
    let (a, b, rest) = (parts.next(), parts.next(), parts.next());
    let ok = match (a, b, rest) {
        (Some(n), None, None) => !n.is_empty(),
        (Some(prefix), Some(n), None) => !prefix.is_empty() && !n.is_empty(),
        _ => false,
    };
    (!ok).then(|| format!("{name:?} is not a valid resource name ([prefix/]name)"))
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The scalar requests the filter checks (non-zero, scalar-named, not ignored,
/// sorted by name), computed once per cycle with their reason strings.
struct ScalarRequests(SmallVec<[ScalarRequest; 2]>);

struct ScalarRequest {
    name: Sym,
    amount: i64,
    reason: Reason,
}

/// The pod's requests as the filter checks them. cpu, memory and storage come
/// straight from `pod.requests` (computed at conversion), so a pod without scalar
/// requests costs the per-node path no cycle-state lookup.
struct FitRequest<'a> {
    cpu: i64,
    memory: i64,
    ephemeral_storage: i64,
    scalars: &'a [ScalarRequest],
}

/// Per-resource pod requests for scoring, in the order of the configured resources.
struct FitScoreState {
    requests: SmallVec<[i64; 4]>,
}

impl NodeResourcesFit {
    fn scalar_requests(&self, pod: &Pod) -> ScalarRequests {
        let mut scalars: SmallVec<[ScalarRequest; 2]> = SmallVec::new();
        for &(name, amount) in &pod.requests.scalars {
            if amount == 0 {
                continue;
            }
            let n = name.as_str();
            // Upstream's pod Resource keeps scalar-named resources only.
            if !is_scalar_resource_name(n) || self.ignores(n) {
                continue;
            }
            scalars.push(ScalarRequest {
                name,
                amount,
                reason: Cow::Owned(format!("Insufficient {n}")),
            });
        }
        scalars.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        ScalarRequests(scalars)
    }
}

impl NodeResourcesFit {
    pub const NAME: &'static str = NAME;

    /// The scalar resources the filter checks for the pod whose PreFilter wrote
    /// `state`, as (name, amount) sorted by name: what preemption's resource
    /// arithmetic must check. None if this PreFilter did not run.
    pub fn checked_scalars(state: &CycleState) -> Option<SmallVec<[(Sym, i64); 2]>> {
        state
            .read::<ScalarRequests>()
            .map(|s| s.0.iter().map(|q| (q.name, q.amount)).collect())
    }
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _: &Snapshot) -> Status {
        state.write(self.scalar_requests(pod));
        Status::success()
    }
}

/// What the node already holds: placed pods plus nominated ones that count.
#[derive(Clone, Copy)]
struct Held {
    pods: i64,
    cpu: i64,
    memory: i64,
    ephemeral_storage: i64,
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let r = &pod.requests;
        let computed;
        let scalars: &[ScalarRequest] = if r.scalars.is_empty() {
            &[]
        } else {
            match state.read::<ScalarRequests>() {
                Some(s) => &s.0,
                // Run without PreFilter (not via the framework): same answer, slower.
                None => {
                    computed = self.scalar_requests(pod);
                    &computed.0
                }
            }
        };
        let req = FitRequest {
            cpu: r.milli_cpu,
            memory: r.memory,
            ephemeral_storage: r.ephemeral_storage,
            scalars,
        };
        let t = snap.nodes();
        let i = node as usize;
        let held = Held {
            pods: t.pod_count[i],
            cpu: t.req_cpu[i],
            memory: t.req_mem[i],
            ephemeral_storage: t.req_eph[i],
        };
        if !snap.has_nominations() {
            if fits(&req, t, node, held, &[]) {
                return Status::success();
            }
            return insufficient(&req, t, node, held, &[]);
        }
        let (held, nominated_scalars) = with_nominated(&req, pod, snap, node, held);
        if fits(&req, t, node, held, &nominated_scalars) {
            Status::success()
        } else {
            insufficient(&req, t, node, held, &nominated_scalars)
        }
    }

    /// The node's allocatable and its pods' requests (both restamp the node) and
    /// the pod's requests. Pods nominated elsewhere count by the pod's priority
    /// and are not in the stamp: with any nomination, nothing is kept.
    fn keeps_verdicts(&self, _: &CycleState, kept: &Pod, pod: &Pod, snap: &Snapshot) -> bool {
        !snap.has_nominations() && kept.requests == pod.requests
    }

    /// The common case (no scalar requests, no nominated pods) is a scan over
    /// the usage columns; anything else goes node by node.
    fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &mut Vec<NodeIdx>,
        rejected: &mut Vec<NodeIdx>,
    ) -> Result<(), Status> {
        let r = &pod.requests;
        if !r.scalars.is_empty() || snap.has_nominations() {
            retain_nodes(nodes, rejected, |n| {
                self.filter(state, pod, snap, n).is_success()
            });
            return Ok(());
        }
        let t = snap.nodes();
        let (cpu, mem, eph) = (r.milli_cpu, r.memory, r.ephemeral_storage);
        // Free room is kept per node (allocatable − requested), so each resource
        // is one column; every column is cut to one length, so the compiler
        // checks each index once. `request <= free` is `fits_one` when request > 0.
        let len = t.slots();
        let (free_pods, free_cpu) = (&t.free_pods[..len], &t.free_cpu[..len]);
        let (free_mem, free_eph) = (&t.free_mem[..len], &t.free_eph[..len]);
        let fits = |request: i64, free: i64| (request == 0) | (request <= free);
        // Most pods ask for no ephemeral storage, which always fits: a column fewer.
        // (Written out twice: a shared closure is not inlined.)
        if eph == 0 {
            retain_nodes(nodes, rejected, |n| {
                let i = n as usize;
                (free_pods[i] > 0) & fits(cpu, free_cpu[i]) & fits(mem, free_mem[i])
            });
        } else {
            retain_nodes(nodes, rejected, |n| {
                let i = n as usize;
                (free_pods[i] > 0)
                    & fits(cpu, free_cpu[i])
                    & fits(mem, free_mem[i])
                    & fits(eph, free_eph[i])
            });
        }
        Ok(())
    }

    /// The scan of `filter_nodes` over whole columns; none when `filter_nodes`
    /// would judge node by node (extended resources, nominated pods).
    fn filter_slots(
        &self,
        _: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        first: usize,
        pass: &mut [bool],
    ) -> bool {
        let r = &pod.requests;
        if !r.scalars.is_empty() || snap.has_nominations() {
            return false;
        }
        let t = snap.nodes();
        let (cpu, mem, eph) = (r.milli_cpu, r.memory, r.ephemeral_storage);
        let fits = |request: i64, free: i64| (request == 0) | (request <= free);
        // Every column cut to one length: indexed loops the compiler can
        // vectorize (a zip of four iterators it does not).
        let len = pass.len().min(t.slots().saturating_sub(first));
        let pass = &mut pass[..len];
        fn cut(column: &[i64], first: usize, len: usize) -> &[i64] {
            &slots_from(column, first)[..len]
        }
        let cut = |column| cut(column, first, len);
        let (free_pods, free_cpu) = (cut(&t.free_pods), cut(&t.free_cpu));
        let (free_mem, free_eph) = (cut(&t.free_mem), cut(&t.free_eph));
        let in_range = |request: i64| (0..=-FREE_FLOOR).contains(&request);
        if in_range(cpu) && in_range(mem) {
            fit_columns(pass, (free_cpu, cpu), (free_mem, mem), free_pods);
        } else {
            for i in 0..len {
                pass[i] &= (free_pods[i] > 0) & fits(cpu, free_cpu[i]) & fits(mem, free_mem[i]);
            }
        }
        if eph != 0 {
            for i in 0..len {
                pass[i] &= fits(eph, free_eph[i]);
            }
        }
        true
    }
}

/// Clears `pass[i]` where the node lacks the cpu, memory or a pod slot, for
/// requests in 0..=-FREE_FLOOR: `request <= free` as the sign of `free -
/// request`, which cannot overflow (free >= FREE_FLOOR); a zero request's term
/// is masked out, as it always fits. The baseline x86-64 target has no packed
/// 64-bit compare but packed subtraction: this loop is vectorized, and wider
/// where the CPU has AVX2 or AVX-512 (chosen at run time).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn fit_columns(
    pass: &mut [bool],
    (free_cpu, cpu): (&[i64], i64),
    (free_mem, mem): (&[i64], i64),
    free_pods: &[i64],
) {
    let len = pass.len();
    let (free_cpu, free_mem, free_pods) = (&free_cpu[..len], &free_mem[..len], &free_pods[..len]);
    let (cpu_mask, mem_mask) = (-i64::from(cpu != 0), -i64::from(mem != 0));
    for i in 0..len {
        let short = ((free_cpu[i] - cpu) & cpu_mask)
            | ((free_mem[i] - mem) & mem_mask)
            | (free_pods[i] - 1);
        pass[i] &= short >= 0;
    }
}

/// Adds the pods nominated to `node` that count for `pod` (priority >= its own,
/// not itself); returns their scalar amounts for the scalars the pod requests.
#[inline(never)]
fn with_nominated(
    req: &FitRequest,
    pod: &Pod,
    snap: &Snapshot,
    node: NodeIdx,
    mut held: Held,
) -> (Held, SmallVec<[(Sym, i64); 2]>) {
    let mut scalars: SmallVec<[(Sym, i64); 2]> = SmallVec::new();
    for n in snap.nominated_for(pod, node) {
        let p = &n.pod;
        let r = &p.requests;
        held.pods += 1;
        held.cpu = held.cpu.saturating_add(r.milli_cpu);
        held.memory = held.memory.saturating_add(r.memory);
        held.ephemeral_storage = held.ephemeral_storage.saturating_add(r.ephemeral_storage);
        for &(s, v) in &r.scalars {
            if !req.scalars.iter().any(|q| q.name == s) {
                continue;
            }
            match scalars.iter_mut().find(|(k, _)| *k == s) {
                Some(e) => e.1 = e.1.saturating_add(v),
                None => scalars.push((s, v)),
            }
        }
    }
    (held, scalars)
}

#[inline]
fn fits(
    req: &FitRequest,
    t: &NodeTable,
    node: NodeIdx,
    held: Held,
    nominated_scalars: &[(Sym, i64)],
) -> bool {
    let i = node as usize;
    held.pods < t.alloc_pods[i]
        && fits_one(req.cpu, t.alloc_cpu[i], held.cpu)
        && fits_one(req.memory, t.alloc_mem[i], held.memory)
        && fits_one(
            req.ephemeral_storage,
            t.alloc_eph[i],
            held.ephemeral_storage,
        )
        && req.scalars.iter().all(|q| {
            fits_one(
                q.amount,
                alloc_scalar(t, i, q.name),
                scalar_held(t, node, q.name, nominated_scalars),
            )
        })
}

/// A zero request always fits (upstream checks `request > 0 && request > free`).
#[inline]
fn fits_one(request: i64, allocatable: i64, held: i64) -> bool {
    request == 0 || request <= allocatable.saturating_sub(held)
}

#[inline]
fn alloc_scalar(t: &NodeTable, i: usize, name: Sym) -> i64 {
    t.node[i].allocatable.scalar(name)
}

#[inline]
fn scalar_held(t: &NodeTable, node: NodeIdx, name: Sym, nominated: &[(Sym, i64)]) -> i64 {
    let extra = nominated
        .iter()
        .find(|(k, _)| *k == name)
        .map_or(0, |(_, v)| *v);
    t.req_scalar(node, name).saturating_add(extra)
}

/// Builds the rejection: every insufficient resource, in upstream's order.
#[cold]
#[inline(never)]
fn insufficient(
    req: &FitRequest,
    t: &NodeTable,
    node: NodeIdx,
    held: Held,
    nominated_scalars: &[(Sym, i64)],
) -> Status {
    let i = node as usize;
    let mut reasons: SmallVec<[Reason; 1]> = SmallVec::new();
    let mut unresolvable = false;
    if held.pods >= t.alloc_pods[i] {
        reasons.push(Cow::Borrowed(REASON_TOO_MANY_PODS));
    }
    let mut check = |request: i64, alloc: i64, used: i64, reason: Reason| {
        if !fits_one(request, alloc, used) {
            unresolvable |= request > alloc;
            reasons.push(reason);
        }
    };
    check(req.cpu, t.alloc_cpu[i], held.cpu, Cow::Borrowed(REASON_CPU));
    check(
        req.memory,
        t.alloc_mem[i],
        held.memory,
        Cow::Borrowed(REASON_MEMORY),
    );
    check(
        req.ephemeral_storage,
        t.alloc_eph[i],
        held.ephemeral_storage,
        Cow::Borrowed(REASON_EPHEMERAL_STORAGE),
    );
    for q in req.scalars {
        check(
            q.amount,
            alloc_scalar(t, i, q.name),
            scalar_held(t, node, q.name, nominated_scalars),
            q.reason.clone(),
        );
    }
    Status {
        code: if unresolvable {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        },
        plugin: NAME,
        reasons,
    }
}

impl PreScorePlugin for NodeResourcesFit {
    fn pre_score(&self, state: &mut CycleState, pod: &Pod, _: &Snapshot, _: &[NodeIdx]) -> Status {
        state.write(FitScoreState {
            requests: pod_requests(pod, &self.resources, Usage::NonZero),
        });
        Status::success()
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        self.with_requests(state, pod, |requests| self.score_node(snap, node, requests))
    }

    /// Scores kept from earlier cycles where a node is unchanged (`score_memo`);
    /// the others computed by `score_columns`.
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &[NodeIdx],
        out: &mut [i64],
    ) {
        let scope = Scope {
            version: snap.nodes().version(),
            cycle: state.fresh_cycle(),
        };
        self.with_requests(state, pod, |requests| {
            self.memo.score_nodes(
                requests,
                state.reuses_scores(),
                snap.nodes(),
                nodes,
                out,
                |nodes, out| self.score_columns(snap, scope, nodes, requests, out),
            )
        });
    }

    fn normalization(&self) -> Normalization {
        Normalization::None
    }

    /// The score reads the node's allocatable and usage and the pod's requests
    /// per configured resource (what the memo keys on).
    fn keeps_node_scores(&self, _: &CycleState, kept: &Pod, pod: &Pod) -> bool {
        pod_requests(kept, &self.resources, Usage::NonZero)
            == pod_requests(pod, &self.resources, Usage::NonZero)
    }

    /// When `score_columns` runs the vector kernel and the memo has nothing
    /// to give (scores computed afresh, or kept for other requests).
    fn scores_every_slot(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        feasible: &[NodeIdx],
    ) -> bool {
        let Some(kind) = self.pair_kind() else {
            return false;
        };
        self.with_requests(state, pod, |requests| {
            if state.reuses_scores() && self.memo.holds(requests) {
                return false;
            }
            let t = snap.nodes();
            t.huge_nodes == 0
                && usage_columns(t, &self.resources, Usage::NonZero)
                    .is_some_and(|c| pair_kernel::applies(kind, &c, requests, feasible))
        })
    }

    /// The vector kernel's scores, in cycles that score afresh (elsewhere
    /// `score_nodes` keeps them for the next executor).
    fn score_slots(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        feasible: &[NodeIdx],
        first: usize,
        out: &mut [i64],
    ) -> bool {
        let Some(kind) = self.pair_kind() else {
            return false;
        };
        let t = snap.nodes();
        if state.reuses_scores() || t.huge_nodes != 0 {
            return false;
        }
        self.with_requests(state, pod, |requests| {
            usage_columns(t, &self.resources, Usage::NonZero).is_some_and(|c| {
                pair_kernel::score_columns_by_slot(kind, feasible, &c, requests, first, out)
            })
        })
    }
}

impl NodeResourcesFit {
    /// What the vector kernel scores for this strategy (None: it has no kernel).
    fn pair_kind(&self) -> Option<PairScore> {
        match self.strategy {
            Scorer::LeastAllocated => Some(PairScore::Least),
            Scorer::MostAllocated => Some(PairScore::Most),
            _ => None,
        }
    }

    /// `f` of the pod's requests per configured resource (non-zero usage):
    /// PreScore's, or worked out here when PreScore did not run.
    fn with_requests<R>(&self, state: &CycleState, pod: &Pod, f: impl FnOnce(&[i64]) -> R) -> R {
        match state.read::<FitScoreState>() {
            Some(s) => f(&s.requests),
            None => f(&pod_requests(pod, &self.resources, Usage::NonZero)),
        }
    }

    /// Least/MostAllocated over cpu, memory and ephemeral storage (the usual
    /// configurations) read the node columns directly; other strategies and
    /// scalar resources go through `score_node`.
    fn score_columns(
        &self,
        snap: &Snapshot,
        scope: Scope,
        nodes: &[NodeIdx],
        requests: &[i64],
        out: &mut [i64],
    ) {
        let t = snap.nodes();
        let columns = usage_columns(t, &self.resources, Usage::NonZero);
        // Without nodes of 8 TiB or more, a quotient is a multiplication.
        let small = t.huge_nodes == 0;
        match (&self.strategy, columns) {
            (Scorer::LeastAllocated, Some(c)) if small => {
                if !pair_kernel::score_columns(PairScore::Least, scope, nodes, &c, requests, out) {
                    weighted_average(nodes, &c, requests, out, least_requested_small)
                }
            }
            (Scorer::MostAllocated, Some(c)) if small => {
                if !pair_kernel::score_columns(PairScore::Most, scope, nodes, &c, requests, out) {
                    weighted_average(nodes, &c, requests, out, most_requested_small)
                }
            }
            (Scorer::LeastAllocated, Some(c)) => {
                weighted_average(nodes, &c, requests, out, least_requested_score)
            }
            (Scorer::MostAllocated, Some(c)) => {
                weighted_average(nodes, &c, requests, out, most_requested_score)
            }
            _ => score_by_node(self, snap, nodes, requests, out),
        }
    }
}

fn score_by_node(
    p: &NodeResourcesFit,
    snap: &Snapshot,
    nodes: &[NodeIdx],
    requests: &[i64],
    out: &mut [i64],
) {
    for (o, &n) in out.iter_mut().zip(nodes) {
        *o = p.score_node(snap, n, requests);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RequestedToCapacityRatio, ResourceWeight};
    use crate::model::capacity::CapacityRules;
    use crate::plugins::test_support::{filter_all, score_all};
    use crate::testkit::*;
    use proptest::prelude::*;

    const MI: i64 = 1 << 20;

    fn args(kind: ScoringStrategyType) -> NodeResourcesFitArgs {
        let mut a = NodeResourcesFitArgs::default();
        a.scoring_strategy.kind = kind;
        if kind == ScoringStrategyType::RequestedToCapacityRatio {
            a.scoring_strategy.requested_to_capacity_ratio = Some(shape(&[(0, 0), (100, 10)]));
        }
        a
    }

    fn shape(points: &[(i64, i64)]) -> RequestedToCapacityRatio {
        RequestedToCapacityRatio {
            shape: points
                .iter()
                .map(|&(utilization, score)| UtilizationShapePoint { utilization, score })
                .collect(),
        }
    }

    fn weights(list: &[(&str, i64)]) -> Vec<ResourceWeight> {
        list.iter()
            .map(|&(name, weight)| ResourceWeight {
                name: name.into(),
                weight,
            })
            .collect()
    }

    fn plugin(a: &NodeResourcesFitArgs) -> NodeResourcesFit {
        NodeResourcesFit::new(a).unwrap()
    }

    fn snap_with(nodes: Vec<crate::model::Node>, pods: Vec<Pod>) -> Snapshot {
        let mut s = Snapshot::new(CapacityRules::default());
        for n in nodes {
            s.upsert_node(n);
        }
        for p in pods {
            s.upsert_pod(std::sync::Arc::new(p)).unwrap();
        }
        s
    }

    fn filter_one(p: &NodeResourcesFit, pod: &Pod, s: &Snapshot) -> Status {
        filter_all(Some(p), p, pod, s).remove(0).1
    }

    // ---- Filter ---------------------------------------------------------------

    /// The dense scan compares by subtraction: at the ends of the range it must
    /// still judge as the per-node filter does (no overflow, zero and negative
    /// requests, nodes over-committed past `FREE_FLOOR`, full pod slots).
    #[test]
    fn dense_form_agrees_at_the_ends_of_the_range() {
        let p = plugin(&NodeResourcesFitArgs::default());
        let s = snap_with(
            vec![
                node("over", 1000, GI).build(),
                node("vast", i64::MAX, i64::MAX).build(),
                node("full", 4000, 4 * GI).pods(1).build(),
                node("empty", 0, 0).build(),
            ],
            vec![
                pod("hog", i64::MAX, i64::MAX).on("over").build(),
                pod("one", 1, 1).on("full").build(),
            ],
        );
        assert_eq!(s.nodes().free_cpu[0], FREE_FLOOR);
        let edge = -FREE_FLOOR;
        for (cpu, mem) in [
            (0, 0),
            (1, 0),
            (0, 1),
            (edge, 0),
            (edge + 1, 1),
            (i64::MAX, i64::MAX),
            (-5, 0),
            (0, i64::MIN),
            (500, GI),
        ] {
            let incoming = pod("p", cpu, mem).build();
            let mut state = CycleState::default();
            assert!(p.pre_filter(&mut state, &incoming, &s).is_success());
            let mut pass = s.nodes().live.clone();
            assert!(p.filter_slots(&state, &incoming, &s, 0, &mut pass));
            for n in s.nodes().live_indices() {
                let one = p.filter(&state, &incoming, &s, n).is_success();
                assert_eq!(pass[n as usize], one, "request ({cpu}, {mem}) on node {n}");
            }
        }
    }

    #[test]
    fn filter_table() {
        use Code::{Success as Ok_, Unschedulable as U, UnschedulableAndUnresolvable as UU};
        let gpu = "example.com/gpu";
        // (case, node, bound pods, incoming pod, code, reasons)
        type Case = (
            &'static str,
            crate::model::Node,
            Vec<Pod>,
            Pod,
            Code,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "fits exactly",
                node("n", 10, 20).build(),
                vec![pod("b", 5, 10).on("n").build()],
                pod("p", 5, 10).build(),
                Ok_,
                vec![],
            ),
            (
                "cpu short",
                node("n", 10, 20).build(),
                vec![pod("b", 8, 10).on("n").build()],
                pod("p", 3, 5).build(),
                U,
                vec![REASON_CPU],
            ),
            (
                "memory short",
                node("n", 10, 20).build(),
                vec![pod("b", 5, 19).on("n").build()],
                pod("p", 1, 2).build(),
                U,
                vec![REASON_MEMORY],
            ),
            (
                "cpu and memory short, both listed in order",
                node("n", 10, 20).build(),
                vec![pod("b", 8, 19).on("n").build()],
                pod("p", 3, 2).build(),
                U,
                vec![REASON_CPU, REASON_MEMORY],
            ),
            (
                "request above allocatable is unresolvable",
                node("n", 10, 20).build(),
                vec![],
                pod("p", 11, 1).build(),
                UU,
                vec![REASON_CPU],
            ),
            (
                "one unresolvable reason makes the whole status unresolvable",
                node("n", 10, 20).build(),
                vec![pod("b", 1, 19).on("n").build()],
                pod("p", 11, 2).build(),
                UU,
                vec![REASON_CPU, REASON_MEMORY],
            ),
            (
                "too many pods",
                node("n", 10, 20).pods(1).build(),
                vec![pod("b", 1, 1).on("n").build()],
                pod("p", 1, 1).build(),
                U,
                vec![REASON_TOO_MANY_PODS],
            ),
            (
                "too many pods comes first",
                node("n", 10, 20).pods(1).build(),
                vec![pod("b", 8, 1).on("n").build()],
                pod("p", 3, 1).build(),
                U,
                vec![REASON_TOO_MANY_PODS, REASON_CPU],
            ),
            (
                "zero-request pod fits an over-committed node",
                node("n", 10, 20).build(),
                vec![pod("b", 30, 40).on("n").ephemeral(5).build()],
                pod("p", 0, 0).build(),
                Ok_,
                vec![],
            ),
            (
                "zero-request pod still needs a pod slot",
                node("n", 10, 20).pods(1).build(),
                vec![pod("b", 0, 0).on("n").build()],
                pod("p", 0, 0).build(),
                U,
                vec![REASON_TOO_MANY_PODS],
            ),
            (
                "zero cpu request ignores over-committed cpu",
                node("n", 10, 20).build(),
                vec![pod("b", 30, 1).on("n").build()],
                pod("p", 0, 5).build(),
                Ok_,
                vec![],
            ),
            (
                "ephemeral storage short",
                node("n", 10, 20).ephemeral(100).build(),
                vec![pod("b", 1, 1).ephemeral(60).on("n").build()],
                pod("p", 1, 1).ephemeral(50).build(),
                U,
                vec![REASON_EPHEMERAL_STORAGE],
            ),
            (
                "extended resource present but used",
                node("n", 10, 20).scalar(gpu, 2).build(),
                vec![pod("b", 1, 1).scalar(gpu, 1).on("n").build()],
                pod("p", 1, 1).scalar(gpu, 2).build(),
                U,
                vec!["Insufficient example.com/gpu"],
            ),
            (
                "extended resource present and free",
                node("n", 10, 20).scalar(gpu, 2).build(),
                vec![pod("b", 1, 1).scalar(gpu, 1).on("n").build()],
                pod("p", 1, 1).scalar(gpu, 1).build(),
                Ok_,
                vec![],
            ),
            (
                "extended resource absent from the node",
                node("n", 10, 20).build(),
                vec![],
                pod("p", 1, 1).scalar(gpu, 1).build(),
                UU,
                vec!["Insufficient example.com/gpu"],
            ),
            (
                "scalar resources sorted by name, after the core ones",
                node("n", 10, 20).build(),
                vec![],
                pod("p", 11, 1)
                    .scalar("z.example.com/b", 1)
                    .scalar("a.example.com/a", 1)
                    .build(),
                UU,
                vec![
                    REASON_CPU,
                    "Insufficient a.example.com/a",
                    "Insufficient z.example.com/b",
                ],
            ),
            (
                "hugepages are checked",
                node("n", 10, 20).scalar("hugepages-2Mi", 4 * MI).build(),
                vec![],
                pod("p", 1, 1).scalar("hugepages-2Mi", 6 * MI).build(),
                UU,
                vec!["Insufficient hugepages-2Mi"],
            ),
            (
                "names upstream does not track are not checked",
                node("n", 10, 20).build(),
                vec![],
                pod("p", 1, 1).scalar("foo", 5).build(),
                Ok_,
                vec![],
            ),
            (
                "zero scalar request is not checked",
                node("n", 10, 20).build(),
                vec![],
                pod("p", 1, 1).scalar(gpu, 0).build(),
                Ok_,
                vec![],
            ),
        ];
        let p = plugin(&NodeResourcesFitArgs::default());
        for (case, n, bound, incoming, code, reasons) in cases {
            let s = snap_with(vec![n], bound);
            let st = filter_one(&p, &incoming, &s);
            assert_eq!(st.code, code, "{case}: {st:?}");
            let got: Vec<&str> = st.reasons.iter().map(|r| r.as_ref()).collect();
            assert_eq!(got, reasons, "{case}");
            if code != Ok_ {
                assert_eq!(st.plugin, NAME, "{case}");
            }
        }
    }

    #[test]
    fn ignored_resources_and_groups() {
        let s = snap_with(
            vec![node("n", 10, 20).scalar("hugepages-2Mi", 0).build()],
            vec![],
        );
        let wants_gpu = pod("p", 1, 1).scalar("example.com/gpu", 1).build();
        let wants_other = pod("q", 1, 1).scalar("other.io/fpga", 1).build();
        let wants_hugepages = pod("h", 1, 1).scalar("hugepages-2Mi", MI).build();

        let a = NodeResourcesFitArgs {
            ignored_resources: vec!["example.com/gpu".into()],
            ..Default::default()
        };
        let p = plugin(&a);
        assert!(filter_one(&p, &wants_gpu, &s).is_success());
        assert!(!filter_one(&p, &wants_other, &s).is_success());

        let a = NodeResourcesFitArgs {
            ignored_resource_groups: vec!["other.io".into()],
            ..Default::default()
        };
        let p = plugin(&a);
        assert!(!filter_one(&p, &wants_gpu, &s).is_success());
        assert!(filter_one(&p, &wants_other, &s).is_success());

        // Only extended resources can be ignored; hugepages are native.
        let a = NodeResourcesFitArgs {
            ignored_resources: vec!["hugepages-2Mi".into()],
            ignored_resource_groups: vec!["hugepages-2Mi".into()],
            ..Default::default()
        };
        let p = plugin(&a);
        assert!(!filter_one(&p, &wants_hugepages, &s).is_success());
    }

    #[test]
    fn nominated_pods_count_only_at_equal_or_higher_priority() {
        let base = || {
            let mut s = snap_with(vec![node("n", 10, 20).pods(3).build()], vec![]);
            s.nominate(pod("nom", 6, 1).priority(10).arc(), 0);
            s
        };
        let p = plugin(&NodeResourcesFitArgs::default());
        // (incoming priority, fits)
        for (prio, fits) in [(5, false), (10, false), (20, true)] {
            let s = base();
            let st = filter_one(&p, &pod("p", 5, 1).priority(prio).build(), &s);
            assert_eq!(st.is_success(), fits, "priority {prio}: {st:?}");
            if !fits {
                assert_eq!(st.code, Code::Unschedulable);
                assert_eq!(st.reasons.as_slice(), [REASON_CPU]);
            }
        }
        // The pod's own nomination does not count against it.
        let s = base();
        let own = pod("nom", 6, 1).priority(10).build();
        assert!(filter_one(&p, &own, &s).is_success());

        // Nominated pods take pod slots too.
        let mut s = snap_with(
            vec![node("n", 10, 20).pods(2).build()],
            vec![pod("b", 1, 1).on("n").build()],
        );
        s.nominate(pod("nom", 1, 1).priority(1).arc(), 0);
        let st = filter_one(&p, &pod("p", 1, 1).build(), &s);
        assert_eq!(st.reasons.as_slice(), [REASON_TOO_MANY_PODS]);

        // ... and their extended resources.
        let mut s = snap_with(
            vec![node("n", 10, 20).scalar("example.com/gpu", 2).build()],
            vec![],
        );
        s.nominate(pod("nom", 1, 1).scalar("example.com/gpu", 1).arc(), 0);
        let st = filter_one(&p, &pod("p", 1, 1).scalar("example.com/gpu", 2).build(), &s);
        assert_eq!(st.reasons.as_slice(), ["Insufficient example.com/gpu"]);
        assert!(
            filter_one(&p, &pod("p", 1, 1).scalar("example.com/gpu", 1).build(), &s).is_success()
        );
    }

    #[test]
    fn filter_without_prefilter_state_gives_the_same_answer() {
        let s = snap_with(
            vec![node("n", 10, 20).scalar("example.com/gpu", 1).build()],
            vec![],
        );
        let a = NodeResourcesFitArgs {
            ignored_resources: vec!["example.com/fpga".into()],
            ..Default::default()
        };
        let p = plugin(&a);
        for incoming in [
            pod("p", 11, 30)
                .scalar("example.com/gpu", 2)
                .scalar("example.com/fpga", 9)
                .build(),
            pod("p", 1, 1)
                .scalar("example.com/gpu", 1)
                .scalar("example.com/fpga", 9)
                .build(),
        ] {
            let without = p.filter(&CycleState::default(), &incoming, &s, 0);
            assert_eq!(without, filter_one(&p, &incoming, &s));
        }
    }

    // ---- Score ----------------------------------------------------------------

    fn scores(a: &NodeResourcesFitArgs, s: &Snapshot, incoming: &Pod) -> Vec<i64> {
        let p = plugin(a);
        score_all(Some(&p), &p, incoming, s)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// Two nodes: "used" (4 cpu, 10000 B, a 1000m/2000 B pod) and "empty" (6 cpu, 10000 B).
    fn two_nodes() -> Snapshot {
        snap_with(
            vec![
                node("used", 4000, 10000).build(),
                node("empty", 6000, 10000).build(),
            ],
            vec![pod("b", 1000, 2000).on("used").build()],
        )
    }

    #[test]
    fn least_allocated_scores() {
        let a = args(ScoringStrategyType::LeastAllocated);
        // used: cpu (4000-2000)/4000 = 50, mem (10000-5000)/10000 = 50 → 50
        // empty: cpu 5000/6000 = 83, mem 7000/10000 = 70 → 153/2 = 76
        assert_eq!(
            scores(&a, &two_nodes(), &pod("p", 1000, 3000).build()),
            [50, 76]
        );

        // Weights: cpu 3, memory 1 on "empty": (83*3 + 70) / 4 = 79
        let mut w = a.clone();
        w.scoring_strategy.resources = weights(&[("cpu", 3), ("memory", 1)]);
        assert_eq!(
            scores(&w, &two_nodes(), &pod("p", 1000, 3000).build())[1],
            79
        );

        // Over-committed resources score 0.
        let s = snap_with(vec![node("n", 1000, 10000).build()], vec![]);
        // cpu 2000 > 1000 → 0, mem 5000/10000 → 50; (0 + 50)/2 = 25
        assert_eq!(scores(&a, &s, &pod("p", 2000, 5000).build()), [25]);
    }

    #[test]
    fn zero_requests_count_as_defaults_when_scoring() {
        let a = args(ScoringStrategyType::LeastAllocated);
        let s = snap_with(vec![node("n", 4000, 1024 * MI).build()], vec![]);
        // cpu (4000-100)/4000 = 97, mem (1024-200)/1024 = 80 → 177/2 = 88
        assert_eq!(scores(&a, &s, &pod("p", 0, 0).build()), [88]);

        // A bound zero-request pod holds 100m / 200MiB for scoring.
        let s = snap_with(
            vec![node("n", 1000, 1024 * MI).build()],
            vec![pod("b", 0, 0).on("n").build()],
        );
        // cpu 100+400 = 500 → 50, mem 200+200 MiB → (1024-400)/1024 = 60 → 55
        assert_eq!(scores(&a, &s, &pod("p", 400, 0).build()), [55]);
    }

    #[test]
    fn resources_the_node_lacks_are_left_out() {
        let a = args(ScoringStrategyType::LeastAllocated);
        let s = snap_with(vec![node("n", 4000, 0).build()], vec![]);
        // memory allocatable 0: skipped, weight included nowhere → cpu alone: 75
        assert_eq!(scores(&a, &s, &pod("p", 1000, 3000).build()), [75]);
        let s = snap_with(vec![node("n", 0, 0).build()], vec![]);
        assert_eq!(scores(&a, &s, &pod("p", 1000, 3000).build()), [0]);
    }

    #[test]
    fn most_allocated_scores() {
        let a = args(ScoringStrategyType::MostAllocated);
        // used: cpu 2000/4000 = 50, mem 5000/10000 = 50 → 50
        // empty: cpu 1000/6000 = 16, mem 3000/10000 = 30 → 23
        assert_eq!(
            scores(&a, &two_nodes(), &pod("p", 1000, 3000).build()),
            [50, 23]
        );
        // Over-commit counts as full: cpu 100, mem 50 → 75.
        let s = snap_with(vec![node("n", 1000, 10000).build()], vec![]);
        assert_eq!(scores(&a, &s, &pod("p", 2000, 5000).build()), [75]);
    }

    #[test]
    fn extended_resources_in_scoring() {
        let gpu = "example.com/gpu";
        let mut a = args(ScoringStrategyType::MostAllocated);
        a.scoring_strategy.resources = weights(&[("cpu", 1), ("memory", 1), (gpu, 2)]);
        let s = snap_with(
            vec![
                node("gpu", 4000, 10000).scalar(gpu, 4).build(),
                node("plain", 4000, 10000).build(),
            ],
            vec![pod("b", 0, 0).scalar(gpu, 1).on("gpu").build()],
        );
        // gpu node: cpu (100+1000)/4000 = 27, mem (200MiB+3000) > 10000 → 100,
        // gpu 2/4 = 50 ×2 → (27 + 100 + 100) / 4 = 56
        // plain: gpu absent → left out: (25 + 30) / 2 = 27
        assert_eq!(
            scores(&a, &s, &pod("p", 1000, 3000).scalar(gpu, 1).build()),
            [56, 27]
        );
        // A pod not asking for the gpu is scored on cpu and memory only:
        // gpu node: (27 + 100) / 2 = 63
        assert_eq!(scores(&a, &s, &pod("p", 1000, 3000).build()), [63, 27]);
    }

    #[test]
    fn requested_to_capacity_ratio_scores() {
        let mut a = args(ScoringStrategyType::RequestedToCapacityRatio);
        let s = snap_with(vec![node("n", 4000, 10000).build()], vec![]);
        let p = pod("p", 1000, 3000).build();
        // shape 0→0, 100→10: cpu 25, mem 30 → round(27.5) = 28
        assert_eq!(scores(&a, &s, &p), [28]);
        // shape 0→10, 100→0: cpu 75, mem 70 → round(72.5) = 73
        a.scoring_strategy.requested_to_capacity_ratio = Some(shape(&[(0, 10), (100, 0)]));
        assert_eq!(scores(&a, &s, &p), [73]);
        // Resources scoring 0 leave the average: cpu util 75 → 50, mem util 30 → 0 (left out)
        a.scoring_strategy.requested_to_capacity_ratio = Some(shape(&[(0, 0), (50, 0), (100, 10)]));
        assert_eq!(scores(&a, &s, &pod("p", 3000, 3000).build()), [50]);
        // Everything scoring 0 → 0.
        assert_eq!(scores(&a, &s, &p), [0]);
        // Over-commit reads as 100% utilization.
        a.scoring_strategy.requested_to_capacity_ratio = Some(shape(&[(0, 0), (100, 10)]));
        assert_eq!(scores(&a, &s, &pod("p", 8000, 10000).build()), [100]);
    }

    #[test]
    fn broken_linear_function() {
        let shape = [(10, 20), (50, 80)];
        for (p, want) in [(0, 20), (10, 20), (30, 50), (50, 80), (100, 80), (11, 21)] {
            assert_eq!(broken_linear(&shape, p), want, "p={p}");
        }
        assert_eq!(broken_linear(&[(40, 70)], 0), 70);
        assert_eq!(broken_linear(&[(40, 70)], 90), 70);
    }

    #[test]
    fn score_without_prescore_matches() {
        let p = plugin(&args(ScoringStrategyType::LeastAllocated));
        let s = two_nodes();
        let incoming = pod("p", 1000, 3000).build();
        let with: Vec<i64> = score_all(Some(&p), &p, &incoming, &s)
            .into_iter()
            .map(|x| x.1)
            .collect();
        let without: Vec<i64> = score_all(None, &p, &incoming, &s)
            .into_iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(with, without);
    }

    // ---- args -----------------------------------------------------------------

    #[test]
    fn validation_table() {
        type Edit = fn(&mut NodeResourcesFitArgs);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |a| a.scoring_strategy.resources[0].weight = 0,
                "nodeResourcesFit.scoringStrategy.resources[0].weight",
            ),
            (
                |a| a.scoring_strategy.resources[1].weight = 101,
                "nodeResourcesFit.scoringStrategy.resources[1].weight",
            ),
            (
                |a| a.scoring_strategy.resources[1].name.clear(),
                "nodeResourcesFit.scoringStrategy.resources[1].name",
            ),
            (
                |a| a.ignored_resources = vec!["a/b/c".into()],
                "nodeResourcesFit.ignoredResources[0]",
            ),
            (
                |a| a.ignored_resource_groups = vec!["ok".into(), "ex.com/x".into()],
                "nodeResourcesFit.ignoredResourceGroups[1]",
            ),
            (
                |a| a.scoring_strategy.kind = ScoringStrategyType::RequestedToCapacityRatio,
                "nodeResourcesFit.scoringStrategy.requestedToCapacityRatio",
            ),
            (
                |a| a.scoring_strategy.requested_to_capacity_ratio = Some(shape(&[])),
                "nodeResourcesFit.scoringStrategy.requestedToCapacityRatio.shape",
            ),
            (
                |a| {
                    a.scoring_strategy.requested_to_capacity_ratio =
                        Some(shape(&[(0, 0), (101, 10)]))
                },
                "nodeResourcesFit.scoringStrategy.requestedToCapacityRatio.shape[1].utilization",
            ),
            (
                |a| {
                    a.scoring_strategy.requested_to_capacity_ratio =
                        Some(shape(&[(50, 0), (50, 10)]))
                },
                "nodeResourcesFit.scoringStrategy.requestedToCapacityRatio.shape[1].utilization",
            ),
            (
                |a| a.scoring_strategy.requested_to_capacity_ratio = Some(shape(&[(0, 11)])),
                "nodeResourcesFit.scoringStrategy.requestedToCapacityRatio.shape[0].score",
            ),
        ];
        assert_eq!(validate_args(&NodeResourcesFitArgs::default()), Ok(()));
        for (edit, field) in cases {
            let mut a = NodeResourcesFitArgs::default();
            edit(&mut a);
            let err = validate_args(&a).unwrap_err();
            assert_eq!(err.0, field, "{err:?}");
            assert!(NodeResourcesFit::new(&a).is_err());
            let all = crate::config::PluginArgs {
                node_resources_fit: a,
                ..Default::default()
            };
            assert_eq!(crate::plugins::validate_args(&all).unwrap_err().0, field);
        }
        let mut ok = args(ScoringStrategyType::RequestedToCapacityRatio);
        ok.scoring_strategy.resources = weights(&[("example.com/gpu", 100)]);
        assert_eq!(validate_args(&ok), Ok(()));
    }

    #[test]
    fn registry_builds_every_extension_point() {
        use crate::config::default_profiles;
        let config = crate::config::Config::default();
        let mut profile = default_profiles().remove(0);
        let ctx = crate::plugins::BuildContext {
            config: &config,
            profile: &profile,
        };
        let set = crate::plugins::build_plugin(NAME, &ctx).unwrap();
        assert!(set.pre_filter.is_some() && set.filter.is_some());
        assert!(set.pre_score.is_some() && set.score.is_some());

        profile.plugin_args.node_resources_fit.scoring_strategy.kind =
            ScoringStrategyType::RequestedToCapacityRatio;
        let ctx = crate::plugins::BuildContext {
            config: &config,
            profile: &profile,
        };
        let err = crate::plugins::build_plugin(NAME, &ctx).err().unwrap();
        assert!(
            matches!(err, crate::plugins::PluginError::Args { name: NAME, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn schedule_packs_with_most_allocated_and_reports_reasons() {
        use crate::framework::{schedule, CycleOptions, PluginSet, Profile};
        let p = std::sync::Arc::new(plugin(&args(ScoringStrategyType::MostAllocated)));
        let mut set = PluginSet::new(NAME);
        set.pre_filter = Some(p.clone());
        set.filter = Some(p.clone());
        set.pre_score = Some(p.clone());
        set.score = Some(p);
        let profile = Profile::new("t", vec![(set, 1)]);
        let mut s = snap_with(
            vec![
                node("a-small", 1000, 10 * GI).build(),
                node("b-busy", 4000, 10 * GI).build(),
                node("c-idle", 4000, 10 * GI).build(),
            ],
            vec![pod("b", 2000, GI).on("b-busy").build()],
        );
        let d = schedule(
            &profile,
            &pod("p", 1500, GI).build(),
            &mut s,
            CycleOptions::default(),
        );
        assert_eq!(d.node, s.nodes().by_name("b-busy"));
        let d = schedule(
            &profile,
            &pod("p", 5000, GI).build(),
            &mut s,
            CycleOptions::default(),
        );
        assert_eq!(d.node, None);
        assert_eq!(
            d.message().unwrap(),
            "0/3 nodes are available: 3 Insufficient cpu."
        );
        assert!(d
            .statuses
            .per_node
            .iter()
            .all(|(_, st)| st.code == Code::UnschedulableAndUnresolvable));
    }

    // ---- properties -----------------------------------------------------------

    const GPU: &str = "example.com/gpu";

    #[derive(Debug, Clone)]
    struct Req {
        cpu: i64,
        mem: i64,
        eph: i64,
        gpu: i64,
    }

    fn req_strategy() -> impl Strategy<Value = Req> {
        (
            prop_oneof![Just(0i64), 0..4000i64],
            prop_oneof![Just(0i64), 0..8 * GI],
            prop_oneof![Just(0i64), 0..100i64],
            prop_oneof![Just(0i64), 0..3i64],
        )
            .prop_map(|(cpu, mem, eph, gpu)| Req { cpu, mem, eph, gpu })
    }

    fn alloc_strategy() -> impl Strategy<Value = (Req, i64)> {
        (
            prop_oneof![Just(0i64), 0..16000i64],
            prop_oneof![Just(0i64), 0..32 * GI],
            prop_oneof![Just(0i64), 0..400i64],
            prop_oneof![Just(0i64), 0..8i64],
            0..6i64,
        )
            .prop_map(|(cpu, mem, eph, gpu, pods)| (Req { cpu, mem, eph, gpu }, pods))
    }

    fn mk_pod(name: &str, r: &Req, prio: i32) -> PodBuilder {
        let b = pod(name, r.cpu, r.mem).ephemeral(r.eph).priority(prio);
        if r.gpu > 0 {
            b.scalar(GPU, r.gpu)
        } else {
            b
        }
    }

    fn mk_node(alloc: &(Req, i64)) -> crate::model::Node {
        let (r, pods) = alloc;
        let mut b = node("n", r.cpu, r.mem).ephemeral(r.eph).pods(*pods);
        if r.gpu > 0 {
            b = b.scalar(GPU, r.gpu);
        }
        b.build()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Filter passes exactly when, with the pod (and the nominated pods that
        /// count) placed, every resource the pod requests and the pod count stay
        /// within allocatable: the filter never over-commits.
        #[test]
        fn filter_never_overcommits(
            alloc in alloc_strategy(),
            bound in prop::collection::vec(req_strategy(), 0..5),
            nominated in prop::collection::vec((req_strategy(), 0..3i32), 0..3),
            incoming in req_strategy(),
            prio in 0..3i32,
        ) {
            let mut s = snap_with(vec![mk_node(&alloc)], vec![]);
            for (k, r) in bound.iter().enumerate() {
                s.upsert_pod(mk_pod(&format!("b{k}"), r, 0).on("n").arc()).unwrap();
            }
            for (k, (r, p)) in nominated.iter().enumerate() {
                s.nominate(mk_pod(&format!("nom{k}"), r, *p).arc(), 0);
            }
            let p = plugin(&NodeResourcesFitArgs::default());
            let pod = mk_pod("p", &incoming, prio).arc();
            let st = filter_one(&p, &pod, &s);

            let counted: Vec<&Req> = nominated.iter().filter(|(_, np)| *np >= prio).map(|(r, _)| r).collect();
            let extra = |f: fn(&Req) -> i64| counted.iter().map(|r| f(r)).sum::<i64>();
            s.assume(pod.clone(), 0).unwrap();
            let t = s.nodes();
            let gpu = Sym::new(GPU);
            let within = t.pod_count[0] + counted.len() as i64 <= t.alloc_pods[0]
                && (incoming.cpu == 0 || t.req_cpu[0] + extra(|r| r.cpu) <= t.alloc_cpu[0])
                && (incoming.mem == 0 || t.req_mem[0] + extra(|r| r.mem) <= t.alloc_mem[0])
                && (incoming.eph == 0 || t.req_eph[0] + extra(|r| r.eph) <= t.alloc_eph[0])
                && (incoming.gpu == 0
                    || t.req_scalar(0, gpu) + extra(|r| r.gpu) <= t.node[0].allocatable.scalar(gpu));
            prop_assert_eq!(st.is_success(), within, "{:?}", st);
            if !st.is_success() {
                prop_assert!(st.is_rejection());
                prop_assert!(!st.reasons.is_empty());
            }
        }

        /// Every strategy scores within 0..=100, whatever the node: zero
        /// allocatable, over-committed, lacking the extended resource.
        #[test]
        fn scores_stay_in_range(
            alloc in alloc_strategy(),
            bound in prop::collection::vec(req_strategy(), 0..5),
            incoming in req_strategy(),
            kind in 0..3u8,
            w in (1..=100i64, 1..=100i64, 1..=100i64),
            points in prop::collection::btree_map(0..=100i64, 0..=10i64, 1..5),
        ) {
            let mut s = snap_with(vec![mk_node(&alloc)], vec![]);
            for (k, r) in bound.iter().enumerate() {
                s.upsert_pod(mk_pod(&format!("b{k}"), r, 0).on("n").arc()).unwrap();
            }
            let mut a = NodeResourcesFitArgs::default();
            a.scoring_strategy.kind = match kind {
                0 => ScoringStrategyType::LeastAllocated,
                1 => ScoringStrategyType::MostAllocated,
                _ => ScoringStrategyType::RequestedToCapacityRatio,
            };
            a.scoring_strategy.resources = weights(&[("cpu", w.0), ("memory", w.1), (GPU, w.2)]);
            let pts: Vec<(i64, i64)> = points.into_iter().collect();
            a.scoring_strategy.requested_to_capacity_ratio = Some(shape(&pts));
            let got = scores(&a, &s, &mk_pod("p", &incoming, 0).build());
            prop_assert!((0..=MAX_NODE_SCORE).contains(&got[0]), "{}", got[0]);
        }
    }

    /// The bounded selection is turned off by this answer: true exactly when
    /// the vector kernel scores every slot and the memo has nothing to give.
    #[test]
    fn scores_every_slot_when_the_kernel_runs_and_nothing_is_kept() {
        let s = snap_with(
            (0..64)
                .map(|i| node(&format!("n{i}"), 4000, 8 * GI).build())
                .collect(),
            vec![],
        );
        let incoming = pod("p", 500, GI).build();
        let nodes: Vec<NodeIdx> = (0..64).collect();
        let vector = pair_kernel::slots_per_node().is_some();
        for kind in [
            ScoringStrategyType::LeastAllocated,
            ScoringStrategyType::MostAllocated,
        ] {
            let p = plugin(&args(kind));
            let mut fresh = CycleState::default();
            fresh.set_fresh_scores(true);
            assert_eq!(
                p.scores_every_slot(&fresh, &incoming, &s, &nodes),
                vector,
                "{kind:?}"
            );
            // Scores kept for these requests: the memo gives them node by node.
            let reuse = CycleState::default();
            assert_eq!(
                p.scores_every_slot(&reuse, &incoming, &s, &nodes),
                vector,
                "{kind:?}"
            );
            let mut out = vec![0; nodes.len()];
            p.score_nodes(&reuse, &incoming, &s, &nodes, &mut out);
            assert!(
                !p.scores_every_slot(&reuse, &incoming, &s, &nodes),
                "{kind:?}"
            );
            assert_eq!(
                p.scores_every_slot(&fresh, &incoming, &s, &nodes),
                vector,
                "{kind:?}"
            );
            // Two nodes far apart (fewer than one node in ten slots, sparser than
            // the kernel is used at even with AVX-512): the scalar loop scores them.
            assert!(
                !p.scores_every_slot(&fresh, &incoming, &s, &[0, 63]),
                "{kind:?}"
            );
            // Kept for other requests: nothing to give.
            let other = pod("q", 700, GI).build();
            assert_eq!(
                p.scores_every_slot(&reuse, &other, &s, &nodes),
                vector,
                "{kind:?}"
            );
        }
        // No kernel for a shape, nor for weights that do not sum to a power of two.
        let ratio = plugin(&args(ScoringStrategyType::RequestedToCapacityRatio));
        assert!(!ratio.scores_every_slot(&CycleState::default(), &incoming, &s, &nodes));
        let mut odd = args(ScoringStrategyType::LeastAllocated);
        odd.scoring_strategy.resources = weights(&[("cpu", 1), ("memory", 2)]);
        assert!(!plugin(&odd).scores_every_slot(&CycleState::default(), &incoming, &s, &nodes));
    }
}
