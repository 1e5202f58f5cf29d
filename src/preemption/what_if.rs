//! The dry run without the snapshot: when, for this pod, NodeResourcesFit is the
//! only filter whose answer depends on the pods placed on a node (every other
//! filter says so through `FilterPlugin::depends_on_placed_pods`), removing and
//! reprieving victims is arithmetic on the node's totals, done exactly as
//! NodeResourcesFit counts them (placed pods plus nominated pods of at least the
//! pod's priority). The other filters are run once per node, on the snapshot as
//! it is, with one PreFilter pass (NodeResourcesFit's PreFilter reads only the
//! pod; the others promise not to read placed pods). Answers that need a status
//! from NodeResourcesFit itself are left to the snapshot walk (`None`). The
//! arithmetic works on the node's exact sums (i128), as the snapshot does, so
//! no request up to i64::MAX overflows it.

use super::candidates::{Candidate, DryRun};
use super::victims::Room;
use crate::framework::{CycleState, FilterPlugin, FilterRunner, Status};
use crate::model::{Pod, Resources, Sym};
use crate::plugins::NodeResourcesFit;
use crate::snapshot::{clamp_i64, NodeIdx, Snapshot};
use smallvec::SmallVec;
use std::sync::Arc;

/// What one pod's filters need for the arithmetic dry run, prepared once per
/// preemption on the unchanged snapshot.
pub(crate) struct WhatIf<'f> {
    state: CycleState,
    /// The active filters in order; `None` is NodeResourcesFit.
    steps: Vec<Option<&'f dyn FilterPlugin>>,
    /// NodeResourcesFit's requests, when it is active.
    fit: Option<FitRequests>,
}

/// The requests NodeResourcesFit checks.
struct FitRequests {
    cpu: i64,
    mem: i64,
    eph: i64,
    scalars: SmallVec<[(Sym, i64); 2]>,
}

impl<'f> WhatIf<'f> {
    /// `None` when some filter other than NodeResourcesFit looks at placed pods,
    /// PreFilter rejects the pod, or NodeResourcesFit's scalar requests are unknown.
    pub fn new(pod: &Pod, snap: &Snapshot, runner: &FilterRunner<'f>) -> Option<WhatIf<'f>> {
        let state = runner.prepare(pod, snap).ok()?;
        if !runner.placed_pods_matter_only_to(&state, pod, NodeResourcesFit::NAME) {
            return None;
        }
        let mut steps = Vec::with_capacity(runner.filters.len());
        let mut fit = None;
        for f in runner.filters {
            if state.skips_filter(f.name()) {
                continue;
            }
            if f.name() != NodeResourcesFit::NAME {
                steps.push(Some(f.as_ref()));
                continue;
            }
            let r = &pod.requests;
            // The filter reads its PreFilter's list only when the pod has scalars.
            let scalars = if r.scalars.is_empty() {
                SmallVec::new()
            } else {
                NodeResourcesFit::checked_scalars(&state)?
            };
            fit = Some(FitRequests {
                cpu: r.milli_cpu,
                mem: r.memory,
                eph: r.ephemeral_storage,
                scalars,
            });
            steps.push(None);
        }
        Some(WhatIf { state, steps, fit })
    }

    /// [`DryRun::select_victims`] after its resource pre-check, for the node's
    /// `ranked` potential victims, with `room` left once all of them are gone.
    /// `None`: the snapshot walk must decide.
    pub fn select(
        &self,
        run: &DryRun,
        snap: &Snapshot,
        node: NodeIdx,
        ranked: &Ranked,
        room: &Room,
    ) -> Option<Result<Candidate, Status>> {
        let Ranked {
            pods: potential,
            order,
            violates,
        } = *ranked;
        let fit = self
            .fit
            .as_ref()
            .map(|req| NodeFit::of(req, run.pod, snap, node));
        let fits = |freed: &Freed| -> bool {
            match (&fit, &self.fit) {
                (Some(nf), Some(req)) => nf.fits(req, freed),
                _ => true,
            }
        };
        let scalars = self.fit.as_ref().map_or(&[][..], |r| &r.scalars[..]);
        let mut all = Freed::new(scalars.len());
        for (p, _) in potential {
            all.step(&p.requests, scalars, 1);
        }

        // The filters that ignore placed pods answer the same with any victims gone.
        let failed = self.steps.iter().enumerate().find_map(|(k, step)| {
            let st = (*step)?.filter(&self.state, run.pod, snap, node);
            (!st.is_success()).then_some((k, st))
        });
        if let Some((k, st)) = failed {
            // The walk reports the first failure with every victim gone.
            let fit_first = self.steps[..k].iter().any(Option::is_none);
            if fit_first && !fits(&all) {
                return None;
            }
            return Some(Err(st));
        }

        // As the snapshot walk: reprieve on the pre-check's resources alone, and
        // keep that answer if the pod then fits.
        let mut victim = vec![false; potential.len()];
        let mut r = room.clone();
        for &i in order {
            r.apply(&potential[i].0.requests, &run.need, -1);
            if !r.fits(&run.need) {
                r.apply(&potential[i].0.requests, &run.need, 1);
                victim[i] = true;
            }
        }
        if victim.iter().any(|v| *v) {
            let mut freed = Freed::new(scalars.len());
            for (i, (p, _)) in potential.iter().enumerate() {
                if victim[i] {
                    freed.step(&p.requests, scalars, 1);
                }
            }
            if fits(&freed) {
                return Some(Ok(run.candidate(snap, node, potential, &victim, violates)));
            }
        }

        // Upstream's walk: everything gone, then reprieve one at a time.
        if !fits(&all) {
            return None;
        }
        let mut room = room.clone();
        let mut freed = all;
        victim.iter_mut().for_each(|v| *v = false);
        for &i in order {
            let req = &potential[i].0.requests;
            room.apply(req, &run.need, -1);
            if !room.fits(&run.need) {
                room.apply(req, &run.need, 1);
                victim[i] = true;
                continue;
            }
            freed.step(req, scalars, -1);
            if !fits(&freed) {
                freed.step(req, scalars, 1);
                room.apply(req, &run.need, 1);
                victim[i] = true;
            }
        }
        if !victim.iter().any(|v| *v) {
            return Some(Err(run.no_victim_error(snap, node)));
        }
        Some(Ok(run.candidate(snap, node, potential, &victim, violates)))
    }
}

/// A node's potential victims, most important first, with the order they are
/// reprieved in and which of them violate a PodDisruptionBudget.
#[derive(Clone, Copy)]
pub(crate) struct Ranked<'p> {
    pub pods: &'p [(&'p Arc<Pod>, bool)],
    pub order: &'p [usize],
    pub violates: &'p [bool],
}

/// Requests of the pods taken off a node, for the resources NodeResourcesFit
/// checks: exact sums, like the node's (a pod count's worth of i64 values
/// cannot overflow an i128).
#[derive(Clone)]
struct Freed {
    pods: i128,
    cpu: i128,
    mem: i128,
    eph: i128,
    /// In the order of `FitRequests::scalars`.
    scalars: SmallVec<[i128; 2]>,
}

impl Freed {
    fn new(scalars: usize) -> Freed {
        Freed {
            pods: 0,
            cpu: 0,
            mem: 0,
            eph: 0,
            scalars: SmallVec::from_elem(0, scalars),
        }
    }

    /// Takes a pod off (`sign` 1) or puts it back (-1).
    fn step(&mut self, r: &Resources, names: &[(Sym, i64)], sign: i64) {
        let s = i128::from(sign);
        self.pods += s;
        self.cpu += s * i128::from(r.milli_cpu);
        self.mem += s * i128::from(r.memory);
        self.eph += s * i128::from(r.ephemeral_storage);
        for (slot, &(n, _)) in self.scalars.iter_mut().zip(names) {
            *slot += s * i128::from(r.scalar(n));
        }
    }
}

/// A node's figures as NodeResourcesFit reads them, with the exact sums
/// behind the usage columns (the columns once pods are gone are those sums
/// minus the pods', clamped).
struct NodeFit {
    alloc_pods: i64,
    alloc_cpu: i64,
    alloc_mem: i64,
    alloc_eph: i64,
    pods: i128,
    cpu: i128,
    mem: i128,
    eph: i128,
    /// (allocatable, exact requested, nominated) per checked scalar.
    scalars: SmallVec<[(i64, i128, i64); 2]>,
    /// Nominated pods that count for the pod (priority >= its own), in the
    /// filter's order: it adds them one by one, saturating.
    nominated: SmallVec<[Arc<Pod>; 1]>,
}

impl NodeFit {
    fn of(req: &FitRequests, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> NodeFit {
        let t = snap.nodes();
        let i = node as usize;
        let mut nominated: SmallVec<[Arc<Pod>; 1]> = SmallVec::new();
        if snap.has_nominations() {
            nominated.extend(snap.nominated_for(pod, node).map(|n| n.pod.clone()));
        }
        let scalars = req
            .scalars
            .iter()
            .map(|&(name, _)| {
                let extra = nominated.iter().fold(0i64, |acc, p| {
                    p.requests
                        .scalars
                        .iter()
                        .filter(|(s, _)| *s == name)
                        .fold(acc, |a, (_, v)| a.saturating_add(*v))
                });
                (
                    t.node[i].allocatable.scalar(name),
                    t.exact_req_scalar(node, name),
                    extra,
                )
            })
            .collect();
        let used = t.exact_usage(node);
        NodeFit {
            alloc_pods: t.alloc_pods[i],
            alloc_cpu: t.alloc_cpu[i],
            alloc_mem: t.alloc_mem[i],
            alloc_eph: t.alloc_eph[i],
            pods: i128::from(t.pod_count[i]),
            cpu: used.cpu,
            mem: used.mem,
            eph: used.eph,
            scalars,
            nominated,
        }
    }

    /// Would NodeResourcesFit pass with `freed` gone? The columns it would
    /// read are the exact sums less `freed`, clamped as the snapshot clamps.
    fn fits(&self, req: &FitRequests, freed: &Freed) -> bool {
        let mut pods = clamp_i64(self.pods - freed.pods);
        let mut cpu = clamp_i64(self.cpu - freed.cpu);
        let mut mem = clamp_i64(self.mem - freed.mem);
        let mut eph = clamp_i64(self.eph - freed.eph);
        for p in &self.nominated {
            let r = &p.requests;
            pods = pods.saturating_add(1);
            cpu = cpu.saturating_add(r.milli_cpu);
            mem = mem.saturating_add(r.memory);
            eph = eph.saturating_add(r.ephemeral_storage);
        }
        let fits_one = |request: i64, alloc: i64, held: i64| {
            request == 0 || request <= alloc.saturating_sub(held)
        };
        if !(pods < self.alloc_pods
            && fits_one(req.cpu, self.alloc_cpu, cpu)
            && fits_one(req.mem, self.alloc_mem, mem)
            && fits_one(req.eph, self.alloc_eph, eph))
        {
            return false;
        }
        for ((&(alloc, requested, extra), &(_, amount)), &gone) in
            self.scalars.iter().zip(&req.scalars).zip(&freed.scalars)
        {
            let held = clamp_i64(requested - gone).saturating_add(extra);
            if !fits_one(amount, alloc, held) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
