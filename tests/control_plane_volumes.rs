//! Volume scheduling on a real kube-apiserver and etcd (no controllers run:
//! a stand-in provisioner and PV controller, `support/volume_controller.rs`,
//! plays their part through the API): an executor's OnDemand claim of a
//! WaitForFirstConsumer class, created after its pod, is annotated with the
//! chosen node, provisioned in that node's zone and bound, then the pod is
//! bound; a pod whose volume lives in zone-b never lands in zone-a; the CSI
//! attach limit holds; a static volume is bound once. Needs
//! `KUBEBUILDER_ASSETS` (see README); without it each test says so and passes.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/volume_controller.rs"]
mod volume_controller;

use cluster::*;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use spark_fleet::testkit::control_plane::{
    add_node, create_namespace, start_or_skip, ControlPlane,
};
use std::sync::atomic::Ordering;
use volume_controller::*;

async fn cluster(test: &str) -> Option<(ControlPlane, Client)> {
    let cp = start_or_skip(test).await?;
    let client = cp.client();
    create_namespace(&client, "spark").await.unwrap();
    Some((cp, client))
}

/// Creates a namespaced object.
async fn create<K>(client: &Client, obj: &K) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let ns = obj
        .meta()
        .namespace
        .clone()
        .unwrap_or_else(|| "spark".into());
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), obj).await.unwrap()
}

/// Creates a cluster-scoped object.
async fn create_all<K>(client: &Client, obj: &K) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    api.create(&PostParams::default(), obj).await.unwrap()
}

/// A claim bound to `volume` on the server: created, then its status set
/// (the server drops status on create).
async fn bound_claim(client: &Client, name: &str, volume: &str) {
    create_all(
        client,
        &volume_controller::volume(volume, "gp3", "zone-b", Some(name)),
    )
    .await;
    create(client, &claim(name, "gp3", Some(volume))).await;
    let pp = kube::api::PatchParams::default();
    let phase = serde_json::json!({"status": {"phase": "Bound"}});
    Api::<PersistentVolume>::all(client.clone())
        .patch_status(volume, &pp, &kube::api::Patch::Merge(&phase))
        .await
        .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), "spark")
        .patch_status(name, &pp, &kube::api::Patch::Merge(&phase))
        .await
        .unwrap();
}

/// The pod's `PodScheduled=False` message once it contains `needle`.
async fn reported(client: &Client, name: &str, needle: &str) -> String {
    let p = wait_pod(client, "spark", name, needle, |p| {
        condition(p, "PodScheduled")
            .and_then(|c| c.message.as_deref())
            .is_some_and(|m| m.contains(needle))
    })
    .await;
    condition(&p, "PodScheduled")
        .and_then(|c| c.message.clone())
        .unwrap()
}

#[tokio::test]
async fn an_on_demand_claim_is_provisioned_where_its_executor_goes() {
    let test = "an_on_demand_claim_is_provisioned_where_its_executor_goes";
    let Some((_cp, client)) = cluster(test).await else {
        return;
    };
    add_node(&client, &node_in_zone("node-a", "zone-a"))
        .await
        .unwrap();
    add_node(&client, &node_in_zone("node-b", "zone-b"))
        .await
        .unwrap();
    create_all(&client, &class("gp3", EBS)).await;
    let s = started(&client, volume_config()).await;
    let (provisioner, counts) = spawn(client.clone(), "spark", EBS, false);
    // Spark creates the executor, then its claim: the pod waits for the claim.
    create(
        &client,
        &executor("exec-1", &["exec-1-pvc-0"], Some("zone-b")),
    )
    .await;
    let msg = within("missing claim", reported(&client, "exec-1", "not found")).await;
    assert_eq!(
        msg,
        r#"0/2 nodes are available: persistentvolumeclaim "exec-1-pvc-0" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."#
    );
    create(&client, &claim("exec-1-pvc-0", "gp3", None)).await;
    let node = wait_bound(&client, "spark", "exec-1").await;
    assert_eq!(node, "node-b");
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "spark")
        .get("exec-1-pvc-0")
        .await
        .unwrap();
    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(SELECTED_NODE).map(String::as_str),
        Some("node-b")
    );
    let pv_name = pvc.spec.unwrap().volume_name.unwrap();
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let affinity = serde_json::to_value(pv.spec.unwrap().node_affinity).unwrap();
    assert_eq!(
        affinity["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0],
        "zone-b"
    );
    assert_eq!(counts.provisioned.load(Ordering::SeqCst), 1);
    provisioner.abort();
    s.shutdown().await;
}

#[tokio::test]
async fn a_failed_provisioning_is_reported_and_the_executor_tried_again() {
    let test = "a_failed_provisioning_is_reported_and_the_executor_tried_again";
    let Some((_cp, client)) = cluster(test).await else {
        return;
    };
    add_node(&client, &node_in_zone("node-a", "zone-a"))
        .await
        .unwrap();
    create_all(&client, &class("gp3", EBS)).await;
    create(&client, &claim("exec-2-pvc-0", "gp3", None)).await;
    let s = started(&client, volume_config()).await;
    let (provisioner, counts) = spawn(client.clone(), "spark", EBS, true);
    create(&client, &executor("exec-2", &["exec-2-pvc-0"], None)).await;
    let msg = within("PreBind failure", reported(&client, "exec-2", "PreBind")).await;
    assert_eq!(
        msg,
        r#"running PreBind plugin "VolumeBinding": binding volumes: provisioning failed for PVC "exec-2-pvc-0""#
    );
    assert_eq!(wait_bound(&client, "spark", "exec-2").await, "node-a");
    assert_eq!(counts.refused.load(Ordering::SeqCst), 1);
    provisioner.abort();
    s.shutdown().await;
}

#[tokio::test]
async fn a_pod_whose_volume_is_in_zone_b_never_lands_in_zone_a() {
    let test = "a_pod_whose_volume_is_in_zone_b_never_lands_in_zone_a";
    let Some((_cp, client)) = cluster(test).await else {
        return;
    };
    for (n, z) in [("a-1", "zone-a"), ("a-2", "zone-a"), ("b-1", "zone-b")] {
        add_node(&client, &node_in_zone(n, z)).await.unwrap();
    }
    create_all(&client, &class("gp3", EBS)).await;
    bound_claim(&client, "data", "pv-data").await;
    bound_claim(&client, "data2", "pv-data2").await;
    let s = started(&client, volume_config()).await;
    // The pod prefers zone-a with all its weight; its volume's zone decides.
    create(&client, &executor("reuser", &["data"], Some("zone-a"))).await;
    assert_eq!(wait_bound(&client, "spark", "reuser").await, "b-1");
    // Without a zone-b node it waits, with upstream's reason.
    Api::<Node>::all(client.clone())
        .delete("b-1", &DeleteParams::default())
        .await
        .unwrap();
    create(&client, &executor("stuck", &["data2"], Some("zone-a"))).await;
    let msg = within("affinity conflict", reported(&client, "stuck", "affinity")).await;
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 node(s) had volume node affinity conflict. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    s.shutdown().await;
}

#[tokio::test]
async fn the_csi_attach_limit_holds() {
    let test = "the_csi_attach_limit_holds";
    let Some((_cp, client)) = cluster(test).await else {
        return;
    };
    for n in ["full", "roomy"] {
        add_node(&client, &node_in_zone(n, "zone-b")).await.unwrap();
        create_all(&client, &csi_node(n, 1)).await;
    }
    create_all(&client, &class("gp3", EBS)).await;
    for c in ["held", "wanted", "third"] {
        bound_claim(&client, c, &format!("pv-{c}")).await;
    }
    // "full" already attaches one EBS volume: its limit.
    let mut holder = executor("holder", &["held"], None);
    holder.spec.as_mut().unwrap().node_name = Some("full".into());
    create(&client, &holder).await;
    let s = started(&client, volume_config()).await;
    create(&client, &executor("newcomer", &["wanted"], None)).await;
    assert_eq!(wait_bound(&client, "spark", "newcomer").await, "roomy");
    // Both nodes are at their limit now.
    create(&client, &executor("late", &["third"], None)).await;
    let msg = within(
        "attach limit",
        reported(&client, "late", "max volume count"),
    )
    .await;
    assert!(
        msg.starts_with("0/2 nodes are available: 2 node(s) exceed max volume count."),
        "{msg}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_static_volume_is_bound_to_one_claim() {
    let test = "a_static_volume_is_bound_to_one_claim";
    let Some((_cp, client)) = cluster(test).await else {
        return;
    };
    add_node(&client, &node_in_zone("node-a", "zone-a"))
        .await
        .unwrap();
    add_node(&client, &node_in_zone("node-b", "zone-b"))
        .await
        .unwrap();
    create_all(&client, &class("local", "kubernetes.io/no-provisioner")).await;
    create_all(
        &client,
        &volume_controller::volume("pv-b", "local", "zone-b", None),
    )
    .await;
    let pp = kube::api::PatchParams::default();
    let available = serde_json::json!({"status": {"phase": "Available"}});
    Api::<PersistentVolume>::all(client.clone())
        .patch_status("pv-b", &pp, &kube::api::Patch::Merge(&available))
        .await
        .unwrap();
    create(&client, &claim("c1", "local", None)).await;
    create(&client, &claim("c2", "local", None)).await;
    let s = started(&client, volume_config()).await;
    let (controller, counts) = spawn(client.clone(), "spark", EBS, false);
    create(&client, &executor("p1", &["c1"], Some("zone-a"))).await;
    assert_eq!(wait_bound(&client, "spark", "p1").await, "node-b");
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get("pv-b")
        .await
        .unwrap();
    assert_eq!(
        pv.spec.unwrap().claim_ref.unwrap().name.as_deref(),
        Some("c1")
    );
    assert_eq!(counts.bound_static.load(Ordering::SeqCst), 1);
    create(&client, &executor("p2", &["c2"], None)).await;
    let msg = within(
        "no volume left",
        reported(&client, "p2", "persistent volumes"),
    )
    .await;
    assert!(
        msg.contains("2 node(s) didn't find available persistent volumes to bind"),
        "{msg}"
    );
    controller.abort();
    s.shutdown().await;
}
