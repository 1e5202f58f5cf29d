//! Plugin results, as upstream's `framework.Status`.

use serde::Serialize;
use smallvec::SmallVec;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Code {
    Success,
    /// Fails now; preemption or cluster changes may help.
    Unschedulable,
    /// Fails and preemption cannot help (e.g. a taint, a node selector).
    UnschedulableAndUnresolvable,
    Error,
    /// PreFilter/PreScore: the plugin has nothing to do for this pod.
    Skip,
}

pub type Reason = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub code: Code,
    /// The plugin that produced a non-success status.
    pub plugin: &'static str,
    pub reasons: SmallVec<[Reason; 1]>,
}

impl Status {
    pub const fn success() -> Status {
        Status {
            code: Code::Success,
            plugin: "",
            reasons: SmallVec::new_const(),
        }
    }

    pub const fn skip() -> Status {
        Status {
            code: Code::Skip,
            plugin: "",
            reasons: SmallVec::new_const(),
        }
    }

    pub fn new(code: Code, plugin: &'static str, reason: impl Into<Reason>) -> Status {
        let mut reasons = SmallVec::new();
        reasons.push(reason.into());
        Status {
            code,
            plugin,
            reasons,
        }
    }

    pub fn unschedulable(plugin: &'static str, reason: impl Into<Reason>) -> Status {
        Status::new(Code::Unschedulable, plugin, reason)
    }

    pub fn unresolvable(plugin: &'static str, reason: impl Into<Reason>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, plugin, reason)
    }

    pub fn error(plugin: &'static str, reason: impl Into<Reason>) -> Status {
        Status::new(Code::Error, plugin, reason)
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_rejection(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}
