//! CapacityMix: keeps each Spark application's executors at its capacity mix
//! (e.g. 40% spot / 60% on-demand) and keeps drivers on their allowed capacity types.
//!
//! Each executor targets the mix type furthest below its share of the
//! application's executors (see [`Mix::ranking`]). Soft mode scores the target
//! type highest and falls back to other types when it has no room; hard mode
//! filters out every other type. Counts come from the snapshot, so executors lost
//! with a spot node are refilled by the next ones.
//!
//! An executor the admission webhook gave a type (`spark-fleet.io/capacity-type`)
//! targets that type whatever the counts say now, so admission and scheduling
//! never disagree: hard mode waits for it; soft mode waits too (an autoscaler is
//! launching that capacity for it) until it has been unschedulable for
//! `admission.softFallbackSeconds`, then falls back like any soft executor.

use crate::config::{Config, MixMode};
use crate::framework::{
    retain_nodes, slots_from, CycleState, FilterPlugin, Normalization, Plugin, PreFilterPlugin,
    PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::model::{Pod, Sym};
use crate::snapshot::{NodeIdx, NodeTable, Snapshot};
use crate::spark::policy::{self, Mix, PolicyError};
use std::sync::Arc;

pub const NAME: &str = "CapacityMix";

/// Highest score a mix type other than the target gets. Kept low so that, with
/// the profile weight, the target type outweighs every other plugin combined:
/// weight · (MAX_NODE_SCORE − MAX_OTHER_TYPE_SCORE) > 100 · (sum of other weights).
pub const MAX_OTHER_TYPE_SCORE: i64 = 10;

pub struct CapacityMix {
    config: Arc<Config>,
}

impl CapacityMix {
    pub fn new(config: Arc<Config>) -> CapacityMix {
        CapacityMix { config }
    }
}

/// What PreFilter decided for this pod.
enum MixCycle {
    Driver {
        allowed: Vec<Sym>,
    },
    Executor {
        mix: Mix,
        ranking: Vec<(Sym, i64)>,
        /// Only the first type of `ranking` passes the filter.
        only_target: bool,
    },
}

impl Plugin for CapacityMix {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// An executor's mix and its types ranked for the next placement, best first.
struct Plan {
    mix: Mix,
    ranking: Vec<(Sym, i64)>,
    /// The type came from admission (`spark-fleet.io/capacity-type`).
    admitted: bool,
}

impl Plan {
    /// Whether only the target type may take the pod now: hard mode always; an
    /// admitted soft executor until its wait for that type is over.
    fn only_target(&self, config: &Config, pod: &Pod, snap: &Snapshot) -> bool {
        match self.mix.mode {
            MixMode::Hard => true,
            MixMode::Soft => self.admitted && waits_for_admitted_type(config, pod, snap),
        }
    }
}

/// An admitted soft-mix executor waits for its type until it has been
/// unschedulable this long; with no clock (explain, a simulator without one) it
/// does not wait.
fn waits_for_admitted_type(config: &Config, pod: &Pod, snap: &Snapshot) -> bool {
    snap.now_ms()
        .is_some_and(|now| now < admitted_wait_end(config, pod))
}

/// The end of an admitted executor's wait for its type: `softFallbackSeconds`
/// after `PodScheduled` became False (Unschedulable), or after its creation
/// while it has never been reported so (its first attempts).
fn admitted_wait_end(config: &Config, pod: &Pod) -> i64 {
    let wait_ms = (config.admission.soft_fallback_seconds * 1000.0) as i64;
    pod.unschedulable_since_ms
        .unwrap_or(pod.created_ms)
        .saturating_add(wait_ms)
}

/// When an admitted soft-mix executor stops waiting for its capacity type (ms
/// since the epoch), for the live scheduler to retry it then; None for any other pod.
pub fn admitted_wait_ends_ms(config: &Config, pod: &Pod, snap: &Snapshot) -> Option<i64> {
    let plan = executor_plan(config, pod, snap).ok()??;
    (plan.admitted && plan.mix.mode == MixMode::Soft).then(|| admitted_wait_end(config, pod))
}

fn executor_plan(config: &Config, pod: &Pod, snap: &Snapshot) -> Result<Option<Plan>, PolicyError> {
    if !pod.is_executor() {
        return Ok(None);
    }
    let admitted = policy::admitted_type(config, pod)?;
    let Some(mix) = policy::executor_mix(config, pod, snap)? else {
        return Ok(None);
    };
    let placed = policy::PlacedExecutors::of_app(snap, pod);
    let mut ranking = mix.ranking(|t| placed.of(t), placed.total);
    if let Some(t) = admitted {
        // Admission's choice goes first; the others keep their order behind it.
        let entry = match ranking.iter().position(|e| e.0 == t) {
            Some(i) => ranking.remove(i),
            None => (t, 0),
        };
        ranking.insert(0, entry);
    }
    Ok(Some(Plan {
        mix,
        ranking,
        admitted: admitted.is_some(),
    }))
}

impl PreFilterPlugin for CapacityMix {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snap: &Snapshot) -> Status {
        if pod.is_driver() {
            // A bad mix on the driver would strand every executor: refuse the driver now.
            if let Err(e) = policy::executor_mix(&self.config, pod, snap) {
                return Status::unresolvable(NAME, e.to_string());
            }
            return match policy::driver_capacity(&self.config, pod) {
                Err(e) => Status::unresolvable(NAME, e.to_string()),
                Ok(None) => Status::skip(),
                Ok(Some(allowed)) => {
                    state.write(MixCycle::Driver { allowed });
                    Status::success()
                }
            };
        }
        match executor_plan(&self.config, pod, snap) {
            Err(e) => Status::unresolvable(NAME, e.to_string()),
            Ok(None) => Status::skip(),
            Ok(Some(plan)) => {
                let only_target = plan.only_target(&self.config, pod, snap);
                state.write(MixCycle::Executor {
                    mix: plan.mix,
                    ranking: plan.ranking,
                    only_target,
                });
                if only_target {
                    Status::success()
                } else {
                    Status::skip()
                }
            }
        }
    }
}

impl FilterPlugin for CapacityMix {
    fn filter(&self, state: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let ty = snap.nodes().capacity_type[node as usize];
        match state.read::<MixCycle>() {
            Some(MixCycle::Driver { allowed }) if !allowed.contains(&ty) => {
                let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
                Status::unresolvable(
                    NAME,
                    format!(
                        "node(s) didn't match the driver's allowed capacity types ({})",
                        names.join(", ")
                    ),
                )
            }
            Some(MixCycle::Executor {
                mix,
                ranking,
                only_target: true,
            }) => match ranking.first() {
                Some(&(wanted, _)) if wanted != ty => Status::unschedulable(
                    NAME,
                    if mix.mode == MixMode::Hard {
                        format!(
                            "node(s) didn't match the application's capacity mix (wants {wanted})"
                        )
                    } else {
                        format!(
                            "node(s) didn't match the capacity type the executor was admitted \
                             with ({wanted}; other types after {}s)",
                            self.config.admission.soft_fallback_seconds
                        )
                    },
                ),
                _ => Status::success(),
            },
            _ => Status::success(),
        }
    }

    /// A hard mix ranks types on the placed executors. A skipped (soft or absent)
    /// mix stays skipped unless losing the driver it may be inherited from changes
    /// it: then the executor's own annotations and the config decide. A driver's
    /// allowed types and any other pod's answer come from the pod and the config.
    fn depends_on_placed_pods(&self, state: &CycleState, pod: &Pod) -> bool {
        if !pod.is_executor() {
            return false;
        }
        if !state.skips_filter(NAME) {
            return true;
        }
        let without_driver = policy::executor_mix(&self.config, pod, &Snapshot::default());
        !matches!(without_driver, Ok(None))
            && !matches!(without_driver, Ok(Some(ref m)) if m.mode == MixMode::Soft)
    }

    fn filter_nodes(
        &self,
        state: &CycleState,
        _: &Pod,
        snap: &Snapshot,
        nodes: &mut Vec<NodeIdx>,
        rejected: &mut Vec<NodeIdx>,
    ) -> Result<(), Status> {
        let types = &snap.nodes().capacity_type;
        match state.read::<MixCycle>() {
            Some(MixCycle::Driver { allowed }) => {
                retain_nodes(nodes, rejected, |n| allowed.contains(&types[n as usize]));
            }
            Some(MixCycle::Executor {
                ranking,
                only_target: true,
                ..
            }) => {
                if let Some(&(wanted, _)) = ranking.first() {
                    retain_nodes(nodes, rejected, |n| types[n as usize] == wanted);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn filter_slots(
        &self,
        state: &CycleState,
        _: &Pod,
        snap: &Snapshot,
        first: usize,
        pass: &mut [bool],
    ) -> bool {
        let types = slots_from(&snap.nodes().capacity_type, first);
        let keep = |pass: &mut [bool], ok: &dyn Fn(Sym) -> bool| {
            for (p, &ty) in pass.iter_mut().zip(types) {
                *p &= ok(ty);
            }
        };
        match state.read::<MixCycle>() {
            Some(MixCycle::Driver { allowed }) => keep(pass, &|ty| allowed.contains(&ty)),
            Some(MixCycle::Executor {
                ranking,
                only_target: true,
                ..
            }) => {
                if let Some(&(wanted, _)) = ranking.first() {
                    keep(pass, &|ty| ty == wanted);
                }
            }
            _ => {}
        }
        true
    }
}

impl PreScorePlugin for CapacityMix {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &Snapshot,
        _: &[NodeIdx],
    ) -> Status {
        if !pod.is_executor() {
            return Status::skip();
        }
        if matches!(state.read::<MixCycle>(), Some(MixCycle::Executor { .. })) {
            return Status::success();
        }
        match executor_plan(&self.config, pod, snap) {
            Err(e) => Status::error(NAME, e.to_string()),
            Ok(None) => Status::skip(),
            Ok(Some(plan)) => {
                state.write(MixCycle::Executor {
                    mix: plan.mix,
                    ranking: plan.ranking,
                    only_target: false,
                });
                Status::success()
            }
        }
    }
}

impl ScorePlugin for CapacityMix {
    /// The target type scores 100; the other mix types get at most
    /// MAX_OTHER_TYPE_SCORE, more the larger their deficit; types outside the mix 0.
    fn score(&self, state: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let Some(MixCycle::Executor { ranking, .. }) = state.read::<MixCycle>() else {
            return 0;
        };
        type_score(ranking, snap.nodes().capacity_type[node as usize])
    }

    fn score_nodes(
        &self,
        state: &CycleState,
        _: &Pod,
        snap: &Snapshot,
        nodes: &[NodeIdx],
        out: &mut [i64],
    ) {
        let Some(MixCycle::Executor { ranking, .. }) = state.read::<MixCycle>() else {
            out.fill(0);
            return;
        };
        // A handful of types: score each once into a table by type id.
        let t = snap.nodes();
        let table = type_table(ranking, t);
        for (o, &n) in out.iter_mut().zip(nodes) {
            *o = table[t.type_id[n as usize] as usize];
        }
    }

    /// A slot's score is its type's, as in `score_nodes`.
    fn score_slots(
        &self,
        state: &CycleState,
        _: &Pod,
        snap: &Snapshot,
        _: &[NodeIdx],
        first: usize,
        out: &mut [i64],
    ) -> bool {
        let Some(MixCycle::Executor { ranking, .. }) = state.read::<MixCycle>() else {
            out.fill(0);
            return true;
        };
        let t = snap.nodes();
        let table = type_table(ranking, t);
        let Some(types) = t.type_id.get(first..first.saturating_add(out.len())) else {
            return false;
        };
        for (o, &ty) in out.iter_mut().zip(types) {
            *o = table.get(ty as usize).copied().unwrap_or(0);
        }
        true
    }

    fn normalization(&self) -> Normalization {
        Normalization::None
    }

    /// A node's score is its capacity type's.
    fn scores_by_class(&self, _: &CycleState, _: &Pod) -> bool {
        true
    }
}

/// Each capacity type's score, by type id (a handful of types).
fn type_table(ranking: &[(Sym, i64)], t: &NodeTable) -> Vec<i64> {
    let mut table = vec![0i64; t.type_ids.table_len()];
    for (id, ty) in t.type_ids.iter() {
        table[id as usize] = type_score(ranking, ty);
    }
    table
}

fn type_score(ranking: &[(Sym, i64)], ty: Sym) -> i64 {
    let n = ranking.len() as i64;
    match ranking.iter().position(|e| e.0 == ty) {
        None => 0,
        Some(0) => MAX_NODE_SCORE,
        Some(k) => MAX_OTHER_TYPE_SCORE * (n - k as i64) / (n - 1),
    }
}

/// An executor placed on a capacity type other than the one its mix targeted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityFallback {
    pub wanted: Sym,
    pub got: Sym,
}

/// Whether placing `pod` on `node` is a fallback from its mix's target type, for
/// the `CapacityFallback` event and metric. Works before or after the pod is
/// assumed (an assumed pod is left out of its application's counts).
pub fn capacity_fallback(
    config: &Config,
    pod: &Pod,
    snap: &Snapshot,
    node: NodeIdx,
) -> Option<CapacityFallback> {
    let plan = executor_plan(config, pod, snap).ok()??;
    let got = *snap.nodes().capacity_type.get(node as usize)?;
    let wanted = plan.ranking.first()?.0;
    (wanted != got).then_some(CapacityFallback { wanted, got })
}

/// An application's target and current executor mix, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixStatus {
    /// (type, weight) as configured.
    pub target: Vec<(String, u32)>,
    pub mode: MixMode,
    /// Placed executors by type: the mix types first, then any others holding executors.
    pub current: Vec<(String, u32)>,
    /// Where the next executor should go.
    pub next: Option<String>,
}

/// The mix of `pod`'s application (driver or executor); None for non-Spark pods,
/// when no mix applies, or when the mix is invalid (PreFilter reports that).
pub fn mix_status(config: &Config, pod: &Pod, snap: &Snapshot) -> Option<MixStatus> {
    pod.spark.as_ref()?;
    let mix = policy::executor_mix(config, pod, snap).ok()??;
    let placed = policy::PlacedExecutors::of_app(snap, pod);
    let (counts, total) = (&placed.by_type, placed.total);
    let count = |t: Sym| placed.of(t);
    let mut current: Vec<(String, u32)> = mix
        .weights
        .iter()
        .map(|&(t, _)| (t.to_string(), count(t)))
        .collect();
    for &(t, c) in counts {
        if c > 0 && !mix.weights.iter().any(|w| w.0 == t) {
            current.push((t.to_string(), c));
        }
    }
    Some(MixStatus {
        target: mix
            .weights
            .iter()
            .map(|&(t, w)| (t.to_string(), w))
            .collect(),
        mode: mix.mode,
        next: mix.next_type(count, total).map(|t| t.to_string()),
        current,
    })
}

#[cfg(test)]
mod tests;
