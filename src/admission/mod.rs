//! Admission: the capacity-type constraint an autoscaler reads from a pod, put on
//! pods when they are created.
//!
//! [`constraint`] is pure (no client, no HTTP): the live webhook and the
//! simulator's model of it share it.

pub mod constraint;

pub use constraint::{
    apply_to_model, capacity_constraint, pod_patch, AddOp, CapacityConstraint, ConstraintError,
    NodeRequirement, Placement, Provider, RequirementOp, TolerationSpec,
};
