//! SparkPreemption: the DefaultPreemption evaluator with the Spark victim policy:
//! executors never preempt drivers (unless configured), killing a driver counts
//! its whole application, retiring and spare executors go first.

use super::BuildContext;
use crate::framework::{FilterRunner, NodeStatuses, Plugin, PostFilterPlugin, PostFilterResult};
use crate::model::{Pod, Sym};
use crate::preemption::{Evaluator, SparkPolicy, VictimPolicy};
use crate::snapshot::Snapshot;

pub const NAME: &str = "SparkPreemption";

pub struct SparkPreemption {
    evaluator: Evaluator,
}

impl SparkPreemption {
    pub fn new(ctx: &BuildContext) -> SparkPreemption {
        let spark = &ctx.config.spark;
        let policy = SparkPolicy {
            executors_may_preempt_drivers: spark.executors_may_preempt_drivers,
            min_executors: spark.min_executors,
            namespace_min_executors: spark
                .namespaces
                .iter()
                .filter_map(|(ns, d)| d.min_executors.map(|m| (Sym::new(ns), m)))
                .collect(),
        };
        SparkPreemption {
            evaluator: Evaluator::for_profile(NAME, VictimPolicy::Spark(policy), ctx),
        }
    }
}

impl Plugin for SparkPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PostFilterPlugin for SparkPreemption {
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
