//! Nodes in flat arrays (one column per field) so the filter and score loops
//! scan contiguous integers without chasing pointers or allocating.

use crate::model::{Node, Resources, Sym};
use foldhash::HashMap;
use smallvec::SmallVec;

/// Index of a node slot. Slots are reused after a node is removed; `live` tells.
pub type NodeIdx = u32;

#[derive(Debug, Default, Clone)]
pub struct NodeTable {
    pub(super) index: HashMap<Sym, NodeIdx>,
    free: Vec<NodeIdx>,
    /// Live slots in ascending order: the cycle's starting candidate list.
    live_list: Vec<NodeIdx>,
    /// How many live nodes are cordoned, have hard (NoSchedule/NoExecute) taints,
    /// have PreferNoSchedule taints: plugins skip their per-node scan at zero.
    pub unschedulable_nodes: u32,
    pub hard_tainted_nodes: u32,
    pub soft_tainted_nodes: u32,

    pub live: Vec<bool>,
    pub name: Vec<Sym>,
    /// The names as strings, for ordering nodes without an interner lookup.
    pub name_str: Vec<&'static str>,
    /// Position of each live node's name in name order: the cycle's tie-break
    /// compares two integers instead of two strings.
    pub name_rank: Vec<u32>,
    /// Live nodes in name order (what `name_rank` indexes).
    by_name: Vec<NodeIdx>,
    /// Full node objects for the colder checks (labels, taints).
    pub node: Vec<Node>,
    pub capacity_type: Vec<Sym>,
    pub zone: Vec<Option<Sym>>,
    pub unschedulable: Vec<bool>,
    /// Number of taints with effect NoSchedule or NoExecute: lets TaintToleration skip most nodes.
    pub hard_taints: Vec<u8>,
    /// Number of PreferNoSchedule taints.
    pub soft_taints: Vec<u8>,

    pub alloc_cpu: Vec<i64>,
    pub alloc_mem: Vec<i64>,
    pub alloc_eph: Vec<i64>,
    pub alloc_pods: Vec<i64>,
    /// 1 / allocatable (0 where allocatable is 0): the resource scorers divide by
    /// allocatable for every node; see `Reciprocal`.
    pub inv_cpu: Vec<f64>,
    pub inv_mem: Vec<f64>,
    pub inv_eph: Vec<f64>,

    pub req_cpu: Vec<i64>,
    pub req_mem: Vec<i64>,
    pub req_eph: Vec<i64>,
    pub pod_count: Vec<i64>,
    /// Requests with upstream's non-zero defaults, used by scorers.
    pub nonzero_cpu: Vec<i64>,
    pub nonzero_mem: Vec<i64>,
    pub req_scalars: Vec<SmallVec<[(Sym, i64); 2]>>,
}

impl NodeTable {
    pub fn slots(&self) -> usize {
        self.live.len()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get(&self, name: Sym) -> Option<NodeIdx> {
        self.index.get(&name).copied()
    }

    pub fn by_name(&self, name: &str) -> Option<NodeIdx> {
        Sym::lookup(name).and_then(|s| self.get(s))
    }

    /// Live node indices in slot order.
    pub fn live_indices(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        self.live_list.iter().copied()
    }

    /// Live node indices in slot order, as a slice.
    pub fn live_list(&self) -> &[NodeIdx] {
        &self.live_list
    }

    fn set_reciprocals(&mut self, u: usize) {
        let inv = |a: i64| if a > 0 { 1.0 / a as f64 } else { 0.0 };
        self.inv_cpu[u] = inv(self.alloc_cpu[u]);
        self.inv_mem[u] = inv(self.alloc_mem[u]);
        self.inv_eph[u] = inv(self.alloc_eph[u]);
    }

    /// Node additions and removals are rare next to cycles: O(nodes) here buys
    /// an integer tie-break on every cycle.
    fn renumber_names(&mut self, from: usize) {
        for (k, &n) in self.by_name.iter().enumerate().skip(from) {
            self.name_rank[n as usize] = k as u32;
        }
    }

    /// Keeps the per-kind node counts; `sign` 1 when a node's flags arrive, -1 when they go.
    fn count_flags(&mut self, u: usize, sign: i32) {
        let bump = |c: &mut u32, on: bool| {
            if on {
                *c = c.saturating_add_signed(sign);
            }
        };
        bump(&mut self.unschedulable_nodes, self.unschedulable[u]);
        bump(&mut self.hard_tainted_nodes, self.hard_taints[u] > 0);
        bump(&mut self.soft_tainted_nodes, self.soft_taints[u] > 0);
    }

    pub fn req_scalar(&self, i: NodeIdx, name: Sym) -> i64 {
        self.req_scalars[i as usize]
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Requested resources of a node as one value (for reports and explain).
    pub fn requested(&self, i: NodeIdx) -> Resources {
        let i = i as usize;
        Resources {
            milli_cpu: self.req_cpu[i],
            memory: self.req_mem[i],
            ephemeral_storage: self.req_eph[i],
            pods: self.pod_count[i],
            scalars: self.req_scalars[i].clone(),
        }
    }

    pub(super) fn insert(&mut self, node: Node, capacity_type: Sym) -> NodeIdx {
        let zone = node.labels.get(Sym::new(crate::model::LABEL_ZONE));
        let (hard, soft) = count_taints(&node);
        let a = &node.allocatable;
        let (cpu, mem, eph, pods) = (a.milli_cpu, a.memory, a.ephemeral_storage, a.pods);
        let name = node.name;
        let unschedulable = node.unschedulable;
        let idx = match self.free.pop() {
            Some(i) => {
                let u = i as usize;
                self.live[u] = true;
                self.name[u] = name;
                self.name_str[u] = name.as_str();
                self.name_rank[u] = 0;
                self.node[u] = node;
                self.capacity_type[u] = capacity_type;
                self.zone[u] = zone;
                self.hard_taints[u] = hard;
                self.soft_taints[u] = soft;
                self.unschedulable[u] = unschedulable;
                self.alloc_cpu[u] = cpu;
                self.alloc_mem[u] = mem;
                self.alloc_eph[u] = eph;
                self.alloc_pods[u] = pods;
                self.req_cpu[u] = 0;
                self.req_mem[u] = 0;
                self.req_eph[u] = 0;
                self.pod_count[u] = 0;
                self.nonzero_cpu[u] = 0;
                self.nonzero_mem[u] = 0;
                self.req_scalars[u].clear();
                i
            }
            None => {
                self.live.push(true);
                self.name.push(name);
                self.name_str.push(name.as_str());
                self.name_rank.push(0);
                self.node.push(node);
                self.capacity_type.push(capacity_type);
                self.zone.push(zone);
                self.hard_taints.push(hard);
                self.soft_taints.push(soft);
                self.unschedulable.push(unschedulable);
                self.alloc_cpu.push(cpu);
                self.alloc_mem.push(mem);
                self.alloc_eph.push(eph);
                self.alloc_pods.push(pods);
                self.inv_cpu.push(0.0);
                self.inv_mem.push(0.0);
                self.inv_eph.push(0.0);
                self.req_cpu.push(0);
                self.req_mem.push(0);
                self.req_eph.push(0);
                self.pod_count.push(0);
                self.nonzero_cpu.push(0);
                self.nonzero_mem.push(0);
                self.req_scalars.push(SmallVec::new());
                (self.live.len() - 1) as NodeIdx
            }
        };
        self.set_reciprocals(idx as usize);
        self.index.insert(name, idx);
        let at = self.live_list.partition_point(|&n| n < idx);
        self.live_list.insert(at, idx);
        let name_str = &self.name_str;
        let at = self
            .by_name
            .partition_point(|&n| name_str[n as usize] < name_str[idx as usize]);
        self.by_name.insert(at, idx);
        self.renumber_names(at);
        self.count_flags(idx as usize, 1);
        idx
    }

    /// Replaces the node object in place, keeping its usage.
    pub(super) fn update(&mut self, idx: NodeIdx, node: Node, capacity_type: Sym) {
        let u = idx as usize;
        self.count_flags(u, -1);
        self.zone[u] = node.labels.get(Sym::new(crate::model::LABEL_ZONE));
        (self.hard_taints[u], self.soft_taints[u]) = count_taints(&node);
        self.unschedulable[u] = node.unschedulable;
        self.count_flags(u, 1);
        self.alloc_cpu[u] = node.allocatable.milli_cpu;
        self.alloc_mem[u] = node.allocatable.memory;
        self.alloc_eph[u] = node.allocatable.ephemeral_storage;
        self.alloc_pods[u] = node.allocatable.pods;
        self.set_reciprocals(u);
        self.capacity_type[u] = capacity_type;
        self.node[u] = node;
    }

    pub(super) fn remove(&mut self, idx: NodeIdx) {
        let u = idx as usize;
        self.count_flags(u, -1);
        self.index.remove(&self.name[u]);
        self.live[u] = false;
        self.free.push(idx);
        if let Ok(at) = self.live_list.binary_search(&idx) {
            self.live_list.remove(at);
        }
        let name_str = &self.name_str;
        let at = self
            .by_name
            .partition_point(|&n| name_str[n as usize] < name_str[u]);
        if self.by_name.get(at) == Some(&idx) {
            self.by_name.remove(at);
            self.renumber_names(at);
        }
    }

    /// Adds (sign 1) or removes (sign -1) a pod's requests from a node's usage.
    pub(super) fn account(&mut self, idx: NodeIdx, r: &Resources, sign: i64) {
        let u = idx as usize;
        let (nz_cpu, nz_mem) = r.non_zero_cpu_mem();
        self.req_cpu[u] += sign * r.milli_cpu;
        self.req_mem[u] += sign * r.memory;
        self.req_eph[u] += sign * r.ephemeral_storage;
        self.pod_count[u] += sign;
        self.nonzero_cpu[u] += sign * nz_cpu;
        self.nonzero_mem[u] += sign * nz_mem;
        for &(n, v) in &r.scalars {
            let slot = &mut self.req_scalars[u];
            match slot.iter_mut().find(|(k, _)| *k == n) {
                Some(e) => e.1 += sign * v,
                None => slot.push((n, sign * v)),
            }
        }
    }
}

/// (hard, soft): taints with effect NoSchedule or NoExecute, and PreferNoSchedule ones.
fn count_taints(node: &Node) -> (u8, u8) {
    use crate::model::TaintEffect;
    let (mut hard, mut soft) = (0u8, 0u8);
    for t in &node.taints {
        match t.effect {
            TaintEffect::NoSchedule | TaintEffect::NoExecute => hard = hard.saturating_add(1),
            TaintEffect::PreferNoSchedule => soft = soft.saturating_add(1),
        }
    }
    (hard, soft)
}
