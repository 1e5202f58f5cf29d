//! An in-process Kubernetes API server for tests.
//!
//! It earns its place where a real kube-apiserver cannot be made to fail on cue
//! (`tests/live_scheduler.rs` lists those faults: 500s and 409s to chosen requests,
//! writes committed but answered with an error, requests held or never answered,
//! dropped watches and a compacted log). Everything else the live scheduler does is
//! tested on a real control plane (`spark_fleet::testkit::control_plane`).
//!
//! It speaks the real HTTP/JSON protocol, so the real `kube` client, watchers and
//! reflectors run against it. Objects are stored as JSON with one global
//! resourceVersion; watches replay from an in-memory event log. The handle can inject
//! faults, drop open watches and report every request it served.
//!
//! ```ignore
//! mod support;
//! let server = support::apiserver::TestApiServer::start().await;
//! server.create(&node)?;                       // seed state directly (not logged)
//! let pods: kube::Api<Pod> = kube::Api::all(server.client());
//! server.fail_next("POST", "/binding", 500, 1); // next binding POST fails once
//! server.drop_watches();                        // watchers must resume
//! assert_eq!(server.count_requests("POST", "/pods/p/binding"), 2);
//! ```
//!
//! Served: core/v1 pods (+status, +binding), nodes (+status), events, namespaces;
//! events.k8s.io/v1 events; policy/v1 poddisruptionbudgets (+status);
//! scheduling.k8s.io/v1 priorityclasses; coordination.k8s.io/v1 leases; the legacy
//! `POST /api/v1/namespaces/{ns}/bindings`; `/version`, `/healthz`, `/livez`, `/readyz`.
//!
//! Behaviour that follows the real server: binding answers `201` with a `Status`
//! (`status: Success`), not the Binding, and sets `PodScheduled=True`; a second binding is
//! `409 Conflict` "pod X is already assigned to node \"Y\""; pod creation defaults
//! `spec.schedulerName` to `default-scheduler` and `status.phase` to `Pending`; writes to
//! the main resource ignore `status` and writes to `/status` change only status; a write
//! that changes nothing keeps the resourceVersion and emits no event; selecting watches
//! see objects leaving (entering) the selection as DELETED (ADDED); unsupported field
//! selector labels are `400`; a watch from an RV older than the log is a `410 Expired`
//! ERROR event; watches without RV (or RV 0) start with ADDED events for current state,
//! and `sendInitialEvents=true` ends those with an `k8s.io/initial-events-end` bookmark;
//! API writes of events.k8s.io/v1 Events and Leases get the real server's field
//! validation (required fields, length limits, `MicroTime` format; see `validation.rs`).
//!
//! Simplifications: `limit`/`continue` and `resourceVersionMatch` on lists are ignored
//! (everything, current state); namespaces need not exist; core/v1 and events.k8s.io/v1
//! Events are separate collections (no conversion between them); strategic merge knows
//! merge keys by field name (`conditions` by `type`, containers by `name`, ...); JSON
//! patch and server-side apply answer `415`; no admission or quota, and no field
//! validation beyond object shape for other kinds; pods are deleted at once unless
//! `ServerOptions::graceful_pod_deletion` is set; no auth.

mod patch;
mod registry;
mod resources;
mod selectors;
mod service;
mod status;
mod store;
mod validation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use service::{RequestRecord, ServerOptions};
pub use status::ApiError;

use registry::{Origin, Scope};
use service::Shared;

/// A running test API server; shuts down when dropped.
pub struct TestApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn resource_id<K: Resource<DynamicType = ()>>() -> resources::ResourceId {
    match resources::for_type::<K>() {
        Some(id) => id,
        None => panic!(
            "the test API server does not serve {}/{} {}",
            K::group(&()),
            K::version(&()),
            K::plural(&())
        ),
    }
}

fn to_value<K: Serialize>(obj: &K) -> Value {
    serde_json::to_value(obj).expect("typed Kubernetes objects serialize to JSON")
}

fn from_value<K: DeserializeOwned>(v: Value) -> K {
    match serde_json::from_value(v.clone()) {
        Ok(k) => k,
        Err(e) => panic!("stored object does not deserialize as the requested type: {e}: {v}"),
    }
}

impl TestApiServer {
    /// Starts a server on 127.0.0.1 with an OS-assigned port.
    pub async fn start() -> TestApiServer {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> TestApiServer {
        let shared = Arc::new(Shared::new(options));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener has a local address");
        let app = axum::Router::new()
            .fallback(service::handle)
            .with_state(shared.clone());
        let mut shutdown = shared.shutdown.subscribe();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.wait_for(|s| *s).await;
                })
                .await;
        });
        TestApiServer { addr, shared }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A real kube client for this server (no auth, default namespace "default").
    pub fn client(&self) -> kube::Client {
        let uri = self.url().parse().expect("server URL is a valid URI");
        kube::Client::try_from(kube::Config::new(uri)).expect("kube client for test server")
    }

    /// Stores a new object, like POST but lenient: a set resourceVersion is ignored
    /// and status is kept. Namespaced objects without a namespace go to "default".
    pub fn create<K>(&self, obj: &K) -> Result<K, ApiError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let id = resource_id::<K>();
        registry::create(&self.shared.store, id, None, to_value(obj), Origin::Handle)
            .map(from_value)
    }

    /// The stored object; `namespace` is ignored for cluster-scoped kinds.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let id = resource_id::<K>();
        let ns = if resources::resource(id).namespaced {
            namespace
        } else {
            ""
        };
        self.shared.store.get(id, ns, name).map(from_value)
    }

    /// All stored objects of a kind, in one namespace or (None) everywhere.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let id = resource_id::<K>();
        let (_, items) = self.shared.store.list(id, namespace, |_| true);
        items.into_iter().map(from_value).collect()
    }

    /// Replaces a whole object, status included (standing in for kubelets/controllers).
    /// A non-empty resourceVersion in `obj` must match the stored one.
    pub fn replace<K>(&self, obj: &K) -> Result<K, ApiError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let id = resource_id::<K>();
        let value = to_value(obj);
        let rt = resources::resource(id);
        let ns = registry::namespace_for(rt, None, &value)?;
        let name = obj.meta().name.clone().unwrap_or_default();
        registry::replace(&self.shared.store, id, &ns, &name, value, Scope::Whole).map(from_value)
    }

    /// JSON merge patch of a whole object, status included.
    pub fn patch<K>(&self, namespace: &str, name: &str, patch: &Value) -> Result<K, ApiError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let id = resource_id::<K>();
        let ns = if resources::resource(id).namespaced {
            namespace
        } else {
            ""
        };
        registry::patch(
            &self.shared.store,
            id,
            ns,
            name,
            registry::PatchKind::Merge,
            patch,
            Scope::Whole,
        )
        .map(from_value)
    }

    /// Deletes an object at once (also a gracefully terminating pod) and returns it.
    pub fn delete<K>(&self, namespace: &str, name: &str) -> Result<K, ApiError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let id = resource_id::<K>();
        let ns = if resources::resource(id).namespaced {
            namespace
        } else {
            ""
        };
        registry::delete(&self.shared.store, id, ns, name, None, false).map(from_value)
    }

    /// Waits until the object exists and `condition` holds for it; `None` after `timeout`.
    pub async fn wait_for<K>(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        condition: impl Fn(&K) -> bool,
    ) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.shared.store.subscribe();
        loop {
            changed.borrow_and_update();
            if let Some(obj) = self.get::<K>(namespace, name) {
                if condition(&obj) {
                    return Some(obj);
                }
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// Waits until at least `count` logged requests match (see `count_requests`);
    /// returns whether they did within `timeout`.
    pub async fn wait_for_requests(
        &self,
        method: &str,
        path_substring: &str,
        count: usize,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.count_requests(method, path_substring) >= count {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Raw stored JSON, by API group ("" for core), plural, namespace ("" if cluster-scoped), name.
    pub fn raw_get(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let id = raw_id(group, plural)?;
        self.shared.store.get(id, namespace, name)
    }

    /// All raw stored JSON objects of a resource.
    pub fn raw_list(&self, group: &str, plural: &str) -> Vec<Value> {
        match raw_id(group, plural) {
            Some(id) => self.shared.store.list(id, None, |_| true).1,
            None => Vec::new(),
        }
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.current_rv()
    }

    /// The next `count` requests whose method equals `method` (case-insensitive) and whose
    /// path+query contains `path_substring` are answered with a `Status` of `status_code`.
    /// Note: the kube client itself retries 429/503/504, so use e.g. 500 to reach callers.
    pub fn fail_next(&self, method: &str, path_substring: &str, status_code: u16, count: usize) {
        self.shared
            .fail_next(method, path_substring, status_code, count);
    }

    /// The next `count` matching requests (as for `fail_next`) are served (and
    /// committed) normally, then answered with `status_code`: a write whose answer was
    /// lost (a real server's is when it dies mid-request; it cannot be timed in a test).
    pub fn serve_then_fail_next(
        &self,
        method: &str,
        path_substring: &str,
        status_code: u16,
        count: usize,
    ) {
        self.shared
            .serve_then_fail_next(method, path_substring, status_code, count);
    }

    /// The next `count` matching requests (as for `fail_next`) are served normally but
    /// only after `delay`, e.g. to keep a binding in flight.
    pub fn delay_next(&self, method: &str, path_substring: &str, delay: Duration, count: usize) {
        self.shared.delay_next(method, path_substring, delay, count);
    }

    /// Aborts every open watch stream mid-response (the client sees a broken connection).
    pub fn drop_watches(&self) {
        self.shared.drop_watches();
    }

    /// Number of watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches()
    }

    /// Drops the event log: watches resuming from an older resourceVersion get a
    /// 410 Expired ERROR event and must re-list.
    pub fn compact(&self) {
        self.shared.store.compact();
    }

    /// Every request served so far, in order.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.request_log()
    }

    /// How many logged requests had this method and a path+query containing `path_substring`.
    pub fn count_requests(&self, method: &str, path_substring: &str) -> usize {
        self.request_log()
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(path_substring))
            .count()
    }

    pub fn clear_request_log(&self) {
        self.shared.clear_request_log();
    }
}

fn raw_id(group: &str, plural: &str) -> Option<resources::ResourceId> {
    resources::RESOURCES
        .iter()
        .position(|r| r.group == group && r.plural == plural)
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        // Ends the accept loop and every open watch stream.
        self.shared.shutdown.send_replace(true);
    }
}
