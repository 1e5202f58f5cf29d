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

use super::resource_allocation::{
    allocatable_requested, is_extended_resource_name, is_scalar_resource_name, pod_requests,
    resolve, Usage, WeightedResource,
};
use crate::config::{NodeResourcesFitArgs, ScoringStrategyType, UtilizationShapePoint};
use crate::framework::{
    Code, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreScorePlugin, Reason, ScorePlugin,
    Status, MAX_NODE_SCORE,
};
use crate::model::{Pod, Sym};
use crate::snapshot::{NodeIdx, NodeTable, Snapshot};
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

enum Strategy {
    LeastAllocated,
    MostAllocated,
    /// Shape points as (utilization, node score already scaled to 0..=100).
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

pub struct NodeResourcesFit {
    ignored_resources: Vec<String>,
    ignored_resource_groups: Vec<String>,
    strategy: Strategy,
    resources: Vec<WeightedResource>,
}

impl NodeResourcesFit {
    /// Builds the plugin from validated args; `Err` carries (field, message) like `validate_args`.
    pub fn new(args: &NodeResourcesFitArgs) -> Result<NodeResourcesFit, (String, String)> {
        validate_args(args)?;
        let s = &args.scoring_strategy;
        let strategy = match s.kind {
            ScoringStrategyType::LeastAllocated => Strategy::LeastAllocated,
            ScoringStrategyType::MostAllocated => Strategy::MostAllocated,
            ScoringStrategyType::RequestedToCapacityRatio => {
                let shape = s
                    .requested_to_capacity_ratio
                    .as_ref()
                    .map(|r| r.shape.as_slice())
                    .unwrap_or_default();
                Strategy::RequestedToCapacityRatio(
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
                Strategy::LeastAllocated => least_requested_score(requested, alloc),
                Strategy::MostAllocated => most_requested_score(requested, alloc),
                Strategy::RequestedToCapacityRatio(shape) => {
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
            Strategy::RequestedToCapacityRatio(_) => {
                (node_score as f64 / weight_sum as f64).round() as i64
            }
            _ => node_score / weight_sum,
        }
    }
}

/// Free share of the resource after placing the pod, 0..=100.
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    ((capacity - requested) as i128 * MAX_NODE_SCORE as i128 / capacity as i128) as i64
}

/// Used share of the resource after placing the pod, 0..=100 (over-commit counts as full).
fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 {
        return 0;
    }
    let requested = requested.clamp(0, capacity);
    (requested as i128 * MAX_NODE_SCORE as i128 / capacity as i128) as i64
}

fn ratio_score(shape: &[(i64, i64)], requested: i64, capacity: i64) -> i64 {
    let utilization = if capacity <= 0 || requested > capacity {
        MAX_UTILIZATION
    } else {
        (requested.max(0) as i128 * MAX_UTILIZATION as i128 / capacity as i128) as i64
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

/// The pod's requests the filter checks, computed once per cycle.
struct FitRequest {
    cpu: i64,
    memory: i64,
    ephemeral_storage: i64,
    /// Non-zero scalar requests not ignored, sorted by name.
    scalars: SmallVec<[ScalarRequest; 2]>,
}

struct ScalarRequest {
    name: Sym,
    amount: i64,
    reason: Reason,
}

/// Per-resource pod requests for scoring, in the order of the configured resources.
struct FitScoreState {
    requests: SmallVec<[i64; 4]>,
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _: &Snapshot) -> Status {
        let r = &pod.requests;
        let mut scalars: SmallVec<[ScalarRequest; 2]> = SmallVec::new();
        for &(name, amount) in &r.scalars {
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
        state.write(FitRequest {
            cpu: r.milli_cpu,
            memory: r.memory,
            ephemeral_storage: r.ephemeral_storage,
            scalars,
        });
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
        let Some(req) = state.read::<FitRequest>() else {
            return Status::error(
                NAME,
                "reading PreFilterNodeResourcesFit from cycle state: not found",
            );
        };
        let t = snap.nodes();
        let i = node as usize;
        let mut held = Held {
            pods: t.pod_count[i],
            cpu: t.req_cpu[i],
            memory: t.req_mem[i],
            ephemeral_storage: t.req_eph[i],
        };
        // Scalar amounts of counted nominated pods, only for scalars the pod requests.
        let mut nominated_scalars: SmallVec<[(Sym, i64); 2]> = SmallVec::new();
        if snap.has_nominations() {
            for n in snap.nominated_on(node) {
                let p = &n.pod;
                if p.priority < pod.priority || p.key == pod.key {
                    continue;
                }
                let r = &p.requests;
                held.pods += 1;
                held.cpu = held.cpu.saturating_add(r.milli_cpu);
                held.memory = held.memory.saturating_add(r.memory);
                held.ephemeral_storage = held.ephemeral_storage.saturating_add(r.ephemeral_storage);
                for &(s, v) in &r.scalars {
                    if !req.scalars.iter().any(|q| q.name == s) {
                        continue;
                    }
                    match nominated_scalars.iter_mut().find(|(k, _)| *k == s) {
                        Some(e) => e.1 = e.1.saturating_add(v),
                        None => nominated_scalars.push((s, v)),
                    }
                }
            }
        }
        let fits = held.pods < t.alloc_pods[i]
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
                    scalar_held(t, node, q.name, &nominated_scalars),
                )
            });
        if fits {
            Status::success()
        } else {
            insufficient(req, t, node, held, &nominated_scalars)
        }
    }
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
    for q in &req.scalars {
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
        match state.read::<FitScoreState>() {
            Some(s) => self.score_node(snap, node, &s.requests),
            None => self.score_node(
                snap,
                node,
                &pod_requests(pod, &self.resources, Usage::NonZero),
            ),
        }
    }
}
