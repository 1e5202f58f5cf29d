//! Executors admitted with a capacity type and not yet placed, per application.
//!
//! Spark creates executors in concurrent batches: the twentieth executor of a
//! batch is admitted before the API server has stored the first, so the
//! snapshot cannot count them. The ledger can: an admission is recorded when
//! it is decided (under the same lock as the next decision), then reconciled
//! with the watch. An entry is
//! - *admitted*: decided here, not seen through the watch yet; it expires after
//!   the configured time (a later admission step may have rejected the pod);
//! - *pending*: the watch shows the pod unbound with its type annotation
//!   (also pods admitted by another replica); it stays until the pod is bound,
//!   finishes or is deleted.
//!
//! A pod placed in the snapshot (assumed or bound) is counted there by its
//! node's type, never here (`pending_by_type` leaves placed pods out).

use crate::model::{Pod, PodKey, Sym};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// None for a pod created with `generateName`: its name is not known at admission.
    key: Option<PodKey>,
    ty: Sym,
    /// When admitted here and not seen since; None once the watch showed it.
    admitted_ms: Option<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct Ledger {
    apps: HashMap<Sym, Vec<Entry>>,
}

impl Ledger {
    /// Records that `key` (None: not named yet) of `app` was admitted with `ty`.
    /// Admitting a named pod again (a reinvoked webhook) replaces its entry.
    pub fn admit(&mut self, app: Sym, key: Option<PodKey>, ty: Sym, now_ms: i64) {
        let entries = self.apps.entry(app).or_default();
        if let Some(k) = &key {
            if let Some(e) = entries.iter_mut().find(|e| e.key.as_ref() == Some(k)) {
                e.ty = ty;
                return;
            }
        }
        entries.push(Entry {
            key,
            ty,
            admitted_ms: Some(now_ms),
        });
    }

    /// A pod as the watch shows it. An unplaced, running executor carrying the
    /// type annotation (`ty`) is pending; anything else leaves the ledger.
    pub fn observe(&mut self, pod: &Pod, ty: Option<Sym>) {
        let Some(app) = pod
            .spark
            .as_ref()
            .filter(|_| pod.is_executor())
            .map(|s| s.app)
        else {
            return;
        };
        let pending = pod.node_name.is_none() && !pod.finished && !pod.terminating;
        let entries = self.apps.entry(app).or_default();
        let mine = entries
            .iter()
            .position(|e| e.key.as_ref() == Some(&pod.key));
        let found = match mine {
            Some(i) => Some(i),
            // A pod admitted without a name: the oldest unnamed entry of its type.
            None => ty.and_then(|t| entries.iter().position(|e| e.key.is_none() && e.ty == t)),
        };
        match (pending, ty) {
            (true, Some(t)) => {
                let seen = Entry {
                    key: Some(pod.key.clone()),
                    ty: t,
                    admitted_ms: None,
                };
                match found {
                    Some(i) => entries[i] = seen,
                    None => entries.push(seen),
                }
            }
            _ => {
                if let Some(i) = found {
                    entries.remove(i);
                }
            }
        }
        if entries.is_empty() {
            self.apps.remove(&app);
        }
    }

    /// The pod was deleted.
    pub fn forget(&mut self, app: Sym, key: &PodKey) {
        if let Some(entries) = self.apps.get_mut(&app) {
            entries.retain(|e| e.key.as_ref() != Some(key));
            if entries.is_empty() {
                self.apps.remove(&app);
            }
        }
    }

    /// The pod was deleted (its application unknown).
    pub fn forget_key(&mut self, key: &PodKey) {
        self.apps.retain(|_, entries| {
            entries.retain(|e| e.key.as_ref() != Some(key));
            !entries.is_empty()
        });
    }

    /// Drops admissions older than `ttl_ms` that the watch never showed.
    pub fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        self.apps.retain(|_, entries| {
            entries.retain(|e| {
                e.admitted_ms
                    .is_none_or(|at| now_ms.saturating_sub(at) <= ttl_ms)
            });
            !entries.is_empty()
        });
    }

    /// `app`'s executors admitted or pending with a type and not placed (by
    /// `placed`), by type, leaving `exclude` out: admitted and pending counts.
    pub fn pending_by_type(
        &self,
        app: Sym,
        exclude: Option<&PodKey>,
        placed: impl Fn(&PodKey) -> bool,
    ) -> Vec<LedgerCount> {
        let mut out: Vec<LedgerCount> = Vec::new();
        for e in self.apps.get(&app).into_iter().flatten() {
            if e.key
                .as_ref()
                .is_some_and(|k| Some(k) == exclude || placed(k))
            {
                continue;
            }
            let i = match out.iter().position(|c| c.ty == e.ty) {
                Some(i) => i,
                None => {
                    out.push(LedgerCount {
                        ty: e.ty,
                        admitted: 0,
                        pending: 0,
                    });
                    out.len() - 1
                }
            };
            if e.admitted_ms.is_some() {
                out[i].admitted += 1;
            } else {
                out[i].pending += 1;
            }
        }
        out
    }

    /// Entries across all applications (for tests and metrics).
    pub fn len(&self) -> usize {
        self.apps.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}

/// An application's unplaced executors of one type: `admitted` not yet seen
/// through the watch, `pending` seen unbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerCount {
    pub ty: Sym,
    pub admitted: u32,
    pub pending: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{pod, GI};

    fn s(v: &str) -> Sym {
        Sym::new(v)
    }

    fn counts(l: &Ledger, app: &str) -> Vec<(&'static str, u32, u32)> {
        let mut v: Vec<_> = l
            .pending_by_type(s(app), None, |_| false)
            .into_iter()
            .map(|c| (c.ty.as_str(), c.admitted, c.pending))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn admitted_then_seen_then_bound() {
        let mut l = Ledger::default();
        let key = PodKey::new("ns", "e1");
        l.admit(s("app"), Some(key.clone()), s("spot"), 1000);
        l.admit(s("app"), Some(key.clone()), s("spot"), 1001);
        assert_eq!(counts(&l, "app"), vec![("spot", 1, 0)]);
        let mut p = pod("e1", 100, GI).namespace("ns").executor("app").build();
        l.observe(&p, Some(s("spot")));
        assert_eq!(counts(&l, "app"), vec![("spot", 0, 1)]);
        // Seen entries do not expire.
        l.expire(1_000_000, 30_000);
        assert_eq!(counts(&l, "app"), vec![("spot", 0, 1)]);
        // Placed in the snapshot: counted there, not here.
        assert!(l.pending_by_type(s("app"), None, |k| *k == key).is_empty());
        assert!(l
            .pending_by_type(s("app"), Some(&key), |_| false)
            .is_empty());
        p.node_name = Some(s("n1"));
        l.observe(&p, Some(s("spot")));
        assert!(l.is_empty());
    }

    #[test]
    fn unnamed_admissions_are_matched_by_type_and_expire() {
        let mut l = Ledger::default();
        l.admit(s("app"), None, s("spot"), 0);
        l.admit(s("app"), None, s("on-demand"), 0);
        l.admit(s("app"), None, s("on-demand"), 0);
        assert_eq!(counts(&l, "app"), vec![("on-demand", 2, 0), ("spot", 1, 0)]);
        let p = pod("e-x7", 100, GI).executor("app").build();
        l.observe(&p, Some(s("on-demand")));
        assert_eq!(counts(&l, "app"), vec![("on-demand", 1, 1), ("spot", 1, 0)]);
        l.expire(30_000, 30_000);
        assert_eq!(counts(&l, "app"), vec![("on-demand", 1, 1), ("spot", 1, 0)]);
        l.expire(30_001, 30_000);
        assert_eq!(counts(&l, "app"), vec![("on-demand", 0, 1)]);
        l.forget(s("app"), &p.key);
        assert!(l.is_empty());
    }

    #[test]
    fn pods_without_type_or_finished_leave() {
        let mut l = Ledger::default();
        let key = PodKey::new("default", "e1");
        l.admit(s("app"), Some(key), s("spot"), 0);
        let mut p = pod("e1", 100, GI).executor("app").build();
        p.finished = true;
        l.observe(&p, Some(s("spot")));
        assert!(l.is_empty());
        // A driver or a pod of no application is never recorded.
        let d = pod("d", 100, GI).driver("app").build();
        l.observe(&d, Some(s("spot")));
        assert!(l.is_empty());
    }
}
