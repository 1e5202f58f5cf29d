//! The admission webhook on a real control plane (etcd + kube-apiserver from
//! `KUBEBUILDER_ASSETS`): the API server calls `spark-fleet run`'s webhook on pod
//! creation through a MutatingWebhookConfiguration, and the scheduler binds what
//! it admitted. Without `KUBEBUILDER_ASSETS` each test says so and passes.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use spark_fleet::admission::tls::Ca;
use spark_fleet::config::Config;
use spark_fleet::kube::Scheduler;
use spark_fleet::testkit::control_plane::{add_node, create_namespace, node, start_or_skip};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const NS: &str = "spark";
const WEBHOOK: &str = "spark-fleet";
const MIX: &str = "spot=40,on-demand=60";

fn write_cert(dir: &Path, ca: &Ca) {
    let (cert, key) = ca.issue(&["127.0.0.1".to_owned()], 1).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
}

fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.leader_election.enabled = false;
    c.metrics.address = "127.0.0.1:0".into();
    c.admission.webhook.address = "127.0.0.1:0".into();
    c.admission.webhook.cert_file = dir.join("tls.crt").display().to_string();
    c.admission.webhook.key_file = dir.join("tls.key").display().to_string();
    c.admission.webhook.cert_reload_seconds = 0.2;
    c.client.qps = 1000.0;
    c.client.burst = 1000;
    c
}

/// The configuration `deploy/webhook.yaml` ships, calling `url` instead of the Service.
fn webhook_configuration(url: &str, ca_pem: Option<&str>) -> MutatingWebhookConfiguration {
    use base64::Engine as _;
    let mut client_config = json!({ "url": url });
    if let Some(ca) = ca_pem {
        client_config["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK},
        "webhooks": [{
            "name": "capacity-type.spark-fleet.io",
            "clientConfig": client_config,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "objectSelector": {"matchExpressions": [
                {"key": "spark-role", "operator": "In", "values": ["driver", "executor"]}]},
            "failurePolicy": "Ignore",
            "sideEffects": "NoneOnDryRun",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
            "admissionReviewVersions": ["v1"],
        }]
    }))
    .unwrap()
}

fn spark_pod(name: &str, role: &str, annotations: Value, affinity: Option<Value>) -> Pod {
    let mut spec = json!({
        "schedulerName": "spark-fleet",
        "containers": [{"name": "c", "image": "spark",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
    });
    if let Some(a) = affinity {
        spec["affinity"] = a;
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations,
            "labels": {"spark-role": role, "spark-app-selector": "app-1"}},
        "spec": spec,
    }))
    .unwrap()
}

async fn cluster(client: &Client) {
    create_namespace(client, NS).await.unwrap();
    for (name, ty) in [
        ("spot-1", "spot"),
        ("spot-2", "spot"),
        ("od-1", "on-demand"),
        ("od-2", "on-demand"),
    ] {
        add_node(
            client,
            &node(
                name,
                "16",
                "64Gi",
                110,
                &[("karpenter.sh/capacity-type", ty)],
            ),
        )
        .await
        .unwrap();
    }
}

fn annotation(p: &Pod, key: &str) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(key).cloned()
}

fn required_terms(p: &Pod) -> Vec<Vec<(String, String, Vec<String>)>> {
    p.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| {
            r.node_selector_terms
                .iter()
                .map(|t| {
                    t.match_expressions
                        .iter()
                        .flatten()
                        .map(|e| {
                            (
                                e.key.clone(),
                                e.operator.clone(),
                                e.values.clone().unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until a dry-run pod comes back mutated: the API server has loaded the
/// configuration and reaches the webhook.
async fn wait_until_called(client: &Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let probe = spark_pod("probe", "driver", json!({}), None);
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    for _ in 0..200 {
        if let Ok(p) = pods.create(&pp, &probe).await {
            if !required_terms(&p).is_empty() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the API server never called the webhook");
}

/// Waits until every pod named is bound; returns node name by pod.
async fn wait_bound(client: &Client, names: &[String]) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    for _ in 0..300 {
        let list = pods.list(&ListParams::default()).await.unwrap();
        let bound: BTreeMap<String, String> = list
            .items
            .iter()
            .filter_map(|p| {
                let n = p.metadata.name.clone()?;
                let node = p.spec.as_ref()?.node_name.clone()?;
                names.contains(&n).then_some((n, node))
            })
            .collect();
        if bound.len() == names.len() {
            return bound;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pods not all bound");
}

async fn node_types(client: &Client) -> BTreeMap<String, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| {
            let ty = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("karpenter.sh/capacity-type").cloned())
                .unwrap_or_default();
            (n.metadata.name.unwrap_or_default(), ty)
        })
        .collect()
}

async fn create_concurrently(client: &Client, pods: Vec<Pod>) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let creates = pods.iter().map(|p| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), p).await.unwrap() }
    });
    futures::future::join_all(creates).await
}

/// The issue's end-to-end case: the API server calls the webhook; the driver
/// gets its required term; 20 executors created at once come out 8 spot / 12
/// on-demand, each with the required term of its type, and are bound on that
/// type; a pod's own required terms survive, ANDed with the capacity type.
#[tokio::test]
async fn api_server_calls_the_webhook_and_the_scheduler_follows_it() {
    let Some(cp) = start_or_skip("api_server_calls_the_webhook_and_the_scheduler_follows_it").await
    else {
        return;
    };
    let client = cp.client();
    cluster(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test-ca").unwrap();
    write_cert(dir.path(), &ca);
    let sched = Scheduler::start(client.clone(), config(dir.path()))
        .await
        .unwrap();
    let addr = sched
        .webhook_addr(Duration::from_secs(30))
        .await
        .expect("webhook listening");
    let mwc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    mwc.create(
        &PostParams::default(),
        &webhook_configuration(&format!("https://{addr}/mutate"), Some(&ca.cert_pem)),
    )
    .await
    .unwrap();
    wait_until_called(&client).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let driver = pods
        .create(
            &PostParams::default(),
            &spark_pod(
                "app-1-driver",
                "driver",
                json!({"spark-fleet.io/executor-capacity-mix": MIX,
                       "spark-fleet.io/capacity-mix-mode": "hard"}),
                None,
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        required_terms(&driver),
        vec![vec![(
            "karpenter.sh/capacity-type".to_owned(),
            "NotIn".to_owned(),
            vec!["spot".to_owned()]
        )]]
    );
    let types = node_types(&client).await;
    let bound = wait_bound(&client, &["app-1-driver".to_owned()]).await;
    assert_eq!(types[&bound["app-1-driver"]], "on-demand");

    let names: Vec<String> = (0..20).map(|i| format!("app-1-exec-{i}")).collect();
    let created = create_concurrently(
        &client,
        names
            .iter()
            .map(|n| spark_pod(n, "executor", json!({}), None))
            .collect(),
    )
    .await;
    let mut admitted: BTreeMap<String, String> = BTreeMap::new();
    for p in &created {
        let ty = annotation(p, "spark-fleet.io/capacity-type").expect("admitted with a type");
        let want = if ty == "spot" {
            ("In", vec!["spot".to_owned()])
        } else {
            ("NotIn", vec!["spot".to_owned()])
        };
        assert_eq!(
            required_terms(p),
            vec![vec![(
                "karpenter.sh/capacity-type".to_owned(),
                want.0.to_owned(),
                want.1
            )]],
            "{ty}"
        );
        admitted.insert(p.metadata.name.clone().unwrap(), ty);
    }
    let spot = admitted.values().filter(|t| *t == "spot").count();
    assert_eq!((spot, admitted.len() - spot), (8, 12), "{admitted:?}");
    // The scheduler binds each where admission sent it.
    let bound = wait_bound(&client, &names).await;
    for (pod, node) in &bound {
        assert_eq!(types[node], admitted[pod], "{pod} on {node}");
    }

    // The pod's own terms survive: each carries the capacity type too.
    let own = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["spot-1"]}]},
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["od-2"]}]}
    ]}}});
    let p = pods
        .create(
            &PostParams::default(),
            &spark_pod("app-1-exec-own", "executor", json!({}), Some(own)),
        )
        .await
        .unwrap();
    let ty = annotation(&p, "spark-fleet.io/capacity-type").unwrap();
    let terms = required_terms(&p);
    assert_eq!(terms.len(), 2);
    for (t, host) in terms.iter().zip(["spot-1", "od-2"]) {
        assert_eq!(t.len(), 2, "{terms:?}");
        assert_eq!(
            t[0],
            (
                "kubernetes.io/hostname".to_owned(),
                "In".to_owned(),
                vec![host.to_owned()]
            )
        );
        assert_eq!(t[1].0, "karpenter.sh/capacity-type");
    }
    // 8/12 placed: the 21st of a 40/60 mix goes on-demand (8.4 / 12.6 wanted).
    assert_eq!(ty, "on-demand");
    // Pods of other schedulers are not touched (the objectSelector lets Spark
    // pods through; the webhook leaves pods of other schedulers alone).
    let mut other = spark_pod("other-exec", "executor", json!({}), None);
    other.spec.as_mut().unwrap().scheduler_name = Some("default-scheduler".into());
    let other = pods.create(&PostParams::default(), &other).await.unwrap();
    assert_eq!(annotation(&other, "spark-fleet.io/capacity-type"), None);
    assert!(required_terms(&other).is_empty());
    sched.shutdown().await;
}

/// With the webhook unreachable (failurePolicy Ignore), pods are still created,
/// unmutated, and the scheduler alone still keeps the mix: 8 spot / 12 on-demand.
#[tokio::test]
async fn webhook_down_pods_are_created_and_the_mix_still_holds() {
    let Some(cp) = start_or_skip("webhook_down_pods_are_created_and_the_mix_still_holds").await
    else {
        return;
    };
    let client = cp.client();
    cluster(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test-ca").unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/mutate", closed.local_addr().unwrap());
    drop(closed);
    let mwc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    mwc.create(
        &PostParams::default(),
        &webhook_configuration(&url, Some(&ca.cert_pem)),
    )
    .await
    .unwrap();
    let mut c = config(dir.path());
    c.admission.webhook.enabled = false;
    let sched = Scheduler::start(client.clone(), c).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.create(
        &PostParams::default(),
        &spark_pod(
            "app-1-driver",
            "driver",
            json!({"spark-fleet.io/executor-capacity-mix": MIX,
                   "spark-fleet.io/capacity-mix-mode": "hard"}),
            None,
        ),
    )
    .await
    .unwrap();
    wait_bound(&client, &["app-1-driver".to_owned()]).await;
    let names: Vec<String> = (0..20).map(|i| format!("app-1-exec-{i}")).collect();
    let created = create_concurrently(
        &client,
        names
            .iter()
            .map(|n| spark_pod(n, "executor", json!({}), None))
            .collect(),
    )
    .await;
    for p in &created {
        assert_eq!(annotation(p, "spark-fleet.io/capacity-type"), None);
        assert!(required_terms(p).is_empty());
    }
    let types = node_types(&client).await;
    let bound = wait_bound(&client, &names).await;
    let spot = bound.values().filter(|n| types[*n] == "spot").count();
    assert_eq!((spot, bound.len() - spot), (8, 12), "{bound:?}");
    sched.shutdown().await;
}

/// The serving certificate is replaced by one from another CA while running,
/// and the configuration's caBundle with it (what cert-manager and its CA
/// injector do): the API server's calls keep being answered, with no restart;
/// with the old certificate still served they would fail and pods would be
/// created unmutated.
#[tokio::test]
async fn certificate_rotation_without_restart() {
    let Some(cp) = start_or_skip("certificate_rotation_without_restart").await else {
        return;
    };
    let client = cp.client();
    cluster(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test-ca").unwrap();
    write_cert(dir.path(), &ca);
    let sched = Scheduler::start(client.clone(), config(dir.path()))
        .await
        .unwrap();
    let addr = sched.webhook_addr(Duration::from_secs(30)).await.unwrap();
    let url = format!("https://{addr}/mutate");
    let mwc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    mwc.create(
        &PostParams::default(),
        &webhook_configuration(&url, Some(&ca.cert_pem)),
    )
    .await
    .unwrap();
    wait_until_called(&client).await;

    let rotated = Ca::generate("rotated-ca").unwrap();
    write_cert(dir.path(), &rotated);
    let wanted = webhook_configuration(&url, Some(&rotated.cert_pem));
    mwc.patch(
        WEBHOOK,
        &PatchParams::default(),
        &Patch::Merge(json!({"webhooks": wanted.webhooks})),
    )
    .await
    .unwrap();
    // Within the reload period and the API server's configuration refresh, a
    // created driver is mutated again: the new certificate is served.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut mutated = false;
    for i in 0..100 {
        let p = pods
            .create(
                &PostParams::default(),
                &spark_pod(&format!("drv-{i}"), "driver", json!({}), None),
            )
            .await
            .unwrap();
        if !required_terms(&p).is_empty() {
            mutated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(mutated, "no pod was mutated after the rotation");
    sched.shutdown().await;
}

/// Without cert-manager: the scheduler makes a CA (kept in a Secret), a serving
/// certificate, and writes the CA into the configuration's caBundle; the API
/// server then calls it.
#[tokio::test]
async fn self_signed_certificate_and_ca_bundle() {
    let Some(cp) = start_or_skip("self_signed_certificate_and_ca_bundle").await else {
        return;
    };
    let client = cp.client();
    cluster(&client).await;
    create_namespace(&client, "spark-fleet").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.admission.webhook.self_signed.enabled = true;
    c.admission.webhook.self_signed.hosts = vec!["127.0.0.1".into()];
    let sched = Scheduler::start(client.clone(), c).await.unwrap();
    // The port opens once the certificate is issued; the configuration (made
    // here after, to learn the port) gets its caBundle when the scheduler next
    // tries.
    let addr = sched
        .webhook_addr(Duration::from_secs(30))
        .await
        .expect("self-signed webhook listening");
    let mwc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    mwc.create(
        &PostParams::default(),
        &webhook_configuration(&format!("https://{addr}/mutate"), None),
    )
    .await
    .unwrap();
    // The scheduler retries the caBundle write until the configuration exists.
    for _ in 0..200 {
        let c = mwc.get(WEBHOOK).await.unwrap();
        if c.webhooks
            .unwrap_or_default()
            .iter()
            .all(|w| w.client_config.ca_bundle.is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until_called(&client).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "spark-fleet");
    let s = secrets.get("spark-fleet-webhook-ca").await.unwrap();
    let data = s.data.unwrap();
    let bundle = mwc.get(WEBHOOK).await.unwrap().webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    assert_eq!(data["ca.crt"].0, bundle.0);
    sched.shutdown().await;
}
