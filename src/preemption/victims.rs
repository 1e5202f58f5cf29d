//! Who may be preempted, in which order victims are reprieved, and the
//! resource arithmetic that rules nodes out before any dry run.

use crate::framework::Reason;
use crate::model::spark::LABEL_SPARK_EXEC_INACTIVE;
use crate::model::{Pod, Resources, Sym, SymHash};
use crate::snapshot::{NodeIdx, Snapshot};
use crate::spark::annotations::{parse_count, MIN_EXECUTORS};
use smallvec::SmallVec;
use std::cmp::Reverse;
use std::collections::HashMap;
#[cfg(test)]
use std::sync::Arc;

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

    /// Sorts potential victims most important first: the reprieve order.
    #[cfg(test)]
    pub(crate) fn sort_by_importance(&self, snap: &Snapshot, pods: &mut [(Arc<Pod>, bool)]) {
        self.sort_by_importance_with(snap, pods, &mut Standings::default());
    }

    /// [`Self::sort_by_importance`] for owned or borrowed pods, remembering
    /// application standings in `standings` for later sorts on the same snapshot.
    pub(crate) fn sort_by_importance_with<P: AsRef<Pod> + Clone>(
        &self,
        snap: &Snapshot,
        pods: &mut [(P, bool)],
        standings: &mut Standings,
    ) {
        match self {
            // Pod keys are unique, so no two entries are equal: unstable is exact.
            VictimPolicy::Upstream => pods.sort_unstable_by(|(a, _), (b, _)| {
                let (a, b) = (a.as_ref(), b.as_ref());
                Reverse(a.priority)
                    .cmp(&Reverse(b.priority))
                    .then_with(|| start(a).cmp(&start(b)))
                    .then_with(|| a.key.cmp(&b.key))
            }),
            VictimPolicy::Spark(sp) => {
                // The namespace only matters through per-namespace minimums; without
                // them an application's standing is the same for all its pods.
                let by_namespace = !sp.namespace_min_executors.is_empty();
                // The first pod of an application on the node picks the namespace.
                let mut apps: HashMap<Sym, (bool, u32), SymHash> = HashMap::default();
                let inactive = InactiveLabel::lookup();
                // Executors of one application sit side by side on a node: the
                // last standing looked up is usually the next one wanted.
                let mut last: Option<(Sym, (bool, u32))> = None;
                // Sort keys with positions, then move the pods once: cloning each
                // entry (an Arc's atomic count) cost more than the sort.
                let mut keyed: Vec<(u128, u32)> = pods
                    .iter()
                    .enumerate()
                    .map(|(i, (p, _))| {
                        let p = p.as_ref();
                        let (above_min, executors) = match (&p.spark, p.is_executor()) {
                            (Some(id), true) => match last {
                                Some((app, standing)) if app == id.app => standing,
                                _ => {
                                    let ns = p.key.namespace;
                                    let key_ns = if by_namespace { ns } else { id.app };
                                    let mut look_up = || {
                                        standings.of(id.app, key_ns, || {
                                            sp.app_standing(snap, id.app, ns)
                                        })
                                    };
                                    let standing = if by_namespace {
                                        *apps.entry(id.app).or_insert_with(look_up)
                                    } else {
                                        look_up()
                                    };
                                    last = Some((id.app, standing));
                                    standing
                                }
                            },
                            _ => (false, 0),
                        };
                        let class = spark_class(p, &inactive);
                        let order = packed_order(class, p.priority, above_min, executors, start(p));
                        (order, i as u32)
                    })
                    .collect();
                // Pod keys are unique, so no two entries are equal: unstable is exact.
                keyed.sort_unstable_by(|(a, ia), (b, ib)| {
                    a.cmp(b).then_with(|| {
                        let key = |i: &u32| &pods[*i as usize].0.as_ref().key;
                        key(ia).cmp(key(ib))
                    })
                });
                let order: Vec<usize> = keyed.iter().map(|&(_, i)| i as usize).collect();
                permute(pods, order);
            }
        }
    }
}

/// Rearranges `items` so that `items[k]` becomes the old `items[order[k]]`, by
/// swaps along the permutation's cycles (no clones). `order` must be a
/// permutation of `0..items.len()`.
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    for start in 0..items.len() {
        // Follow the cycle through `start`, marking each visited slot done.
        let mut k = start;
        while order[k] != start {
            let from = order[k];
            items.swap(k, from);
            order[k] = k;
            k = from;
        }
        order[k] = k;
    }
}

impl SparkPolicy {
    /// (above its minimum, placed executors) for an application.
    fn app_standing(&self, snap: &Snapshot, app: Sym, namespace: Sym) -> (bool, u32) {
        let Some(pods) = snap.app(app) else {
            return (false, 0);
        };
        let executors: u32 = pods.executors_by_type.iter().map(|(_, n)| *n).sum();
        let annotated = pods
            .driver
            .and_then(|id| snap.pod(id))
            .and_then(|e| e.pod.annotation(MIN_EXECUTORS))
            // A bad value is reported by driver admission; here it just means "no annotation".
            .and_then(|v| parse_count(v).ok());
        let min = annotated
            .or_else(|| self.namespace_min_executors.get(&namespace).copied())
            .unwrap_or(self.min_executors);
        (executors > min, executors)
    }
}

/// (above its minimum, placed executors) by (application, namespace the minimum
/// is looked up in), valid while the snapshot does not change.
#[derive(Debug, Default)]
pub(crate) struct Standings(HashMap<(Sym, Sym), (bool, u32), SymHash>);

impl Standings {
    fn of(&mut self, app: Sym, ns: Sym, compute: impl FnOnce() -> (bool, u32)) -> (bool, u32) {
        *self.0.entry((app, ns)).or_insert_with(compute)
    }
}

/// The interned `spark-exec-inactive` label key and value "true", looked up once
/// per sort: a pod cannot carry a string nobody interned.
struct InactiveLabel(Option<(Sym, Sym)>);

impl InactiveLabel {
    fn lookup() -> InactiveLabel {
        InactiveLabel(Sym::lookup(LABEL_SPARK_EXEC_INACTIVE).zip(Sym::lookup("true")))
    }
}

/// (class, priority, above minimum, application executors, start): see
/// `sort_by_importance`. The sort packs them into one integer (`packed_order`);
/// tests compute the order plainly with this tuple.
#[cfg(test)]
type SparkOrder = (u8, Reverse<i32>, bool, u32, i64);

/// Executor counts from here on compare as equal in `packed_order` (29 bits):
/// no application runs half a billion executors.
const PACKED_EXECUTORS_MAX: u32 = (1 << 29) - 1;

/// `SparkOrder` as one integer that sorts the same way (class, then higher
/// priority first, then below/above minimum, then fewer executors, then earlier
/// start): one comparison of two words instead of five in the per-node victim
/// sorts. Bits: class 126..128, reversed priority 94..126, above minimum 93,
/// executors 64..93, start (sign bit flipped, so it sorts as unsigned) 0..64.
fn packed_order(class: u8, priority: i32, above_min: bool, executors: u32, start: i64) -> u128 {
    // Higher priority first: i32::MAX - priority is 0..=u32::MAX, in reverse order.
    let reverse_priority = (i32::MAX as i64 - priority as i64) as u128;
    let executors = executors.min(PACKED_EXECUTORS_MAX);
    ((class as u128) << 126)
        | (reverse_priority << 94)
        | ((above_min as u128) << 93)
        | ((executors as u128) << 64)
        | ((start as u64) ^ (1 << 63)) as u128
}

/// Reprieve order class: drivers first (losing one loses the application),
/// executors Spark is retiring last (they are leaving anyway).
fn spark_class(p: &Pod, inactive: &InactiveLabel) -> u8 {
    let retiring = || {
        inactive
            .0
            .is_some_and(|(key, yes)| p.labels.get(key) == Some(yes))
    };
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
            a in (0u8..3, proptest::num::i32::ANY, proptest::bool::ANY, proptest::num::u32::ANY, proptest::num::i64::ANY),
            b in (0u8..3, proptest::num::i32::ANY, proptest::bool::ANY, proptest::num::u32::ANY, proptest::num::i64::ANY),
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
                (x.0, Reverse(x.1), x.2, x.3.min(PACKED_EXECUTORS_MAX), x.4)
            };
            let packed = |x: (u8, i32, bool, u32, i64)| packed_order(x.0, x.1, x.2, x.3, x.4);
            proptest::prop_assert_eq!(packed(a).cmp(&packed(b)), tuple(a).cmp(&tuple(b)));
        }
    }

    proptest::proptest! {
        #[test]
        fn permute_moves_each_item_where_the_order_says(
            order in (0usize..40).prop_flat_map(|n| Just((0..n).collect::<Vec<_>>()).prop_shuffle()),
        ) {
            let items: Vec<String> = (0..order.len()).map(|i| format!("p{i}")).collect();
            let want: Vec<String> = order.iter().map(|&i| items[i].clone()).collect();
            let mut got = items;
            permute(&mut got, order);
            proptest::prop_assert_eq!(got, want);
        }
    }
    use crate::model::capacity::CapacityRules;
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
                        .or_insert_with(|| sp.app_standing(snap, id.app, p.key.namespace)),
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

    /// Standings remembered across nodes, borrowed pods and the label lookup done
    /// once give the order computed from scratch, with and without per-namespace
    /// minimums (an application may span namespaces).
    #[test]
    fn cached_spark_order_matches_the_plain_one() {
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
                let mut b = pod(&format!("p{k}"), 1, 1)
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
                let mut standings = Standings::default();
                for n in nodes {
                    let idx = snap.nodes().by_name(n).unwrap();
                    let owned: Vec<Arc<Pod>> = snap.pods_on(idx).map(|e| e.pod.clone()).collect();
                    let mut borrowed: Vec<(&Arc<Pod>, bool)> =
                        owned.iter().map(|p| (p, false)).collect();
                    policy.sort_by_importance_with(&snap, &mut borrowed, &mut standings);
                    let got: Vec<String> =
                        borrowed.iter().map(|(p, _)| p.key.to_string()).collect();
                    assert_eq!(got, reference_order(&sp, &snap, &owned), "seed {seed} {n}");
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
