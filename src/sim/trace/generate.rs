//! Synthetic Spark workload generator.
use super::Trace;
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerateParams { pub apps: usize }
pub fn generate(_p: &GenerateParams) -> Trace { todo!() }
