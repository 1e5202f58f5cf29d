//! Capacity type of a node (spot, on-demand, serverless, ...) from label rules.

use super::{Labels, Sym};
use serde::{Deserialize, Serialize};

pub const SPOT: &str = "spot";
pub const ON_DEMAND: &str = "on-demand";
pub const SERVERLESS: &str = "serverless";

/// `label = value` ⇒ `capacity_type`; the first matching rule wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CapacityRule {
    pub label: String,
    pub value: String,
    pub capacity_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CapacityRules {
    pub rules: Vec<CapacityRule>,
    /// Type of nodes matching no rule.
    pub default: String,
}

impl Default for CapacityRules {
    /// The labels the major provisioners put on nodes.
    fn default() -> Self {
        let rule = |label: &str, value: &str, ty: &str| CapacityRule {
            label: label.into(),
            value: value.into(),
            capacity_type: ty.into(),
        };
        CapacityRules {
            rules: vec![
                rule("karpenter.sh/capacity-type", "spot", SPOT),
                rule("karpenter.sh/capacity-type", "on-demand", ON_DEMAND),
                rule("eks.amazonaws.com/capacityType", "SPOT", SPOT),
                rule("eks.amazonaws.com/capacityType", "ON_DEMAND", ON_DEMAND),
                rule("cloud.google.com/gke-spot", "true", SPOT),
                rule("cloud.google.com/gke-provisioning", "spot", SPOT),
                rule("kubernetes.azure.com/scalesetpriority", "spot", SPOT),
                rule("type", "virtual-kubelet", SERVERLESS),
            ],
            default: ON_DEMAND.into(),
        }
    }
}

impl CapacityRules {
    pub fn classify(&self, labels: &Labels) -> Sym {
        for r in &self.rules {
            if labels.get_str(&r.label) == Some(r.value.as_str()) {
                return Sym::new(&r.capacity_type);
            }
        }
        Sym::new(&self.default)
    }

    /// Every capacity type the rules can produce, in rule order, default last.
    pub fn known_types(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for t in self
            .rules
            .iter()
            .map(|r| &r.capacity_type)
            .chain(std::iter::once(&self.default))
        {
            if !v.contains(t) {
                v.push(t.clone());
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules() {
        let r = CapacityRules::default();
        let cases = [
            (vec![("karpenter.sh/capacity-type", "spot")], SPOT),
            (vec![("karpenter.sh/capacity-type", "on-demand")], ON_DEMAND),
            (vec![("eks.amazonaws.com/capacityType", "SPOT")], SPOT),
            (
                vec![("eks.amazonaws.com/capacityType", "ON_DEMAND")],
                ON_DEMAND,
            ),
            (vec![("cloud.google.com/gke-spot", "true")], SPOT),
            (vec![("cloud.google.com/gke-provisioning", "spot")], SPOT),
            (
                vec![("kubernetes.azure.com/scalesetpriority", "spot")],
                SPOT,
            ),
            (vec![("type", "virtual-kubelet")], SERVERLESS),
            (vec![("cloud.google.com/gke-spot", "false")], ON_DEMAND),
            (vec![], ON_DEMAND),
        ];
        for (labels, want) in cases {
            assert_eq!(
                r.classify(&Labels::from_pairs(labels.clone())).as_str(),
                want,
                "{labels:?}"
            );
        }
        assert_eq!(r.known_types(), vec![SPOT, ON_DEMAND, SERVERLESS]);
    }
}
