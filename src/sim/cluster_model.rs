//! The simulated cluster around the scheduler: node prices and accounting, and spot
//! interruption notices for the trace's own nodes. The autoscaler is [`super::karpenter`].

use crate::model::{Node, Resources, Sym, Taint, TaintEffect};
use std::collections::BTreeMap;

/// The taint a node gets when its spot interruption notice arrives.
pub const SPOT_INTERRUPTION_TAINT: &str = "spark-fleet.io/spot-interruption";

/// `node` with the spot-interruption NoSchedule taint added (once).
pub fn with_interruption_taint(node: &Node) -> Node {
    let mut n = node.clone();
    let key = Sym::new(SPOT_INTERRUPTION_TAINT);
    if !n.taints.iter().any(|t| t.key == key) {
        n.taints.push(Taint {
            key,
            value: Sym::new(""),
            effect: TaintEffect::NoSchedule,
        });
    }
    n
}

/// Dollars per hour of a node: the trace's price, else vCPUs × the per-type default.
pub fn node_price(
    trace_price: Option<f64>,
    capacity_type: &str,
    allocatable: &Resources,
    per_vcpu: &BTreeMap<String, f64>,
    default_per_vcpu: f64,
) -> f64 {
    trace_price.unwrap_or_else(|| {
        let rate = per_vcpu
            .get(capacity_type)
            .copied()
            .unwrap_or(default_per_vcpu);
        rate * allocatable.milli_cpu as f64 / 1000.0
    })
}

/// A node the simulation has seen, for node-hours and cost.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub capacity_type: Sym,
    pub price_per_hour: f64,
    /// Has a termination notice.
    pub interrupted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{res, GI};

    #[test]
    fn price_falls_back_to_per_vcpu_default() {
        let mut per = BTreeMap::new();
        per.insert("spot".to_owned(), 0.01);
        let r = res(8000, GI);
        assert_eq!(node_price(Some(0.5), "spot", &r, &per, 0.1), 0.5);
        assert_eq!(node_price(None, "spot", &r, &per, 0.1), 0.08);
        assert!((node_price(None, "on-demand", &r, &per, 0.1) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn interruption_taint_is_added_once() {
        let n = Node::new("n", res(1000, GI));
        let t = with_interruption_taint(&with_interruption_taint(&n));
        assert_eq!(t.taints.len(), 1);
        assert_eq!(t.taints[0].key.as_str(), SPOT_INTERRUPTION_TAINT);
        assert_eq!(t.taints[0].effect, TaintEffect::NoSchedule);
    }
}
