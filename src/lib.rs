//! spark-fleet: a Kubernetes scheduler for Apache Spark.
//!
//! Data flows one way: watch (or trace) → [`snapshot`] → [`queue`] → scheduling
//! cycle ([`framework`] running [`plugins`]) → reserve → bind (live [`kube`] or simulated [`sim`]).

pub mod config;
pub mod framework;
pub mod model;
pub mod plugins;
pub mod preemption;
pub mod snapshot;
pub mod spark;
pub mod testkit;
