//! Preemption: when no node fits a pod, find a node where evicting
//! lower-priority pods makes room, as upstream's DefaultPreemption does, with an
//! optional Spark victim policy (drivers protected, cascades counted).
//!
//! The evaluator only decides. The outcome is data ([`PreemptionPlan`]) that the
//! live scheduler and the simulator carry out: nominate the preemptor, mark and
//! delete the victims, record the events whose texts are defined here.

mod candidates;
mod cascade;
mod pdb;
mod victims;
mod what_if;

pub use candidates::{
    pick, rank, window, Candidate, Rank, MIN_CANDIDATE_NODES_ABSOLUTE,
    MIN_CANDIDATE_NODES_PERCENTAGE, NO_VICTIMS,
};
pub use cascade::{cost, CascadeCost, Ownership};
pub use pdb::{pdb_from_k8s, violations, Pdb, PdbError};
pub use victims::{SparkPolicy, VictimPolicy};

use crate::framework::{
    unschedulable_message, Code, Decision, FilterRunner, NodeStatuses, Nomination,
    PostFilterResult, Status,
};
use crate::model::{Pod, PodKey};
use crate::snapshot::{NodeIdx, Snapshot};
use candidates::{DryRun, DryRunCounts};
use victims::Need;
use what_if::WhatIf;

/// Upstream's status for nodes where removing pods cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NOT_ELIGIBLE_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const NOT_ELIGIBLE_TERMINATING: &str =
    "not eligible due to a terminating pod on the nominated node.";

/// Victim pod condition set before deletion (upstream v1.DisruptionTarget).
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
pub const REASON_PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";
/// Event on each victim: reason and action, as upstream.
pub const EVENT_PREEMPTED: &str = "Preempted";
pub const EVENT_ACTION_PREEMPTING: &str = "Preempting";
/// Event on the preemptor when it is nominated (ours; upstream only sets the field).
pub const EVENT_NOMINATED: &str = "Nominated";

/// Message of the DisruptionTarget condition on a victim.
pub fn disruption_condition_message(scheduler_name: &str) -> String {
    format!("{scheduler_name}: preempting to accommodate a higher priority pod")
}

/// Message of the `Preempted` event on a victim.
pub fn victim_event_message(preemptor: &PodKey, node: &str) -> String {
    format!("Preempted by {preemptor} on node {node}")
}

/// Message of the `Nominated` event on the preemptor.
pub fn nomination_event_message(plan: &PreemptionPlan) -> String {
    let mut m = format!(
        "Nominated to node {} after preempting {} pod(s)",
        plan.node,
        plan.victims.len()
    );
    if !plan.cascade.is_empty() {
        m.push_str(&format!(
            " ({} executor(s) lost with their drivers)",
            plan.cascade.len()
        ));
    }
    m
}

/// One preemption to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreemptionPlan {
    pub preemptor: PodKey,
    pub node: String,
    /// Most important first.
    pub victims: Vec<PodKey>,
    /// Executors that die with killed drivers (ownerReference garbage collection), sorted.
    pub cascade: Vec<PodKey>,
    /// Lower-priority pods nominated to the same node: their nomination is cleared
    /// so they look elsewhere (upstream prepareCandidate).
    pub clear_nominations: Vec<PodKey>,
}

impl PreemptionPlan {
    pub fn from_result(pod: &Pod, result: &PostFilterResult, snap: &Snapshot) -> Option<Self> {
        let n = result.nomination.as_ref()?;
        let node = snap.nodes().name.get(n.node as usize)?.as_str().to_owned();
        let cost = cascade::cost(snap, &n.victims);
        let mut clear_nominations: Vec<PodKey> = snap
            .nominated_on(n.node)
            .filter(|x| x.pod.priority < pod.priority && x.pod.key != pod.key)
            .map(|x| x.pod.key.clone())
            .collect();
        clear_nominations.sort();
        Some(PreemptionPlan {
            preemptor: pod.key.clone(),
            node,
            victims: n.victims.iter().map(|v| v.key.clone()).collect(),
            cascade: cost.cascade,
            clear_nominations,
        })
    }

    pub fn from_decision(pod: &Pod, decision: &Decision, snap: &Snapshot) -> Option<Self> {
        Self::from_result(pod, decision.post_filter.as_ref()?, snap)
    }
}

/// Upstream's preemption Evaluator with a pluggable victim policy.
#[derive(Debug, Clone)]
pub struct Evaluator {
    pub plugin: &'static str,
    pub policy: VictimPolicy,
    /// NodeResourcesFit's ignored extended resources, so the resource
    /// pre-checks agree with the filter.
    pub ignored_resources: Vec<String>,
    pub ignored_resource_groups: Vec<String>,
    /// Run the dry run's per-node work on the machine's cores (upstream runs
    /// it on 16 goroutines). The answer is the same either way.
    pub parallel: bool,
}

impl Evaluator {
    /// An evaluator for a profile's PostFilter plugin: victims are checked against
    /// the profile's NodeResourcesFit ignore lists.
    pub fn for_profile(
        plugin: &'static str,
        policy: VictimPolicy,
        ctx: &crate::plugins::BuildContext,
    ) -> Evaluator {
        let fit = &ctx.profile.plugin_args.node_resources_fit;
        let mut e = Evaluator::new(plugin, policy);
        e.ignored_resources = fit.ignored_resources.clone();
        e.ignored_resource_groups = fit.ignored_resource_groups.clone();
        e
    }

    pub fn new(plugin: &'static str, policy: VictimPolicy) -> Evaluator {
        Evaluator {
            plugin,
            policy,
            ignored_resources: Vec::new(),
            ignored_resource_groups: Vec::new(),
            parallel: true,
        }
    }

    /// Upstream PodEligibleToPreemptOthers.
    pub fn eligible(
        &self,
        pod: &Pod,
        snap: &Snapshot,
        statuses: &NodeStatuses,
    ) -> Result<(), &'static str> {
        if pod.preemption_policy == crate::model::PreemptionPolicy::Never {
            return Err(NOT_ELIGIBLE_NEVER);
        }
        let nominated = pod
            .nominated_node_name
            .and_then(|n| snap.nodes().get(n))
            .or_else(|| snap.nomination_of(&pod.key).map(|n| n.node));
        let Some(node) = nominated else {
            return Ok(());
        };
        if statuses
            .get(node)
            .is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable)
        {
            return Ok(());
        }
        // Victims of an earlier preemption still leaving: wait for them. Pods
        // leaving for other reasons do not count (upstream podTerminatingByPreemption).
        if snap.pods_on(node).any(|e| {
            e.pod.terminating
                && e.pod.disrupted_by_preemption
                && self.policy.may_preempt(pod, &e.pod)
        }) {
            return Err(NOT_ELIGIBLE_TERMINATING);
        }
        Ok(())
    }

    /// Upstream Evaluator.Preempt, minus the API calls (see [`PreemptionPlan`]).
    /// Leaves `snap` as it found it.
    pub fn preempt(
        &self,
        pod: &Pod,
        snap: &mut Snapshot,
        statuses: &NodeStatuses,
        filters: &FilterRunner,
    ) -> PostFilterResult {
        self.preempt_with(pod, snap, statuses, filters, true).0
    }

    /// `use_what_if: false` always walks the snapshot (for comparisons). Also
    /// returns how the dry run went.
    fn preempt_with(
        &self,
        pod: &Pod,
        snap: &mut Snapshot,
        statuses: &NodeStatuses,
        filters: &FilterRunner,
        use_what_if: bool,
    ) -> (PostFilterResult, DryRunCounts) {
        if let Err(msg) = self.eligible(pod, snap, statuses) {
            return (
                self.failed(format!("preemption: {msg}")),
                DryRunCounts::default(),
            );
        }
        let num_all = snap.nodes().len();
        let potential = unschedulable_nodes(snap, statuses);
        let pdbs = snap.pdbs().to_vec();
        let what_if = if use_what_if {
            WhatIf::new(pod, snap, filters)
        } else {
            None
        };
        let run = DryRun {
            pod,
            policy: &self.policy,
            filters,
            pdbs: &pdbs,
            need: Need::of(pod, &self.ignored_resources, &self.ignored_resource_groups),
            what_if,
            parallel: self.parallel,
            by_arithmetic: Default::default(),
            prepared_in_parallel: Default::default(),
        };
        let (offset, wanted) = window(&pod.key, potential.len());
        let (candidates, node_statuses) = if potential.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            run.find(snap, &potential, offset, wanted)
        };
        let Some(best) = pick(&candidates) else {
            // Nodes not evaluated (including those where preemption cannot help)
            // get upstream's absent-node status.
            let absent = Status::unresolvable("", NOT_HELPFUL);
            let rest = num_all.saturating_sub(node_statuses.len());
            let msg = unschedulable_message(
                num_all,
                None,
                node_statuses
                    .iter()
                    .chain(std::iter::repeat_n(&absent, rest)),
                None,
            );
            let mut result = self.failed(format!("preemption: {msg}"));
            result.clears_nomination = true;
            return (result, run.counts());
        };
        let c = &candidates[best];
        let result = PostFilterResult {
            status: Status::success(),
            nomination: Some(Nomination {
                node: c.node,
                victims: c.victims.clone(),
            }),
            clears_nomination: false,
        };
        (result, run.counts())
    }

    fn failed(&self, msg: String) -> PostFilterResult {
        PostFilterResult {
            status: Status::unschedulable(self.plugin, msg),
            nomination: None,
            clears_nomination: false,
        }
    }
}

/// Live nodes whose filter status says removing pods may help, in slot order.
/// One pass over the statuses: looking each node up would be quadratic.
fn unschedulable_nodes(snap: &Snapshot, statuses: &NodeStatuses) -> Vec<NodeIdx> {
    let nodes = snap.nodes();
    if let Some(all) = &statuses.all_nodes {
        if all.code != Code::Unschedulable {
            return Vec::new();
        }
        return nodes.live_indices().collect();
    }
    // None: no status; Some(helps): the node's first status (`NodeStatuses::get`).
    let mut by_slot: Vec<Option<bool>> = vec![None; nodes.slots()];
    for (n, st) in &statuses.per_node {
        if let Some(slot @ None) = by_slot.get_mut(*n as usize) {
            *slot = Some(st.code == Code::Unschedulable);
        }
    }
    nodes
        .live_indices()
        .filter(|&n| by_slot[n as usize] == Some(true))
        .collect()
}

#[cfg(test)]
mod tests;
