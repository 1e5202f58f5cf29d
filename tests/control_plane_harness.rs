//! The real control plane harness itself (`spark_fleet::testkit::control_plane`):
//! it starts, answers, keeps its data across restarts and leaves no process behind.
//! Needs `KUBEBUILDER_ASSETS` (see README); without it each test says so and passes.

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use spark_fleet::testkit::control_plane::{
    self, add_node, create_namespace, node, start_or_skip, ControlPlane, Supervised,
};
use std::time::Duration;

/// Whether a process with this id runs `name` now (its id may be reused once reaped).
fn runs(pid: u32, name: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(name))
        .unwrap_or(false)
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": "default" },
        "data": { "v": value },
    }))
    .unwrap()
}

#[tokio::test]
async fn starts_answers_and_cleans_up() {
    let Some(cp) = start_or_skip("starts_answers_and_cleans_up").await else {
        return;
    };
    cp.readyz().await.unwrap();
    assert!(cp.url().starts_with("https://127.0.0.1:"));
    assert!(cp.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!cp.token().is_empty());
    let client = cp.client();
    create_namespace(&client, "spark").await.unwrap();
    // Status is dropped on create; add_node patches it in.
    let n = add_node(&client, &node("n1", "16", "64Gi", 110, &[("zone", "a")]))
        .await
        .unwrap();
    let alloc = n.status.unwrap().allocatable.unwrap();
    assert_eq!(alloc["pods"].0, "110");
    assert_eq!(alloc["cpu"].0, "16");
    // The kubeconfig file works for another client too.
    let kc = kube::config::Kubeconfig::read_from(cp.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let other = kube::Client::try_from(config).unwrap();
    let nodes: Api<Node> = Api::all(other);
    assert_eq!(
        nodes.list(&Default::default()).await.unwrap().items.len(),
        1
    );

    let pids = cp.pids();
    let dir = cp.dir().to_owned();
    assert_eq!(pids.len(), 2);
    assert!(runs(pids[0], "etcd") && runs(pids[1], "kube-apiserver"));
    drop(cp);
    for pid in pids {
        assert!(!runs(pid, "kube-"), "process {pid} left running");
        assert!(!runs(pid, "etcd"), "process {pid} left running");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[tokio::test]
async fn restarts_keep_the_data() {
    let Some(mut cp) = start_or_skip("restarts_keep_the_data").await else {
        return;
    };
    let cms: Api<ConfigMap> = Api::namespaced(cp.client(), "default");
    cms.create(&PostParams::default(), &config_map("before", "1"))
        .await
        .unwrap();
    let url = cp.url();

    let t = std::time::Instant::now();
    cp.kill_apiserver();
    assert!(cp.readyz().await.is_err(), "answers while killed");
    cp.restart_apiserver().await.unwrap();
    assert_eq!(cp.url(), url, "same port");
    eprintln!("kube-apiserver restarted and ready in {:?}", t.elapsed());
    // The client reconnects (its pooled connection died with the server).
    let ok = control_plane::wait_until(Duration::from_secs(10), || async {
        cms.get_opt("before").await.ok().flatten().is_some()
    })
    .await;
    assert!(ok, "data kept across the API server's restart");

    cp.kill_etcd();
    // The API server waits for etcd a while before it answers an error.
    let (pp, during) = (PostParams::default(), config_map("during", "2"));
    let refused = tokio::time::timeout(Duration::from_secs(3), cms.create(&pp, &during)).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a write succeeded with etcd down"
    );
    let t = std::time::Instant::now();
    cp.restart_etcd().await.unwrap();
    eprintln!("etcd restarted, kube-apiserver ready in {:?}", t.elapsed());
    let ok = control_plane::wait_until(Duration::from_secs(20), || async {
        cms.create(&PostParams::default(), &config_map("after", "3"))
            .await
            .is_ok()
    })
    .await;
    assert!(ok, "writes work again after etcd's restart");
    assert!(cms.get_opt("before").await.unwrap().is_some());
}

/// Tokens from the TokenRequest API authenticate as the ServiceAccount (RBAC applies).
#[tokio::test]
async fn service_account_tokens_are_subject_to_rbac() {
    let Some(cp) = start_or_skip("service_account_tokens_are_subject_to_rbac").await else {
        return;
    };
    let client = cp.client();
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap(),
    )
    .await
    .unwrap();
    let token = cp.service_account_token("default", "robot").await.unwrap();
    let robot = cp.client_with_token(&token).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(robot, "default");
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403, got {other:?}"),
    }
}

/// kube-scheduler from the same folder schedules pods that name no scheduler.
#[tokio::test]
async fn kube_scheduler_binds_default_pods() {
    let Some(mut cp) = start_or_skip("kube_scheduler_binds_default_pods").await else {
        return;
    };
    let assets = ControlPlane::assets().unwrap();
    if !assets.join("kube-scheduler").is_file() {
        control_plane::skipped("kube_scheduler_binds_default_pods", "no kube-scheduler");
        return;
    }
    let client = cp.client();
    add_node(&client, &node("n1", "4", "8Gi", 110, &[]))
        .await
        .unwrap();
    cp.start_kube_scheduler(5000.0, 5000).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let bound = control_plane::wait_for(&pods, "p", Duration::from_secs(30), |p| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("n1")
    })
    .await;
    assert!(bound.is_some(), "kube-scheduler did not bind the pod");
}

/// A process started through the harness dies with the process that started it,
/// even when that one is SIGKILLed (no destructor runs): its watchdog kills it.
#[tokio::test]
async fn children_die_with_a_killed_parent() {
    if std::env::var_os("HARNESS_CHILD_PID_FILE").is_some() {
        return; // Inside the helper: see `helper_holds_a_child`.
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let mut helper = Supervised::new(
        "test helper",
        std::env::current_exe().unwrap(),
        vec![
            "--exact".into(),
            "helper_holds_a_child".into(),
            "--ignored".into(),
            "--nocapture".into(),
        ],
        dir.path().join("helper.log"),
    )
    .env("HARNESS_CHILD_PID_FILE", pid_file.to_str().unwrap());
    helper.spawn().unwrap();
    let started = control_plane::wait_until(Duration::from_secs(20), || async {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    assert!(
        started,
        "helper did not start its child: {}",
        control_plane::log_tail(helper.log(), 20)
    );
    let child: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(runs(child, "sleep"));
    // SIGKILL: the helper's destructors never run.
    helper.kill();
    let gone =
        control_plane::wait_until(Duration::from_secs(10), || async { !runs(child, "sleep") })
            .await;
    assert!(gone, "the child of a killed process is still running");
}

/// Run only by `children_die_with_a_killed_parent`, in a process of its own.
#[tokio::test]
#[ignore = "a helper process for children_die_with_a_killed_parent"]
async fn helper_holds_a_child() {
    let Some(pid_file) = std::env::var_os("HARNESS_CHILD_PID_FILE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = Supervised::new(
        "sleep",
        "sleep",
        vec!["600".into()],
        dir.path().join("sleep.log"),
    );
    child.spawn().unwrap();
    std::fs::write(&pid_file, format!("{}\n", child.pid().unwrap())).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}
