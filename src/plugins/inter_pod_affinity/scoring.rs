//! PreScore sums, per topology pair, the weights of the preferred terms that
//! placed pods meet (the pod's own) and of placed pods' terms the pod meets;
//! Score adds up a node's pairs; Normalize maps min..max to 0..=100.

use super::{for_each_candidate, InterPodAffinity, TopologyCounts};
use crate::framework::{CycleState, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};

#[derive(Debug)]
pub(super) struct PreScoreState {
    scores: TopologyCounts,
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &Snapshot,
        _feasible: &[NodeIdx],
    ) -> Status {
        let own = pod.pod_affinity.as_deref();
        let with_terms = snap.pods_with_pod_affinity();
        if own.is_none_or(|a| !a.has_preferred()) && with_terms.is_empty() {
            return Status::skip();
        }
        let nodes = snap.nodes();
        let labels_of = |n: NodeIdx| &nodes.node[n as usize].labels;
        let mut scores = TopologyCounts::default();
        if let Some(a) = own {
            let terms = a
                .preferred_affinity
                .iter()
                .map(|w| (w, 1))
                .chain(a.preferred_anti_affinity.iter().map(|w| (w, -1)));
            for (w, sign) in terms {
                let t = &w.term;
                for_each_candidate(snap, t, |e| {
                    if t.matches(&e.pod) {
                        if let Some(v) = labels_of(e.node).get(t.topology_key) {
                            scores.add(t.topology_key, v, sign * w.weight as i64);
                        }
                    }
                });
            }
        }
        let hard = self.hard_pod_affinity_weight;
        for &id in with_terms {
            let Some(e) = snap.pod(id) else {
                continue;
            };
            let Some(a) = e.pod.pod_affinity.as_deref() else {
                continue;
            };
            let labels = labels_of(e.node);
            let mut add = |t: &crate::model::PodAffinityTerm, weight: i64| {
                if t.matches(pod) {
                    if let Some(v) = labels.get(t.topology_key) {
                        scores.add(t.topology_key, v, weight);
                    }
                }
            };
            if hard > 0 {
                for t in &a.required_affinity {
                    add(t, hard);
                }
            }
            for w in &a.preferred_affinity {
                add(&w.term, w.weight as i64);
            }
            for w in &a.preferred_anti_affinity {
                add(&w.term, -(w.weight as i64));
            }
        }
        if scores.is_empty() {
            return Status::skip();
        }
        state.write(PreScoreState { scores });
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    /// The summed weights of the node's topology pairs.
    fn score(&self, state: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let Some(s) = state.read::<PreScoreState>() else {
            return 0;
        };
        let Some(n) = snap.nodes().node.get(node as usize) else {
            return 0;
        };
        s.scores
            .keys
            .iter()
            .filter_map(|&k| n.labels.get(k).map(|v| s.scores.get(k, v)))
            .sum()
    }

    /// Upstream: `100 * (score - min) / (max - min)` over the feasible nodes,
    /// in floating point and truncated; all 0 when every score is the same.
    fn normalize(&self, state: &CycleState, _: &Pod, scores: &mut [i64]) {
        if state.read::<PreScoreState>().is_none() {
            return;
        }
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }
}
