//! Helpers for the trace tests (`trace_formats`, `spot_gpu`), included with `#[path]` so those
//! binaries do not build the API server support.
#![allow(dead_code)]

use spark_fleet::sim::trace::{Event, NodeAdd, PodSubmit, Trace};
use std::path::{Path, PathBuf};

/// A path in the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

pub fn node_adds(t: &Trace) -> Vec<&NodeAdd> {
    t.events
        .iter()
        .filter_map(|e| match &e.event {
            Event::NodeAdd(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// The pod submissions with their times.
pub fn pod_submits(t: &Trace) -> Vec<(f64, &PodSubmit)> {
    t.events
        .iter()
        .filter_map(|e| match &e.event {
            Event::PodSubmit(p) => Some((e.t, p)),
            _ => None,
        })
        .collect()
}
