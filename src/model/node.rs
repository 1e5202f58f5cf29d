//! Nodes and taints.

use super::{Interned, Labels, Resources, Sym};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn parse(s: &str) -> Option<TaintEffect> {
        Some(match s {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Taint {
    pub key: Sym,
    pub value: Sym,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: Sym,
    pub uid: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    /// Keeps the node's name and label values interned while the node lives
    /// (`model::intern`): nodes an autoscaler makes have new names every time.
    #[serde(skip)]
    pub interned: Interned,
    /// `status.images`, for ImageLocality.
    pub images: super::NodeImages,
}

impl Node {
    /// A node with the given allocatable, no labels beyond the hostname and no taints.
    pub fn new(name: &str, allocatable: Resources) -> Node {
        Node {
            name: Sym::new(name),
            uid: String::new(),
            labels: Labels::from_pairs([(super::LABEL_HOSTNAME, name)]),
            taints: Vec::new(),
            unschedulable: false,
            allocatable,
            interned: Interned::default(),
            images: Default::default(),
        }
    }
}
