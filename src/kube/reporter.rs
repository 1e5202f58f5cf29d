//! Reporting as upstream kube-scheduler: the `PodScheduled` condition (strategic-merge
//! status patch), events.k8s.io/v1 events from controller "spark-fleet",
//! `status.nominatedNodeName`, and the `DisruptionTarget` condition on preemption victims.
//! Every API error is logged, never fatal: the next cycle reports again; an event the
//! server could not take for now (429, 5xx, timeout, transport) is sent again with backoff.

use super::{metrics, Shared};
use crate::config::Config;
use crate::model::{Pod, PodKey};
use crate::snapshot::{NodeIdx, Snapshot};
use k8s_openapi::api::core::v1::{ObjectReference, Pod as K8sPod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// A report or deletion that hangs this long is treated like a 5xx. The client has no
/// read timeout: a request on a dead connection would otherwise wait for TCP to give up
/// (many minutes), and a pod whose report hangs is not reported again meanwhile.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A pod's status patches in flight (sent, or waiting for a token). The binder
/// waits for them before binding (`status_patches_settled`): a `PodScheduled=False`
/// landing after the binding would overwrite the `True` the binding set, and the
/// pod would run while reported unschedulable. Upstream cannot race so: it
/// patches in the scheduling loop before the pod can be tried again.
pub(crate) struct StatusPatches {
    shared: Arc<Shared>,
    key: PodKey,
}

impl StatusPatches {
    /// Registers a patch about to be spawned; it counts until the value is dropped.
    pub(crate) fn begin(shared: &Arc<Shared>, key: &PodKey) -> StatusPatches {
        *shared.lock().status_patches.entry(key.clone()).or_insert(0) += 1;
        StatusPatches {
            shared: shared.clone(),
            key: key.clone(),
        }
    }
}

impl Drop for StatusPatches {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            if let Some(n) = st.status_patches.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    st.status_patches.remove(&self.key);
                }
            }
        }
        self.shared.status_patches_done.notify_waiters();
    }
}

/// Waits until no status patch for `key` is in flight. Bounded: a patch gives up
/// after `REQUEST_TIMEOUT` once it has a token; past twice that the binding goes ahead.
pub(crate) async fn status_patches_settled(shared: &Shared, key: &PodKey) {
    let wait = async {
        loop {
            let done = shared.status_patches_done.notified();
            tokio::pin!(done);
            // Registered before the check, so a patch ending in between still wakes us.
            done.as_mut().enable();
            if !shared.lock().status_patches.contains_key(key) {
                return;
            }
            done.await;
        }
    };
    if tokio::time::timeout(2 * REQUEST_TIMEOUT, wait)
        .await
        .is_err()
    {
        tracing::warn!(pod = %key, "binding without waiting longer for a status patch");
    }
}

/// `PodScheduled=False` reasons, as upstream's `v1.PodReasonUnschedulable` and
/// `v1.PodReasonSchedulerError`.
pub(crate) const UNSCHEDULABLE: &str = "Unschedulable";
pub(crate) const SCHEDULER_ERROR: &str = "SchedulerError";

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

/// How many times an event is tried (upstream's events broadcaster: maxTriesPerEvent).
const EVENT_TRIES: u32 = 12;
/// The wait before the first retry of an event, doubled after each up to
/// [`EVENT_RETRY_MAX`] (upstream waits 10 s each time).
const EVENT_RETRY_FIRST: Duration = Duration::from_millis(500);
const EVENT_RETRY_MAX: Duration = Duration::from_secs(10);

/// Records an event, trying again with backoff while the failure is one the
/// server may get over (429, 5xx, timeout, transport); a refusal of the event
/// itself (400, 403, 422, ...) is final. (The client already retries 429,
/// 503 and 504 on its own, after any Retry-After.) Reports run in their own
/// tasks, after the binding slot is given back, so the waits hold up nothing else.
async fn publish(
    shared: &Shared,
    r: &ObjectReference,
    ty: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_: ty,
        reason: reason.into(),
        note: Some(truncate_note(note)),
        action: action.into(),
        secondary: None,
    };
    let mut wait = EVENT_RETRY_FIRST;
    for attempt in 1..=EVENT_TRIES {
        shared.event_limiter.acquire().await;
        let (error, again) =
            match tokio::time::timeout(REQUEST_TIMEOUT, shared.recorder.publish(&ev, r)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => (e.to_string(), may_pass_later(&e)),
                Err(_) => ("timed out".to_owned(), true),
            };
        if !again || attempt == EVENT_TRIES {
            tracing::warn!(%error, reason, object = ?r.name, attempt, "event not recorded");
            return;
        }
        tracing::debug!(%error, reason, object = ?r.name, attempt, "event not recorded yet; trying again");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(EVENT_RETRY_MAX);
    }
}

/// Whether a request that failed with `e` may pass if sent again: the server
/// answered 429 or 5xx, or no answer came (connection, TLS, transport).
fn may_pass_later(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The API server refuses an events.k8s.io/v1 Event whose note is longer than this
/// many bytes (422 Invalid); upstream kube-scheduler truncates its messages to it.
const NOTE_LIMIT: usize = 1024;

/// Cuts `note` to [`NOTE_LIMIT`] bytes on a character boundary, marking the cut as upstream does.
fn truncate_note(mut note: String) -> String {
    const SUFFIX: &str = " ...";
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let mut end = NOTE_LIMIT - SUFFIX.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(SUFFIX);
    note
}

/// Whether the patch was applied.
async fn patch_status(
    shared: &Shared,
    namespace: &str,
    name: &str,
    patch: serde_json::Value,
) -> bool {
    shared.limiter.acquire().await;
    let api: Api<K8sPod> = Api::namespaced(shared.client.clone(), namespace);
    let (pp, patch) = (PatchParams::default(), Patch::Strategic(patch));
    let call = api.patch_status(name, &pp, &patch);
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, pod = %format!("{namespace}/{name}"), "status patch failed");
            false
        }
        Err(_) => {
            tracing::warn!(pod = %format!("{namespace}/{name}"), "status patch timed out");
            false
        }
    }
}

/// The message did not reach the pod (429, 5xx, timeout, ...): forget it was reported, so
/// the next attempt with the same message sends it again rather than skipping it.
fn forget_reported(shared: &Shared, pod: &PodKey, message: &str) {
    let mut st = shared.lock();
    if st.reported.get(pod).is_some_and(|m| m == message) {
        st.reported.remove(pod);
    }
}

/// A pod condition for a strategic-merge status patch (merged by `type`). Without
/// `transition` (the status stays what it is) lastTransitionTime is left out, so the
/// server keeps the existing one, as upstream's UpdatePodCondition does.
fn condition(
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    transition: bool,
) -> serde_json::Value {
    let mut c = json!({
        "type": ty,
        "status": status,
        "reason": reason,
        "message": message,
    });
    if transition {
        c["lastTransitionTime"] = json!(Time(Timestamp::now()));
    }
    c
}

/// `PodScheduled=False` (reason `Unschedulable` or `SchedulerError`) with the upstream
/// message, and `FailedScheduling`, when the message is new; `status.nominatedNodeName`
/// cleared when preemption found no node for a nominated pod.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn unschedulable(
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    message: Option<String>,
    clear_nominated: bool,
    transition: bool,
    reason: &str,
    in_flight: StatusPatches,
) {
    let (ns, name) = (pod.key.namespace.as_str(), pod.key.name.as_str());
    let mut status = serde_json::Map::new();
    if let Some(m) = &message {
        let c = condition("PodScheduled", "False", reason, m, transition);
        status.insert("conditions".into(), json!([c]));
    }
    if clear_nominated {
        // A strategic-merge null removes the field.
        status.insert("nominatedNodeName".into(), serde_json::Value::Null);
    }
    let patched = patch_status(&shared, ns, name, json!({ "status": status })).await;
    drop(in_flight);
    if let (false, Some(m)) = (patched, &message) {
        forget_reported(&shared, &pod.key, m);
    }
    if let Some(message) = message {
        publish(
            &shared,
            &pod_ref(&pod),
            EventType::Warning,
            "FailedScheduling",
            "Scheduling",
            message,
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
    transition: bool,
) {
    let c = condition(
        "PodScheduled",
        "False",
        SCHEDULER_ERROR,
        &message,
        transition,
    );
    let patched = patch_status(
        &shared,
        &namespace,
        &name,
        json!({"status": {"conditions": [c]}}),
    )
    .await;
    if !patched {
        forget_reported(&shared, &PodKey::new(&namespace, &name), &message);
    }
    publish(
        &shared,
        &reference(&namespace, &name, &uid),
        EventType::Warning,
        "FailedScheduling",
        "Scheduling",
        message,
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

/// Nominates the preemptor, marks each victim `DisruptionTarget`, then deletes it
/// gracefully (only once marked).
pub(crate) async fn preempt(
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    p: Preemption,
    in_flight: StatusPatches,
) {
    let (ns, name) = (pod.key.namespace.as_str(), pod.key.name.as_str());
    tracing::info!(
        pod = %pod.key,
        node = %p.node,
        victims = %p.victims.iter().map(|v| v.key.to_string()).collect::<Vec<_>>().join(","),
        "preempting"
    );
    patch_status(
        &shared,
        ns,
        name,
        json!({"status": {"nominatedNodeName": p.node}}),
    )
    .await;
    drop(in_flight);
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
        let marked = patch_status(
            &shared,
            vns,
            vname,
            json!({"status": {"conditions": [condition("DisruptionTarget", "True", "PreemptionByScheduler", &message, true)]}}),
        )
        .await;
        if !marked {
            // As upstream: no deletion without the condition that tells the victim's
            // owner why it went; a later attempt preempts again.
            continue;
        }
        shared.limiter.acquire().await;
        let api: Api<K8sPod> = Api::namespaced(shared.client.clone(), vns);
        let deleted =
            tokio::time::timeout(REQUEST_TIMEOUT, api.delete(vname, &DeleteParams::default()))
                .await;
        match deleted {
            Err(_) => tracing::warn!(victim = %victim.key, "deleting victim timed out"),
            Ok(Ok(_)) => {
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
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, victim = %victim.key, "deleting victim failed")
            }
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
    fn notes_are_cut_to_the_api_limit_on_a_char_boundary() {
        let short = "0/3 nodes are available".to_owned();
        assert_eq!(truncate_note(short.clone()), short);
        let exact = "x".repeat(NOTE_LIMIT);
        assert_eq!(truncate_note(exact.clone()), exact);
        let long = truncate_note("x".repeat(NOTE_LIMIT + 1));
        assert_eq!(long.len(), NOTE_LIMIT);
        assert!(long.ends_with(" ..."));
        // Multi-byte characters straddling the cut are dropped whole.
        let wide = truncate_note("é".repeat(NOTE_LIMIT));
        assert!(wide.len() <= NOTE_LIMIT);
        assert!(wide.ends_with("é ..."));
    }
}
