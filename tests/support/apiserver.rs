//! An in-process Kubernetes API server for tests.
//!
//! It speaks the real HTTP/JSON protocol, so the real `kube` client, watchers and
//! reflectors run against it. Objects are stored as JSON with one global
//! resourceVersion; watches replay from an in-memory event log. The handle can inject
//! faults, drop open watches and report every request it served.

mod http;
mod patch;
mod registry;
mod resources;
mod selectors;
mod status;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use http::{RequestRecord, ServerOptions};
pub use status::ApiError;

use http::Shared;
use registry::{Origin, Scope};

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
            .fallback(http::handle)
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
