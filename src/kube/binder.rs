//! Binding through the Pod's `binding` subresource, one task per pod, at most
//! `bind.concurrency` at once (the caller holds a semaphore permit for us).
//! A pod whose volumes Reserve assumed goes through PreBind first
//! (`prebind`), which holds no bind slot while it waits for the volumes.

use super::prebind::{self, VolumeBinding};
use super::{metrics, reporter, Shared};
use crate::queue::QueuedPod;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod as K8sPod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// A binding that hangs this long is treated like a 5xx: forget and retry.
const BIND_TIMEOUT: Duration = Duration::from_secs(30);

/// How a bind attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindOutcome {
    Bound,
    /// 409 (bound elsewhere, e.g. by another instance) or 404 (gone): drop the pod.
    Drop(String),
    /// 5xx, 429, timeouts, transport errors, or we are no longer leader: retry with backoff.
    Retry(String),
}

pub fn classify(result: Result<serde_json::Value, kube::Error>) -> BindOutcome {
    match result {
        Ok(_) => BindOutcome::Bound,
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
            BindOutcome::Drop(format!("{} {}: {}", s.code, s.reason, s.message))
        }
        Err(kube::Error::Api(s)) => {
            BindOutcome::Retry(format!("{} {}: {}", s.code, s.reason, s.message))
        }
        Err(e) => BindOutcome::Retry(e.to_string()),
    }
}

pub(crate) async fn bind(
    shared: Arc<Shared>,
    qp: QueuedPod,
    node: String,
    permit: OwnedSemaphorePermit,
) {
    let pod = qp.pod.clone();
    // An earlier failure's status patch must not land on top of this binding.
    reporter::status_patches_settled(&shared, &pod.key).await;
    let has_volumes = shared.lock().snap.storage().reservation(&pod.key).is_some();
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
                {
                    let mut st = shared.lock();
                    st.snap.forget(&pod.key);
                    let _ = st.queue.requeue_backoff(qp);
                }
                shared.wake.notify_one();
                tracing::info!(pod = %pod.key, %node, %why, "volume binding abandoned; retrying");
                return;
            }
        }
        match shared.bind_slots.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed; give the pod back if it were.
            Err(_) => {
                let mut st = shared.lock();
                st.snap.forget(&pod.key);
                let _ = st.queue.requeue_backoff(qp);
                return;
            }
        }
    } else {
        permit
    };
    let outcome = if shared.is_leader() {
        shared.limiter.acquire().await;
        // Leadership may have gone while we waited for a token.
        if shared.is_leader() {
            let api: Api<K8sPod> =
                Api::namespaced(shared.client.clone(), pod.key.namespace.as_str());
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(pod.key.name.as_str().to_owned()),
                    namespace: Some(pod.key.namespace.as_str().to_owned()),
                    uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..Default::default()
                },
            };
            let pp = PostParams::default();
            let call = api.create_subresource::<_, serde_json::Value>(
                "binding",
                pod.key.name.as_str(),
                &pp,
                &binding,
            );
            match tokio::time::timeout(BIND_TIMEOUT, call).await {
                Ok(r) => classify(r),
                Err(_) => BindOutcome::Retry("timed out".into()),
            }
        } else {
            BindOutcome::Retry("lost leadership".into())
        }
    } else {
        BindOutcome::Retry("lost leadership".into())
    };
    let now = {
        let mut st = shared.lock();
        match &outcome {
            BindOutcome::Bound => {
                st.queue.done(&pod.key);
                st.reported.remove(&pod.key);
                if has_volumes {
                    st.snap.storage_mut().complete(&pod.key);
                }
            }
            BindOutcome::Drop(_) => {
                // The watch brings the real placement (or the deletion).
                st.snap.forget(&pod.key);
                st.queue.done(&pod.key);
            }
            BindOutcome::Retry(_) => {
                st.snap.forget(&pod.key);
                let _ = st.queue.requeue_backoff(qp.clone());
            }
        }
        st.queue.now_ms()
    };
    drop(permit);
    shared.wake.notify_one();
    match outcome {
        BindOutcome::Bound => {
            shared.binds.fetch_add(1, Ordering::Relaxed);
            let capacity_type = {
                let st = shared.lock();
                st.snap
                    .nodes()
                    .get(crate::model::Sym::new(&node))
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
            tracing::info!(pod = %pod.key, %node, attempts = qp.attempts, "bound");
            reporter::scheduled(&shared, &pod, &node).await;
        }
        BindOutcome::Drop(why) => {
            tracing::info!(pod = %pod.key, %node, %why, "binding refused; dropping the pod from the queue");
        }
        BindOutcome::Retry(why) => {
            ::metrics::counter!(metrics::SCHEDULE_ATTEMPTS, "result" => "error").increment(1);
            tracing::warn!(pod = %pod.key, %node, %why, "binding failed; retrying with backoff");
        }
    }
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
        let _ = st.queue.requeue_backoff(qp);
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
        assert!(matches!(classify(Err(api_err(409))), BindOutcome::Drop(_)));
        assert!(matches!(classify(Err(api_err(404))), BindOutcome::Drop(_)));
        for code in [500, 503, 429, 403, 400] {
            assert!(
                matches!(classify(Err(api_err(code))), BindOutcome::Retry(_)),
                "{code}"
            );
        }
    }
}
