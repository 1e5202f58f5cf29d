//! Spark-specific rules: the annotations applications use to state their capacity
//! mix and driver placement, and how defaults from config combine with them.

pub mod annotations;
pub mod policy;
