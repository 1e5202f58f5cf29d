//! FragmentationGradientDescent (FGD): a score plugin for GPU-sharing
//! clusters, after Weng et al., "Beware of Fragmentation: Scheduling
//! GPU-Sharing Workloads with Fragmentation Gradient Descent" (USENIX ATC '23).
//!
//! A node's fragmentation `F(n)` is the GPU milli the target workload is
//! expected to be unable to use there (`workload`). FGD places a pod where
//! `F` grows least: a node scores `⌊100 · sigmoid((F(n) − F(n + pod)) / 1000)⌋`,
//! for a share of a GPU the best over the cards that hold it, and Reserve
//! (through `GpuShare`) takes that card. Pods without GPUs are scored too:
//! their CPU can leave a node's GPUs unusable.
//!
//! The target workload comes from the plugin args (`targetWorkload`), or is
//! learned from the pods the plugin scores (each pod counted once). `F` of a
//! node state (free CPU, cards' free milli, model) is kept, so a cycle reads
//! most nodes from memory: only nodes that changed are computed again.

pub mod workload;

use crate::framework::{CycleState, Normalization, Plugin, PreScorePlugin, ScorePlugin, Status};
use crate::model::{Cards, Pod, PodGpu, PodKey, Sym};
use crate::plugins::gpu_share::CardPicker;
use crate::snapshot::{NodeIdx, NodeTable, Snapshot};
use std::sync::{Arc, Mutex, MutexGuard};
pub use workload::{score_of, Shape, Typical, Workload};

pub const NAME: &str = "FragmentationGradientDescent";

/// Node states whose `F` is kept, at most (then the memory starts over).
const MEMO_LIMIT: usize = 1 << 20;
/// Pods counted before a learned workload is first used, and the growth
/// (in parts per hundred) that rebuilds it.
const LEARN_FIRST: u64 = 20;
const LEARN_GROWTH_PERCENT: u64 = 5;
/// Distinct pods remembered as counted; past it the memory starts over.
const SEEN_LIMIT: usize = 1 << 17;

/// A node state, cards sorted: what `F` depends on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct StateKey {
    cpu_left: i64,
    model: u32,
    cards: u8,
    free: [i32; 8],
}

impl StateKey {
    /// `None` for nodes of more than 8 cards (computed every time).
    fn of(cpu_left: i64, free: &[i32], model: Option<Sym>) -> Option<StateKey> {
        if free.len() > 8 {
            return None;
        }
        let mut sorted = [0i32; 8];
        sorted[..free.len()].copy_from_slice(free);
        sorted[..free.len()].sort_unstable_by(|a, b| b.cmp(a));
        Some(StateKey {
            cpu_left,
            model: model.map_or(u32::MAX, |m| m.id()),
            cards: free.len() as u8,
            free: sorted,
        })
    }
}

/// Node scores of one pod shape, by node slot, with the node stamp they were
/// computed at (0: none) and, for a pod with GPUs, the cards they take.
#[derive(Default)]
struct ShapeScores {
    stamps: Vec<u64>,
    scores: Vec<i64>,
    cards: Vec<Option<Cards>>,
}

/// Pod shapes whose node scores are kept, at most (then all start over).
const SHAPES_KEPT: usize = 512;

struct Memo {
    core: Core,
    shapes: foldhash::HashMap<Shape, ShapeScores>,
}

/// The workload and what is kept of `F`.
struct Core {
    workload: Arc<Workload>,
    known: foldhash::HashMap<StateKey, f64>,
    /// `F` of each node slot as its state was at the stamp kept with it.
    before: Vec<(u64, f64)>,
}

impl Memo {
    fn new(workload: Arc<Workload>) -> Memo {
        Memo {
            core: Core {
                workload,
                known: Default::default(),
                before: Vec::new(),
            },
            shapes: Default::default(),
        }
    }

    /// A new workload: nothing computed for the old one holds.
    fn reset(&mut self, workload: Arc<Workload>) {
        *self = Memo::new(workload);
    }

    /// The kept scores of `shape`, sized for `slots` node slots.
    fn shape(&mut self, shape: &Shape, slots: usize) -> (&mut Core, &mut ShapeScores) {
        if !self.shapes.contains_key(shape) && self.shapes.len() >= SHAPES_KEPT {
            self.shapes.clear();
        }
        let kept = self.shapes.entry(shape.clone()).or_default();
        if kept.stamps.len() < slots {
            kept.stamps.resize(slots, 0);
            kept.scores.resize(slots, 0);
            kept.cards.resize(slots, None);
        }
        (&mut self.core, kept)
    }
}

impl Core {
    fn fragmentation(&mut self, cpu_left: i64, free: &[i32], model: Option<Sym>) -> f64 {
        let Some(key) = StateKey::of(cpu_left, free, model) else {
            return self.workload.fragmentation(cpu_left, free, model);
        };
        if let Some(&f) = self.known.get(&key) {
            return f;
        }
        if self.known.len() >= MEMO_LIMIT {
            self.known.clear();
        }
        let f = self.workload.fragmentation(cpu_left, free, model);
        self.known.insert(key, f);
        f
    }

    /// `F` of node slot `u` now.
    fn node_fragmentation(&mut self, t: &NodeTable, u: usize) -> f64 {
        if self.before.len() < t.stamp.len() {
            self.before.resize(t.stamp.len(), (0, 0.0));
        }
        let (stamp, f) = self.before[u];
        if stamp == t.stamp[u] && stamp != 0 {
            return f;
        }
        let cpu_left = t.alloc_cpu[u].saturating_sub(t.req_cpu[u]);
        let f = self.fragmentation(cpu_left, &t.gpu_free[u], t.gpu_model[u]);
        self.before[u] = (t.stamp[u], f);
        f
    }
}

#[derive(Default)]
struct Learner {
    counts: foldhash::HashMap<Shape, u64>,
    total: u64,
    built_at: u64,
    seen: foldhash::HashSet<PodKey>,
}

pub struct Fgd {
    /// Learns the workload from the pods it scores when no workload was given.
    learner: Option<Mutex<Learner>>,
    memo: Mutex<Memo>,
}

/// The milli-CPU FGD counts for `pod` (the scorers' non-zero request).
fn pod_cpu(pod: &Pod) -> i64 {
    pod.non_zero_cpu_mem().0
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fgd {
    /// FGD against a fixed target workload.
    pub fn with_workload(workload: Workload) -> Fgd {
        Fgd {
            learner: None,
            memo: Mutex::new(Memo::new(Arc::new(workload))),
        }
    }

    /// FGD that learns the workload from the pods it scores.
    pub fn learning() -> Fgd {
        Fgd {
            learner: Some(Mutex::new(Learner::default())),
            memo: Mutex::new(Memo::new(Arc::new(Workload::default()))),
        }
    }

    /// The workload scores are computed against now.
    pub fn workload(&self) -> Arc<Workload> {
        lock(&self.memo).core.workload.clone()
    }

    /// Counts `pod` into a learned workload, rebuilding it when it has grown.
    fn learn(&self, pod: &Pod) {
        let Some(learner) = &self.learner else {
            return;
        };
        let mut l = lock(learner);
        if l.seen.len() >= SEEN_LIMIT {
            l.seen.clear();
        }
        if !l.seen.insert(pod.key.clone()) {
            return;
        }
        *l.counts
            .entry(Shape::of(pod_cpu(pod), pod.gpu.as_deref()))
            .or_default() += 1;
        l.total += 1;
        let grown = l.total >= LEARN_FIRST
            && l.total * 100 >= l.built_at * (100 + LEARN_GROWTH_PERCENT)
            && l.total > l.built_at;
        if grown {
            let counts: Vec<(Shape, u64)> = l.counts.iter().map(|(s, c)| (s.clone(), *c)).collect();
            let workload = Workload::from_counts(counts, l.total);
            l.built_at = l.total;
            drop(l);
            lock(&self.memo).reset(Arc::new(workload));
        }
    }

    /// The score of `pod` on node `u` and, for a pod with GPUs, the cards it
    /// would take: kept (in `kept`, for the pod's shape) from an earlier cycle
    /// where the node's stamp is unchanged, else computed.
    fn node_score(
        core: &mut Core,
        kept: Option<&mut ShapeScores>,
        pod: &Pod,
        t: &NodeTable,
        u: usize,
    ) -> (i64, Option<Cards>) {
        let Some(kept) = kept else {
            return Fgd::compute(core, pod, t, u);
        };
        if kept.stamps[u] == t.stamp[u] && t.stamp[u] != 0 {
            return (kept.scores[u], kept.cards[u]);
        }
        let (score, cards) = Fgd::compute(core, pod, t, u);
        kept.stamps[u] = t.stamp[u];
        kept.scores[u] = score;
        kept.cards[u] = cards;
        (score, cards)
    }

    /// `node_score` without anything kept.
    fn compute(memo: &mut Core, pod: &Pod, t: &NodeTable, u: usize) -> (i64, Option<Cards>) {
        let free = &t.gpu_free[u];
        let model = t.gpu_model[u];
        let cpu_left = t.alloc_cpu[u].saturating_sub(t.req_cpu[u]);
        let before = memo.node_fragmentation(t, u);
        let after_cpu = cpu_left.saturating_sub(pod_cpu(pod));
        let mut after = [0i32; crate::model::gpu::MAX_CARDS];
        let after = &mut after[..free.len()];
        after.copy_from_slice(free);
        match pod.gpu.as_deref() {
            Some(g) if g.is_share() => {
                let milli = g.milli as i32;
                let mut best: Option<(i64, usize)> = None;
                // Cards with equal free milli leave equal states: the first stands for all.
                let mut tried: smallvec::SmallVec<[(i32, i64); 8]> = smallvec::SmallVec::new();
                for (i, &f) in free.iter().enumerate() {
                    if f < milli {
                        continue;
                    }
                    let s = match tried.iter().find(|(v, _)| *v == f) {
                        Some(&(_, s)) => s,
                        None => {
                            after[i] = f - milli;
                            let s = score_of(before, memo.fragmentation(after_cpu, after, model));
                            after[i] = f;
                            tried.push((f, s));
                            s
                        }
                    };
                    if best.is_none_or(|(b, _)| s > b) {
                        best = Some((s, i));
                    }
                }
                best.map_or((0, None), |(s, i)| (s, Some(Cards::single(i))))
            }
            Some(g) => {
                let cards = crate::snapshot::best_fit_cards(free, g.count, g.milli);
                if let Some(c) = cards {
                    for i in c.iter() {
                        after[i] -= g.milli as i32;
                    }
                }
                let s = score_of(before, memo.fragmentation(after_cpu, after, model));
                (s, cards)
            }
            None => (
                score_of(before, memo.fragmentation(after_cpu, after, model)),
                None,
            ),
        }
    }
}

/// The args' target workload; `Err((field, message))`.
pub fn workload_from_args(args: &crate::config::FgdArgs) -> Result<Workload, (String, String)> {
    const P: &str = "fragmentationGradientDescent.targetWorkload";
    let mut typical = Vec::new();
    let mut total = 0.0;
    for (i, t) in args.target_workload.iter().enumerate() {
        let field = |f: &str| format!("{P}[{i}].{f}");
        let cpu = crate::model::Quantity::parse(&t.cpu)
            .ok()
            .filter(|q| !q.is_negative())
            .ok_or_else(|| (field("cpu"), format!("{:?} is not a CPU quantity", t.cpu)))?;
        if t.gpu_milli > crate::model::gpu::MILLI_PER_GPU {
            return Err((field("gpuMilli"), format!("{} is above 1000", t.gpu_milli)));
        }
        let count = t.gpu_count.unwrap_or(u8::from(t.gpu_milli > 0));
        if usize::from(count) > crate::model::gpu::MAX_CARDS {
            return Err((field("gpuCount"), format!("{count} is above 64")));
        }
        if (count > 0) != (t.gpu_milli > 0) {
            return Err((
                field("gpuCount"),
                "a shape with GPUs needs both gpuMilli and a gpuCount of at least 1".into(),
            ));
        }
        if count > 1 && t.gpu_milli < crate::model::gpu::MILLI_PER_GPU {
            return Err((field("gpuMilli"), "a share of a GPU is for one GPU".into()));
        }
        if !(t.weight.is_finite() && t.weight > 0.0) {
            return Err((field("weight"), "must be a positive number".into()));
        }
        total += t.weight;
        let models = crate::model::gpu::parse_models(&t.gpu_models.join("|"));
        typical.push(Typical {
            shape: Shape {
                milli_cpu: cpu.milli_value(),
                gpu_milli: t.gpu_milli,
                gpu_count: count,
                models,
            },
            frequency: t.weight,
        });
    }
    for t in &mut typical {
        t.frequency /= total;
    }
    Ok(Workload { typical })
}

/// Checks the args (`Err((field, message))`).
pub fn validate_args(args: &crate::config::FgdArgs) -> Result<(), (String, String)> {
    workload_from_args(args).map(|_| ())
}

impl Fgd {
    /// FGD as the args configure it: their workload, or learning one.
    pub fn from_args(args: &crate::config::FgdArgs) -> Result<Fgd, (String, String)> {
        let w = workload_from_args(args)?;
        Ok(if w.is_empty() {
            Fgd::learning()
        } else {
            Fgd::with_workload(w)
        })
    }
}

impl Plugin for Fgd {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for Fgd {
    fn pre_score(&self, _: &mut CycleState, pod: &Pod, _: &Snapshot, _: &[NodeIdx]) -> Status {
        self.learn(pod);
        if lock(&self.memo).core.workload.is_empty() {
            // Nothing learned yet: every node would score alike.
            return Status::skip();
        }
        Status::success()
    }
}

impl ScorePlugin for Fgd {
    fn score(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let mut out = [0];
        self.score_nodes(state, pod, snap, &[node], &mut out);
        out[0]
    }

    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &[NodeIdx],
        out: &mut [i64],
    ) {
        let mut memo = lock(&self.memo);
        let t = snap.nodes();
        let shape = Shape::of(pod_cpu(pod), pod.gpu.as_deref());
        let (core, kept) = memo.shape(&shape, t.stamp.len());
        let mut kept = state.reuses_scores().then_some(kept);
        for (o, &n) in out.iter_mut().zip(nodes) {
            *o = Fgd::node_score(core, kept.as_deref_mut(), pod, t, n as usize).0;
        }
    }

    fn normalization(&self) -> Normalization {
        Normalization::None
    }
}

impl CardPicker for Fgd {
    /// The card the score chose (for a share), or the first free cards.
    fn pick(&self, pod: &Pod, gpu: &PodGpu, snap: &Snapshot, node: NodeIdx) -> Option<Cards> {
        let t = snap.nodes();
        let u = node as usize;
        if !crate::snapshot::cards_fit(&t.gpu_free[u], gpu.count, gpu.milli) {
            return None;
        }
        let mut memo = lock(&self.memo);
        let shape = Shape::of(pod_cpu(pod), Some(gpu));
        let (core, kept) = memo.shape(&shape, t.stamp.len());
        Fgd::node_score(core, Some(kept), pod, t, u).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::snapshot_of;
    use crate::testkit::*;

    /// The workload: half-GPU pods with 1 CPU.
    fn halves() -> Fgd {
        Fgd::with_workload(Workload::from_shapes(vec![
            Shape {
                milli_cpu: 1000,
                gpu_milli: 500,
                gpu_count: 1,
                models: Default::default(),
            };
            4
        ]))
    }

    #[test]
    fn scores_and_cards_table() {
        let s = snapshot_of(
            vec![
                node("empty", 16_000, 64 * GI).gpus(2, "T4").build(),
                // card 0 holds 700 (300 free), card 1 holds 500 (500 free)
                node("used", 16_000, 64 * GI).gpus(2, "T4").build(),
            ],
            vec![
                pod("a", 1000, GI)
                    .gpu(1, 700, &[])
                    .cards("0")
                    .on("used")
                    .build(),
                pod("b", 1000, GI)
                    .gpu(1, 500, &[])
                    .cards("1")
                    .on("used")
                    .build(),
            ],
        );
        let fgd = halves();
        let empty = s.nodes().by_name("empty").unwrap();
        let used = s.nodes().by_name("used").unwrap();
        // (pod, node, score, cards). F(empty) = 0; half a GPU on it leaves 500 + 1000,
        // all usable: score 50. On `used`, F = 300 (card 0); taking card 1 leaves
        // 300 + 0: F stays 300, score 50, card 1 (card 0 is too small).
        let cases = [
            (
                pod("h", 1000, GI).gpu(1, 500, &[]).build(),
                empty,
                50,
                Some("0"),
            ),
            (
                pod("h", 1000, GI).gpu(1, 500, &[]).build(),
                used,
                50,
                Some("1"),
            ),
            // 300 milli on `used`: card 0 (300 free) goes to 0: F 300 -> 0, score 57;
            // card 1 (500 free) leaves 200: F 300 -> 500, score 45. Card 0 wins.
            (
                pod("s", 1000, GI).gpu(1, 300, &[]).build(),
                used,
                57,
                Some("0"),
            ),
            // A whole GPU on `empty`: 1000 left on card 1, F stays 0.
            (
                pod("w", 1000, GI).gpu(1, 1000, &[]).build(),
                empty,
                50,
                Some("0"),
            ),
            // No GPU, but 15.5 CPU: the node's CPU is then short for the workload,
            // so its 2000 free milli become fragments: score ⌊100·sigmoid(-2)⌋ = 11.
            (pod("c", 15_500, GI).build(), empty, 11, None),
        ];
        for (p, n, score, cards) in cases {
            let got = fgd.score(&CycleState::default(), &p, &s, n);
            assert_eq!(got, score, "{} on {}", p.key, s.nodes().name[n as usize]);
            if let Some(g) = p.gpu.as_deref() {
                let picked = fgd.pick(&p, g, &s, n).map(|c| c.to_string());
                assert_eq!(picked.as_deref(), cards, "{}", p.key);
            }
        }
    }

    /// A profile of the live scheduler's plugins, FGD on with `args`.
    fn gpu_profile(fgd_weight: i64, args: &str) -> crate::framework::Profile {
        let yaml = format!(
            "profiles:\n\
             - name: gpu\n  \
               plugins:\n  \
               - {{name: NodeResourcesFit, weight: 1}}\n  \
               - {{name: GpuShare, weight: 0}}\n  \
               - {{name: FragmentationGradientDescent, weight: {fgd_weight}}}\n  \
               pluginArgs: {{fragmentationGradientDescent: {args}}}\n\
             defaultProfile: gpu\n"
        );
        let config = crate::config::Config::parse(&yaml, "gpu.yaml").unwrap();
        crate::plugins::build_profile(&config, config.profile("gpu").unwrap()).unwrap()
    }

    /// In a profile, FGD picks the node and GpuShare's Reserve takes the card
    /// FGD scored: node "a" has cards of 700 and 1000 free. For a 400-milli
    /// share, best fit takes card 0 (the fuller), leaving 300 that a half-GPU
    /// pod cannot use; FGD takes card 1. Node "b" has one card of 400 free: the
    /// share fills it exactly and removes a fragment, so FGD goes there first.
    #[test]
    fn in_a_profile_fgd_chooses_the_node_and_the_card() {
        let halves = "{targetWorkload: [{cpu: \"1\", gpuMilli: 500}]}";
        let nodes = || {
            vec![
                node("a", 16_000, 64 * GI).gpus(2, "T4").build(),
                node("b", 16_000, 64 * GI).gpus(1, "T4").build(),
            ]
        };
        let held = |name: &str, on: &str, milli: u32| {
            pod(name, 1000, GI)
                .gpu(1, milli, &[])
                .cards("0")
                .on(on)
                .build()
        };
        let share = pod("s", 1000, GI).gpu(1, 400, &[]).build();
        let decide = |profile: &crate::framework::Profile, with_b: bool| {
            let mut pods = vec![held("a0", "a", 300)];
            let mut ns = nodes();
            if with_b {
                pods.push(held("b0", "b", 600));
            } else {
                ns.pop();
            }
            let mut s = snapshot_of(ns, pods);
            let d = crate::framework::schedule(profile, &share, &mut s, Default::default());
            let n = d
                .node
                .map(|n| s.nodes().name[n as usize].as_str().to_owned());
            (n, d.gpu_cards.map(|c| c.to_string()))
        };
        let with_fgd = gpu_profile(1, halves);
        let without = gpu_profile(0, halves);
        assert_eq!(
            decide(&with_fgd, true),
            (Some("b".into()), Some("0".into()))
        );
        assert_eq!(
            decide(&with_fgd, false),
            (Some("a".into()), Some("1".into()))
        );
        assert_eq!(
            decide(&without, false),
            (Some("a".into()), Some("0".into()))
        );
    }

    #[test]
    fn off_in_the_default_profiles_and_bad_args_name_the_field() {
        for p in crate::config::Config::default().profiles {
            assert!(p.plugins.iter().all(|e| e.name != NAME), "{}", p.name);
        }
        let e = crate::config::Config::parse(
            "profiles: [{name: g, plugins: [{name: FragmentationGradientDescent, weight: 1}], \
             pluginArgs: {fragmentationGradientDescent: {targetWorkload: [{cpu: \"1\", gpuMilli: 1500}]}}}]\n\
             defaultProfile: g\n",
            "c.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("fragmentationGradientDescent.targetWorkload[0].gpuMilli"),
            "{e}"
        );
    }

    #[test]
    fn a_learned_workload_waits_for_pods() {
        let fgd = Fgd::learning();
        let s = snapshot_of(
            vec![node("n", 16_000, 64 * GI).gpus(1, "T4").build()],
            vec![],
        );
        let mut state = CycleState::default();
        let p = pod("p0", 1000, GI).gpu(1, 500, &[]).build();
        assert_eq!(
            fgd.pre_score(&mut state, &p, &s, &[]).code,
            crate::framework::Code::Skip
        );
        for k in 0..LEARN_FIRST {
            let p = pod(&format!("p{k}"), 1000, GI).gpu(1, 500, &[]).build();
            fgd.pre_score(&mut state, &p, &s, &[]);
        }
        let w = fgd.workload();
        assert_eq!(w.typical.len(), 1);
        assert_eq!(w.typical[0].shape.gpu_milli, 500);
        // The same pod again does not count twice.
        fgd.pre_score(&mut state, &p, &s, &[]);
        assert_eq!(fgd.workload().typical.len(), 1);
    }
}
