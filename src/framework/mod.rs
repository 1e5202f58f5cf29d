//! The scheduling framework: extension points, per-cycle state, profiles and
//! the cycle that schedules one pod against a snapshot.

mod cycle;
mod cycle_state;
mod message;
mod plugin;
mod profile;
mod status;

pub use cycle::{schedule, CycleOptions, Decision, NodeScore, NodeStatuses};
pub use cycle_state::{CycleState, PreFilterNodes, ReservedCards};
pub use message::{unschedulable_message, NO_NODES_AVAILABLE};
pub use plugin::{
    default_normalize, retain_nodes, slots_from, BindPlugin, FilterPlugin, FilterRunner,
    Nomination, Normalization, PermitDecision, PermitPlugin, Plugin, PostFilterPlugin,
    PostFilterResult, PreFilterPlugin, PreScorePlugin, ReservePlugin, ScorePlugin, MAX_NODE_SCORE,
};
pub use profile::{PluginSet, Profile};
pub use status::{Code, Reason, Status};
