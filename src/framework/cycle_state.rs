//! Per-cycle data computed once (PreFilter/PreScore) and read per node.

use std::any::{Any, TypeId};
use std::collections::HashMap;

#[derive(Default)]
pub struct CycleState {
    values: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    skip_filter: Vec<&'static str>,
    skip_score: Vec<&'static str>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
    }

    pub fn read<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }

    pub fn read_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        self.values
            .get_mut(&TypeId::of::<T>())
            .and_then(|b| b.downcast_mut())
    }

    pub(crate) fn mark_skip_filter(&mut self, plugin: &'static str) {
        self.skip_filter.push(plugin);
    }

    pub(crate) fn mark_skip_score(&mut self, plugin: &'static str) {
        self.skip_score.push(plugin);
    }

    pub fn skips_filter(&self, plugin: &'static str) -> bool {
        self.skip_filter.contains(&plugin)
    }

    pub fn skips_score(&self, plugin: &'static str) -> bool {
        self.skip_score.contains(&plugin)
    }
}
