//! Watchers → snapshot + queue. One kube-runtime `watcher` per kind (with the default
//! backoff, so dropped streams resume and expired resourceVersions re-list).
//!
//! A re-list (`Init` … `InitApply`* … `InitDone`, after a watch broke past the server's
//! history, e.g. a restarted kube-apiserver answering 410) applies objects as they come
//! and, at `InitDone`, deletes whatever we knew that the list no longer has; until then
//! the snapshot holds the old objects and the new, so it may count a pod twice but
//! never forgets one. Lists are quorum reads (kube-runtime's default
//! `ListSemantic::MostRecent`). A pod we assumed stays assumed whatever the list says of
//! it while pending: only its binding task releases it (see `binder`). A pending copy
//! of a pod known bound is ignored as stale (nodeName is never cleared).

use super::{partition, reporter, webhook, Shared, State};
use crate::model::{node_from_k8s, pod_from_k8s, PodKey, Sym};
use crate::preemption::pdb_from_k8s;
use crate::queue::ClusterEvent;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node as K8sNode, Pod as K8sPod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Work a watcher event leaves for after the lock (API calls).
pub(crate) enum Followup {
    /// Our pod could not be converted: tell its owner why.
    InvalidPod {
        namespace: String,
        name: String,
        uid: String,
        message: String,
        /// `PodScheduled` becomes False now (it is not already).
        transition: bool,
    },
}

/// How one kind's events change the state.
trait Handler: Send + Sync + 'static {
    type K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static;
    const KIND: &'static str;
    fn apply(shared: &Shared, st: &mut State, obj: &Self::K) -> Option<Followup>;
    fn delete(st: &mut State, key: &str);
    fn known_keys(st: &State) -> Vec<String>;
}

fn key_of<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or_default()),
        None => m.name.clone().unwrap_or_default(),
    }
}

fn pod_key(key: &str) -> PodKey {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    PodKey::new(ns, name)
}

pub(crate) fn spawn_all(shared: Arc<Shared>) -> Vec<JoinHandle<()>> {
    let c = shared.client.clone();
    vec![
        tokio::spawn(run::<Nodes>(shared.clone(), 0, Api::all(c.clone()))),
        tokio::spawn(run::<Pods>(shared.clone(), 1, Api::all(c.clone()))),
        tokio::spawn(run::<Pdbs>(shared.clone(), 2, Api::all(c.clone()))),
        tokio::spawn(run::<PriorityClasses>(shared, 3, Api::all(c))),
    ]
}

async fn run<H: Handler>(shared: Arc<Shared>, idx: usize, api: Api<H::K>) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut stop = shared.stop.subscribe();
    let mut relisted: Option<HashSet<String>> = None;
    // A broken watch is logged once, and again when it works: not at every retry.
    let mut failing = false;
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(ev) = ev else { return };
        match (&ev, failing) {
            (Err(e), false) => {
                tracing::warn!(kind = H::KIND, error = %e, "watch failed; retrying with backoff");
                failing = true;
            }
            (Err(e), true) => tracing::debug!(kind = H::KIND, error = %e, "watch failed again"),
            (Ok(_), true) => {
                tracing::info!(kind = H::KIND, "watch works again");
                failing = false;
            }
            (Ok(_), false) => {}
        }
        let followup = match ev {
            Err(_) => None,
            Ok(Event::Init) => {
                relisted = Some(HashSet::new());
                None
            }
            Ok(Event::InitApply(obj)) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(key_of(&obj));
                }
                H::apply(&shared, &mut shared.lock(), &obj)
            }
            Ok(Event::InitDone) => {
                let seen = relisted.take().unwrap_or_default();
                {
                    let mut st = shared.lock();
                    let gone: Vec<String> = H::known_keys(&st)
                        .into_iter()
                        .filter(|k| !seen.contains(k))
                        .collect();
                    for key in &gone {
                        tracing::debug!(kind = H::KIND, %key, "gone after re-list");
                        H::delete(&mut st, key);
                    }
                }
                if !shared.synced[idx].swap(true, Ordering::AcqRel) {
                    tracing::info!(kind = H::KIND, "watcher synced");
                }
                None
            }
            Ok(Event::Apply(obj)) => H::apply(&shared, &mut shared.lock(), &obj),
            Ok(Event::Delete(obj)) => {
                H::delete(&mut shared.lock(), &key_of(&obj));
                None
            }
        };
        // Kept current here too, so a standby's gauge is right.
        super::metrics::record_pending(shared.lock().queue.pending_counts());
        shared.wake.notify_one();
        if let Some(Followup::InvalidPod {
            namespace,
            name,
            uid,
            message,
            transition,
        }) = followup
        {
            tokio::spawn(reporter::invalid_pod(
                shared.clone(),
                namespace,
                name,
                uid,
                message,
                transition,
            ));
        }
    }
}

struct Nodes;

impl Handler for Nodes {
    type K = K8sNode;
    const KIND: &'static str = "Node";

    fn apply(_: &Shared, st: &mut State, obj: &K8sNode) -> Option<Followup> {
        match node_from_k8s(obj) {
            Ok(node) => {
                let existing = st.snap.nodes().get(node.name);
                if let Some(idx) = existing {
                    if st.snap.nodes().node[idx as usize] == node {
                        return None;
                    }
                }
                st.snap.upsert_node(node);
                st.queue.on_event(&if existing.is_some() {
                    ClusterEvent::NodeUpdated
                } else {
                    ClusterEvent::NodeAdded
                });
            }
            Err(e) => {
                // A node we cannot read is a node we cannot place pods on.
                tracing::warn!(error = %e, "ignoring node");
                if let Some(name) = &obj.metadata.name {
                    Self::delete(st, name);
                }
            }
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        if st.snap.remove_node(Sym::new(key)) {
            st.queue.on_event(&ClusterEvent::NodeRemoved);
        }
    }

    fn known_keys(st: &State) -> Vec<String> {
        let nodes = st.snap.nodes();
        (0..nodes.len())
            .filter(|&i| nodes.live[i])
            .map(|i| nodes.node[i].name.as_str().to_owned())
            .collect()
    }
}

struct Pods;

/// Whether the pod's `PodScheduled` condition is False.
fn scheduled_false(obj: &K8sPod) -> bool {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
}

/// Removes a pod from the snapshot and the queue; returns the event its leaving causes.
fn remove_pod(st: &mut State, key: &PodKey) {
    if let Some(e) = st.snap.pod_by_key(key) {
        let app = e.pod.spark.as_ref().map(|s| s.app);
        let executor = e.pod.is_executor();
        st.snap.remove_pod(key);
        st.queue.on_event(&ClusterEvent::PodDeleted { app });
        if let (Some(app), true) = (app, executor) {
            st.queue
                .on_event(&ClusterEvent::AppExecutorsChanged { app });
        }
    } else {
        st.snap.remove_pod(key);
    }
    st.queue.delete(key);
}

impl Handler for Pods {
    type K = K8sPod;
    const KIND: &'static str = "Pod";

    fn apply(shared: &Shared, st: &mut State, obj: &K8sPod) -> Option<Followup> {
        let name = obj.metadata.name.as_deref()?;
        let namespace = obj.metadata.namespace.as_deref().unwrap_or("default");
        let key = PodKey::new(namespace, name);
        let uid = obj.metadata.uid.clone().unwrap_or_default();
        st.pods.insert(key.clone(), uid.clone());
        if scheduled_false(obj) {
            st.scheduled_false.insert(key.clone());
        } else {
            st.scheduled_false.remove(&key);
        }
        let sched = shared.config.scheduler_name.as_str();
        let pod = match pod_from_k8s(obj, &st.priority_classes) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                // Neither countable nor schedulable; never dropped silently.
                remove_pod(st, &key);
                if !partition::raw_is_ours(obj, sched, &shared.partition) {
                    tracing::debug!(error = %e, "another scheduler's pod cannot be converted");
                    return None;
                }
                let message = e.to_string();
                if st.reported.get(&key) == Some(&message) {
                    return None;
                }
                tracing::warn!(error = %e, "pod cannot be converted");
                let transition = !st.scheduled_false.contains(&key);
                st.reported.insert(key, message.clone());
                return Some(Followup::InvalidPod {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    uid,
                    message,
                    transition,
                });
            }
        };
        webhook::observe(shared, st, &pod);
        if pod.node_name.is_some() && !pod.finished {
            let prev = st.snap.pod_by_key(&key).map(|e| (e.pod.clone(), e.assumed));
            if let Err(e) = st.snap.upsert_pod(pod.clone()) {
                tracing::warn!(error = %e, "bound pod not added");
            }
            st.queue.delete(&key);
            st.reported.remove(&key);
            let app = pod.spark.as_ref().map(|s| s.app);
            if prev.as_ref().is_none_or(|(_, assumed)| *assumed) {
                st.queue.on_event(&ClusterEvent::PodAdded);
            }
            match prev {
                Some((old, assumed)) => {
                    if old.labels != pod.labels {
                        st.queue.on_event(&ClusterEvent::PodUpdated);
                    }
                    let counted = |p: &crate::model::Pod, assumed: bool| {
                        (p.node_name, p.terminating, assumed)
                    };
                    if let (Some(app), true) = (app, pod.is_executor()) {
                        if counted(&old, assumed) != counted(&pod, false) {
                            st.queue
                                .on_event(&ClusterEvent::AppExecutorsChanged { app });
                        }
                    }
                }
                None => {
                    if let (Some(app), true) = (app, pod.is_executor()) {
                        st.queue
                            .on_event(&ClusterEvent::AppExecutorsChanged { app });
                    }
                }
            }
            return None;
        }
        // Pending or finished: it holds nothing, unless we assumed it and the binding
        // is still on its way.
        let known = st
            .snap
            .pod_by_key(&key)
            .map(|e| (e.assumed, e.pod.uid == pod.uid));
        match known {
            // A pod's nodeName is never cleared: a pending copy of a pod known bound
            // is older than what we saw (a list served by a lagging cache). Taking it
            // would free the node's room while the pod holds it.
            Some((false, true)) if !pod.finished => {
                tracing::debug!(pod = %key, "ignoring a stale pending copy of a bound pod");
                return None;
            }
            Some((false, _)) => remove_pod(st, &key),
            Some((true, _)) if pod.finished => remove_pod(st, &key),
            _ => {}
        }
        let assumed = known.map(|k| k.0);
        // A gated pod is not ours yet (`partition::is_ours`): it waits outside the
        // queue until an update removes its gates, as upstream.
        if partition::is_ours(&pod, sched, &shared.partition) {
            // Bound by us and not yet seen bound: a late update of the pending object.
            if assumed == Some(true) && !st.queue.contains(&key) {
                return None;
            }
            if let Some(node) = pod.nominated_node_name {
                if st.snap.nomination_of(&key).is_none() {
                    if let Some(idx) = st.snap.nodes().get(node) {
                        st.snap.nominate(pod.clone(), idx);
                    }
                }
            }
            st.queue.add(pod);
        } else {
            st.queue.delete(&key);
            st.snap.clear_nomination(&key);
            st.reported.remove(&key);
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        let key = pod_key(key);
        webhook::forget(st, &key);
        st.pods.remove(&key);
        st.scheduled_false.remove(&key);
        st.reported.remove(&key);
        remove_pod(st, &key);
    }

    fn known_keys(st: &State) -> Vec<String> {
        st.pods
            .keys()
            .map(|k| format!("{}/{}", k.namespace, k.name))
            .collect()
    }
}

struct Pdbs;

impl Handler for Pdbs {
    type K = PodDisruptionBudget;
    const KIND: &'static str = "PodDisruptionBudget";

    // No queue event: budgets change often (status), and a budget with room again
    // only matters to preemption, which the leftover flush retries.
    fn apply(_: &Shared, st: &mut State, obj: &PodDisruptionBudget) -> Option<Followup> {
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let name = obj.metadata.name.clone().unwrap_or_default();
        match pdb_from_k8s(obj) {
            Ok(pdb) => {
                st.snap.upsert_pdb(pdb);
                st.pdbs.insert((ns, name));
            }
            Err(e) => {
                // As upstream: a budget with an invalid selector protects nothing.
                tracing::warn!(error = %e, "ignoring PodDisruptionBudget");
                st.snap.remove_pdb(Sym::new(&ns), &name);
                st.pdbs.remove(&(ns, name));
            }
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        st.snap.remove_pdb(Sym::new(ns), name);
        st.pdbs.remove(&(ns.to_owned(), name.to_owned()));
    }

    fn known_keys(st: &State) -> Vec<String> {
        st.pdbs.iter().map(|(ns, n)| format!("{ns}/{n}")).collect()
    }
}

struct PriorityClasses;

impl Handler for PriorityClasses {
    type K = PriorityClass;
    const KIND: &'static str = "PriorityClass";

    fn apply(_: &Shared, st: &mut State, obj: &PriorityClass) -> Option<Followup> {
        if let Some(name) = &obj.metadata.name {
            st.priority_classes.values.insert(
                name.clone(),
                (obj.value, obj.global_default.unwrap_or(false)),
            );
        }
        None
    }

    fn delete(st: &mut State, key: &str) {
        st.priority_classes.values.remove(key);
    }

    fn known_keys(st: &State) -> Vec<String> {
        st.priority_classes.values.keys().cloned().collect()
    }
}
