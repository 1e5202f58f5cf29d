//! Importer for the Alibaba openb GPU cluster trace.
use super::{Trace, TraceError};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct OpenbOptions { pub seed: u64, pub spot_fraction: f64, pub zones: u32 }
impl Default for OpenbOptions { fn default() -> Self { OpenbOptions { seed: 1, spot_fraction: 0.3, zones: 3 } } }
pub fn import_openb(_n: &Path, _p: &Path, _o: &OpenbOptions) -> Result<Trace, TraceError> { todo!() }
