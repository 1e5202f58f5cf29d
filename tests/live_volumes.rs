//! Volume scheduling in the live scheduler, against the in-repo test API
//! server through the real kube client, with a stand-in PV controller and
//! provisioner (`support::volume_controller`): the selected-node handshake for
//! Spark's OnDemand claims, static binding, volume zones, attach limits, and a
//! claim created after its pod.

mod support;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use spark_fleet::config::Config;
use spark_fleet::kube::Scheduler;
use support::apiserver::TestApiServer;
use support::volume_controller::{self, *};

const STEP: Duration = Duration::from_secs(15);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn node_name(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

fn scheduled_message(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .and_then(|c| c.message.clone())
}

async fn wait_bound(server: &TestApiServer, name: &str) -> String {
    let p = server
        .wait_for::<Pod>("spark", name, STEP, |p| node_name(p).is_some())
        .await
        .unwrap_or_else(|| panic!("pod {name} was not bound"));
    node_name(&p).unwrap()
}

/// Waits for the pod's `PodScheduled=False` message to contain `needle`.
async fn wait_reported(server: &TestApiServer, name: &str, needle: &str) -> String {
    let p = server
        .wait_for::<Pod>("spark", name, STEP, |p| {
            scheduled_message(p).is_some_and(|m| m.contains(needle))
        })
        .await
        .unwrap_or_else(|| panic!("pod {name} was not reported with {needle:?}"));
    scheduled_message(&p).unwrap()
}

async fn started(server: &TestApiServer, c: Config) -> Scheduler {
    let s = within("start", Scheduler::start(server.client(), c))
        .await
        .unwrap();
    within("synced", async {
        while !s.is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    s
}

#[tokio::test]
async fn on_demand_claim_created_after_its_pod_is_provisioned_where_the_pod_goes() {
    let server = TestApiServer::start().await;
    server.create(&node_in_zone("node-a", "zone-a")).unwrap();
    server.create(&node_in_zone("node-b", "zone-b")).unwrap();
    server.create(&class("gp3", EBS)).unwrap();
    let s = started(&server, volume_config()).await;
    let (provisioner, counts) = volume_controller::spawn(server.client(), "spark", EBS, false);
    // Spark creates the executor first, its claim right after.
    server
        .create(&executor("exec-1", &["exec-1-pvc-0"], Some("zone-b")))
        .unwrap();
    let msg = within(
        "missing claim reported",
        wait_reported(&server, "exec-1", "not found"),
    )
    .await;
    assert_eq!(
        msg,
        r#"0/2 nodes are available: persistentvolumeclaim "exec-1-pvc-0" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."#
    );
    server.create(&claim("exec-1-pvc-0", "gp3", None)).unwrap();
    let node = within("bound", wait_bound(&server, "exec-1")).await;
    assert_eq!(
        node, "node-b",
        "the preferred zone, where the volume was made"
    );
    let pvc: PersistentVolumeClaim = server.get("spark", "exec-1-pvc-0").unwrap();
    let annotations = pvc.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get(SELECTED_NODE).map(String::as_str),
        Some("node-b")
    );
    let pv_name = pvc.spec.unwrap().volume_name.unwrap();
    let pv: PersistentVolume = server.get("", &pv_name).unwrap();
    let affinity = serde_json::to_value(pv.spec.unwrap().node_affinity).unwrap();
    assert_eq!(
        affinity["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0],
        "zone-b"
    );
    assert_eq!(
        counts.provisioned.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    provisioner.abort();
    s.shutdown().await;
}

#[tokio::test]
async fn a_failed_provisioning_is_reported_and_tried_again() {
    let server = TestApiServer::start().await;
    server.create(&node_in_zone("node-a", "zone-a")).unwrap();
    server.create(&class("gp3", EBS)).unwrap();
    server.create(&claim("exec-2-pvc-0", "gp3", None)).unwrap();
    let s = started(&server, volume_config()).await;
    let (provisioner, counts) = volume_controller::spawn(server.client(), "spark", EBS, true);
    server
        .create(&executor("exec-2", &["exec-2-pvc-0"], None))
        .unwrap();
    let msg = within(
        "PreBind failure reported",
        wait_reported(&server, "exec-2", "PreBind"),
    )
    .await;
    assert_eq!(
        msg,
        r#"running PreBind plugin "VolumeBinding": binding volumes: provisioning failed for PVC "exec-2-pvc-0""#
    );
    let node = within("bound on retry", wait_bound(&server, "exec-2")).await;
    assert_eq!(node, "node-a");
    assert_eq!(counts.refused.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        counts.provisioned.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    provisioner.abort();
    s.shutdown().await;
}

#[tokio::test]
async fn a_static_volume_is_bound_to_the_claim_and_taken_once() {
    let server = TestApiServer::start().await;
    server.create(&node_in_zone("node-a", "zone-a")).unwrap();
    server.create(&node_in_zone("node-b", "zone-b")).unwrap();
    server
        .create(&class("local", "kubernetes.io/no-provisioner"))
        .unwrap();
    server
        .create(&volume("pv-b", "local", "zone-b", None))
        .unwrap();
    server.create(&claim("c1", "local", None)).unwrap();
    server.create(&claim("c2", "local", None)).unwrap();
    let s = started(&server, volume_config()).await;
    let (controller, counts) = volume_controller::spawn(server.client(), "spark", EBS, false);
    server
        .create(&executor("p1", &["c1"], Some("zone-a")))
        .unwrap();
    assert_eq!(
        within("p1 bound", wait_bound(&server, "p1")).await,
        "node-b"
    );
    let pv: PersistentVolume = server.get("", "pv-b").unwrap();
    let claim_ref = pv.spec.unwrap().claim_ref.unwrap();
    assert_eq!(claim_ref.name.as_deref(), Some("c1"));
    assert!(pv
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key("pv.kubernetes.io/bound-by-controller"));
    assert_eq!(
        counts
            .bound_static
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // The only volume is taken: the second claim finds none.
    server.create(&executor("p2", &["c2"], None)).unwrap();
    let msg = within(
        "no volume left",
        wait_reported(&server, "p2", "persistent volumes"),
    )
    .await;
    assert!(
        msg.contains("2 node(s) didn't find available persistent volumes to bind"),
        "{msg}"
    );
    controller.abort();
    s.shutdown().await;
}

#[tokio::test]
async fn a_pod_whose_volume_is_in_zone_b_never_lands_in_zone_a() {
    let server = TestApiServer::start().await;
    for (n, z) in [("a-1", "zone-a"), ("a-2", "zone-a"), ("b-1", "zone-b")] {
        server.create(&node_in_zone(n, z)).unwrap();
    }
    server.create(&class("gp3", EBS)).unwrap();
    server
        .create(&volume("pv-zb", "gp3", "zone-b", Some("data")))
        .unwrap();
    server.create(&claim("data", "gp3", Some("pv-zb"))).unwrap();
    let s = started(&server, volume_config()).await;
    // It prefers zone-a with all its weight; the volume's zone decides.
    server
        .create(&executor("reuser", &["data"], Some("zone-a")))
        .unwrap();
    assert_eq!(within("bound", wait_bound(&server, "reuser")).await, "b-1");
    // Without a zone-b node it waits, with upstream's reason.
    server
        .create(&claim("data2", "gp3", Some("pv-zb2")))
        .unwrap();
    server
        .create(&volume("pv-zb2", "gp3", "zone-b", Some("data2")))
        .unwrap();
    server.delete::<Node>("", "b-1").unwrap();
    server
        .create(&executor("stuck", &["data2"], Some("zone-a")))
        .unwrap();
    let msg = within(
        "affinity conflict",
        wait_reported(&server, "stuck", "affinity conflict"),
    )
    .await;
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 node(s) had volume node affinity conflict. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    s.shutdown().await;
}

#[tokio::test]
async fn the_csi_attach_limit_holds() {
    let server = TestApiServer::start().await;
    server.create(&node_in_zone("full", "zone-a")).unwrap();
    server.create(&node_in_zone("roomy", "zone-a")).unwrap();
    server.create(&csi_node("full", 1)).unwrap();
    server.create(&csi_node("roomy", 1)).unwrap();
    server.create(&class("gp3", EBS)).unwrap();
    for c in ["held", "wanted"] {
        let pv = format!("pv-{c}");
        server
            .create(&volume(&pv, "gp3", "zone-a", Some(c)))
            .unwrap();
        server.create(&claim(c, "gp3", Some(&pv))).unwrap();
    }
    // "full" already attaches one EBS volume: its limit.
    let mut holder = executor("holder", &["held"], None);
    holder.spec.as_mut().unwrap().node_name = Some("full".into());
    server.create(&holder).unwrap();
    let s = started(&server, volume_config()).await;
    server
        .create(&executor("newcomer", &["wanted"], None))
        .unwrap();
    assert_eq!(
        within("bound", wait_bound(&server, "newcomer")).await,
        "roomy"
    );
    // Now both nodes are at their limit.
    server
        .create(&claim("third", "gp3", Some("pv-third")))
        .unwrap();
    server
        .create(&volume("pv-third", "gp3", "zone-a", Some("third")))
        .unwrap();
    server.create(&executor("late", &["third"], None)).unwrap();
    let msg = within(
        "limit reported",
        wait_reported(&server, "late", "max volume count"),
    )
    .await;
    assert!(
        msg.starts_with("0/2 nodes are available: 2 node(s) exceed max volume count."),
        "{msg}"
    );
    s.shutdown().await;
}
