//! Per-cycle data computed once (PreFilter/PreScore) and read per node.

use crate::model::Sym;
use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicU64, Ordering};

/// Upstream's PreFilterResult: the node names PreFilter plugins narrowed the pod
/// to (intersected over plugins), and those plugins, sorted. Nodes outside the
/// set are not the pod's; upstream reports them with one status,
/// "node(s) didn't satisfy plugin(s) [..]", whatever their filters would say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreFilterNodes {
    /// Sorted, without duplicates.
    pub names: Vec<Sym>,
    pub plugins: Vec<&'static str>,
}

impl PreFilterNodes {
    pub fn contains(&self, name: Sym) -> bool {
        self.names.binary_search(&name).is_ok()
    }

    /// The status of a node outside the set (upstream's absent-nodes status).
    pub fn outside_reason(&self) -> String {
        format!(
            "node(s) didn't satisfy plugin(s) [{}]",
            self.plugins.join(" ")
        )
    }
}

/// The GPU cards a Reserve plugin picked on the chosen node (`plugins::gpu_share`):
/// the decision carries them, and the binding records them on the pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReservedCards(pub crate::model::Cards);

/// A handful of entries per cycle (one per plugin at most): a linear scan over
/// a short Vec beats hashing, and plugins read their state once per node.
#[derive(Default)]
pub struct CycleState {
    values: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
    skip_filter: Vec<&'static str>,
    skip_score: Vec<&'static str>,
    /// Set when score plugins compute every node afresh instead of reusing
    /// scores kept from earlier cycles (`CycleOptions::fresh`): an id no other
    /// cycle has, for what may be kept within this one.
    fresh_cycle: Option<u64>,
    prefilter_nodes: Option<PreFilterNodes>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        match self.values.iter_mut().find(|(k, _)| *k == id) {
            Some(slot) => slot.1 = Box::new(value),
            None => self.values.push((id, Box::new(value))),
        }
    }

    pub fn read<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.values
            .iter()
            .find(|(k, _)| *k == id)
            .and_then(|(_, b)| b.downcast_ref())
    }

    pub fn read_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.values
            .iter_mut()
            .find(|(k, _)| *k == id)
            .and_then(|(_, b)| b.downcast_mut())
    }

    /// A PreFilter's Skip: the plugin's filter is not run this cycle. Public,
    /// like `set_fresh_scores`, for tools that run plugins alone.
    pub fn mark_skip_filter(&mut self, plugin: &'static str) {
        self.skip_filter.push(plugin);
    }

    /// A PreScore's Skip: the plugin's score is not run this cycle.
    pub fn mark_skip_score(&mut self, plugin: &'static str) {
        self.skip_score.push(plugin);
    }

    pub fn skips_filter(&self, plugin: &'static str) -> bool {
        self.skip_filter.contains(&plugin)
    }

    pub fn skips_score(&self, plugin: &'static str) -> bool {
        self.skip_score.contains(&plugin)
    }

    /// Score every node afresh (`CycleOptions::fresh`): no plugin reuses or keeps
    /// node scores from other cycles. Public for tools that run plugins alone.
    pub fn set_fresh_scores(&mut self, fresh: bool) {
        static NEXT_FRESH_CYCLE: AtomicU64 = AtomicU64::new(1);
        self.fresh_cycle = fresh.then(|| NEXT_FRESH_CYCLE.fetch_add(1, Ordering::Relaxed));
    }

    /// Whether score plugins may reuse node scores kept from earlier cycles.
    pub fn reuses_scores(&self) -> bool {
        self.fresh_cycle.is_none()
    }

    /// When scores are computed afresh, this cycle's id (unique in the
    /// process): what a plugin keeps under it is reused within the cycle only.
    pub fn fresh_cycle(&self) -> Option<u64> {
        self.fresh_cycle
    }

    /// A PreFilter plugin's node names (upstream `PreFilterResult.NodeNames`):
    /// merged with earlier ones by intersection, as upstream's `Merge`.
    pub fn restrict_nodes(&mut self, plugin: &'static str, mut names: Vec<Sym>) {
        names.sort_unstable();
        names.dedup();
        match &mut self.prefilter_nodes {
            None => {
                self.prefilter_nodes = Some(PreFilterNodes {
                    names,
                    plugins: vec![plugin],
                })
            }
            Some(pf) => {
                pf.names.retain(|n| names.binary_search(n).is_ok());
                if !pf.plugins.contains(&plugin) {
                    pf.plugins.push(plugin);
                    pf.plugins.sort_unstable();
                }
            }
        }
    }

    pub fn prefilter_nodes(&self) -> Option<&PreFilterNodes> {
        self.prefilter_nodes.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_replace_and_read() {
        let mut s = CycleState::default();
        s.write(1u32);
        s.write(String::from("a"));
        s.write(2u32);
        assert_eq!(s.read::<u32>(), Some(&2));
        assert_eq!(s.read::<String>().map(String::as_str), Some("a"));
        assert!(s.read::<i64>().is_none());
        if let Some(v) = s.read_mut::<u32>() {
            *v = 3;
        }
        assert_eq!(s.read::<u32>(), Some(&3));
    }

    #[test]
    fn prefilter_node_names_intersect() {
        let mut s = CycleState::default();
        assert!(s.prefilter_nodes().is_none());
        s.restrict_nodes("B", vec![Sym::new("n2"), Sym::new("n1"), Sym::new("n1")]);
        s.restrict_nodes("A", vec![Sym::new("n2"), Sym::new("n3")]);
        let pf = s.prefilter_nodes().unwrap();
        assert_eq!(pf.names, [Sym::new("n2")]);
        assert!(pf.contains(Sym::new("n2")) && !pf.contains(Sym::new("n1")));
        assert_eq!(
            pf.outside_reason(),
            "node(s) didn't satisfy plugin(s) [A B]"
        );
    }
}
