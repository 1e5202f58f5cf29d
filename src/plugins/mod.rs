//! The plugins, one file each, and the registry that builds profiles from config.

pub mod capacity_mix;
mod default_preemption;
pub mod driver_admission;
pub mod executor_spread;
pub mod fgd;
pub mod gpu_baselines;
pub mod gpu_share;
mod image_locality;
mod inter_pod_affinity;
mod node_affinity;
mod node_name;
mod node_ports;
mod node_resources_balanced_allocation;
mod node_resources_fit;
mod node_unschedulable;
mod node_volume_limits;
mod pair_kernel;
mod pod_topology_spread;
mod resource_allocation;
mod score_memo;
mod spark_preemption;
mod taint_toleration;
pub mod volume_binding;
mod volume_restrictions;
mod volume_zone;

pub use capacity_mix::{capacity_fallback, mix_status, CapacityFallback, CapacityMix, MixStatus};
pub use default_preemption::DefaultPreemption;
pub use driver_admission::DriverAdmission;
pub use executor_spread::ExecutorSpread;
pub use fgd::Fgd;
pub use gpu_share::GpuShare;
pub use image_locality::ImageLocality;
pub use inter_pod_affinity::InterPodAffinity;
pub use node_affinity::NodeAffinity;
pub use node_name::NodeName;
pub use node_ports::NodePorts;
pub use node_resources_balanced_allocation::NodeResourcesBalancedAllocation;
pub use node_resources_fit::NodeResourcesFit;
pub use node_unschedulable::NodeUnschedulable;
pub use node_volume_limits::NodeVolumeLimits;
pub use pod_topology_spread::PodTopologySpread;
pub use spark_preemption::SparkPreemption;
pub use taint_toleration::TaintToleration;
pub use volume_binding::VolumeBinding;
pub use volume_restrictions::VolumeRestrictions;
pub use volume_zone::VolumeZone;

use crate::config::{Config, PluginArgs, ProfileConfig};
use crate::framework::{PluginSet, Profile};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PluginError {
    #[error("profile {profile:?}: unknown plugin {name:?}")]
    Unknown { profile: String, name: String },
    #[error("profile {profile:?}: plugin {name}: {message}")]
    Args {
        profile: String,
        name: &'static str,
        message: String,
    },
    #[error("no profile named {0:?}")]
    NoProfile(String),
}

/// NodeResourcesFit's name, for profiles built in code.
pub const NODE_RESOURCES_FIT: &str = node_resources_fit::NAME;

/// Every plugin name a profile may list.
pub const KNOWN: &[&str] = &[
    node_name::NAME,
    node_unschedulable::NAME,
    taint_toleration::NAME,
    node_affinity::NAME,
    node_ports::NAME,
    node_resources_fit::NAME,
    node_resources_balanced_allocation::NAME,
    pod_topology_spread::NAME,
    inter_pod_affinity::NAME,
    gpu_share::NAME,
    fgd::NAME,
    volume_restrictions::NAME,
    node_volume_limits::NAME,
    volume_binding::NAME,
    volume_zone::NAME,
    image_locality::NAME,
    "CapacityMix",
    "ExecutorSpread",
    "DriverAdmission",
    "DefaultPreemption",
    "SparkPreemption",
];

pub fn is_known(name: &str) -> bool {
    KNOWN.contains(&name)
}

/// Checks plugin args that serde cannot (ranges, resource names); returns (field, message).
pub fn validate_args(args: &PluginArgs) -> Result<(), (String, String)> {
    node_resources_fit::validate_args(&args.node_resources_fit)?;
    node_resources_balanced_allocation::validate_args(&args.node_resources_balanced_allocation)?;
    fgd::validate_args(&args.fragmentation_gradient_descent)?;
    Ok(())
}

/// What a plugin may read while being built.
pub struct BuildContext<'a> {
    pub config: &'a Config,
    pub profile: &'a ProfileConfig,
}

fn set_filter_score<T>(name: &'static str, p: Arc<T>, filter: bool, score: bool) -> PluginSet
where
    T: crate::framework::FilterPlugin + crate::framework::ScorePlugin + 'static,
{
    let mut s = PluginSet::new(name);
    if filter {
        s.filter = Some(p.clone());
    }
    if score {
        s.score = Some(p);
    }
    s
}

/// GpuShare's extension points, with Reserve picking cards by `picker`.
fn gpu_share_set(picker: Arc<dyn gpu_share::CardPicker>) -> PluginSet {
    let p = Arc::new(GpuShare::with_picker(picker));
    let mut s = PluginSet::new(gpu_share::NAME);
    s.pre_filter = Some(p.clone());
    s.filter = Some(p.clone());
    s.reserve = Some(p);
    s
}

fn fgd_set(p: Arc<Fgd>) -> PluginSet {
    let mut s = PluginSet::new(fgd::NAME);
    s.pre_score = Some(p.clone());
    s.score = Some(p);
    s
}

fn build_fgd(ctx: &BuildContext) -> Result<Arc<Fgd>, PluginError> {
    Fgd::from_args(&ctx.profile.plugin_args.fragmentation_gradient_descent)
        .map(Arc::new)
        .map_err(|(field, m)| args_error(ctx, fgd::NAME, field, m))
}

pub fn build_plugin(name: &str, ctx: &BuildContext) -> Result<PluginSet, PluginError> {
    Ok(match name {
        gpu_share::NAME => gpu_share_set(Arc::new(gpu_share::BestFit)),
        fgd::NAME => fgd_set(build_fgd(ctx)?),
        node_name::NAME => {
            let mut s = PluginSet::new(node_name::NAME);
            s.filter = Some(Arc::new(NodeName));
            s
        }
        node_unschedulable::NAME => {
            let mut s = PluginSet::new(node_unschedulable::NAME);
            s.filter = Some(Arc::new(NodeUnschedulable));
            s
        }
        taint_toleration::NAME => set_filter_score(
            taint_toleration::NAME,
            Arc::new(TaintToleration),
            true,
            true,
        ),
        node_affinity::NAME => {
            let p = Arc::new(NodeAffinity);
            let mut s = set_filter_score(node_affinity::NAME, p.clone(), true, true);
            s.pre_filter = Some(p.clone());
            s.pre_score = Some(p);
            s
        }
        node_ports::NAME => {
            let p = Arc::new(NodePorts);
            let mut s = PluginSet::new(node_ports::NAME);
            s.pre_filter = Some(p.clone());
            s.filter = Some(p);
            s
        }
        capacity_mix::NAME => {
            let p = Arc::new(CapacityMix::new(Arc::new(ctx.config.clone())));
            let mut s = set_filter_score(capacity_mix::NAME, p.clone(), true, true);
            s.pre_filter = Some(p.clone());
            s.pre_score = Some(p);
            s
        }
        node_resources_fit::NAME => {
            let p = Arc::new(
                NodeResourcesFit::new(&ctx.profile.plugin_args.node_resources_fit)
                    .map_err(|(field, m)| args_error(ctx, node_resources_fit::NAME, field, m))?,
            );
            let mut s = set_filter_score(node_resources_fit::NAME, p.clone(), true, true);
            s.pre_filter = Some(p.clone());
            s.pre_score = Some(p);
            s
        }
        pod_topology_spread::NAME => {
            let p = Arc::new(PodTopologySpread);
            let mut s = set_filter_score(pod_topology_spread::NAME, p.clone(), true, true);
            s.pre_filter = Some(p.clone());
            s.pre_score = Some(p);
            s
        }
        inter_pod_affinity::NAME => {
            let p = Arc::new(InterPodAffinity::default());
            let mut s = set_filter_score(inter_pod_affinity::NAME, p.clone(), true, true);
            s.pre_filter = Some(p.clone());
            s.pre_score = Some(p);
            s
        }
        executor_spread::NAME => {
            let p = Arc::new(ExecutorSpread::new(Arc::new(ctx.config.clone())));
            let mut s = PluginSet::new(executor_spread::NAME);
            s.pre_score = Some(p.clone());
            s.score = Some(p);
            s
        }
        node_resources_balanced_allocation::NAME => {
            let p = Arc::new(
                NodeResourcesBalancedAllocation::new(
                    &ctx.profile.plugin_args.node_resources_balanced_allocation,
                )
                .map_err(|(field, m)| {
                    args_error(ctx, node_resources_balanced_allocation::NAME, field, m)
                })?,
            );
            let mut s = PluginSet::new(node_resources_balanced_allocation::NAME);
            s.pre_score = Some(p.clone());
            s.score = Some(p);
            s
        }
        driver_admission::NAME => {
            let p = Arc::new(DriverAdmission::new(Arc::new(ctx.config.clone())));
            let mut s = PluginSet::new(driver_admission::NAME);
            s.pre_filter = Some(p.clone());
            s.filter = Some(p);
            s
        }
        volume_restrictions::NAME => {
            let p = Arc::new(VolumeRestrictions);
            let mut s = PluginSet::new(volume_restrictions::NAME);
            s.pre_filter = Some(p.clone());
            s.filter = Some(p);
            s
        }
        node_volume_limits::NAME => {
            let p = Arc::new(NodeVolumeLimits);
            let mut s = PluginSet::new(node_volume_limits::NAME);
            s.pre_filter = Some(p.clone());
            s.filter = Some(p);
            s
        }
        volume_binding::NAME => {
            let p = Arc::new(VolumeBinding);
            let mut s = PluginSet::new(volume_binding::NAME);
            s.pre_filter = Some(p.clone());
            s.filter = Some(p.clone());
            s.reserve = Some(p);
            s
        }
        volume_zone::NAME => {
            let p = Arc::new(VolumeZone);
            let mut s = PluginSet::new(volume_zone::NAME);
            s.pre_filter = Some(p.clone());
            s.filter = Some(p);
            s
        }
        image_locality::NAME => {
            let p = Arc::new(ImageLocality);
            let mut s = PluginSet::new(image_locality::NAME);
            s.pre_score = Some(p.clone());
            s.score = Some(p);
            s
        }
        default_preemption::NAME => {
            let mut s = PluginSet::new(default_preemption::NAME);
            s.post_filter = Some(Arc::new(DefaultPreemption::new(ctx)));
            s
        }
        spark_preemption::NAME => {
            let mut s = PluginSet::new(spark_preemption::NAME);
            s.post_filter = Some(Arc::new(SparkPreemption::new(ctx)));
            s
        }
        other => {
            return Err(PluginError::Unknown {
                profile: ctx.profile.name.clone(),
                name: other.to_owned(),
            })
        }
    })
}

fn args_error(ctx: &BuildContext, name: &'static str, field: String, m: String) -> PluginError {
    PluginError::Args {
        profile: ctx.profile.name.clone(),
        name,
        message: format!("pluginArgs.{field}: {m}"),
    }
}

pub fn build_profile(config: &Config, profile: &ProfileConfig) -> Result<Profile, PluginError> {
    let ctx = BuildContext { config, profile };
    // With FGD scoring, GpuShare's Reserve takes the card FGD chose (as the
    // FGD paper's simulator lets the scoring policy pick the GPU).
    let fgd = match profile
        .plugins
        .iter()
        .any(|e| e.name == fgd::NAME && e.weight > 0)
    {
        true => Some(build_fgd(&ctx)?),
        false => None,
    };
    let mut sets = Vec::new();
    for e in &profile.plugins {
        let set = match (e.name.as_str(), &fgd) {
            (fgd::NAME, Some(f)) => fgd_set(f.clone()),
            (gpu_share::NAME, Some(f)) => gpu_share_set(f.clone()),
            _ => build_plugin(&e.name, &ctx)?,
        };
        sets.push((set, e.weight));
    }
    let mut p = Profile::new(profile.name.clone(), sets);
    p.percentage_of_nodes_to_score = profile.percentage_of_nodes_to_score;
    Ok(p)
}

pub fn build_named_profile(config: &Config, name: &str) -> Result<Profile, PluginError> {
    let pc = config
        .profile(name)
        .ok_or_else(|| PluginError::NoProfile(name.to_owned()))?;
    build_profile(config, pc)
}

#[cfg(test)]
mod batch_tests;

#[cfg(test)]
pub(crate) mod test_support {
    //! Runs one plugin's filter/score over a snapshot, for table tests.
    use crate::framework::{
        CycleState, FilterPlugin, PreFilterPlugin, PreScorePlugin, ScorePlugin, Status,
    };
    use crate::model::capacity::CapacityRules;
    use crate::model::{Node, Pod};
    use crate::snapshot::Snapshot;

    /// A snapshot of `nodes` with `pods` placed as they say.
    pub fn snapshot_of(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
        let mut s = Snapshot::new(CapacityRules::default());
        for n in nodes {
            s.upsert_node(n);
        }
        for p in pods {
            s.upsert_pod(std::sync::Arc::new(p)).unwrap();
        }
        s
    }

    pub fn filter_all(
        pre: Option<&dyn PreFilterPlugin>,
        f: &dyn FilterPlugin,
        pod: &Pod,
        snap: &Snapshot,
    ) -> Vec<(String, Status)> {
        let mut state = CycleState::default();
        if let Some(pre) = pre {
            let st = pre.pre_filter(&mut state, pod, snap);
            if !st.is_success() && st.code != crate::framework::Code::Skip {
                return snap
                    .nodes()
                    .live_indices()
                    .map(|i| (snap.nodes().name[i as usize].to_string(), st.clone()))
                    .collect();
            }
        }
        snap.nodes()
            .live_indices()
            .map(|i| {
                (
                    snap.nodes().name[i as usize].to_string(),
                    f.filter(&state, pod, snap, i),
                )
            })
            .collect()
    }

    /// Raw then normalized scores for every live node, in slot order.
    pub fn score_all(
        pre: Option<&dyn PreScorePlugin>,
        s: &dyn ScorePlugin,
        pod: &Pod,
        snap: &Snapshot,
    ) -> Vec<(String, i64)> {
        let mut state = CycleState::default();
        let nodes: Vec<u32> = snap.nodes().live_indices().collect();
        if let Some(pre) = pre {
            pre.pre_score(&mut state, pod, snap, &nodes);
        }
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|&i| s.score(&state, pod, snap, i))
            .collect();
        s.normalize(&state, pod, &mut scores);
        nodes
            .iter()
            .zip(scores)
            .map(|(&i, v)| (snap.nodes().name[i as usize].to_string(), v))
            .collect()
    }
}
