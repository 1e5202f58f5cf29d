//! REST semantics over the store: create, replace, patch, delete, binding.
//! Follows the real registry where a scheduler could observe a difference.

use serde_json::{json, Value};

use super::patch::{merge_patch, strategic_merge_patch};
use super::resources::{resource, ResourceId, ResourceType};
use super::status::ApiError;
use super::store::Store;
use super::validation;

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource: status changes are ignored for resources with a status subresource.
    Main,
    /// The `status` subresource: only status changes.
    Status,
    /// Everything (test-handle writes standing in for kubelets and controllers).
    Whole,
}

/// Who is creating: API clients get the real server's validation; the test handle is lenient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Api,
    Handle,
}

pub fn now_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn new_uid() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Namespace an object lives in ("" for cluster-scoped resources).
pub fn namespace_for(
    rt: &ResourceType,
    path_namespace: Option<&str>,
    body: &Value,
) -> Result<String, ApiError> {
    if !rt.namespaced {
        return Ok(String::new());
    }
    match (path_namespace, meta_str(body, "namespace")) {
        (Some(p), Some(b)) if p != b => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        (Some(p), _) => Ok(p.to_string()),
        (None, Some(b)) => Ok(b.to_string()),
        (None, None) => Ok("default".to_string()),
    }
}

/// The structural checks the real server's schema would make before any field is
/// touched here: the parts this server reads or writes must have the right JSON type.
fn check_shape(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or("");
    let wrong = |field: &str, want: &str| {
        Err(ApiError::invalid(
            rt,
            name,
            format!(
                "{} \"{name}\" is invalid: {field}: Invalid value: must be {want}",
                rt.kind
            ),
        ))
    };
    for field in ["metadata", "spec", "status"] {
        if obj
            .get(field)
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            return wrong(field, "an object");
        }
    }
    for field in ["labels", "annotations"] {
        if let Some(map) = obj.get("metadata").and_then(|m| m.get(field)) {
            let ok = map.is_null()
                || map
                    .as_object()
                    .is_some_and(|m| m.values().all(Value::is_string));
            if !ok {
                return wrong(&format!("metadata.{field}"), "a map of strings");
            }
        }
    }
    Ok(())
}

fn set_type_meta(rt: &ResourceType, obj: &mut Value) {
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
}

/// Defaults the real API server applies that selectors and schedulers depend on.
fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    if rt.group.is_empty() && rt.plural == "pods" {
        if obj.pointer("/spec/schedulerName").is_none() {
            obj["spec"]["schedulerName"] = json!("default-scheduler");
        }
        if obj.pointer("/status/phase").is_none() {
            obj["status"]["phase"] = json!("Pending");
        }
    }
}

pub fn create(
    store: &Store,
    res: ResourceId,
    path_namespace: Option<&str>,
    mut body: Value,
    origin: Origin,
) -> Result<Value, ApiError> {
    let rt = resource(res);
    if !body.is_object() {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    check_shape(rt, &body)?;
    let namespace = namespace_for(rt, path_namespace, &body)?;
    if meta_str(&body, "resourceVersion").is_some() {
        if origin == Origin::Api {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        body["metadata"]["resourceVersion"] = Value::Null;
    }
    let name = match (meta_str(&body, "name"), meta_str(&body, "generateName")) {
        (Some(n), _) => n.to_string(),
        (None, Some(prefix)) => format!("{prefix}{}", random_suffix()),
        (None, None) => {
            return Err(ApiError::invalid(
                rt,
                "",
                format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    rt.kind
                ),
            ))
        }
    };
    set_type_meta(rt, &mut body);
    apply_defaults(rt, &mut body);
    let meta = &mut body["metadata"];
    meta["name"] = json!(name);
    if rt.namespaced {
        meta["namespace"] = json!(namespace);
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    meta["uid"] = json!(new_uid());
    meta["creationTimestamp"] = json!(now_timestamp());
    meta["generation"] = json!(1);
    if let Some(m) = meta.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    if origin == Origin::Api {
        validation::validate_create(rt, &body)?;
    }
    store.insert(res, &namespace, &name, body)
}

/// Carries over what a client cannot change, and applies the write scope.
fn finish_write(rt: &ResourceType, current: &Value, mut next: Value, scope: Scope) -> Value {
    match scope {
        Scope::Whole => {}
        Scope::Main if rt.has_status => match current.get("status") {
            Some(status) => next["status"] = status.clone(),
            None => {
                if let Some(m) = next.as_object_mut() {
                    m.remove("status");
                }
            }
        },
        Scope::Main => {}
        Scope::Status => {
            let mut only_status = current.clone();
            match next.get("status") {
                Some(status) => only_status["status"] = status.clone(),
                None => {
                    if let Some(m) = only_status.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            next = only_status;
        }
    }
    set_type_meta(rt, &mut next);
    if !next.get("metadata").is_some_and(Value::is_object) {
        next["metadata"] = json!({});
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
    ] {
        match current.pointer(&format!("/metadata/{field}")) {
            Some(v) => next["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = next["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    let generation = current
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let spec_changed = current.get("spec") != next.get("spec");
    next["metadata"]["generation"] = json!(if spec_changed {
        generation + 1
    } else {
        generation
    });
    next
}

/// API writes get the real server's field validation; test-handle writes do not.
fn checked(
    rt: &ResourceType,
    current: &Value,
    next: Value,
    scope: Scope,
) -> Result<Value, ApiError> {
    if scope != Scope::Whole {
        validation::validate_update(rt, current, &next)?;
    }
    Ok(next)
}

fn check_rv(
    rt: &ResourceType,
    name: &str,
    current: &Value,
    wanted: Option<&str>,
) -> Result<(), ApiError> {
    match wanted {
        Some(rv) if Some(rv) != meta_str(current, "resourceVersion") => {
            Err(ApiError::stale(rt, name))
        }
        _ => Ok(()),
    }
}

pub fn replace(
    store: &Store,
    res: ResourceId,
    namespace: &str,
    name: &str,
    body: Value,
    scope: Scope,
) -> Result<Value, ApiError> {
    let rt = resource(res);
    if !body.is_object() {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    if let Some(body_name) = meta_str(&body, "name") {
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
    }
    if rt.namespaced {
        namespace_for(rt, Some(namespace), &body)?;
    }
    store.update(res, namespace, name, |current| {
        check_rv(rt, name, current, meta_str(&body, "resourceVersion"))?;
        check_shape(rt, &body)?;
        checked(rt, current, finish_write(rt, current, body, scope), scope)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Strategic,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        match essence {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

pub fn patch(
    store: &Store,
    res: ResourceId,
    namespace: &str,
    name: &str,
    kind: PatchKind,
    patch: &Value,
    scope: Scope,
) -> Result<Value, ApiError> {
    let rt = resource(res);
    if !patch.is_object() {
        return Err(ApiError::bad_request("patch body must be a JSON object"));
    }
    store.update(res, namespace, name, |current| {
        check_rv(rt, name, current, meta_str(patch, "resourceVersion"))?;
        let mut next = current.clone();
        match kind {
            PatchKind::Merge => merge_patch(&mut next, patch),
            PatchKind::Strategic => strategic_merge_patch(&mut next, patch),
        }
        check_shape(rt, &next)?;
        checked(rt, current, finish_write(rt, current, next, scope), scope)
    })
}

fn check_preconditions(
    rt: &ResourceType,
    name: &str,
    current: &Value,
    options: Option<&Value>,
) -> Result<(), ApiError> {
    let pre = options.and_then(|o| o.get("preconditions"));
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(want) = pre.and_then(|p| p.get(field)).and_then(Value::as_str) {
            let actual = meta_str(current, field).unwrap_or("");
            if want != actual {
                return Err(ApiError::conflict(
                    rt,
                    name,
                    &format!(
                        "Precondition failed: {label} in precondition: {want}, {label} in object meta: {actual}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// DELETE; honours `preconditions.uid` / `preconditions.resourceVersion` of DeleteOptions.
/// With `graceful_pods`, a bound pod is only marked (deletionTimestamp, MODIFIED) as the
/// real server does while the kubelet stops it, unless `gracePeriodSeconds` is 0.
pub fn delete(
    store: &Store,
    res: ResourceId,
    namespace: &str,
    name: &str,
    options: Option<&Value>,
    graceful_pods: bool,
) -> Result<Value, ApiError> {
    let rt = resource(res);
    let grace = options
        .and_then(|o| o.get("gracePeriodSeconds"))
        .and_then(Value::as_i64);
    let is_pod = rt.group.is_empty() && rt.plural == "pods";
    if graceful_pods && is_pod && grace != Some(0) {
        let mut marked = false;
        let result = store.update(res, namespace, name, |current| {
            check_preconditions(rt, name, current, options)?;
            let bound = current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let mut next = current.clone();
            if bound {
                marked = true;
                if next.pointer("/metadata/deletionTimestamp").is_none() {
                    next["metadata"]["deletionTimestamp"] = json!(now_timestamp());
                    next["metadata"]["deletionGracePeriodSeconds"] = json!(grace.unwrap_or(30));
                }
            }
            Ok(next)
        });
        match result {
            Ok(pod) if marked => return Ok(pod),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    store.remove(res, namespace, name, |current| {
        check_preconditions(rt, name, current, options)
    })
}

/// The pods/binding subresource: assigns an unassigned pod to `target.name`, merges the
/// binding's annotations and sets PodScheduled=True, like the real BindingREST.
pub fn bind(
    store: &Store,
    namespace: &str,
    pod_name: &str,
    binding: &Value,
) -> Result<(), ApiError> {
    let pods = super::resources::lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::not_found_path("pods"))?;
    let rt = resource(pods);
    if let Some(body_name) = meta_str(binding, "name") {
        if body_name != pod_name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({pod_name})"
            )));
        }
    }
    let target = binding.get("target");
    let node = target
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                rt,
                pod_name,
                "Binding.core \"\" is invalid: target.name: Required value",
            )
        })?;
    let target_kind = target
        .and_then(|t| t.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !(target_kind.is_empty() || target_kind == "Node") {
        return Err(ApiError::invalid(
            rt,
            pod_name,
            format!("Binding.core \"{pod_name}\" is invalid: target.kind: Not supported: \"{target_kind}\": must be empty or 'Node'"),
        ));
    }
    store.update(pods, namespace, pod_name, |pod| {
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict_on(
                "pods/binding",
                rt,
                pod_name,
                &format!("pod {pod_name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let assigned = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !assigned.is_empty() {
            return Err(ApiError::conflict_on(
                "pods/binding",
                rt,
                pod_name,
                &format!("pod {pod_name} is already assigned to node \"{assigned}\""),
            ));
        }
        // The real BindingREST refuses a pod that is not ready for scheduling.
        let gated = pod
            .pointer("/spec/schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty());
        if gated {
            return Err(ApiError::conflict_on(
                "pods/binding",
                rt,
                pod_name,
                &format!("pod {pod_name} has non-empty .spec.schedulingGates"),
            ));
        }
        // The binding's uid is a precondition on the pod (a recreated pod is another pod).
        if let Some(want) = meta_str(binding, "uid") {
            let actual = meta_str(pod, "uid").unwrap_or("");
            if want != actual {
                return Err(ApiError::conflict_on(
                    "pods/binding",
                    rt,
                    pod_name,
                    &format!(
                        "Precondition failed: UID in precondition: {want}, UID in object meta: {actual}"
                    ),
                ));
            }
        }
        let mut next = pod.clone();
        next["spec"]["nodeName"] = json!(node);
        if let Some(annotations) = binding
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
        {
            for (k, v) in annotations {
                next["metadata"]["annotations"][k] = v.clone();
            }
        }
        set_condition(&mut next, "PodScheduled", "True");
        Ok(next)
    })?;
    Ok(())
}

/// Sets a pod condition as the real server's UpdatePodCondition does: the whole
/// condition is replaced (an earlier reason and message go), and
/// lastTransitionTime moves only when the status changes.
fn set_condition(pod: &mut Value, kind: &str, status: &str) {
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(conditions) = pod["status"]["conditions"].as_array_mut() else {
        return;
    };
    let mut next = json!({
        "type": kind,
        "status": status,
        "lastProbeTime": null,
        "lastTransitionTime": now_timestamp(),
    });
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
    {
        Some(c) => {
            if c.get("status").and_then(Value::as_str) == Some(status) {
                next["lastTransitionTime"] = c["lastTransitionTime"].clone();
            }
            *c = next;
        }
        None => conditions.push(next),
    }
}
