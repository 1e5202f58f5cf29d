//! JSON merge patch (RFC 7386) and a strategic-merge-patch subset.
//!
//! Strategic merge differs from merge patch in lists that Kubernetes declares with a
//! `patchMergeKey`: those merge element-wise by that key instead of being replaced.
//! The key is looked up by field name, which is unambiguous for the served resources.

use serde_json::{Map, Value};

pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "conditions" | "addresses" => "type",
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "containerStatuses"
        | "initContainerStatuses"
        | "ephemeralContainerStatuses"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "ports" => "containerPort",
        "ownerReferences" => "uid",
        "podIPs" | "hostIPs" | "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of scalars with `patchStrategy: merge` (set union).
fn is_merged_scalar_list(field: &str) -> bool {
    field == "finalizers"
}

fn without_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = without_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if let Some(list_field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(existing)), Value::Array(remove)) =
                (target_map.get_mut(list_field), value)
            {
                existing.retain(|e| !remove.contains(e));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        let slot = target_map.entry(key.clone()).or_insert(Value::Null);
        match (value, merge_key(key)) {
            (Value::Array(items), Some(mk)) => merge_keyed_list(slot, items, mk),
            (Value::Array(items), None) if is_merged_scalar_list(key) => {
                let mut merged = slot.as_array().cloned().unwrap_or_default();
                for item in items {
                    if !merged.contains(item) {
                        merged.push(item.clone());
                    }
                }
                *slot = Value::Array(merged);
            }
            (Value::Object(_), _) => strategic_merge_patch(slot, value),
            _ => *slot = without_directives(value),
        }
    }
}

fn merge_keyed_list(slot: &mut Value, items: &[Value], key: &str) {
    let replace = items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let keyed = items
        .iter()
        .all(|i| i.get(key).is_some() || i.get("$patch").is_some());
    if replace || !keyed || !slot.is_array() {
        *slot = Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .map(without_directives)
                .collect(),
        );
        return;
    }
    let Value::Array(existing) = slot else {
        return;
    };
    for item in items {
        let Some(id) = item.get(key) else {
            continue;
        };
        let position = existing.iter().position(|e| e.get(key) == Some(id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(p) = position {
                existing.remove(p);
            }
            continue;
        }
        match position {
            Some(p) => strategic_merge_patch(&mut existing[p], item),
            None => existing.push(without_directives(item)),
        }
    }
}
