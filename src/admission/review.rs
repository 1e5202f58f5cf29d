//! One admission review: a pod being created in, the response (allowed, with a
//! JSON Patch or without) out. Pure over the snapshot and the ledger the caller
//! holds locked, so concurrent reviews of one application see each other.
//!
//! - Executors of ours with a mix in force get the type the mix's
//!   largest-deficit rule ([`Mix::next_type`], the scheduler's own) picks,
//!   counting the application's executors placed in the snapshot (by their
//!   node's type) and those admitted or pending with a type (the [`Ledger`]).
//!   The choice is recorded on the pod (`spark-fleet.io/capacity-type`, with
//!   the reason in `spark-fleet.io/capacity-type-reason`) and as the provider's
//!   constraint: required in hard mode, preferred in soft mode.
//! - Drivers get a required term for their allowed capacity types.
//! - Anything else, and any pod whose annotations or spec cannot be read, is
//!   admitted unchanged: the scheduler reports bad input as it always does.
//! - A pod that already carries a type (a reinvoked webhook, or a type set by
//!   hand) keeps it; the patch then only restores what is missing.

use super::constraint::{capacity_constraint, pod_patch, AddOp, Placement};
use super::ledger::Ledger;
use crate::config::{Config, MixMode};
use crate::model::{pod_from_k8s, Pod, Sym};
use crate::snapshot::Snapshot;
use crate::spark::annotations;
use crate::spark::policy::{self, Mix, PlacedExecutors};
use k8s_openapi::api::core::v1 as core;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// What a review did, for metrics (`decision` label) and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// An executor was given a capacity type and its constraint.
    Executor,
    /// An executor already had a type (reinvocation); its constraint was kept.
    Reinvoked,
    /// A driver was given the constraint of its allowed types.
    Driver,
    /// Not ours, not Spark, no mix, a driver allowed anywhere, not a CREATE.
    Skipped,
    /// A bad annotation or a pod that cannot be read: admitted unchanged.
    Invalid,
    /// The provider cannot express the type: admitted unchanged.
    Error,
}

impl Decision {
    pub const ALL: [Decision; 6] = [
        Decision::Executor,
        Decision::Reinvoked,
        Decision::Driver,
        Decision::Skipped,
        Decision::Invalid,
        Decision::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Executor => "executor",
            Decision::Reinvoked => "reinvoked",
            Decision::Driver => "driver",
            Decision::Skipped => "skipped",
            Decision::Invalid => "invalid",
            Decision::Error => "error",
        }
    }
}

/// A review's outcome: the response to send and what was decided.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub response: AdmissionResponse,
    pub decision: Decision,
    /// Why, in one line (logs; the warning on invalid input).
    pub why: String,
    /// The JSON Patch sent (empty: none).
    pub patch: Vec<AddOp>,
}

/// What a review reads, and the ledger it records executor admissions in.
pub struct Context<'a> {
    pub config: &'a Config,
    pub snap: &'a Snapshot,
    pub ledger: &'a mut Ledger,
    pub now_ms: i64,
    /// Whether this instance schedules the pod (scheduler name, partition).
    pub is_ours: &'a dyn Fn(&Pod) -> bool,
}

pub fn review(req: &AdmissionRequest<core::Pod>, ctx: &mut Context<'_>) -> Reviewed {
    let (decision, why, patch) = decide(req, ctx);
    let mut response = AdmissionResponse::from(req);
    if decision == Decision::Invalid {
        // Shown by kubectl and logged by clients; the pod is still created.
        response.warnings = Some(vec![format!(
            "spark-fleet: {why}; admitted without a capacity-type constraint"
        )]);
    }
    if !patch.is_empty() {
        let ops = serde_json::to_value(&patch)
            .and_then(serde_json::from_value::<json_patch::Patch>)
            .map_err(|e| e.to_string())
            .and_then(|p| response.clone().with_patch(p).map_err(|e| e.to_string()));
        match ops {
            Ok(r) => response = r,
            Err(e) => {
                return Reviewed {
                    response: AdmissionResponse::from(req),
                    decision: Decision::Error,
                    why: format!("patch not serializable: {e}"),
                    patch: Vec::new(),
                }
            }
        }
    }
    Reviewed {
        response,
        decision,
        why,
        patch,
    }
}

fn skipped(why: impl Into<String>) -> (Decision, String, Vec<AddOp>) {
    (Decision::Skipped, why.into(), Vec::new())
}

fn decide(
    req: &AdmissionRequest<core::Pod>,
    ctx: &mut Context<'_>,
) -> (Decision, String, Vec<AddOp>) {
    if req.operation != Operation::Create {
        return skipped("not a CREATE");
    }
    let Some(object) = req.object.as_ref() else {
        return skipped("no object");
    };
    // At admission the object may lack its namespace (it is the request's) and,
    // with generateName, its name: fill them in to read it.
    let mut readable = object.clone();
    if readable
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        readable.metadata.namespace = req.namespace.clone();
    }
    let named = !readable.metadata.name.as_deref().unwrap_or("").is_empty();
    if !named {
        let prefix = readable.metadata.generate_name.clone().unwrap_or_default();
        readable.metadata.name = Some(format!("{prefix}<generated>"));
    }
    let pod = match pod_from_k8s(&readable, &()) {
        Ok(p) => p,
        Err(e) => return (Decision::Invalid, e.to_string(), Vec::new()),
    };
    if !(ctx.is_ours)(&pod) {
        return skipped(format!(
            "schedulerName {:?} is not ours",
            pod.scheduler_name
        ));
    }
    if pod.is_driver() {
        return driver(object, &pod, ctx.config);
    }
    if !pod.is_executor() {
        return skipped("not a Spark driver or executor");
    }
    executor(object, &pod, named, req.dry_run, ctx)
}

fn driver(object: &core::Pod, pod: &Pod, config: &Config) -> (Decision, String, Vec<AddOp>) {
    let allowed = match policy::driver_capacity(config, pod) {
        Err(e) => return (Decision::Invalid, e.to_string(), Vec::new()),
        Ok(None) => return skipped("driver may use any capacity type"),
        Ok(Some(t)) => t,
    };
    let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
    match capacity_constraint(&names, config.admission.provider, &config.capacity_types) {
        Err(e) => (Decision::Error, e.to_string(), Vec::new()),
        Ok(c) => (
            Decision::Driver,
            format!("driver on {}", names.join(", ")),
            pod_patch(object, &c, Placement::Required),
        ),
    }
}

fn executor(
    object: &core::Pod,
    pod: &Pod,
    named: bool,
    dry_run: bool,
    ctx: &mut Context<'_>,
) -> (Decision, String, Vec<AddOp>) {
    let config = ctx.config;
    let admitted = match policy::admitted_type(config, pod) {
        Ok(t) => t,
        Err(e) => return (Decision::Invalid, e.to_string(), Vec::new()),
    };
    let mix = match policy::executor_mix(config, pod, ctx.snap) {
        Err(e) => return (Decision::Invalid, e.to_string(), Vec::new()),
        Ok(None) => return skipped("no capacity mix"),
        Ok(Some(m)) => m,
    };
    let Some(app) = pod.spark.as_ref().map(|s| s.app) else {
        return skipped("no application");
    };
    let key = named.then(|| pod.key.clone());
    let (ty, reason, decision) = match admitted {
        Some(t) => (t, None, Decision::Reinvoked),
        None => {
            let counted = Counted::count(ctx, pod, app, key.as_ref());
            let Some(t) = mix.next_type(|t| counted.of(t), counted.total()) else {
                return skipped("empty mix");
            };
            (t, Some(counted.reason(&mix, t)), Decision::Executor)
        }
    };
    let placement = match mix.mode {
        MixMode::Hard => Placement::Required,
        MixMode::Soft => Placement::Preferred {
            weight: config.admission.preferred_weight,
        },
    };
    let c = match capacity_constraint(
        &[ty.as_str()],
        config.admission.provider,
        &config.capacity_types,
    ) {
        Ok(c) => c,
        Err(e) => return (Decision::Error, e.to_string(), Vec::new()),
    };
    if !dry_run {
        ctx.ledger.admit(app, key, ty, ctx.now_ms);
    }
    let mut ops = Vec::new();
    if let Some(reason) = &reason {
        annotate(
            object,
            &[
                (annotations::CAPACITY_TYPE, ty.as_str()),
                (annotations::CAPACITY_TYPE_REASON, reason),
            ],
            &mut ops,
        );
    }
    ops.extend(pod_patch(object, &c, placement));
    let why = reason.unwrap_or_else(|| format!("already admitted with {ty}"));
    (decision, why, ops)
}

/// The application's executors the rule counts, by type.
struct Counted {
    /// (type, placed, pending, admitted)
    by_type: Vec<(Sym, u32, u32, u32)>,
}

impl Counted {
    fn count(
        ctx: &Context<'_>,
        pod: &Pod,
        app: Sym,
        key: Option<&crate::model::PodKey>,
    ) -> Counted {
        let placed = PlacedExecutors::of_app(ctx.snap, pod);
        let mut by_type: Vec<(Sym, u32, u32, u32)> =
            placed.by_type.iter().map(|&(t, n)| (t, n, 0, 0)).collect();
        let snap = ctx.snap;
        for c in ctx
            .ledger
            .pending_by_type(app, key, |k| snap.pod_by_key(k).is_some())
        {
            match by_type.iter_mut().find(|e| e.0 == c.ty) {
                Some(e) => {
                    e.2 += c.pending;
                    e.3 += c.admitted;
                }
                None => by_type.push((c.ty, 0, c.pending, c.admitted)),
            }
        }
        Counted { by_type }
    }

    fn of(&self, ty: Sym) -> u32 {
        self.by_type
            .iter()
            .find(|e| e.0 == ty)
            .map_or(0, |e| e.1 + e.2 + e.3)
    }

    fn total(&self) -> u32 {
        self.by_type.iter().map(|e| e.1 + e.2 + e.3).sum()
    }

    /// `mix spot=40,on-demand=60 (soft); counted spot 3 (placed 2, pending 0,
    /// admitted 1), on-demand 5 (...); spot furthest below its share`.
    fn reason(&self, mix: &Mix, chosen: Sym) -> String {
        let mut s = String::from("mix ");
        for (i, (t, w)) in mix.weights.iter().enumerate() {
            let _ = write!(s, "{}{t}={w}", if i > 0 { "," } else { "" });
        }
        let mode = match mix.mode {
            MixMode::Soft => "soft",
            MixMode::Hard => "hard",
        };
        let _ = write!(s, " ({mode}); counted");
        let mut types: Vec<Sym> = mix.weights.iter().map(|e| e.0).collect();
        for e in &self.by_type {
            if !types.contains(&e.0) {
                types.push(e.0);
            }
        }
        for (i, t) in types.iter().enumerate() {
            let (p, q, a) = self
                .by_type
                .iter()
                .find(|e| e.0 == *t)
                .map_or((0, 0, 0), |e| (e.1, e.2, e.3));
            let _ = write!(
                s,
                "{} {t} {} (placed {p}, pending {q}, admitted {a})",
                if i > 0 { "," } else { "" },
                p + q + a
            );
        }
        let _ = write!(s, "; {chosen} furthest below its share");
        s
    }
}

/// JSON Pointer escaping of one token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Adds (or replaces) annotations, creating `metadata.annotations` if missing.
fn annotate(object: &core::Pod, values: &[(&str, &str)], ops: &mut Vec<AddOp>) {
    if object.metadata.annotations.is_none() {
        let map: serde_json::Map<String, Value> = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        ops.push(AddOp {
            op: "add",
            path: "/metadata/annotations".into(),
            value: Value::Object(map),
        });
        return;
    }
    for (k, v) in values {
        ops.push(AddOp {
            op: "add",
            path: format!("/metadata/annotations/{}", escape(k)),
            value: json!(v),
        });
    }
}

#[cfg(test)]
mod tests;
