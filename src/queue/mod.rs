//! The scheduling queue (upstream kube-scheduler's PriorityQueue semantics) and
//! the clock it runs on.

mod backoff;
mod clock;
mod event;
mod scheduling_queue;

pub use backoff::QueueConfig;
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{event_may_help, plugin, ClaimId, ClusterEvent};
pub use scheduling_queue::{Location, PendingCounts, QueuedPod, SchedulingQueue};

use crate::model::PodKey;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum QueueError {
    #[error(
        "queue config: initial_backoff_ms ({initial_ms}) must not exceed max_backoff_ms ({max_ms})"
    )]
    BackoffInitialAboveMax { initial_ms: u64, max_ms: u64 },
    #[error(
        "pod {0} was requeued but is not in flight (never popped, or its cycle already ended)"
    )]
    NotInFlight(PodKey),
}
