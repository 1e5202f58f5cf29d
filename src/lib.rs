//! spark-fleet: a Kubernetes scheduler for Apache Spark.
//!
//! Data flows one way: watch (or trace) → [`snapshot`] → [`queue`] → scheduling
//! cycle ([`framework`] running [`plugins`]) → reserve → bind (live [`kube`] or simulated [`sim`]).

pub mod model;
pub mod sim;
