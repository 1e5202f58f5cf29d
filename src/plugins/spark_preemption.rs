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
        let fit = &ctx.profile.plugin_args.node_resources_fit;
        let mut evaluator = Evaluator::new(NAME, VictimPolicy::Spark(policy));
        evaluator.ignored_resources = fit.ignored_resources.clone();
        evaluator.ignored_resource_groups = fit.ignored_resource_groups.clone();
        SparkPreemption { evaluator }
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
