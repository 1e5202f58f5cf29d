//! The cluster snapshot: nodes, bound and assumed pods, and the indices the
//! plugins query. Every update is incremental and independent of cluster size.

mod gpu_cards;
mod images;
pub mod label_columns;
mod node_table;
mod storage;

pub use images::{ImageIndex, ImageState};
pub use storage::{Change, ClaimKey, PodVolumes, Reservation, Storage};

pub use gpu_cards::{best_fit as best_fit_cards, fits as cards_fit};
pub use node_table::{
    clamp_i64, DenseIds, ExactUsage, NodeIdx, NodeTable, FREE_FLOOR, SMALL_QUOTIENT_LIMIT,
};

use crate::model::capacity::CapacityRules;
use crate::model::{Node, Pod, PodKey, Sym};
use crate::preemption::Pdb;
use crate::spark::annotations::{parse_count, MIN_EXECUTORS};
// foldhash: these maps sit on the pod add/remove path; SipHash showed in its profile.
use foldhash::{HashMap, HashSet};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("pod {0} has no node name")]
    NotBound(PodKey),
    #[error("node {0} not found")]
    NodeNotFound(String),
}

/// Slot of a pod in the snapshot's pod store.
pub type PodId = u32;

#[derive(Debug, Clone)]
pub struct PodEntry {
    pub pod: Arc<Pod>,
    pub node: NodeIdx,
    /// Placed by us, binding still in flight.
    pub assumed: bool,
    /// The GPU cards it holds on its node (`gpu_cards`); empty for a pod without GPUs.
    pub cards: crate::model::Cards,
    /// Position in `node_pods[node]`, for O(1) removal.
    pos_in_node: u32,
}

/// Per-application view of the executors and driver currently placed.
#[derive(Debug, Clone, Default)]
pub struct AppPods {
    pub driver: Option<PodId>,
    pub executors: HashSet<PodId>,
    /// Placed, non-terminating executors by capacity type.
    pub executors_by_type: Vec<(Sym, u32)>,
    /// Placed, non-terminating executors by node: spread scoring reads them every
    /// cycle, and an application can have thousands of executors.
    pub executors_by_node: NodeCounts,
}

/// What preemption's reprieve order reads of an application, for every
/// potential victim: kept apart from `AppPods` in a map of small entries, so
/// that thousands of lookups per search stay in cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppTally {
    /// Placed, non-terminating executors (all of `AppPods::executors_by_type`).
    pub executors: u32,
    /// The placed driver's `spark-fleet.io/min-executors`, read once. A bad
    /// value counts as none here; driver admission reports it.
    pub driver_min_executors: Option<u32>,
}

/// Counts per node slot: a map while few nodes have one, an array over the slots
/// once many do. The array is then no bigger than the map (4 bytes a slot against
/// ~16 an entry at one slot in eight), and the spread scorer reads it without hashing.
#[derive(Debug, Clone)]
pub enum NodeCounts {
    Sparse(HashMap<NodeIdx, u32>),
    /// `nodes`: how many slots hold a non-zero count.
    Dense {
        counts: Vec<u32>,
        nodes: usize,
    },
}

impl Default for NodeCounts {
    fn default() -> Self {
        NodeCounts::Sparse(HashMap::default())
    }
}

impl NodeCounts {
    pub fn get(&self, node: NodeIdx) -> u32 {
        match self {
            NodeCounts::Sparse(m) => m.get(&node).copied().unwrap_or(0),
            NodeCounts::Dense { counts, .. } => counts.get(node as usize).copied().unwrap_or(0),
        }
    }

    /// How many nodes have a non-zero count.
    pub fn len(&self) -> usize {
        match self {
            NodeCounts::Sparse(m) => m.len(),
            NodeCounts::Dense { nodes, .. } => *nodes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The non-zero counts, in no particular order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (NodeIdx, u32)> + '_> {
        match self {
            NodeCounts::Sparse(m) => Box::new(m.iter().map(|(&n, &c)| (n, c))),
            NodeCounts::Dense { counts, .. } => Box::new(
                counts
                    .iter()
                    .enumerate()
                    .filter(|e| *e.1 > 0)
                    .map(|(n, &c)| (n as NodeIdx, c)),
            ),
        }
    }

    /// The array form (indexed by node slot; slots past its end count 0).
    pub fn as_dense(&self) -> Option<&[u32]> {
        match self {
            NodeCounts::Dense { counts, .. } => Some(counts),
            NodeCounts::Sparse(_) => None,
        }
    }

    /// Adds `delta` to `node`'s count (never below 0). `slots` is the node table's
    /// size, which decides the form.
    fn bump(&mut self, node: NodeIdx, delta: i32, slots: usize) {
        let apply = |c: u32| (c as i64 + delta as i64).clamp(0, u32::MAX as i64) as u32;
        match self {
            NodeCounts::Sparse(m) => {
                let count = m.entry(node).or_insert(0);
                *count = apply(*count);
                if *count == 0 {
                    m.remove(&node);
                }
                if m.len() * 8 > slots {
                    let mut counts = vec![0; slots.max(node as usize + 1)];
                    for (&n, &c) in m.iter() {
                        if let Some(slot) = counts.get_mut(n as usize) {
                            *slot = c;
                        } else {
                            counts.resize(n as usize + 1, 0);
                            counts[n as usize] = c;
                        }
                    }
                    *self = NodeCounts::Dense {
                        nodes: m.len(),
                        counts,
                    };
                }
            }
            NodeCounts::Dense { counts, nodes } => {
                let u = node as usize;
                if counts.len() <= u {
                    counts.resize(u + 1, 0);
                }
                let before = counts[u];
                counts[u] = apply(before);
                *nodes = *nodes + usize::from(before == 0 && counts[u] > 0)
                    - usize::from(before > 0 && counts[u] == 0);
                // Back to a map well below the switch point, so it does not flap.
                if *nodes * 32 < counts.len() {
                    let m = counts
                        .iter()
                        .enumerate()
                        .filter(|e| *e.1 > 0)
                        .map(|(n, &c)| (n as NodeIdx, c))
                        .collect();
                    *self = NodeCounts::Sparse(m);
                }
            }
        }
    }
}

impl AppPods {
    pub fn executors_of_type(&self, ty: Sym) -> u32 {
        self.executors_by_type
            .iter()
            .find(|(t, _)| *t == ty)
            .map_or(0, |(_, n)| *n)
    }

    fn bump(&mut self, ty: Sym, delta: i32) {
        match self.executors_by_type.iter_mut().find(|(t, _)| *t == ty) {
            Some(e) => e.1 = (e.1 as i32 + delta).max(0) as u32,
            None if delta > 0 => self.executors_by_type.push((ty, delta as u32)),
            None => {}
        }
    }

    fn bump_node(&mut self, node: NodeIdx, delta: i32, slots: usize) {
        self.executors_by_node.bump(node, delta, slots);
    }
}

/// A pod nominated to a node by preemption, waiting for its victims to leave.
#[derive(Debug, Clone)]
pub struct Nominated {
    pub pod: Arc<Pod>,
    pub node: NodeIdx,
}

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    nodes: NodeTable,
    capacity_rules: CapacityRules,

    pods: Vec<Option<PodEntry>>,
    free_pods: Vec<PodId>,
    by_key: HashMap<PodKey, PodId>,
    node_pods: Vec<Vec<PodId>>,
    /// (namespace, label key, label value) → pods carrying it: topology spread counts
    /// start from the pods a selector can match instead of scanning the cluster.
    label_index: HashMap<(Sym, Sym, Sym), HashSet<PodId>>,
    namespace_index: HashMap<Sym, HashSet<PodId>>,
    /// Placed pods with any inter-pod affinity or anti-affinity term, and those
    /// with a required anti-affinity term: InterPodAffinity skips a pod without
    /// terms of its own when these are empty, and otherwise reads only them.
    with_pod_affinity: HashSet<PodId>,
    with_required_anti_affinity: HashSet<PodId>,
    apps: HashMap<Sym, AppPods>,
    /// One per entry of `apps`.
    app_tallies: HashMap<Sym, AppTally>,
    /// Bound pods whose node we have not seen (yet, or any more), by node name.
    orphans: HashMap<Sym, Vec<Arc<Pod>>>,
    nominated: HashMap<PodKey, Nominated>,
    nominated_on: Vec<Vec<PodKey>>,
    /// PodDisruptionBudgets, for preemption.
    pdbs: Vec<Pdb>,
    /// Claims, volumes and the other storage objects, with VolumeBinding's assumptions.
    storage: Storage,
    /// Which nodes hold which images.
    images: ImageIndex,
    generation: u64,
    /// The time the snapshot stands for (ms since the epoch; virtual in the
    /// simulator), for the few rules that wait: None when unknown.
    now_ms: Option<i64>,
}

impl Snapshot {
    pub fn new(capacity_rules: CapacityRules) -> Snapshot {
        Snapshot {
            capacity_rules,
            ..Default::default()
        }
    }

    pub fn nodes(&self) -> &NodeTable {
        &self.nodes
    }

    pub fn capacity_rules(&self) -> &CapacityRules {
        &self.capacity_rules
    }

    /// The time the snapshot stands for, if the caller keeps one (see `set_now_ms`).
    pub fn now_ms(&self) -> Option<i64> {
        self.now_ms
    }

    /// Sets the time the snapshot stands for: the live scheduler sets it before
    /// each cycle, the simulator to its virtual clock. Rules that wait (an
    /// admitted soft-mix executor waiting for its capacity type) stop waiting
    /// while it is unknown.
    pub fn set_now_ms(&mut self, now_ms: Option<i64>) {
        self.now_ms = now_ms;
    }

    /// Bumped on every change, so callers can tell whether anything moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    // ---- nodes -------------------------------------------------------------

    /// Adds or updates a node (by name).
    pub fn upsert_node(&mut self, node: Node) -> NodeIdx {
        self.generation += 1;
        let ty = self.capacity_rules.classify(&node.labels);
        if let Some(idx) = self.nodes.get(node.name) {
            let old_ty = self.nodes.capacity_type[idx as usize];
            let old_images = std::mem::take(&mut self.nodes.node[idx as usize].images);
            let images_changed = old_images != node.images;
            if images_changed {
                self.images.replace(idx, &old_images, &node.images);
            }
            self.nodes.update(idx, node, ty);
            if old_ty != ty {
                self.retype_node_executors(idx, old_ty, ty);
            }
            if images_changed {
                self.touch_nodes_with_images();
            }
            return idx;
        }
        let name = node.name;
        let has_images = !node.images.is_empty();
        let idx = self.nodes.insert(node, ty);
        if has_images {
            let images = self.nodes.node[idx as usize].images.clone();
            self.images.replace(idx, &Default::default(), &images);
        }
        // One more node: every image is held by a smaller share of them.
        self.touch_nodes_with_images();
        let u = idx as usize;
        if self.node_pods.len() <= u {
            self.node_pods.resize_with(u + 1, Vec::new);
            self.nominated_on.resize_with(u + 1, Vec::new);
        }
        self.node_pods[u].clear();
        self.nominated_on[u].clear();
        for pod in self.orphans.remove(&name).unwrap_or_default() {
            self.insert_pod(pod, idx, false);
        }
        idx
    }

    /// See `NodeTable::set_tie_order`.
    pub fn set_tie_order(&mut self, order: &[NodeIdx]) {
        self.nodes.set_tie_order(order);
    }

    /// Removes a node; its pods wait as orphans in case the node comes back.
    pub fn remove_node(&mut self, name: Sym) -> bool {
        let Some(idx) = self.nodes.get(name) else {
            return false;
        };
        self.generation += 1;
        let ids = std::mem::take(&mut self.node_pods[idx as usize]);
        for id in ids {
            if let Some(entry) = self.take_pod(id) {
                if !entry.assumed {
                    self.orphans.entry(name).or_default().push(entry.pod);
                }
            }
        }
        for key in std::mem::take(&mut self.nominated_on[idx as usize]) {
            self.nominated.remove(&key);
        }
        let images = std::mem::take(&mut self.nodes.node[idx as usize].images);
        self.images.replace(idx, &images, &Default::default());
        self.nodes.remove(idx);
        self.touch_nodes_with_images();
        true
    }

    /// ImageLocality scores a node by its images' sizes scaled by the share of
    /// nodes holding them: when shares move (a node comes, goes or changes its
    /// images), every node holding an image gets a fresh stamp, so scores kept
    /// per stamp are worked out again. Nothing to do in clusters whose nodes
    /// report no images.
    fn touch_nodes_with_images(&mut self) {
        if self.images.nodes_with_images() == 0 {
            return;
        }
        for i in 0..self.nodes.slots() {
            if self.nodes.live[i] && !self.nodes.node[i].images.is_empty() {
                self.nodes.touch(i as NodeIdx);
            }
        }
    }

    fn retype_node_executors(&mut self, idx: NodeIdx, old: Sym, new: Sym) {
        for &id in &self.node_pods[idx as usize] {
            let Some(entry) = &self.pods[id as usize] else {
                continue;
            };
            if let Some(sp) = entry.pod.spark.as_ref() {
                if entry.pod.is_executor() && !entry.pod.terminating {
                    if let Some(app) = self.apps.get_mut(&sp.app) {
                        app.bump(old, -1);
                        app.bump(new, 1);
                    }
                }
            }
        }
    }

    // ---- pods --------------------------------------------------------------

    /// Adds or updates a bound pod (`node_name` set). Finished pods are removed instead.
    /// An update of an assumed pod confirms it.
    pub fn upsert_pod(&mut self, pod: Arc<Pod>) -> Result<(), SnapshotError> {
        if pod.finished {
            self.remove_pod(&pod.key);
            return Ok(());
        }
        let node_name = pod
            .node_name
            .ok_or_else(|| SnapshotError::NotBound(pod.key.clone()))?;
        self.generation += 1;
        self.remove_pod(&pod.key);
        match self.nodes.get(node_name) {
            Some(idx) => self.insert_pod(pod, idx, false),
            None => self.orphans.entry(node_name).or_default().push(pod),
        }
        Ok(())
    }

    /// Places a pod whose binding is in flight, so the next decisions see it.
    pub fn assume(&mut self, pod: Arc<Pod>, node: NodeIdx) -> Result<(), SnapshotError> {
        if !self.nodes.live.get(node as usize).copied().unwrap_or(false) {
            return Err(SnapshotError::NodeNotFound(node.to_string()));
        }
        self.generation += 1;
        self.remove_pod(&pod.key);
        self.insert_pod(pod, node, true);
        Ok(())
    }

    /// Undoes `assume` (binding failed), and releases what VolumeBinding's
    /// Reserve assumed for the pod. A pod confirmed by the API meanwhile stays.
    pub fn forget(&mut self, key: &PodKey) -> bool {
        if self.storage.release(key) {
            self.generation += 1;
        }
        match self
            .by_key
            .get(key)
            .and_then(|id| self.pods[*id as usize].as_ref())
        {
            Some(e) if e.assumed => self.remove_pod(key),
            _ => false,
        }
    }

    pub fn remove_pod(&mut self, key: &PodKey) -> bool {
        self.clear_nomination(key);
        let Some(id) = self.by_key.get(key).copied() else {
            // It may be waiting for its node.
            let mut found = false;
            self.orphans.retain(|_, pods| {
                let before = pods.len();
                pods.retain(|p| &p.key != key);
                found |= pods.len() != before;
                !pods.is_empty()
            });
            return found;
        };
        self.generation += 1;
        let Some(entry) = self.take_pod(id) else {
            return false;
        };
        let list = &mut self.node_pods[entry.node as usize];
        let pos = entry.pos_in_node as usize;
        list.swap_remove(pos);
        if let Some(&moved) = list.get(pos) {
            if let Some(e) = self.pods[moved as usize].as_mut() {
                e.pos_in_node = pos as u32;
            }
        }
        true
    }

    fn insert_pod(&mut self, pod: Arc<Pod>, node: NodeIdx, assumed: bool) {
        let pos_in_node = self.node_pods[node as usize].len() as u32;
        let cards = match pod.gpu.as_deref() {
            Some(g) => self.nodes.take_cards(node, g),
            None => crate::model::Cards::default(),
        };
        let entry = PodEntry {
            pod,
            node,
            assumed,
            cards,
            pos_in_node,
        };
        let list = &mut self.node_pods[node as usize];
        let id = match self.free_pods.pop() {
            Some(id) => id,
            None => {
                self.pods.push(None);
                (self.pods.len() - 1) as PodId
            }
        };
        list.push(id);
        self.nodes.account(node, &entry.pod, 1);
        let ns = entry.pod.key.namespace;
        for (k, v) in entry.pod.labels.iter() {
            self.label_index.entry((ns, k, v)).or_default().insert(id);
        }
        self.namespace_index.entry(ns).or_default().insert(id);
        if !entry.pod.volumes.is_empty() {
            self.storage.count_users(ns, &entry.pod.volumes, 1);
        }
        if let Some(a) = entry.pod.pod_affinity.as_deref() {
            self.with_pod_affinity.insert(id);
            if !a.required_anti_affinity.is_empty() {
                self.with_required_anti_affinity.insert(id);
            }
        }
        if let Some(sp) = entry.pod.spark.as_ref() {
            let app = self.apps.entry(sp.app).or_default();
            let tally = self.app_tallies.entry(sp.app).or_default();
            if entry.pod.is_driver() {
                app.driver = Some(id);
                tally.driver_min_executors = entry
                    .pod
                    .annotation(MIN_EXECUTORS)
                    .and_then(|v| parse_count(v).ok());
            } else {
                app.executors.insert(id);
                if !entry.pod.terminating {
                    app.bump(self.nodes.capacity_type[node as usize], 1);
                    app.bump_node(node, 1, self.nodes.slots());
                    tally.executors = tally.executors.saturating_add(1);
                }
            }
        }
        self.by_key.insert(entry.pod.key.clone(), id);
        self.pods[id as usize] = Some(entry);
    }

    /// Removes a pod from every index except `node_pods` (callers fix that list).
    fn take_pod(&mut self, id: PodId) -> Option<PodEntry> {
        let entry = self.pods[id as usize].take()?;
        self.free_pods.push(id);
        self.by_key.remove(&entry.pod.key);
        self.nodes.account(entry.node, &entry.pod, -1);
        if let Some(g) = entry.pod.gpu.as_deref() {
            self.nodes.give_back_cards(entry.node, entry.cards, g.milli);
        }
        let ns = entry.pod.key.namespace;
        for (k, v) in entry.pod.labels.iter() {
            if let Some(set) = self.label_index.get_mut(&(ns, k, v)) {
                set.remove(&id);
                if set.is_empty() {
                    self.label_index.remove(&(ns, k, v));
                }
            }
        }
        if let Some(set) = self.namespace_index.get_mut(&ns) {
            set.remove(&id);
            if set.is_empty() {
                self.namespace_index.remove(&ns);
            }
        }
        if !entry.pod.volumes.is_empty() {
            self.storage.count_users(ns, &entry.pod.volumes, -1);
        }
        if entry.pod.pod_affinity.is_some() {
            self.with_pod_affinity.remove(&id);
            self.with_required_anti_affinity.remove(&id);
        }
        if let Some(sp) = entry.pod.spark.as_ref() {
            if let Some(app) = self.apps.get_mut(&sp.app) {
                let tally = self.app_tallies.entry(sp.app).or_default();
                if app.driver == Some(id) {
                    app.driver = None;
                    tally.driver_min_executors = None;
                }
                if app.executors.remove(&id) && !entry.pod.terminating {
                    app.bump(self.nodes.capacity_type[entry.node as usize], -1);
                    app.bump_node(entry.node, -1, self.nodes.slots());
                    tally.executors = tally.executors.saturating_sub(1);
                }
                if app.driver.is_none() && app.executors.is_empty() {
                    self.apps.remove(&sp.app);
                    self.app_tallies.remove(&sp.app);
                }
            }
        }
        Some(entry)
    }

    // ---- queries -----------------------------------------------------------

    pub fn pod(&self, id: PodId) -> Option<&PodEntry> {
        self.pods.get(id as usize).and_then(|e| e.as_ref())
    }

    pub fn pod_by_key(&self, key: &PodKey) -> Option<&PodEntry> {
        self.by_key.get(key).and_then(|id| self.pod(*id))
    }

    pub fn pods_on(&self, node: NodeIdx) -> impl Iterator<Item = &PodEntry> + '_ {
        self.node_pods
            .get(node as usize)
            .into_iter()
            .flatten()
            .filter_map(|id| self.pod(*id))
    }

    pub fn pod_ids_on(&self, node: NodeIdx) -> &[PodId] {
        self.node_pods
            .get(node as usize)
            .map_or(&[], |v| v.as_slice())
    }

    /// Every placed pod (bound or assumed).
    pub fn all_pods(&self) -> impl Iterator<Item = (PodId, &PodEntry)> + '_ {
        self.pods
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i as PodId, e)))
    }

    pub fn pod_count(&self) -> usize {
        self.by_key.len()
    }

    /// Pods in `namespace` carrying `key=value`.
    pub fn pods_with_label(&self, namespace: Sym, key: Sym, value: Sym) -> Option<&HashSet<PodId>> {
        self.label_index.get(&(namespace, key, value))
    }

    pub fn pods_in_namespace(&self, namespace: Sym) -> Option<&HashSet<PodId>> {
        self.namespace_index.get(&namespace)
    }

    /// Every namespace a placed pod is in.
    pub fn namespaces(&self) -> impl Iterator<Item = Sym> + '_ {
        self.namespace_index.keys().copied()
    }

    /// Placed pods with any inter-pod affinity or anti-affinity term.
    pub fn pods_with_pod_affinity(&self) -> &HashSet<PodId> {
        &self.with_pod_affinity
    }

    /// Placed pods with a required inter-pod anti-affinity term.
    pub fn pods_with_required_anti_affinity(&self) -> &HashSet<PodId> {
        &self.with_required_anti_affinity
    }

    pub fn app(&self, app: Sym) -> Option<&AppPods> {
        self.apps.get(&app)
    }

    /// Executors and minimum of an application with a pod placed.
    pub fn app_tally(&self, app: Sym) -> Option<AppTally> {
        self.app_tallies.get(&app).copied()
    }

    pub fn apps(&self) -> impl Iterator<Item = (Sym, &AppPods)> + '_ {
        self.apps.iter().map(|(k, v)| (*k, v))
    }

    // ---- nominations (preemption) -------------------------------------------

    pub fn nominate(&mut self, pod: Arc<Pod>, node: NodeIdx) {
        self.clear_nomination(&pod.key);
        self.generation += 1;
        self.nominated_on[node as usize].push(pod.key.clone());
        self.nominated
            .insert(pod.key.clone(), Nominated { pod, node });
    }

    pub fn clear_nomination(&mut self, key: &PodKey) {
        if let Some(n) = self.nominated.remove(key) {
            self.generation += 1;
            if let Some(list) = self.nominated_on.get_mut(n.node as usize) {
                list.retain(|k| k != key);
            }
        }
    }

    /// Pods nominated to `node`.
    pub fn nominated_on(&self, node: NodeIdx) -> impl Iterator<Item = &Nominated> + '_ {
        self.nominated_on
            .get(node as usize)
            .into_iter()
            .flatten()
            .filter_map(|k| self.nominated.get(k))
    }

    /// The pods nominated to `node` that count for `pod` there, as upstream's
    /// addGENominatedPods picks them: priority at least the pod's, not the pod itself.
    pub fn nominated_for<'a>(
        &'a self,
        pod: &'a Pod,
        node: NodeIdx,
    ) -> impl Iterator<Item = &'a Nominated> + 'a {
        self.nominated_on(node)
            .filter(move |n| n.pod.priority >= pod.priority && n.pod.key != pod.key)
    }

    pub fn has_nominations(&self) -> bool {
        !self.nominated.is_empty()
    }

    pub fn nomination_of(&self, key: &PodKey) -> Option<&Nominated> {
        self.nominated.get(key)
    }

    // ---- disruption budgets (preemption) ------------------------------------

    /// Adds or replaces a budget (by namespace and name).
    pub fn upsert_pdb(&mut self, pdb: Pdb) {
        self.generation += 1;
        match self.pdbs.iter_mut().find(|p| p.key() == pdb.key()) {
            Some(slot) => *slot = pdb,
            None => self.pdbs.push(pdb),
        }
    }

    pub fn remove_pdb(&mut self, namespace: Sym, name: &str) -> bool {
        let before = self.pdbs.len();
        self.pdbs.retain(|p| p.key() != (namespace, name));
        let removed = self.pdbs.len() != before;
        if removed {
            self.generation += 1;
        }
        removed
    }

    pub fn pdbs(&self) -> &[Pdb] {
        &self.pdbs
    }

    // ---- storage and images ---------------------------------------------------

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The storage objects, to change (watchers, the simulator, VolumeBinding's Reserve).
    pub fn storage_mut(&mut self) -> &mut Storage {
        self.generation += 1;
        &mut self.storage
    }

    pub fn images(&self) -> &ImageIndex {
        &self.images
    }

    /// How many entries each per-pod structure holds: with no pod placed,
    /// nominated or waiting for its node, every count is 0 (memory follows the
    /// pods alive, not the pods ever seen).
    pub fn retained(&self) -> Retained {
        let (claim_users, volume_reservations) = self.storage.per_pod_entries();
        Retained {
            pods: self.by_key.len(),
            label_index: self.label_index.len(),
            namespace_index: self.namespace_index.len(),
            with_pod_affinity: self.with_pod_affinity.len(),
            apps: self.apps.len(),
            app_tallies: self.app_tallies.len(),
            orphans: self.orphans.len(),
            nominated: self.nominated.len(),
            nominated_on: self.nominated_on.iter().map(Vec::len).sum(),
            claim_users,
            volume_reservations,
        }
    }
}

/// Entry counts of the snapshot's per-pod structures ([`Snapshot::retained`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub pods: usize,
    pub label_index: usize,
    pub namespace_index: usize,
    pub with_pod_affinity: usize,
    pub apps: usize,
    pub app_tallies: usize,
    /// Node names with bound pods waiting for their node.
    pub orphans: usize,
    pub nominated: usize,
    pub nominated_on: usize,
    /// Claims mounted by placed pods (ReadWriteOncePod).
    pub claim_users: usize,
    /// Pods whose volume binding is reserved, not yet bound.
    pub volume_reservations: usize,
}

#[cfg(test)]
mod tests;
