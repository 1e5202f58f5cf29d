//! One scheduling cycle: PreFilter → Filter → (PostFilter) → PreScore → Score → select.
//!
//! Ties between equally scored nodes go to the node whose name sorts first, so
//! runs repeat exactly (upstream picks a random one among the best).

mod bounded;
mod by_slot;
mod kept_totals;
mod kept_verdicts;
mod scratch;
mod split;

pub(crate) use bounded::ClassBuffers;
pub(crate) use kept_totals::KeptTotals;
pub(crate) use kept_verdicts::KeptVerdicts;
pub(crate) use scratch::Scratch;

use super::*;
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};
use serde::Serialize;
use std::ops::Range;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Copy, Default)]
pub struct CycleOptions {
    /// Keep every plugin's score per node (for `explain`); otherwise only totals.
    pub detail: bool,
    /// Run PostFilter (preemption) when no node fits.
    pub post_filter: bool,
    /// Split filtering, scoring and selection over the machine's cores on
    /// clusters of `PARALLEL_MIN_NODES` or more (`split`). Results are identical
    /// either way (chunks are merged in node order). Off by default: it takes
    /// the cores the caller does not use, which a busy machine may need.
    pub parallel: bool,
    /// Filter and score every node afresh: no verdict or score kept from an
    /// earlier cycle is reused, and none is kept (`kept_verdicts`,
    /// `plugins::score_memo`). For benchmarks of the cold path and for checks;
    /// the decision is the same either way.
    pub fresh: bool,
    /// Score every feasible node with every plugin: no node is left unscored
    /// because it provably cannot win (`bounded`). For benchmarks of that
    /// reading and for checks; the decision is the same either way.
    pub exhaustive: bool,
    /// When no node fits, skip working out why on each node (`statuses`
    /// and the message stay empty): for callers that drop such a pod unseen,
    /// like the simulator's FGD protocol. PostFilter is not run either.
    pub no_reasons: bool,
}

/// What score columns hold before plugins write them, in debug builds.
const UNWRITTEN: i64 = i64::MIN;

/// Below this many nodes a thread costs more than it saves.
const PARALLEL_MIN_NODES: usize = 4096;

/// Contiguous ranges covering `0..len`: one per core when `parallel` and worth it.
fn chunk_ranges(len: usize, parallel: bool) -> Vec<Range<usize>> {
    if parallel && len >= PARALLEL_MIN_NODES {
        split::ranges(len, split::threads())
    } else {
        std::iter::once(0..len).collect()
    }
}

/// Nodes the filters rejected, each with the position of the rejecting plugin in
/// the active filter list. Their `Status` is asked of that plugin only when it is
/// shown (no node fits, or `explain`): building reason strings for thousands of
/// nodes on every successful cycle would cost more than the filtering itself.
type Rejections = Vec<(NodeIdx, u16)>;

/// Runs the active filters over `nodes`, each over the nodes all earlier ones kept
/// (so a node's rejection comes from the first filter that rejects it, as when
/// filtering node by node). Returns the nodes that passed, in order.
fn filter_nodes(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    mut nodes: Vec<NodeIdx>,
    rejections: &mut Rejections,
) -> Result<Vec<NodeIdx>, Status> {
    let mut rejected = Vec::new();
    for (k, f) in filters.iter().enumerate() {
        if nodes.is_empty() {
            break;
        }
        f.filter_nodes(state, pod, snap, &mut nodes, &mut rejected)
            .map_err(|st| with_plugin(st, f.name()))?;
        rejections.extend(rejected.drain(..).map(|n| (n, k as u16)));
    }
    Ok(nodes)
}

/// The live nodes of node `slots` through the filters without recording
/// rejections: the leading filters with a dense form
/// (`FilterPlugin::filter_slots`) clear pass flags over the slots, the rest
/// filter the nodes still passing, as in `filter_nodes`. Each filter sees the
/// nodes it would see there, so the result (and any error) is the same.
/// `None` when the first filter has no dense form.
fn filter_dense(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    slots: Range<usize>,
) -> Option<Result<Vec<NodeIdx>, Status>> {
    let t = snap.nodes();
    let first = slots.start;
    let mut pass = t.live.get(slots).unwrap_or(&[]).to_vec();
    let dense = filters
        .iter()
        .take_while(|f| f.filter_slots(state, pod, snap, first, &mut pass))
        .count();
    if dense == 0 && !filters.is_empty() {
        return None;
    }
    // Every slot is written at the end and the end moves by the flag: no
    // branch on the flag, which is unpredictable when many nodes fail.
    let mut nodes: Vec<NodeIdx> = vec![0; pass.len()];
    let mut kept = 0usize;
    for (i, &p) in pass.iter().enumerate() {
        if let Some(out) = nodes.get_mut(kept) {
            *out = (first + i) as NodeIdx;
        }
        kept += usize::from(p);
    }
    nodes.truncate(kept);
    let mut ignored = Rejections::new();
    Some(filter_nodes(
        &filters[dense..],
        state,
        pod,
        snap,
        nodes,
        &mut ignored,
    ))
}

/// The statuses of rejected nodes, in node order, from the plugins that rejected them.
fn node_statuses(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    mut rejections: Rejections,
) -> Vec<(NodeIdx, Status)> {
    rejections.sort_unstable_by_key(|r| r.0);
    rejections
        .into_iter()
        .map(|(n, k)| {
            let f = filters[k as usize];
            let st = f.filter(state, pod, snap, n);
            debug_assert!(
                !st.is_success(),
                "{}: filter_nodes rejected node {n} that filter passes",
                f.name()
            );
            (n, with_plugin(st, f.name()))
        })
        .collect()
}

/// Upstream filters only the nodes a PreFilterResult names and gives every other
/// node one status, "node(s) didn't satisfy plugin(s) [..]". Such nodes never
/// fit here either (the narrowing plugin's own filter rejects them), so only
/// their statuses are rewritten, keeping the filter loops as they are.
fn outside_prefilter_nodes(
    per_node: &mut [(NodeIdx, Status)],
    pf: &PreFilterNodes,
    snap: &Snapshot,
) {
    let names = &snap.nodes().name;
    let plugin = pf.plugins.first().copied().unwrap_or("");
    let mut outside: Option<Status> = None;
    for (n, st) in per_node.iter_mut() {
        if !pf.contains(names[*n as usize]) {
            *st = outside
                .get_or_insert_with(|| Status::unresolvable(plugin, pf.outside_reason()))
                .clone();
        }
    }
}

/// Raw scores of every active plugin for every feasible node into `raw`
/// (plugin-major), computed one node chunk per thread, each writing its part
/// of every column.
fn score_in_chunks(
    active: &[(&dyn ScorePlugin, i64)],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    feasible: &[NodeIdx],
    chunks: &[Range<usize>],
    raw: &mut [i64],
) {
    let parts = columns_by_chunk(raw, feasible.len(), chunks);
    split::map(parts, |_, (r, cols)| {
        let nodes = feasible.get(r).unwrap_or(&[]);
        for ((p, _), col) in active.iter().zip(cols) {
            p.score_nodes(state, pod, snap, nodes, col);
        }
    });
}

/// Each chunk's part of every column of `raw` (columns of `len` entries,
/// one after another), for threads that write their chunk of each.
fn columns_by_chunk<'a>(
    raw: &'a mut [i64],
    len: usize,
    chunks: &[Range<usize>],
) -> Vec<(Range<usize>, Vec<&'a mut [i64]>)> {
    let mut parts: Vec<(Range<usize>, Vec<&mut [i64]>)> =
        chunks.iter().map(|r| (r.clone(), Vec::new())).collect();
    for col in raw.chunks_mut(len.max(1)) {
        let mut rest = col;
        for (r, cols) in parts.iter_mut() {
            let Some((part, tail)) = rest.split_at_mut_checked(r.len()) else {
                break;
            };
            cols.push(part);
            rest = tail;
        }
    }
    parts
}

/// Every live node, in node chunks over the available cores on large clusters.
#[allow(clippy::too_many_arguments)]
fn filter_all_nodes(
    profile: &Profile,
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    live: &[NodeIdx],
    opts: CycleOptions,
    rejections: &mut Rejections,
) -> Result<Vec<NodeIdx>, Status> {
    if !opts.fresh {
        let kept = &profile.kept_verdicts;
        let shown = opts.detail;
        if let Some(r) = kept.filter_live(filters, state, pod, snap, shown, rejections) {
            return r;
        }
    }
    let chunks = chunk_ranges(live.len(), opts.parallel);
    // Rejections are shown only when no node fits (or with `detail`): only
    // then are the nodes filtered again, one list per filter.
    if !opts.detail {
        let slots = snap.nodes().slots();
        let dense = if chunks.len() == 1 {
            filter_dense(filters, state, pod, snap, 0..slots)
        } else {
            let parts = split::ranges(slots, chunks.len());
            let found = split::map(parts, |_, r| filter_dense(filters, state, pod, snap, r));
            found.into_iter().collect::<Option<Vec<_>>>().map(|parts| {
                let parts: Result<Vec<Vec<NodeIdx>>, Status> = parts.into_iter().collect();
                parts.map(|p| p.concat())
            })
        };
        match dense {
            Some(Ok(feasible)) if feasible.is_empty() => {}
            Some(r) => return r,
            None => {}
        }
    }
    if chunks.len() == 1 {
        return filter_nodes(filters, state, pod, snap, live.to_vec(), rejections);
    }
    let parts = split::map(chunks, |_, r| {
        let mut rej = Rejections::new();
        let nodes = live.get(r).unwrap_or(&[]).to_vec();
        filter_nodes(filters, state, pod, snap, nodes, &mut rej).map(|f| (f, rej))
    });
    let mut feasible = Vec::new();
    for part in parts {
        let (f, rej) = part?;
        feasible.extend(f);
        rejections.extend(rej);
    }
    Ok(feasible)
}

/// Sampling (upstream's percentageOfNodesToScore): walks the live nodes from
/// `start`, wrapping around, until `wanted` feasible nodes are found. Each window
/// is exactly as large as the number still wanted, so the sample can only be
/// complete when a window's last node passes: the walk stops at the same node a
/// node-by-node walk would. Returns the feasible nodes and how many nodes were
/// examined.
fn filter_sample(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    start: usize,
    wanted: usize,
    rejections: &mut Rejections,
) -> Result<(Vec<NodeIdx>, usize), Status> {
    let live = snap.nodes().live_list();
    let mut feasible: Vec<NodeIdx> = Vec::with_capacity(wanted);
    let mut visited = 0usize;
    while feasible.len() < wanted && visited < live.len() {
        let size = (wanted - feasible.len()).min(live.len() - visited);
        let window: Vec<NodeIdx> = (visited..visited + size)
            .map(|k| live[(start + k) % live.len()])
            .collect();
        let passed = filter_nodes(filters, state, pod, snap, window, rejections)?;
        feasible.extend(passed);
        visited += size;
    }
    // A wrapped walk finds nodes out of order; plugins get feasible nodes in
    // ascending order (the sample is small, and scores do not depend on order).
    feasible.sort_unstable();
    Ok((feasible, visited))
}

/// Why nodes were rejected: an explicit status per filtered node, and one status
/// for all nodes when PreFilter rejected the pod (upstream's "absent nodes status").
#[derive(Debug, Clone, Default)]
pub struct NodeStatuses {
    /// In node order.
    pub per_node: Vec<(NodeIdx, Status)>,
    pub all_nodes: Option<Status>,
}

impl NodeStatuses {
    /// The status of `node`, if it was rejected.
    pub fn get(&self, node: NodeIdx) -> Option<&Status> {
        self.all_nodes.as_ref().or_else(|| {
            self.per_node
                .binary_search_by_key(&node, |e| e.0)
                .ok()
                .map(|i| &self.per_node[i].1)
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
    /// Nodes the filters examined (upstream's EvaluatedNodes): all live nodes,
    /// or fewer when sampling; 0 when PreFilter rejected the pod.
    pub evaluated: usize,
    pub feasible: Vec<NodeIdx>,
    pub statuses: NodeStatuses,
    /// Best first.
    pub scores: Vec<NodeScore>,
    pub post_filter: Option<PostFilterResult>,
    /// A plugin failed with `Code::Error`: the pod is retried with backoff.
    pub error: Option<Status>,
    /// The GPU cards Reserve picked on `node` (`ReservedCards`), for the binding to record.
    pub gpu_cards: Option<crate::model::Cards>,
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
        if self.num_nodes == 0 {
            // Not a FitError upstream: the message is the error alone.
            return Some(NO_NODES_AVAILABLE.to_owned());
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

    /// `pod` as it is bound: with the GPU cards Reserve picked recorded
    /// (`PodGpu::cards`); the pod itself when it holds none.
    pub fn bound_pod(&self, pod: &std::sync::Arc<Pod>) -> std::sync::Arc<Pod> {
        match (self.gpu_cards, pod.gpu.as_deref()) {
            (Some(cards), Some(g)) if g.cards != Some(cards) => {
                let mut p = (**pod).clone();
                if let Some(g) = p.gpu.as_mut() {
                    g.cards = Some(cards);
                }
                std::sync::Arc::new(p)
            }
            _ => pod.clone(),
        }
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
        evaluated: 0,
        feasible: Vec::new(),
        statuses: NodeStatuses::default(),
        scores: Vec::new(),
        post_filter: None,
        error: None,
        gpu_cards: None,
    };
    if num_nodes == 0 {
        // Upstream's ErrNoNodesAvailable: checked before any plugin runs, and
        // no preemption is tried.
        decision.statuses.all_nodes = Some(Status::unresolvable("", NO_NODES_AVAILABLE));
        return decision;
    }
    let mut state = CycleState::default();
    state.set_fresh_scores(opts.fresh);

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
    // Upstream tries first the node an earlier preemption nominated the pod to
    // (findNodesThatFitPod's evaluateNominatedNode): if it passes every filter
    // the pod goes there, without looking at other nodes or scoring them.
    if let Some(node) = nominated_node(pod, snap) {
        let mut ignored = Rejections::new();
        // A failing evaluation is only logged upstream; all nodes are tried next.
        if let Ok(passed) = filter_nodes(&filters, &state, pod, snap, vec![node], &mut ignored) {
            if !passed.is_empty() {
                decision.evaluated = 1;
                decision.feasible = passed;
                take_node(profile, &mut state, pod, snap, node, &mut decision);
                return decision;
            }
        }
    }

    let mut rejections = Rejections::new();
    let live = snap.nodes().live_list();
    let (start, wanted) = sampling(profile, live.len());
    let sampled = wanted < live.len();
    let filtered = if !sampled {
        decision.evaluated = live.len();
        filter_all_nodes(
            profile,
            &filters,
            &state,
            pod,
            snap,
            live,
            opts,
            &mut rejections,
        )
    } else {
        filter_sample(&filters, &state, pod, snap, start, wanted, &mut rejections).map(
            |(feasible, visited)| {
                decision.evaluated = visited;
                profile
                    .next_start
                    .store((start + visited) % live.len(), Ordering::Relaxed);
                feasible
            },
        )
    };
    match filtered {
        Ok(feasible) => decision.feasible = feasible,
        Err(st) => {
            decision.error = Some(st);
            return decision;
        }
    }
    if (decision.feasible.is_empty() && !opts.no_reasons) || opts.detail {
        decision.statuses.per_node = node_statuses(&filters, &state, pod, snap, rejections);
        if let Some(pf) = state.prefilter_nodes() {
            outside_prefilter_nodes(&mut decision.statuses.per_node, pf, snap);
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
    // Per active plugin: Some(its weighted score on every node) when it gives
    // every node one score (added to every total at once), None when it has a
    // column of scores.
    let uniform: Vec<Option<i64>> = active_scores
        .iter()
        .map(|&(p, weight)| {
            p.uniform_score(&state, pod, snap)
                .map(|v| weighted(v, weight))
        })
        .collect();
    let offset: i64 = uniform.iter().flatten().sum();
    if !opts.detail && !opts.fresh && !sampled {
        let kept = kept_totals_best(
            profile,
            &filters,
            &state,
            pod,
            snap,
            &decision.feasible,
            &active_scores,
            &uniform,
            offset,
        );
        if let Some(best) = kept {
            return take_best(profile, &mut state, pod, snap, best, decision);
        }
    }
    // Feasible nodes in chunks, one per core when parallel: then every node is
    // scored, split over the cores, which beats leaving some unscored on one.
    let chunks = chunk_ranges(n, opts.parallel);
    if !opts.detail && !opts.exhaustive && chunks.len() == 1 {
        let feasible = &decision.feasible;
        let buffers = &profile.class_buffers;
        let (active, uniform) = (&active_scores, &uniform);
        let bounded = bounded::best(
            buffers, &state, pod, snap, feasible, active, uniform, offset,
        );
        if let Some(best) = bounded {
            return take_best(profile, &mut state, pod, snap, best, decision);
        }
    }
    let columns: Vec<(&dyn ScorePlugin, i64)> = active_scores
        .iter()
        .zip(&uniform)
        .filter(|(_, u)| u.is_none())
        .map(|(&c, _)| c)
        .collect();
    // Scores laid out by node slot, where every plugin can and the feasible
    // nodes are dense enough among the slots: nothing gathered (`by_slot`).
    if !opts.detail {
        let (feasible, parallel) = (&decision.feasible, opts.parallel);
        let by_slot = by_slot::best(
            profile, &columns, &state, pod, snap, feasible, offset, parallel,
        );
        if let Some(best) = by_slot {
            return take_best(profile, &mut state, pod, snap, best, decision);
        }
    }
    // Every plugin's normalized scores, plugin-major, in a buffer kept by the
    // profile: every plugin writes every entry of its column (`score_nodes`),
    // which tests check by filling it with `UNWRITTEN` first.
    let mut raw_buffer = profile.score_columns.borrow();
    let raw = raw_buffer.first(n * columns.len(), 0);
    if cfg!(debug_assertions) {
        raw.fill(UNWRITTEN);
    }
    if chunks.len() > 1 {
        score_in_chunks(
            &columns,
            &state,
            pod,
            snap,
            &decision.feasible,
            &chunks,
            raw,
        );
    } else {
        for ((p, _), col) in columns.iter().zip(raw.chunks_mut(n)) {
            p.score_nodes(&state, pod, snap, &decision.feasible, col);
        }
    }
    debug_assert!(
        !raw.contains(&UNWRITTEN),
        "a score plugin left an entry of its column unwritten"
    );
    for ((p, _), col) in columns.iter().zip(raw.chunks_mut(n)) {
        p.normalize(&state, pod, col);
    }
    let weights: Vec<i64> = columns.iter().map(|c| c.1).collect();
    let rank = &nodes.name_rank;
    let mut totals = if opts.detail {
        vec![0i64; n]
    } else {
        Vec::new()
    };
    let sums = Sums {
        raw,
        weights: &weights,
        offset,
        nodes: Positions::Listed(&decision.feasible),
        rank,
    };
    // Some: the feasible list is not empty.
    let best = sums.best(&chunks, &mut totals).unwrap_or(0);
    let best_total = total_at(raw, &weights, offset, best);
    // For `explain`: every plugin's weighted scores, in the profile's order.
    let mut per_plugin: Vec<(&'static str, Vec<i64>)> = Vec::new();
    if opts.detail {
        let mut cols = columns.iter().zip(raw.chunks(n));
        for (&(p, _), u) in active_scores.iter().zip(&uniform) {
            let weighted_scores = match u {
                Some(ws) => vec![*ws; n],
                None => cols
                    .next()
                    .map(|((_, w), col)| col.iter().map(|&v| weighted(v, *w)).collect())
                    .unwrap_or_default(),
            };
            per_plugin.push((p.name(), weighted_scores));
        }
    }
    let chosen = decision.feasible[best];
    if !take_node(profile, &mut state, pod, snap, chosen, &mut decision) {
        return decision;
    }

    if opts.detail {
        let mut scores: Vec<NodeScore> = (0..n)
            .map(|k| NodeScore {
                node: decision.feasible[k],
                total: totals[k],
                plugins: per_plugin.iter().map(|(name, v)| (*name, v[k])).collect(),
            })
            .collect();
        let names = &snap.nodes().name_str;
        scores.sort_by(|a, b| {
            b.total
                .cmp(&a.total)
                .then_with(|| names[a.node as usize].cmp(names[b.node as usize]))
        });
        decision.scores = scores;
    } else {
        decision.scores.push(NodeScore {
            node: decision.feasible[best],
            total: best_total,
            plugins: Vec::new(),
        });
    }
    decision
}

/// The best node and its total from totals kept between cycles
/// (`kept_totals`), when every active score plugin gives every node one score,
/// keeps node scores (normalized by nothing or by the highest score) or scores
/// by class (normalized by nothing), and the pod is not placed (a placed
/// executor does not count itself on its node, which its node's class would).
#[allow(clippy::too_many_arguments)]
fn kept_totals_best(
    profile: &Profile,
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    snap: &Snapshot,
    feasible: &[NodeIdx],
    active: &[(&dyn ScorePlugin, i64)],
    uniform: &[Option<i64>],
    offset: i64,
) -> Option<(NodeIdx, i64)> {
    if snap.pod_by_key(&pod.key).is_some() {
        return None;
    }
    let mut local = Vec::new();
    let mut by_class = Vec::new();
    for (&(p, w), u) in active.iter().zip(uniform) {
        if u.is_some() {
            continue;
        }
        let normalization = p.normalization();
        if normalization != Normalization::Other && p.keeps_node_scores(state, pod, pod) {
            local.push((p, w, normalization == Normalization::ByMaximum));
        } else if normalization == Normalization::None && p.scores_by_class(state, pod) {
            by_class.push((p, w));
        } else {
            return None;
        }
    }
    profile.kept_totals.best(&kept_totals::Scoring {
        filters,
        state,
        pod,
        snap,
        feasible,
        local: &local,
        by_class: &by_class,
        offset,
    })
}

/// Appends to `out`, in ascending order, the slots whose stamp in `now`
/// (`NodeTable::stamp`: 0 on a dead slot) differs from the one in `kept`; slots
/// past the end of either count as stamp 0 there. Blocks without a difference,
/// nearly all of them between two executors, cost a few vector operations.
fn changed_slots(kept: &[u64], now: &[u64], out: &mut Vec<NodeIdx>) {
    const BLOCK: usize = 16;
    let common = kept.len().min(now.len());
    let mut push_differing = |base: usize, k: &[u64], n: &[u64]| {
        for (i, (x, y)) in k.iter().zip(n).enumerate() {
            if x != y {
                out.push((base + i) as NodeIdx);
            }
        }
    };
    let (k_blocks, n_blocks) = (
        kept[..common].chunks_exact(BLOCK),
        now[..common].chunks_exact(BLOCK),
    );
    let (k_rest, n_rest) = (k_blocks.remainder(), n_blocks.remainder());
    for (b, (k, n)) in k_blocks.zip(n_blocks).enumerate() {
        let mut differs = 0u64;
        for i in 0..BLOCK {
            differs |= k[i] ^ n[i];
        }
        if differs != 0 {
            push_differing(b * BLOCK, k, n);
        }
    }
    push_differing(common - k_rest.len(), k_rest, n_rest);
    let longer = if kept.len() > now.len() { kept } else { now };
    for (i, &v) in longer.iter().enumerate().skip(common) {
        if v != 0 {
            out.push(i as NodeIdx);
        }
    }
}

/// `weight · score`, the score clamped to 0..=MAX_NODE_SCORE. Scores are almost
/// always in range: one unsigned comparison (a branch never taken) costs less
/// than a clamp.
#[inline(always)]
fn weighted(score: i64, weight: i64) -> i64 {
    clamped(score) * weight
}

/// `score` clamped to 0..=MAX_NODE_SCORE (see `weighted`).
#[inline(always)]
fn clamped(score: i64) -> i64 {
    if score as u64 <= MAX_NODE_SCORE as u64 {
        score
    } else {
        score.clamp(0, MAX_NODE_SCORE)
    }
}

/// What the totals are summed from: `raw` plugin-major, one column of scores
/// per weight, by position in `nodes`.
struct Sums<'a> {
    raw: &'a [i64],
    weights: &'a [i64],
    offset: i64,
    nodes: Positions<'a>,
    rank: &'a [u32],
}

impl Sums<'_> {
    /// The position of the best feasible node (`sum_and_select`), summed and
    /// selected per chunk of positions, one chunk per thread; the chunks' best
    /// compared by total, then name rank, then position. Fills `totals` when it
    /// is sized. None when no position holds a feasible node.
    fn best(&self, chunks: &[Range<usize>], totals: &mut [i64]) -> Option<usize> {
        let n = self.nodes.len();
        let run = |r: Range<usize>, totals: &mut [i64]| {
            let columns: Vec<&[i64]> = self
                .raw
                .chunks(n.max(1))
                .map(|col| col.get(r.clone()).unwrap_or(&[]))
                .collect();
            let nodes = self.nodes.part(r.clone());
            let (weights, offset, rank) = (self.weights, self.offset, self.rank);
            sum_and_select(&columns, weights, offset, nodes, rank, totals).map(|k| r.start + k)
        };
        if chunks.len() <= 1 {
            return run(0..n, totals);
        }
        // Each chunk's part of the totals, when they are asked for.
        let sized = totals.len() == n;
        let mut parts: Vec<(Range<usize>, &mut [i64])> = Vec::with_capacity(chunks.len());
        let mut rest = totals;
        for r in chunks {
            let part = if sized && r.len() <= rest.len() {
                let (part, tail) = std::mem::take(&mut rest).split_at_mut(r.len());
                rest = tail;
                part
            } else {
                &mut [][..]
            };
            parts.push((r.clone(), part));
        }
        let found = split::map(parts, |_, (r, part)| run(r, part));
        let key = |k: usize| {
            let node = self.nodes.node(k) as usize;
            let rank = self.rank.get(node).copied().unwrap_or(u32::MAX);
            (
                self.total_at(k),
                std::cmp::Reverse(rank),
                std::cmp::Reverse(k),
            )
        };
        found.into_iter().flatten().max_by_key(|&k| key(k))
    }

    /// The total of the `k`-th feasible node.
    fn total_at(&self, k: usize) -> i64 {
        total_at(self.raw, self.weights, self.offset, k)
    }
}

/// The total of the `k`-th feasible node: `offset` plus its weighted scores
/// (`raw` plugin-major, one column per weight).
fn total_at(raw: &[i64], weights: &[i64], offset: i64, k: usize) -> i64 {
    let n = raw.len() / weights.len().max(1);
    offset
        + weights
            .iter()
            .enumerate()
            .map(|(j, &w)| weighted(raw[j * n + k], w))
            .sum::<i64>()
}

/// The position of the best feasible node (highest total; ties to the lower
/// name rank), the totals summed block by block so they stay in L1 and each
/// node is visited once per column. Fills `totals` when it is sized. Compiled
/// also for AVX2 and AVX-512, chosen at run time: there the sums vectorize.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn sum_and_select(
    columns: &[&[i64]],
    weights: &[i64],
    offset: i64,
    nodes: Positions,
    rank: &[u32],
    totals: &mut [i64],
) -> Option<usize> {
    const BLOCK: usize = 256;
    // Weights that fit 32 bits times clamped scores (0..=100) multiply as
    // 32-bit unsigned numbers into 64: AVX2 has that multiply (vpmuludq) and
    // not the 64-bit one, which costs three.
    let narrow = weights.iter().all(|&w| u32::try_from(w).is_ok());
    let n = nodes.len();
    let mut block = [0i64; BLOCK];
    let (mut best, mut best_total, mut best_rank) = (0usize, i64::MIN, u32::MAX);
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        let sums = &mut block[..len];
        sums.fill(offset);
        for (column, &w) in columns.iter().zip(weights) {
            let col = &column[start..start + len];
            if narrow {
                let w = w as u32;
                for (t, &v) in sums.iter_mut().zip(col) {
                    *t += weighted_narrow(v, w);
                }
            } else {
                for (t, &v) in sums.iter_mut().zip(col) {
                    *t += weighted(v, w);
                }
            }
        }
        // Slots of nodes that are not feasible take no part (a select per
        // total, no branch).
        if let Positions::Slots { feasible, .. } = nodes {
            for (t, &f) in sums.iter_mut().zip(&feasible[start..start + len]) {
                *t = if f { *t } else { i64::MIN };
            }
        }
        if let Some(out) = totals.get_mut(start..start + len) {
            out.copy_from_slice(sums);
        }
        // The block's highest total first (a branch-free pass): only a block
        // that reaches the best so far is searched for its lowest rank there.
        let top = sums.iter().fold(i64::MIN, |m, &t| m.max(t));
        if top < best_total || top == i64::MIN {
            continue;
        }
        // A higher total takes the first node that has it, whatever its rank.
        let mut higher = top > best_total;
        // The nodes at the top as bits, 64 totals to a word (vector compares):
        // a block of alike nodes has many, each a mispredicted branch in a
        // scan total by total.
        for (c, chunk) in sums.chunks(TOP_LANES).enumerate() {
            let mut at_top = chunk
                .iter()
                .enumerate()
                .fold(0u64, |m, (j, &t)| m | (u64::from(t == top) << j));
            while at_top != 0 {
                let k = c * TOP_LANES + at_top.trailing_zeros() as usize;
                at_top &= at_top - 1;
                let r = rank[nodes.node(start + k) as usize];
                if higher || r < best_rank {
                    (best, best_total, best_rank) = (start + k, top, r);
                    higher = false;
                }
            }
        }
    }
    (best_total != i64::MIN).then_some(best)
}

/// What the positions of `sum_and_select`'s score columns are.
#[derive(Clone, Copy)]
enum Positions<'a> {
    /// The nodes of a feasible list, in its order.
    Listed(&'a [NodeIdx]),
    /// Node slots from `first` on, `feasible[k]` telling whether slot
    /// `first + k`'s node is feasible.
    Slots { first: usize, feasible: &'a [bool] },
}

impl Positions<'_> {
    fn len(&self) -> usize {
        match self {
            Positions::Listed(nodes) => nodes.len(),
            Positions::Slots { feasible, .. } => feasible.len(),
        }
    }

    /// The node at position `k` (< `len`).
    fn node(&self, k: usize) -> NodeIdx {
        match self {
            Positions::Listed(nodes) => nodes[k],
            Positions::Slots { first, .. } => (first + k) as NodeIdx,
        }
    }

    /// The positions `r` (none where `r` goes past `len`).
    fn part(&self, r: Range<usize>) -> Self {
        match *self {
            Positions::Listed(nodes) => Positions::Listed(nodes.get(r).unwrap_or(&[])),
            Positions::Slots { first, feasible } => Positions::Slots {
                first: first + r.start,
                feasible: feasible.get(r).unwrap_or(&[]),
            },
        }
    }
}

/// How many totals `sum_and_select` compares with the top into one word.
const TOP_LANES: usize = 64;

/// `weighted` for a weight that fits 32 bits.
#[inline(always)]
fn weighted_narrow(score: i64, weight: u32) -> i64 {
    (clamped(score) as u32 as u64 * weight as u64) as i64
}

/// The decision for `best` (node, total) found without a score per node.
fn take_best(
    profile: &Profile,
    state: &mut CycleState,
    pod: &Pod,
    snap: &mut Snapshot,
    (chosen, total): (NodeIdx, i64),
    mut decision: Decision,
) -> Decision {
    if take_node(profile, state, pod, snap, chosen, &mut decision) {
        decision.scores.push(NodeScore {
            node: chosen,
            total,
            plugins: Vec::new(),
        });
    }
    decision
}

/// Reserve and Permit on the chosen node: the node goes into the decision, or
/// the refusal does (a rejection for all nodes, or an error). Whether it went.
fn take_node(
    profile: &Profile,
    state: &mut CycleState,
    pod: &Pod,
    snap: &mut Snapshot,
    chosen: NodeIdx,
    decision: &mut Decision,
) -> bool {
    match reserve_and_permit(profile, state, pod, snap, chosen) {
        Ok(()) => {
            decision.node = Some(chosen);
            decision.gpu_cards = state.read::<ReservedCards>().map(|r| r.0);
            true
        }
        Err(st) if st.is_rejection() => {
            decision.statuses.all_nodes = Some(st);
            false
        }
        Err(st) => {
            decision.error = Some(st);
            false
        }
    }
}

fn reserve_and_permit(
    profile: &Profile,
    state: &mut CycleState,
    pod: &Pod,
    snap: &mut Snapshot,
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

/// The live node `pod` is nominated to: its `status.nominatedNodeName`, or the
/// nomination a preemption in this process gave it.
fn nominated_node(pod: &Pod, snap: &Snapshot) -> Option<NodeIdx> {
    let nodes = snap.nodes();
    pod.nominated_node_name
        .and_then(|n| nodes.get(n))
        .or_else(|| snap.nomination_of(&pod.key).map(|n| n.node))
        .filter(|&n| nodes.live.get(n as usize).copied().unwrap_or(false))
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
/// where to start (a position in the live node list). With sampling off, all
/// nodes from the first.
fn sampling(profile: &Profile, num_nodes: usize) -> (usize, usize) {
    const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
    let pct = profile.percentage_of_nodes_to_score as usize;
    if pct == 0 || pct >= 100 || num_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return (0, usize::MAX);
    }
    let wanted = (num_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND);
    let start = profile.next_start.load(Ordering::Relaxed) % num_nodes.max(1);
    (start, wanted)
}

#[cfg(test)]
mod tests;
