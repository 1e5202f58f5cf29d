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
use super::victims::{start, Need, Room, Standings, VictimPolicy};
use super::what_if::{Ranked, WhatIf};
use crate::framework::{FilterRunner, Status};
use crate::model::{Pod, PodKey};
use crate::snapshot::{NodeIdx, Snapshot};
use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
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
    /// Spark application standings: the snapshot is the same at every sort.
    pub standings: RefCell<Standings>,
    /// Nodes decided by `what_if` (for tests and profiling).
    pub by_arithmetic: Cell<usize>,
}

impl DryRun<'_, '_> {
    /// Upstream DryRunPreemption, sequential from `offset`: stops once it holds
    /// `wanted` candidates of which at least one violates no PDB.
    pub fn find(
        &self,
        snap: &mut Snapshot,
        potential: &[NodeIdx],
        offset: usize,
        wanted: usize,
    ) -> (Vec<Candidate>, Vec<Status>) {
        let mut clean: Vec<Candidate> = Vec::new();
        let mut violating: Vec<Candidate> = Vec::new();
        let mut statuses = Vec::new();
        for i in 0..potential.len() {
            let node = potential[(offset + i) % potential.len()];
            match self.select_victims(snap, node) {
                Ok(c) => {
                    let list = if c.pdb_violations == 0 {
                        &mut clean
                    } else {
                        &mut violating
                    };
                    if list.len() < wanted {
                        list.push(c);
                    }
                    if !clean.is_empty() && clean.len() + violating.len() >= wanted {
                        break;
                    }
                }
                Err(st) => statuses.push(st),
            }
        }
        clean.extend(violating);
        (clean, statuses)
    }

    /// Upstream SelectVictimsOnNode.
    pub fn select_victims(&self, snap: &mut Snapshot, node: NodeIdx) -> Result<Candidate, Status> {
        // Cheap necessary conditions first, without touching the snapshot.
        let mut room = Room::of_node(snap, node, &self.need);
        let mut potential: Vec<(&Arc<Pod>, bool)> = Vec::with_capacity(snap.pod_ids_on(node).len());
        for e in snap.pods_on(node) {
            if self.policy.may_preempt(self.pod, &e.pod) {
                room.apply(&e.pod.requests, &self.need, 1);
                potential.push((&e.pod, e.assumed));
            }
        }
        if potential.is_empty() {
            return Err(Status::unresolvable("", NO_VICTIMS));
        }
        if !room.fits(&self.need) {
            let mut st = Status::unschedulable("NodeResourcesFit", "");
            st.reasons = room.shortfalls(&self.need);
            return Err(st);
        }

        self.policy
            .sort_by_importance_with(snap, &mut potential, &mut self.standings.borrow_mut());
        let violates = violations(potential.iter().map(|(p, _)| &***p), self.pdbs);
        // Reprieve PDB-violating pods first, each group most important first.
        let order: Vec<usize> = (0..potential.len())
            .filter(|&i| violates[i])
            .chain((0..potential.len()).filter(|&i| !violates[i]))
            .collect();

        if let Some(w) = &self.what_if {
            let ranked = Ranked {
                pods: &potential,
                order: &order,
                violates: &violates,
            };
            if let Some(answer) = w.select(self, snap, node, &ranked, &room) {
                self.by_arithmetic.set(self.by_arithmetic.get() + 1);
                return answer;
            }
        }
        // The snapshot walk below changes the snapshot: own the pods.
        let potential: Vec<(Arc<Pod>, bool)> =
            potential.iter().map(|(p, a)| ((*p).clone(), *a)).collect();

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
                return Ok(self.candidate(node, &potential, &victim, &violates));
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
        Ok(self.candidate(node, potential, &victim, violates))
    }

    pub(crate) fn no_victim_error(&self, snap: &Snapshot, node: NodeIdx) -> Status {
        let name = snap.nodes().name[node as usize];
        Status::error(
            "",
            format!("expected at least one victim pod on node {name:?}"),
        )
    }

    pub(crate) fn candidate<P: Borrow<Arc<Pod>>>(
        &self,
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
        Candidate {
            node,
            victims,
            pdb_violations: (0..potential.len())
                .filter(|&i| victim[i] && violates[i])
                .count(),
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

pub fn rank(snap: &Snapshot, policy: &VictimPolicy, c: &Candidate) -> (Rank, CascadeCost) {
    let highest = c
        .victims
        .iter()
        .map(|v| v.priority)
        .max()
        .unwrap_or(i32::MIN);
    let earliest = c
        .victims
        .iter()
        .filter(|v| v.priority == highest)
        .map(|v| start(v))
        .min()
        .unwrap_or(i64::MAX);
    let cost = if policy.is_spark() {
        cascade::cost(snap, &c.victims)
    } else {
        CascadeCost::default()
    };
    let rank = Rank {
        pdb_violations: c.pdb_violations,
        drivers_killed: cost.drivers_killed,
        pods_lost: cost.pods_lost,
        highest_priority: highest,
        priority_sum: c
            .victims
            .iter()
            .map(|v| v.priority as i64 + (i32::MAX as i64 + 1))
            .sum(),
        victims: c.victims.len(),
        earliest_start_of_highest: Reverse(earliest),
        node_name: snap.nodes().name[c.node as usize].as_str(),
    };
    (rank, cost)
}

/// Index of the best candidate (upstream pickOneNodeForPreemption, ties by node name).
pub fn pick(snap: &Snapshot, policy: &VictimPolicy, candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .min_by_key(|(_, c)| rank(snap, policy, c).0)
        .map(|(i, _)| i)
}
