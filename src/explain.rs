//! `spark-fleet explain`: one pod against a snapshot file, with every node's
//! filter verdict and every plugin's score. The JSON form is a contract other
//! tools read: keep its fields exactly as documented in the README.

use crate::config::Config;
use crate::framework::{schedule, CycleOptions, Decision, Profile};
use crate::manifests::Manifests;
use crate::model::Pod;
use crate::snapshot::Snapshot;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub pod: String,
    pub outcome: &'static str,
    pub node: Option<String>,
    pub feasible: Vec<String>,
    pub filtered: Vec<Filtered>,
    pub scores: Vec<ScoreRow>,
    pub message: String,
    pub preemption: Option<PreemptionOut>,
    /// The capacity type the admission webhook gave this executor, and why.
    pub admission: Option<AdmissionOut>,
    /// Shown in the text form only (the JSON contract has no such field).
    #[serde(skip)]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Filtered {
    pub node: String,
    pub plugin: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct ScoreRow {
    pub node: String,
    pub total: i64,
    pub plugins: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionOut {
    /// `spark-fleet.io/capacity-type`.
    pub capacity_type: String,
    /// `spark-fleet.io/capacity-type-reason`: the mix and the counts behind the deficit.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PreemptionOut {
    pub node: String,
    pub victims: Vec<String>,
}

/// Builds the snapshot the manifests describe.
pub fn snapshot_from(manifests: &Manifests, config: &Config) -> Snapshot {
    let mut snap = Snapshot::new(config.capacity_types.clone());
    for n in &manifests.nodes {
        snap.upsert_node(n.clone());
    }
    for p in &manifests.bound_pods {
        // Bound pods always have a node name here; a rejected one cannot happen.
        let _ = snap.upsert_pod(Arc::new(p.clone()));
    }
    for pdb in &manifests.pdbs {
        snap.upsert_pdb(pdb.clone());
    }
    snap
}

pub fn explain(profile: &Profile, config: &Config, pod: &Pod, snap: &mut Snapshot) -> Explanation {
    let d = schedule(
        profile,
        pod,
        snap,
        CycleOptions {
            detail: true,
            post_filter: true,
            ..CycleOptions::default()
        },
    );
    let mut e = describe(&d, pod, snap);
    if let Some(ty) = pod
        .annotation(crate::spark::annotations::CAPACITY_TYPE)
        .filter(|_| pod.is_executor())
    {
        let reason = pod
            .annotation(crate::spark::annotations::CAPACITY_TYPE_REASON)
            .map(str::to_owned);
        e.notes.push(format!(
            "admitted with capacity type {ty} (spark-fleet.io/capacity-type){}; the scheduler targets it",
            reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
        e.admission = Some(AdmissionOut {
            capacity_type: ty.to_owned(),
            reason,
        });
    }
    if let Some(m) = crate::plugins::mix_status(config, pod, snap) {
        let fmt = |v: &[(String, u32)]| {
            v.iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        e.notes.push(format!(
            "application mix: target {} ({}), placed executors {}, next executor wants {}",
            fmt(&m.target),
            match m.mode {
                crate::config::MixMode::Soft => "soft",
                crate::config::MixMode::Hard => "hard",
            },
            if m.current.is_empty() {
                "none".to_string()
            } else {
                fmt(&m.current)
            },
            m.next.as_deref().unwrap_or("-")
        ));
    }
    if let Some(node) = d.node {
        if let Some(f) = crate::plugins::capacity_fallback(config, pod, snap, node) {
            e.notes.push(format!(
                "capacity fallback: the mix wants {} but the best feasible node is {}",
                f.wanted, f.got
            ));
        }
    }
    e
}

fn describe(d: &Decision, pod: &Pod, snap: &Snapshot) -> Explanation {
    let nodes = snap.nodes();
    let name = |i: u32| nodes.name[i as usize].to_string();
    let mut feasible: Vec<String> = d.feasible.iter().map(|&i| name(i)).collect();
    feasible.sort();
    let mut filtered: Vec<Filtered> = match &d.statuses.all_nodes {
        Some(st) => nodes
            .live_indices()
            .map(|i| Filtered {
                node: name(i),
                plugin: st.plugin.to_owned(),
                reason: st.message(),
            })
            .collect(),
        None => d
            .statuses
            .per_node
            .iter()
            .map(|(i, st)| Filtered {
                node: name(*i),
                plugin: st.plugin.to_owned(),
                reason: st.message(),
            })
            .collect(),
    };
    filtered.sort_by(|a, b| a.node.cmp(&b.node));
    let scores = d
        .scores
        .iter()
        .map(|s| ScoreRow {
            node: name(s.node),
            total: s.total,
            plugins: s.plugins.iter().map(|(p, v)| (p.to_string(), *v)).collect(),
        })
        .collect();
    let preemption = d
        .post_filter
        .as_ref()
        .and_then(|r| r.nomination.as_ref())
        .map(|n| PreemptionOut {
            node: name(n.node),
            victims: n.victims.iter().map(|v| v.key.to_string()).collect(),
        });
    let node = d.node.map(name);
    let message = match (&node, d.message()) {
        (Some(n), _) => format!("Successfully assigned {} to {n}", pod.key),
        (None, Some(m)) => m,
        (None, None) => String::new(),
    };
    Explanation {
        pod: pod.key.to_string(),
        outcome: if node.is_some() {
            "Scheduled"
        } else {
            "Unschedulable"
        },
        node,
        feasible,
        filtered,
        scores,
        message,
        preemption,
        admission: None,
        notes: Vec::new(),
    }
}

pub fn render_text(e: &Explanation, profile: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "pod {}  (profile {profile})", e.pod);
    let _ = writeln!(
        out,
        "outcome: {}{}",
        e.outcome,
        e.node
            .as_deref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "message: {}", e.message);
    for n in &e.notes {
        let _ = writeln!(out, "{n}");
    }
    if !e.scores.is_empty() {
        let plugins: Vec<&String> = e.scores[0].plugins.keys().collect();
        let _ = writeln!(out, "\nfeasible nodes ({}), best first:", e.scores.len());
        let width = e
            .scores
            .iter()
            .map(|s| s.node.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut header = format!("  {:<width$}  {:>6}", "NODE", "TOTAL");
        for p in &plugins {
            let _ = write!(header, "  {p}");
        }
        let _ = writeln!(out, "{header}");
        for s in &e.scores {
            let mut row = format!("  {:<width$}  {:>6}", s.node, s.total);
            for p in &plugins {
                let v = s.plugins.get(*p).copied().unwrap_or(0);
                let _ = write!(row, "  {:>w$}", v, w = p.len());
            }
            let _ = writeln!(out, "{row}");
        }
    }
    if !e.filtered.is_empty() {
        let mut groups: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
        for f in &e.filtered {
            groups
                .entry((f.plugin.clone(), f.reason.clone()))
                .or_default()
                .push(&f.node);
        }
        let _ = writeln!(out, "\nfiltered nodes ({}):", e.filtered.len());
        for ((plugin, reason), nodes) in groups {
            let _ = writeln!(
                out,
                "  {plugin}: {reason} ({}): {}",
                nodes.len(),
                nodes.join(", ")
            );
        }
    }
    if let Some(p) = &e.preemption {
        let _ = writeln!(
            out,
            "\npreemption: nominate {} after evicting {}",
            p.node,
            p.victims.join(", ")
        );
    }
    out
}
