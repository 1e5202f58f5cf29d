//! DefaultPreemption: upstream's PostFilter preemption (lowest-priority victims,
//! PDBs respected when possible), see [`crate::preemption`].

use super::BuildContext;
use crate::framework::{FilterRunner, NodeStatuses, Plugin, PostFilterPlugin, PostFilterResult};
use crate::model::Pod;
use crate::preemption::{Evaluator, VictimPolicy};
use crate::snapshot::Snapshot;

pub const NAME: &str = "DefaultPreemption";

pub struct DefaultPreemption {
    evaluator: Evaluator,
}

impl DefaultPreemption {
    pub fn new(ctx: &BuildContext) -> DefaultPreemption {
        DefaultPreemption {
            evaluator: Evaluator::for_profile(NAME, VictimPolicy::Upstream, ctx),
        }
    }
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        pod: &Pod,
        snap: &mut Snapshot,
        statuses: &NodeStatuses,
        filters: &FilterRunner,
    ) -> PostFilterResult {
        self.evaluator.preempt(pod, snap, statuses, filters)
    }
}
