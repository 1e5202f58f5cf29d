//! NodePools and the offerings they allow: every (instance type, capacity type, zone, value of
//! each custom label) a node of the pool could be launched with, with its labels and price.
//!
//! Karpenter reads a pod's constraints against these labels, so matching an offering is the
//! scheduler's own label matching (`Requirement::matches`, `NodeSelectorTerm::matches`).

use super::instances::InstanceType;
use crate::model::capacity::{ON_DEMAND, SPOT};
use crate::model::{Labels, Node, Requirement, SelectorOp, Sym, Taint, LABEL_HOSTNAME, LABEL_ZONE};

/// The capacity-type label Karpenter puts on its nodes.
pub const LABEL_CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
pub const LABEL_NODEPOOL: &str = "karpenter.sh/nodepool";
pub const LABEL_INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";

/// Labels Karpenter derives from the offering itself; any other key a pool requires `In` some
/// values is a custom label whose value Karpenter picks per node.
const WELL_KNOWN: [&str; 5] = [
    LABEL_CAPACITY_TYPE,
    LABEL_NODEPOOL,
    LABEL_INSTANCE_TYPE,
    LABEL_ZONE,
    LABEL_HOSTNAME,
];

/// How a pool picks the capacity type of a node it launches.
#[derive(Debug, Clone, PartialEq)]
pub enum CapacityChoice {
    /// Karpenter: the cheapest offering the pods allow (spot wherever allowed).
    Cheapest,
    /// A cluster-autoscaler node group with a mixed-instances policy: each new node takes
    /// the capacity type furthest below its weight's share of the group's nodes.
    NodeShare(Vec<(Sym, u32)>),
}

/// A NodePool (or node group) as the simulation needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePool {
    pub name: String,
    /// Higher weights are tried first (NodePool `spec.weight`).
    pub weight: i32,
    /// Every node of the pool satisfies these (`spec.template.spec.requirements`).
    pub requirements: Vec<Requirement>,
    pub taints: Vec<Taint>,
    pub capacity: CapacityChoice,
}

impl NodePool {
    /// A pool allowing `types` of capacity, no other restriction.
    pub fn new(name: &str, types: &[&str]) -> NodePool {
        NodePool {
            name: name.to_owned(),
            weight: 0,
            requirements: vec![requirement_in(LABEL_CAPACITY_TYPE, types)],
            taints: Vec::new(),
            capacity: CapacityChoice::Cheapest,
        }
    }
}

/// `key In [values]`.
pub fn requirement_in(key: &str, values: &[&str]) -> Requirement {
    Requirement {
        key: Sym::new(key),
        op: SelectorOp::In,
        values: values.iter().map(|v| Sym::new(v)).collect(),
        number: 0,
    }
}

/// One way to launch a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Offering {
    pub pool: usize,
    pub instance: usize,
    pub capacity: Sym,
    /// Every label of the node but its hostname.
    pub labels: Labels,
    pub price: f64,
}

/// The pools and everything they may launch.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub pools: Vec<NodePool>,
    pub instances: Vec<InstanceType>,
    pub offerings: Vec<Offering>,
    /// Pool indices in the order Karpenter tries them: weight descending, then name.
    pub pool_order: Vec<usize>,
    /// Offering ids per pool.
    pub by_pool: Vec<Vec<u32>>,
}

impl Catalog {
    pub fn new(pools: Vec<NodePool>, instances: Vec<InstanceType>, zones: &[Sym]) -> Catalog {
        let mut offerings = Vec::new();
        let mut by_pool = vec![Vec::new(); pools.len()];
        for (p, pool) in pools.iter().enumerate() {
            let custom: Vec<&Requirement> = pool
                .requirements
                .iter()
                .filter(|r| r.op == SelectorOp::In && !WELL_KNOWN.contains(&r.key.as_str()))
                .collect();
            for (i, it) in instances.iter().enumerate() {
                for capacity in [SPOT, ON_DEMAND] {
                    let zone_list: Vec<Option<Sym>> = if zones.is_empty() {
                        vec![None]
                    } else {
                        zones.iter().map(|z| Some(*z)).collect()
                    };
                    for zone in zone_list {
                        for values in combinations(&custom) {
                            let mut pairs: Vec<(Sym, Sym)> = vec![
                                (Sym::new(LABEL_CAPACITY_TYPE), Sym::new(capacity)),
                                (Sym::new(LABEL_NODEPOOL), Sym::new(&pool.name)),
                                (Sym::new(LABEL_INSTANCE_TYPE), it.name),
                            ];
                            if let Some(z) = zone {
                                pairs.push((Sym::new(LABEL_ZONE), z));
                            }
                            pairs.extend(values);
                            pairs.extend(it.labels.iter().copied());
                            let labels = Labels::from_pairs(
                                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                            );
                            if !pool.requirements.iter().all(|r| r.matches(&labels)) {
                                continue;
                            }
                            by_pool[p].push(offerings.len() as u32);
                            offerings.push(Offering {
                                pool: p,
                                instance: i,
                                capacity: Sym::new(capacity),
                                labels,
                                price: it.price(capacity),
                            });
                        }
                    }
                }
            }
        }
        let mut pool_order: Vec<usize> = (0..pools.len()).collect();
        pool_order.sort_by(|&a, &b| {
            pools[b]
                .weight
                .cmp(&pools[a].weight)
                .then_with(|| pools[a].name.cmp(&pools[b].name))
        });
        Catalog {
            pools,
            instances,
            offerings,
            pool_order,
            by_pool,
        }
    }

    /// The node launched from offering `o`, named `name`.
    pub fn node(&self, o: u32, name: &str) -> Node {
        let off = &self.offerings[o as usize];
        let mut node = Node::new(name, self.instances[off.instance].allocatable.clone());
        let mut labels = off.labels.clone();
        labels.insert(Sym::new(LABEL_HOSTNAME), Sym::new(name));
        node.labels = labels;
        node.taints = self.pools[off.pool].taints.clone();
        node
    }

    /// Values every offering of the catalog has for `key` (the topology domains NodePools
    /// register), sorted.
    pub fn domains(&self, key: Sym) -> Vec<Sym> {
        let mut v: Vec<Sym> = self
            .offerings
            .iter()
            .filter_map(|o| o.labels.get(key))
            .collect();
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        v.dedup();
        v
    }
}

/// Every choice of one value per custom requirement.
fn combinations(reqs: &[&Requirement]) -> Vec<Vec<(Sym, Sym)>> {
    let mut out: Vec<Vec<(Sym, Sym)>> = vec![Vec::new()];
    for r in reqs {
        let mut next = Vec::new();
        for prefix in &out {
            for v in &r.values {
                let mut c = prefix.clone();
                c.push((r.key, *v));
                next.push(c);
            }
        }
        out = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::karpenter::instances;

    fn catalog(pools: Vec<NodePool>) -> Catalog {
        let zones = [Sym::new("zone-a"), Sym::new("zone-b")];
        Catalog::new(pools, instances::resolve(&[]), &zones)
    }

    #[test]
    fn offerings_follow_pool_requirements() {
        let c = catalog(vec![NodePool::new("default", &[SPOT, ON_DEMAND])]);
        // 9 instance types × 2 capacity types × 2 zones.
        assert_eq!(c.offerings.len(), 36);
        let spot_only = catalog(vec![NodePool::new("spot", &[SPOT])]);
        assert_eq!(spot_only.offerings.len(), 18);
        assert!(spot_only
            .offerings
            .iter()
            .all(|o| o.capacity.as_str() == SPOT));
        let o = &spot_only.offerings[0];
        assert_eq!(o.labels.get_str(LABEL_NODEPOOL), Some("spot"));
        assert_eq!(o.price, spot_only.instances[o.instance].spot_price);
    }

    #[test]
    fn custom_label_values_multiply_offerings_and_register_domains() {
        let mut p = NodePool::new("spot", &[SPOT]);
        p.requirements
            .push(requirement_in("capacity-spread", &["1", "2"]));
        let mut q = NodePool::new("od", &[ON_DEMAND]);
        q.requirements
            .push(requirement_in("capacity-spread", &["3"]));
        q.weight = 5;
        let c = catalog(vec![p, q]);
        assert_eq!(c.by_pool[0].len(), 36);
        assert_eq!(c.by_pool[1].len(), 18);
        assert_eq!(c.pool_order, vec![1, 0], "heavier pool first");
        let d: Vec<&str> = c
            .domains(Sym::new("capacity-spread"))
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(d, ["1", "2", "3"]);
        let n = c.node(c.by_pool[1][0], "auto-1");
        assert_eq!(n.labels.get_str("capacity-spread"), Some("3"));
        assert_eq!(n.labels.get_str(LABEL_HOSTNAME), Some("auto-1"));
    }
}
