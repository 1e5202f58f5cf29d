//! Helpers for the trace tests (`trace_formats`, `spot_gpu`), included with `#[path]` so those
//! binaries do not build the API server support.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A path in the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}
