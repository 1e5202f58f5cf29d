//! Who may be preempted, in which order victims are reprieved, and the
//! resource arithmetic that rules nodes out before any dry run.

use crate::framework::Reason;
use crate::model::spark::LABEL_SPARK_EXEC_INACTIVE;
use crate::model::{Pod, PodKey, Resources, Sym, SymHash};
use crate::snapshot::{NodeIdx, Snapshot};
use smallvec::SmallVec;
#[cfg(test)]
use std::cmp::Reverse;
use std::collections::HashMap;
#[cfg(test)]
use std::sync::Arc;
use std::sync::OnceLock;

/// Spark rules on top of upstream's "strictly lower priority".
#[derive(Debug, Clone, Default)]
pub struct SparkPolicy {
    pub executors_may_preempt_drivers: bool,
    /// Executors an application keeps before its others count as spare.
    pub min_executors: u32,
    pub namespace_min_executors: HashMap<Sym, u32>,
}

#[derive(Debug, Clone)]
pub enum VictimPolicy {
    /// Upstream: any lower-priority pod; reprieve by priority, then earlier start.
    Upstream,
    Spark(SparkPolicy),
}

impl VictimPolicy {
    /// May `preemptor` evict `victim`?
    pub fn may_preempt(&self, preemptor: &Pod, victim: &Pod) -> bool {
        if victim.priority >= preemptor.priority {
            return false;
        }
        let VictimPolicy::Spark(sp) = self else {
            return true;
        };
        if !victim.is_driver() {
            return true;
        }
        // Killing the preemptor's own driver would kill the preemptor's application.
        let same_app = match (&preemptor.spark, &victim.spark) {
            (Some(a), Some(b)) => a.app == b.app,
            _ => false,
        };
        if same_app {
            return false;
        }
        !preemptor.is_executor() || sp.executors_may_preempt_drivers
    }

    pub fn is_spark(&self) -> bool {
        matches!(self, VictimPolicy::Spark(_))
    }

    /// Sorts potential victims (owned or borrowed) most important first: the
    /// reprieve order. Ties are broken by pod key, so the order never depends on
    /// where pods sit in the snapshot.
    pub(crate) fn sort_by_importance<P: AsRef<Pod>>(
        &self,
        snap: &Snapshot,
        pods: &mut [(P, bool)],
    ) {
        // Sort integer keys holding each pod's position, then move the pods once:
        // cloning each entry (an Arc's atomic count) cost more than the sort.
        let mut keyed: Vec<u128> = Vec::with_capacity(pods.len());
        match self {
            VictimPolicy::Upstream => {
                for (p, _) in pods.iter() {
                    let p = p.as_ref();
                    keyed.push(packed_order(0, p.priority, false, 0, start(p)));
                }
            }
            VictimPolicy::Spark(sp) => sp.push_orders(snap, pods, &mut keyed),
        }
        let packed = pods.len() <= PACKED_POSITIONS;
        let mut order = sorted_positions(keyed, packed, |i| &pods[i as usize].0.as_ref().key);
        permute(pods, &mut order);
    }
}

impl SparkPolicy {
    /// (above its minimum, placed executors) for an application: its driver's
    /// minimum, else its namespace's, else the policy's.
    fn app_standing(&self, snap: &Snapshot, app: Sym, namespace: Sym) -> (bool, u32) {
        let Some(tally) = snap.app_tally(app) else {
            return (false, 0);
        };
        let executors = tally.executors;
        let min = tally
            .driver_min_executors
            .or_else(|| self.namespace_min_executors.get(&namespace).copied())
            .unwrap_or(self.min_executors);
        (executors > min, executors)
    }

    /// Pushes each pod's `packed_order` onto `keys`.
    fn push_orders<P: AsRef<Pod>>(
        &self,
        snap: &Snapshot,
        pods: &[(P, bool)],
        keys: &mut Vec<u128>,
    ) {
        // The namespace only matters through per-namespace minimums; without them
        // an application's standing is the same for all its pods.
        let by_namespace = !self.namespace_min_executors.is_empty();
        // The first pod of an application on the node picks the namespace.
        let mut apps: HashMap<Sym, (bool, u32), SymHash> = HashMap::default();
        let inactive = inactive_label();
        // Executors of one application often sit side by side on a node: the
        // last standing looked up is then the next one wanted.
        let mut last: Option<(Sym, (bool, u32))> = None;
        for (p, _) in pods {
            let p = p.as_ref();
            let (above_min, executors) = match (&p.spark, p.is_executor()) {
                (Some(id), true) => match last {
                    Some((app, standing)) if app == id.app => standing,
                    _ => {
                        let ns = p.key.namespace;
                        let standing = if by_namespace {
                            *apps
                                .entry(id.app)
                                .or_insert_with(|| self.app_standing(snap, id.app, ns))
                        } else {
                            self.app_standing(snap, id.app, ns)
                        };
                        last = Some((id.app, standing));
                        standing
                    }
                },
                _ => (false, 0),
            };
            let class = spark_class(p, inactive);
            keys.push(packed_order(
                class,
                p.priority,
                above_min,
                executors,
                start(p),
            ));
        }
    }
}

/// Positions `0..keys.len()` in the order of their pods' `keys`, ties in pod-key
/// order. `packed`: each key's low bits can hold its position (sorting then
/// compares single integers); otherwise (more pods than positions fit, which
/// no node holds) (key, position) pairs are sorted.
fn sorted_positions<'k>(
    mut keys: Vec<u128>,
    packed: bool,
    key: impl Fn(u32) -> &'k PodKey,
) -> Vec<u32> {
    let mut order: Vec<u32> = if packed {
        for (i, k) in keys.iter_mut().enumerate() {
            *k |= i as u128;
        }
        keys.sort_unstable();
        keys.iter().map(|k| (*k & POSITION_MASK) as u32).collect()
    } else {
        let mut pairs: Vec<(u128, u32)> = keys.iter().copied().zip(0..).collect();
        pairs.sort_unstable();
        for (k, (sorted, _)) in keys.iter_mut().zip(&pairs) {
            *k = *sorted;
        }
        pairs.iter().map(|(_, i)| *i).collect()
    };
    settle_ties_by_key(&keys, &mut order, key);
    order
}

/// `order` lists positions sorted by `keys` (sorted, position bits aside);
/// puts each run of equal keys in pod-key order. Most runs are one pod long. A
/// key compares as (namespace id, name): an integer of the namespace id and
/// the name's first eight bytes settles most ties without comparing strings.
fn settle_ties_by_key<'k>(keys: &[u128], order: &mut [u32], key: impl Fn(u32) -> &'k PodKey) {
    let of = |k: u128| k & !POSITION_MASK;
    let mut tied: Vec<(u128, u32)> = Vec::new();
    let mut start = 0;
    while start < keys.len() {
        let first = of(keys[start]);
        let len = keys[start..]
            .iter()
            .take_while(|k| of(**k) == first)
            .count();
        let run = &mut order[start..start + len];
        start += len;
        if len < 2 {
            continue;
        }
        tied.clear();
        tied.extend(run.iter().map(|&i| {
            let k = key(i);
            let prefix = (u128::from(k.namespace.id()) << 64) | u128::from(name_prefix(&k.name));
            (prefix, i)
        }));
        // Pod keys are unique, so no two entries are equal: unstable is exact.
        tied.sort_unstable_by(|(a, ia), (b, ib)| {
            a.cmp(b).then_with(|| key(*ia).name.cmp(&key(*ib).name))
        });
        for (slot, &(_, i)) in run.iter_mut().zip(&tied) {
            *slot = i;
        }
    }
}

/// The first eight bytes of `name` as a big-endian integer, zero-padded: names
/// whose prefixes differ compare as these integers do (where one name ends
/// first, its padding is below the other's differing byte); equal prefixes
/// leave the names to be compared.
fn name_prefix(name: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let n = name.len().min(8);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

/// Rearranges `items` so that `items[k]` becomes the old `items[order[k]]`, by
/// swaps along the permutation's cycles (no clones). `order` must be a
/// permutation of `0..items.len()`.
fn permute<T>(items: &mut [T], order: &mut [u32]) {
    for start in 0..items.len() {
        // Follow the cycle through `start`, marking each visited slot done.
        let mut k = start;
        while order[k] as usize != start {
            let from = order[k] as usize;
            items.swap(k, from);
            order[k] = k as u32;
            k = from;
        }
        order[k] = k as u32;
    }
}

/// The `spark-exec-inactive` label key and value "true", interned once: label
/// comparisons are then two integer tests.
fn inactive_label() -> (Sym, Sym) {
    static LABEL: OnceLock<(Sym, Sym)> = OnceLock::new();
    *LABEL.get_or_init(|| (Sym::new(LABEL_SPARK_EXEC_INACTIVE), Sym::new("true")))
}

/// (class, priority, above minimum, application executors, start): see
/// `sort_by_importance`. The sort packs them into one integer (`packed_order`);
/// tests compute the order plainly with this tuple.
#[cfg(test)]
type SparkOrder = (u8, Reverse<i32>, bool, u32, i64);

/// Executor counts from here on compare as equal in `packed_order` (29 bits):
/// no application runs half a billion executors.
const PACKED_EXECUTORS_MAX: u32 = (1 << 29) - 1;

/// Start times (ms) are kept in 48 bits: from 0 (earlier ones compare as equal,
/// before 1970) to `START_MAX` (later ones compare as "no start time", after
/// the year 10000).
const START_BITS: u32 = 48;
const START_MAX: i64 = (1 << START_BITS) - 1;

/// The low bits of a packed order, left for the pod's position in the sort.
const POSITION_BITS: u32 = 16;
const POSITION_MASK: u128 = (1 << POSITION_BITS) - 1;
const PACKED_POSITIONS: usize = 1 << POSITION_BITS;

/// `SparkOrder` as one integer that sorts the same way (class, then higher
/// priority first, then below/above minimum, then fewer executors, then earlier
/// start), with room for a position: the per-node victim sorts compare single
/// integers. Bits: class 126..128, reversed priority 94..126, above minimum 93,
/// executors 64..93, start 16..64, zero 0..16.
fn packed_order(class: u8, priority: i32, above_min: bool, executors: u32, start: i64) -> u128 {
    // Higher priority first: i32::MAX - priority is 0..=u32::MAX, in reverse order.
    let reverse_priority = (i32::MAX as i64 - priority as i64) as u128;
    let executors = executors.min(PACKED_EXECUTORS_MAX);
    let start = start.clamp(0, START_MAX) as u128;
    ((class as u128) << 126)
        | (reverse_priority << 94)
        | ((above_min as u128) << 93)
        | ((executors as u128) << 64)
        | (start << POSITION_BITS)
}

/// Reprieve order class: drivers first (losing one loses the application),
/// executors Spark is retiring last (they are leaving anyway).
fn spark_class(p: &Pod, (key, yes): (Sym, Sym)) -> u8 {
    let retiring = || p.labels.get(key) == Some(yes);
    if p.is_driver() {
        0
    } else if p.is_executor() && retiring() {
        2
    } else {
        1
    }
}

/// Upstream treats a pod without a start time as started now, i.e. last.
pub(crate) fn start(p: &Pod) -> i64 {
    p.started_ms.unwrap_or(i64::MAX)
}

/// The preemptor's requests that NodeResourcesFit checks: only resources it
/// asks for (> 0), minus ignored extended resources; a pod slot always.
#[derive(Debug, Clone, Default)]
pub(crate) struct Need {
    cpu: i64,
    mem: i64,
    eph: i64,
    scalars: SmallVec<[(Sym, i64); 2]>,
}

impl Need {
    pub fn of(pod: &Pod, ignored: &[String], ignored_groups: &[String]) -> Need {
        let r = &pod.requests;
        Need {
            cpu: r.milli_cpu,
            mem: r.memory,
            eph: r.ephemeral_storage,
            scalars: r
                .scalars
                .iter()
                .filter(|(n, v)| {
                    let name = n.as_str();
                    let group = name.split_once('/').map(|(g, _)| g);
                    *v > 0
                        && !ignored.iter().any(|i| i == name)
                        && !group.is_some_and(|g| ignored_groups.iter().any(|i| i == g))
                })
                .copied()
                .collect(),
        }
    }
}

/// Free room on a node for the resources in a `Need`, from the node's exact
/// sums: requests up to i64::MAX each cannot overflow it, and freeing one of
/// several huge pods leaves the room the others really leave.
#[derive(Debug, Clone)]
pub(crate) struct Room {
    cpu: i128,
    mem: i128,
    eph: i128,
    pods: i128,
    scalars: SmallVec<[i128; 2]>,
}

impl Room {
    pub fn of_node(snap: &Snapshot, node: NodeIdx, need: &Need) -> Room {
        let t = snap.nodes();
        let i = node as usize;
        let used = t.exact_usage(node);
        let free = |alloc: i64, used: i128| i128::from(alloc) - used;
        Room {
            cpu: free(t.alloc_cpu[i], used.cpu),
            mem: free(t.alloc_mem[i], used.mem),
            eph: free(t.alloc_eph[i], used.eph),
            pods: free(t.alloc_pods[i], i128::from(t.pod_count[i])),
            scalars: need
                .scalars
                .iter()
                .map(|&(n, _)| free(t.node[i].allocatable.scalar(n), t.exact_req_scalar(node, n)))
                .collect(),
        }
    }

    /// `sign` 1 frees a pod's requests, -1 takes them.
    pub fn apply(&mut self, r: &Resources, need: &Need, sign: i64) {
        let s = i128::from(sign);
        self.cpu += s * i128::from(r.milli_cpu);
        self.mem += s * i128::from(r.memory);
        self.eph += s * i128::from(r.ephemeral_storage);
        self.pods += s;
        for (slot, &(n, _)) in self.scalars.iter_mut().zip(&need.scalars) {
            *slot += s * i128::from(r.scalar(n));
        }
    }

    pub fn fits(&self, need: &Need) -> bool {
        let within = |need: i64, room: i128| need <= 0 || i128::from(need) <= room;
        self.pods >= 1
            && within(need.cpu, self.cpu)
            && within(need.mem, self.mem)
            && within(need.eph, self.eph)
            && self
                .scalars
                .iter()
                .zip(&need.scalars)
                .all(|(room, (_, v))| i128::from(*v) <= *room)
    }

    /// Upstream NodeResourcesFit reasons, in its order.
    pub fn shortfalls(&self, need: &Need) -> SmallVec<[Reason; 1]> {
        let mut out: SmallVec<[Reason; 1]> = SmallVec::new();
        if self.pods < 1 {
            out.push("Too many pods".into());
        }
        let short = |need: i64, room: i128| need > 0 && i128::from(need) > room;
        if short(need.cpu, self.cpu) {
            out.push("Insufficient cpu".into());
        }
        if short(need.mem, self.mem) {
            out.push("Insufficient memory".into());
        }
        if short(need.eph, self.eph) {
            out.push("Insufficient ephemeral-storage".into());
        }
        for (room, (n, v)) in self.scalars.iter().zip(&need.scalars) {
            if i128::from(*v) > *room {
                out.push(format!("Insufficient {n}").into());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::{Just, Strategy};

    proptest::proptest! {
        #[test]
        fn packed_order_sorts_as_the_tuple(
            a in (0u8..3, proptest::num::i32::ANY, proptest::bool::ANY, proptest::num::u32::ANY, any_start()),
            b in (0u8..3, proptest::num::i32::ANY, proptest::bool::ANY, proptest::num::u32::ANY, any_start()),
            same in 0u8..4,
        ) {
            // Equal leading fields, so the later ones decide.
            let b = match same {
                0 => b,
                1 => (a.0, a.1, b.2, b.3, b.4),
                2 => (a.0, a.1, a.2, a.3, b.4),
                _ => (a.0, a.1, a.2, a.3.min(PACKED_EXECUTORS_MAX) ^ (b.3 & 1), b.4),
            };
            let tuple = |x: (u8, i32, bool, u32, i64)| {
                (x.0, Reverse(x.1), x.2, x.3.min(PACKED_EXECUTORS_MAX), x.4.clamp(0, START_MAX))
            };
            let packed = |x: (u8, i32, bool, u32, i64)| packed_order(x.0, x.1, x.2, x.3, x.4);
            proptest::prop_assert_eq!(packed(a).cmp(&packed(b)), tuple(a).cmp(&tuple(b)));
            // The position bits are left free.
            proptest::prop_assert_eq!(packed(a) & POSITION_MASK, 0);
        }
    }

    /// Start times around the kept range and anywhere.
    fn any_start() -> impl Strategy<Value = i64> {
        proptest::prop_oneof![
            proptest::num::i64::ANY,
            -2..START_MAX + 2,
            START_MAX - 2..START_MAX + 2
        ]
    }

    proptest::proptest! {
        #[test]
        fn permute_moves_each_item_where_the_order_says(
            order in (0usize..40).prop_flat_map(|n| Just((0..n).collect::<Vec<_>>()).prop_shuffle()),
        ) {
            let items: Vec<String> = (0..order.len()).map(|i| format!("p{i}")).collect();
            let want: Vec<String> = order.iter().map(|&i| items[i].clone()).collect();
            let mut got = items;
            let mut order: Vec<u32> = order.iter().map(|&i| i as u32).collect();
            permute(&mut got, &mut order);
            proptest::prop_assert_eq!(got, want);
        }
    }
    use crate::model::capacity::CapacityRules;
    use crate::spark::annotations::MIN_EXECUTORS;
    use crate::testkit::*;

    #[test]
    fn spark_eligibility_table() {
        let off = VictimPolicy::Spark(SparkPolicy::default());
        let on = VictimPolicy::Spark(SparkPolicy {
            executors_may_preempt_drivers: true,
            ..Default::default()
        });
        let exec_hi = pod("e", 1, 1).executor("a").priority(10).build();
        let drv_hi = pod("d", 1, 1).driver("a").priority(10).build();
        let drv_lo = pod("d2", 1, 1).driver("b").priority(1).build();
        let own_drv_lo = pod("d3", 1, 1).driver("a").priority(1).build();
        let exec_lo = pod("e2", 1, 1).executor("b").priority(1).build();
        let eq = pod("e3", 1, 1).executor("b").priority(10).build();
        let cases = [
            (&off, &exec_hi, &drv_lo, false),
            (&on, &exec_hi, &drv_lo, true),
            (&on, &exec_hi, &own_drv_lo, false),
            (&off, &drv_hi, &drv_lo, true),
            (&off, &exec_hi, &exec_lo, true),
            (&off, &drv_hi, &eq, false),
            (&VictimPolicy::Upstream, &exec_hi, &drv_lo, true),
            (&VictimPolicy::Upstream, &exec_hi, &eq, false),
        ];
        for (i, (pol, pre, vic, want)) in cases.into_iter().enumerate() {
            assert_eq!(pol.may_preempt(pre, vic), want, "case {i}");
        }
    }

    #[test]
    fn spark_reprieve_order() {
        let mut snap = Snapshot::new(CapacityRules::default());
        snap.upsert_node(node("n", 100_000, 100 * GI).build());
        let place = |s: &mut Snapshot, p: Arc<Pod>| s.upsert_pod(p).unwrap();
        // App "big" has 3 executors and min 1: spare. App "small" has 1 executor, min 2.
        place(
            &mut snap,
            pod("big-d", 1, 1)
                .driver("big")
                .annotation(MIN_EXECUTORS, "1")
                .on("n")
                .arc(),
        );
        for i in 0..3 {
            place(
                &mut snap,
                pod(&format!("big-{i}"), 1, 1).executor("big").on("n").arc(),
            );
        }
        place(
            &mut snap,
            pod("small-d", 1, 1)
                .driver("small")
                .annotation(MIN_EXECUTORS, "2")
                .on("n")
                .arc(),
        );
        place(
            &mut snap,
            pod("small-0", 1, 1).executor("small").on("n").arc(),
        );
        let inactive = pod("idle", 1, 1)
            .executor("small")
            .label(LABEL_SPARK_EXEC_INACTIVE, "true")
            .on("n")
            .arc();
        let mut pods: Vec<(Arc<Pod>, bool)> = vec![
            (inactive, false),
            (
                snap.pod_by_key(&crate::model::PodKey::new("default", "big-0"))
                    .unwrap()
                    .pod
                    .clone(),
                false,
            ),
            (
                snap.pod_by_key(&crate::model::PodKey::new("default", "small-0"))
                    .unwrap()
                    .pod
                    .clone(),
                false,
            ),
            (
                snap.pod_by_key(&crate::model::PodKey::new("default", "small-d"))
                    .unwrap()
                    .pod
                    .clone(),
                false,
            ),
            (pod("plain", 1, 1).priority(-5).arc(), false),
        ];
        VictimPolicy::Spark(SparkPolicy::default()).sort_by_importance(&snap, &mut pods);
        let names: Vec<&str> = pods.iter().map(|(p, _)| p.key.name.as_str()).collect();
        // Driver first; then by priority; at equal priority small's within-minimum
        // executor before big's spare one; the retiring executor last.
        assert_eq!(names, ["small-d", "small-0", "big-0", "plain", "idle"]);
    }

    /// The reprieve order as documented, computed plainly: no caches, labels read
    /// by name, each node's applications standing as seen from its first pod.
    fn reference_order(sp: &SparkPolicy, snap: &Snapshot, pods: &[Arc<Pod>]) -> Vec<String> {
        let mut apps: HashMap<Sym, (bool, u32)> = HashMap::new();
        let mut keyed: Vec<(SparkOrder, &Arc<Pod>)> = pods
            .iter()
            .map(|p| {
                let standing = match (&p.spark, p.is_executor()) {
                    (Some(id), true) => *apps
                        .entry(id.app)
                        .or_insert_with(|| plain_standing(sp, snap, id.app, p.key.namespace)),
                    _ => (false, 0),
                };
                let class = if p.is_driver() {
                    0
                } else if p.is_executor()
                    && p.labels.get_str(LABEL_SPARK_EXEC_INACTIVE) == Some("true")
                {
                    2
                } else {
                    1
                };
                let key = (class, Reverse(p.priority), standing.0, standing.1, start(p));
                (key, p)
            })
            .collect();
        keyed.sort_by(|(a, pa), (b, pb)| a.cmp(b).then_with(|| pa.key.cmp(&pb.key)));
        keyed.iter().map(|(_, p)| p.key.to_string()).collect()
    }

    /// An application's standing counted from every placed pod, its driver's
    /// minimum read from the annotation.
    fn plain_standing(sp: &SparkPolicy, snap: &Snapshot, app: Sym, ns: Sym) -> (bool, u32) {
        let of_app = |p: &Pod| p.spark.as_ref().is_some_and(|s| s.app == app);
        let placed: Vec<Arc<Pod>> = snap
            .nodes()
            .live_indices()
            .flat_map(|n| snap.pods_on(n).map(|e| e.pod.clone()))
            .filter(|p| of_app(p))
            .collect();
        let executors = placed
            .iter()
            .filter(|p| p.is_executor() && !p.terminating)
            .count() as u32;
        let annotated = placed
            .iter()
            .find(|p| p.is_driver())
            .and_then(|d| d.annotation(MIN_EXECUTORS))
            .and_then(|v| v.trim().parse::<u32>().ok());
        let min = annotated
            .or_else(|| sp.namespace_min_executors.get(&ns).copied())
            .unwrap_or(sp.min_executors);
        (executors > min, executors)
    }

    /// The packed sort (standings from the snapshot's application index, the
    /// label interned once, ties settled by key prefixes) gives the order
    /// computed plainly, with and without per-namespace minimums (an
    /// application may span namespaces), for owned and borrowed pods, with and
    /// without positions packed into the keys, after drivers change.
    #[test]
    fn packed_spark_order_matches_the_plain_one() {
        use rand::{Rng, SeedableRng};
        for seed in 0..40u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut snap = Snapshot::new(CapacityRules::default());
            let nodes = ["n1", "n2", "n3"];
            for n in nodes {
                snap.upsert_node(node(n, 100_000, 100 * GI).build());
            }
            let apps = ["a", "b", "c", "d"];
            for (i, app) in apps.iter().enumerate() {
                let mut d = pod(&format!("{app}-driver"), 1, 1)
                    .driver(app)
                    .on(nodes[i % 3]);
                if rng.random_bool(0.5) {
                    d = d.annotation(MIN_EXECUTORS, &rng.random_range(0..4).to_string());
                }
                if rng.random_bool(0.7) {
                    snap.upsert_pod(d.arc()).unwrap();
                }
            }
            for k in 0..30 {
                let app = apps[rng.random_range(0..apps.len())];
                // Short names, and long ones alike in their first eight bytes.
                let name = if rng.random_bool(0.5) {
                    format!("p{k}")
                } else {
                    format!("spark-pi-0a1b2c-exec-{k}")
                };
                let mut b = pod(&name, 1, 1)
                    .namespace(["x", "y"][rng.random_range(0..2)])
                    .priority(rng.random_range(0..3))
                    .on(nodes[rng.random_range(0..3)]);
                b = match rng.random_range(0..4) {
                    0 => b,
                    1 => b.driver(&format!("{app}-other")),
                    _ => b.executor(app),
                };
                if rng.random_bool(0.2) {
                    b = b.label(LABEL_SPARK_EXEC_INACTIVE, "true");
                }
                let mut p = b.build();
                if rng.random_bool(0.5) {
                    p.started_ms = Some(rng.random_range(0..5));
                }
                snap.upsert_pod(Arc::new(p)).unwrap();
            }
            // Drivers go, come back with another minimum, or stay.
            for (i, app) in apps.iter().enumerate() {
                let key = crate::model::PodKey::new("default", &format!("{app}-driver"));
                match rng.random_range(0..3) {
                    0 => {
                        snap.remove_pod(&key);
                    }
                    1 => {
                        let d = pod(&format!("{app}-driver"), 1, 1)
                            .driver(app)
                            .annotation(MIN_EXECUTORS, &rng.random_range(0..4).to_string())
                            .on(nodes[i % 3]);
                        snap.upsert_pod(d.arc()).unwrap();
                    }
                    _ => {}
                }
            }
            for by_namespace in [false, true] {
                let sp = SparkPolicy {
                    min_executors: rng.random_range(0..3),
                    namespace_min_executors: if by_namespace {
                        [(Sym::new("x"), 10)].into_iter().collect()
                    } else {
                        HashMap::new()
                    },
                    ..Default::default()
                };
                let policy = VictimPolicy::Spark(sp.clone());
                for n in nodes {
                    let idx = snap.nodes().by_name(n).unwrap();
                    let owned: Vec<Arc<Pod>> = snap.pods_on(idx).map(|e| e.pod.clone()).collect();
                    let want = reference_order(&sp, &snap, &owned);
                    let mut borrowed: Vec<(&Arc<Pod>, bool)> =
                        owned.iter().map(|p| (p, false)).collect();
                    policy.sort_by_importance(&snap, &mut borrowed);
                    let got: Vec<String> =
                        borrowed.iter().map(|(p, _)| p.key.to_string()).collect();
                    assert_eq!(got, want, "seed {seed} {n}");
                    let mut owned_pairs: Vec<(Arc<Pod>, bool)> =
                        owned.iter().map(|p| (p.clone(), true)).collect();
                    policy.sort_by_importance(&snap, &mut owned_pairs);
                    let got: Vec<String> =
                        owned_pairs.iter().map(|(p, _)| p.key.to_string()).collect();
                    assert_eq!(got, want, "seed {seed} {n} owned");
                    // Unpacked positions (for nodes past 65,536 pods) sort alike.
                    let mut keys = Vec::new();
                    sp.push_orders(&snap, &borrowed, &mut keys);
                    let packed =
                        sorted_positions(keys.clone(), true, |i| &borrowed[i as usize].0.key);
                    let unpacked = sorted_positions(keys, false, |i| &borrowed[i as usize].0.key);
                    assert_eq!(packed, unpacked, "seed {seed} {n} unpacked");
                    if !by_namespace {
                        // Sorted already (with per-namespace minimums, the pod that
                        // picks an application's namespace may have moved).
                        assert_eq!(packed, (0..borrowed.len() as u32).collect::<Vec<_>>());
                    }
                }
                // Upstream: priority, then start, then key.
                for n in nodes {
                    let idx = snap.nodes().by_name(n).unwrap();
                    let mut pods: Vec<(Arc<Pod>, bool)> =
                        snap.pods_on(idx).map(|e| (e.pod.clone(), false)).collect();
                    let mut want: Vec<&Arc<Pod>> = pods.iter().map(|(p, _)| p).collect();
                    want.sort_by(|a, b| {
                        (Reverse(a.priority), start(a), &a.key).cmp(&(
                            Reverse(b.priority),
                            start(b),
                            &b.key,
                        ))
                    });
                    let want: Vec<String> = want.iter().map(|p| p.key.to_string()).collect();
                    VictimPolicy::Upstream.sort_by_importance(&snap, &mut pods);
                    let got: Vec<String> = pods.iter().map(|(p, _)| p.key.to_string()).collect();
                    assert_eq!(got, want, "seed {seed} {n} upstream");
                }
            }
        }
    }

    #[test]
    fn room_checks_only_requested_resources() {
        let mut snap = Snapshot::new(CapacityRules::default());
        let n = snap.upsert_node(node("n", 1000, GI).pods(2).build());
        snap.upsert_pod(pod("a", 900, 0).on("n").arc()).unwrap();
        let cpu_only = Need::of(&pod("p", 200, 0).build(), &[], &[]);
        let mem_only = Need::of(&pod("p", 0, GI).build(), &[], &[]);
        let room = Room::of_node(&snap, n, &cpu_only);
        assert!(!room.fits(&cpu_only));
        assert_eq!(room.shortfalls(&cpu_only).as_slice(), ["Insufficient cpu"]);
        assert!(Room::of_node(&snap, n, &mem_only).fits(&mem_only));
        snap.upsert_pod(pod("b", 0, 0).on("n").arc()).unwrap();
        let room = Room::of_node(&snap, n, &mem_only);
        assert_eq!(room.shortfalls(&mem_only).as_slice(), ["Too many pods"]);
        let gpu = Need::of(
            &pod("g", 0, 0).scalar("nvidia.com/gpu", 1).build(),
            &[],
            &[],
        );
        assert_eq!(
            Room::of_node(&snap, n, &gpu).shortfalls(&gpu).as_slice(),
            ["Too many pods", "Insufficient nvidia.com/gpu"]
        );
        let ignored = Need::of(
            &pod("g", 0, 0).scalar("nvidia.com/gpu", 1).build(),
            &[],
            &["nvidia.com".into()],
        );
        assert!(ignored.scalars.is_empty());
    }

    /// Freeing one of several pods that each ask about i64::MAX leaves the
    /// others' requests: the room is the exact one, not a clamped sum minus a pod.
    #[test]
    fn room_is_exact_past_the_i64_range() {
        let mut snap = Snapshot::new(CapacityRules::default());
        let n = snap.upsert_node(
            node("n", 4000, 16 * GI)
                .scalar("example.com/gpu", 8)
                .build(),
        );
        for name in ["a", "b"] {
            let p = pod(name, i64::MAX, i64::MAX).scalar("example.com/gpu", i64::MAX);
            snap.upsert_pod(p.on("n").arc()).unwrap();
        }
        let small = pod("p", 100, GI).scalar("example.com/gpu", 1).build();
        let need = Need::of(&small, &[], &[]);
        let mut room = Room::of_node(&snap, n, &need);
        assert!(!room.fits(&need));
        let a = pod("a", i64::MAX, i64::MAX)
            .scalar("example.com/gpu", i64::MAX)
            .build();
        room.apply(&a.requests, &need, 1);
        assert!(!room.fits(&need), "b still holds more than the node has");
        assert_eq!(
            room.shortfalls(&need).as_slice(),
            [
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient example.com/gpu"
            ]
        );
        room.apply(&a.requests, &need, 1);
        assert!(room.fits(&need), "both gone");
    }
}
