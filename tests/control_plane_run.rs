//! `spark-fleet run` as users run it, on a real kube-apiserver and etcd: outside a pod
//! with `--kubeconfig` (where its lease lives, what happens when that namespace is
//! missing), SIGTERM mid-burst, what it logs at INFO for a burst, and `deploy/`'s RBAC
//! (the scheduler running with its ServiceAccount's token). Needs `KUBEBUILDER_ASSETS`
//! (see README); without it each test says so and passes.

#[path = "support/cluster.rs"]
mod cluster;

use cluster::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::Value;
use spark_fleet::config::Config;
use spark_fleet::testkit::control_plane::{
    add_node, create_namespace, delete_pod_now, log_tail, node, start_or_skip, write_file,
    ControlPlane, Supervised,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// `spark-fleet run --config CONFIG --kubeconfig KUBECONFIG` as a child process, outside
/// a pod (no POD_NAME / POD_NAMESPACE), its stdout and stderr in `log`.
fn spark_fleet(cp: &ControlPlane, config: &str, log: &str) -> Supervised {
    let dir = cp.dir();
    let config = write_file(dir, &format!("{log}.yaml"), config).unwrap();
    Supervised::new(
        "spark-fleet",
        env!("CARGO_BIN_EXE_spark-fleet"),
        vec![
            "run".into(),
            "--config".into(),
            config.display().to_string(),
            "--kubeconfig".into(),
            cp.kubeconfig_path().display().to_string(),
        ],
        dir.join(log),
    )
    .env_remove("POD_NAME")
    .env_remove("POD_NAMESPACE")
    // The default log filter, as users get it.
    .env_remove("RUST_LOG")
    .env("NO_COLOR", "1")
}

async fn bound_count(client: &Client, namespace: &str) -> usize {
    list_pods(client, namespace)
        .await
        .iter()
        .filter(|p| node_name(p).is_some())
        .count()
}

/// Waits until at least `n` pods of `spark` are bound; past `limit` fails with
/// `what` and the tail of spark-fleet's log.
async fn wait_bound_count(
    client: &Client,
    n: usize,
    limit: Duration,
    what: &str,
    run: &Supervised,
) {
    let t = Instant::now();
    while bound_count(client, "spark").await < n {
        assert!(t.elapsed() < limit, "{what}: {}", log_tail(run.log(), 20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Outside a pod the lease lives in `kube-system`, as kube-scheduler's own: `run`
/// schedules at once on any cluster. SIGTERM mid-burst: the process stops within its
/// 10 s grace, releases the lease, and leaves every pod either bound (PodScheduled
/// True) or pending without a True condition; a new instance binds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_outside_a_pod_leads_in_kube_system_and_stops_cleanly_on_sigterm() {
    let test = "run_outside_a_pod_leads_in_kube_system_and_stops_cleanly_on_sigterm";
    let Some(cp) = start_or_skip(test).await else {
        return;
    };
    let client = cp.client();
    create_namespace(&client, "spark").await.unwrap();
    add_node(&client, &node("n1", "200", "800Gi", 500, &[]))
        .await
        .unwrap();
    let n = 200;
    let pods = (0..n)
        .map(|i| pod("spark", &format!("p{i:03}"), "spark-fleet", "100m", "128Mi"))
        .collect();
    create_pods(&client, pods, 32).await;
    // 20 bindings a second: the burst lasts ~10 s.
    let mut run = spark_fleet(
        &cp,
        "metrics: {address: \"127.0.0.1:0\"}\nclient: {qps: 20, burst: 20}\n",
        "sigterm.log",
    );
    run.spawn().unwrap();
    wait_bound_count(&client, 40, Duration::from_secs(60), "nothing bound", &run).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = leases.get("spark-fleet").await.unwrap();
    assert!(lease.spec.unwrap().holder_identity.is_some());

    run.terminate();
    let status = run.wait(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        log_tail(run.log(), 20)
    );
    let lease = leases.get("spark-fleet").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None, "lease released");
    let pods = list_pods(&client, "spark").await;
    let bound = pods.iter().filter(|p| node_name(p).is_some()).count();
    assert!(bound < n, "SIGTERM came mid-burst ({bound} bound)");
    for p in &pods {
        let scheduled = condition(p, "PodScheduled").map(|c| c.status.as_str());
        match node_name(p) {
            Some(_) => assert_eq!(scheduled, Some("True")),
            None => assert_ne!(scheduled, Some("True")),
        }
    }
    // Nothing is lost: a new instance binds the rest.
    let s = started(&client, fast(Config::default())).await;
    let t = Instant::now();
    while bound_count(&client, "spark").await < n {
        assert!(t.elapsed() < Duration::from_secs(60), "the rest not bound");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(over_committed(&client).await.is_empty());
    s.shutdown().await;
}

/// A lease namespace that does not exist: `run` stops with one line naming the
/// namespace and the config key, instead of waiting forever.
#[tokio::test]
async fn a_missing_lease_namespace_stops_run_with_one_clear_line() {
    let Some(cp) = start_or_skip("a_missing_lease_namespace_stops_run_with_one_clear_line").await
    else {
        return;
    };
    let mut run = spark_fleet(
        &cp,
        "metrics: {address: \"127.0.0.1:0\"}\nleaderElection: {leaseNamespace: no-such-namespace}\n",
        "missing-namespace.log",
    );
    run.spawn().unwrap();
    let status = run.wait(Duration::from_secs(20)).await;
    let lines = log_lines(run.log());
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?}: {}",
        lines.join("\n")
    );
    let naming: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"no-such-namespace\""))
        .collect();
    assert!(
        naming
            .iter()
            .all(|l| l.contains("leaderElection.leaseNamespace") && l.contains("does not exist")),
        "{naming:#?}"
    );
    // The error logged once, and the process's last word.
    assert_eq!(naming.len(), 2, "{}", lines.join("\n"));
    assert!(
        lines.last().unwrap().starts_with("spark-fleet: "),
        "{lines:#?}"
    );
}

/// At INFO a burst of 2,000 bindings writes what an operator needs (startup,
/// leadership, caches synced, a progress line at most every 30 s, errors), not a line
/// per pod; per-pod lines are DEBUG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_2000_bindings_logs_a_few_lines_at_info() {
    let Some(cp) = start_or_skip("a_burst_of_2000_bindings_logs_a_few_lines_at_info").await else {
        return;
    };
    let client = cp.client();
    create_namespace(&client, "spark").await.unwrap();
    for i in 0..20 {
        add_node(&client, &node(&format!("n{i:02}"), "64", "256Gi", 110, &[]))
            .await
            .unwrap();
    }
    let n = 2_000;
    let pods = (0..n)
        .map(|i| pod("spark", &format!("p{i:04}"), "spark-fleet", "100m", "128Mi"))
        .collect();
    create_pods(&client, pods, 32).await;
    let mut run = spark_fleet(
        &cp,
        "metrics: {address: \"127.0.0.1:0\"}\nclient: {qps: 1000, burst: 1000}\n",
        "burst.log",
    );
    run.spawn().unwrap();
    let t = Instant::now();
    wait_bound_count(&client, n, Duration::from_secs(120), "not all bound", &run).await;
    run.terminate();
    assert!(run.wait(Duration::from_secs(15)).await.is_some());
    let lines = log_lines(run.log());
    let took = t.elapsed();
    eprintln!(
        "{n} bindings in {took:?}: {} log lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    let has = |what: &str| lines.iter().any(|l| l.contains(what));
    for what in [
        "spark-fleet running",
        "watcher synced",
        "became leader",
        "shutting down",
    ] {
        assert!(has(what), "no {what:?} line");
    }
    assert!(
        !lines.iter().any(|l| l.contains("p0001")),
        "a per-pod line at INFO"
    );
    // Startup (1), leader election (2), 4 caches synced, progress every 30 s,
    // shutdown (3): 10 lines here, bounded whatever the number of pods (with room for
    // a lease renewal missed on a loaded machine).
    let progress = took.as_secs() as usize / 30 + 1;
    assert!(
        lines.len() <= 20 + progress,
        "{} lines for {n} bindings",
        lines.len()
    );
}

/// `deploy/`'s RBAC is enough: the scheduler running with its ServiceAccount's token
/// (bound as deploy/ binds it) watches, binds, reports (status and both event APIs),
/// holds its lease in its namespace and preempts, without a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rbac_is_enough_for_the_scheduler() {
    let Some(cp) = start_or_skip("deploy_rbac_is_enough_for_the_scheduler").await else {
        return;
    };
    let admin = cp.client();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for file in ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for doc in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
            apply(&admin, doc).await;
        }
    }
    create_namespace(&admin, "spark").await.unwrap();
    for (name, value) in [("low", 0), ("high", 1000)] {
        let pc: k8s_openapi::api::scheduling::v1::PriorityClass =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name}, "value": value,
            }))
            .unwrap();
        Api::all(admin.clone())
            .create(&PostParams::default(), &pc)
            .await
            .unwrap();
    }
    add_node(&admin, &node("n1", "4", "16Gi", 110, &[]))
        .await
        .unwrap();
    let token = cp
        .service_account_token("spark-fleet", "spark-fleet")
        .await
        .unwrap();
    let client = cp.client_with_token(&token).await.unwrap();
    let mut c = with_plugin(config(), "DefaultPreemption", 0);
    c.leader_election.enabled = true;
    c.leader_election.lease_namespace = Some("spark-fleet".into());
    let s = started(&client, c).await;
    wait_until("leads", || s.is_leader()).await;

    let classed = |name: &str, cpu: &str, class: &str| {
        let mut p = pod("spark", name, "spark-fleet", cpu, "1Gi");
        p.spec.as_mut().unwrap().priority_class_name = Some(class.into());
        p
    };
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "spark");
    pods.create(&PostParams::default(), &classed("low", "3", "low"))
        .await
        .unwrap();
    wait_bound(&admin, "spark", "low").await;
    wait_event(&admin, "spark", "low", "Scheduled").await;
    // An unplaceable pod: status patch and FailedScheduling.
    let mut picky = classed("picky", "1", "low");
    picky.spec.as_mut().unwrap().node_selector = Some([("disk".into(), "ssd".into())].into());
    pods.create(&PostParams::default(), &picky).await.unwrap();
    wait_pod(&admin, "spark", "picky", "reported", |p| {
        condition(p, "PodScheduled").is_some()
    })
    .await;
    wait_event(&admin, "spark", "picky", "FailedScheduling").await;
    // Preemption: DisruptionTarget on the victim, its deletion, the nomination.
    pods.create(&PostParams::default(), &classed("high", "3", "high"))
        .await
        .unwrap();
    let v = wait_pod(&admin, "spark", "low", "victim deleted", |p| {
        p.metadata.deletion_timestamp.is_some()
    })
    .await;
    assert!(condition(&v, "DisruptionTarget").is_some());
    wait_pod(&admin, "spark", "high", "nominated", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            == Some("n1")
    })
    .await;
    delete_pod_now(&admin, "spark", "low").await.unwrap();
    assert_eq!(wait_bound(&admin, "spark", "high").await, "n1");
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "spark-fleet");
    let lease = leases.get("spark-fleet").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(s.identity())
    );
    s.shutdown().await;
}

/// Creates one object of deploy/ (the kinds its RBAC files hold).
async fn apply(client: &Client, doc: Value) {
    let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let pp = PostParams::default();
    let c = client.clone();
    let done = match kind.as_str() {
        "Namespace" => Api::<Namespace>::all(c)
            .create(&pp, &serde_json::from_value(doc).unwrap())
            .await
            .map(|_| ()),
        "ServiceAccount" => Api::<ServiceAccount>::namespaced(c, &ns)
            .create(&pp, &serde_json::from_value(doc).unwrap())
            .await
            .map(|_| ()),
        "ClusterRole" => Api::<ClusterRole>::all(c)
            .create(&pp, &serde_json::from_value(doc).unwrap())
            .await
            .map(|_| ()),
        "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(c)
            .create(&pp, &serde_json::from_value(doc).unwrap())
            .await
            .map(|_| ()),
        "Role" => Api::<Role>::namespaced(c, &ns)
            .create(&pp, &serde_json::from_value(doc).unwrap())
            .await
            .map(|_| ()),
        "RoleBinding" => Api::<RoleBinding>::namespaced(c, &ns)
            .create(&pp, &serde_json::from_value(doc).unwrap())
            .await
            .map(|_| ()),
        other => panic!("deploy/ RBAC files hold a {other}: add it here"),
    };
    done.unwrap_or_else(|e| panic!("creating a {kind}: {e}"));
}

/// A kubeconfig that cannot be read: `run` fails at once naming the file (no server needed).
#[tokio::test]
async fn a_missing_kubeconfig_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = spark_fleet::kube::run(config(), Some(missing.clone()), async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

/// kube-apiserver killed and restarted under `run`: the log says so in a few lines
/// (each watch's failure once, its recovery once, each binding caught in flight
/// once), not at every retry; every pod ends bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apiserver_restart_is_logged_in_a_few_lines() {
    let Some(mut cp) = start_or_skip("an_apiserver_restart_is_logged_in_a_few_lines").await else {
        return;
    };
    let client = cp.client();
    create_namespace(&client, "spark").await.unwrap();
    add_node(&client, &node("n1", "64", "256Gi", 600, &[]))
        .await
        .unwrap();
    let n = 500;
    let pods = (0..n)
        .map(|i| pod("spark", &format!("p{i:03}"), "spark-fleet", "100m", "128Mi"))
        .collect();
    create_pods(&client, pods, 32).await;
    let mut run = spark_fleet(
        &cp,
        "metrics: {address: \"127.0.0.1:0\"}\nclient: {qps: 100, burst: 100}\nbind: {concurrency: 16}\n",
        "restart.log",
    );
    run.spawn().unwrap();
    wait_bound_count(
        &client,
        100,
        Duration::from_secs(60),
        "before the restart",
        &run,
    )
    .await;
    cp.kill_apiserver();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cp.restart_apiserver().await.unwrap();
    wait_bound_count(&client, n, Duration::from_secs(90), "not all bound", &run).await;
    // Bindings resolve by reading the pod, so every pod can be bound before the
    // watches' backoff lets them reconnect: wait for the recovery to be logged.
    let t = Instant::now();
    while !log_lines(run.log())
        .iter()
        .any(|l| l.contains("watch works again"))
        && t.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    run.terminate();
    assert!(run.wait(Duration::from_secs(15)).await.is_some());
    let lines = log_lines(run.log());
    eprintln!("{} log lines:\n{}", lines.len(), lines.join("\n"));
    let count = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
    // One failure line per watcher (ten: pods, nodes, budgets, priority
    // classes and the six storage kinds), not one per retry.
    assert!(
        count("watch failed") <= 10,
        "a watch failure logged at every retry"
    );
    assert!(count("watch works again") >= 1);
    // At most one line per binding slot (16 here) caught by the kill, and per lease call.
    assert!(count("binding failed") <= 16, "{}", count("binding failed"));
    assert!(lines.len() <= 72, "{} lines", lines.len());
    assert!(over_committed(&client).await.is_empty());
}
