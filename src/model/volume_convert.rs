//! The edge for storage: Kubernetes storage objects, a pod's volumes and images
//! and a node's images to the internal model (`volume`), once per object.

use super::convert::{label_selector, node_selector_term, object_name, pinned_labels_of, Ctx};
use super::*;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::storage::v1 as storage;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use std::collections::BTreeMap;

fn ctx<'a>(kind: &'static str, object: &'a str) -> Ctx<'a> {
    Ctx::new(kind, object)
}

/// A storage quantity in bytes (negative ones are errors).
fn bytes(ctx: &Ctx, field: &str, q: &K8sQuantity) -> Result<i64, ConvertError> {
    let parsed = Quantity::parse(&q.0).map_err(|e| ctx.err(field, e.to_string()))?;
    if parsed.is_negative() {
        return Err(ctx.err(field, format!("negative quantity {:?}", q.0)));
    }
    Ok(parsed.value())
}

fn storage_request(
    ctx: &Ctx,
    field: &str,
    list: Option<&BTreeMap<String, K8sQuantity>>,
) -> Result<i64, ConvertError> {
    match list.and_then(|l| l.get("storage")) {
        Some(q) => bytes(ctx, &format!("{field}.storage"), q),
        None => Ok(0),
    }
}

fn access_modes(
    ctx: &Ctx,
    field: &str,
    modes: Option<&Vec<String>>,
) -> Result<AccessModes, ConvertError> {
    let mut out = AccessModes::default();
    for (i, m) in modes.into_iter().flatten().enumerate() {
        let mode = AccessModes::parse(m).ok_or_else(|| {
            ctx.err(
                format!("{field}[{i}]"),
                format!("unknown access mode {m:?}"),
            )
        })?;
        out = out.with(mode);
    }
    Ok(out)
}

fn block_mode(ctx: &Ctx, mode: Option<&str>) -> Result<bool, ConvertError> {
    match mode {
        None | Some("Filesystem") => Ok(false),
        Some("Block") => Ok(true),
        Some(o) => Err(ctx.err("spec.volumeMode", format!("unknown volume mode {o:?}"))),
    }
}

fn annotation<'a>(m: &'a meta::ObjectMeta, key: &str) -> Option<&'a str> {
    m.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn name_of<'a>(ctx: &Ctx, m: &'a meta::ObjectMeta) -> Result<&'a str, ConvertError> {
    m.name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ctx.err("metadata.name", "missing"))
}

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

pub fn claim_from_k8s(c: &core::PersistentVolumeClaim) -> Result<Claim, ConvertError> {
    let object = object_name(&c.metadata);
    let ctx = ctx("PersistentVolumeClaim", &object);
    let name = name_of(&ctx, &c.metadata)?;
    let spec = c.spec.clone().unwrap_or_default();
    let class = annotation(&c.metadata, ANN_BETA_STORAGE_CLASS)
        .or(spec.storage_class_name.as_deref())
        .unwrap_or("");
    let selector = match &spec.selector {
        Some(s) => Some(label_selector(&ctx, "spec.selector", s)?),
        None => None,
    };
    Ok(Claim {
        namespace: Sym::new(c.metadata.namespace.as_deref().unwrap_or("default")),
        name: name.to_owned(),
        uid: c.metadata.uid.clone().unwrap_or_default(),
        class: Sym::new(class),
        request: storage_request(
            &ctx,
            "spec.resources.requests",
            spec.resources.as_ref().and_then(|r| r.requests.as_ref()),
        )?,
        access_modes: access_modes(&ctx, "spec.accessModes", spec.access_modes.as_ref())?,
        block: block_mode(&ctx, spec.volume_mode.as_deref())?,
        attributes_class: Sym::new(spec.volume_attributes_class_name.as_deref().unwrap_or("")),
        selector,
        volume_name: spec.volume_name.clone().unwrap_or_default(),
        bind_completed: annotation(&c.metadata, ANN_BIND_COMPLETED).is_some(),
        selected_node: annotation(&c.metadata, ANN_SELECTED_NODE).map(Sym::new),
        lost: c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost"),
        deleting: c.metadata.deletion_timestamp.is_some(),
        owner_uid: c
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone()),
        resource_version: c.metadata.resource_version.clone().unwrap_or_default(),
    })
}

/// The source of a persistent volume as attach limits see it.
fn volume_source(spec: &core::PersistentVolumeSpec) -> VolumeSource {
    if let Some(csi) = &spec.csi {
        return VolumeSource::Csi {
            driver: Sym::new(&csi.driver),
            handle: csi.volume_handle.clone(),
        };
    }
    let in_tree = |plugin, handle| VolumeSource::InTree { plugin, handle };
    if let Some(s) = &spec.aws_elastic_block_store {
        return in_tree(InTreePlugin::AwsEbs, ebs_volume_handle(&s.volume_id));
    }
    if let Some(s) = &spec.gce_persistent_disk {
        return in_tree(InTreePlugin::GcePd, s.pd_name.clone());
    }
    if let Some(s) = &spec.azure_disk {
        return in_tree(InTreePlugin::AzureDisk, s.disk_uri.clone());
    }
    if let Some(s) = &spec.cinder {
        return in_tree(InTreePlugin::Cinder, s.volume_id.clone());
    }
    if let Some(s) = &spec.portworx_volume {
        return in_tree(InTreePlugin::Portworx, s.volume_id.clone());
    }
    VolumeSource::Other
}

pub fn volume_from_k8s(v: &core::PersistentVolume) -> Result<PersistentVolume, ConvertError> {
    let object = object_name(&v.metadata);
    let ctx = ctx("PersistentVolume", &object);
    let name = name_of(&ctx, &v.metadata)?;
    let spec = v.spec.clone().unwrap_or_default();
    let class = annotation(&v.metadata, ANN_BETA_STORAGE_CLASS)
        .or(spec.storage_class_name.as_deref())
        .unwrap_or("");
    let phase = match v.status.as_ref().and_then(|s| s.phase.as_deref()) {
        None | Some("Pending") => VolumePhase::Pending,
        Some("Available") => VolumePhase::Available,
        Some("Bound") => VolumePhase::Bound,
        Some("Released") => VolumePhase::Released,
        Some("Failed") => VolumePhase::Failed,
        Some(o) => return Err(ctx.err("status.phase", format!("unknown phase {o:?}"))),
    };
    let node_affinity = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .map(|sel| {
            sel.node_selector_terms
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    node_selector_term(
                        &ctx,
                        &format!("spec.nodeAffinity.required.nodeSelectorTerms[{i}]"),
                        t,
                    )
                })
                .collect()
        });
    Ok(PersistentVolume {
        name: name.to_owned(),
        labels: pinned_labels_of(&v.metadata.labels),
        class: Sym::new(class),
        capacity: storage_request(&ctx, "spec.capacity", spec.capacity.as_ref())?,
        access_modes: access_modes(&ctx, "spec.accessModes", spec.access_modes.as_ref())?,
        block: block_mode(&ctx, spec.volume_mode.as_deref())?,
        attributes_class: Sym::new(spec.volume_attributes_class_name.as_deref().unwrap_or("")),
        claim_ref: spec.claim_ref.as_ref().map(|r| ClaimRef {
            namespace: Sym::new(r.namespace.as_deref().unwrap_or("")),
            name: r.name.clone().unwrap_or_default(),
            uid: r.uid.clone().unwrap_or_default(),
        }),
        phase,
        node_affinity,
        source: volume_source(&spec),
        deleting: v.metadata.deletion_timestamp.is_some(),
        bound_by_controller: annotation(&v.metadata, ANN_BOUND_BY_CONTROLLER).is_some(),
        resource_version: v.metadata.resource_version.clone().unwrap_or_default(),
    })
}

pub fn storage_class_from_k8s(c: &storage::StorageClass) -> Result<StorageClass, ConvertError> {
    let object = object_name(&c.metadata);
    let ctx = ctx("StorageClass", &object);
    let name = name_of(&ctx, &c.metadata)?;
    let binding_mode = match c.volume_binding_mode.as_deref() {
        None => None,
        Some("Immediate") => Some(BindingMode::Immediate),
        Some("WaitForFirstConsumer") => Some(BindingMode::WaitForFirstConsumer),
        Some(o) => return Err(ctx.err("volumeBindingMode", format!("unknown binding mode {o:?}"))),
    };
    let allowed_topologies = c
        .allowed_topologies
        .iter()
        .flatten()
        .map(|t| {
            TopologyTerm(
                t.match_label_expressions
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            Sym::new(&r.key),
                            r.values.iter().map(|v| Sym::new(v)).collect(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    Ok(StorageClass {
        name: Sym::new(name),
        provisioner: Sym::new(&c.provisioner),
        binding_mode,
        allowed_topologies,
    })
}

pub fn csi_node_from_k8s(n: &storage::CSINode) -> Result<CsiNode, ConvertError> {
    let object = object_name(&n.metadata);
    let ctx = ctx("CSINode", &object);
    let name = name_of(&ctx, &n.metadata)?;
    let drivers = n
        .spec
        .drivers
        .iter()
        .map(|d| {
            (
                Sym::new(&d.name),
                d.allocatable.as_ref().and_then(|a| a.count).map(i64::from),
            )
        })
        .collect();
    let migrated_plugins = annotation(&n.metadata, ANN_MIGRATED_PLUGINS)
        .map(|a| {
            a.split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(CsiNode {
        name: Sym::new(name),
        drivers,
        migrated_plugins,
    })
}

pub fn csi_driver_from_k8s(d: &storage::CSIDriver) -> Result<CsiDriver, ConvertError> {
    let object = object_name(&d.metadata);
    let ctx = ctx("CSIDriver", &object);
    let name = name_of(&ctx, &d.metadata)?;
    Ok(CsiDriver {
        name: Sym::new(name),
        storage_capacity: d.spec.storage_capacity == Some(true),
    })
}

pub fn capacity_from_k8s(c: &storage::CSIStorageCapacity) -> Result<StorageCapacity, ConvertError> {
    let object = object_name(&c.metadata);
    let ctx = ctx("CSIStorageCapacity", &object);
    let name = name_of(&ctx, &c.metadata)?;
    let node_topology = match &c.node_topology {
        Some(s) => Some(label_selector(&ctx, "nodeTopology", s)?),
        None => None,
    };
    let quantity =
        |field: &str, q: Option<&K8sQuantity>| q.map(|q| bytes(&ctx, field, q)).transpose();
    Ok(StorageCapacity {
        namespace: Sym::new(c.metadata.namespace.as_deref().unwrap_or("default")),
        name: name.to_owned(),
        class: Sym::new(&c.storage_class_name),
        node_topology,
        capacity: quantity("capacity", c.capacity.as_ref())?,
        maximum_volume_size: quantity("maximumVolumeSize", c.maximum_volume_size.as_ref())?,
    })
}

/// The pod's volumes that the volume plugins look at, in spec order.
pub(super) fn pod_volumes(
    ctx: &Ctx,
    pod_name: &str,
    spec: &core::PodSpec,
) -> Result<Vec<PodVolume>, ConvertError> {
    let mut out = Vec::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let read_only = |r: Option<bool>| r.unwrap_or(false);
        let volume = if let Some(c) = &v.persistent_volume_claim {
            if c.claim_name.is_empty() {
                return Err(ctx.err(
                    format!("spec.volumes[{i}].persistentVolumeClaim.claimName"),
                    "must not be empty",
                ));
            }
            PodVolume::Claim {
                claim: c.claim_name.clone(),
                ephemeral: false,
            }
        } else if v.ephemeral.is_some() {
            // Upstream `ephemeral.VolumeClaimName`.
            PodVolume::Claim {
                claim: format!("{pod_name}-{}", v.name),
                ephemeral: true,
            }
        } else if let Some(d) = &v.gce_persistent_disk {
            PodVolume::Disk(InlineDisk::GcePd {
                pd_name: d.pd_name.clone(),
                read_only: read_only(d.read_only),
            })
        } else if let Some(d) = &v.aws_elastic_block_store {
            PodVolume::Disk(InlineDisk::AwsEbs {
                volume_id: d.volume_id.clone(),
                read_only: read_only(d.read_only),
            })
        } else if let Some(d) = &v.iscsi {
            PodVolume::Disk(InlineDisk::Iscsi {
                iqn: d.iqn.clone(),
                read_only: read_only(d.read_only),
            })
        } else if let Some(d) = &v.rbd {
            PodVolume::Disk(InlineDisk::Rbd {
                monitors: d.monitors.clone(),
                // The API server defaults the pool; objects from files may lack it.
                pool: d.pool.clone().unwrap_or_else(|| "rbd".into()),
                image: d.image.clone(),
                read_only: read_only(d.read_only),
            })
        } else if let Some(d) = &v.azure_disk {
            PodVolume::Disk(InlineDisk::AzureDisk {
                disk_uri: d.disk_uri.clone(),
            })
        } else if let Some(d) = &v.cinder {
            PodVolume::Disk(InlineDisk::Cinder {
                volume_id: d.volume_id.clone(),
            })
        } else if let Some(d) = &v.portworx_volume {
            PodVolume::Disk(InlineDisk::Portworx {
                volume_id: d.volume_id.clone(),
            })
        } else {
            continue;
        };
        out.push(volume);
    }
    Ok(out)
}

/// Every init container's and container's image, normalized, in that order
/// (upstream ImageLocality counts both kinds).
pub(super) fn pod_images(spec: &core::PodSpec) -> Box<[Sym]> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| Sym::new(&normalized_image_name(c.image.as_deref().unwrap_or(""))))
        .collect()
}

/// `status.images`, every name of every image with its size. Names are
/// interned: nodes share their images, and an update of an unchanged list
/// compares integers.
pub(super) fn node_images(status: Option<&core::NodeStatus>) -> NodeImages {
    let mut pairs = Vec::new();
    for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
        let size = image.size_bytes.unwrap_or(0);
        for name in image.names.iter().flatten() {
            pairs.push((Sym::new(name), size));
        }
    }
    NodeImages::from_pairs(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(y: &str) -> T {
        serde_saphyr::from_str(y).unwrap()
    }

    #[test]
    fn claim_conversion() {
        let c: core::PersistentVolumeClaim = yaml(
            r#"
metadata:
  name: data
  namespace: spark
  uid: u1
  resourceVersion: "42"
  annotations: {volume.kubernetes.io/selected-node: n1}
  ownerReferences: [{apiVersion: v1, kind: Pod, name: p, uid: pod-uid, controller: true}]
spec:
  storageClassName: gp3
  accessModes: [ReadWriteOnce, ReadWriteOncePod]
  resources: {requests: {storage: 100Gi}}
"#,
        );
        let m = claim_from_k8s(&c).unwrap();
        assert_eq!(m.class.as_str(), "gp3");
        assert_eq!(m.request, 100 << 30);
        assert!(m.access_modes.contains(AccessModes::RWOP));
        assert_eq!(m.selected_node.map(Sym::as_str), Some("n1"));
        assert_eq!(m.owner_uid.as_deref(), Some("pod-uid"));
        assert!(!m.fully_bound());
        assert_eq!(m.resource_version, "42");
    }

    #[test]
    fn beta_class_annotation_wins() {
        let c: core::PersistentVolumeClaim = yaml(
            r#"
metadata:
  name: data
  annotations: {volume.beta.kubernetes.io/storage-class: old}
spec: {storageClassName: new}
"#,
        );
        assert_eq!(claim_from_k8s(&c).unwrap().class.as_str(), "old");
    }

    #[test]
    fn bad_claim_quantity_names_the_field() {
        let c: core::PersistentVolumeClaim = yaml(
            "metadata: {name: d, namespace: ns}\nspec: {resources: {requests: {storage: lots}}}\n",
        );
        let e = claim_from_k8s(&c).unwrap_err();
        assert_eq!(e.field, "spec.resources.requests.storage");
        assert_eq!(e.object, "ns/d");
    }

    #[test]
    fn volume_conversion() {
        let v: core::PersistentVolume = yaml(
            r#"
metadata: {name: pv1, labels: {topology.kubernetes.io/zone: zone-b}}
spec:
  storageClassName: gp3
  capacity: {storage: 200Gi}
  accessModes: [ReadWriteOnce]
  awsElasticBlockStore: {volumeID: "aws://zone-b/vol-9"}
  claimRef: {namespace: spark, name: data, uid: u1}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [zone-b]}]
status: {phase: Bound}
"#,
        );
        let m = volume_from_k8s(&v).unwrap();
        assert_eq!(m.capacity, 200 << 30);
        assert_eq!(m.phase, VolumePhase::Bound);
        assert_eq!(
            m.source,
            VolumeSource::InTree {
                plugin: InTreePlugin::AwsEbs,
                handle: "vol-9".into()
            }
        );
        let b = Labels::from_pairs([("topology.kubernetes.io/zone", "zone-b")]);
        let a = Labels::from_pairs([("topology.kubernetes.io/zone", "zone-a")]);
        assert!(m.fits_node(&b, Sym::new("n")));
        assert!(!m.fits_node(&a, Sym::new("n")));
    }

    #[test]
    fn storage_class_topologies() {
        let c: storage::StorageClass = yaml(
            r#"
metadata: {name: gp3}
provisioner: ebs.csi.aws.com
volumeBindingMode: WaitForFirstConsumer
allowedTopologies:
- matchLabelExpressions: [{key: topology.kubernetes.io/zone, values: [zone-a, zone-b]}]
"#,
        );
        let m = storage_class_from_k8s(&c).unwrap();
        assert_eq!(m.binding_mode, Some(BindingMode::WaitForFirstConsumer));
        let zone = |z| Labels::from_pairs([("topology.kubernetes.io/zone", z)]);
        assert!(m.allows(&zone("zone-b")));
        assert!(!m.allows(&zone("zone-c")));
        assert!(!m.allows(&Labels::default()));
    }

    #[test]
    fn pod_volumes_keep_claims_and_disks_only() {
        let p: core::Pod = yaml(
            r#"
metadata: {name: exec-1, namespace: spark}
spec:
  containers: [{name: c, image: spark}]
  volumes:
  - {name: conf, configMap: {name: c}}
  - {name: spill, persistentVolumeClaim: {claimName: exec-1-pvc-0}}
  - {name: scratch, ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}}
  - {name: disk, gcePersistentDisk: {pdName: pd-1, readOnly: true}}
"#,
        );
        let ctx = ctx("Pod", "spark/exec-1");
        let v = pod_volumes(&ctx, "exec-1", p.spec.as_ref().unwrap()).unwrap();
        assert_eq!(
            v,
            [
                PodVolume::Claim {
                    claim: "exec-1-pvc-0".into(),
                    ephemeral: false
                },
                PodVolume::Claim {
                    claim: "exec-1-scratch".into(),
                    ephemeral: true
                },
                PodVolume::Disk(InlineDisk::GcePd {
                    pd_name: "pd-1".into(),
                    read_only: true
                }),
            ]
        );
        assert_eq!(
            pod_images(p.spec.as_ref().unwrap())
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
            ["spark:latest"]
        );
    }

    #[test]
    fn node_images_list_every_name() {
        let n: core::Node = yaml(
            r#"
metadata: {name: n1}
status:
  images:
  - {names: ["spark@sha256:abc", "spark:3.5"], sizeBytes: 1000000000}
  - {names: ["pause:3.9"], sizeBytes: 300000}
"#,
        );
        let imgs = node_images(n.status.as_ref());
        assert_eq!(imgs.0.len(), 3);
        assert!(imgs.contains(Sym::new("spark:3.5")));
        assert!(imgs
            .iter()
            .any(|(s, b)| s.as_str() == "spark@sha256:abc" && b == 1_000_000_000));
    }
}
