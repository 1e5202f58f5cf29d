//! One scheduling cycle: PreFilter → Filter → (PostFilter) → PreScore → Score → select.
//!
//! Ties between equally scored nodes go to the node whose name sorts first, so
//! runs repeat exactly (upstream picks a random one among the best).

use super::*;
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};
use serde::Serialize;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Copy, Default)]
pub struct CycleOptions {
    /// Keep every plugin's score per node (for `explain`); otherwise only totals.
    pub detail: bool,
    /// Run PostFilter (preemption) when no node fits.
    pub post_filter: bool,
    /// Split filtering and scoring over the machine's cores on large clusters.
    /// Results are identical either way (chunks are merged in node order). Off by
    /// default: on a busy 2-core machine the threads wait for CPU and lose
    /// (see benches/README.md); turn on where cores are free.
    pub parallel: bool,
}

/// Below this many nodes a thread costs more than it saves.
const PARALLEL_MIN_NODES: usize = 4096;

/// Contiguous ranges covering `0..len`: one per core when `parallel` and worth it.
fn chunk_ranges(len: usize, parallel: bool) -> Vec<std::ops::Range<usize>> {
    let workers = if parallel && len >= PARALLEL_MIN_NODES {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
    } else {
        1
    };
    if workers <= 1 {
        return std::iter::once(0..len).collect();
    }
    let size = len.div_ceil(workers);
    (0..workers)
        .map(|w| (w * size).min(len)..((w + 1) * size).min(len))
        .filter(|r| !r.is_empty())
        .collect()
}

/// Filter verdicts for one range of node slots.
struct FilterPart {
    feasible: Vec<NodeIdx>,
    failed: Vec<(NodeIdx, Status)>,
    error: Option<Status>,
}

fn filter_node(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    node: NodeIdx,
) -> Option<Status> {
    for f in filters {
        let st = f.filter(state, pod, snap, node);
        if !st.is_success() {
            return Some(with_plugin(st, f.name()));
        }
    }
    None
}

fn filter_range(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    range: std::ops::Range<usize>,
) -> FilterPart {
    let live = &snap.nodes().live;
    let mut part = FilterPart {
        feasible: Vec::new(),
        failed: Vec::new(),
        error: None,
    };
    for i in range {
        if !live[i] {
            continue;
        }
        match filter_node(filters, state, pod, snap, i as NodeIdx) {
            None => part.feasible.push(i as NodeIdx),
            Some(st) if st.code == Code::Error => {
                part.error = Some(st);
                return part;
            }
            Some(st) => part.failed.push((i as NodeIdx, st)),
        }
    }
    part
}

/// Why nodes were rejected: an explicit status per filtered node, and one status
/// for all nodes when PreFilter rejected the pod (upstream's "absent nodes status").
#[derive(Debug, Clone, Default)]
pub struct NodeStatuses {
    pub per_node: Vec<(NodeIdx, Status)>,
    pub all_nodes: Option<Status>,
}

impl NodeStatuses {
    /// The status of `node`, if it was rejected.
    pub fn get(&self, node: NodeIdx) -> Option<&Status> {
        self.all_nodes.as_ref().or_else(|| {
            self.per_node
                .iter()
                .find(|(n, _)| *n == node)
                .map(|(_, s)| s)
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeScore {
    pub node: NodeIdx,
    pub total: i64,
    /// (plugin, weighted normalized score); empty unless `detail`.
    pub plugins: Vec<(&'static str, i64)>,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub node: Option<NodeIdx>,
    pub num_nodes: usize,
    pub feasible: Vec<NodeIdx>,
    pub statuses: NodeStatuses,
    /// Best first.
    pub scores: Vec<NodeScore>,
    pub post_filter: Option<PostFilterResult>,
    /// A plugin failed with `Code::Error`: the pod is retried with backoff.
    pub error: Option<Status>,
}

impl Decision {
    /// Upstream-form FailedScheduling message, when unschedulable.
    pub fn message(&self) -> Option<String> {
        if self.node.is_some() {
            return None;
        }
        if let Some(e) = &self.error {
            return Some(format!("running {} plugin: {}", e.plugin, e.message()));
        }
        let post = self
            .post_filter
            .as_ref()
            .map(|p| p.status.message())
            .filter(|m| !m.is_empty());
        Some(unschedulable_message(
            self.num_nodes,
            self.statuses.all_nodes.as_ref(),
            self.statuses.per_node.iter().map(|(_, s)| s),
            post.as_deref(),
        ))
    }

    /// Plugins that rejected the pod somewhere, for the queue's requeue rules.
    pub fn rejected_by(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = Vec::new();
        let all = self
            .statuses
            .all_nodes
            .iter()
            .chain(self.statuses.per_node.iter().map(|(_, s)| s));
        for s in all {
            if !s.plugin.is_empty() && !v.contains(&s.plugin) {
                v.push(s.plugin);
            }
        }
        v
    }
}

/// Schedules `pod` against `snap` with `profile`. The caller assumes the pod on
/// the chosen node.
///
/// Takes the snapshot mutably only for PostFilter's what-if evaluation, which
/// restores it before returning.
pub fn schedule(profile: &Profile, pod: &Pod, snap: &mut Snapshot, opts: CycleOptions) -> Decision {
    let num_nodes = snap.nodes().len();
    let mut decision = Decision {
        node: None,
        num_nodes,
        feasible: Vec::new(),
        statuses: NodeStatuses::default(),
        scores: Vec::new(),
        post_filter: None,
        error: None,
    };
    let mut state = CycleState::default();

    for p in &profile.pre_filter {
        let st = p.pre_filter(&mut state, pod, snap);
        match st.code {
            Code::Success => {}
            Code::Skip => state.mark_skip_filter(p.name()),
            Code::Error => {
                decision.error = Some(with_plugin(st, p.name()));
                return decision;
            }
            Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                decision.statuses.all_nodes = Some(with_plugin(st, p.name()));
                run_post_filter(profile, pod, snap, opts, &mut decision);
                return decision;
            }
        }
    }

    let filters: Vec<&dyn FilterPlugin> = profile
        .filter
        .iter()
        .filter(|f| !state.skips_filter(f.name()))
        .map(|f| f.as_ref())
        .collect();
    let nodes = snap.nodes();
    let slots = nodes.slots();
    let (start, wanted) = sampling(profile, num_nodes, slots);
    if wanted == usize::MAX {
        // Every node: in chunks over the available cores on large clusters.
        let chunks = chunk_ranges(slots, opts.parallel);
        let parts: Vec<FilterPart> = if chunks.len() == 1 {
            vec![filter_range(&filters, &state, pod, snap, 0..slots)]
        } else {
            std::thread::scope(|sc| {
                let handles: Vec<_> = chunks
                    .iter()
                    .map(|r| {
                        let (filters, state, shared, r) = (&filters, &state, &*snap, r.clone());
                        sc.spawn(move || filter_range(filters, state, pod, shared, r))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        for part in parts {
            if let Some(e) = part.error {
                decision.error = Some(e);
                return decision;
            }
            decision.feasible.extend(part.feasible);
            decision.statuses.per_node.extend(part.failed);
        }
    } else {
        // Sampling: stop once enough feasible nodes are found, rotating the start.
        let mut visited = 0usize;
        for step in 0..slots {
            if decision.feasible.len() >= wanted {
                break;
            }
            let i = ((start + step) % slots.max(1)) as NodeIdx;
            if !nodes.live[i as usize] {
                continue;
            }
            visited += 1;
            match filter_node(&filters, &state, pod, snap, i) {
                None => decision.feasible.push(i),
                Some(st) if st.code == Code::Error => {
                    decision.error = Some(st);
                    return decision;
                }
                Some(st) => decision.statuses.per_node.push((i, st)),
            }
        }
        if slots > 0 {
            profile
                .next_start
                .store((start + visited) % slots, Ordering::Relaxed);
        }
    }

    if decision.feasible.is_empty() {
        run_post_filter(profile, pod, snap, opts, &mut decision);
        return decision;
    }

    let mut active_scores = Vec::with_capacity(profile.score.len());
    for p in &profile.pre_score {
        let st = p.pre_score(&mut state, pod, snap, &decision.feasible);
        match st.code {
            Code::Success => {}
            Code::Skip => state.mark_skip_score(p.name()),
            _ => {
                decision.error = Some(with_plugin(st, p.name()));
                return decision;
            }
        }
    }
    for (p, w) in &profile.score {
        if !state.skips_score(p.name()) {
            active_scores.push((p.as_ref(), *w));
        }
    }

    let nodes = snap.nodes();
    let n = decision.feasible.len();
    let mut totals = vec![0i64; n];
    let mut per_plugin: Vec<(&'static str, Vec<i64>)> = Vec::new();
    // Raw scores of every plugin, plugin-major, computed in node chunks in parallel
    // on large clusters; normalization needs all of a plugin's scores, so it runs after.
    let mut all_raw = vec![0i64; n * active_scores.len()];
    {
        let feasible = &decision.feasible;
        let chunks = chunk_ranges(n, opts.parallel);
        let score_chunk = |r: std::ops::Range<usize>| -> Vec<i64> {
            let mut out = Vec::with_capacity(r.len() * active_scores.len());
            for (p, _) in &active_scores {
                out.extend(
                    feasible[r.clone()]
                        .iter()
                        .map(|&node| p.score(&state, pod, snap, node)),
                );
            }
            out
        };
        let parts: Vec<(std::ops::Range<usize>, Vec<i64>)> = if chunks.len() == 1 {
            vec![(0..n, score_chunk(0..n))]
        } else {
            std::thread::scope(|sc| {
                let handles: Vec<_> = chunks
                    .iter()
                    .map(|r| {
                        let (f, r) = (&score_chunk, r.clone());
                        sc.spawn(move || (r.clone(), f(r)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        for (r, values) in parts {
            for (j, plugin_values) in values.chunks(r.len().max(1)).enumerate() {
                all_raw[j * n + r.start..j * n + r.end].copy_from_slice(plugin_values);
            }
        }
    }
    for (j, (p, weight)) in active_scores.iter().enumerate() {
        let raw = &mut all_raw[j * n..(j + 1) * n];
        p.normalize(&state, pod, raw);
        for k in 0..n {
            let v = raw[k].clamp(0, MAX_NODE_SCORE) * weight;
            totals[k] += v;
        }
        if opts.detail {
            per_plugin.push((
                p.name(),
                raw.iter()
                    .map(|v| v.clamp(&0, &MAX_NODE_SCORE) * weight)
                    .collect(),
            ));
        }
    }

    let mut best = 0usize;
    for k in 1..n {
        let (a, b) = (decision.feasible[k], decision.feasible[best]);
        if totals[k] > totals[best]
            || (totals[k] == totals[best]
                && nodes.name_str[a as usize] < nodes.name_str[b as usize])
        {
            best = k;
        }
    }
    let chosen = decision.feasible[best];
    if let Err(st) = reserve_and_permit(profile, &mut state, pod, snap, chosen) {
        if st.is_rejection() {
            decision.statuses.all_nodes = Some(st);
        } else {
            decision.error = Some(st);
        }
        return decision;
    }
    decision.node = Some(chosen);

    if opts.detail {
        let mut scores: Vec<NodeScore> = (0..n)
            .map(|k| NodeScore {
                node: decision.feasible[k],
                total: totals[k],
                plugins: per_plugin.iter().map(|(name, v)| (*name, v[k])).collect(),
            })
            .collect();
        scores.sort_by(|a, b| {
            b.total
                .cmp(&a.total)
                .then_with(|| nodes.name_str[a.node as usize].cmp(nodes.name_str[b.node as usize]))
        });
        decision.scores = scores;
    } else {
        decision.scores.push(NodeScore {
            node: decision.feasible[best],
            total: totals[best],
            plugins: Vec::new(),
        });
    }
    decision
}

/// Reserve then Permit on the chosen node; on any failure the plugins already
/// reserved are unreserved in reverse order, as upstream.
fn reserve_and_permit(
    profile: &Profile,
    state: &mut CycleState,
    pod: &Pod,
    snap: &Snapshot,
    node: NodeIdx,
) -> Result<(), Status> {
    let mut reserved = 0;
    let mut failure = None;
    for r in &profile.reserve {
        let st = r.reserve(state, pod, snap, node);
        if !st.is_success() {
            failure = Some(with_plugin(st, r.name()));
            break;
        }
        reserved += 1;
    }
    if failure.is_none() {
        for p in &profile.permit {
            match p.permit(state, pod, snap, node) {
                PermitDecision::Allow => {}
                PermitDecision::Reject(st) => {
                    failure = Some(with_plugin(st, p.name()));
                    break;
                }
                // Binding here is immediate (no waiting room for pods): a plugin that
                // needs to hold pods is a configuration this scheduler does not support.
                PermitDecision::Wait(_) => {
                    failure = Some(Status::error(
                        p.name(),
                        "Permit Wait is not supported by spark-fleet",
                    ));
                    break;
                }
            }
        }
    }
    match failure {
        None => Ok(()),
        Some(st) => {
            for r in profile.reserve[..reserved].iter().rev() {
                r.unreserve(state, pod, snap, node);
            }
            Err(st)
        }
    }
}

fn with_plugin(mut st: Status, name: &'static str) -> Status {
    if st.plugin.is_empty() {
        st.plugin = name;
    }
    st
}

fn run_post_filter(
    profile: &Profile,
    pod: &Pod,
    snap: &mut Snapshot,
    opts: CycleOptions,
    decision: &mut Decision,
) {
    if !opts.post_filter {
        return;
    }
    let runner = FilterRunner {
        pre_filters: &profile.pre_filter,
        filters: &profile.filter,
    };
    for p in &profile.post_filter {
        let r = p.post_filter(pod, snap, &decision.statuses, &runner);
        let nominated = r.nomination.is_some();
        decision.post_filter = Some(r);
        if nominated {
            return;
        }
    }
}

/// Upstream's numFeasibleNodesToFind: how many feasible nodes to look for, and
/// where to start. With sampling off, all nodes from slot 0.
fn sampling(profile: &Profile, num_nodes: usize, slots: usize) -> (usize, usize) {
    const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
    let pct = profile.percentage_of_nodes_to_score as usize;
    if pct == 0 || pct >= 100 || num_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return (0, usize::MAX);
    }
    let wanted = (num_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND);
    let start = profile.next_start.load(Ordering::Relaxed) % slots.max(1);
    (start, wanted)
}

#[cfg(test)]
mod tests;
