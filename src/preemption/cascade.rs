//! What a victim set really costs: a Spark driver's executors die with it (their
//! ownerReference points at the driver pod), wherever they run.
//!
//! Ownership is a graph (driver → its executors); the pods lost are those
//! reachable from the victims, each counted once however many paths lead to it.

use crate::model::{Pod, PodKey};
use crate::snapshot::Snapshot;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::Dfs;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CascadeCost {
    pub drivers_killed: usize,
    /// Victims plus every executor lost with a killed driver.
    pub pods_lost: usize,
    /// The executors lost with killed drivers that are not victims themselves, sorted.
    pub cascade: Vec<PodKey>,
}

/// The ownership graph restricted to what `victims` can reach.
pub struct Ownership {
    graph: DiGraph<PodKey, ()>,
    roots: Vec<NodeIndex>,
}

impl Ownership {
    pub fn of_victims(snap: &Snapshot, victims: &[Arc<Pod>]) -> Ownership {
        let mut graph = DiGraph::new();
        let mut index: HashMap<PodKey, NodeIndex> = HashMap::new();
        let mut node_of = |g: &mut DiGraph<PodKey, ()>, key: &PodKey| {
            *index
                .entry(key.clone())
                .or_insert_with(|| g.add_node(key.clone()))
        };
        let mut roots = Vec::with_capacity(victims.len());
        for v in victims {
            let root = node_of(&mut graph, &v.key);
            roots.push(root);
            let (true, Some(id)) = (v.is_driver(), v.spark.as_ref()) else {
                continue;
            };
            let Some(app) = snap.app(id.app) else {
                continue;
            };
            for e in app.executors.iter().filter_map(|&x| snap.pod(x)) {
                let child = node_of(&mut graph, &e.pod.key);
                graph.add_edge(root, child, ());
            }
        }
        Ownership { graph, roots }
    }

    pub fn cost(&self, victims: &[Arc<Pod>]) -> CascadeCost {
        let mut seen = vec![false; self.graph.node_count()];
        let mut dfs = Dfs::empty(&self.graph);
        for &r in &self.roots {
            dfs.move_to(r);
            while let Some(n) = dfs.next(&self.graph) {
                seen[n.index()] = true;
            }
        }
        let mut cascade: Vec<PodKey> = self
            .graph
            .node_indices()
            .filter(|n| seen[n.index()] && !self.roots.contains(n))
            .map(|n| self.graph[n].clone())
            .collect();
        cascade.sort();
        CascadeCost {
            drivers_killed: victims.iter().filter(|v| v.is_driver()).count(),
            pods_lost: seen.iter().filter(|s| **s).count(),
            cascade,
        }
    }
}

/// Cost of evicting `victims`, cascades counted.
pub fn cost(snap: &Snapshot, victims: &[Arc<Pod>]) -> CascadeCost {
    if !victims.iter().any(|v| v.is_driver()) {
        return CascadeCost {
            drivers_killed: 0,
            pods_lost: victims.len(),
            cascade: Vec::new(),
        };
    }
    Ownership::of_victims(snap, victims).cost(victims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::capacity::CapacityRules;
    use crate::testkit::*;

    #[test]
    fn driver_cascade_counted_once() {
        let mut snap = Snapshot::new(CapacityRules::default());
        snap.upsert_node(node("n1", 10_000, 10 * GI).build());
        snap.upsert_node(node("n2", 10_000, 10 * GI).build());
        let d = pod("d", 1, 1).driver("a").on("n1").arc();
        let e1 = pod("e1", 1, 1).executor("a").on("n1").arc();
        let e2 = pod("e2", 1, 1).executor("a").on("n2").arc();
        let other = pod("x", 1, 1).executor("b").on("n1").arc();
        for p in [&d, &e1, &e2, &other] {
            snap.upsert_pod(p.clone()).unwrap();
        }
        // e1 is a victim and also reachable from d: counted once.
        let c = cost(&snap, &[d.clone(), e1.clone(), other.clone()]);
        assert_eq!(c.drivers_killed, 1);
        assert_eq!(c.pods_lost, 4);
        assert_eq!(c.cascade, vec![e2.key.clone()]);
        let c = cost(&snap, &[e1, other]);
        assert_eq!((c.drivers_killed, c.pods_lost), (0, 2));
        assert!(c.cascade.is_empty());
    }
}
