//! Kubernetes objects read from files (YAML or JSON; `---`-separated documents
//! and `kind: List`), converted to the internal model. Used by `explain`, tests
//! and fixtures. Errors name the file, the document's line and the field.

use crate::model::{
    capacity_from_k8s, claim_from_k8s, csi_driver_from_k8s, csi_node_from_k8s, node_from_k8s,
    pod_from_k8s, storage_class_from_k8s, volume_from_k8s, Claim, ConvertError, CsiDriver, CsiNode,
    Node, PersistentVolume, Pod, PriorityResolver, StorageCapacity, StorageClass,
};
use crate::preemption::{pdb_from_k8s, Pdb};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::Value;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}:{line}: {message}")]
    Object {
        file: String,
        line: usize,
        message: String,
    },
}

/// The objects of one or more manifest files, converted.
#[derive(Debug, Default)]
pub struct Manifests {
    pub nodes: Vec<Node>,
    /// Bound pods (with `spec.nodeName`).
    pub bound_pods: Vec<Pod>,
    pub pdbs: Vec<Pdb>,
    pub priority_classes: Vec<PriorityClass>,
    /// Storage: claims, volumes, classes, CSI nodes, drivers and capacities.
    pub claims: Vec<Claim>,
    pub volumes: Vec<PersistentVolume>,
    pub storage_classes: Vec<StorageClass>,
    pub csi_nodes: Vec<CsiNode>,
    pub csi_drivers: Vec<CsiDriver>,
    pub capacities: Vec<StorageCapacity>,
    /// Kinds we skipped, with their line, for a warning.
    pub skipped: Vec<(usize, String)>,
    /// Pods without `spec.nodeName` (ignored by explain).
    pub unbound_pods: usize,
}

impl Manifests {
    /// The named class, or the global default when no name is given.
    fn priority_class(&self, class_name: Option<&str>) -> Option<&PriorityClass> {
        self.priority_classes.iter().find(|pc| match class_name {
            Some(name) => pc.metadata.name.as_deref() == Some(name),
            None => pc.global_default == Some(true),
        })
    }
}

impl PriorityResolver for Manifests {
    fn priority_of(&self, class_name: Option<&str>) -> Option<i32> {
        self.priority_class(class_name).map(|pc| pc.value)
    }

    fn preemption_policy_of(&self, class_name: Option<&str>) -> Option<String> {
        self.priority_class(class_name)?.preemption_policy.clone()
    }
}

/// One raw object with the line its document starts on.
#[derive(Debug)]
pub struct RawObject {
    pub line: usize,
    pub value: Value,
}

pub fn read_file(path: &Path) -> Result<(String, String), ManifestError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        file: file.clone(),
        source,
    })?;
    Ok((file, text))
}

/// Splits a file into objects, flattening `kind: List`.
pub fn parse_objects(file: &str, text: &str) -> Result<Vec<RawObject>, ManifestError> {
    let syntax = |message: String| ManifestError::Syntax {
        file: file.to_owned(),
        message: first_line(&message),
    };
    let docs: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        let v: Value = serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?;
        vec![v]
    } else {
        serde_saphyr::from_multiple::<Value>(text).map_err(|e| syntax(e.to_string()))?
    };
    let starts = document_lines(text);
    let mut out = Vec::new();
    let mut doc_index = 0;
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        let line = starts.get(doc_index).copied().unwrap_or(1);
        doc_index += 1;
        match doc {
            Value::Array(items) => {
                out.extend(items.into_iter().map(|value| RawObject { line, value }))
            }
            Value::Object(ref m)
                if m.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List")) =>
            {
                let items = m
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                out.extend(items.into_iter().map(|value| RawObject { line, value }));
            }
            other => out.push(RawObject { line, value: other }),
        }
    }
    Ok(out)
}

/// Parser messages may carry a multi-line source excerpt; errors are reported on one line.
pub fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_owned()
}

/// First line of each non-empty YAML document.
fn document_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut in_doc = false;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with("---") {
            in_doc = false;
            continue;
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !in_doc {
            starts.push(i + 1);
            in_doc = true;
        }
    }
    starts
}

fn kind_of(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn typed<T: serde::de::DeserializeOwned>(file: &str, o: &RawObject) -> Result<T, ManifestError> {
    serde_json::from_value(o.value.clone()).map_err(|e| ManifestError::Object {
        file: file.to_owned(),
        line: o.line,
        message: format!("{}: {e}", kind_of(&o.value)),
    })
}

/// `o` typed as `T`, then converted; errors name the file and the line.
fn converted<T: serde::de::DeserializeOwned, M>(
    file: &str,
    o: &RawObject,
    convert: impl Fn(&T) -> Result<M, ConvertError>,
) -> Result<M, ManifestError> {
    let t: T = typed(file, o)?;
    convert(&t).map_err(|e| ManifestError::Object {
        file: file.to_owned(),
        line: o.line,
        message: e.to_string(),
    })
}

/// Reads a snapshot file of Nodes, Pods, PodDisruptionBudgets, PriorityClasses
/// and storage objects (PersistentVolumeClaims, PersistentVolumes,
/// StorageClasses, CSINodes, CSIDrivers, CSIStorageCapacities).
pub fn load_snapshot_file(path: &Path) -> Result<Manifests, ManifestError> {
    let (file, text) = read_file(path)?;
    let objects = parse_objects(&file, &text)?;
    let mut m = Manifests::default();
    let mut pods = Vec::new();
    for o in &objects {
        match kind_of(&o.value) {
            "Node" => {
                let n: core::Node = typed(&file, o)?;
                m.nodes
                    .push(node_from_k8s(&n).map_err(|e| ManifestError::Object {
                        file: file.clone(),
                        line: o.line,
                        message: e.to_string(),
                    })?);
            }
            "Pod" => pods.push((o.line, typed::<core::Pod>(&file, o)?)),
            "PodDisruptionBudget" => {
                let pdb: PodDisruptionBudget = typed(&file, o)?;
                m.pdbs
                    .push(pdb_from_k8s(&pdb).map_err(|e| ManifestError::Object {
                        file: file.clone(),
                        line: o.line,
                        message: e.to_string(),
                    })?);
            }
            "PriorityClass" => m.priority_classes.push(typed(&file, o)?),
            "PersistentVolumeClaim" => m.claims.push(converted(&file, o, claim_from_k8s)?),
            "PersistentVolume" => m.volumes.push(converted(&file, o, volume_from_k8s)?),
            "StorageClass" => m
                .storage_classes
                .push(converted(&file, o, storage_class_from_k8s)?),
            "CSINode" => m.csi_nodes.push(converted(&file, o, csi_node_from_k8s)?),
            "CSIDriver" => m
                .csi_drivers
                .push(converted(&file, o, csi_driver_from_k8s)?),
            "CSIStorageCapacity" => m.capacities.push(converted(&file, o, capacity_from_k8s)?),
            other => m.skipped.push((
                o.line,
                if other.is_empty() {
                    "<no kind>".into()
                } else {
                    other.to_owned()
                },
            )),
        }
    }
    // Pods after PriorityClasses, so `priorityClassName` resolves wherever the class is written.
    for (line, p) in pods {
        let pod = pod_from_k8s(&p, &m).map_err(|e| ManifestError::Object {
            file: file.clone(),
            line,
            message: e.to_string(),
        })?;
        if pod.node_name.is_some() {
            m.bound_pods.push(pod);
        } else {
            m.unbound_pods += 1;
        }
    }
    Ok(m)
}

/// Reads one Pod manifest (the pod to schedule).
pub fn load_pod_file(path: &Path, priorities: &dyn PriorityResolver) -> Result<Pod, ManifestError> {
    let (file, text) = read_file(path)?;
    let objects = parse_objects(&file, &text)?;
    let o = match objects.as_slice() {
        [o] => o,
        [] => {
            return Err(ManifestError::Syntax {
                file,
                message: "no object found; expected one Pod".into(),
            })
        }
        _ => {
            return Err(ManifestError::Syntax {
                file,
                message: format!("{} objects found; expected one Pod", objects.len()),
            })
        }
    };
    if kind_of(&o.value) != "Pod" {
        return Err(ManifestError::Object {
            file,
            line: o.line,
            message: format!("expected kind Pod, found {:?}", kind_of(&o.value)),
        });
    }
    let p: core::Pod = typed(&file, o)?;
    pod_from_k8s(&p, priorities).map_err(|e| ManifestError::Object {
        file,
        line: o.line,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_lists() {
        let text = "\
# a comment
apiVersion: v1
kind: Node
metadata: {name: a}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: b}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}
";
        let objs = parse_objects("f.yaml", text).unwrap();
        assert_eq!(objs.len(), 3);
        assert_eq!(objs[0].line, 2);
        assert_eq!(objs[1].line, 6);
    }

    #[test]
    fn json_file() {
        let objs = parse_objects(
            "f.json",
            r#"{"kind":"List","items":[{"kind":"Node","metadata":{"name":"a"}}]}"#,
        )
        .unwrap();
        assert_eq!(objs.len(), 1);
    }

    /// As the Priority admission plugin: a pod without spec.priority takes its
    /// class's value and, when it sets none itself, its class's preemptionPolicy.
    #[test]
    fn priority_class_gives_value_and_preemption_policy() {
        let m = Manifests {
            priority_classes: vec![
                serde_saphyr::from_str(
                    "metadata: {name: batch}\nvalue: 100\npreemptionPolicy: Never\n",
                )
                .unwrap(),
                serde_saphyr::from_str("metadata: {name: base}\nvalue: 5\nglobalDefault: true\n")
                    .unwrap(),
            ],
            ..Default::default()
        };
        let pod = |spec: &str| {
            let p: k8s_openapi::api::core::v1::Pod = serde_saphyr::from_str(&format!(
                "metadata: {{name: p}}\nspec: {{containers: [{{name: a, image: x}}], {spec}}}\n"
            ))
            .unwrap();
            pod_from_k8s(&p, &m).unwrap()
        };
        let never = crate::model::PreemptionPolicy::Never;
        let p = pod("priorityClassName: batch");
        assert_eq!((p.priority, p.preemption_policy), (100, never));
        let p = pod("schedulerName: x");
        assert_eq!(p.priority, 5);
        assert_ne!(p.preemption_policy, never);
    }

    #[test]
    fn bad_yaml_names_file() {
        let e =
            parse_objects("bad.yaml", "kind: Node\nmetadata: {name: x\n  labels: [\n").unwrap_err();
        assert!(e.to_string().starts_with("bad.yaml: "), "{e}");
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
        assert!(e.to_string().contains("line"), "{e}");
    }
}
