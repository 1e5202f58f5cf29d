//! NodeResourcesBalancedAllocation: favours nodes whose resources stay evenly
//! used once the pod is placed.
//!
//! Follows current upstream (`noderesources/balanced_allocation.go`, v1.35-era source):
//! - requested shares use *requested* amounts (upstream's `useRequested: true`), not
//!   the non-zero defaults NodeResourcesFit scores with;
//! - each share is capped at 1; resources the node lacks (allocatable 0) and scalar
//!   resources the pod does not request are left out;
//! - score = (1 - standard deviation of the shares) × 100, truncated; with two shares
//!   the deviation is |a - b| / 2, with one or none it is 0;
//! - PreScore skips the plugin for a pod requesting none of the resources
//!   (best-effort pods, kubernetes#129138), so they are not all piled on one node.

use super::resource_allocation::{
    allocatable_requested, pod_requests, resolve, Usage, WeightedResource,
};
use crate::config::BalancedAllocationArgs;
use crate::framework::{CycleState, Plugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};
use smallvec::SmallVec;

pub const NAME: &str = "NodeResourcesBalancedAllocation";

pub struct NodeResourcesBalancedAllocation {
    resources: Vec<WeightedResource>,
}

/// Per-resource pod requests, in the order of the configured resources.
struct BalancedState {
    requests: SmallVec<[i64; 4]>,
}

impl NodeResourcesBalancedAllocation {
    pub fn new(args: &BalancedAllocationArgs) -> Result<Self, (String, String)> {
        validate_args(args)?;
        Ok(NodeResourcesBalancedAllocation {
            resources: resolve(&args.resources),
        })
    }

    fn score_node(&self, snap: &Snapshot, node: NodeIdx, pod_requests: &[i64]) -> i64 {
        let mut shares: SmallVec<[f64; 4]> = SmallVec::new();
        for (w, &pod_request) in self.resources.iter().zip(pod_requests) {
            let (alloc, requested) =
                allocatable_requested(snap, node, w.kind, pod_request, Usage::Requested);
            if alloc == 0 {
                continue;
            }
            shares.push((requested as f64 / alloc as f64).min(1.0));
        }
        balanced_score(&shares)
    }
}

/// (1 - std) × MaxNodeScore over the shares, truncated like upstream's int64 conversion.
fn balanced_score(shares: &[f64]) -> i64 {
    let std = match shares.len() {
        0 | 1 => 0.0,
        2 => ((shares[0] - shares[1]) / 2.0).abs(),
        n => {
            let mean = shares.iter().sum::<f64>() / n as f64;
            let var = shares.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / n as f64;
            var.sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// Upstream: resource names unique, every weight exactly 1 (weights do not apply here).
pub fn validate_args(args: &BalancedAllocationArgs) -> Result<(), (String, String)> {
    const P: &str = "nodeResourcesBalancedAllocation";
    for (i, r) in args.resources.iter().enumerate() {
        if r.name.is_empty() {
            return Err((
                format!("{P}.resources[{i}].name"),
                "must not be empty".into(),
            ));
        }
        if args.resources[..i].iter().any(|o| o.name == r.name) {
            return Err((
                format!("{P}.resources[{i}].name"),
                format!("duplicate resource {:?}", r.name),
            ));
        }
        if r.weight != 1 {
            return Err((
                format!("{P}.resources[{i}].weight"),
                format!("must be 1, got {}", r.weight),
            ));
        }
    }
    Ok(())
}

impl Plugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for NodeResourcesBalancedAllocation {
    fn pre_score(&self, state: &mut CycleState, pod: &Pod, _: &Snapshot, _: &[NodeIdx]) -> Status {
        let requests = pod_requests(pod, &self.resources, Usage::Requested);
        if requests.iter().all(|r| *r == 0) {
            return Status::skip();
        }
        state.write(BalancedState { requests });
        Status::success()
    }
}

impl ScorePlugin for NodeResourcesBalancedAllocation {
    fn score(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        if let Some(s) = state.read::<BalancedState>() {
            return self.score_node(snap, node, &s.requests);
        }
        let requests = pod_requests(pod, &self.resources, Usage::Requested);
        if requests.iter().all(|r| *r == 0) {
            return 0;
        }
        self.score_node(snap, node, &requests)
    }
}
