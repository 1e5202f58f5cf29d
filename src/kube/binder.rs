//! Binding through the Pod's `binding` subresource, one task per pod, at most
//! `bind.concurrency` at once (the caller hands us a semaphore permit). A pod
//! whose volumes Reserve assumed goes through PreBind first (`prebind`), which
//! holds no bind slot while it waits for the volumes.
//!
//! The pod stays assumed on its node (its room held in the snapshot) until the outcome
//! of its binding is known; nothing is released on a guess:
//! - **201**: bound. The watch confirms the assumption.
//! - **Nothing written** (400, 401, 403, 422, 429 answered, or no request sent because
//!   leadership went): the assumption is released and the pod requeued with backoff,
//!   as upstream does.
//! - **Outcome unknown** (no answer: a transport error or a timeout; or 5xx / 408,
//!   after which the server or etcd may still commit the write, e.g. `etcdserver:
//!   request timed out`): the pod stays assumed on the same node and the same binding
//!   is sent again after a backoff. The server binds a pod at most once, so a repeat
//!   can only land where the first attempt would have; the node's room is held
//!   either way. A binding committed whose answer was lost (kube-apiserver killed
//!   mid-request) therefore never frees its node for another pod.
//! - **409 / 404**: the server decided without binding for us. A GET of the pod tells
//!   the truth: bound (by an earlier attempt of ours whose answer was lost, or by
//!   someone else) → the assumption moves to the node it is on and the pod leaves
//!   the queue; gone → removed; still pending (409 `rpc error: code = Unavailable`
//!   while etcd is down) → released and requeued, unless an earlier attempt's outcome
//!   is unknown, in which case the binding is sent again.
//!
//! Before each retry the pod is read (GET, a quorum read) so a binding that did land
//! ends the loop; while the server does not answer, the pod stays assumed. A pod
//! leaves the queue only when the server (GET or watch) shows it bound or deleted.

use super::prebind::{self, VolumeBinding};
use super::{metrics, reporter, Shared};
use crate::model::PodKey;
use crate::queue::QueuedPod;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod as K8sPod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// A binding (or a GET of the pod) that hangs this long is given up on; its outcome is unknown.
const BIND_TIMEOUT: Duration = Duration::from_secs(30);

/// How a bind attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindOutcome {
    Bound,
    /// The server wrote nothing and will not (400, 401, 403, 422, 429), or no request
    /// was sent: release and requeue.
    NotWritten(String),
    /// The server decided without binding for us (409, 404): read the pod to learn why.
    Refused(String),
    /// An answer after which the write may still happen (5xx, 408): keep the
    /// assumption and send the same binding again.
    Unknown(String),
    /// No answer (transport error, timeout): as `Unknown`, and the server is not
    /// reachable now.
    NoAnswer(String),
}

pub fn classify(result: Result<serde_json::Value, kube::Error>) -> BindOutcome {
    match result {
        Ok(_) => BindOutcome::Bound,
        Err(kube::Error::Api(s)) => {
            let why = format!("{} {}: {}", s.code, s.reason, s.message);
            match s.code {
                409 | 404 => BindOutcome::Refused(why),
                408 | 500..=599 => BindOutcome::Unknown(why),
                _ => BindOutcome::NotWritten(why),
            }
        }
        Err(e) => BindOutcome::NoAnswer(e.to_string()),
    }
}

/// Annotations the binding sets on the pod (the API server copies a
/// Binding's annotations onto it): the GPU cards Reserve picked.
fn binding_annotations(
    pod: &crate::model::Pod,
) -> Option<std::collections::BTreeMap<String, String>> {
    let cards = pod.gpu.as_deref()?.cards?;
    Some(
        [(
            crate::model::gpu::ANNOTATION_GPU_INDEX.to_owned(),
            cards.to_string(),
        )]
        .into_iter()
        .collect(),
    )
}

/// What a GET of the pod showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truth {
    /// Bound to this node.
    Bound(String),
    /// Deleted, or replaced by another pod of the same name.
    Gone,
    /// Still waiting for a node.
    Pending,
}

/// Reads the pod: what the server holds now, or why it could not be read.
async fn read_truth(shared: &Shared, key: &PodKey, uid: &str) -> Result<Truth, String> {
    shared.limiter.acquire().await;
    let api: Api<K8sPod> = Api::namespaced(shared.client.clone(), key.namespace.as_str());
    match tokio::time::timeout(BIND_TIMEOUT, api.get_opt(&key.name)).await {
        Err(_) => Err("reading the pod timed out".into()),
        Ok(Err(e)) => Err(format!("reading the pod: {e}")),
        Ok(Ok(None)) => Ok(Truth::Gone),
        Ok(Ok(Some(p))) => Ok(truth_of(&p, uid)),
    }
}

pub fn truth_of(p: &K8sPod, uid: &str) -> Truth {
    let same = uid.is_empty() || p.metadata.uid.as_deref() == Some(uid);
    match p.spec.as_ref().and_then(|s| s.node_name.clone()) {
        _ if !same => Truth::Gone,
        Some(node) => Truth::Bound(node),
        None => Truth::Pending,
    }
}

/// One POST of the binding (with `annotations`, `binding_annotations`),
/// unless leadership went meanwhile.
async fn send(
    shared: &Shared,
    key: &PodKey,
    uid: &str,
    node: &str,
    annotations: Option<std::collections::BTreeMap<String, String>>,
) -> BindOutcome {
    if !shared.is_leader() {
        return BindOutcome::NotWritten("lost leadership".into());
    }
    shared.limiter.acquire().await;
    // Leadership may have gone while we waited for a token.
    if !shared.is_leader() {
        return BindOutcome::NotWritten("lost leadership".into());
    }
    let api: Api<K8sPod> = Api::namespaced(shared.client.clone(), key.namespace.as_str());
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.as_str().to_owned()),
            uid: (!uid.is_empty()).then(|| uid.to_owned()),
            annotations,
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_owned()),
            ..Default::default()
        },
    };
    let pp = PostParams::default();
    let call = api.create_subresource::<_, serde_json::Value>("binding", &key.name, &pp, &binding);
    let sent = std::time::Instant::now();
    let outcome = match tokio::time::timeout(BIND_TIMEOUT, call).await {
        Ok(r) => classify(r),
        Err(_) => BindOutcome::NoAnswer("no answer in time".into()),
    };
    ::metrics::histogram!(metrics::BINDING_DURATION).record(sent.elapsed().as_secs_f64());
    outcome
}

/// How the binding task ended.
enum End {
    /// Our binding (or an earlier attempt of ours) put the pod on its node.
    Bound {
        node: String,
    },
    /// The server shows it bound to `node`, not by this binding.
    BoundElsewhere {
        node: String,
    },
    Gone,
    /// Released and requeued with backoff.
    Requeued(String),
    /// The scheduler is stopping; the pod stays assumed until the process ends.
    Stopped,
}

pub(crate) async fn bind(
    shared: Arc<Shared>,
    qp: QueuedPod,
    node: String,
    permit: OwnedSemaphorePermit,
) {
    let pod = qp.pod.clone();
    let key = pod.key.clone();
    ::metrics::gauge!(metrics::BINDINGS_IN_FLIGHT).increment(1.0);
    // An earlier failure's status patch must not land on top of this binding.
    reporter::status_patches_settled(&shared, &key).await;
    let has_volumes = shared.lock().snap.storage().reservation(&key).is_some();
    let permit = if has_volumes {
        // Provisioning takes seconds to minutes: the slot goes to other
        // bindings meanwhile, and is taken again for this one's binding.
        drop(permit);
        match prebind::bind_volumes(&shared, &pod, &node).await {
            VolumeBinding::Done => {}
            VolumeBinding::Failed(why) => {
                volumes_failed(&shared, qp, &node, why).await;
                return;
            }
            VolumeBinding::Abandoned(why) => {
                settle(&shared, &qp, &End::Requeued(why.clone()));
                shared.wake.notify_one();
                tracing::info!(pod = %key, %node, %why, "volume binding abandoned; retrying");
                return;
            }
        }
        match shared.bind_slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        }
    } else {
        permit
    };
    let mut permit = Some(permit);
    let (mut wait, max_wait) = {
        let st = shared.lock();
        let c = st.queue.config();
        (
            Duration::from_millis(c.initial_backoff_ms.max(10)),
            Duration::from_millis(c.max_backoff_ms.max(10)),
        )
    };
    // Whether an attempt's outcome is unknown: it may still land on `node`.
    let mut uncertain = false;
    let mut attempt = 0u32;
    let end = loop {
        attempt += 1;
        let outcome = send(&shared, &key, &pod.uid, &node, binding_annotations(&pod)).await;
        // Whether the server answered: it is reachable, and other pods may bind while
        // this one waits. While it does not answer, the slot is kept: nothing binds, and
        // the loop does not place more pods only to wait here too.
        let (why, answered) = match outcome {
            BindOutcome::Bound => break End::Bound { node: node.clone() },
            BindOutcome::NotWritten(why) if !uncertain => break End::Requeued(why),
            BindOutcome::Refused(why) | BindOutcome::NotWritten(why) => (why, true),
            BindOutcome::Unknown(why) => {
                uncertain = true;
                (why, true)
            }
            BindOutcome::NoAnswer(why) => {
                uncertain = true;
                (why, false)
            }
        };
        if attempt == 1 {
            ::metrics::counter!(metrics::SCHEDULE_ATTEMPTS, "result" => "error").increment(1);
        }
        if attempt == 1 {
            tracing::warn!(pod = %key, %node, error = %why, "binding failed; reading the pod before deciding");
        } else {
            tracing::debug!(pod = %key, %node, error = %why, attempt, "binding failed again");
        }
        if answered {
            permit = None;
        }
        let truth = loop {
            if shared.stopping() {
                break None;
            }
            match read_truth(&shared, &key, &pod.uid).await {
                Ok(t) => break Some(t),
                Err(e) => {
                    tracing::debug!(pod = %key, error = %e, "pod not readable yet; keeping its node's room");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(max_wait);
                }
            }
        };
        match truth {
            None => break End::Stopped,
            Some(Truth::Gone) => break End::Gone,
            Some(Truth::Bound(at)) if at == node && uncertain => break End::Bound { node: at },
            Some(Truth::Bound(at)) => break End::BoundElsewhere { node: at },
            Some(Truth::Pending) => {
                let node_known = {
                    let st = shared.lock();
                    st.snap.nodes().get(crate::model::Sym::new(&node)).is_some()
                };
                if !uncertain || !shared.is_leader() || !node_known {
                    break End::Requeued(why);
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(max_wait);
        if shared.stopping() {
            break End::Stopped;
        }
        if permit.is_none() {
            match shared.bind_slots.clone().acquire_owned().await {
                Ok(p) => permit = Some(p),
                Err(_) => break End::Stopped,
            }
        }
    };
    let now = settle(&shared, &qp, &end);
    drop(permit);
    ::metrics::gauge!(metrics::BINDINGS_IN_FLIGHT).decrement(1.0);
    shared.wake.notify_one();
    match end {
        End::Bound { node } => {
            shared.binds.fetch_add(1, Ordering::Relaxed);
            let capacity_type = {
                let st = shared.lock();
                st.snap
                    .nodes()
                    .by_name(&node)
                    .map(|i| {
                        st.snap.nodes().capacity_type[i as usize]
                            .as_str()
                            .to_owned()
                    })
                    .unwrap_or_default()
            };
            ::metrics::counter!(metrics::SCHEDULE_ATTEMPTS, "result" => "scheduled").increment(1);
            ::metrics::counter!(
                metrics::BINDS,
                "role" => metrics::role_label(&pod),
                "capacity_type" => capacity_type
            )
            .increment(1);
            ::metrics::histogram!(metrics::E2E_DURATION)
                .record(now.saturating_sub(qp.first_enqueued_ms) as f64 / 1000.0);
            tracing::debug!(pod = %key, %node, attempts = qp.attempts, "bound");
            reporter::scheduled(&shared, &pod, &node);
        }
        End::BoundElsewhere { node } => {
            tracing::info!(pod = %key, %node, "pod already bound; leaving it where it is");
        }
        End::Gone => tracing::debug!(pod = %key, "pod gone before its binding"),
        End::Requeued(why) => {
            tracing::warn!(pod = %key, %node, error = %why, "binding not done; retrying the pod with backoff")
        }
        End::Stopped => {}
    }
}

/// Brings the snapshot and the queue in line with how the binding ended; returns
/// the queue's clock.
fn settle(shared: &Shared, qp: &QueuedPod, end: &End) -> u64 {
    let key = qp.key();
    let mut st = shared.lock();
    let st = &mut *st;
    match end {
        End::Bound { .. } => {
            st.queue.done(key);
            st.reported.remove(key);
            // The pod's volumes were bound before it was: its reservation is done.
            st.snap.storage_mut().complete(key);
        }
        End::BoundElsewhere { node: at } => {
            // Moved to where the server holds it, unless the watch already told us
            // more (the pod confirmed, or deleted: then the watch is the newer truth).
            let ours = st.pods.get(key).is_some_and(|uid| *uid == qp.pod.uid);
            let assumed = st.snap.pod_by_key(key).is_some_and(|e| e.assumed);
            if ours && assumed {
                match st.snap.nodes().get(crate::model::Sym::new(at)) {
                    Some(idx) => {
                        let _ = st.snap.assume(qp.pod.clone(), idx);
                    }
                    None => {
                        st.snap.forget(key);
                    }
                }
            }
            st.snap.storage_mut().release(key);
            st.queue.done(key);
            st.reported.remove(key);
        }
        End::Gone => {
            st.snap.forget(key);
            st.queue.done(key);
        }
        End::Requeued(_) => {
            st.snap.forget(key);
            super::log_requeue_error(st.queue.requeue_backoff(qp.clone()));
        }
        End::Stopped => {}
    }
    st.queue.now_ms()
}

/// PreBind failed: the volume assumptions go, the pod is retried with
/// backoff and reported as upstream reports a PreBind error
/// (`PodScheduled=False`, reason `SchedulerError`, and `FailedScheduling`).
async fn volumes_failed(shared: &Arc<Shared>, qp: QueuedPod, node: &str, why: String) {
    let pod = qp.pod.clone();
    let message = format!(
        "running PreBind plugin {:?}: {why}",
        crate::plugins::volume_binding::NAME
    );
    let (fresh, transition) = {
        let mut st = shared.lock();
        st.snap.forget(&pod.key);
        super::log_requeue_error(st.queue.requeue_backoff(qp));
        let fresh = st.reported.get(&pod.key) != Some(&message);
        if fresh {
            st.reported.insert(pod.key.clone(), message.clone());
        }
        (fresh, !st.scheduled_false.contains(&pod.key))
    };
    shared.wake.notify_one();
    ::metrics::counter!(metrics::SCHEDULE_ATTEMPTS, "result" => "error").increment(1);
    tracing::warn!(pod = %pod.key, %node, %message, "volume binding failed; retrying with backoff");
    if fresh {
        let in_flight = reporter::StatusPatches::begin(shared, &pod.key);
        reporter::unschedulable(
            shared.clone(),
            pod,
            Some(message),
            false,
            transition,
            reporter::SCHEDULER_ERROR,
            in_flight,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_err(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            status: Some(kube::core::response::StatusSummary::Failure),
            code,
            message: "m".into(),
            reason: "R".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn bind_answers_are_classified() {
        assert_eq!(classify(Ok(serde_json::json!({}))), BindOutcome::Bound);
        for code in [409, 404] {
            assert!(
                matches!(classify(Err(api_err(code))), BindOutcome::Refused(_)),
                "{code}"
            );
        }
        for code in [500, 503, 504, 408] {
            assert!(
                matches!(classify(Err(api_err(code))), BindOutcome::Unknown(_)),
                "{code}"
            );
        }
        let transport = kube::Error::Service("connection reset".into());
        assert!(matches!(classify(Err(transport)), BindOutcome::NoAnswer(_)));
        for code in [429, 403, 400, 422, 401] {
            assert!(
                matches!(classify(Err(api_err(code))), BindOutcome::NotWritten(_)),
                "{code}"
            );
        }
    }

    #[test]
    fn the_truth_of_a_pod() {
        let pod = |node: Option<&str>, uid: &str| -> K8sPod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "uid": uid},
                "spec": {"containers": [], "nodeName": node},
            }))
            .unwrap()
        };
        assert_eq!(
            truth_of(&pod(Some("n1"), "u"), "u"),
            Truth::Bound("n1".into())
        );
        assert_eq!(truth_of(&pod(None, "u"), "u"), Truth::Pending);
        // Another pod of the same name: ours is gone.
        assert_eq!(truth_of(&pod(Some("n1"), "v"), "u"), Truth::Gone);
    }
}
