//! Spark-specific rules: the annotations applications use to state their capacity
//! mix and driver placement ([`annotations`]), and how they combine with the
//! namespace and cluster defaults from config ([`policy`]). The plugins that apply
//! them live in `plugins::{capacity_mix, executor_spread, driver_admission}`.

pub mod annotations;
pub mod policy;
