//! Nodes in flat arrays (one column per field) so the filter and score loops
//! scan contiguous integers without chasing pointers or allocating.

use super::label_columns::LabelColumns;
use crate::model::{Node, Pod, Resources, Sym};
use foldhash::HashMap;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU64, Ordering};

/// Source of `NodeTable::stamp` values, shared by every table in the process so
/// a stamp names one node state even across snapshots and their clones.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

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
    /// How many live nodes have a cpu, memory or ephemeral-storage allocatable
    /// of `SMALL_QUOTIENT_LIMIT` or more: at zero the resource scorers may use
    /// `resource_allocation::small_quotient`.
    pub huge_nodes: u32,

    pub live: Vec<bool>,
    pub name: Vec<Sym>,
    /// The names as strings, for ordering nodes without an interner lookup.
    pub name_str: Vec<&'static str>,
    /// Position of each live node's name in name order: the cycle's tie-break
    /// compares two integers instead of two strings. `set_tie_order` may set
    /// another order until the next node addition or removal.
    pub name_rank: Vec<u32>,
    /// `name_rank` holds an order `set_tie_order` set.
    custom_ties: bool,
    /// Live nodes in name order (what `name_rank` indexes).
    by_name: Vec<NodeIdx>,
    /// Full node objects for the colder checks (labels, taints).
    pub node: Vec<Node>,
    pub capacity_type: Vec<Sym>,
    pub zone: Vec<Option<Sym>>,
    /// `capacity_type` and `zone` as small dense ids (see `DenseIds`): per-cycle
    /// tables indexed by them replace searches in the score loops.
    pub type_id: Vec<u32>,
    pub zone_id: Vec<u32>,
    pub type_ids: DenseIds,
    /// (`type_id`, `zone_id`) as one small dense id: classes of nodes by place
    /// are one table lookup away.
    pub place_id: Vec<u32>,
    pub place_ids: PairIds,
    /// Id 0 is "no zone label"; zones start at 1.
    pub zone_ids: DenseIds,
    pub unschedulable: Vec<bool>,
    /// Number of taints with effect NoSchedule or NoExecute: lets TaintToleration skip most nodes.
    pub hard_taints: Vec<u8>,
    /// Number of PreferNoSchedule taints.
    pub soft_taints: Vec<u8>,
    /// Each node's taints as an id into `taint_sets` (0: no taints). Nodes share a
    /// few taint lists, so the taint plugins judge each list once per cycle.
    pub taint_set: Vec<u32>,
    pub taint_sets: TaintSets,

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
    /// Scalar (extended resource, hugepages) requests in `Sym` order, without
    /// zero entries: the same pods give the same list whatever the order they came in.
    pub req_scalars: Vec<SmallVec<[(Sym, i64); 2]>>,
    /// The exact sums behind the usage columns above, which read them clamped
    /// to the i64 range (see `account`).
    exact: Vec<ExactUsage>,
    /// The exact sums behind `req_scalars`, entry for entry.
    exact_scalars: Vec<SmallVec<[(Sym, i128); 2]>>,
    /// allocatable − requested (negative when over-committed, never below
    /// `FREE_FLOOR`), kept with both: the fit filter reads one column per
    /// resource instead of two.
    pub free_cpu: Vec<i64>,
    pub free_mem: Vec<i64>,
    pub free_eph: Vec<i64>,
    pub free_pods: Vec<i64>,
    /// Changes whenever the node's object or its pods' usage changes (0 on a
    /// dead slot, never on a live one):
    /// two equal stamps mean the same node state, also in another table or a
    /// clone, so a score computed from that state alone can be kept and reused
    /// (`plugins::score_memo`).
    pub stamp: Vec<u64>,
    /// GPU cards (`gpu_cards`): each node's card model, and each card's free
    /// milli (empty on nodes without cards).
    pub gpu_model: Vec<Option<Sym>>,
    pub gpu_free: Vec<SmallVec<[i32; 8]>>,
    /// Label values by slot for the keys node selectors ask about
    /// (`label_columns`); kept current by insert, update and remove.
    labels: LabelColumns,
    /// Changes with every change to the table (a fresh stamp): two tables of
    /// one version, a table and its clone say, hold the same nodes and usage,
    /// so what is computed from all of them can be kept (`plugins::pair_kernel`).
    version: u64,
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

    pub(super) fn restamp(&mut self, u: usize) {
        self.stamp[u] = NEXT_STAMP.fetch_add(1, Ordering::Relaxed);
        self.version = self.stamp[u];
    }

    /// A fresh stamp for live node `i` whose state as a plugin reads it changed
    /// outside its object and pods (the images it holds became more or less
    /// common in the cluster, `snapshot::images`).
    pub(super) fn touch(&mut self, i: NodeIdx) {
        if self.live.get(i as usize).copied().unwrap_or(false) {
            self.restamp(i as usize);
        }
    }

    /// `f` of the label column (`label_columns`) of each of `keys`, in order;
    /// `None` when the table keeps no more columns (match node by node).
    pub fn with_label_columns<R>(&self, keys: &[Sym], f: impl FnOnce(&[&[u32]]) -> R) -> Option<R> {
        self.labels.with(keys, &self.live, &self.node, f)
    }

    /// The label keys that have a column.
    pub fn label_column_keys(&self) -> Vec<Sym> {
        self.labels.keys()
    }

    /// See the field: equal versions mean equal contents.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn set_free(&mut self, u: usize) {
        let free = |alloc: i64, used: i64| alloc.saturating_sub(used).max(FREE_FLOOR);
        self.free_cpu[u] = free(self.alloc_cpu[u], self.req_cpu[u]);
        self.free_mem[u] = free(self.alloc_mem[u], self.req_mem[u]);
        self.free_eph[u] = free(self.alloc_eph[u], self.req_eph[u]);
        self.free_pods[u] = free(self.alloc_pods[u], self.pod_count[u]);
    }

    /// Ties between equally scored nodes go to the node earliest in `order`
    /// (live nodes, each once) instead of name order, until a node is added or
    /// removed. The FGD protocol breaks ties in a random order drawn once per
    /// run, as the paper's simulator does (`sim::fgd`).
    pub fn set_tie_order(&mut self, order: &[NodeIdx]) {
        for (k, &n) in order.iter().enumerate() {
            if let Some(r) = self.name_rank.get_mut(n as usize) {
                *r = k as u32;
            }
        }
        self.custom_ties = true;
    }

    /// Node additions and removals are rare next to cycles: O(nodes) here buys
    /// an integer tie-break on every cycle.
    fn renumber_names(&mut self, from: usize) {
        // An order `set_tie_order` set gives way to name order, all of it.
        let from = if std::mem::take(&mut self.custom_ties) {
            0
        } else {
            from
        };
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
        let huge = |a: i64| a >= SMALL_QUOTIENT_LIMIT;
        let any_huge =
            huge(self.alloc_cpu[u]) || huge(self.alloc_mem[u]) || huge(self.alloc_eph[u]);
        bump(&mut self.huge_nodes, any_huge);
    }

    pub fn req_scalar(&self, i: NodeIdx, name: Sym) -> i64 {
        self.req_scalars[i as usize]
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// The exact sums of the requests of the pods on node `i`: what the usage
    /// columns read before clamping. For arithmetic that takes pods away (a
    /// clamped column minus a pod's request would understate what is left).
    /// A column short of the clamp is its exact sum, so the cold sums are read
    /// only when one is clamped: preemption asks this of every node.
    pub fn exact_usage(&self, i: NodeIdx) -> ExactUsage {
        let u = i as usize;
        let cols = [
            self.req_cpu[u],
            self.req_mem[u],
            self.req_eph[u],
            self.nonzero_cpu[u],
            self.nonzero_mem[u],
        ];
        if cols.iter().any(|&c| is_clamped(c)) {
            return self.exact[u];
        }
        let [cpu, mem, eph, nonzero_cpu, nonzero_mem] = cols.map(i128::from);
        ExactUsage {
            cpu,
            mem,
            eph,
            nonzero_cpu,
            nonzero_mem,
        }
    }

    /// The exact sum of the `name` requests of the pods on node `i`.
    pub fn exact_req_scalar(&self, i: NodeIdx, name: Sym) -> i128 {
        let shown = self.req_scalar(i, name);
        if !is_clamped(shown) {
            return i128::from(shown);
        }
        self.exact_scalars[i as usize]
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
        let taint_set = self.taint_sets.acquire(&node.taints);
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
                self.type_id[u] = self.type_ids.id(Some(capacity_type));
                self.zone_id[u] = self.zone_ids.id(zone);
                self.place_id[u] = self.place_ids.id(self.type_id[u], self.zone_id[u]);
                self.hard_taints[u] = hard;
                self.soft_taints[u] = soft;
                self.taint_set[u] = taint_set;
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
                self.exact[u] = ExactUsage::default();
                self.exact_scalars[u].clear();
                self.gpu_model[u] = None;
                self.gpu_free[u].clear();
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
                let (type_id, zone_id) = (
                    self.type_ids.id(Some(capacity_type)),
                    self.zone_ids.id(zone),
                );
                self.type_id.push(type_id);
                self.zone_id.push(zone_id);
                self.place_id.push(self.place_ids.id(type_id, zone_id));
                self.hard_taints.push(hard);
                self.soft_taints.push(soft);
                self.taint_set.push(taint_set);
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
                self.exact.push(ExactUsage::default());
                self.exact_scalars.push(SmallVec::new());
                self.free_cpu.push(0);
                self.free_mem.push(0);
                self.free_eph.push(0);
                self.free_pods.push(0);
                self.gpu_model.push(None);
                self.gpu_free.push(SmallVec::new());
                self.stamp.push(0);
                (self.live.len() - 1) as NodeIdx
            }
        };
        self.set_reciprocals(idx as usize);
        self.set_free(idx as usize);
        self.set_gpu_cards(idx as usize);
        self.restamp(idx as usize);
        self.labels.set(idx as usize, self.node.get(idx as usize));
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
        self.zone_id[u] = self.zone_ids.id(self.zone[u]);
        (self.hard_taints[u], self.soft_taints[u]) = count_taints(&node);
        self.taint_sets.release(self.taint_set[u]);
        self.taint_set[u] = self.taint_sets.acquire(&node.taints);
        self.unschedulable[u] = node.unschedulable;
        self.alloc_cpu[u] = node.allocatable.milli_cpu;
        self.alloc_mem[u] = node.allocatable.memory;
        self.alloc_eph[u] = node.allocatable.ephemeral_storage;
        self.alloc_pods[u] = node.allocatable.pods;
        self.set_reciprocals(u);
        self.set_free(u);
        self.restamp(u);
        self.capacity_type[u] = capacity_type;
        self.type_id[u] = self.type_ids.id(Some(capacity_type));
        self.place_id[u] = self.place_ids.id(self.type_id[u], self.zone_id[u]);
        self.node[u] = node;
        self.set_gpu_cards(u);
        self.labels.set(u, Some(&self.node[u]));
        self.count_flags(u, 1);
    }

    pub(super) fn remove(&mut self, idx: NodeIdx) {
        let u = idx as usize;
        self.count_flags(u, -1);
        self.stamp[u] = 0;
        self.version = NEXT_STAMP.fetch_add(1, Ordering::Relaxed);
        self.index.remove(&self.name[u]);
        self.live[u] = false;
        self.labels.set(u, None);
        self.taint_sets.release(self.taint_set[u]);
        self.taint_set[u] = 0;
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
    ///
    /// The API server accepts requests up to about i64::MAX each, and bound pods
    /// are accounted whatever they ask: sums are kept exact in i128 (which
    /// overflows only past 2^64 pods) and the i64 columns read them clamped, so a
    /// node holding more than i64::MAX reads as full, never as wrapped or
    /// emptied, and removing a pod restores exactly the figures before it came.
    pub(super) fn account(&mut self, idx: NodeIdx, pod: &Pod, sign: i64) {
        let u = idx as usize;
        let r = &pod.requests;
        let (nz_cpu, nz_mem) = pod.non_zero_cpu_mem();
        let s = i128::from(sign);
        let e = &mut self.exact[u];
        e.cpu += s * i128::from(r.milli_cpu);
        e.mem += s * i128::from(r.memory);
        e.eph += s * i128::from(r.ephemeral_storage);
        e.nonzero_cpu += s * i128::from(nz_cpu);
        e.nonzero_mem += s * i128::from(nz_mem);
        self.req_cpu[u] = clamp_i64(e.cpu);
        self.req_mem[u] = clamp_i64(e.mem);
        self.req_eph[u] = clamp_i64(e.eph);
        self.nonzero_cpu[u] = clamp_i64(e.nonzero_cpu);
        self.nonzero_mem[u] = clamp_i64(e.nonzero_mem);
        // One per pod: bounded by the pods in memory, far from overflow.
        self.pod_count[u] += sign;
        self.set_free(u);
        self.restamp(u);
        let exact = &mut self.exact_scalars[u];
        let shown = &mut self.req_scalars[u];
        for &(n, v) in &r.scalars {
            let delta = s * i128::from(v);
            match exact.binary_search_by_key(&n, |&(k, _)| k) {
                Ok(k) => {
                    exact[k].1 += delta;
                    // A sum back at zero goes, so the list is the same as
                    // before the pods that made it came.
                    if exact[k].1 == 0 {
                        exact.remove(k);
                        shown.remove(k);
                    } else {
                        shown[k].1 = clamp_i64(exact[k].1);
                    }
                }
                Err(k) if delta != 0 => {
                    exact.insert(k, (n, delta));
                    shown.insert(k, (n, clamp_i64(delta)));
                }
                Err(_) => {}
            }
        }
    }
}

/// Exact sums of a node's pods' requests (see `NodeTable::account`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExactUsage {
    pub cpu: i128,
    pub mem: i128,
    pub eph: i128,
    pub nonzero_cpu: i128,
    pub nonzero_mem: i128,
}

/// `x` cut to the i64 range: a sum past i64::MAX reads as i64::MAX (full).
#[inline]
pub fn clamp_i64(x: i128) -> i64 {
    x.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Whether a usage column may have been cut by `clamp_i64` (its exact sum may lie beyond).
#[inline]
fn is_clamped(column: i64) -> bool {
    column == i64::MAX || column == i64::MIN
}

/// The distinct taint lists of live nodes, each with an id (0: the empty list).
/// Ids are counted by the nodes using them and reused once none does.
#[derive(Debug, Clone)]
pub struct TaintSets {
    lists: Vec<Vec<crate::model::Taint>>,
    users: Vec<u32>,
    ids: HashMap<Vec<crate::model::Taint>, u32>,
    free: Vec<u32>,
}

impl Default for TaintSets {
    fn default() -> Self {
        TaintSets {
            lists: vec![Vec::new()],
            users: vec![0],
            ids: HashMap::default(),
            free: Vec::new(),
        }
    }
}

impl TaintSets {
    fn acquire(&mut self, taints: &[crate::model::Taint]) -> u32 {
        if taints.is_empty() {
            return 0;
        }
        let id = match self.ids.get(taints) {
            Some(&id) => id,
            None => {
                let id = match self.free.pop() {
                    Some(id) => {
                        self.lists[id as usize] = taints.to_vec();
                        id
                    }
                    None => {
                        self.lists.push(taints.to_vec());
                        self.users.push(0);
                        (self.lists.len() - 1) as u32
                    }
                };
                self.ids.insert(taints.to_vec(), id);
                id
            }
        };
        self.users[id as usize] += 1;
        id
    }

    fn release(&mut self, id: u32) {
        let u = id as usize;
        if id == 0 || u >= self.users.len() || self.users[u] == 0 {
            return;
        }
        self.users[u] -= 1;
        if self.users[u] == 0 {
            let list = std::mem::take(&mut self.lists[u]);
            self.ids.remove(&list);
            self.free.push(id);
        }
    }

    /// How many ids there are (in use or free): the length of a table by id.
    pub fn table_len(&self) -> usize {
        self.lists.len()
    }

    /// The ids in use with their taint lists (the empty list, id 0, included).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[crate::model::Taint])> + '_ {
        self.lists
            .iter()
            .zip(&self.users)
            .enumerate()
            .filter(|(id, (_, &users))| *id == 0 || users > 0)
            .map(|(id, (list, _))| (id as u32, list.as_slice()))
    }
}

/// The least free room the node table keeps (`NodeTable::free_cpu` ...): a
/// node that far over-committed fits no positive request either way, and
/// `free - request` cannot overflow for any request up to `-FREE_FLOOR`.
pub const FREE_FLOOR: i64 = -(1 << 62);

/// Allocatable below 2^43 (8 TiB of memory) lets the resource scorers divide by
/// a multiplication alone; see `resource_allocation::small_quotient`.
pub const SMALL_QUOTIENT_LIMIT: i64 = 1 << 43;

/// Small dense ids for the few distinct values of a node field (capacity types,
/// zones). Id 0 stands for "none"; values get ids 1.. in order of first sight and
/// keep them (a handful per cluster, so nothing is reclaimed).
#[derive(Debug, Default, Clone)]
pub struct DenseIds {
    values: Vec<Sym>,
    ids: HashMap<Sym, u32>,
}

impl DenseIds {
    /// The id of `value`, assigning the next one on first sight.
    fn id(&mut self, value: Option<Sym>) -> u32 {
        let Some(v) = value else { return 0 };
        // Kept for good here, so the string must be too (a zone is a node's
        // label value, interned only while a node carries it).
        v.as_str();
        let next = self.values.len() as u32 + 1;
        let id = *self.ids.entry(v).or_insert(next);
        if id == next {
            self.values.push(v);
        }
        id
    }

    /// The id of `value` if any node ever had it.
    pub fn get(&self, value: Sym) -> Option<u32> {
        self.ids.get(&value).copied()
    }

    /// How many ids there are, counting 0: the length of a table indexed by id.
    pub fn table_len(&self) -> usize {
        self.values.len() + 1
    }

    /// Ids and values, from 1.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Sym)> + '_ {
        self.values
            .iter()
            .enumerate()
            .map(|(k, &v)| (k as u32 + 1, v))
    }
}

/// Small dense ids for pairs of dense ids, from 0 in order of first sight, kept
/// for good (a cluster has a few capacity types times a few zones).
#[derive(Debug, Default, Clone)]
pub struct PairIds {
    ids: HashMap<(u32, u32), u32>,
}

impl PairIds {
    fn id(&mut self, a: u32, b: u32) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry((a, b)).or_insert(next)
    }

    /// How many ids there are: the length of a table indexed by id.
    pub fn table_len(&self) -> usize {
        self.ids.len()
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
