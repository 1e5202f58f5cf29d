//! Per-cycle data computed once (PreFilter/PreScore) and read per node.

use std::any::{Any, TypeId};

/// A handful of entries per cycle (one per plugin at most): a linear scan over
/// a short Vec beats hashing, and plugins read their state once per node.
#[derive(Default)]
pub struct CycleState {
    values: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
    skip_filter: Vec<&'static str>,
    skip_score: Vec<&'static str>,
    /// Score plugins compute every node afresh instead of reusing scores kept
    /// from earlier cycles (`CycleOptions::fresh`).
    fresh_scores: bool,
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
        self.fresh_scores = fresh;
    }

    /// Whether score plugins may reuse node scores kept from earlier cycles.
    pub fn reuses_scores(&self) -> bool {
        !self.fresh_scores
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
}
