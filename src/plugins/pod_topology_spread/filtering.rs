//! PreFilter counts matching pods per domain for each hard constraint; Filter
//! checks `count(domain) + selfMatch - globalMin <= maxSkew`.
//!
//! Pods nominated to a node (by preemption) with a priority at least the pod's
//! count there as upstream's RunFilterPluginsWithNominatedPods counts them: the
//! node must pass both with them added to its domain (which may also raise the
//! global minimum) and without them.

use super::{
    constraints_of, for_each_matching_pod, has_all_keys, self_matches, DomainMap, NodeInclusion,
    PodTopologySpread, ERR_REASON_CONSTRAINTS_NOT_MATCH, ERR_REASON_NODE_LABEL_NOT_MATCH, NAME,
    NO_DOMAIN,
};
use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, Status};
use crate::model::{LabelSelector, Pod, WhenUnsatisfiable};
use crate::snapshot::{NodeIdx, Snapshot};

/// One hard constraint, ready for integer-only checks per node.
#[derive(Debug)]
pub(super) struct HardConstraint {
    max_skew: i64,
    /// Indexed by `NodeIdx`: the node's domain for this key, `NO_DOMAIN` without the key.
    node_domain: Vec<u32>,
    /// Matching pods per domain (only eligible nodes count).
    counts: Vec<i64>,
    /// Global minimum after minDomains.
    min_match: i64,
    self_match: i64,
    /// Indexed by `NodeIdx`: whether the node's pods count (it has every hard
    /// constraint's key and the node inclusion policies admit it).
    counting: Vec<bool>,
    /// Indexed by domain: whether an eligible node is in it.
    eligible: Vec<bool>,
    /// Fewer eligible domains than minDomains: the global minimum is 0.
    below_min_domains: bool,
    selector: Option<LabelSelector>,
}

impl HardConstraint {
    pub(super) fn count_on(&self, node: NodeIdx) -> Option<i64> {
        let d = *self.node_domain.get(node as usize)?;
        (d != NO_DOMAIN).then(|| self.counts[d as usize])
    }

    #[cfg(test)]
    pub(super) fn min_match(&self) -> i64 {
        self.min_match
    }

    /// Whether `node` passes with `extra` more matching pods in its domain
    /// (upstream's AddPod of nominated pods, then Filter).
    fn passes_with(&self, node: NodeIdx, extra: i64) -> bool {
        let Some(d) = self.node_domain.get(node as usize).copied() else {
            return true;
        };
        if d == NO_DOMAIN {
            return true;
        }
        let count = self.counts[d as usize] + extra;
        let min = if self.below_min_domains {
            0
        } else {
            // The domain's count went up: the minimum is the smaller of it and
            // every other eligible domain's.
            self.eligible
                .iter()
                .enumerate()
                .filter(|&(e, &ok)| ok && e != d as usize)
                .map(|(e, _)| self.counts[e])
                .chain(
                    self.eligible
                        .get(d as usize)
                        .copied()
                        .unwrap_or(false)
                        .then_some(count),
                )
                .min()
                .unwrap_or(i32::MAX as i64)
        };
        count + self.self_match - min <= self.max_skew
    }
}

/// Per hard constraint, how many pods nominated to `node` count there for
/// `pod`: priority at least the pod's, not the pod itself, in its namespace,
/// matched by the constraint's selector, on a node whose pods count.
fn nominated_matches(s: &PreFilterState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Vec<i64> {
    let mut extra = vec![0i64; s.constraints.len()];
    for n in snap.nominated_for(pod, node) {
        let p = &n.pod;
        if p.key.namespace != pod.key.namespace {
            continue;
        }
        for (e, c) in extra.iter_mut().zip(&s.constraints) {
            let counts = c.counting.get(node as usize).copied().unwrap_or(false);
            if counts
                && c.selector
                    .as_ref()
                    .is_some_and(|sel| sel.matches(&p.labels))
            {
                *e += 1;
            }
        }
    }
    extra
}

#[derive(Debug)]
pub(super) struct PreFilterState {
    pub(super) constraints: Vec<HardConstraint>,
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snap: &Snapshot) -> Status {
        let hard = constraints_of(pod, WhenUnsatisfiable::DoNotSchedule);
        if hard.is_empty() {
            return Status::skip();
        }
        let nodes = snap.nodes();
        let slots = nodes.slots();
        let mut maps: Vec<DomainMap> = hard.iter().map(|_| DomainMap::new(slots)).collect();
        // Per constraint: domain ids with at least one eligible node, and which nodes count.
        let mut eligible_domain: Vec<Vec<bool>> = vec![Vec::new(); hard.len()];
        let mut counting: Vec<Vec<bool>> = vec![vec![false; slots]; hard.len()];

        for i in nodes.live_indices() {
            let node = &nodes.node[i as usize];
            for (ci, c) in hard.iter().enumerate() {
                if let Some(v) = node.labels.get(c.topology_key) {
                    maps[ci].node_domain[i as usize] = maps[ci].intern(v);
                }
            }
            // Upstream counts only nodes carrying every hard constraint's key.
            if !has_all_keys(node, &hard) {
                continue;
            }
            let mut inclusion = NodeInclusion::new(pod);
            for (ci, c) in hard.iter().enumerate() {
                if !inclusion.admits(c, node) {
                    continue;
                }
                let d = maps[ci].node_domain[i as usize] as usize;
                let dom = &mut eligible_domain[ci];
                if dom.len() <= d {
                    dom.resize(d + 1, false);
                }
                dom[d] = true;
                counting[ci][i as usize] = true;
            }
        }

        let ns = pod.key.namespace;
        let mut out = Vec::with_capacity(hard.len());
        for (ci, (c, map)) in hard.iter().zip(maps).enumerate() {
            let mut counts = vec![0i64; map.len()];
            let eligible = &counting[ci];
            for_each_matching_pod(snap, ns, c.selector.as_ref(), |n| {
                if eligible.get(n as usize).copied().unwrap_or(false) {
                    counts[map.node_domain[n as usize] as usize] += 1;
                }
            });
            let dom = &eligible_domain[ci];
            let domains = dom.iter().filter(|e| **e).count();
            // Too few eligible domains: the global minimum is taken as 0.
            let min_match = if (domains as i64) < c.min_domains.unwrap_or(1) as i64 {
                0
            } else {
                dom.iter()
                    .enumerate()
                    .filter(|(_, e)| **e)
                    .map(|(d, _)| counts[d])
                    .min()
                    .unwrap_or(i32::MAX as i64)
            };
            out.push(HardConstraint {
                max_skew: c.max_skew as i64,
                node_domain: map.node_domain,
                counts,
                min_match,
                self_match: self_matches(c, pod) as i64,
                counting: std::mem::take(&mut counting[ci]),
                eligible: dom.clone(),
                below_min_domains: (domains as i64) < c.min_domains.unwrap_or(1) as i64,
                selector: c.selector.clone(),
            });
        }
        state.write(PreFilterState { constraints: out });
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let Some(s) = state.read::<PreFilterState>() else {
            // PreFilter skipped: the pod has no hard constraints.
            if pod
                .topology_spread
                .iter()
                .all(|c| c.when_unsatisfiable != WhenUnsatisfiable::DoNotSchedule)
            {
                return Status::success();
            }
            return Status::error(NAME, "reading PreFilterPodTopologySpread from cycle state");
        };
        for c in &s.constraints {
            let Some(count) = c.count_on(node) else {
                return Status::unresolvable(NAME, ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            if count + c.self_match - c.min_match > c.max_skew {
                return Status::unschedulable(NAME, ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        if snap.nominated_on(node).next().is_some() {
            let extra = nominated_matches(s, pod, snap, node);
            if extra.iter().any(|&k| k > 0)
                && !s
                    .constraints
                    .iter()
                    .zip(&extra)
                    .all(|(c, &k)| c.passes_with(node, k))
            {
                return Status::unschedulable(NAME, ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }

    /// Without hard constraints PreFilter skips and Filter passes, whatever is placed.
    fn depends_on_placed_pods(&self, _: &CycleState, pod: &Pod) -> bool {
        !constraints_of(pod, WhenUnsatisfiable::DoNotSchedule).is_empty()
    }
}
