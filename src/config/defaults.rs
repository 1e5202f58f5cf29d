//! Built-in profiles: `kube-default` reproduces upstream's default plugins and
//! weights (the baseline for every comparison); `spark-fleet` adds the Spark plugins.

use super::*;

pub const KUBE_DEFAULT: &str = "kube-default";
pub const SPARK_FLEET: &str = "spark-fleet";

fn entry(name: &str, weight: i64) -> PluginEntry {
    PluginEntry {
        name: name.into(),
        weight,
    }
}

pub fn default_profiles() -> Vec<ProfileConfig> {
    vec![spark_fleet_profile(), kube_default_profile()]
}

/// Upstream's default plugin set: TaintToleration 3, NodeAffinity 2,
/// PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1 (LeastAllocated),
/// BalancedAllocation 1, ImageLocality 1, and the volume filters
/// (VolumeRestrictions, NodeVolumeLimits, VolumeBinding, VolumeZone), in
/// upstream's order; plus GpuShare, the card-level GPU check GPU-sharing
/// clusters add to their scheduler (a no-op for pods without GPU annotations).
pub fn kube_default_profile() -> ProfileConfig {
    ProfileConfig {
        name: KUBE_DEFAULT.into(),
        plugins: vec![
            entry("NodeUnschedulable", 0),
            entry("NodeName", 0),
            entry("TaintToleration", 3),
            entry("NodeAffinity", 2),
            entry("NodePorts", 0),
            entry("NodeResourcesFit", 1),
            entry("GpuShare", 0),
            entry("VolumeRestrictions", 0),
            entry("NodeVolumeLimits", 0),
            entry("VolumeBinding", 0),
            entry("VolumeZone", 0),
            entry("PodTopologySpread", 2),
            entry("InterPodAffinity", 2),
            entry("DefaultPreemption", 0),
            entry("NodeResourcesBalancedAllocation", 1),
            entry("ImageLocality", 1),
        ],
        plugin_args: PluginArgs::default(),
        percentage_of_nodes_to_score: 0,
    }
}

/// Packs executors (MostAllocated) within the capacity mix and spread rules.
pub fn spark_fleet_profile() -> ProfileConfig {
    let mut args = PluginArgs::default();
    args.node_resources_fit.scoring_strategy.kind = ScoringStrategyType::MostAllocated;
    ProfileConfig {
        name: SPARK_FLEET.into(),
        plugins: vec![
            entry("NodeUnschedulable", 0),
            entry("NodeName", 0),
            entry("TaintToleration", 3),
            entry("NodeAffinity", 2),
            entry("NodePorts", 0),
            entry("NodeResourcesFit", 1),
            entry("GpuShare", 0),
            entry("VolumeRestrictions", 0),
            entry("NodeVolumeLimits", 0),
            entry("VolumeBinding", 0),
            entry("VolumeZone", 0),
            entry("CapacityMix", 17),
            entry("PodTopologySpread", 2),
            entry("InterPodAffinity", 2),
            entry("ExecutorSpread", 3),
            entry("DriverAdmission", 0),
            entry("NodeResourcesBalancedAllocation", 1),
            entry("ImageLocality", 1),
            entry("SparkPreemption", 0),
        ],
        plugin_args: args,
        percentage_of_nodes_to_score: 0,
    }
}
