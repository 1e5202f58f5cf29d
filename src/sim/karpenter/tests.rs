//! Karpenter model tests: batch windows, the cheapest allowed offering (required against
//! preferred terms), spread over NodePool domains, consolidation and interruption notices.

use super::pools::{requirement_in, CapacityChoice, NodePool, LABEL_CAPACITY_TYPE};
use super::*;
use crate::config::KarpenterConfig;
use crate::model::capacity::{CapacityRules, ON_DEMAND};
use crate::model::{NodeAffinity, NodeSelectorTerm, PreferredTerm, SelectorOp};
use crate::testkit::{node, pod, req, selector, term, GI};
use std::sync::Arc;

fn zones() -> Vec<Sym> {
    vec![Sym::new("zone-a"), Sym::new("zone-b")]
}

fn karpenter(pools: Vec<NodePool>) -> Karpenter {
    Karpenter::new(&KarpenterConfig::default(), pools, &zones(), 1)
}

fn default_pool() -> Vec<NodePool> {
    vec![NodePool::new("default", &[SPOT, ON_DEMAND])]
}

fn empty() -> Snapshot {
    Snapshot::new(CapacityRules::default())
}

/// The capacity type and instance type each launch got.
fn launched(l: &[Launch]) -> Vec<(String, String)> {
    l.iter()
        .map(|l| {
            (
                l.capacity.as_str().to_owned(),
                l.node
                    .labels
                    .get_str(super::pools::LABEL_INSTANCE_TYPE)
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

fn off_spot() -> Vec<NodeSelectorTerm> {
    vec![term(vec![req(
        LABEL_CAPACITY_TYPE,
        SelectorOp::NotIn,
        &["spot"],
    )])]
}

#[test]
fn batch_closes_after_one_idle_second_or_ten_seconds() {
    let mut k = karpenter(default_pool());
    assert!(!k.batch_open());
    assert_eq!(k.trigger(0), 1_000);
    // A pod 500 ms later extends the idle deadline.
    assert_eq!(k.trigger(500), 1_500);
    assert!(!k.batch_due(1_499) && k.batch_due(1_500));
    // Pods arriving every 900 ms keep it open until 10 s after it opened, no longer.
    let mut closes = 0;
    for t in (1_400..20_000).step_by(900) {
        closes = k.trigger(t);
    }
    assert_eq!(closes, 10_000);
    assert!(k.batch_due(10_000));
    k.provision(10_000, &empty(), &[]);
    assert!(!k.batch_open());
    // A new window starts from the next pod.
    assert_eq!(k.trigger(30_000), 31_000);
}

#[test]
fn cheapest_offering_is_spot_where_allowed_and_required_terms_bind() {
    let snap = empty();
    let free = pod("free", 3000, 4 * GI).build();
    let mut k = karpenter(default_pool());
    let l = k.provision(0, &snap, &[&free]);
    // 3 CPU, 4 GiB: the cheapest offering that fits is spot m5.2xlarge ($0.1728).
    assert_eq!(launched(&l), [("spot".into(), "m5.2xlarge".into())]);
    assert_eq!(l[0].price, 0.1728);
    assert_eq!(l[0].ready_at, 45_000);

    let required = pod("req", 3000, 4 * GI).required_terms(off_spot()).build();
    let mut k = karpenter(default_pool());
    let l = k.provision(0, &snap, &[&required]);
    assert_eq!(launched(&l), [("on-demand".into(), "c5.2xlarge".into())]);
    assert_eq!(l[0].price, 0.34);
}

#[test]
fn preferred_terms_are_tried_first_then_relaxed() {
    let snap = empty();
    let prefers = pod("pref", 1000, GI)
        .affinity(NodeAffinity {
            required: None,
            preferred: vec![PreferredTerm {
                weight: 100,
                term: term(vec![req(
                    LABEL_CAPACITY_TYPE,
                    SelectorOp::In,
                    &["on-demand"],
                )]),
            }],
        })
        .build();
    // Both types allowed: the preference holds, on-demand is launched although spot is cheaper.
    let mut k = karpenter(default_pool());
    let l = k.provision(0, &snap, &[&prefers]);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].capacity.as_str(), ON_DEMAND);
    // Only spot allowed: the preference is relaxed and spot launched.
    let mut k = karpenter(vec![NodePool::new("spot", &[SPOT])]);
    let l = k.provision(0, &snap, &[&prefers]);
    assert_eq!(l[0].capacity.as_str(), SPOT);
    // A required term no pool allows launches nothing, and says why.
    let required = pod("req", 1000, GI).required_terms(off_spot()).build();
    let mut k = karpenter(vec![NodePool::new("spot", &[SPOT])]);
    assert!(k.provision(0, &snap, &[&required]).is_empty());
    let why = &k.reasons[&required.key];
    assert!(why.contains("incompatible with every NodePool"), "{why}");
}

#[test]
fn existing_room_counts_and_an_unconstrained_pod_is_expected_there() {
    let mut snap = empty();
    snap.upsert_node(node("spot-1", 8000, 32 * GI).spot().zone("zone-a").build());
    let free = pod("free", 2000, 2 * GI).build();
    let od = pod("od", 2000, 2 * GI).required_terms(off_spot()).build();
    let mut k = karpenter(default_pool());
    let l = k.provision(0, &snap, &[&free, &od]);
    // Karpenter believes the free pod goes to the spot node with room (whatever the
    // scheduler thinks); only the pod required off spot gets a launch.
    assert_eq!(k.expected[&free.key].as_str(), "spot-1");
    assert_eq!(launched(&l), [("on-demand".into(), "c5.2xlarge".into())]);
    // An unchanged cluster and pending set decides nothing new; the launch counts as room.
    assert!(k.provision(1, &snap, &[&free, &od]).is_empty());
    assert_eq!(k.expected[&od.key], l[0].name);
}

#[test]
fn pods_are_packed_onto_the_cheapest_type_that_holds_them_all() {
    let snap = empty();
    let pods: Vec<Pod> = (0..3)
        .map(|i| pod(&format!("p{i}"), 3000, GI).build())
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let mut k = karpenter(default_pool());
    let l = k.provision(0, &snap, &refs);
    // 9 CPU on one node: c5.4xlarge spot ($0.34) beats two c5.2xlarge and the m5/r5 sizes.
    assert_eq!(launched(&l), [("spot".into(), "c5.4xlarge".into())]);
}

#[test]
fn ratio_split_pools_spread_executors_over_their_domains() {
    let mut spot = NodePool::new("spot", &[SPOT]);
    spot.requirements
        .push(requirement_in("capacity-spread", &["1", "2"]));
    let mut od = NodePool::new("od", &[ON_DEMAND]);
    od.requirements
        .push(requirement_in("capacity-spread", &["3", "4", "5"]));
    let sel = selector(&[("spark-app-selector", "a")]);
    let pods: Vec<Pod> = (0..5)
        .map(|i| {
            pod(&format!("e{i}"), 1000, GI)
                .label("spark-app-selector", "a")
                .spread(1, "capacity-spread", true, sel.clone())
                .build()
        })
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let mut k = karpenter(vec![spot, od]);
    let l = k.provision(0, &empty(), &refs);
    // One node per domain: 2 spot, 3 on-demand.
    let mut domains: Vec<&str> = l
        .iter()
        .map(|l| l.node.labels.get_str("capacity-spread").unwrap())
        .collect();
    domains.sort();
    assert_eq!(domains, ["1", "2", "3", "4", "5"]);
    assert_eq!(l.iter().filter(|l| l.capacity.as_str() == SPOT).count(), 2);
}

#[test]
fn node_share_pools_launch_the_type_furthest_below_its_share() {
    let mut group = NodePool::new("group", &[SPOT, ON_DEMAND]);
    group.capacity =
        CapacityChoice::NodeShare(vec![(Sym::new(SPOT), 40), (Sym::new(ON_DEMAND), 60)]);
    // Pods too large to share a node: one launch each.
    let pods: Vec<Pod> = (0..5)
        .map(|i| pod(&format!("p{i}"), 30_000, GI).build())
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let mut k = karpenter(vec![group]);
    let l = k.provision(0, &empty(), &refs);
    let spot = l.iter().filter(|l| l.capacity.as_str() == SPOT).count();
    assert_eq!((spot, l.len() - spot), (2, 3));
}

/// Brings launched nodes up at `now` as the engine would.
fn bring_up(k: &mut Karpenter, snap: &mut Snapshot, launches: Vec<Launch>, now: u64) -> Vec<Sym> {
    launches
        .into_iter()
        .map(|l| {
            k.ready(l.name, now);
            snap.upsert_node(l.node);
            l.name
        })
        .collect()
}

fn movable(_: &Pod) -> bool {
    true
}

#[test]
fn empty_nodes_go_after_consolidate_after_within_the_budget() {
    let mut snap = empty();
    let mut k = karpenter(default_pool());
    // Pods too large to share a node: one launch each.
    let pods: Vec<Pod> = (0..3)
        .map(|i| pod(&format!("p{i}"), 30_000, GI).build())
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let l = k.provision(0, &snap, &refs);
    let names = bring_up(&mut k, &mut snap, l, 45_000);
    assert_eq!(names.len(), 3);
    // consolidateAfter is 60 s from Ready.
    assert!(k.poll(100_000, &snap, movable).is_none());
    match k.poll(105_000, &snap, movable) {
        // 10% of 3 nodes rounds up to one node at a time.
        Some(Disruption::Delete(d)) => assert_eq!(d.len(), 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(k.stats.empty_deleted, 1);
}

#[test]
fn an_underused_node_is_deleted_when_its_pods_fit_elsewhere_and_never_with_do_not_disrupt() {
    let mut snap = empty();
    snap.upsert_node(
        node("base", 8000, 32 * GI)
            .on_demand()
            .zone("zone-a")
            .build(),
    );
    let mut k = karpenter(default_pool());
    let p = pod("p", 1000, GI).build();
    let l = k.provision(0, &snap, &[&p]);
    // The base node has room: Karpenter launches nothing for p.
    assert!(l.is_empty());
    // Launch a node for a pod too large for the base node, then put a small pod on it.
    let big = pod("big", 7950, GI).required_terms(off_spot()).build();
    let mut snap2 = snap.clone();
    snap2
        .upsert_pod(Arc::new(pod("filler", 7000, GI).on("base").build()))
        .unwrap();
    let l = k.provision(0, &snap2, &[&big]);
    let names = bring_up(&mut k, &mut snap, l, 45_000);
    let small = pod("small", 500, GI).on(names[0].as_str()).build();
    snap.upsert_pod(Arc::new(small)).unwrap();
    k.pod_changed(names[0], 45_000);
    let keep = |p: &Pod| p.key.name != "small";
    assert!(
        k.poll(200_000, &snap, keep).is_none(),
        "do-not-disrupt blocks it"
    );
    match k.poll(200_000, &snap, movable) {
        Some(Disruption::Delete(d)) => assert_eq!(d, names),
        other => panic!("{other:?}"),
    }
    assert_eq!(k.stats.underutilized_deleted, 1);
}

#[test]
fn an_on_demand_node_is_replaced_by_a_cheaper_one_and_spot_is_not() {
    let mut snap = empty();
    let mut k = karpenter(default_pool());
    let big = pod("big", 30_000, GI).required_terms(off_spot()).build();
    let l = k.provision(0, &snap, &[&big]);
    assert_eq!(launched(&l)[0].1, "m5.8xlarge");
    let names = bring_up(&mut k, &mut snap, l, 45_000);
    // Only a small on-demand pod remains on the big node.
    let small = pod("small", 1000, GI)
        .required_terms(off_spot())
        .on(names[0].as_str())
        .build();
    snap.upsert_pod(Arc::new(small)).unwrap();
    match k.poll(200_000, &snap, movable) {
        Some(Disruption::Replace { old, launch }) => {
            assert_eq!(old, names[0]);
            assert_eq!(launch.capacity.as_str(), ON_DEMAND);
            assert!(launch.price < 1.536, "{}", launch.price);
            // When the replacement is Ready it names the node to delete.
            assert_eq!(k.ready(launch.name, 245_000).0, Some(old));
        }
        other => panic!("{other:?}"),
    }

    // The same on spot: a replacement would be spot-to-spot, which is off by default.
    let mut snap = empty();
    let mut k = karpenter(default_pool());
    let big = pod("big", 30_000, GI).build();
    let l = k.provision(0, &snap, &[&big]);
    let names = bring_up(&mut k, &mut snap, l, 45_000);
    let small = pod("small", 1000, GI).on(names[0].as_str()).build();
    snap.upsert_pod(Arc::new(small)).unwrap();
    assert!(k.poll(200_000, &snap, movable).is_none());
}

#[test]
fn spot_nodes_get_interruption_notices_at_their_rate() {
    let mut k = karpenter(default_pool());
    let mut snap = empty();
    let pods: Vec<Pod> = (0..300)
        .map(|i| pod(&format!("p{i}"), 30_000, GI).build())
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let l = k.provision(0, &snap, &refs);
    assert_eq!(l.len(), 300);
    // The built-in rate (0.05 a month) draws notices; at 730 a month they come after an hour
    // on average.
    let first: Vec<(Sym, u64, u64)> = l
        .iter()
        .map(|l| {
            let (_, notice) = k.ready(l.name, 0);
            let (at, epoch) = notice.expect("spot nodes get a notice time");
            (l.name, at, epoch)
        })
        .collect();
    for l in l {
        snap.upsert_node(l.node);
    }
    let redrawn = k.set_interruption_rate(&[], 730.0, 0);
    assert_eq!(redrawn.len(), 300);
    for (name, _, epoch) in &first {
        assert!(
            !k.interruption_current(*name, *epoch),
            "old notices no longer hold"
        );
    }
    let mean_hours = redrawn.iter().map(|r| r.1 as f64).sum::<f64>() / 300.0 / 3.6e6;
    assert!((mean_hours - 1.0).abs() < 0.2, "{mean_hours}");
    assert!(redrawn
        .iter()
        .all(|(n, _, e)| k.interruption_current(*n, *e)));
    // Rate 0: no notice at all.
    assert!(k.set_interruption_rate(&[], 0.0, 0).is_empty());
    // On-demand nodes never get one, whatever the rate.
    k.set_interruption_rate(&[], 730.0, 0);
    let od = pod("od", 1000, GI).required_terms(off_spot()).build();
    let l = k.provision(1, &snap, &[&od]);
    assert_eq!(k.ready(l[0].name, 1).1, None);
}
