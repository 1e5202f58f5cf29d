//! events.k8s.io/v1 Events about pods, with upstream's series de-duplication.
//!
//! An event like one sent about the same pod within the last [`SERIES_WINDOW`]
//! (same type, reason and action, as upstream's events broadcaster and
//! kube-runtime's `Recorder` key them) is sent as the next count of that event's
//! series, a PATCH, instead of as a new Event. What is kept for that is small
//! (the event's name, the count, when) and lives only as long as its pod: the
//! pod watcher forgets a pod when it is deleted ([`RecentEvents::forget`]), and
//! no more than [`MAX_PODS`] pods are kept. kube-runtime's `Recorder` keeps every
//! event it published for six minutes, about 2.4 KB each (heaptrack, soak
//! benchmark), so its memory followed the binding rate, not the pods alive.

use super::{Shared, CONTROLLER};
use crate::model::PodKey;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::EventType;
use serde_json::json;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an event may go on as a series (upstream's and kube-runtime's six minutes).
pub(crate) const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Pods whose recent events are kept at most. Past it, those whose last event
/// is older than the window go first, then any: their next event starts a
/// new Event instead of a series, which only loses the count.
pub(crate) const MAX_PODS: usize = 10_000;

/// What makes two events the same for a series (the reporting controller and
/// instance are ours, and we relate no second object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    type_: EventType,
    reason: &'static str,
    action: &'static str,
}

#[derive(Debug)]
struct Series {
    kind: Kind,
    /// The pod's uid: a pod deleted and made again under its name is another object.
    uid: String,
    /// The Event object of the series.
    name: String,
    count: i32,
    last: Instant,
}

/// The events sent recently about each pod, for series.
#[derive(Debug, Default)]
pub(crate) struct RecentEvents {
    by_pod: HashMap<PodKey, SmallVec<[Series; 1]>>,
}

impl RecentEvents {
    /// The pod is gone: nothing of its events is kept.
    pub(crate) fn forget(&mut self, pod: &PodKey) {
        self.by_pod.remove(pod);
    }

    /// Pods with recent events kept.
    pub(crate) fn len(&self) -> usize {
        self.by_pod.len()
    }

    /// The series an event of `kind` continues, counted: its Event's name and new count.
    fn continue_series(
        &mut self,
        pod: &PodKey,
        uid: &str,
        kind: Kind,
        now: Instant,
    ) -> Option<(String, i32)> {
        let s = self
            .by_pod
            .get_mut(pod)?
            .iter_mut()
            .find(|s| s.kind == kind && s.uid == uid)?;
        if now.duration_since(s.last) > SERIES_WINDOW {
            return None;
        }
        s.count = s.count.saturating_add(1);
        s.last = now;
        Some((s.name.clone(), s.count))
    }

    /// A new Event `name` of `kind` was created about `pod`.
    fn record(&mut self, pod: &PodKey, uid: &str, kind: Kind, name: String, now: Instant) {
        if self.by_pod.len() >= MAX_PODS && !self.by_pod.contains_key(pod) {
            self.make_room(now);
        }
        let list = self.by_pod.entry(pod.clone()).or_default();
        list.retain(|s| s.kind != kind);
        list.push(Series {
            kind,
            uid: uid.to_owned(),
            name,
            count: 1,
            last: now,
        });
    }

    /// A series could not be continued: the next event of `kind` starts a new one.
    fn end_series(&mut self, pod: &PodKey, kind: Kind) {
        if let Some(list) = self.by_pod.get_mut(pod) {
            list.retain(|s| s.kind != kind);
            if list.is_empty() {
                self.by_pod.remove(pod);
            }
        }
    }

    /// Drops pods whose events are all past the window; if that leaves the map
    /// full, a quarter of it. Runs once per `MAX_PODS / 4` new pods at most.
    fn make_room(&mut self, now: Instant) {
        self.by_pod.retain(|_, list| {
            list.retain(|s| now.duration_since(s.last) <= SERIES_WINDOW);
            !list.is_empty()
        });
        let keep = MAX_PODS - MAX_PODS / 4;
        if self.by_pod.len() > keep {
            let drop: Vec<PodKey> = self
                .by_pod
                .keys()
                .take(self.by_pod.len() - keep)
                .cloned()
                .collect();
            for k in drop {
                self.by_pod.remove(&k);
            }
        }
    }
}

/// Sends one event about the pod `r` refers to (a new Event, or the next count of
/// its series). Errors are the API's; the caller decides whether to try again.
pub(crate) async fn send(
    shared: &Shared,
    r: &ObjectReference,
    type_: EventType,
    reason: &'static str,
    action: &'static str,
    note: &str,
) -> Result<(), kube::Error> {
    let namespace = r.namespace.as_deref().unwrap_or("default");
    let name = r.name.as_deref().unwrap_or(CONTROLLER);
    let pod = PodKey::new(namespace, name);
    let uid = r.uid.as_deref().unwrap_or_default();
    let kind = Kind {
        type_,
        reason,
        action,
    };
    let now = Instant::now();
    let api: Api<K8sEvent> = Api::namespaced(shared.client.clone(), namespace);
    let series = shared.lock().events.continue_series(&pod, uid, kind, now);
    if let Some((event, count)) = series {
        let patch = json!({"series": {
            "count": count,
            "lastObservedTime": MicroTime(Timestamp::now()),
        }});
        let sent = api
            .patch(&event, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        if sent.is_err() {
            shared.lock().events.end_series(&pod, kind);
        }
        return sent.map(|_| ());
    }
    let at = Timestamp::now();
    let event_name = format!("{name}.{:x}", at.as_nanosecond());
    let event = K8sEvent {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(event_name.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(at)),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_owned(),
        ),
        reason: Some(reason.to_owned()),
        action: Some(action.to_owned()),
        note: Some(note.to_owned()),
        regarding: Some(r.clone()),
        reporting_controller: Some(CONTROLLER.to_owned()),
        reporting_instance: Some(shared.identity.clone()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &event).await?;
    let mut st = shared.lock();
    // Kept only while the pod is: one deleted meanwhile would never be forgotten.
    if st.pods.get(&pod).is_some_and(|u| u == uid) {
        st.events.record(&pod, uid, kind, event_name, now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILED: Kind = Kind {
        type_: EventType::Warning,
        reason: "FailedScheduling",
        action: "Scheduling",
    };
    const SCHEDULED: Kind = Kind {
        type_: EventType::Normal,
        reason: "Scheduled",
        action: "Binding",
    };

    #[test]
    fn a_repeated_event_continues_its_series_within_the_window() {
        let mut ev = RecentEvents::default();
        let p = PodKey::new("ns", "p");
        let t0 = Instant::now();
        assert_eq!(ev.continue_series(&p, "u1", FAILED, t0), None);
        ev.record(&p, "u1", FAILED, "p.1".into(), t0);
        assert_eq!(
            ev.continue_series(&p, "u1", FAILED, t0 + Duration::from_secs(5)),
            Some(("p.1".into(), 2))
        );
        assert_eq!(
            ev.continue_series(&p, "u1", FAILED, t0 + Duration::from_secs(10)),
            Some(("p.1".into(), 3))
        );
        // Another kind, or another pod under the same name, is another series.
        assert_eq!(ev.continue_series(&p, "u1", SCHEDULED, t0), None);
        assert_eq!(ev.continue_series(&p, "u2", FAILED, t0), None);
        // Past the window, from the last occurrence.
        let late = t0 + Duration::from_secs(10) + SERIES_WINDOW + Duration::from_secs(1);
        assert_eq!(ev.continue_series(&p, "u1", FAILED, late), None);
    }

    #[test]
    fn a_deleted_pod_leaves_nothing() {
        let mut ev = RecentEvents::default();
        let t0 = Instant::now();
        for i in 0..100 {
            let p = PodKey::new("ns", &format!("p{i}"));
            ev.record(&p, "u", FAILED, format!("p{i}.1"), t0);
            ev.record(&p, "u", SCHEDULED, format!("p{i}.2"), t0);
        }
        assert_eq!(ev.len(), 100);
        for i in 0..100 {
            ev.forget(&PodKey::new("ns", &format!("p{i}")));
        }
        assert_eq!(ev.len(), 0);
        let p = PodKey::new("ns", "q");
        ev.record(&p, "u", FAILED, "q.1".into(), t0);
        ev.end_series(&p, FAILED);
        assert_eq!(ev.len(), 0, "a series that ended leaves no empty entry");
    }

    #[test]
    fn never_more_than_max_pods() {
        let mut ev = RecentEvents::default();
        let t0 = Instant::now();
        for i in 0..(MAX_PODS + MAX_PODS / 2) {
            let p = PodKey::new("ns", &format!("p{i}"));
            ev.record(&p, "u", SCHEDULED, format!("p{i}.1"), t0);
            assert!(ev.len() <= MAX_PODS);
        }
        // Expired entries go first when room is needed.
        let mut ev = RecentEvents::default();
        for i in 0..MAX_PODS {
            let p = PodKey::new("ns", &format!("old{i}"));
            ev.record(&p, "u", SCHEDULED, format!("old{i}.1"), t0);
        }
        let later = t0 + SERIES_WINDOW + Duration::from_secs(1);
        let fresh = PodKey::new("ns", "fresh");
        ev.record(&fresh, "u", SCHEDULED, "fresh.1".into(), later);
        assert_eq!(ev.len(), 1);
    }
}
