//! NodeName: a pod with `spec.nodeName` set only fits that node.

use crate::framework::{retain_nodes, slots_from, CycleState, FilterPlugin, Plugin, Status};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        match pod.node_name {
            Some(want) if want != snap.nodes().name[node as usize] => {
                Status::unresolvable(NAME, ERR_REASON)
            }
            _ => Status::success(),
        }
    }

    /// Reads only the node and the pod.
    fn depends_on_placed_pods(&self, _: &CycleState, _: &Pod) -> bool {
        false
    }

    /// The node's name and the pod's `spec.nodeName`.
    fn keeps_verdicts(&self, _: &CycleState, kept: &Pod, pod: &Pod, _: &Snapshot) -> bool {
        kept.node_name == pod.node_name
    }

    fn filter_nodes(
        &self,
        _: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &mut Vec<NodeIdx>,
        rejected: &mut Vec<NodeIdx>,
    ) -> Result<(), Status> {
        if let Some(want) = pod.node_name {
            let names = &snap.nodes().name;
            retain_nodes(nodes, rejected, |n| names[n as usize] == want);
        }
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
        if let Some(want) = pod.node_name {
            for (p, &name) in pass.iter_mut().zip(slots_from(&snap.nodes().name, first)) {
                *p &= name == want;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::model::capacity::CapacityRules;
    use crate::plugins::test_support::filter_all;
    use crate::testkit::*;

    #[test]
    fn table() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("a", 1000, GI).build());
        s.upsert_node(node("b", 1000, GI).build());
        let none = filter_all(None, &NodeName, &pod("p", 1, 1).build(), &s);
        assert!(none.iter().all(|(_, st)| st.is_success()));
        let mut p = pod("p", 1, 1).build();
        p.node_name = Some(crate::model::Sym::new("b"));
        let r = filter_all(None, &NodeName, &p, &s);
        assert_eq!(r[0].1.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(r[0].1.reasons[0], ERR_REASON);
        assert!(r[1].1.is_success());
    }
}
