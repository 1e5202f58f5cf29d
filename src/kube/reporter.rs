//! Reporting as upstream kube-scheduler: the `PodScheduled` condition (strategic-merge
//! status patch), events.k8s.io/v1 events from controller "spark-fleet",
//! `status.nominatedNodeName`, and the `DisruptionTarget` condition on preemption victims.
//! Every API error is logged, never fatal: the next cycle reports again.

use super::{metrics, Shared};
use crate::config::Config;
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};
use k8s_openapi::api::core::v1::{ObjectReference, Pod as K8sPod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use serde_json::json;
use std::sync::Arc;

/// A nomination from PostFilter: the preemptor waits for `victims` to leave `node`.
pub(crate) struct Preemption {
    pub node: String,
    pub victims: Vec<Arc<Pod>>,
}

fn reference(namespace: &str, name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: (!uid.is_empty()).then(|| uid.to_owned()),
        ..Default::default()
    }
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    reference(pod.key.namespace.as_str(), pod.key.name.as_str(), &pod.uid)
}

async fn publish(
    shared: &Shared,
    r: &ObjectReference,
    ty: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    shared.event_limiter.acquire().await;
    publish_with(&shared.recorder, r, ty, reason, action, note).await;
}

async fn publish_with(
    recorder: &Recorder,
    r: &ObjectReference,
    ty: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_: ty,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, r).await {
        tracing::warn!(error = %e, reason, object = ?r.name, "event not recorded");
    }
}

async fn patch_status(shared: &Shared, namespace: &str, name: &str, patch: serde_json::Value) {
    shared.limiter.acquire().await;
    let api: Api<K8sPod> = Api::namespaced(shared.client.clone(), namespace);
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        tracing::warn!(error = %e, pod = %format!("{namespace}/{name}"), "status patch failed");
    }
}

/// The API server's limit on an event's note (`NoteLengthLimit`, bytes).
const NOTE_LENGTH_LIMIT: usize = 1024;

/// Upstream's truncateMessage for the FailedScheduling event: a note over the
/// limit is cut and ends in " ..." (the PodScheduled condition keeps it whole).
/// Cut on a character boundary, where upstream cuts bytes.
fn event_note(message: String) -> String {
    if message.len() <= NOTE_LENGTH_LIMIT {
        return message;
    }
    const SUFFIX: &str = " ...";
    let mut end = NOTE_LENGTH_LIMIT - SUFFIX.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{SUFFIX}", &message[..end])
}

fn condition(ty: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
    json!({
        "type": ty,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": Timestamp::now().to_string(),
    })
}

/// `PodScheduled=False/Unschedulable` with the upstream message, and
/// `FailedScheduling`, when the message is new; `status.nominatedNodeName`
/// cleared when preemption found no node for a nominated pod.
pub(crate) async fn unschedulable(
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    message: Option<String>,
    clear_nominated: bool,
) {
    let (ns, name) = (pod.key.namespace.as_str(), pod.key.name.as_str());
    let mut status = serde_json::Map::new();
    if let Some(m) = &message {
        let c = condition("PodScheduled", "False", "Unschedulable", m);
        status.insert("conditions".into(), json!([c]));
    }
    if clear_nominated {
        // A strategic-merge null removes the field.
        status.insert("nominatedNodeName".into(), serde_json::Value::Null);
    }
    patch_status(&shared, ns, name, json!({ "status": status })).await;
    if let Some(message) = message {
        publish(
            &shared,
            &pod_ref(&pod),
            EventType::Warning,
            "FailedScheduling",
            "Scheduling",
            event_note(message),
        )
        .await;
    }
}

/// Our pod's spec cannot be read (bad quantity, ...): say so where its owner looks.
pub(crate) async fn invalid_pod(
    shared: Arc<Shared>,
    namespace: String,
    name: String,
    uid: String,
    message: String,
) {
    patch_status(
        &shared,
        &namespace,
        &name,
        json!({"status": {"conditions": [condition("PodScheduled", "False", "SchedulerError", &message)]}}),
    )
    .await;
    publish(
        &shared,
        &reference(&namespace, &name, &uid),
        EventType::Warning,
        "FailedScheduling",
        "Scheduling",
        event_note(message),
    )
    .await;
}

/// `Scheduled`: "Successfully assigned ns/pod to node".
pub(crate) async fn scheduled(shared: &Shared, pod: &Pod, node: &str) {
    let note = format!("Successfully assigned {} to {node}", pod.key);
    publish(
        shared,
        &pod_ref(pod),
        EventType::Normal,
        "Scheduled",
        "Binding",
        note,
    )
    .await;
}

/// Nominates the preemptor, marks each victim `DisruptionTarget`, deletes it gracefully.
pub(crate) async fn preempt(shared: Arc<Shared>, pod: Arc<Pod>, p: Preemption) {
    let (ns, name) = (pod.key.namespace.as_str(), pod.key.name.as_str());
    patch_status(
        &shared,
        ns,
        name,
        json!({"status": {"nominatedNodeName": p.node}}),
    )
    .await;
    publish(
        &shared,
        &pod_ref(&pod),
        EventType::Normal,
        "Nominated",
        "Preempting",
        format!(
            "Nominated to node {} after preempting {} pod(s)",
            p.node,
            p.victims.len()
        ),
    )
    .await;
    for victim in &p.victims {
        let (vns, vname) = (victim.key.namespace.as_str(), victim.key.name.as_str());
        let message = format!(
            "{}: preempting to accommodate a higher priority pod",
            crate::kube::CONTROLLER
        );
        patch_status(
            &shared,
            vns,
            vname,
            json!({"status": {"conditions": [condition("DisruptionTarget", "True", "PreemptionByScheduler", &message)]}}),
        )
        .await;
        shared.limiter.acquire().await;
        let api: Api<K8sPod> = Api::namespaced(shared.client.clone(), vns);
        match api.delete(vname, &DeleteParams::default()).await {
            Ok(_) => {
                ::metrics::counter!(metrics::PREEMPTION_VICTIMS, "role" => metrics::role_label(victim))
                    .increment(1);
                publish(
                    &shared,
                    &pod_ref(victim),
                    EventType::Normal,
                    "Preempted",
                    "Preempting",
                    format!("Preempted by pod {} on node {}", pod.uid, p.node),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(error = %e, victim = %victim.key, "deleting victim failed"),
        }
    }
}

/// An executor placed on another capacity type than its mix targeted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fallback {
    pub wanted: String,
    pub got: String,
}

/// Whether placing `pod` on `node` falls back from its mix's target capacity type.
pub(crate) fn capacity_fallback(
    config: &Config,
    pod: &Pod,
    snap: &Snapshot,
    node: NodeIdx,
) -> Option<Fallback> {
    crate::plugins::capacity_mix::capacity_fallback(config, pod, snap, node).map(|f| Fallback {
        wanted: f.wanted.as_str().to_owned(),
        got: f.got.as_str().to_owned(),
    })
}

pub(crate) async fn capacity_fallback_event(
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    node: String,
    fb: Fallback,
) {
    publish(
        &shared,
        &pod_ref(&pod),
        EventType::Normal,
        "CapacityFallback",
        "Scheduling",
        format!(
            "Placed on {} capacity (node {node}): no room on {} within the capacity mix",
            fb.got, fb.wanted
        ),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_event_notes_are_cut_like_upstream() {
        let short = "0/3 nodes are available: 3 Insufficient cpu.".to_owned();
        assert_eq!(event_note(short.clone()), short);
        let exact = "x".repeat(NOTE_LENGTH_LIMIT);
        assert_eq!(event_note(exact.clone()), exact);
        let long = "y".repeat(NOTE_LENGTH_LIMIT + 1);
        let cut = event_note(long);
        assert_eq!(cut.len(), NOTE_LENGTH_LIMIT);
        assert!(cut.ends_with("y ..."));
        // Multi-byte characters are not split.
        let wide = "é".repeat(NOTE_LENGTH_LIMIT);
        let cut = event_note(wide);
        assert!(cut.len() <= NOTE_LENGTH_LIMIT && cut.ends_with(" ..."));
    }
}
