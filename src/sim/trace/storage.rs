//! Trace events for storage: classes, volumes, claims and CSI attach limits,
//! for traces whose pods mount claims (`pod_submit.claims`, and Spark's
//! OnDemand claims through `app_submit.executor_claim`).

use super::TraceError;
use crate::model::{
    self, AccessModes, BindingMode, Claim, CsiNode, Labels, PersistentVolume, StorageClass, Sym,
    TopologyTerm, VolumePhase, VolumeSource,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `WaitForFirstConsumer` (the default, as Spark's claims nearly always use) or `Immediate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum VolumeBindingMode {
    #[default]
    WaitForFirstConsumer,
    Immediate,
}

/// A StorageClass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageClassAdd {
    pub name: String,
    /// A CSI driver (e.g. `ebs.csi.aws.com`), or `kubernetes.io/no-provisioner`
    /// for static volumes only.
    pub provisioner: String,
    #[serde(default)]
    pub binding_mode: VolumeBindingMode,
    /// Zones volumes may be provisioned in (`allowedTopologies` on
    /// `topology.kubernetes.io/zone`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_zones: Vec<String>,
}

impl StorageClassAdd {
    pub fn to_class(&self) -> StorageClass {
        let mut allowed_topologies = Vec::new();
        if !self.allowed_zones.is_empty() {
            allowed_topologies.push(TopologyTerm(vec![(
                Sym::new(model::LABEL_ZONE),
                self.allowed_zones.iter().map(|z| Sym::new(z)).collect(),
            )]));
        }
        StorageClass {
            name: Sym::new(&self.name),
            provisioner: Sym::new(&self.provisioner),
            binding_mode: Some(match self.binding_mode {
                VolumeBindingMode::WaitForFirstConsumer => BindingMode::WaitForFirstConsumer,
                VolumeBindingMode::Immediate => BindingMode::Immediate,
            }),
            allowed_topologies,
        }
    }
}

/// A PersistentVolume, available (static) unless a `claim_add` binds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeAdd {
    pub name: String,
    #[serde(default)]
    pub storage_class: String,
    /// A quantity (`"100Gi"`).
    pub capacity: String,
    /// The volume lives in this zone (node affinity and label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The volume lives on this node (a local volume: hostname node affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The CSI driver attaching it, for attach limits; absent: none counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

impl VolumeAdd {
    pub fn to_volume(&self) -> Result<PersistentVolume, TraceError> {
        let object = format!("volume_add {}", self.name);
        let capacity = quantity(&self.capacity, &object, "capacity")?;
        Ok(volume_at(
            &self.name,
            Sym::new(&self.storage_class),
            capacity,
            self.zone.as_deref(),
            self.node.as_deref(),
            self.driver.as_deref(),
        ))
    }
}

/// A volume of `class` and `capacity` in `zone` and/or on `node`, available.
pub fn volume_at(
    name: &str,
    class: Sym,
    capacity: i64,
    zone: Option<&str>,
    node: Option<&str>,
    driver: Option<&str>,
) -> PersistentVolume {
    let mut exprs = Vec::new();
    let mut labels = Vec::new();
    if let Some(z) = zone {
        exprs.push(in_values(model::LABEL_ZONE, z));
        labels.push((model::LABEL_ZONE, z));
    }
    if let Some(n) = node {
        exprs.push(in_values(model::LABEL_HOSTNAME, n));
    }
    PersistentVolume {
        name: name.to_owned(),
        labels: Labels::from_pairs(labels),
        class,
        capacity,
        access_modes: AccessModes::RWO,
        block: false,
        attributes_class: Sym::new(""),
        claim_ref: None,
        phase: VolumePhase::Available,
        node_affinity: (!exprs.is_empty()).then(|| {
            vec![model::NodeSelectorTerm {
                match_expressions: exprs,
                match_fields: Vec::new(),
                valid: true,
            }]
        }),
        source: match driver {
            Some(d) => VolumeSource::Csi {
                driver: Sym::new(d),
                handle: name.to_owned(),
            },
            None => VolumeSource::Other,
        },
        deleting: false,
        bound_by_controller: false,
        resource_version: "1".into(),
    }
}

fn in_values(key: &str, value: &str) -> model::Requirement {
    model::Requirement {
        key: Sym::new(key),
        op: model::SelectorOp::In,
        values: vec![Sym::new(value)],
        number: 0,
    }
}

/// A storage quantity in bytes; errors name the object and field.
pub(super) fn quantity(q: &str, object: &str, field: &str) -> Result<i64, TraceError> {
    let err = |message: String| TraceError::Field {
        object: object.to_owned(),
        field: field.to_owned(),
        message,
    };
    let parsed = model::Quantity::parse(q).map_err(|e| err(e.to_string()))?;
    if parsed.is_negative() {
        return Err(err(format!("negative quantity {q:?}")));
    }
    Ok(parsed.value())
}

/// A PersistentVolumeClaim; with `volume`, bound to that volume (which must exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimAdd {
    pub name: String,
    #[serde(default = "super::default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub storage_class: String,
    /// A quantity (`"100Gi"`), default none.
    #[serde(default = "zero")]
    pub request: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

fn zero() -> String {
    "0".into()
}

impl ClaimAdd {
    pub fn to_claim(&self) -> Result<Claim, TraceError> {
        let object = format!("claim_add {}/{}", self.namespace, self.name);
        let request = quantity(&self.request, &object, "request")?;
        Ok(claim(
            &self.namespace,
            &self.name,
            Sym::new(&self.storage_class),
            request,
        ))
    }
}

/// An unbound `ReadWriteOnce` claim.
pub fn claim(namespace: &str, name: &str, class: Sym, request: i64) -> Claim {
    Claim::new(namespace, name, class, request)
}

/// Spark's OnDemand claim for each executor
/// (`spark.kubernetes.executor.volumes.persistentVolumeClaim.<name>.options.claimName=OnDemand`):
/// created with the executor as `<pod>-pvc-0`, deleted with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorClaim {
    pub storage_class: String,
    /// A quantity (`"200Gi"`).
    pub request: String,
}

impl ExecutorClaim {
    pub fn request_bytes(&self, app: &str) -> Result<i64, TraceError> {
        quantity(
            &self.request,
            &format!("app_submit {app}"),
            "executor_claim.request",
        )
    }
}

/// A node's CSI drivers and their attach limits (`node_add.volume_limits`).
pub fn csi_node(node: &str, limits: &BTreeMap<String, u32>) -> CsiNode {
    CsiNode {
        name: Sym::new(node),
        drivers: limits
            .iter()
            .map(|(d, &n)| (Sym::new(d), Some(i64::from(n))))
            .collect(),
        migrated_plugins: Vec::new(),
    }
}
