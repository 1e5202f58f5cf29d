//! spark-fleet: a Kubernetes scheduler for Apache Spark.
//!
//! Data flows one way: watch (or trace) → [`snapshot`] → [`queue`] → scheduling
//! cycle ([`framework`] running [`plugins`]) → reserve → bind (live or simulated).

pub mod admission;
pub mod config;
pub mod explain;
pub mod framework;
pub mod kube;
pub mod manifests;
pub mod model;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod sim;
pub mod snapshot;
pub mod spark;
pub mod testkit;
