//! Instance types Karpenter may launch: sizes, allocatable after the node's reservations,
//! prices per capacity type and spot interruption rates.
//!
//! The built-in list ([`built_in`]) and the overhead rule ([`allocatable`]) are documented with
//! their sources in `simulations/README.md` ("The autoscaler").

use crate::config::{InstanceTypeConfig, DEFAULT_SPOT_INTERRUPTIONS_PER_MONTH};
use crate::model::{Resources, Sym};
use std::collections::BTreeMap;

const MIB: i64 = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;

/// An instance type resolved for the simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceType {
    pub name: Sym,
    pub vcpu: u32,
    pub allocatable: Resources,
    pub on_demand_price: f64,
    pub spot_price: f64,
    pub interruptions_per_month: f64,
    pub labels: Vec<(Sym, Sym)>,
}

impl InstanceType {
    pub fn from_config(c: &InstanceTypeConfig) -> InstanceType {
        let mut allocatable = allocatable(c.vcpu, c.memory_gib, c.max_pods);
        for (name, v) in &c.extended_resources {
            allocatable.set_scalar(Sym::new(name), *v);
        }
        InstanceType {
            name: Sym::new(&c.name),
            vcpu: c.vcpu,
            allocatable,
            on_demand_price: c.on_demand_price,
            spot_price: c.spot_price,
            interruptions_per_month: c.spot_interruptions_per_month,
            labels: c
                .labels
                .iter()
                .map(|(k, v)| (Sym::new(k), Sym::new(v)))
                .collect(),
        }
    }

    /// Dollars per hour on `capacity` (`spot`, else on-demand).
    pub fn price(&self, capacity: &str) -> f64 {
        if capacity == crate::model::capacity::SPOT {
            self.spot_price
        } else {
            self.on_demand_price
        }
    }
}

/// What the kubelet offers pods on a node of `vcpu` CPUs and `memory_gib` GiB, as Karpenter's
/// AWS provider computes it: the hypervisor keeps 7.5% of memory (`vmMemoryOverheadPercent`);
/// kube-reserved takes 6% of the first core, 1% of the second, 0.5% of the third and fourth and
/// 0.25% of every further core, and 11 MiB per pod slot plus 255 MiB of memory; the eviction
/// threshold keeps 100 MiB more.
pub fn allocatable(vcpu: u32, memory_gib: f64, max_pods: u32) -> Resources {
    let cores = i64::from(vcpu);
    let reserved_milli = {
        // Per-core shares in hundredths of a millicore, to stay in integers.
        let mut r = 0i64;
        for core in 1..=cores {
            r += match core {
                1 => 6000,
                2 => 1000,
                3 | 4 => 500,
                _ => 250,
            };
        }
        r / 100
    };
    let capacity_mem = (memory_gib * GIB * (1.0 - 0.075)).floor() as i64;
    let reserved_mem = 11 * MIB * i64::from(max_pods) + 255 * MIB + 100 * MIB;
    Resources {
        milli_cpu: cores * 1000 - reserved_milli,
        memory: (capacity_mem - reserved_mem).max(0),
        ephemeral_storage: 0,
        pods: i64::from(max_pods),
        scalars: Default::default(),
    }
}

/// The built-in instance list: three families of x86 instances in us-east-1, Linux.
///
/// c5: on-demand and spot prices from the AWS EC2 Auto Scaling User Guide's example table
/// ("Spot price per unit hour example": us-east-1a/b/c spot and on-demand per instance hour;
/// spot here is the mean of the three zones). m5 and r5: the on-demand list prices of the EC2
/// On-Demand pricing page (us-east-1, Linux), spot at 0.45 of on-demand, the mean spot/on-demand
/// ratio of that table's c5 rows. Interruptions: the Spot Instance Advisor's lowest band
/// ("<5%" a month) for every type; no per-type figures are bundled.
pub fn built_in() -> Vec<InstanceTypeConfig> {
    let t =
        |name: &str, vcpu: u32, memory_gib: f64, on_demand: f64, spot: f64| InstanceTypeConfig {
            name: name.to_owned(),
            vcpu,
            memory_gib,
            max_pods: 110,
            on_demand_price: on_demand,
            spot_price: spot,
            spot_interruptions_per_month: DEFAULT_SPOT_INTERRUPTIONS_PER_MONTH,
            extended_resources: BTreeMap::new(),
            labels: BTreeMap::new(),
        };
    let r = |x: f64| (x * 1e4).round() / 1e4;
    // The table's three zone prices, in thousandths of a dollar.
    let mean = |xs: [u32; 3]| r(f64::from(xs.iter().sum::<u32>()) / 3000.0);
    const M5_R5_SPOT_RATIO: f64 = 0.45;
    vec![
        t("c5.2xlarge", 8, 16.0, 0.34, mean([180, 191, 170])),
        t("c5.4xlarge", 16, 32.0, 0.68, mean([341, 361, 318])),
        t("c5.12xlarge", 48, 96.0, 2.04, mean([779, 777, 777])),
        t("m5.2xlarge", 8, 32.0, 0.384, r(0.384 * M5_R5_SPOT_RATIO)),
        t("m5.4xlarge", 16, 64.0, 0.768, r(0.768 * M5_R5_SPOT_RATIO)),
        t("m5.8xlarge", 32, 128.0, 1.536, r(1.536 * M5_R5_SPOT_RATIO)),
        t("r5.2xlarge", 8, 64.0, 0.504, r(0.504 * M5_R5_SPOT_RATIO)),
        t("r5.4xlarge", 16, 128.0, 1.008, r(1.008 * M5_R5_SPOT_RATIO)),
        t("r5.8xlarge", 32, 256.0, 2.016, r(2.016 * M5_R5_SPOT_RATIO)),
    ]
}

/// The configured list, or the built-in one when the config names none.
pub fn resolve(configured: &[InstanceTypeConfig]) -> Vec<InstanceType> {
    let list = if configured.is_empty() {
        built_in()
    } else {
        configured.to_vec()
    };
    list.iter().map(InstanceType::from_config).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_follows_the_reservation_rule() {
        // 8 vCPU: 60 + 10 + 5 + 5 + 4 × 2.5 = 90 millicores reserved.
        let a = allocatable(8, 16.0, 110);
        assert_eq!(a.milli_cpu, 7910);
        // 16 GiB × 0.925 = 15155.2 MiB, less 11 × 110 + 255 + 100 MiB.
        let want = (16.0 * GIB * 0.925).floor() as i64 - (1210 + 355) * MIB;
        assert_eq!(a.memory, want);
        assert_eq!(a.pods, 110);
        // One core: only the first core's 6%.
        assert_eq!(allocatable(1, 2.0, 10).milli_cpu, 940);
    }

    #[test]
    fn built_in_list_is_valid_and_spot_is_cheaper() {
        let cfg = crate::config::KarpenterConfig {
            instance_types: built_in(),
            ..Default::default()
        };
        cfg.check().unwrap();
        for t in resolve(&[]) {
            assert!(t.spot_price < t.on_demand_price, "{}", t.name);
            assert!(t.allocatable.milli_cpu > 0 && t.allocatable.memory > 0);
        }
        let c5 = &resolve(&[])[0];
        assert_eq!(c5.name.as_str(), "c5.2xlarge");
        assert_eq!(c5.spot_price, 0.1803);
        assert_eq!(c5.price("on-demand"), 0.34);
    }
}
