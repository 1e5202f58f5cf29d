//! One Karpenter scheduling simulation: pending pods onto existing nodes (ready or launching),
//! then onto nodes this pass plans, then onto new nodes from the NodePools by weight.
//!
//! Mirrors `pkg/controllers/provisioning/scheduling/scheduler.go`: pods sorted by CPU then
//! memory, largest first; for each pod, the first existing node that takes it, else the planned
//! node with the fewest pods that takes it, else a new node from the first pool (by weight) that
//! can; a pod that fits nowhere is relaxed one step (see [`Demand::relax`]) and queued again
//! behind the others, until a full round places and relaxes nothing. A planned node keeps every
//! offering that still fits all its pods; the launch takes the cheapest (`choose_offering`).
//! Topology spread follows `topologygroup.go`: the domains are those the NodePools and nodes
//! register, the minimum is over the domains the pod's strict requirements allow (0 for
//! hostname), and a new node takes the least-populated allowed domain, ties broken at random.

use super::demand::Demand;
use super::pools::{CapacityChoice, Catalog};
use crate::model::{
    LabelSelector, Labels, NodeSelectorTerm, PodKey, Resources, Sym, Taint, LABEL_HOSTNAME,
};
use crate::snapshot::Snapshot;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// A node a pod may go to without a launch: ready, or launched and on its way.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: Sym,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub free: Resources,
}

/// A node this pass plans to launch.
#[derive(Debug, Clone)]
pub struct Claim {
    pub pool: usize,
    /// Offerings that still fit every pod of the claim.
    pub options: Vec<u32>,
    pub requests: Resources,
    pub pods: Vec<PodKey>,
}

/// What one pass decided.
#[derive(Debug, Default)]
pub struct Plan {
    pub claims: Vec<Claim>,
    /// Pods Karpenter expects to schedule onto a node that exists or is launching.
    pub on_existing: Vec<(PodKey, Sym)>,
    /// Pods no node and no launch can take, with Karpenter's reason.
    pub failed: Vec<(PodKey, String)>,
}

/// Pod counts per domain for one spread constraint shape.
#[derive(Debug, Clone)]
struct Group {
    namespace: Sym,
    key: Sym,
    selector: Option<LabelSelector>,
    max_skew: i32,
    min_domains: Option<i32>,
    /// The owning pod's strict requirements: only pods on nodes they admit count.
    filter: Filter,
    counts: BTreeMap<Sym, i32>,
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    selector: Vec<(Sym, Sym)>,
    term: Option<NodeSelectorTerm>,
}

impl Filter {
    fn admits(&self, labels: &Labels) -> bool {
        self.selector
            .iter()
            .all(|(k, v)| labels.get(*k) == Some(*v))
            && self
                .term
                .as_ref()
                .is_none_or(|t| t.matches(labels, Sym::new("")))
    }
}

impl Group {
    fn selects(&self, namespace: Sym, labels: &Labels) -> bool {
        self.namespace == namespace && self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

fn fits(free: &Resources, used: &Resources, extra: &Resources) -> bool {
    let ok = |cap: i64, a: i64, b: i64| a.saturating_add(b) <= cap;
    ok(free.milli_cpu, used.milli_cpu, extra.milli_cpu)
        && ok(free.memory, used.memory, extra.memory)
        && ok(
            free.ephemeral_storage,
            used.ephemeral_storage,
            extra.ephemeral_storage,
        )
        && ok(free.pods, used.pods, 1)
        && extra
            .scalars
            .iter()
            .all(|&(n, v)| ok(free.scalar(n), used.scalar(n), v))
}

/// One scheduling simulation over a set of pending pods.
pub struct Solver<'a> {
    catalog: &'a Catalog,
    snap: &'a Snapshot,
    targets: Vec<Target>,
    /// Requests already planned onto each target this pass (starts at zero).
    planned: Vec<Resources>,
    claims: Vec<Claim>,
    groups: Vec<Group>,
    rng: &'a mut ChaCha8Rng,
    /// New nodes this pass may still plan.
    room: usize,
    /// Pods placed so far this pass (namespace, pod labels, node labels), counted into
    /// spread groups created after them.
    placed: Vec<(Sym, Labels, Labels)>,
}

impl<'a> Solver<'a> {
    pub fn new(
        catalog: &'a Catalog,
        snap: &'a Snapshot,
        targets: Vec<Target>,
        rng: &'a mut ChaCha8Rng,
        room: usize,
    ) -> Solver<'a> {
        let planned = vec![Resources::default(); targets.len()];
        Solver {
            catalog,
            snap,
            targets,
            planned,
            claims: Vec::new(),
            groups: Vec::new(),
            rng,
            room,
            placed: Vec::new(),
        }
    }

    /// Places `pods` (Karpenter's queue order and relaxation) and returns the plan.
    pub fn solve(mut self, mut pods: Vec<Demand>) -> Plan {
        pods.sort_by(|a, b| {
            b.requests
                .milli_cpu
                .cmp(&a.requests.milli_cpu)
                .then(b.requests.memory.cmp(&a.requests.memory))
                .then_with(|| a.key.cmp(&b.key))
        });
        let mut plan = Plan::default();
        let mut queue: VecDeque<(Demand, String)> =
            pods.into_iter().map(|d| (d, String::new())).collect();
        // Karpenter's queue: stop when a pod comes round again with the queue as long as
        // when it was last pushed back unrelaxed (a full round without progress).
        let mut last_len: BTreeMap<PodKey, usize> = BTreeMap::new();
        while let Some((d, _)) = queue.front() {
            if last_len.get(&d.key) == Some(&queue.len()) {
                break;
            }
            let Some((mut d, _)) = queue.pop_front() else {
                break;
            };
            match self.add(&d, &mut plan) {
                Ok(()) => {}
                Err(reason) => {
                    let relaxed = d.relax();
                    if relaxed {
                        last_len.clear();
                    }
                    let key = d.key.clone();
                    queue.push_back((d, reason));
                    if !relaxed {
                        last_len.insert(key, queue.len());
                    }
                }
            }
        }
        for (d, reason) in queue {
            plan.failed.push((d.key, reason));
        }
        plan.claims = self.claims;
        plan
    }

    fn add(&mut self, d: &Demand, plan: &mut Plan) -> Result<(), String> {
        for t in 0..self.targets.len() {
            if self.try_target(t, d) {
                plan.on_existing.push((d.key.clone(), self.targets[t].name));
                return Ok(());
            }
        }
        let mut order: Vec<usize> = (0..self.claims.len()).collect();
        order.sort_by_key(|&c| self.claims[c].pods.len());
        for c in order {
            if self.try_claim(c, d) {
                return Ok(());
            }
        }
        self.new_claim(d)
    }

    fn try_target(&mut self, t: usize, d: &Demand) -> bool {
        let target = &self.targets[t];
        if !d.admits(&target.labels)
            || !d.tolerates(&target.taints)
            || !fits(&target.free, &self.planned[t], &d.requests)
        {
            return false;
        }
        let labels = target.labels.clone();
        for c in d.spread() {
            let Some(domain) = labels.get(c.topology_key) else {
                return false;
            };
            let g = self.group_for(d, c);
            if !self.domain_allowed(g, d, domain) {
                return false;
            }
        }
        let used = &mut self.planned[t];
        used.add(&d.requests);
        used.pods += 1;
        self.record(d, &labels);
        true
    }

    /// Offerings of `options` a node with `requests` planned could take `d` on.
    fn narrow(
        &mut self,
        pool: usize,
        options: &[u32],
        requests: &Resources,
        d: &Demand,
    ) -> Vec<u32> {
        if !d.tolerates(&self.catalog.pools[pool].taints) {
            return Vec::new();
        }
        let used = requests;
        let mut opts: Vec<u32> = options
            .iter()
            .copied()
            .filter(|&o| {
                let off = &self.catalog.offerings[o as usize];
                d.admits(&off.labels)
                    && fits(
                        &self.catalog.instances[off.instance].allocatable,
                        used,
                        &d.requests,
                    )
            })
            .collect();
        let constraints: Vec<_> = d.spread().cloned().collect();
        for c in &constraints {
            if opts.is_empty() {
                break;
            }
            if c.topology_key.as_str() == LABEL_HOSTNAME {
                // A new node is a new hostname domain, always at the minimum.
                continue;
            }
            let g = self.group_for(d, c);
            let mut candidates: Vec<Sym> = opts
                .iter()
                .filter_map(|&o| {
                    self.catalog.offerings[o as usize]
                        .labels
                        .get(c.topology_key)
                })
                .collect();
            candidates.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            candidates.dedup();
            let Some(domain) = self.pick_domain(g, d, &candidates) else {
                opts.clear();
                break;
            };
            opts.retain(|&o| {
                self.catalog.offerings[o as usize]
                    .labels
                    .get(c.topology_key)
                    == Some(domain)
            });
        }
        opts
    }

    fn try_claim(&mut self, c: usize, d: &Demand) -> bool {
        let (pool, options, requests) = {
            let claim = &self.claims[c];
            (claim.pool, claim.options.clone(), claim.requests.clone())
        };
        let opts = self.narrow(pool, &options, &requests, d);
        if opts.is_empty() {
            return false;
        }
        let claim = &mut self.claims[c];
        claim.options = opts;
        claim.requests.add(&d.requests);
        claim.requests.pods += 1;
        claim.pods.push(d.key.clone());
        let labels = self.claim_labels(c);
        self.record(d, &labels);
        true
    }

    fn new_claim(&mut self, d: &Demand) -> Result<(), String> {
        if self.room == 0 {
            return Err("no node has room and no new node may be launched".to_owned());
        }
        let mut any_compatible = false;
        let mut any_tolerated = false;
        for k in 0..self.catalog.pool_order.len() {
            let pool = self.catalog.pool_order[k];
            let all = self.catalog.by_pool[pool].clone();
            if !d.tolerates(&self.catalog.pools[pool].taints) {
                continue;
            }
            any_tolerated = true;
            if all
                .iter()
                .any(|&o| d.admits(&self.catalog.offerings[o as usize].labels))
            {
                any_compatible = true;
            }
            let opts = self.narrow(pool, &all, &Resources::default(), d);
            if opts.is_empty() {
                continue;
            }
            let mut requests = d.requests.clone();
            requests.pods = 1;
            self.claims.push(Claim {
                pool,
                options: opts,
                requests,
                pods: vec![d.key.clone()],
            });
            self.room -= 1;
            let labels = self.claim_labels(self.claims.len() - 1);
            self.record(d, &labels);
            return Ok(());
        }
        Err(if !any_tolerated {
            "no NodePool's taints are tolerated".to_owned()
        } else if !any_compatible {
            "incompatible with every NodePool (node selector, affinity or instance labels)"
                .to_owned()
        } else {
            "no instance type of a compatible NodePool fits its requests or topology spread"
                .to_owned()
        })
    }

    /// The labels all options of claim `c` agree on.
    fn claim_labels(&self, c: usize) -> Labels {
        let claim = &self.claims[c];
        let Some(&first) = claim.options.first() else {
            return Labels::default();
        };
        let first = &self.catalog.offerings[first as usize].labels;
        let agreed: Vec<(Sym, Sym)> = first
            .iter()
            .filter(|&(k, v)| {
                claim
                    .options
                    .iter()
                    .all(|&o| self.catalog.offerings[o as usize].labels.get(k) == Some(v))
            })
            .collect();
        Labels::from_pairs(agreed.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    // ---- topology ----------------------------------------------------------------

    fn filter_of(d: &Demand) -> Filter {
        let (selector, term) = d.strict_parts();
        Filter { selector, term }
    }

    /// The group of `d`'s constraint `c`, created (counting the pods already placed) if new.
    fn group_for(&mut self, d: &Demand, c: &crate::model::TopologySpreadConstraint) -> usize {
        let filter = Self::filter_of(d);
        let found = self.groups.iter().position(|g| {
            g.namespace == d.namespace
                && g.key == c.topology_key
                && g.selector == c.selector
                && g.max_skew == c.max_skew
                && g.min_domains == c.min_domains
                && g.filter == filter
        });
        if let Some(g) = found {
            return g;
        }
        let mut counts: BTreeMap<Sym, i32> = BTreeMap::new();
        if c.topology_key.as_str() != LABEL_HOSTNAME {
            for dom in self.catalog.domains(c.topology_key) {
                counts.insert(dom, 0);
            }
            for t in &self.targets {
                if let Some(v) = t.labels.get(c.topology_key) {
                    counts.entry(v).or_insert(0);
                }
            }
        }
        let nodes = self.snap.nodes();
        if let Some(sel) = &c.selector {
            let ids: Vec<u32> = match sel.equality_hint() {
                Some((k, v)) => self
                    .snap
                    .pods_with_label(d.namespace, k, v)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
                None => self
                    .snap
                    .pods_in_namespace(d.namespace)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
            };
            for id in ids {
                let Some(e) = self.snap.pod(id) else { continue };
                if e.pod.terminating || !sel.matches(&e.pod.labels) {
                    continue;
                }
                let node = &nodes.node[e.node as usize];
                if !filter.admits(&node.labels) {
                    continue;
                }
                if let Some(v) = node.labels.get(c.topology_key) {
                    *counts.entry(v).or_insert(0) += 1;
                }
            }
            for (ns, pod_labels, node_labels) in &self.placed {
                if *ns == d.namespace && sel.matches(pod_labels) && filter.admits(node_labels) {
                    if let Some(v) = node_labels.get(c.topology_key) {
                        *counts.entry(v).or_insert(0) += 1;
                    }
                }
            }
        }
        self.groups.push(Group {
            namespace: d.namespace,
            key: c.topology_key,
            selector: c.selector.clone(),
            max_skew: c.max_skew,
            min_domains: c.min_domains,
            filter,
            counts,
        });
        self.groups.len() - 1
    }

    /// The smallest count over the domains `d` may use (0 for hostname: a new node is empty).
    fn min_count(&self, g: usize, d: &Demand) -> i32 {
        let g = &self.groups[g];
        if g.key.as_str() == LABEL_HOSTNAME {
            return 0;
        }
        let mut n = 0;
        let mut min = i32::MAX;
        for (&dom, &count) in &g.counts {
            if d.allows_domain(g.key, dom) {
                n += 1;
                min = min.min(count);
            }
        }
        if g.min_domains.is_some_and(|m| n < m) || min == i32::MAX {
            0
        } else {
            min
        }
    }

    fn count(&self, g: usize, domain: Sym) -> i32 {
        self.groups[g].counts.get(&domain).copied().unwrap_or(0)
    }

    fn domain_allowed(&self, g: usize, d: &Demand, domain: Sym) -> bool {
        let own = i32::from(self.groups[g].selects(d.namespace, &d.labels));
        self.count(g, domain) + own - self.min_count(g, d) <= self.groups[g].max_skew
    }

    /// The least-populated allowed domain among `candidates`; ties at random (Karpenter walks
    /// a Go map, whose order is random).
    fn pick_domain(&mut self, g: usize, d: &Demand, candidates: &[Sym]) -> Option<Sym> {
        let allowed: Vec<(Sym, i32)> = candidates
            .iter()
            .filter(|&&dom| self.domain_allowed(g, d, dom))
            .map(|&dom| (dom, self.count(g, dom)))
            .collect();
        let best = allowed.iter().map(|e| e.1).min()?;
        let tied: Vec<Sym> = allowed
            .iter()
            .filter(|e| e.1 == best)
            .map(|e| e.0)
            .collect();
        let i = if tied.len() > 1 {
            self.rng.random_range(0..tied.len())
        } else {
            0
        };
        Some(tied[i])
    }

    /// Counts `d` in every group that selects it, where the node's domain is known.
    fn record(&mut self, d: &Demand, labels: &Labels) {
        self.placed
            .push((d.namespace, d.labels.clone(), labels.clone()));
        for g in &mut self.groups {
            if !g.selects(d.namespace, &d.labels) || !g.filter.admits(labels) {
                continue;
            }
            if let Some(v) = labels.get(g.key) {
                *g.counts.entry(v).or_insert(0) += 1;
            }
        }
    }
}

/// The offering a planned node launches with: for a node-share pool, the capacity type
/// furthest below its share first; then the cheapest (Karpenter's spot price-capacity-optimized
/// and on-demand lowest-price strategies, modelled by price alone); ties at random.
pub fn choose_offering(
    catalog: &Catalog,
    claim: &Claim,
    pool_nodes: &BTreeMap<(usize, Sym), u32>,
    rng: &mut ChaCha8Rng,
) -> Option<u32> {
    let mut options = claim.options.clone();
    if let CapacityChoice::NodeShare(weights) = &catalog.pools[claim.pool].capacity {
        let count = |t: Sym| pool_nodes.get(&(claim.pool, t)).copied().unwrap_or(0);
        let total: u32 = weights.iter().map(|&(t, _)| count(t)).sum();
        let mix = crate::spark::policy::Mix {
            weights: weights.clone(),
            mode: crate::config::MixMode::Soft,
        };
        for (ty, _) in mix.ranking(count, total) {
            let of_type: Vec<u32> = options
                .iter()
                .copied()
                .filter(|&o| catalog.offerings[o as usize].capacity == ty)
                .collect();
            if !of_type.is_empty() {
                options = of_type;
                break;
            }
        }
    }
    let best = options
        .iter()
        .map(|&o| catalog.offerings[o as usize].price)
        .fold(f64::INFINITY, f64::min);
    let tied: Vec<u32> = options
        .into_iter()
        .filter(|&o| catalog.offerings[o as usize].price == best)
        .collect();
    match tied.len() {
        0 => None,
        1 => Some(tied[0]),
        n => Some(tied[rng.random_range(0..n)]),
    }
}
