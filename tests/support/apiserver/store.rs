//! Object storage with one global, monotonically increasing resourceVersion and an
//! in-memory event log that watches replay from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::watch;

use super::resources::{resource, ResourceId};
use super::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the event log.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub rv: u64,
    pub resource: ResourceId,
    pub namespace: String,
    pub kind: EventType,
    /// The object after the change (for deletes: the deleted object with the delete's RV).
    pub object: Arc<Value>,
    /// The object before a modification; lets a selecting watch turn a change that moves
    /// an object out of (into) its selection into DELETED (ADDED), as the real server does.
    pub previous: Option<Arc<Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    resource: ResourceId,
    namespace: String,
    name: String,
}

struct Inner {
    rv: u64,
    objects: BTreeMap<ObjectKey, Value>,
    log: VecDeque<LoggedEvent>,
    log_capacity: usize,
    /// Events with RV <= this may have been dropped from the log.
    compacted_through: u64,
}

/// A watch asked for a resourceVersion whose events are no longer retained.
#[derive(Debug, Clone, Copy)]
pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
    /// Carries the latest resourceVersion; watches wait on it for new events.
    changed: watch::Sender<u64>,
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

impl Store {
    pub fn new(log_capacity: usize) -> Self {
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                log: VecDeque::new(),
                log_capacity: log_capacity.max(1),
                compacted_through: 0,
            }),
            changed: watch::channel(1).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge every later request.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, res: ResourceId, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&ObjectKey {
                resource: res,
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .cloned()
    }

    /// Objects of one resource (one namespace, or all), sorted by namespace and name,
    /// with the resourceVersion the list is consistent at.
    pub fn list(
        &self,
        res: ResourceId,
        namespace: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> (u64, Vec<Value>) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|(k, _)| k.resource == res && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v)
            .filter(|v| keep(v))
            .cloned()
            .collect();
        (inner.rv, items)
    }

    fn record(inner: &mut Inner, event: LoggedEvent) {
        inner.log.push_back(event);
        while inner.log.len() > inner.log_capacity {
            if let Some(old) = inner.log.pop_front() {
                inner.compacted_through = old.rv;
            }
        }
    }

    /// Inserts a new object; `obj` must already carry its metadata except resourceVersion.
    pub fn insert(
        &self,
        res: ResourceId,
        namespace: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let rv = {
            let mut inner = self.lock();
            let key = ObjectKey {
                resource: res,
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            if inner.objects.contains_key(&key) {
                return Err(ApiError::already_exists(resource(res), name));
            }
            inner.rv += 1;
            let rv = inner.rv;
            set_rv(&mut obj, rv);
            inner.objects.insert(key, obj.clone());
            Self::record(
                &mut inner,
                LoggedEvent {
                    rv,
                    resource: res,
                    namespace: namespace.to_string(),
                    kind: EventType::Added,
                    object: Arc::new(obj.clone()),
                    previous: None,
                },
            );
            rv
        };
        self.changed.send_replace(rv);
        Ok(obj)
    }

    /// Read-modify-write of one object under the store lock. `change` gets the current
    /// object and returns the complete new one; when that equals the current object
    /// (ignoring resourceVersion) nothing is written and no event is emitted.
    pub fn update(
        &self,
        res: ResourceId,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = ObjectKey {
            resource: res,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let Some(current) = inner.objects.get(&key) else {
            return Err(ApiError::not_found(resource(res), name));
        };
        let mut next = change(current)?;
        let current_rv = current.pointer("/metadata/resourceVersion").cloned();
        if let (Some(meta), Some(v)) = (
            next.get_mut("metadata").and_then(Value::as_object_mut),
            current_rv,
        ) {
            meta.insert("resourceVersion".into(), v);
        }
        if next == *current {
            return Ok(next);
        }
        let previous = Arc::new(current.clone());
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut next, rv);
        inner.objects.insert(key, next.clone());
        Self::record(
            &mut inner,
            LoggedEvent {
                rv,
                resource: res,
                namespace: namespace.to_string(),
                kind: EventType::Modified,
                object: Arc::new(next.clone()),
                previous: Some(previous),
            },
        );
        drop(inner);
        self.changed.send_replace(rv);
        Ok(next)
    }

    /// Removes an object after `precondition` accepted it; returns it with the delete's RV.
    pub fn remove(
        &self,
        res: ResourceId,
        namespace: &str,
        name: &str,
        precondition: impl FnOnce(&Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = ObjectKey {
            resource: res,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let Some(current) = inner.objects.get(&key) else {
            return Err(ApiError::not_found(resource(res), name));
        };
        precondition(current)?;
        let mut obj = inner.objects.remove(&key).unwrap_or_default();
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut obj, rv);
        Self::record(
            &mut inner,
            LoggedEvent {
                rv,
                resource: res,
                namespace: namespace.to_string(),
                kind: EventType::Deleted,
                object: Arc::new(obj.clone()),
                previous: None,
            },
        );
        drop(inner);
        self.changed.send_replace(rv);
        Ok(obj)
    }

    /// Logged events of one resource with RV > `since`, and the RV the caller has now
    /// seen everything up to.
    pub fn events_since(
        &self,
        res: ResourceId,
        namespace: Option<&str>,
        since: u64,
    ) -> Result<(Vec<LoggedEvent>, u64), Expired> {
        let inner = self.lock();
        if since < inner.compacted_through {
            return Err(Expired {
                requested: since,
                oldest: inner.compacted_through,
            });
        }
        let start = inner.log.partition_point(|e| e.rv <= since);
        let events = inner
            .log
            .range(start..)
            .filter(|e| e.resource == res && namespace.is_none_or(|ns| e.namespace == ns))
            .cloned()
            .collect();
        Ok((events, inner.rv.max(since)))
    }

    /// Drops the whole event log: watches resuming from an older RV get 410 Expired.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.log.clear();
        inner.compacted_through = inner.rv;
    }
}
