use super::*;
use crate::testkit::*;

fn snap() -> Snapshot {
    Snapshot::new(CapacityRules::default())
}

#[test]
fn pod_add_remove_updates_usage_and_indices() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    s.upsert_pod(pod("a", 1000, GI).label("app", "x").on("n1").arc())
        .unwrap();
    s.upsert_pod(pod("b", 0, 0).label("app", "x").on("n1").arc())
        .unwrap();
    let t = s.nodes();
    assert_eq!(t.req_cpu[n as usize], 1000);
    assert_eq!(t.pod_count[n as usize], 2);
    // Zero requests count as 100m / 200Mi for scoring only.
    assert_eq!(t.nonzero_cpu[n as usize], 1100);
    let ns = Sym::new("default");
    assert_eq!(
        s.pods_with_label(ns, Sym::new("app"), Sym::new("x"))
            .unwrap()
            .len(),
        2
    );
    assert!(s.remove_pod(&PodKey::new("default", "a")));
    assert_eq!(s.nodes().req_cpu[n as usize], 0);
    assert_eq!(s.pod_ids_on(n).len(), 1);
    assert_eq!(
        s.pods_with_label(ns, Sym::new("app"), Sym::new("x"))
            .unwrap()
            .len(),
        1
    );
    assert!(!s.remove_pod(&PodKey::new("default", "a")));
}

#[test]
fn update_replaces_instead_of_double_counting() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    s.upsert_pod(pod("a", 1000, GI).on("n1").arc()).unwrap();
    s.upsert_pod(pod("a", 1500, GI).on("n1").arc()).unwrap();
    assert_eq!(s.nodes().req_cpu[n as usize], 1500);
    assert_eq!(s.pod_count(), 1);
}

#[test]
fn assume_and_forget() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    let p = pod("a", 1000, GI).arc();
    s.assume(p.clone(), n).unwrap();
    assert!(s.pod_by_key(&p.key).unwrap().assumed);
    assert_eq!(s.nodes().req_cpu[n as usize], 1000);
    assert!(s.forget(&p.key));
    assert_eq!(s.nodes().req_cpu[n as usize], 0);
    // Once confirmed by the API, forget leaves it alone.
    s.assume(p.clone(), n).unwrap();
    s.upsert_pod(pod("a", 1000, GI).on("n1").arc()).unwrap();
    assert!(!s.forget(&p.key));
    assert_eq!(s.nodes().req_cpu[n as usize], 1000);
}

#[test]
fn pods_before_their_node_are_kept() {
    let mut s = snap();
    s.upsert_pod(pod("a", 1000, GI).on("late").arc()).unwrap();
    let n = s.upsert_node(node("late", 4000, 8 * GI).build());
    assert_eq!(s.nodes().req_cpu[n as usize], 1000);
    // Removing and re-adding the node keeps its bound pods accounted.
    assert!(s.remove_node(Sym::new("late")));
    assert_eq!(s.pod_count(), 0);
    let n2 = s.upsert_node(node("late", 4000, 8 * GI).build());
    assert_eq!(s.nodes().req_cpu[n2 as usize], 1000);
}

#[test]
fn node_slots_are_reused() {
    let mut s = snap();
    let a = s.upsert_node(node("a", 1000, GI).build());
    s.upsert_node(node("b", 1000, GI).build());
    s.remove_node(Sym::new("a"));
    assert_eq!(s.nodes().len(), 1);
    let c = s.upsert_node(node("c", 2000, GI).build());
    assert_eq!(a, c);
    assert_eq!(s.nodes().alloc_cpu[c as usize], 2000);
    assert_eq!(s.nodes().req_cpu[c as usize], 0);
    assert_eq!(s.nodes().live_indices().count(), 2);
}

#[test]
fn app_counts_by_capacity_type() {
    let mut s = snap();
    s.upsert_node(node("spot1", 8000, 32 * GI).spot().build());
    s.upsert_node(node("od1", 8000, 32 * GI).on_demand().build());
    s.upsert_pod(pod("d", 1000, GI).driver("app1").on("od1").arc())
        .unwrap();
    for i in 0..3 {
        s.upsert_pod(
            pod(&format!("e{i}"), 1000, GI)
                .executor("app1")
                .on("spot1")
                .arc(),
        )
        .unwrap();
    }
    s.upsert_pod(pod("e9", 1000, GI).executor("app1").on("od1").arc())
        .unwrap();
    let app = s.app(Sym::new("app1")).unwrap();
    assert_eq!(app.executors_of_type(Sym::new("spot")), 3);
    assert_eq!(app.executors_of_type(Sym::new("on-demand")), 1);
    assert!(app.driver.is_some());
    // A spot node relabelled on-demand moves its executors' counts.
    s.upsert_node(node("spot1", 8000, 32 * GI).on_demand().build());
    let app = s.app(Sym::new("app1")).unwrap();
    assert_eq!(app.executors_of_type(Sym::new("spot")), 0);
    assert_eq!(app.executors_of_type(Sym::new("on-demand")), 4);
    // A terminating executor no longer counts toward the mix.
    s.upsert_pod(
        pod("e0", 1000, GI)
            .executor("app1")
            .on("spot1")
            .terminating()
            .arc(),
    )
    .unwrap();
    assert_eq!(
        s.app(Sym::new("app1"))
            .unwrap()
            .executors_of_type(Sym::new("on-demand")),
        3
    );
    assert!(s.remove_node(Sym::new("spot1")));
    assert_eq!(
        s.app(Sym::new("app1"))
            .unwrap()
            .executors_of_type(Sym::new("on-demand")),
        1
    );
}

#[test]
fn finished_pods_release_resources() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    s.upsert_pod(pod("a", 1000, GI).on("n1").arc()).unwrap();
    let mut done = pod("a", 1000, GI).on("n1").build();
    done.finished = true;
    s.upsert_pod(Arc::new(done)).unwrap();
    assert_eq!(s.nodes().req_cpu[n as usize], 0);
    assert_eq!(s.pod_count(), 0);
}

#[test]
fn nominations_follow_pods_and_nodes() {
    let mut s = snap();
    let n = s.upsert_node(node("n1", 4000, 8 * GI).build());
    let p = pod("hi", 1000, GI).priority(10).arc();
    s.nominate(p.clone(), n);
    assert_eq!(s.nominated_on(n).count(), 1);
    s.remove_pod(&p.key);
    assert_eq!(s.nominated_on(n).count(), 0);
    s.nominate(p.clone(), n);
    s.remove_node(Sym::new("n1"));
    assert!(!s.has_nominations());
}

#[test]
fn unbound_pod_is_rejected() {
    let mut s = snap();
    assert!(matches!(
        s.upsert_pod(pod("a", 1, 1).arc()),
        Err(SnapshotError::NotBound(_))
    ));
}

#[test]
fn pdbs_upsert_replace_remove() {
    use crate::preemption::Pdb;
    let mut s = snap();
    s.upsert_pdb(Pdb::new("ns", "a", selector(&[("app", "x")]), 1));
    s.upsert_pdb(Pdb::new("ns", "a", selector(&[("app", "x")]), 3));
    s.upsert_pdb(Pdb::new("other", "a", selector(&[("app", "x")]), 0));
    assert_eq!(s.pdbs().len(), 2);
    assert_eq!(s.pdbs()[0].disruptions_allowed, 3);
    assert!(s.remove_pdb(Sym::new("ns"), "a"));
    assert!(!s.remove_pdb(Sym::new("ns"), "a"));
    assert_eq!(s.pdbs().len(), 1);
}

#[test]
fn name_ranks_follow_additions_and_removals() {
    let mut s = Snapshot::new(CapacityRules::default());
    for n in ["c", "a", "d", "b"] {
        s.upsert_node(node(n, 1000, GI).build());
    }
    s.remove_node(Sym::new("a"));
    s.upsert_node(node("e", 1000, GI).build());
    let t = s.nodes();
    let mut by_rank: Vec<(u32, &str)> = t
        .live_indices()
        .map(|i| (t.name_rank[i as usize], t.name_str[i as usize]))
        .collect();
    by_rank.sort();
    assert_eq!(by_rank, vec![(0, "b"), (1, "c"), (2, "d"), (3, "e")]);
}
