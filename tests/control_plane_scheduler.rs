//! What the live scheduler promises, on a real kube-apiserver and etcd: binding, the
//! PodScheduled condition with upstream's message, events in both events APIs, the
//! lease and failover, preemption (DisruptionTarget, nominatedNodeName), PriorityClasses,
//! PodDisruptionBudgets, partitioning, gated and invalid pods, the shipped profile on a
//! Spark application. Needs `KUBEBUILDER_ASSETS` (see README); without it each test
//! says so and passes.

#[path = "support/cluster.rs"]
mod cluster;

use cluster::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use spark_fleet::config::Config;
use spark_fleet::kube::Scheduler;
use spark_fleet::testkit::control_plane::{
    add_node, create_namespace, delete_pod_now, node, start_or_skip, ControlPlane,
};
use std::time::Duration;

/// A control plane with namespace `spark` (or None: the test does not run).
async fn cluster(test: &str) -> Option<(ControlPlane, Client)> {
    let cp = start_or_skip(test).await?;
    let client = cp.client();
    create_namespace(&client, "spark").await.unwrap();
    Some((cp, client))
}

async fn create_pod(client: &Client, p: &Pod) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap());
    api.create(&PostParams::default(), p).await.unwrap()
}

/// PriorityClasses `low` (0) and `high` (1000). The server's Priority admission sets
/// `spec.priority` from a pod's class and refuses a pod that sets another value itself.
async fn priority_classes(client: &Client) {
    for (name, value) in [("low", 0), ("high", 1000)] {
        let pc: PriorityClass = serde_json::from_value(json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value,
        }))
        .unwrap();
        Api::<PriorityClass>::all(client.clone())
            .create(&PostParams::default(), &pc)
            .await
            .unwrap();
    }
}

fn classed(mut p: Pod, class: &str) -> Pod {
    p.spec.as_mut().unwrap().priority_class_name = Some(class.into());
    p
}

fn spark(name: &str, cpu: &str) -> Pod {
    pod("spark", name, "spark-fleet", cpu, "1Gi")
}

async fn get_pod(client: &Client, name: &str) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), "spark");
    api.get(name).await.unwrap()
}

async fn wait_reported(client: &Client, name: &str) -> Pod {
    wait_pod(client, "spark", name, "PodScheduled condition", |p| {
        condition(p, "PodScheduled").is_some()
    })
    .await
}

/// core/v1 events about pod `spark/name` with `reason` (what `kubectl describe pod` shows).
async fn core_events(client: &Client, name: &str, reason: &str) -> Vec<CoreEvent> {
    let api: Api<CoreEvent> = Api::namespaced(client.clone(), "spark");
    let lp = ListParams::default().fields(&format!("involvedObject.name={name},reason={reason}"));
    api.list(&lp).await.unwrap().items
}

fn with_selector(mut p: Pod, key: &str, value: &str) -> Pod {
    p.spec.as_mut().unwrap().node_selector = Some([(key.to_owned(), value.to_owned())].into());
    p
}

fn with_host_port(mut p: Pod, port: i32) -> Pod {
    p.spec.as_mut().unwrap().containers[0].ports = Some(vec![serde_json::from_value(
        json!({"containerPort": port, "hostPort": port}),
    )
    .unwrap()]);
    p
}

async fn metric(s: &Scheduler, name: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(s.metrics_addr())
        .await
        .unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| l.starts_with(name))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn pending_pods_are_bound_and_reported_in_both_event_apis() {
    let Some((_cp, client)) =
        cluster("pending_pods_are_bound_and_reported_in_both_event_apis").await
    else {
        return;
    };
    add_node(&client, &node("n1", "8", "32Gi", 110, &[]))
        .await
        .unwrap();
    add_node(&client, &node("n2", "8", "32Gi", 110, &[]))
        .await
        .unwrap();
    let s = started(&client, config()).await;
    for i in 0..6 {
        create_pod(&client, &spark(&format!("p{i}"), "1")).await;
    }
    for i in 0..6 {
        let name = format!("p{i}");
        let n = wait_bound(&client, "spark", &name).await;
        assert!(n == "n1" || n == "n2");
        let c = wait_pod(&client, "spark", &name, "PodScheduled=True", |p| {
            condition(p, "PodScheduled").is_some()
        })
        .await;
        assert_eq!(condition(&c, "PodScheduled").unwrap().status, "True");
    }
    let node0 = node_name(&get_pod(&client, "p0").await).unwrap();
    let ev = wait_event(&client, "spark", "p0", "Scheduled").await;
    assert_eq!(
        ev["note"],
        format!("Successfully assigned spark/p0 to {node0}")
    );
    assert_eq!(ev["reportingController"], "spark-fleet");
    assert_eq!(ev["type"], "Normal");
    // The same event through core/v1, as kubectl describe shows it.
    let core = core_events(&client, "p0", "Scheduled").await;
    assert_eq!(core.len(), 1, "{core:?}");
    assert_eq!(
        core[0].message.as_deref(),
        Some(format!("Successfully assigned spark/p0 to {node0}").as_str())
    );
    assert_eq!(core[0].reporting_component.as_deref(), Some("spark-fleet"));
    wait_until("binds counted", || s.binds() == 6).await;
    // The metrics registry is process-wide: other tests' bindings count there too.
    let scheduled = metric(
        &s,
        "spark_fleet_schedule_attempts_total{result=\"scheduled\"}",
    )
    .await;
    assert!(!scheduled.is_empty(), "no scheduled-attempts metric");
    s.shutdown().await;
}

#[tokio::test]
async fn an_unplaceable_pod_gets_upstreams_message_once_per_message() {
    let Some((_cp, client)) =
        cluster("an_unplaceable_pod_gets_upstreams_message_once_per_message").await
    else {
        return;
    };
    add_node(&client, &node("n1", "8", "32Gi", 110, &[]))
        .await
        .unwrap();
    add_node(&client, &node("n2", "8", "32Gi", 110, &[]))
        .await
        .unwrap();
    let s = started(&client, config()).await;
    create_pod(&client, &with_selector(spark("picky", "1"), "disk", "ssd")).await;
    let want = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.";
    let got = wait_reported(&client, "picky").await;
    let c = condition(&got, "PodScheduled").unwrap().clone();
    assert_eq!(c.status, "False");
    assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(c.message.as_deref(), Some(want));
    let ev = wait_event(&client, "spark", "picky", "FailedScheduling").await;
    assert_eq!(ev["note"], want);
    assert_eq!(ev["type"], "Warning");
    let core = core_events(&client, "picky", "FailedScheduling").await;
    assert_eq!(core.len(), 1);
    assert_eq!(core[0].type_.as_deref(), Some("Warning"));

    // A node change retries the pod; the same answer is not reported again.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"zone": "a"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let evs = events(&client, "spark", "picky", "FailedScheduling").await;
    assert_eq!(evs.len(), 1);
    assert!(evs[0]["series"].is_null(), "reported again: {}", evs[0]);

    // A new answer is; the condition keeps its lastTransitionTime.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    add_node(&client, &node("n3", "8", "32Gi", 110, &[]))
        .await
        .unwrap();
    let want3 = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.";
    let got3 = wait_pod(&client, "spark", "picky", "message updated", |p| {
        condition(p, "PodScheduled").and_then(|c| c.message.as_deref()) == Some(want3)
    })
    .await;
    assert_eq!(
        condition(&got3, "PodScheduled")
            .unwrap()
            .last_transition_time,
        c.last_transition_time
    );
    add_node(&client, &node("n4", "8", "32Gi", 110, &[("disk", "ssd")]))
        .await
        .unwrap();
    assert_eq!(wait_bound(&client, "spark", "picky").await, "n4");
    s.shutdown().await;
}

/// The real server refuses to bind a gated pod; upstream does not try (nor report it)
/// until the gates are removed.
#[tokio::test]
async fn gated_pods_wait_for_their_gates() {
    let Some((_cp, client)) = cluster("gated_pods_wait_for_their_gates").await else {
        return;
    };
    add_node(&client, &node("n1", "8", "32Gi", 110, &[]))
        .await
        .unwrap();
    let s = started(&client, config()).await;
    let mut p = spark("gated", "1");
    p.spec.as_mut().unwrap().scheduling_gates = Some(vec![serde_json::from_value(
        json!({"name": "example.com/wait"}),
    )
    .unwrap()]);
    create_pod(&client, &p).await;
    create_pod(&client, &spark("free", "1")).await;
    wait_bound(&client, "spark", "free").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gated = get_pod(&client, "gated").await;
    assert_eq!(node_name(&gated), None);
    assert!(!s.is_queued("spark", "gated"));
    // The server's own SchedulingGated condition, nothing of ours.
    let c = condition(&gated, "PodScheduled").unwrap();
    assert_eq!(c.reason.as_deref(), Some("SchedulingGated"));
    assert!(events(&client, "spark", "gated", "FailedScheduling")
        .await
        .is_empty());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "spark");
    pods.patch(
        "gated",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"schedulingGates": null}})),
    )
    .await
    .unwrap();
    assert_eq!(wait_bound(&client, "spark", "gated").await, "n1");
    s.shutdown().await;
}

/// The real server refuses an events.k8s.io/v1 note over 1024 bytes (422): a message
/// listing many distinct taints is longer; the condition keeps it whole.
#[tokio::test]
async fn a_long_failure_message_is_truncated_in_the_event_only() {
    let Some((_cp, client)) =
        cluster("a_long_failure_message_is_truncated_in_the_event_only").await
    else {
        return;
    };
    let nodes = 24;
    for i in 0..nodes {
        let mut n = node(&format!("n{i:02}"), "8", "32Gi", 110, &[]);
        n.spec = Some(
            serde_json::from_value(json!({ "taints": [{
                "key": format!("teams.example.com/dedicated-to-team-{i:02}"),
                "value": format!("reserved-for-the-analytics-team-number-{i:02}"),
                "effect": "NoSchedule",
            }] }))
            .unwrap(),
        );
        add_node(&client, &n).await.unwrap();
    }
    let s = started(&client, config()).await;
    create_pod(&client, &spark("tainted-out", "1")).await;
    let got = wait_reported(&client, "tainted-out").await;
    let full = condition(&got, "PodScheduled")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(full.len() > 1024, "{}", full.len());
    let ev = wait_event(&client, "spark", "tainted-out", "FailedScheduling").await;
    let note = ev["note"].as_str().unwrap();
    assert!(note.len() <= 1024 && note.ends_with(" ..."), "{note}");
    assert!(
        note.starts_with(&format!("0/{nodes} nodes are available: ")),
        "{note}"
    );
    s.shutdown().await;
}

/// A pod the API server accepts but whose Spark annotation is invalid: reported with
/// the reason, never bound, never silently dropped.
#[tokio::test]
async fn an_invalid_spark_annotation_is_reported() {
    let Some((_cp, client)) = cluster("an_invalid_spark_annotation_is_reported").await else {
        return;
    };
    add_node(
        &client,
        &node(
            "od1",
            "8",
            "32Gi",
            110,
            &[("karpenter.sh/capacity-type", "on-demand")],
        ),
    )
    .await
    .unwrap();
    let s = started(&client, fast(Config::default())).await;
    let mut d = spark_pod("spark", "driver", "driver", "app-bad", "1");
    d.metadata.annotations = Some(
        [(
            "spark-fleet.io/executor-capacity-mix".to_owned(),
            "spot=forty".to_owned(),
        )]
        .into(),
    );
    create_pod(&client, &d).await;
    let got = wait_reported(&client, "driver").await;
    let c = condition(&got, "PodScheduled").unwrap();
    assert_eq!(c.status, "False");
    let msg = c.message.clone().unwrap();
    assert!(msg.contains("spot=forty"), "{msg}");
    let ev = wait_event(&client, "spark", "driver", "FailedScheduling").await;
    assert!(ev["note"].as_str().unwrap().contains("spot=forty"), "{ev}");
    assert_eq!(node_name(&got), None);
    s.shutdown().await;
}

/// Pods of other schedulers are not ours to bind or report, but what they hold on
/// their nodes counts (CPU, host ports).
#[tokio::test]
async fn other_schedulers_pods_are_ignored_but_counted() {
    let Some((_cp, client)) = cluster("other_schedulers_pods_are_ignored_but_counted").await else {
        return;
    };
    add_node(
        &client,
        &node("n1", "4", "32Gi", 110, &[("kubernetes.io/hostname", "n1")]),
    )
    .await
    .unwrap();
    add_node(
        &client,
        &node("n2", "4", "32Gi", 110, &[("kubernetes.io/hostname", "n2")]),
    )
    .await
    .unwrap();
    let mut foreign = with_host_port(
        pod("spark", "foreign", "default-scheduler", "3", "1Gi"),
        7077,
    );
    foreign.spec.as_mut().unwrap().node_name = Some("n1".into());
    create_pod(&client, &foreign).await;
    create_pod(
        &client,
        &pod("spark", "theirs", "default-scheduler", "1", "1Gi"),
    )
    .await;
    let s = started(&client, config()).await;
    for i in 0..2 {
        create_pod(
            &client,
            &with_host_port(spark(&format!("mine{i}"), "1"), 7077),
        )
        .await;
    }
    let first = wait_pod(&client, "spark", "mine0", "bound or reported", |p| {
        node_name(p).is_some() || condition(p, "PodScheduled").is_some()
    })
    .await;
    let second = wait_reported(&client, "mine1").await;
    let placed: Vec<Option<String>> = vec![node_name(&first), node_name(&second)];
    assert!(
        placed.contains(&Some("n2".into())) && placed.contains(&None),
        "one on n2, one unplaceable: {placed:?}"
    );
    // 1 CPU left on n1: a 2-CPU pod pinned there does not fit.
    create_pod(
        &client,
        &with_selector(spark("big", "2"), "kubernetes.io/hostname", "n1"),
    )
    .await;
    let big = wait_reported(&client, "big").await;
    let msg = condition(&big, "PodScheduled")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(msg.contains("1 Insufficient cpu"), "{msg}");
    let theirs = get_pod(&client, "theirs").await;
    assert_eq!(node_name(&theirs), None);
    assert!(condition(&theirs, "PodScheduled").is_none());
    assert!(!s.is_queued("spark", "theirs"));
    s.shutdown().await;
}

#[tokio::test]
async fn partitions_split_the_pods_between_instances() {
    let Some((_cp, client)) = cluster("partitions_split_the_pods_between_instances").await else {
        return;
    };
    create_namespace(&client, "other").await.unwrap();
    add_node(&client, &node("n1", "64", "256Gi", 110, &[]))
        .await
        .unwrap();
    let mut ca = config();
    ca.partition.namespaces = vec!["spark".into()];
    ca.partition.pod_selector = Some("shard=a".into());
    let mut cb = config();
    cb.partition.pod_selector = Some("shard!=a".into());
    let a = started(&client, ca).await;
    let b = started(&client, cb).await;
    let labelled = |name: &str, ns: &str, shard: &str| {
        let mut p = pod(ns, name, "spark-fleet", "1", "1Gi");
        p.metadata.labels = Some([("shard".to_owned(), shard.to_owned())].into());
        p
    };
    for i in 0..3 {
        create_pod(&client, &labelled(&format!("a{i}"), "spark", "a")).await;
        create_pod(&client, &labelled(&format!("b{i}"), "spark", "b")).await;
    }
    // In shard a's selector but outside its namespaces, and not b's: nobody's.
    create_pod(&client, &labelled("orphan", "other", "a")).await;
    for i in 0..3 {
        wait_bound(&client, "spark", &format!("a{i}")).await;
        wait_bound(&client, "spark", &format!("b{i}")).await;
    }
    wait_until("binds counted", || a.binds() == 3 && b.binds() == 3).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "other");
    assert_eq!(node_name(&pods.get("orphan").await.unwrap()), None);
    assert!(!a.is_queued("other", "orphan") && !b.is_queued("other", "orphan"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn only_the_leader_binds_and_a_standby_takes_over() {
    let Some((_cp, client)) = cluster("only_the_leader_binds_and_a_standby_takes_over").await
    else {
        return;
    };
    add_node(&client, &node("n1", "64", "256Gi", 110, &[]))
        .await
        .unwrap();
    let start =
        |id: &str| Scheduler::start_as(client.clone(), with_leader_election(config()), id.into());
    let a = within("start a", start("a")).await.unwrap();
    wait_until("a leads", || a.is_leader()).await;
    let b = within("start b", start("b")).await.unwrap();
    wait_until("b synced", || b.is_ready()).await;
    for i in 0..8 {
        create_pod(&client, &spark(&format!("p{i}"), "1")).await;
    }
    for i in 0..8 {
        wait_bound(&client, "spark", &format!("p{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.is_leader() && !b.is_leader());
    wait_until("a counted its binds", || a.binds() == 8).await;
    assert_eq!(b.binds(), 0);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let held = |l: Lease| l.spec.unwrap().holder_identity;
    assert_eq!(
        held(leases.get("spark-fleet").await.unwrap()).as_deref(),
        Some("a")
    );

    // a leaves and releases the lease: b takes over well before it would expire.
    a.shutdown().await;
    assert_eq!(held(leases.get("spark-fleet").await.unwrap()), None);
    wait_until("b leads", || b.is_leader()).await;
    create_pod(&client, &spark("late", "1")).await;
    wait_bound(&client, "spark", "late").await;
    wait_until("b counted its bind", || b.binds() == 1).await;

    // b dies without releasing (its tasks aborted): c takes over once the 3 s lease expires.
    let c = within("start c", start("c")).await.unwrap();
    wait_until("c synced", || c.is_ready()).await;
    drop(b);
    create_pod(&client, &spark("after-crash", "1")).await;
    wait_bound(&client, "spark", "after-crash").await;
    assert!(c.is_leader());
    assert_eq!(
        held(leases.get("spark-fleet").await.unwrap()).as_deref(),
        Some("c")
    );
    c.shutdown().await;
}

/// PriorityClasses (resolved by the server's Priority admission), DefaultPreemption:
/// the victim is marked DisruptionTarget and deleted, the preemptor nominated; once the
/// "kubelet" finishes the victim, the preemptor is bound there.
#[tokio::test]
async fn preemption_marks_and_deletes_the_victim_and_nominates_the_preemptor() {
    let Some((_cp, client)) =
        cluster("preemption_marks_and_deletes_the_victim_and_nominates_the_preemptor").await
    else {
        return;
    };
    add_node(&client, &node("n1", "4", "32Gi", 110, &[]))
        .await
        .unwrap();
    priority_classes(&client).await;
    let s = started(&client, with_plugin(config(), "DefaultPreemption", 0)).await;
    let low = create_pod(&client, &classed(spark("low", "3"), "low")).await;
    assert_eq!(low.spec.as_ref().unwrap().priority, Some(0));
    wait_bound(&client, "spark", "low").await;
    let high = create_pod(&client, &classed(spark("high", "3"), "high")).await;
    assert_eq!(high.spec.as_ref().unwrap().priority, Some(1000));
    let v = wait_pod(&client, "spark", "low", "victim deleted gracefully", |p| {
        p.metadata.deletion_timestamp.is_some()
    })
    .await;
    let c = condition(&v, "DisruptionTarget").expect("DisruptionTarget condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("True", Some("PreemptionByScheduler"))
    );
    let p = wait_pod(&client, "spark", "high", "nominated to n1", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            == Some("n1")
    })
    .await;
    assert_eq!(node_name(&p), None, "waits for the victim to leave");
    let preempted = wait_event(&client, "spark", "low", "Preempted").await;
    assert!(
        preempted["note"].as_str().unwrap().ends_with("on node n1"),
        "{preempted}"
    );
    wait_event(&client, "spark", "high", "Nominated").await;
    // No kubelet runs: finish the victim as one would.
    delete_pod_now(&client, "spark", "low").await.unwrap();
    assert_eq!(wait_bound(&client, "spark", "high").await, "n1");
    s.shutdown().await;
}

/// A victim protected by a PodDisruptionBudget with no disruption left is spared when
/// another node's victim will do, as upstream.
#[tokio::test]
async fn preemption_spares_pods_a_disruption_budget_protects() {
    let Some((_cp, client)) = cluster("preemption_spares_pods_a_disruption_budget_protects").await
    else {
        return;
    };
    add_node(&client, &node("n1", "4", "32Gi", 110, &[]))
        .await
        .unwrap();
    add_node(&client, &node("n2", "4", "32Gi", 110, &[]))
        .await
        .unwrap();
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": "protected", "namespace": "spark" },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "protected" } } },
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::namespaced(client.clone(), "spark")
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
    // No disruption controller runs: its status is written as one would.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "spark");
    pdbs.patch_status(
        "protected",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"disruptionsAllowed": 0, "currentHealthy": 1,
            "desiredHealthy": 1, "expectedPods": 1, "observedGeneration": 1}}),
        ),
    )
    .await
    .unwrap();
    priority_classes(&client).await;
    let s = started(&client, with_plugin(config(), "DefaultPreemption", 0)).await;
    wait_until("budget in the snapshot", || {
        s.with_snapshot(|snap| snap.pdbs().len() == 1)
    })
    .await;
    let mut protected = spark("protected", "3");
    protected.metadata.labels = Some([("app".to_owned(), "protected".to_owned())].into());
    protected.spec.as_mut().unwrap().node_name = Some("n1".into());

    let mut plain = spark("plain", "3");
    plain.spec.as_mut().unwrap().node_name = Some("n2".into());

    create_pod(&client, &classed(protected, "low")).await;
    create_pod(&client, &classed(plain, "low")).await;
    create_pod(&client, &classed(spark("high", "3"), "high")).await;
    wait_pod(
        &client,
        "spark",
        "plain",
        "unprotected victim deleted",
        |p| p.metadata.deletion_timestamp.is_some(),
    )
    .await;
    let protected = get_pod(&client, "protected").await;
    assert!(protected.metadata.deletion_timestamp.is_none());
    assert!(condition(&protected, "DisruptionTarget").is_none());
    delete_pod_now(&client, "spark", "plain").await.unwrap();
    assert_eq!(wait_bound(&client, "spark", "high").await, "n2");
    s.shutdown().await;
}

/// A pod nominated by an earlier preemption that preemption can no longer help loses its
/// nomination, in status.nominatedNodeName too (as upstream).
#[tokio::test]
async fn a_hopeless_preemptor_loses_its_nomination() {
    let Some((_cp, client)) = cluster("a_hopeless_preemptor_loses_its_nomination").await else {
        return;
    };
    add_node(&client, &node("n1", "4", "32Gi", 110, &[]))
        .await
        .unwrap();
    priority_classes(&client).await;
    create_pod(&client, &classed(spark("hopeless", "8"), "high")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "spark");
    pods.patch_status(
        "hopeless",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"nominatedNodeName": "n1"}})),
    )
    .await
    .unwrap();
    let s = started(&client, with_plugin(config(), "DefaultPreemption", 0)).await;
    let got = wait_pod(
        &client,
        "spark",
        "hopeless",
        "nomination cleared and reported",
        |p| {
            condition(p, "PodScheduled").is_some()
                && p.status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_ref())
                    .is_none()
        },
    )
    .await;
    assert_eq!(
        condition(&got, "PodScheduled").unwrap().reason.as_deref(),
        Some("Unschedulable")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_capacity_fallback_is_reported() {
    let Some((_cp, client)) = cluster("a_capacity_fallback_is_reported").await else {
        return;
    };
    let mut spot = node(
        "spot1",
        "8",
        "32Gi",
        110,
        &[("karpenter.sh/capacity-type", "spot")],
    );
    spot.spec = Some(
        serde_json::from_value(
            json!({"taints": [{"key": "spot", "value": "x", "effect": "NoSchedule"}]}),
        )
        .unwrap(),
    );
    add_node(&client, &spot).await.unwrap();
    add_node(
        &client,
        &node(
            "od1",
            "8",
            "32Gi",
            110,
            &[("karpenter.sh/capacity-type", "on-demand")],
        ),
    )
    .await
    .unwrap();
    let mut c = with_plugin(config(), "CapacityMix", 10);
    c.spark.executor_capacity_mix = Some("spot=100".into());
    let s = started(&client, c).await;
    create_pod(
        &client,
        &spark_pod("spark", "exec-1", "executor", "app-1", "1"),
    )
    .await;
    assert_eq!(wait_bound(&client, "spark", "exec-1").await, "od1");
    let ev = wait_event(&client, "spark", "exec-1", "CapacityFallback").await;
    let note = ev["note"].as_str().unwrap();
    assert!(
        note.contains("on-demand") && note.contains("spot"),
        "{note}"
    );
    let fallbacks = metric(&s, "spark_fleet_capacity_fallbacks_total").await;
    assert!(
        !fallbacks.is_empty() && !fallbacks.ends_with(" 0"),
        "{fallbacks}"
    );
    s.shutdown().await;
}

/// A Spark application under the shipped configuration and profile: the driver on
/// on-demand, 8 ± 1 of 20 executors on spot for a 40/60 mix.
#[tokio::test]
async fn the_shipped_profile_places_a_spark_application() {
    let Some((_cp, client)) = cluster("the_shipped_profile_places_a_spark_application").await
    else {
        return;
    };
    for (i, (ct, zone)) in [
        ("on-demand", "a"),
        ("on-demand", "b"),
        ("spot", "a"),
        ("spot", "b"),
    ]
    .iter()
    .enumerate()
    {
        let labels = [
            ("karpenter.sh/capacity-type", *ct),
            ("topology.kubernetes.io/zone", *zone),
        ];
        add_node(
            &client,
            &node(&format!("n{i}-{ct}"), "32", "128Gi", 110, &labels),
        )
        .await
        .unwrap();
    }
    let s = started(&client, fast(Config::default())).await;
    let mut driver = spark_pod("spark", "driver", "driver", "app-1", "1");
    driver.metadata.annotations = Some(
        [(
            "spark-fleet.io/executor-capacity-mix".to_owned(),
            "spot=40,on-demand=60".to_owned(),
        )]
        .into(),
    );
    create_pod(&client, &driver).await;
    let at = wait_bound(&client, "spark", "driver").await;
    assert!(at.contains("on-demand"), "driver on {at}");
    for i in 0..20 {
        create_pod(
            &client,
            &spark_pod("spark", &format!("exec-{i}"), "executor", "app-1", "1"),
        )
        .await;
    }
    let mut spot = 0;
    for i in 0..20 {
        if wait_bound(&client, "spark", &format!("exec-{i}"))
            .await
            .contains("spot")
        {
            spot += 1;
        }
    }
    assert!((7..=9).contains(&spot), "{spot} of 20 executors on spot");
    s.shutdown().await;
}

/// A Filter that fails with an error (not a rejection), e.g. a backend it needs is down.
struct Broken;

impl spark_fleet::framework::Plugin for Broken {
    fn name(&self) -> &'static str {
        "Broken"
    }
}

impl spark_fleet::framework::FilterPlugin for Broken {
    fn filter(
        &self,
        _state: &spark_fleet::framework::CycleState,
        _pod: &spark_fleet::model::Pod,
        _snap: &spark_fleet::snapshot::Snapshot,
        _node: spark_fleet::snapshot::NodeIdx,
    ) -> spark_fleet::framework::Status {
        spark_fleet::framework::Status::error("Broken", "backend unavailable")
    }
}

/// A scheduling error is reported with reason SchedulerError, not Unschedulable (which
/// cluster autoscalers act on), as upstream's handleSchedulingFailure does.
#[tokio::test]
async fn a_scheduling_error_is_reported_as_scheduler_error() {
    let Some((_cp, client)) = cluster("a_scheduling_error_is_reported_as_scheduler_error").await
    else {
        return;
    };
    add_node(&client, &node("n1", "8", "32Gi", 110, &[]))
        .await
        .unwrap();
    let c = config();
    let mut profile = spark_fleet::plugins::build_named_profile(&c, &c.default_profile).unwrap();
    profile.filter.push(std::sync::Arc::new(Broken));
    let s = within(
        "start",
        Scheduler::start_with(client.clone(), c, profile, "me".into()),
    )
    .await
    .unwrap();
    wait_until("synced", || s.is_ready()).await;
    create_pod(&client, &spark("p", "1")).await;
    let got = wait_reported(&client, "p").await;
    let c = condition(&got, "PodScheduled").unwrap();
    assert_eq!(c.status, "False");
    assert_eq!(c.reason.as_deref(), Some("SchedulerError"));
    assert!(
        c.message
            .as_deref()
            .is_some_and(|m| m.contains("backend unavailable")),
        "{c:?}"
    );
    s.shutdown().await;
}
