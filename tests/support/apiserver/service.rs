//! The HTTP front: request dispatch, watch streaming, fault injection and the request log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::registry::{self, Origin, PatchKind, Scope};
use super::resources::{parse_path, resource, ResourcePath, Target};
use super::selectors::{FieldSelector, LabelSelector, Selection};
use super::status::{self, ApiError};
use super::store::{LoggedEvent, Store};

/// One served request, as `request_log()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query exactly as requested.
    pub path: String,
    pub status: u16,
}

#[derive(Debug, Clone, Copy)]
enum FaultAction {
    /// Answer with a Status of this code instead of serving.
    Fail(u16),
    /// Serve normally after this delay.
    Delay(Duration),
    /// Serve (and commit) normally, then answer with a Status of this code: a write
    /// whose answer was lost.
    ServeThenFail(u16),
}

struct Fault {
    method: String,
    path_substring: String,
    action: FaultAction,
    remaining: usize,
}

/// Tuning of a server instance.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Events kept for watch resumption; older resourceVersions get 410 Expired.
    pub event_log_capacity: usize,
    /// How often an idle watch that allows bookmarks gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// DELETE of a bound pod only sets deletionTimestamp (a MODIFIED event) until the
    /// test removes it with `TestApiServer::delete`, like a kubelet finishing termination.
    pub graceful_pod_deletion: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            event_log_capacity: 10_000,
            bookmark_interval: Duration::from_secs(1),
            graceful_pod_deletion: false,
        }
    }
}

pub struct Shared {
    pub store: Store,
    pub options: ServerOptions,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<RequestRecord>>,
    /// Bumped by `drop_watches`; open watch streams abort when it changes.
    drop_generation: watch::Sender<u64>,
    pub shutdown: watch::Sender<bool>,
    open_watches: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(options: ServerOptions) -> Self {
        Shared {
            store: Store::new(options.event_log_capacity),
            options,
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            drop_generation: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            open_watches: AtomicUsize::new(0),
        }
    }

    fn add_fault(&self, method: &str, path_substring: &str, action: FaultAction, count: usize) {
        lock(&self.faults).push(Fault {
            method: method.to_ascii_uppercase(),
            path_substring: path_substring.to_string(),
            action,
            remaining: count,
        });
    }

    pub fn fail_next(&self, method: &str, path_substring: &str, status: u16, count: usize) {
        self.add_fault(method, path_substring, FaultAction::Fail(status), count);
    }

    pub fn delay_next(&self, method: &str, path_substring: &str, delay: Duration, count: usize) {
        self.add_fault(method, path_substring, FaultAction::Delay(delay), count);
    }

    pub fn serve_then_fail_next(
        &self,
        method: &str,
        path_substring: &str,
        status: u16,
        count: usize,
    ) {
        self.add_fault(
            method,
            path_substring,
            FaultAction::ServeThenFail(status),
            count,
        );
    }

    /// The first armed fault matching this request, consumed. Faults apply in the order
    /// they were armed.
    fn take_fault(&self, method: &str, path: &str) -> Option<FaultAction> {
        let mut faults = lock(&self.faults);
        let fault = faults.iter_mut().find(|f| {
            f.remaining > 0 && f.method == method && path.contains(f.path_substring.as_str())
        })?;
        fault.remaining -= 1;
        let action = fault.action;
        faults.retain(|f| f.remaining > 0);
        Some(action)
    }

    pub fn drop_watches(&self) {
        self.drop_generation.send_modify(|g| *g += 1);
    }

    pub fn open_watches(&self) -> usize {
        self.open_watches.load(Ordering::SeqCst)
    }

    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    pub fn clear_request_log(&self) {
        lock(&self.log).clear();
    }

    fn record(&self, method: &Method, path: &str, status: u16) {
        lock(&self.log).push(RequestRecord {
            method: method.as_str().to_string(),
            path: path.to_string(),
            status,
        });
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(err: &ApiError) -> Response {
    json_response(err.code, &err.to_status())
}

/// The single entry point: every request is dispatched from its path here.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    let fault = shared.take_fault(method.as_str(), &path_and_query);
    if let Some(FaultAction::Delay(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    let (code, response) = match fault {
        Some(FaultAction::Fail(code)) => {
            let err = ApiError::injected(code);
            (code, error_response(&err))
        }
        Some(FaultAction::ServeThenFail(code)) => {
            let _ = dispatch(&shared, &method, &uri, &headers, &body);
            let err = ApiError::injected(code);
            (code, error_response(&err))
        }
        _ => match dispatch(&shared, &method, &uri, &headers, &body) {
            Ok(Reply::Json(code, value)) => (code, json_response(code, &value)),
            Ok(Reply::Watch(response)) => (200, response),
            Err(err) => (err.code, error_response(&err)),
        },
    };
    shared.record(&method, &path_and_query, code);
    response
}

enum Reply {
    Json(u16, Value),
    Watch(Response),
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON request body: {e}")))
}

fn is_true(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true" | "1"))
}

fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let query: HashMap<String, String> = Query::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let store = &shared.store;
    match parse_path(uri.path()) {
        Target::Version => Ok(Reply::Json(
            200,
            json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-spark-fleet-test",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
            }),
        )),
        Target::Healthz => Ok(Reply::Json(200, json!("ok"))),
        Target::Unknown => Err(ApiError::not_found_path(uri.path())),
        Target::Bindings { namespace } => {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed("bindings only support create"));
            }
            let binding = parse_body(body)?;
            let name = binding
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            registry::bind(store, &namespace, &name, &binding)?;
            Ok(Reply::Json(201, status::success(201)))
        }
        Target::Resource(path) => dispatch_resource(shared, method, headers, body, &query, path),
    }
}

fn dispatch_resource(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
    query: &HashMap<String, String>,
    path: ResourcePath,
) -> Result<Reply, ApiError> {
    let store = &shared.store;
    let rt = resource(path.resource);
    let ns = path.namespace.clone().unwrap_or_default();
    let scope = match path.subresource.as_deref() {
        None => Scope::Main,
        Some("status") if rt.has_status => Scope::Status,
        Some("binding") if rt.plural == "pods" && rt.group.is_empty() => {
            let name = path.name.as_deref().unwrap_or("");
            if method != Method::POST {
                return Err(ApiError::method_not_allowed(
                    "pods/binding only supports create",
                ));
            }
            registry::bind(store, &ns, name, &parse_body(body)?)?;
            return Ok(Reply::Json(201, status::success(201)));
        }
        Some(other) => {
            return Err(ApiError::not_found_path(&format!(
                "{}/{}",
                rt.plural, other
            )))
        }
    };
    let Some(name) = path.name.as_deref() else {
        return match *method {
            Method::GET => {
                let selection = Selection {
                    labels: LabelSelector::parse(
                        query.get("labelSelector").map(String::as_str).unwrap_or(""),
                    )?,
                    fields: FieldSelector::parse(
                        query.get("fieldSelector").map(String::as_str).unwrap_or(""),
                        rt,
                    )?,
                };
                if is_true(query.get("watch")) {
                    start_watch(shared, path, selection, query).map(Reply::Watch)
                } else {
                    let (rv, items) = store.list(path.resource, path.namespace.as_deref(), |o| {
                        selection.matches(o)
                    });
                    Ok(Reply::Json(
                        200,
                        json!({
                            "kind": format!("{}List", rt.kind),
                            "apiVersion": rt.api_version(),
                            "metadata": { "resourceVersion": rv.to_string() },
                            "items": items,
                        }),
                    ))
                }
            }
            Method::POST => {
                if path.namespace.is_none() && rt.namespaced {
                    return Err(ApiError::method_not_allowed(
                        "create of a namespaced resource needs a namespace in the path",
                    ));
                }
                let obj = registry::create(
                    store,
                    path.resource,
                    path.namespace.as_deref(),
                    parse_body(body)?,
                    Origin::Api,
                )?;
                Ok(Reply::Json(201, obj))
            }
            _ => Err(ApiError::method_not_allowed(format!(
                "{method} is not supported on a collection"
            ))),
        };
    };
    match *method {
        Method::GET => store
            .get(path.resource, &ns, name)
            .map(|o| Reply::Json(200, o))
            .ok_or_else(|| ApiError::not_found(rt, name)),
        Method::PUT => registry::replace(store, path.resource, &ns, name, parse_body(body)?, scope)
            .map(|o| Reply::Json(200, o)),
        Method::PATCH => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = PatchKind::from_content_type(content_type)?;
            registry::patch(
                store,
                path.resource,
                &ns,
                name,
                kind,
                &parse_body(body)?,
                scope,
            )
            .map(|o| Reply::Json(200, o))
        }
        Method::DELETE if scope == Scope::Main => {
            let options = if body.is_empty() {
                None
            } else {
                Some(parse_body(body)?)
            };
            registry::delete(
                store,
                path.resource,
                &ns,
                name,
                options.as_ref(),
                shared.options.graceful_pod_deletion,
            )
            .map(|o| Reply::Json(200, o))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported here"
        ))),
    }
}

/// A line of a watch stream.
fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark(rt_kind: &str, api_version: &str, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    event_line(
        "BOOKMARK",
        &json!({ "kind": rt_kind, "apiVersion": api_version, "metadata": meta }),
    )
}

/// The watch-event type a selecting watcher sees for a logged change, if any.
fn visible(event: &LoggedEvent, selection: &Selection) -> Option<&'static str> {
    use super::store::EventType::*;
    match event.kind {
        Added => selection.matches(&event.object).then_some("ADDED"),
        Deleted => selection.matches(&event.object).then_some("DELETED"),
        Modified => {
            let now = selection.matches(&event.object);
            let before = event
                .previous
                .as_deref()
                .is_some_and(|p| selection.matches(p));
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
    }
}

type Chunk = Result<Bytes, std::io::Error>;

struct WatchGuard(Arc<Shared>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

fn start_watch(
    shared: &Arc<Shared>,
    path: ResourcePath,
    selection: Selection,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let rt = resource(path.resource);
    let rv_param = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let start_rv: Option<u64> = match rv_param {
        "" | "0" => None,
        s => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
        ),
    };
    let send_initial = is_true(query.get("sendInitialEvents"));
    let bookmarks = is_true(query.get("allowWatchBookmarks"));
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);

    // Subscribe before reading the store so no change slips between snapshot and wait.
    let mut changed = shared.store.subscribe();
    let mut dropped = shared.drop_generation.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let (tx, rx) = mpsc::channel::<Chunk>(256);
    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    let guard = WatchGuard(shared.clone());
    let shared = shared.clone();
    let namespace = path.namespace.clone();
    let api_version = rt.api_version();
    let bookmark_interval = shared.options.bookmark_interval;

    tokio::spawn(async move {
        let _guard = guard;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut cursor = match start_rv {
            Some(rv) => rv,
            None => {
                // RV unset or "0": the current state as synthetic ADDED events first.
                let (rv, items) = shared.store.list(path.resource, namespace.as_deref(), |o| {
                    selection.matches(o)
                });
                for item in &items {
                    if tx.send(Ok(event_line("ADDED", item))).await.is_err() {
                        return;
                    }
                }
                if send_initial
                    && tx
                        .send(Ok(bookmark(rt.kind, &api_version, rv, true)))
                        .await
                        .is_err()
                {
                    return;
                }
                rv
            }
        };
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            if dropped.has_changed().unwrap_or(true) {
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "watch dropped by test",
                    )))
                    .await;
                return;
            }
            match shared
                .store
                .events_since(path.resource, namespace.as_deref(), cursor)
            {
                Ok((events, seen)) => {
                    for event in &events {
                        if let Some(kind) = visible(event, &selection) {
                            if tx.send(Ok(event_line(kind, &event.object))).await.is_err() {
                                return;
                            }
                        }
                    }
                    cursor = seen;
                }
                Err(expired) => {
                    let err = ApiError::expired(format!(
                        "too old resource version: {} ({})",
                        expired.requested, expired.oldest
                    ));
                    let _ = tx.send(Ok(event_line("ERROR", &err.to_status()))).await;
                    return;
                }
            }
            let sleep_until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            // Biased: a drop or shutdown requested together with new changes wins, so
            // changes made right after `drop_watches()` are only seen on the resumed watch.
            tokio::select! {
                biased;
                _ = dropped.changed() => {
                    // Abort mid-stream so the client sees a broken connection, not a clean end.
                    let _ = tx.send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "watch dropped by test",
                    ))).await;
                    return;
                }
                _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return,
                _ = tx.closed() => return,
                res = changed.changed() => {
                    if res.is_err() { return; }
                }
                _ = sleep_until_deadline => {
                    if bookmarks {
                        let _ = tx.send(Ok(bookmark(rt.kind, &api_version, cursor, false))).await;
                    }
                    return;
                }
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(bookmark(rt.kind, &api_version, cursor, false))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });

    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
