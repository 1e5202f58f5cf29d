//! Karpenter in the simulator: it sees what Karpenter sees (pending pods the scheduler marked
//! unschedulable, their constraints, the nodes) and nothing of the scheduler's intent.
//!
//! - **Batching**: a pod newly marked unschedulable opens a batch window, or extends the open
//!   one; the window closes after `batchIdleSeconds` without a new pod, or `batchMaxSeconds`
//!   after it opened ([`Karpenter::trigger`]).
//! - **Provisioning**: at the close, one scheduling simulation ([`provision::Solver`]) over
//!   every pending unschedulable pod; each planned node launches the cheapest offering its pods
//!   allow and is Ready `provisionDelaySeconds` later. A pass over an unchanged cluster and
//!   unchanged pending pods decides nothing new and is skipped.
//! - **Consolidation** ([`Karpenter::poll`], every `disruptionPollSeconds`): one method at a
//!   time, as Karpenter's disruption controller: first every empty node whose
//!   `consolidateAfter` has passed (within the NodePool's disruption budget); else, with
//!   `WhenEmptyOrUnderutilized`, the node with the fewest pods whose pods all fit on the other
//!   nodes is deleted, or replaced by one cheaper node (never spot by spot: Karpenter's
//!   `SpotToSpotConsolidation` is off by default). Nodes holding a pod Karpenter may not evict
//!   (`karpenter.sh/do-not-disrupt`) are never candidates. Multi-node consolidation and the
//!   15 s validation wait are not modelled.
//! - **Interruptions**: each spot node gets a notice after an exponential time at its
//!   instance type's rate; Karpenter then drains and deletes it at once (its interruption
//!   handling), so its pods are lost at the notice.

pub mod demand;
pub mod instances;
pub mod pools;
pub mod provision;

use crate::config::{ConsolidationPolicy, KarpenterConfig};
use crate::model::capacity::SPOT;
use crate::model::{Node, Pod, PodKey, Resources, Sym, Taint, TaintEffect};
use crate::snapshot::Snapshot;
use demand::Demand;
use instances::InstanceType;
use pools::{Catalog, NodePool};
use provision::{choose_offering, Solver, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};

/// The taint Karpenter puts on a node it is taking away.
pub const DISRUPTED_TAINT: &str = "karpenter.sh/disrupted";

const MS_PER_MONTH: f64 = 730.0 * 3600.0 * 1000.0;

fn ms(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round() as u64
    } else {
        0
    }
}

/// A node Karpenter launched.
#[derive(Debug, Clone)]
pub struct Owned {
    pub offering: u32,
    pub ready: bool,
    /// When a pod last came or went (consolidateAfter counts from here).
    pub last_change_ms: u64,
    pub deleting: bool,
    /// Bumped whenever its interruption time is drawn again.
    pub interrupt_epoch: u64,
    /// The node this one replaces (consolidation), deleted when this one is Ready.
    pub replaces: Option<Sym>,
}

/// A node on its way.
#[derive(Debug, Clone)]
pub struct Launch {
    pub name: Sym,
    pub node: Node,
    pub price: f64,
    pub capacity: Sym,
    pub ready_at: u64,
}

/// What consolidation decided.
#[derive(Debug)]
pub enum Disruption {
    /// Delete these nodes (their pods are evicted).
    Delete(Vec<Sym>),
    /// Launch `launch`; when it is Ready, delete `old`.
    Replace { old: Sym, launch: Box<Launch> },
}

/// Counters for the report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Nodes launched by capacity type.
    pub launched: BTreeMap<String, u64>,
    pub passes: u64,
    pub empty_deleted: u64,
    pub underutilized_deleted: u64,
    pub replaced: u64,
    pub interruptions: u64,
}

pub struct Karpenter {
    cfg: KarpenterConfig,
    pub catalog: Catalog,
    rng: ChaCha8Rng,
    /// The open batch window: (opened, last pod).
    window: Option<(u64, u64)>,
    next_id: u64,
    pub nodes: BTreeMap<Sym, Owned>,
    /// Interruptions per node-month, by instance index.
    rates: Vec<f64>,
    /// Why each pending pod got no node in the last pass.
    pub reasons: HashMap<PodKey, String>,
    /// Pods the last pass expected on a node that exists or is launching.
    pub expected: HashMap<PodKey, Sym>,
    pass_signature: Option<(u64, Vec<PodKey>)>,
    poll_signature: Option<(u64, Vec<Sym>)>,
    pub stats: Stats,
}

impl Karpenter {
    pub fn new(cfg: &KarpenterConfig, pools: Vec<NodePool>, zones: &[Sym], seed: u64) -> Karpenter {
        let instances: Vec<InstanceType> = instances::resolve(&cfg.instance_types);
        let rates = instances
            .iter()
            .map(|t| t.interruptions_per_month)
            .collect();
        Karpenter {
            cfg: cfg.clone(),
            catalog: Catalog::new(pools, instances, zones),
            // A stream of its own, so the autoscaler's draws never shift the engine's.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6b61_7270_656e_7465),
            window: None,
            next_id: 0,
            nodes: BTreeMap::new(),
            rates,
            reasons: HashMap::new(),
            expected: HashMap::new(),
            pass_signature: None,
            poll_signature: None,
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &KarpenterConfig {
        &self.cfg
    }

    /// A pending pod was (newly) marked unschedulable at `now`: opens or extends the batch.
    /// Returns when the window closes if nothing else arrives.
    pub fn trigger(&mut self, now: u64) -> u64 {
        let (start, _) = self.window.unwrap_or((now, now));
        self.window = Some((start, now));
        self.closes_at().unwrap_or(now)
    }

    fn closes_at(&self) -> Option<u64> {
        let (start, last) = self.window?;
        let idle = last.saturating_add(ms(self.cfg.batch_idle_seconds));
        let max = start.saturating_add(ms(self.cfg.batch_max_seconds));
        Some(idle.min(max))
    }

    /// Whether the open batch window has closed by `now`.
    pub fn batch_due(&self, now: u64) -> bool {
        self.closes_at().is_some_and(|t| t <= now)
    }

    pub fn batch_open(&self) -> bool {
        self.window.is_some()
    }

    /// Nodes a pass may use without a launch: live nodes not being taken away, and nodes
    /// launched and not yet Ready. `except` is left out (consolidation's candidate).
    fn targets(&self, snap: &Snapshot, except: Option<Sym>) -> Vec<Target> {
        let nodes = snap.nodes();
        let mut out = Vec::new();
        for &i in nodes.live_list() {
            let node = &nodes.node[i as usize];
            if Some(node.name) == except || node.unschedulable || leaving(node) {
                continue;
            }
            if self.nodes.get(&node.name).is_some_and(|o| o.deleting) {
                continue;
            }
            let mut free = node.allocatable.clone();
            let used = nodes.requested(i);
            free.sub(&used);
            free.pods = node.allocatable.pods - used.pods;
            out.push(Target {
                name: node.name,
                labels: node.labels.clone(),
                taints: node.taints.clone(),
                free,
            });
        }
        for (name, o) in &self.nodes {
            if o.ready || o.deleting || Some(*name) == except {
                continue;
            }
            let node = self.catalog.node(o.offering, name.as_str());
            out.push(Target {
                name: *name,
                labels: node.labels,
                taints: node.taints,
                free: node.allocatable,
            });
        }
        out
    }

    /// Nodes per (pool, capacity type), for node-share pools.
    fn pool_nodes(&self) -> BTreeMap<(usize, Sym), u32> {
        let mut m = BTreeMap::new();
        for o in self.nodes.values().filter(|o| !o.deleting) {
            let off = &self.catalog.offerings[o.offering as usize];
            *m.entry((off.pool, off.capacity)).or_insert(0) += 1;
        }
        m
    }

    /// Closes the batch and runs one provisioning pass over `pending` (the pods marked
    /// unschedulable and not nominated). Returns the nodes to launch.
    pub fn provision(&mut self, now: u64, snap: &Snapshot, pending: &[&Pod]) -> Vec<Launch> {
        self.window = None;
        let mut keys: Vec<PodKey> = pending.iter().map(|p| p.key.clone()).collect();
        keys.sort();
        let signature = (snap.generation(), keys);
        if self.pass_signature.as_ref() == Some(&signature) {
            return Vec::new();
        }
        self.stats.passes += 1;
        let targets = self.targets(snap, None);
        let room = (self.cfg.max_nodes as usize).saturating_sub(self.nodes.len());
        let demands: Vec<Demand> = pending.iter().map(|p| Demand::from_pod(p)).collect();
        let plan = Solver::new(&self.catalog, snap, targets, &mut self.rng, room).solve(demands);
        self.reasons.clear();
        self.expected.clear();
        for (k, reason) in plan.failed {
            self.reasons.insert(k, reason);
        }
        for (k, node) in plan.on_existing {
            self.expected.insert(k, node);
        }
        let mut launches = Vec::new();
        for claim in &plan.claims {
            let counts = self.pool_nodes();
            let Some(o) = choose_offering(&self.catalog, claim, &counts, &mut self.rng) else {
                continue;
            };
            let launch = self.launch(o, now);
            for k in &claim.pods {
                self.expected.insert(k.clone(), launch.name);
            }
            launches.push(launch);
        }
        self.pass_signature = Some((snap.generation(), signature.1));
        launches
    }

    fn launch(&mut self, offering: u32, now: u64) -> Launch {
        self.next_id += 1;
        let off = &self.catalog.offerings[offering as usize];
        let pool = &self.catalog.pools[off.pool].name;
        let name = format!("{pool}-{}", self.next_id);
        let node = self.catalog.node(offering, &name);
        let name = node.name;
        *self
            .stats
            .launched
            .entry(off.capacity.as_str().to_owned())
            .or_insert(0) += 1;
        let launch = Launch {
            name,
            price: off.price,
            capacity: off.capacity,
            node,
            ready_at: now + ms(self.cfg.provision_delay_seconds),
        };
        self.nodes.insert(
            name,
            Owned {
                offering,
                ready: false,
                last_change_ms: now,
                deleting: false,
                interrupt_epoch: 0,
                replaces: None,
            },
        );
        launch
    }

    /// A launched node is Ready. Returns the node it replaces (to delete now) and when its
    /// spot interruption notice comes, with the epoch that notice must carry.
    pub fn ready(&mut self, name: Sym, now: u64) -> (Option<Sym>, Option<(u64, u64)>) {
        let Some(o) = self.nodes.get_mut(&name) else {
            return (None, None);
        };
        o.ready = true;
        o.last_change_ms = now;
        let replaces = o.replaces.take();
        (replaces, self.draw_interruption(name, now))
    }

    fn draw_interruption(&mut self, name: Sym, now: u64) -> Option<(u64, u64)> {
        let o = self.nodes.get(&name)?;
        let off = &self.catalog.offerings[o.offering as usize];
        if off.capacity.as_str() != SPOT || !o.ready || o.deleting {
            return None;
        }
        let per_ms = self.rates[off.instance] / MS_PER_MONTH;
        if per_ms <= 0.0 {
            return None;
        }
        let u: f64 = self.rng.random_range(f64::MIN_POSITIVE..1.0);
        let after = (-u.ln() / per_ms).min(1e15);
        let o = self.nodes.get_mut(&name)?;
        o.interrupt_epoch += 1;
        Some((now.saturating_add(after as u64), o.interrupt_epoch))
    }

    /// Interruptions per node-month for `instance_types` (all when empty) from `now` on; returns
    /// the new notice times of the spot nodes affected (the process is memoryless, so drawing
    /// afresh is exact).
    pub fn set_interruption_rate(
        &mut self,
        instance_types: &[String],
        per_month: f64,
        now: u64,
    ) -> Vec<(Sym, u64, u64)> {
        for (i, t) in self.catalog.instances.iter().enumerate() {
            if instance_types.is_empty() || instance_types.iter().any(|n| n == t.name.as_str()) {
                self.rates[i] = per_month;
            }
        }
        let names: Vec<Sym> = self.nodes.keys().copied().collect();
        let mut out = Vec::new();
        for name in names {
            let instance = {
                let o = &self.nodes[&name];
                self.catalog.instances[self.catalog.offerings[o.offering as usize].instance]
                    .name
                    .as_str()
            };
            if !instance_types.is_empty() && !instance_types.iter().any(|n| n == instance) {
                continue;
            }
            if let Some(o) = self.nodes.get_mut(&name) {
                // Whatever was drawn before no longer holds.
                o.interrupt_epoch += 1;
            }
            if let Some((at, epoch)) = self.draw_interruption(name, now) {
                out.push((name, at, epoch));
            }
        }
        out
    }

    /// Whether an interruption notice drawn with `epoch` still stands.
    pub fn interruption_current(&self, name: Sym, epoch: u64) -> bool {
        self.nodes
            .get(&name)
            .is_some_and(|o| o.interrupt_epoch == epoch && !o.deleting)
    }

    pub fn owns(&self, name: Sym) -> bool {
        self.nodes.contains_key(&name)
    }

    /// A pod came to or left `node`.
    pub fn pod_changed(&mut self, node: Sym, now: u64) {
        if let Some(o) = self.nodes.get_mut(&node) {
            o.last_change_ms = now;
        }
    }

    pub fn removed(&mut self, name: Sym) {
        self.nodes.remove(&name);
    }

    /// Marks a node as being taken away (no pass uses it any more).
    pub fn mark_deleting(&mut self, name: Sym) {
        if let Some(o) = self.nodes.get_mut(&name) {
            o.deleting = true;
        }
    }

    /// One round of the disruption controller. `movable` says whether Karpenter may evict a
    /// pod (no `karpenter.sh/do-not-disrupt`).
    pub fn poll(
        &mut self,
        now: u64,
        snap: &Snapshot,
        movable: impl Fn(&Pod) -> bool,
    ) -> Option<Disruption> {
        if self.cfg.consolidation_policy == ConsolidationPolicy::Never {
            return None;
        }
        let after = ms(self.cfg.consolidate_after_seconds);
        let nodes = snap.nodes();
        // Budgets: ceil(total × pct) − deleting − not ready, per pool.
        let mut budget: BTreeMap<usize, i64> = BTreeMap::new();
        let mut total: BTreeMap<usize, i64> = BTreeMap::new();
        for o in self.nodes.values() {
            let pool = self.catalog.offerings[o.offering as usize].pool;
            *total.entry(pool).or_default() += 1;
            if o.deleting || !o.ready {
                *budget.entry(pool).or_default() -= 1;
            }
        }
        for (pool, n) in &total {
            let allowed = (n * i64::from(self.cfg.disruption_budget_percent) + 99) / 100;
            *budget.entry(*pool).or_default() += allowed;
        }
        let mut candidates: Vec<(usize, Sym, u32)> = Vec::new();
        for (name, o) in &self.nodes {
            if !o.ready || o.deleting || now < o.last_change_ms.saturating_add(after) {
                continue;
            }
            let Some(i) = nodes.get(*name) else { continue };
            if snap.pods_on(i).any(|e| !movable(&e.pod)) {
                continue;
            }
            let pods = snap.pods_on(i).count() as u32;
            let pool = self.catalog.offerings[o.offering as usize].pool;
            candidates.push((pool, *name, pods));
        }
        // Empty nodes first, all at once within the budgets.
        let mut empty = Vec::new();
        for &(pool, name, pods) in &candidates {
            let b = budget.entry(pool).or_default();
            if pods == 0 && *b > 0 {
                *b -= 1;
                empty.push(name);
            }
        }
        if !empty.is_empty() {
            self.stats.empty_deleted += empty.len() as u64;
            for n in &empty {
                self.mark_deleting(*n);
            }
            return Some(Disruption::Delete(empty));
        }
        if self.cfg.consolidation_policy != ConsolidationPolicy::WhenEmptyOrUnderutilized {
            return None;
        }
        candidates.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.1.as_str().cmp(b.1.as_str())));
        let names: Vec<Sym> = candidates.iter().map(|c| c.1).collect();
        let signature = (snap.generation(), names);
        if self.poll_signature.as_ref() == Some(&signature) {
            return None;
        }
        for &(pool, name, _) in &candidates {
            if budget.get(&pool).copied().unwrap_or(0) <= 0 {
                continue;
            }
            if let Some(d) = self.try_consolidate(now, snap, name) {
                return Some(d);
            }
        }
        self.poll_signature = Some(signature);
        None
    }

    /// Single-node consolidation of `name`: delete it if its pods fit on the other nodes,
    /// else replace it with one cheaper node if that and the others hold them.
    fn try_consolidate(&mut self, now: u64, snap: &Snapshot, name: Sym) -> Option<Disruption> {
        let i = snap.nodes().get(name)?;
        let demands: Vec<Demand> = snap
            .pods_on(i)
            .map(|e| {
                let mut p = (*e.pod).clone();
                p.node_name = None;
                Demand::from_pod(&p)
            })
            .collect();
        let targets = self.targets(snap, Some(name));
        let mut rng = self.rng.clone();
        let plan = Solver::new(&self.catalog, snap, targets, &mut rng, 1).solve(demands);
        if !plan.failed.is_empty() {
            return None;
        }
        let old = self.nodes.get(&name)?;
        let old_off = &self.catalog.offerings[old.offering as usize];
        match plan.claims.as_slice() {
            [] => {
                self.rng = rng;
                self.stats.underutilized_deleted += 1;
                self.mark_deleting(name);
                Some(Disruption::Delete(vec![name]))
            }
            [claim] => {
                if old_off.capacity.as_str() == SPOT {
                    // SpotToSpotConsolidation is off by default: spot nodes are only deleted.
                    return None;
                }
                let old_price = old_off.price;
                let mut cheaper = claim.clone();
                cheaper
                    .options
                    .retain(|&o| self.catalog.offerings[o as usize].price < old_price);
                let counts = self.pool_nodes();
                let o = choose_offering(&self.catalog, &cheaper, &counts, &mut rng)?;
                self.rng = rng;
                self.stats.replaced += 1;
                self.mark_deleting(name);
                let mut launch = self.launch(o, now);
                if let Some(n) = self.nodes.get_mut(&launch.name) {
                    n.replaces = Some(name);
                }
                launch
                    .node
                    .taints
                    .retain(|t| t.key.as_str() != DISRUPTED_TAINT);
                Some(Disruption::Replace {
                    old: name,
                    launch: Box::new(launch),
                })
            }
            _ => None,
        }
    }

    /// Resources Karpenter could still launch, for tests.
    pub fn in_flight(&self) -> usize {
        self.nodes.values().filter(|o| !o.ready).count()
    }
}

/// A node being taken away: tainted by Karpenter's disruption or a spot interruption notice.
fn leaving(node: &Node) -> bool {
    node.taints.iter().any(|t| {
        let k = t.key.as_str();
        k == DISRUPTED_TAINT || k == crate::sim::cluster_model::SPOT_INTERRUPTION_TAINT
    })
}

/// `node` with Karpenter's disruption taint (NoSchedule) added once.
pub fn with_disrupted_taint(node: &Node) -> Node {
    let mut n = node.clone();
    let key = Sym::new(DISRUPTED_TAINT);
    if !n.taints.iter().any(|t| t.key == key) {
        n.taints.push(Taint {
            key,
            value: Sym::new(""),
            effect: TaintEffect::NoSchedule,
        });
    }
    n
}

/// The requests of `pods`, summed (for tests and reports).
pub fn total_requests<'a>(pods: impl Iterator<Item = &'a Pod>) -> Resources {
    let mut r = Resources::default();
    for p in pods {
        r.add(&p.requests);
    }
    r
}

#[cfg(test)]
mod tests;
