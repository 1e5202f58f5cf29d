//! NodeUnschedulable: cordoned nodes take only pods tolerating
//! `node.kubernetes.io/unschedulable:NoSchedule`.

use crate::framework::{retain_nodes, slots_from, CycleState, FilterPlugin, Plugin, Status};
use crate::model::{Pod, Sym, Taint, TaintEffect};
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON: &str = "node(s) were unschedulable";
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
}

fn tolerates_unschedulable(pod: &Pod) -> bool {
    let taint = Taint {
        key: Sym::new(TAINT_UNSCHEDULABLE),
        value: Sym::new(""),
        effect: TaintEffect::NoSchedule,
    };
    pod.tolerations.iter().any(|t| t.tolerates(&taint))
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        if !snap.nodes().unschedulable[node as usize] || tolerates_unschedulable(pod) {
            Status::success()
        } else {
            Status::unresolvable(NAME, ERR_REASON)
        }
    }

    /// Reads only the node and the pod.
    fn depends_on_placed_pods(&self, _: &CycleState, _: &Pod) -> bool {
        false
    }

    /// The node's `unschedulable` and the pod's tolerations.
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
        if t.unschedulable_nodes == 0 || tolerates_unschedulable(pod) {
            return Ok(());
        }
        retain_nodes(nodes, rejected, |n| !t.unschedulable[n as usize]);
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
        if t.unschedulable_nodes == 0 || tolerates_unschedulable(pod) {
            return true;
        }
        for (p, &cordoned) in pass.iter_mut().zip(slots_from(&t.unschedulable, first)) {
            *p &= !cordoned;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::capacity::CapacityRules;
    use crate::model::{Toleration, TolerationOp};
    use crate::plugins::test_support::filter_all;
    use crate::testkit::*;

    #[test]
    fn table() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("ok", 1000, GI).build());
        s.upsert_node(node("cordoned", 1000, GI).unschedulable().build());
        let r = filter_all(None, &NodeUnschedulable, &pod("p", 1, 1).build(), &s);
        assert!(r[0].1.is_success());
        assert_eq!(r[1].1.reasons[0], ERR_REASON);
        let tolerant = pod("p", 1, 1)
            .toleration(Toleration {
                key: Some(Sym::new(TAINT_UNSCHEDULABLE)),
                op: TolerationOp::Exists,
                value: Sym::new(""),
                effect: Some(TaintEffect::NoSchedule),
            })
            .build();
        assert!(filter_all(None, &NodeUnschedulable, &tolerant, &s)[1]
            .1
            .is_success());
        // A NoExecute-only toleration does not cover the NoSchedule taint.
        let wrong = pod("p", 1, 1)
            .toleration(Toleration {
                key: Some(Sym::new(TAINT_UNSCHEDULABLE)),
                op: TolerationOp::Exists,
                value: Sym::new(""),
                effect: Some(TaintEffect::NoExecute),
            })
            .build();
        assert!(!filter_all(None, &NodeUnschedulable, &wrong, &s)[1]
            .1
            .is_success());
    }
}
