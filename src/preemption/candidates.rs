//! The dry run: on each candidate node, find the victims whose removal lets the
//! preemptor pass every filter (upstream SelectVictimsOnNode), then pick a node.
//!
//! When only NodeResourcesFit reads placed pods, victims are worked out on the
//! node's resource totals (see `what_if`). Otherwise the snapshot is changed in
//! place (victims removed, filters re-run, victims put back), never cloned.
//! Either way, resource feasibility is treated as necessary to fit, so
//! nodes that cannot fit even with every lower-priority pod gone, and victims that
//! could never be reprieved, are decided from the node columns alone.

use super::cascade::{self, CascadeCost};
use super::pdb::{violations, Pdb};
use super::victims::{start, Need, Room, VictimPolicy};
use super::what_if::{Ranked, WhatIf};
use crate::framework::{FilterRunner, Status};
use crate::model::{Pod, PodKey};
use crate::snapshot::{NodeIdx, Snapshot};
use rayon::prelude::*;
use std::borrow::Borrow;
use std::cmp::Reverse;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Upstream DefaultPreemptionArgs defaults.
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: NodeIdx,
    /// Most important first.
    pub victims: Vec<Arc<Pod>>,
    pub pdb_violations: usize,
    /// How it ranks against the others, worked out while its victims are at hand.
    pub rank: Rank,
}

/// Where the dry run starts and how many candidates it wants. Upstream starts at
/// a random node; we hash the pod's key so runs repeat and load still spreads.
pub fn window(pod: &PodKey, potential: usize) -> (usize, usize) {
    let wanted = (potential * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(potential);
    if potential == 0 {
        return (0, 0);
    }
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pod
        .namespace
        .as_str()
        .bytes()
        .chain([b'/'])
        .chain(pod.name.bytes())
    {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    ((h % potential as u64) as usize, wanted)
}

/// A pod taken out of the snapshot, with what is needed to put it back as it was.
struct Lifted {
    pod: Arc<Pod>,
    assumed: bool,
    nominated: Option<NodeIdx>,
}

fn lift(snap: &mut Snapshot, pod: &Arc<Pod>, assumed: bool) -> Lifted {
    let nominated = if snap.has_nominations() {
        snap.nomination_of(&pod.key).map(|n| n.node)
    } else {
        None
    };
    snap.remove_pod(&pod.key);
    Lifted {
        pod: pod.clone(),
        assumed,
        nominated,
    }
}

fn put_back(snap: &mut Snapshot, l: Lifted, node: NodeIdx) {
    // The pod was on this live node a moment ago, so neither call can fail; a
    // bound pod goes back as bound, an assumed one as assumed.
    let restored = if l.assumed || l.pod.node_name.is_none() {
        snap.assume(l.pod.clone(), node).is_ok()
    } else {
        snap.upsert_pod(l.pod.clone()).is_ok()
    };
    debug_assert!(restored, "could not restore {}", l.pod.key);
    if let Some(n) = l.nominated {
        snap.nominate(l.pod, n);
    }
}

pub(crate) struct DryRun<'a, 'r> {
    pub pod: &'a Pod,
    pub policy: &'a VictimPolicy,
    pub filters: &'a FilterRunner<'r>,
    pub pdbs: &'a [Pdb],
    pub need: Need,
    /// Set when victims can be worked out on resource arithmetic alone.
    pub what_if: Option<WhatIf<'r>>,
    /// Prepare nodes on the machine's cores (`find`); the answer is the same.
    pub parallel: bool,
    /// Nodes decided by `what_if` (for tests and profiling).
    pub by_arithmetic: AtomicUsize,
    /// Nodes prepared on several cores, used or not (for tests and profiling).
    pub prepared_in_parallel: AtomicUsize,
}

/// How a dry run went (for tests and profiling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DryRunCounts {
    /// Nodes whose answer `what_if`'s arithmetic gave.
    pub by_arithmetic: usize,
    /// Nodes prepared on several cores, used or not.
    pub prepared_in_parallel: usize,
}

/// Below this many nodes to try, the dry run stays on one thread: a node costs
/// a few microseconds, a fork and join about as much as a handful of nodes.
const PARALLEL_MIN_NODES: usize = 64;

/// One node's dry run as far as it goes without changing the snapshot.
enum Step {
    /// Decided; `true` when by `what_if`'s arithmetic.
    Done(Result<Candidate, Status>, bool),
    /// The snapshot walk must decide.
    Walk(Prepared),
}

/// A node's potential victims for the snapshot walk, owned: the walk changes
/// the snapshot they were read from.
struct Prepared {
    /// Most important first.
    potential: Vec<(Arc<Pod>, bool)>,
    /// Reprieve order: PDB-violating pods first, each group most important first.
    order: Vec<usize>,
    violates: Vec<bool>,
    /// Room on the node with every potential victim gone.
    room: Room,
}

/// The candidates found so far, as upstream's DryRunPreemption keeps them.
struct Found {
    wanted: usize,
    clean: Vec<Candidate>,
    violating: Vec<Candidate>,
    statuses: Vec<Status>,
}

impl Found {
    fn new(wanted: usize) -> Found {
        Found {
            wanted,
            clean: Vec::new(),
            violating: Vec::new(),
            statuses: Vec::new(),
        }
    }

    fn add(&mut self, answer: Result<Candidate, Status>) {
        match answer {
            Ok(c) => {
                let list = if c.pdb_violations == 0 {
                    &mut self.clean
                } else {
                    &mut self.violating
                };
                if list.len() < self.wanted {
                    list.push(c);
                }
            }
            Err(st) => self.statuses.push(st),
        }
    }

    /// `wanted` candidates, at least one of which violates no PDB.
    fn done(&self) -> bool {
        !self.clean.is_empty() && self.clean.len() + self.violating.len() >= self.wanted
    }

    fn missing(&self) -> usize {
        self.wanted
            .saturating_sub(self.clean.len() + self.violating.len())
            .max(1)
    }

    fn finish(mut self) -> (Vec<Candidate>, Vec<Status>) {
        self.clean.extend(self.violating);
        (self.clean, self.statuses)
    }
}

impl DryRun<'_, '_> {
    /// Upstream DryRunPreemption, in node order from `offset`: stops once it
    /// holds `wanted` candidates of which at least one violates no PDB.
    ///
    /// With `parallel`, batches of nodes are first prepared on all cores
    /// (everything short of the snapshot walk, on the unchanged snapshot), then
    /// taken in order exactly as one thread would, walking where needed; nodes
    /// prepared past the stopping point are dropped. The answer is the one
    /// thread's answer.
    pub fn find(
        &self,
        snap: &mut Snapshot,
        potential: &[NodeIdx],
        offset: usize,
        wanted: usize,
    ) -> (Vec<Candidate>, Vec<Status>) {
        let mut found = Found::new(wanted);
        let node_at = |i: usize| potential[(offset + i) % potential.len()];
        let parallel = self.parallel
            && potential.len() >= PARALLEL_MIN_NODES
            && rayon::current_num_threads() > 1;
        let mut next = 0;
        while next < potential.len() && !found.done() {
            if !parallel {
                let answer = self.select_victims(snap, node_at(next));
                found.add(answer);
                next += 1;
                continue;
            }
            // Each node usually yields a candidate: prepare as many as are missing.
            let batch = found
                .missing()
                .max(PARALLEL_MIN_NODES)
                .min(potential.len() - next);
            let nodes: Vec<NodeIdx> = (next..next + batch).map(node_at).collect();
            next += batch;
            self.prepared_in_parallel
                .fetch_add(batch, Ordering::Relaxed);
            let steps: Vec<Step> = {
                let snap: &Snapshot = snap;
                nodes.par_iter().map(|&n| self.prepare(snap, n)).collect()
            };
            for (node, step) in nodes.into_iter().zip(steps) {
                if found.done() {
                    break;
                }
                found.add(self.finish_step(snap, node, step));
            }
        }
        found.finish()
    }

    pub fn counts(&self) -> DryRunCounts {
        DryRunCounts {
            by_arithmetic: self.by_arithmetic.load(Ordering::Relaxed),
            prepared_in_parallel: self.prepared_in_parallel.load(Ordering::Relaxed),
        }
    }

    /// Upstream SelectVictimsOnNode.
    pub fn select_victims(&self, snap: &mut Snapshot, node: NodeIdx) -> Result<Candidate, Status> {
        let step = self.prepare(snap, node);
        self.finish_step(snap, node, step)
    }

    fn finish_step(
        &self,
        snap: &mut Snapshot,
        node: NodeIdx,
        step: Step,
    ) -> Result<Candidate, Status> {
        match step {
            Step::Done(answer, by_arithmetic) => {
                if by_arithmetic {
                    self.by_arithmetic.fetch_add(1, Ordering::Relaxed);
                }
                answer
            }
            Step::Walk(prepared) => self.walk(snap, node, prepared),
        }
    }

    /// SelectVictimsOnNode up to the snapshot walk: the resource pre-check, the
    /// reprieve order, and `what_if`'s arithmetic where it decides.
    fn prepare(&self, snap: &Snapshot, node: NodeIdx) -> Step {
        // Cheap necessary conditions first.
        let mut room = Room::of_node(snap, node, &self.need);
        let mut potential: Vec<(&Arc<Pod>, bool)> = Vec::with_capacity(snap.pod_ids_on(node).len());
        for e in snap.pods_on(node) {
            if self.policy.may_preempt(self.pod, &e.pod) {
                room.apply(&e.pod.requests, &self.need, 1);
                potential.push((&e.pod, e.assumed));
            }
        }
        if potential.is_empty() {
            return Step::Done(Err(Status::unresolvable("", NO_VICTIMS)), false);
        }
        if !room.fits(&self.need) {
            let mut st = Status::unschedulable("NodeResourcesFit", "");
            st.reasons = room.shortfalls(&self.need);
            return Step::Done(Err(st), false);
        }

        self.policy.sort_by_importance(snap, &mut potential);
        let violates = violations(potential.iter().map(|(p, _)| &***p), self.pdbs);
        // Reprieve PDB-violating pods first, each group most important first.
        let mut order: Vec<usize> = Vec::with_capacity(potential.len());
        order.extend((0..potential.len()).filter(|&i| violates[i]));
        order.extend((0..potential.len()).filter(|&i| !violates[i]));

        if let Some(w) = &self.what_if {
            let ranked = Ranked {
                pods: &potential,
                order: &order,
                violates: &violates,
            };
            if let Some(answer) = w.select(self, snap, node, &ranked, &room) {
                return Step::Done(answer, true);
            }
        }
        Step::Walk(Prepared {
            potential: potential.iter().map(|(p, a)| ((*p).clone(), *a)).collect(),
            order,
            violates,
            room,
        })
    }

    /// The rest of SelectVictimsOnNode, on the snapshot itself (left as found).
    fn walk(
        &self,
        snap: &mut Snapshot,
        node: NodeIdx,
        prepared: Prepared,
    ) -> Result<Candidate, Status> {
        let Prepared {
            potential,
            order,
            violates,
            room,
        } = prepared;
        // Fast path: reprieve on resources alone, then check the result once with
        // every filter. When removing pods never makes a filter fail (true of the
        // resource, port, spread and Spark filters), this is exactly upstream's
        // answer; otherwise the exact walk below decides.
        let mut victim = vec![false; potential.len()];
        let mut r = room.clone();
        for &i in &order {
            r.apply(&potential[i].0.requests, &self.need, -1);
            if !r.fits(&self.need) {
                r.apply(&potential[i].0.requests, &self.need, 1);
                victim[i] = true;
            }
        }
        if victim.iter().any(|v| *v) {
            let lifted: Vec<Lifted> = (0..potential.len())
                .filter(|&i| victim[i])
                .map(|i| lift(snap, &potential[i].0, potential[i].1))
                .collect();
            let st = self.filters.check(self.pod, snap, node);
            for l in lifted {
                put_back(snap, l, node);
            }
            if st.is_success() {
                return Ok(self.candidate(snap, node, &potential, &victim, &violates));
            }
        }
        self.exact(snap, node, &potential, &order, &violates, room)
    }

    /// Upstream's walk: remove every potential victim, check, then add them back
    /// one at a time keeping those with which the pod still fits.
    fn exact(
        &self,
        snap: &mut Snapshot,
        node: NodeIdx,
        potential: &[(Arc<Pod>, bool)],
        order: &[usize],
        violates: &[bool],
        mut room: Room,
    ) -> Result<Candidate, Status> {
        let mut lifted: Vec<Option<Lifted>> = potential
            .iter()
            .map(|(p, a)| Some(lift(snap, p, *a)))
            .collect();
        let st = self.filters.check(self.pod, snap, node);
        let mut victim = vec![false; potential.len()];
        if st.is_success() {
            for &i in order {
                room.apply(&potential[i].0.requests, &self.need, -1);
                if !room.fits(&self.need) {
                    room.apply(&potential[i].0.requests, &self.need, 1);
                    victim[i] = true;
                    continue;
                }
                if let Some(l) = lifted[i].take() {
                    put_back(snap, l, node);
                }
                if !self.filters.check(self.pod, snap, node).is_success() {
                    lifted[i] = Some(lift(snap, &potential[i].0, potential[i].1));
                    room.apply(&potential[i].0.requests, &self.need, 1);
                    victim[i] = true;
                }
            }
        }
        for l in lifted.into_iter().flatten() {
            put_back(snap, l, node);
        }
        if !st.is_success() {
            return Err(st);
        }
        if !victim.iter().any(|v| *v) {
            return Err(self.no_victim_error(snap, node));
        }
        Ok(self.candidate(snap, node, potential, &victim, violates))
    }

    pub(crate) fn no_victim_error(&self, snap: &Snapshot, node: NodeIdx) -> Status {
        let name = snap.nodes().name[node as usize];
        Status::error(
            "",
            format!("expected at least one victim pod on node {name:?}"),
        )
    }

    /// The candidate on `node`, ranked. `snap` must be as the search found it.
    pub(crate) fn candidate<P: Borrow<Arc<Pod>>>(
        &self,
        snap: &Snapshot,
        node: NodeIdx,
        potential: &[(P, bool)],
        victim: &[bool],
        violates: &[bool],
    ) -> Candidate {
        // Sized up front: a filtered collect grows (and copies) as it goes.
        let mut victims = Vec::with_capacity(victim.iter().filter(|&&v| v).count());
        victims.extend(
            (0..potential.len())
                .filter(|&i| victim[i])
                .map(|i| potential[i].0.borrow().clone()),
        );
        let pdb_violations = (0..potential.len())
            .filter(|&i| victim[i] && violates[i])
            .count();
        let rank = rank(snap, self.policy, node, &victims, pdb_violations).0;
        Candidate {
            node,
            victims,
            pdb_violations,
            rank,
        }
    }
}

/// How a candidate ranks; smaller is better, compared field by field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    pub pdb_violations: usize,
    /// Spark only (zero otherwise): drivers killed, then pods lost with cascades.
    pub drivers_killed: usize,
    pub pods_lost: usize,
    pub highest_priority: i32,
    /// Upstream's sum of (priority + 2^31), so fewer victims never lose on a
    /// sum of negative priorities.
    pub priority_sum: i64,
    pub victims: usize,
    /// Latest start of the highest-priority victims wins.
    pub earliest_start_of_highest: Reverse<i64>,
    pub node_name: &'static str,
}

/// How evicting `victims` from `node` ranks (upstream pickOneNodeForPreemption's
/// criteria, Spark's cascades first under the Spark policy), with its cascade.
pub fn rank(
    snap: &Snapshot,
    policy: &VictimPolicy,
    node: NodeIdx,
    victims: &[Arc<Pod>],
    pdb_violations: usize,
) -> (Rank, CascadeCost) {
    let highest = victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
    let earliest = victims
        .iter()
        .filter(|v| v.priority == highest)
        .map(|v| start(v))
        .min()
        .unwrap_or(i64::MAX);
    let cost = if policy.is_spark() {
        cascade::cost(snap, victims)
    } else {
        CascadeCost::default()
    };
    let rank = Rank {
        pdb_violations,
        drivers_killed: cost.drivers_killed,
        pods_lost: cost.pods_lost,
        highest_priority: highest,
        priority_sum: victims
            .iter()
            .map(|v| v.priority as i64 + (i32::MAX as i64 + 1))
            .sum(),
        victims: victims.len(),
        earliest_start_of_highest: Reverse(earliest),
        node_name: snap.nodes().name[node as usize].as_str(),
    };
    (rank, cost)
}

/// Index of the best candidate (upstream pickOneNodeForPreemption, ties by node name).
pub fn pick(candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.rank.cmp(&b.rank))
        .map(|(i, _)| i)
}
