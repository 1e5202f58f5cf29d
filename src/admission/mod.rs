//! Admission: the capacity-type constraint an autoscaler reads from a pod, put on
//! pods when they are created.
//!
//! [`constraint`] is pure (no client, no HTTP): the live webhook and the
//! simulator's model of it share it. [`review`] decides one AdmissionReview
//! over the snapshot and the [`ledger`] of recent admissions.

pub mod constraint;
pub mod ledger;
pub mod review;
pub mod server;
pub mod tls;

pub use constraint::{
    apply_to_model, capacity_constraint, pod_patch, AddOp, CapacityConstraint, ConstraintError,
    NodeRequirement, Placement, Provider, RequirementOp, TolerationSpec,
};
