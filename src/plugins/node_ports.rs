//! NodePorts: a pod's host ports must be free on the node.

use crate::framework::{CycleState, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(&self, _: &mut CycleState, pod: &Pod, _: &Snapshot) -> Status {
        if pod.host_ports.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let holds_wanted_port = |other: &Pod| {
            other
                .host_ports
                .iter()
                .any(|used| pod.host_ports.iter().any(|want| want.conflicts(used)))
        };
        // Pods nominated here with priority at least the pod's hold their ports
        // too: upstream's RunFilterPluginsWithNominatedPods adds them to the
        // NodeInfo the filters see (for a check that only adds conflicts, that
        // pass decides alone).
        let conflict = snap.pods_on(node).any(|e| holds_wanted_port(&e.pod))
            || snap
                .nominated_for(pod, node)
                .any(|n| holds_wanted_port(&n.pod));
        if conflict {
            Status::unschedulable(NAME, ERR_REASON)
        } else {
            Status::success()
        }
    }

    /// Only the ports of placed pods matter, and only to a pod asking for host ports.
    fn depends_on_placed_pods(&self, _: &CycleState, pod: &Pod) -> bool {
        !pod.host_ports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::model::capacity::CapacityRules;
    use crate::model::{HostPort, Protocol, Sym};
    use crate::plugins::test_support::filter_all;
    use crate::testkit::*;

    fn port(protocol: Protocol, ip: &str, port: u16) -> HostPort {
        HostPort {
            protocol,
            host_ip: Sym::new(ip),
            port,
        }
    }

    #[test]
    fn conflict_rules() {
        let cases = [
            (
                port(Protocol::Tcp, "", 80),
                port(Protocol::Tcp, "", 80),
                true,
            ),
            (
                port(Protocol::Tcp, "", 80),
                port(Protocol::Udp, "", 80),
                false,
            ),
            (
                port(Protocol::Tcp, "", 80),
                port(Protocol::Tcp, "", 81),
                false,
            ),
            (
                port(Protocol::Tcp, "10.0.0.1", 80),
                port(Protocol::Tcp, "10.0.0.2", 80),
                false,
            ),
            (
                port(Protocol::Tcp, "10.0.0.1", 80),
                port(Protocol::Tcp, "0.0.0.0", 80),
                true,
            ),
            (
                port(Protocol::Tcp, "10.0.0.1", 80),
                port(Protocol::Tcp, "10.0.0.1", 80),
                true,
            ),
            // Upstream's HostPortInfo: only "" and 0.0.0.0 bind every address.
            (
                port(Protocol::Tcp, "::", 80),
                port(Protocol::Tcp, "10.0.0.1", 80),
                false,
            ),
            (
                port(Protocol::Tcp, "::", 80),
                port(Protocol::Tcp, "", 80),
                true,
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(a.conflicts(&b), want, "{a:?} vs {b:?}");
            assert_eq!(b.conflicts(&a), want);
        }
    }

    #[test]
    fn filter_table() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("busy", 1000, GI).build());
        s.upsert_node(node("free", 1000, GI).build());
        s.upsert_pod(pod("web", 1, 1).host_port(8080).on("busy").arc())
            .unwrap();
        let r = filter_all(
            Some(&NodePorts),
            &NodePorts,
            &pod("p", 1, 1).host_port(8080).build(),
            &s,
        );
        assert_eq!(r[0].1.code, Code::Unschedulable);
        assert_eq!(r[0].1.reasons[0], ERR_REASON);
        assert!(r[1].1.is_success());
        let mut st = CycleState::default();
        assert_eq!(
            NodePorts
                .pre_filter(&mut st, &pod("p", 1, 1).build(), &s)
                .code,
            Code::Skip
        );
    }

    /// A pod nominated to a node (by preemption) holds its host ports there
    /// against pods of lower or equal priority, as upstream's
    /// RunFilterPluginsWithNominatedPods adds it to the node first.
    #[test]
    fn nominated_pods_hold_their_ports() {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("n1", 1000, GI).build());
        let n1 = s.nodes().by_name("n1").unwrap();
        s.nominate(
            pod("nominated", 1, 1).priority(10).host_port(8080).arc(),
            n1,
        );
        let verdict = |priority: i32| {
            let p = pod("p", 1, 1).priority(priority).host_port(8080).build();
            filter_all(Some(&NodePorts), &NodePorts, &p, &s)[0].1.code
        };
        assert_eq!(verdict(5), Code::Unschedulable);
        assert_eq!(verdict(10), Code::Unschedulable);
        assert_eq!(verdict(11), Code::Success);
        // The nominated pod itself is not in its own way.
        let own = pod("nominated", 1, 1).priority(10).host_port(8080).build();
        assert!(filter_all(Some(&NodePorts), &NodePorts, &own, &s)[0]
            .1
            .is_success());
    }
}
