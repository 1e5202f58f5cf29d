//! The simulated cluster around the scheduler: node prices and accounting, spot interruption
//! notices, and a Karpenter-like autoscaler.
//!
//! Autoscaler model: a pod that has waited in the unschedulable pool for longer than the batch
//! window, rejected for lack of resources, asks for capacity. Pods are grouped by the capacity
//! type they want (the type their executor mix is short of, spot for executors without a mix,
//! on-demand for drivers and other pods), packed first-fit-decreasing onto the configured node
//! shape of that type, and that many nodes join after the provisioning delay. A provisioned
//! node that stays empty for the consolidation delay is removed. Nodes from the trace are never
//! consolidated (they are the cluster's fixed fleet).

use super::trace::resources_from;
use crate::model::capacity::{ON_DEMAND, SPOT};
use crate::model::{Labels, Node, Pod, Resources, Sym, Taint, TaintEffect, LABEL_ZONE};
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
    /// Added by the autoscaler (may be consolidated).
    pub provisioned: bool,
    /// Has a termination notice.
    pub interrupted: bool,
    /// When it last became empty (provisioned nodes only), for consolidation.
    pub empty_since_ms: Option<u64>,
}

/// The shape of nodes the autoscaler adds for one capacity type.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeShape {
    /// Allocatable as quantity strings, e.g. `{"cpu": "16", "memory": "64Gi", "pods": "110"}`.
    pub allocatable: BTreeMap<String, String>,
    /// None: vCPUs × the simulator's per-vCPU default for the type.
    pub price_per_hour: Option<f64>,
}

impl NodeShape {
    fn m5_4xlarge() -> NodeShape {
        let mut a = BTreeMap::new();
        a.insert("cpu".to_owned(), "15900m".to_owned());
        a.insert("memory".to_owned(), "63Gi".to_owned());
        a.insert("pods".to_owned(), "110".to_owned());
        NodeShape {
            allocatable: a,
            price_per_hour: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalerOptions {
    /// How long a pod must have been unschedulable before it asks for a node.
    pub batch_window_seconds: f64,
    pub provision_delay_seconds: f64,
    pub consolidation_delay_seconds: f64,
    /// Node shape per capacity type; pods wanting a type without a shape get none.
    pub shapes: BTreeMap<String, NodeShape>,
    /// Upper bound on nodes the autoscaler may have provisioned at once.
    pub max_nodes: u32,
}

impl Default for AutoscalerOptions {
    fn default() -> Self {
        let mut shapes = BTreeMap::new();
        shapes.insert(SPOT.to_owned(), NodeShape::m5_4xlarge());
        shapes.insert(ON_DEMAND.to_owned(), NodeShape::m5_4xlarge());
        AutoscalerOptions {
            batch_window_seconds: 10.0,
            provision_delay_seconds: 45.0,
            consolidation_delay_seconds: 300.0,
            shapes,
            max_nodes: 1000,
        }
    }
}

impl AutoscalerOptions {
    pub fn validate(&self) -> Result<(), String> {
        for (what, v) in [
            ("batch window", self.batch_window_seconds),
            ("provision delay", self.provision_delay_seconds),
            ("consolidation delay", self.consolidation_delay_seconds),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("autoscaler {what} {v} must be finite and >= 0"));
            }
        }
        for (ty, shape) in &self.shapes {
            resources_from(
                &shape.allocatable,
                &format!("autoscaler shape {ty}"),
                "allocatable",
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Converted shapes: type → allocatable.
    pub fn resolved_shapes(&self) -> BTreeMap<String, Resources> {
        self.shapes
            .iter()
            .filter_map(|(ty, s)| {
                resources_from(&s.allocatable, ty, "allocatable")
                    .ok()
                    .map(|r| (ty.clone(), r))
            })
            .collect()
    }
}

/// The labels of a node the autoscaler adds.
pub fn provisioned_node(
    name: &str,
    capacity_type: &str,
    zone: Option<&str>,
    alloc: &Resources,
) -> Node {
    let mut node = Node::new(name, alloc.clone());
    let mut pairs = vec![
        (crate::model::LABEL_HOSTNAME, name),
        (super::trace::LABEL_CAPACITY_TYPE, capacity_type),
    ];
    if let Some(z) = zone {
        pairs.push((LABEL_ZONE, z));
    }
    node.labels = Labels::from_pairs(pairs);
    node
}

/// Whether `pod` could run on an empty `node` (resources and its node constraints).
pub fn fits_empty(pod: &Pod, node: &Node) -> bool {
    let r = &pod.requests;
    let a = &node.allocatable;
    if r.milli_cpu > a.milli_cpu
        || r.memory > a.memory
        || r.ephemeral_storage > a.ephemeral_storage
        || a.pods < 1
    {
        return false;
    }
    if r.scalars.iter().any(|&(n, v)| v > a.scalar(n)) {
        return false;
    }
    if !pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(*k) == Some(*v))
    {
        return false;
    }
    match &pod.node_affinity.required {
        None => true,
        Some(terms) => terms.iter().any(|t| t.matches(&node.labels, node.name)),
    }
}

/// How many nodes of allocatable `shape` hold `pods` (requests), first-fit decreasing by CPU.
pub fn nodes_needed(mut pods: Vec<Resources>, shape: &Resources) -> u32 {
    pods.sort_by(|a, b| b.milli_cpu.cmp(&a.milli_cpu).then(b.memory.cmp(&a.memory)));
    // Remaining (cpu, memory, pod slots) per opened node.
    let mut bins: Vec<(i64, i64, i64)> = Vec::new();
    for p in pods {
        match bins
            .iter_mut()
            .find(|b| b.0 >= p.milli_cpu && b.1 >= p.memory && b.2 >= 1)
        {
            Some(b) => {
                b.0 -= p.milli_cpu;
                b.1 -= p.memory;
                b.2 -= 1;
            }
            None => bins.push((
                shape.milli_cpu - p.milli_cpu,
                shape.memory - p.memory,
                shape.pods - 1,
            )),
        }
    }
    bins.len() as u32
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
    fn first_fit_decreasing_packing() {
        let shape = {
            let mut r = res(4000, 16 * GI);
            r.pods = 110;
            r
        };
        assert_eq!(nodes_needed(vec![], &shape), 0);
        // 3 + 1 fill one node, 2 + 2 another.
        let pods = vec![res(2000, GI), res(3000, GI), res(1000, GI), res(2000, GI)];
        assert_eq!(nodes_needed(pods, &shape), 2);
        // Memory binds: three 6Gi pods need two 16Gi nodes.
        assert_eq!(nodes_needed(vec![res(100, 6 * GI); 3], &shape), 2);
    }

    #[test]
    fn interruption_taint_is_added_once() {
        let n = Node::new("n", res(1000, GI));
        let t = with_interruption_taint(&with_interruption_taint(&n));
        assert_eq!(t.taints.len(), 1);
        assert_eq!(t.taints[0].key.as_str(), SPOT_INTERRUPTION_TAINT);
        assert_eq!(t.taints[0].effect, TaintEffect::NoSchedule);
    }

    #[test]
    fn empty_node_fit_checks_resources_and_selectors() {
        let mut alloc = res(4000, 16 * GI);
        alloc.pods = 110;
        let node = provisioned_node("auto-1", "spot", Some("zone-a"), &alloc);
        let small = Pod::new("ns", "p", res(1000, GI));
        assert!(fits_empty(&small, &node));
        let big = Pod::new("ns", "p", res(5000, GI));
        assert!(!fits_empty(&big, &node));
        let mut gpu = small.clone();
        gpu.requests.set_scalar(Sym::new("nvidia.com/gpu"), 1);
        assert!(!fits_empty(&gpu, &node));
        let mut sel = small.clone();
        sel.node_selector = vec![(Sym::new(LABEL_ZONE), Sym::new("zone-b"))];
        assert!(!fits_empty(&sel, &node));
        sel.node_selector = vec![(Sym::new(LABEL_ZONE), Sym::new("zone-a"))];
        assert!(fits_empty(&sel, &node));
    }
}
