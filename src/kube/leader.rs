//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection:
//! the decision is a pure function of what we last observed; the loop around it does
//! the I/O (create with 409 handling, replace guarded by resourceVersion).
//!
//! Expiry is judged on *our* clock from when we last saw the record change (not from
//! the holder's renewTime), so clock skew between instances does not matter.

use super::Shared;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

/// The lease record as last observed, with the local time it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Empty or None: released.
    pub holder: Option<String>,
    pub lease_duration_ms: u64,
    /// Local monotonic ms when this record (holder or renewal) last changed.
    pub changed_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderAction {
    /// No lease object: create it holding it.
    Create,
    /// Free (released) or expired: take it over.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// What to do given the observed lease (None: it does not exist), now, and our identity.
pub fn decide(observed: Option<&Observed>, now_ms: u64, identity: &str) -> LeaderAction {
    let Some(o) = observed else {
        return LeaderAction::Create;
    };
    match o.holder.as_deref() {
        None | Some("") => LeaderAction::Acquire,
        Some(h) if h == identity => LeaderAction::Renew,
        Some(h) => {
            if now_ms >= o.changed_at_ms.saturating_add(o.lease_duration_ms) {
                LeaderAction::Acquire
            } else {
                LeaderAction::Follow {
                    holder: h.to_owned(),
                }
            }
        }
    }
}

/// A leader keeps leading only while its last successful renewal is within the deadline.
pub fn still_leading(last_renew_ms: u64, now_ms: u64, renew_deadline_ms: u64) -> bool {
    now_ms.saturating_sub(last_renew_ms) < renew_deadline_ms
}

/// `$POD_NAME`, else hostname plus a random suffix (two processes on one host differ).
pub fn default_identity() -> String {
    if let Ok(name) = std::env::var("POD_NAME") {
        if !name.is_empty() {
            return name;
        }
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "spark-fleet".into());
    format!("{host}_{:08x}", rand::random::<u32>())
}

fn secs_ms(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1000.0) as u64
    } else {
        0
    }
}

/// The lease's namespace outside a pod (no POD_NAMESPACE): where kube-scheduler keeps
/// its own, present in every cluster.
pub const DEFAULT_NAMESPACE: &str = "kube-system";

/// The config key naming the lease's namespace, quoted in errors.
const NAMESPACE_KEY: &str = "leaderElection.leaseNamespace";

/// Logs a failure of the lease loop once, not at every retry: an error repeated
/// unchanged goes to debug until something else happens.
#[derive(Default)]
struct Repeats {
    last: Option<String>,
}

impl Repeats {
    /// `refused`: the server said no (403, ...), which only a change of config or RBAC
    /// mends (an error); otherwise the server could not be reached or answered a
    /// transient error (a warning).
    fn failed(&mut self, message: String, refused: bool) {
        if self.last.as_deref() == Some(message.as_str()) {
            tracing::debug!(%message, "lease request failed again");
        } else {
            if refused {
                tracing::error!("{message}");
            } else {
                tracing::warn!("{message}");
            }
            self.last = Some(message);
        }
    }

    fn succeeded(&mut self) {
        self.last = None;
    }
}

/// What a failed lease request means for the user, in one line (naming the namespace
/// and the config key where the server refused), and whether the server refused.
fn explain(e: &CallError, verb: &str, settings: &LeaseSettings) -> (String, bool) {
    match e {
        CallError::Kube(kube::Error::Api(s)) if s.code == 403 => (
            format!(
                "leader election: cannot {verb} Lease {} in namespace {:?} ({NAMESPACE_KEY}): \
                 forbidden: {}; grant create, get and update on leases there (deploy/rbac.yaml) \
                 or set {NAMESPACE_KEY}",
                settings.name, settings.namespace, s.message
            ),
            true,
        ),
        CallError::Kube(kube::Error::Api(s)) if s.code < 500 && s.code != 429 => (
            format!(
                "leader election: cannot {verb} Lease {} in namespace {:?} ({NAMESPACE_KEY}): {e}",
                settings.name, settings.namespace
            ),
            true,
        ),
        _ => (
            format!(
                "leader election: cannot {verb} Lease {}/{}: {e}",
                settings.namespace, settings.name
            ),
            false,
        ),
    }
}

/// A namespace that does not exist: the lease can never be created there, so the
/// scheduler stops with this message rather than wait forever.
fn missing_namespace(e: &CallError, settings: &LeaseSettings) -> Option<String> {
    match e {
        CallError::Kube(kube::Error::Api(s)) if s.code == 404 => Some(format!(
            "leader election: namespace {:?} does not exist; create it or set {NAMESPACE_KEY} to an existing namespace",
            settings.namespace
        )),
        _ => None,
    }
}

pub(crate) struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub duration_ms: u64,
    pub renew_deadline_ms: u64,
    pub retry: Duration,
}

impl LeaseSettings {
    pub fn from_config(config: &crate::config::Config) -> LeaseSettings {
        let le = &config.leader_election;
        LeaseSettings {
            name: le
                .lease_name
                .clone()
                .unwrap_or_else(|| config.scheduler_name.clone()),
            namespace: le
                .lease_namespace
                .clone()
                .or_else(|| {
                    std::env::var("POD_NAMESPACE")
                        .ok()
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            duration_ms: secs_ms(le.lease_duration_seconds).max(1000),
            renew_deadline_ms: secs_ms(le.renew_deadline_seconds).max(1),
            retry: Duration::from_millis(secs_ms(le.retry_period_seconds).max(10)),
        }
    }
}

/// A lease request that failed or did not answer in time.
#[derive(Debug, Error)]
enum CallError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// How long the next lease request may take. The client has no read timeout, and a
/// request hanging on a dead connection must not keep a leader binding past its renew
/// deadline while a standby takes the lease over (client-go bounds each renewal by
/// RenewDeadline the same way).
pub fn request_budget(last_renew_ms: Option<u64>, now_ms: u64, renew_deadline_ms: u64) -> Duration {
    let left = match last_renew_ms {
        Some(at) => renew_deadline_ms.saturating_sub(now_ms.saturating_sub(at)),
        None => renew_deadline_ms,
    };
    Duration::from_millis(left.max(1))
}

async fn bounded<T>(
    budget: Duration,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(budget, call).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(CallError::TimedOut(budget)),
    }
}

fn lease_duration_s(ms: u64) -> i32 {
    i32::try_from(ms.div_ceil(1000)).unwrap_or(i32::MAX)
}

/// Runs until `stop` fires; then releases the lease if we hold it.
pub(crate) async fn run(shared: Arc<Shared>, settings: LeaseSettings) {
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), &settings.namespace);
    let origin = Instant::now();
    let now_ms = || u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut stop = shared.stop.subscribe();
    let mut observed: Option<Observed> = None;
    let mut observed_rv: Option<String> = None;
    let mut last_renew_ms: Option<u64> = None;
    let identity = shared.identity.clone();
    let mut repeats = Repeats::default();
    tracing::info!(
        lease = %format!("{}/{}", settings.namespace, settings.name),
        %identity,
        "leader election: waiting for the lease"
    );
    loop {
        if *stop.borrow() {
            break;
        }
        shared.lease_limiter.acquire().await;
        let budget = request_budget(last_renew_ms, now_ms(), settings.renew_deadline_ms);
        match bounded(budget, api.get_opt(&settings.name)).await {
            Err(e) => {
                let (message, refused) = explain(&e, "read", &settings);
                repeats.failed(message, refused)
            }
            Ok(current) => {
                let now = now_ms();
                observed = current.as_ref().map(|l| {
                    let spec = l.spec.clone().unwrap_or_default();
                    let rv = l.metadata.resource_version.clone();
                    let changed_at_ms = match &observed {
                        Some(o) if observed_rv == rv => o.changed_at_ms,
                        _ => now,
                    };
                    Observed {
                        holder: spec.holder_identity,
                        lease_duration_ms: spec
                            .lease_duration_seconds
                            .map_or(settings.duration_ms, |s| {
                                u64::try_from(s).unwrap_or(0) * 1000
                            }),
                        changed_at_ms,
                    }
                });
                observed_rv = current
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone());
                let action = decide(observed.as_ref(), now, &identity);
                let written = match &action {
                    LeaderAction::Follow { holder } => {
                        if shared.is_leader() {
                            tracing::warn!(%holder, "another instance holds the lease: stop binding");
                        }
                        shared.set_leader(false);
                        last_renew_ms = None;
                        None
                    }
                    LeaderAction::Create => {
                        let lease = Lease {
                            metadata: ObjectMeta {
                                name: Some(settings.name.clone()),
                                namespace: Some(settings.namespace.clone()),
                                ..Default::default()
                            },
                            spec: Some(held_spec(&identity, settings.duration_ms, None, 0)),
                        };
                        shared.lease_limiter.acquire().await;
                        let budget =
                            request_budget(last_renew_ms, now_ms(), settings.renew_deadline_ms);
                        match bounded(budget, api.create(&PostParams::default(), &lease)).await {
                            Ok(l) => Some(l),
                            Err(CallError::Kube(kube::Error::Api(s))) if s.code == 409 => None,
                            Err(e) => {
                                if let Some(message) = missing_namespace(&e, &settings) {
                                    tracing::error!("{message}");
                                    shared.fail(message);
                                    break;
                                }
                                let (message, refused) = explain(&e, "create", &settings);
                                repeats.failed(message, refused);
                                None
                            }
                        }
                    }
                    LeaderAction::Acquire | LeaderAction::Renew => {
                        let Some(mut lease) = current else { continue };
                        let old = lease.spec.take().unwrap_or_default();
                        let transitions = old.lease_transitions.unwrap_or(0);
                        lease.spec = Some(if action == LeaderAction::Renew {
                            held_spec(
                                &identity,
                                settings.duration_ms,
                                old.acquire_time,
                                transitions,
                            )
                        } else {
                            held_spec(&identity, settings.duration_ms, None, transitions + 1)
                        });
                        shared.lease_limiter.acquire().await;
                        let budget =
                            request_budget(last_renew_ms, now_ms(), settings.renew_deadline_ms);
                        let pp = PostParams::default();
                        match bounded(budget, api.replace(&settings.name, &pp, &lease)).await {
                            Ok(l) => Some(l),
                            // resourceVersion conflict: someone else wrote first; re-read next round.
                            Err(CallError::Kube(kube::Error::Api(s))) if s.code == 409 => None,
                            Err(e) => {
                                let (message, refused) = explain(&e, "update", &settings);
                                repeats.failed(message, refused);
                                None
                            }
                        }
                    }
                };
                if let Some(l) = written {
                    repeats.succeeded();
                    let now = now_ms();
                    if !shared.is_leader() {
                        tracing::info!(identity = %identity, lease = %settings.name, "became leader");
                    }
                    last_renew_ms = Some(now);
                    observed_rv = l.metadata.resource_version.clone();
                    observed = Some(Observed {
                        holder: Some(identity.clone()),
                        lease_duration_ms: settings.duration_ms,
                        changed_at_ms: now,
                    });
                    shared.set_leader(true);
                }
            }
        }
        if let Some(at) = last_renew_ms {
            if !still_leading(at, now_ms(), settings.renew_deadline_ms) {
                tracing::warn!("lease not renewed within the renew deadline: stop binding");
                shared.set_leader(false);
                last_renew_ms = None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.retry) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Gives the lease up so a standby takes over at its next retry instead of after expiry.
pub(crate) async fn release(shared: &Shared, settings: &LeaseSettings) {
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), &settings.namespace);
    // Bounded too, so a hung server does not hold up shutdown.
    let budget = Duration::from_millis(settings.renew_deadline_ms);
    shared.lease_limiter.acquire().await;
    let Ok(Some(mut lease)) = bounded(budget, api.get_opt(&settings.name)).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(shared.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    shared.lease_limiter.acquire().await;
    match bounded(
        budget,
        api.replace(&settings.name, &PostParams::default(), &lease),
    )
    .await
    {
        Ok(_) => tracing::info!(lease = %settings.name, "lease released"),
        Err(e) => tracing::warn!(error = %e, "releasing the lease failed"),
    }
}

fn held_spec(
    identity: &str,
    duration_ms: u64,
    acquired: Option<MicroTime>,
    transitions: i32,
) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(lease_duration_s(duration_ms)),
        acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(holder: Option<&str>, changed_at_ms: u64) -> Observed {
        Observed {
            holder: holder.map(str::to_owned),
            lease_duration_ms: 15_000,
            changed_at_ms,
        }
    }

    #[test]
    fn decision_table() {
        let me = "me";
        let other = LeaderAction::Follow {
            holder: "other".into(),
        };
        // (observed, now, expected)
        let table: Vec<(Option<Observed>, u64, LeaderAction)> = vec![
            (None, 0, LeaderAction::Create),
            (Some(held(None, 0)), 1, LeaderAction::Acquire),
            (Some(held(Some(""), 0)), 1, LeaderAction::Acquire),
            (Some(held(Some("me"), 0)), 1, LeaderAction::Renew),
            // Our own lease is renewed even if we let it lapse (nobody took it).
            (Some(held(Some("me"), 0)), 100_000, LeaderAction::Renew),
            (Some(held(Some("other"), 1_000)), 1_000, other.clone()),
            (Some(held(Some("other"), 1_000)), 15_999, other),
            // Expired exactly at changed + duration.
            (
                Some(held(Some("other"), 1_000)),
                16_000,
                LeaderAction::Acquire,
            ),
            (
                Some(held(Some("other"), 1_000)),
                60_000,
                LeaderAction::Acquire,
            ),
        ];
        for (obs, now, want) in table {
            assert_eq!(decide(obs.as_ref(), now, me), want, "{obs:?} at {now}");
        }
    }

    #[test]
    fn renew_deadline() {
        assert!(still_leading(1_000, 1_000, 10_000));
        assert!(still_leading(1_000, 10_999, 10_000));
        assert!(!still_leading(1_000, 11_000, 10_000));
    }

    #[test]
    fn lease_requests_end_by_the_renew_deadline() {
        // A standby (or a leader not yet renewed) gets the whole deadline.
        assert_eq!(request_budget(None, 5_000, 10_000), Duration::from_secs(10));
        // A leader gets what is left of it since its last renewal.
        assert_eq!(
            request_budget(Some(1_000), 4_000, 10_000),
            Duration::from_secs(7)
        );
        assert_eq!(
            request_budget(Some(1_000), 20_000, 10_000),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn lease_seconds_round_up() {
        assert_eq!(lease_duration_s(15_000), 15);
        assert_eq!(lease_duration_s(1_500), 2);
    }
}
