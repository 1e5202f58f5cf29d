//! TaintToleration: NoSchedule/NoExecute taints must be tolerated (Filter);
//! fewer untolerated PreferNoSchedule taints score higher (Score).

use crate::framework::{
    default_normalize, retain_nodes, slots_from, CycleState, FilterPlugin, Normalization, Plugin,
    ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::model::{Pod, Taint, TaintEffect};
use crate::snapshot::{NodeIdx, NodeTable, Snapshot};

pub const NAME: &str = "TaintToleration";

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let nodes = snap.nodes();
        if nodes.hard_taints[node as usize] == 0 {
            return Status::success();
        }
        let untolerated = pod.first_untolerated_hard_taint(&nodes.node[node as usize]);
        match untolerated {
            None => Status::success(),
            Some(t) => Status::unresolvable(
                NAME,
                format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value),
            ),
        }
    }

    /// Reads only the node and the pod.
    fn depends_on_placed_pods(&self, _: &CycleState, _: &Pod) -> bool {
        false
    }
    /// The node's taints and the pod's tolerations.
    fn keeps_verdicts(&self, _: &CycleState, kept: &Pod, pod: &Pod, _: &Snapshot) -> bool {
        kept.tolerations == pod.tolerations
    }

    fn filter_nodes(
        &self,
        _: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &mut Vec<NodeIdx>,
        rejected: &mut Vec<NodeIdx>,
    ) -> Result<(), Status> {
        let t = snap.nodes();
        if t.hard_tainted_nodes == 0 {
            return Ok(());
        }
        let tolerated = tolerated_taint_sets(pod, t);
        let taint_set = &t.taint_set;
        retain_nodes(nodes, rejected, |n| {
            tolerated[taint_set[n as usize] as usize]
        });
        Ok(())
    }

    fn filter_slots(
        &self,
        _: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        first: usize,
        pass: &mut [bool],
    ) -> bool {
        let t = snap.nodes();
        if t.hard_tainted_nodes == 0 {
            return true;
        }
        let tolerated = tolerated_taint_sets(pod, t);
        for (p, &set) in pass.iter_mut().zip(slots_from(&t.taint_set, first)) {
            // Every node's set is in the table; a slot of a deleted node may not be.
            *p &= tolerated.get(set as usize).copied().unwrap_or(false);
        }
        true
    }
}

/// Whether `pod` tolerates the hard taints of each taint list, by list id: nodes
/// share a few taint lists, so each is judged once and nodes look theirs up.
fn tolerated_taint_sets(pod: &Pod, t: &NodeTable) -> Vec<bool> {
    let mut tolerated = vec![true; t.taint_sets.table_len()];
    for (id, taints) in t.taint_sets.iter() {
        tolerated[id as usize] = pod.first_untolerated_hard_taint_in(taints).is_none();
    }
    tolerated
}

fn untolerated_soft_taints(pod: &Pod, taints: &[Taint]) -> i64 {
    taints
        .iter()
        .filter(|t| t.effect == TaintEffect::PreferNoSchedule)
        .filter(|t| {
            !pod.tolerations
                .iter()
                .filter(|tol| {
                    tol.effect
                        .is_none_or(|e| e == TaintEffect::PreferNoSchedule)
                })
                .any(|tol| tol.tolerates(t))
        })
        .count() as i64
}

impl ScorePlugin for TaintToleration {
    /// Untolerated PreferNoSchedule taints, counting only tolerations whose effect
    /// is empty or PreferNoSchedule (upstream's getAllTolerationPreferNoSchedule).
    fn score(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        untolerated_soft_taints(pod, &snap.nodes().node[node as usize].taints)
    }

    fn score_nodes(
        &self,
        _: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &[NodeIdx],
        out: &mut [i64],
    ) {
        let t = snap.nodes();
        if t.soft_tainted_nodes == 0 {
            out.fill(0);
            return;
        }
        // Nodes share a few taint lists: count each once, then look nodes up.
        let mut counts = vec![0i64; t.taint_sets.table_len()];
        for (id, taints) in t.taint_sets.iter() {
            counts[id as usize] = untolerated_soft_taints(pod, taints);
        }
        let taint_set = &t.taint_set;
        for (o, &n) in out.iter_mut().zip(nodes) {
            *o = counts[taint_set[n as usize] as usize];
        }
    }

    /// No node with a PreferNoSchedule taint: every raw score is 0, which the
    /// reversed normalization makes MAX_NODE_SCORE.
    fn uniform_score(&self, _: &CycleState, _: &Pod, snap: &Snapshot) -> Option<i64> {
        (snap.nodes().soft_tainted_nodes == 0).then_some(MAX_NODE_SCORE)
    }

    fn normalize(&self, _: &CycleState, _: &Pod, scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, true, scores);
    }

    fn normalization(&self) -> Normalization {
        Normalization::ByMaximum
    }

    /// The count reads the node's taints and the pod's tolerations.
    fn keeps_node_scores(&self, _: &CycleState, kept: &Pod, pod: &Pod) -> bool {
        kept.tolerations == pod.tolerations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::model::capacity::CapacityRules;
    use crate::model::{Sym, Toleration, TolerationOp};
    use crate::plugins::test_support::{filter_all, score_all};
    use crate::testkit::*;

    fn snap() -> Snapshot {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("plain", 1000, GI).build());
        s.upsert_node(
            node("dedicated", 1000, GI)
                .taint("dedicated", "spark", TaintEffect::NoSchedule)
                .build(),
        );
        s.upsert_node(
            node("evict", 1000, GI)
                .taint("gone", "", TaintEffect::NoExecute)
                .build(),
        );
        s.upsert_node(
            node("prefer", 1000, GI)
                .taint("cheap", "yes", TaintEffect::PreferNoSchedule)
                .build(),
        );
        s
    }

    #[test]
    fn filter_table() {
        let s = snap();
        let r = filter_all(None, &TaintToleration, &pod("p", 1, 1).build(), &s);
        let codes: Vec<_> = r.iter().map(|(n, st)| (n.as_str(), st.code)).collect();
        assert_eq!(
            codes,
            vec![
                ("plain", Code::Success),
                ("dedicated", Code::UnschedulableAndUnresolvable),
                ("evict", Code::UnschedulableAndUnresolvable),
                ("prefer", Code::Success),
            ]
        );
        assert_eq!(
            r[1].1.reasons[0],
            "node(s) had untolerated taint {dedicated: spark}"
        );
        assert_eq!(r[2].1.reasons[0], "node(s) had untolerated taint {gone: }");

        let tolerant = pod("p", 1, 1)
            .tolerate("dedicated", "spark", Some(TaintEffect::NoSchedule))
            .build();
        assert!(filter_all(None, &TaintToleration, &tolerant, &s)[1]
            .1
            .is_success());
        let wrong_value = pod("p", 1, 1).tolerate("dedicated", "flink", None).build();
        assert!(!filter_all(None, &TaintToleration, &wrong_value, &s)[1]
            .1
            .is_success());
        let all = pod("p", 1, 1)
            .toleration(Toleration {
                key: None,
                op: TolerationOp::Exists,
                value: Sym::new(""),
                effect: None,
            })
            .build();
        assert!(filter_all(None, &TaintToleration, &all, &s)
            .iter()
            .all(|(_, st)| st.is_success()));
    }

    #[test]
    fn score_prefers_fewer_untolerated_soft_taints() {
        let s = snap();
        let r = score_all(None, &TaintToleration, &pod("p", 1, 1).build(), &s);
        assert_eq!(r.iter().find(|(n, _)| n == "prefer").unwrap().1, 0);
        assert_eq!(r.iter().find(|(n, _)| n == "plain").unwrap().1, 100);
        // A toleration with effect NoSchedule does not count for PreferNoSchedule taints.
        let p = pod("p", 1, 1)
            .tolerate("cheap", "yes", Some(TaintEffect::NoSchedule))
            .build();
        assert_eq!(score_all(None, &TaintToleration, &p, &s)[3].1, 0);
        let p = pod("p", 1, 1).tolerate("cheap", "yes", None).build();
        assert_eq!(score_all(None, &TaintToleration, &p, &s)[3].1, 100);
    }
}
