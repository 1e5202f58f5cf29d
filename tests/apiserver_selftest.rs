//! Self-tests of the in-repo test API server, driven by the real kube client.

mod support;

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Binding, Event as CoreEvent, Node, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use support::apiserver::TestApiServer;
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn node(name: &str, labels: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": labels },
        "status": { "allocatable": { "cpu": "8", "memory": "32Gi", "pods": "110" } },
    }))
    .unwrap()
}

fn pod(ns: &str, name: &str, scheduler: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": ns, "labels": { "spark-role": "executor" } },
        "spec": {
            "schedulerName": scheduler,
            "containers": [{ "name": "main", "image": "spark:3.5" }],
        },
    }))
    .unwrap()
}

/// POSTs a v1 Binding to `pods/{pod}/binding`; the real API server answers with a Status.
async fn bind(pods: &Api<Pod>, pod: &str, node: &str) -> Result<Status, kube::Error> {
    let b: Binding = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": { "name": pod },
        "target": { "apiVersion": "v1", "kind": "Node", "name": node },
    }))
    .unwrap();
    within(
        "bind",
        pods.create_subresource("binding", pod, &PostParams::default(), &b),
    )
    .await
}

fn api_code<T: std::fmt::Debug>(res: Result<T, kube::Error>) -> u16 {
    match res {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

type Events<K> = mpsc::UnboundedReceiver<Result<Event<K>, watcher::Error>>;

/// Drives a watcher stream in the background (as a controller would), so it keeps
/// watching while the test does other things.
fn drive<K: Send + 'static>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
) -> Events<K> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if tx.send(ev).is_err() {
                return;
            }
        }
    });
    rx
}

/// Takes watcher events until one satisfies `pick`, bounded by a timeout.
async fn next_matching<K>(
    stream: &mut Events<K>,
    what: &str,
    mut pick: impl FnMut(&Event<K>) -> bool,
) -> Event<K> {
    within(what, async {
        loop {
            match stream.recv().await {
                Some(Ok(ev)) if pick(&ev) => return ev,
                Some(_) => continue,
                None => panic!("watch stream ended while waiting for {what}"),
            }
        }
    })
    .await
}

fn applied(ev: &Event<Pod>, name: &str) -> bool {
    matches!(ev, Event::Apply(p) | Event::InitApply(p) if p.metadata.name.as_deref() == Some(name))
}

fn deleted(ev: &Event<Pod>, name: &str) -> bool {
    matches!(ev, Event::Delete(p) if p.metadata.name.as_deref() == Some(name))
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn nodes_and_pods_create_list_get_through_kube_api() {
    let server = TestApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    let created = within(
        "create node",
        nodes.create(&PostParams::default(), &node("n1", json!({"pool": "spot"}))),
    )
    .await
    .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    let n2 = within(
        "create node",
        nodes.create(
            &PostParams::default(),
            &node("n2", json!({"pool": "on-demand"})),
        ),
    )
    .await
    .unwrap();
    assert!(
        n2.metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv1
    );

    let all = within("list nodes", nodes.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    assert_eq!(
        all.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    let spot = within(
        "list",
        nodes.list(&ListParams::default().labels("pool=spot")),
    )
    .await
    .unwrap();
    assert_eq!(spot.items.len(), 1);
    let not_spot = within(
        "list",
        nodes.list(&ListParams::default().labels("pool!=spot")),
    )
    .await
    .unwrap();
    assert_eq!(not_spot.items[0].metadata.name.as_deref(), Some("n2"));
    let set = within(
        "list",
        nodes.list(&ListParams::default().labels("pool in (spot,on-demand),!gpu")),
    )
    .await
    .unwrap();
    assert_eq!(set.items.len(), 2);
    let got = within("get node", nodes.get("n2")).await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["pool"], "on-demand");
    assert_eq!(api_code(within("get", nodes.get("absent")).await), 404);
    assert_eq!(
        api_code(
            within(
                "dup",
                nodes.create(&PostParams::default(), &node("n1", json!({})))
            )
            .await
        ),
        409
    );

    let a: Api<Pod> = Api::namespaced(server.client(), "a");
    let b: Api<Pod> = Api::namespaced(server.client(), "b");
    within(
        "create",
        a.create(&PostParams::default(), &pod("a", "p1", "spark-fleet")),
    )
    .await
    .unwrap();
    within(
        "create",
        a.create(&PostParams::default(), &pod("a", "p2", "default-scheduler")),
    )
    .await
    .unwrap();
    within(
        "create",
        b.create(&PostParams::default(), &pod("b", "p3", "spark-fleet")),
    )
    .await
    .unwrap();
    server
        .patch::<Pod>("b", "p3", &json!({"spec": {"nodeName": "n1"}}))
        .unwrap();

    assert_eq!(
        names(
            &within("list a", a.list(&ListParams::default()))
                .await
                .unwrap()
                .items
        ),
        ["p1", "p2"]
    );
    let all_pods: Api<Pod> = Api::all(server.client());
    assert_eq!(
        within("list all", all_pods.list(&ListParams::default()))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let ours = ListParams::default().fields("spec.schedulerName=spark-fleet,spec.nodeName=");
    assert_eq!(
        names(&within("list", all_pods.list(&ours)).await.unwrap().items),
        ["p1"]
    );
    let by_name = ListParams::default().fields("metadata.name=p3");
    assert_eq!(
        names(&within("list", all_pods.list(&by_name)).await.unwrap().items),
        ["p3"]
    );
    let bad = ListParams::default().fields("spec.bogus=x");
    assert_eq!(api_code(within("list", all_pods.list(&bad)).await), 400);

    // Defaults the real API server applies.
    let p = server.get::<Pod>("a", "p1").unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    let deleted = within("delete", a.delete("p2", &DeleteParams::default()))
        .await
        .unwrap();
    assert!(deleted.is_left());
    assert!(server.get::<Pod>("a", "p2").is_none());
    assert_eq!(server.list::<Pod>(None).len(), 2);
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted() {
    let server = TestApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    server
        .create(&pod("default", "before", "spark-fleet"))
        .unwrap();
    let mut stream = drive(watcher::watcher(pods.clone(), watcher::Config::default()));
    next_matching(&mut stream, "initial list", |e| applied(e, "before")).await;
    next_matching(&mut stream, "init done", |e| matches!(e, Event::InitDone)).await;

    within(
        "create",
        pods.create(&PostParams::default(), &pod("default", "p1", "spark-fleet")),
    )
    .await
    .unwrap();
    next_matching(
        &mut stream,
        "ADDED p1",
        |e| matches!(e, Event::Apply(p) if p.metadata.name.as_deref() == Some("p1")),
    )
    .await;

    let patch = json!({"metadata": {"labels": {"phase": "two"}}});
    within(
        "patch",
        pods.patch("p1", &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    .unwrap();
    let modified = next_matching(&mut stream, "MODIFIED p1", |e| applied(e, "p1")).await;
    let Event::Apply(p) = modified else {
        unreachable!()
    };
    assert_eq!(p.metadata.labels.unwrap()["phase"], "two");

    within("delete", pods.delete("p1", &DeleteParams::default()))
        .await
        .unwrap();
    next_matching(&mut stream, "DELETED p1", |e| deleted(e, "p1")).await;
}

#[tokio::test]
async fn watcher_resumes_after_dropped_watches_without_losing_events() {
    let server = TestApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let mut stream = drive(watcher::watcher(pods.clone(), watcher::Config::default()));
    next_matching(&mut stream, "init done", |e| matches!(e, Event::InitDone)).await;
    let a = server.create(&pod("default", "a", "spark-fleet")).unwrap();
    let rv_a = a.metadata.resource_version.unwrap();
    next_matching(&mut stream, "a", |e| applied(e, "a")).await;
    wait_until("watch open", || server.open_watches() == 1).await;

    // No await in between: these changes happen after the open watch was aborted, so
    // only a watch resumed from a's resourceVersion can deliver them.
    server.drop_watches();
    server.create(&pod("default", "b", "spark-fleet")).unwrap();
    server.delete::<Pod>("default", "a").unwrap();
    next_matching(&mut stream, "b after drop", |e| applied(e, "b")).await;
    next_matching(&mut stream, "a deleted after drop", |e| deleted(e, "a")).await;
    server.create(&pod("default", "c", "spark-fleet")).unwrap();
    next_matching(&mut stream, "c on new watch", |e| applied(e, "c")).await;

    // Resumed from the last resourceVersion: one list, a second watch, no re-list.
    let log = server.request_log();
    let lists = log
        .iter()
        .filter(|r| r.method == "GET" && !r.path.contains("watch="))
        .count();
    let watches: Vec<_> = log
        .iter()
        .filter(|r| r.path.contains("watch=true"))
        .collect();
    assert_eq!(lists, 1, "{log:?}");
    assert_eq!(watches.len(), 2, "{log:?}");
    assert!(
        watches[1]
            .path
            .ends_with(&format!("resourceVersion={rv_a}")),
        "{log:?}"
    );
}

#[tokio::test]
async fn expired_resource_version_makes_reflector_relist() {
    let server = TestApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    server.create(&pod("default", "a", "spark-fleet")).unwrap();
    let (reader, writer) = reflector::store::<Pod>();
    let mut stream = drive(reflector::reflector(
        writer,
        watcher::watcher(pods, watcher::Config::default()),
    ));
    next_matching(&mut stream, "init done", |e| matches!(e, Event::InitDone)).await;
    wait_until("watch open", || server.open_watches() == 1).await;

    server.drop_watches();
    server.delete::<Pod>("default", "a").unwrap();
    server.create(&pod("default", "b", "spark-fleet")).unwrap();
    server.compact();
    // The resumed watch gets 410 Expired; the watcher re-lists and the store drops "a".
    next_matching(&mut stream, "relist done", |e| matches!(e, Event::InitDone)).await;
    let mut state: Vec<String> = reader
        .state()
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    state.sort();
    assert_eq!(state, ["b"]);
    let log = server.request_log();
    assert_eq!(
        log.iter()
            .filter(|r| r.method == "GET" && !r.path.contains("watch="))
            .count(),
        2,
        "{log:?}"
    );
}

#[tokio::test]
async fn field_selected_watch_sees_bound_pod_leave() {
    let server = TestApiServer::start().await;
    server.create(&pod("default", "p", "spark-fleet")).unwrap();
    server
        .create(&pod("default", "other", "default-scheduler"))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let cfg = watcher::Config::default().fields("spec.schedulerName=spark-fleet,spec.nodeName=");
    let mut stream = drive(watcher::watcher(pods.clone(), cfg));
    let first = next_matching(&mut stream, "initial", |e| matches!(e, Event::InitApply(_))).await;
    assert!(applied(&first, "p"));
    next_matching(&mut stream, "init done", |e| matches!(e, Event::InitDone)).await;
    wait_until("watch open", || server.open_watches() == 1).await;
    bind(&pods, "p", "n1").await.unwrap();
    next_matching(&mut stream, "p leaves the selection", |e| deleted(e, "p")).await;
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_changes() {
    let server = TestApiServer::start().await;
    server.create(&pod("default", "a", "spark-fleet")).unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let mut stream = drive(watcher::watcher(
        pods,
        watcher::Config::default().streaming_lists(),
    ));
    next_matching(&mut stream, "a", |e| matches!(e, Event::InitApply(_))).await;
    next_matching(&mut stream, "init done", |e| matches!(e, Event::InitDone)).await;
    server.create(&pod("default", "b", "spark-fleet")).unwrap();
    next_matching(
        &mut stream,
        "b",
        |e| matches!(e, Event::Apply(p) if p.metadata.name.as_deref() == Some("b")),
    )
    .await;
    assert!(server.request_log()[0]
        .path
        .contains("sendInitialEvents=true"));
}

#[tokio::test]
async fn watch_timeout_ends_the_stream() {
    let server = TestApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let started = std::time::Instant::now();
    let stream = within("watch", pods.watch(&WatchParams::default().timeout(1), "0"))
        .await
        .unwrap();
    let events: Vec<WatchEvent<Pod>> = within("stream end", stream.try_collect()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Bookmarks were allowed, so the stream closes with one.
    assert!(
        matches!(events.last(), Some(WatchEvent::Bookmark(_))),
        "{events:?}"
    );
}

#[tokio::test]
async fn binding_assigns_node_once_then_conflicts() {
    let server = TestApiServer::start().await;
    server.create(&pod("spark", "d1", "spark-fleet")).unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "spark");
    let ok: Status = bind(&pods, "d1", "n1").await.unwrap();
    assert_eq!(ok.status.as_deref(), Some("Success"));
    let bound = within("get", pods.get("d1")).await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    let conditions = bound.status.unwrap().conditions.unwrap();
    assert!(conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True"));

    let again = bind(&pods, "d1", "n2").await;
    match again {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
            assert!(
                s.message
                    .contains("pod d1 is already assigned to node \"n1\""),
                "{}",
                s.message
            );
        }
        other => panic!("expected 409, got {other:?}"),
    }
    let missing = bind(&pods, "nope", "n1").await;
    assert_eq!(api_code(missing), 404);
    assert_eq!(
        server
            .get::<Pod>("spark", "d1")
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("n1")
    );
    assert_eq!(server.count_requests("POST", "/pods/d1/binding"), 2);
}

#[tokio::test]
async fn binding_refuses_gated_pods_and_a_stale_uid() {
    let server = TestApiServer::start().await;
    let mut gated = pod("spark", "g", "spark-fleet");
    gated.spec.as_mut().unwrap().scheduling_gates =
        Some(vec![
            serde_json::from_value(json!({"name": "wait"})).unwrap()
        ]);
    server.create(&gated).unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "spark");
    match bind(&pods, "g", "n1").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message
                    .contains("pod g has non-empty .spec.schedulingGates"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 409, got {other:?}"),
    }

    let created = server.create(&pod("spark", "u", "spark-fleet")).unwrap();
    let b: Binding = serde_json::from_value(json!({
        "metadata": { "name": "u", "uid": "not-the-pods-uid" },
        "target": { "kind": "Node", "name": "n1" },
    }))
    .unwrap();
    let stale = within(
        "bind stale uid",
        pods.create_subresource::<_, Status>("binding", "u", &PostParams::default(), &b),
    )
    .await;
    assert_eq!(api_code(stale), 409);
    let mut b = b;
    b.metadata.uid = created.metadata.uid.clone();
    within(
        "bind with uid",
        pods.create_subresource::<_, Status>("binding", "u", &PostParams::default(), &b),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn fail_next_fails_exactly_the_matching_calls() {
    let server = TestApiServer::start().await;
    server.create(&pod("spark", "e1", "spark-fleet")).unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "spark");
    server.fail_next("POST", "/binding", 500, 1);
    // A GET does not consume the POST fault.
    within("get", pods.get("e1")).await.unwrap();
    let first = bind(&pods, "e1", "n1").await;
    assert_eq!(api_code(first), 500);
    assert!(server
        .get::<Pod>("spark", "e1")
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .is_none());
    bind(&pods, "e1", "n1").await.unwrap();
    let statuses: Vec<u16> = server
        .request_log()
        .iter()
        .filter(|r| r.path.contains("/binding"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 201]);

    // A delayed call is served normally, late.
    server.delay_next("GET", "/pods/e1", Duration::from_millis(300), 1);
    let started = std::time::Instant::now();
    within("delayed get", pods.get("e1")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    server.clear_request_log();

    // The kube client retries 503 by itself: two injected 503s are invisible to the caller.
    server.fail_next("get", "/pods/e1", 503, 2);
    within("get retried", pods.get("e1")).await.unwrap();
    let statuses: Vec<u16> = server.request_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn strategic_merge_status_patch_merges_conditions_by_type() {
    let server = TestApiServer::start().await;
    let mut p = pod("default", "s", "spark-fleet");
    p.status = Some(
        serde_json::from_value(json!({
            "phase": "Pending",
            "conditions": [
                { "type": "Initialized", "status": "True" },
                { "type": "ContainersReady", "status": "False" },
            ],
        }))
        .unwrap(),
    );
    server.create(&p).unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let patch = json!({"status": {"conditions": [
        { "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available" },
        { "type": "ContainersReady", "status": "True" },
    ]}});
    let out = within(
        "patch status",
        pods.patch_status("s", &PatchParams::default(), &Patch::Strategic(&patch)),
    )
    .await
    .unwrap();
    let conds = out.status.unwrap().conditions.unwrap();
    let by_type: Vec<(&str, &str)> = conds
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        by_type,
        [
            ("Initialized", "True"),
            ("ContainersReady", "True"),
            ("PodScheduled", "False")
        ]
    );

    // A merge patch replaces the list wholesale.
    let merge = json!({"status": {"conditions": [{ "type": "Ready", "status": "False" }]}});
    let out = within(
        "merge status",
        pods.patch_status("s", &PatchParams::default(), &Patch::Merge(&merge)),
    )
    .await
    .unwrap();
    assert_eq!(out.status.unwrap().conditions.unwrap().len(), 1);

    // Status changes through the main resource are ignored; through /status, spec is.
    let main = json!({"metadata": {"labels": {"x": "y"}}, "status": {"phase": "Running"}});
    let out = within(
        "main patch",
        pods.patch("s", &PatchParams::default(), &Patch::Merge(&main)),
    )
    .await
    .unwrap();
    assert_eq!(out.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(out.metadata.labels.unwrap()["x"], "y");
    let status_only = json!({"spec": {"nodeName": "n9"}, "status": {"phase": "Running"}});
    let out = within(
        "status patch",
        pods.patch_status("s", &PatchParams::default(), &Patch::Merge(&status_only)),
    )
    .await
    .unwrap();
    assert_eq!(out.status.unwrap().phase.as_deref(), Some("Running"));
    assert!(out.spec.unwrap().node_name.is_none());

    // A patch that changes nothing writes nothing.
    let rv = server.resource_version();
    within(
        "no-op",
        pods.patch_status("s", &PatchParams::default(), &Patch::Merge(&status_only)),
    )
    .await
    .unwrap();
    assert_eq!(server.resource_version(), rv);
}

#[tokio::test]
async fn lease_create_and_replace_use_optimistic_concurrency() {
    let server = TestApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "kube-system");
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("spark-fleet".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let held = within("create", leases.create(&PostParams::default(), &lease))
        .await
        .unwrap();
    let dup = within(
        "create again",
        leases.create(&PostParams::default(), &lease),
    )
    .await;
    match dup {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    let mut take = held.clone();
    take.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let taken = within(
        "replace",
        leases.replace("spark-fleet", &PostParams::default(), &take),
    )
    .await
    .unwrap();
    assert_ne!(
        taken.metadata.resource_version,
        held.metadata.resource_version
    );

    let mut stale = held.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("c".into());
    match within(
        "stale replace",
        leases.replace("spark-fleet", &PostParams::default(), &stale),
    )
    .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let now = within("get", leases.get("spark-fleet")).await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn events_are_stored_through_both_event_apis() {
    let server = TestApiServer::start().await;
    let client = server.client();
    let pod_ref = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some("d1".into()),
        namespace: Some("spark".into()),
        ..Default::default()
    };
    // kube's own recorder writes events.k8s.io/v1 Events.
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "spark-fleet".into());
    let ev = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "FailedScheduling".into(),
        note: Some("0/3 nodes are available".into()),
        action: "Scheduling".into(),
        secondary: None,
    };
    within("publish", recorder.publish(&ev, &pod_ref))
        .await
        .unwrap();
    let v1: Api<EventV1> = Api::namespaced(client.clone(), "spark");
    let listed = within("list", v1.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].reason.as_deref(), Some("FailedScheduling"));
    assert_eq!(
        listed.items[0].regarding.as_ref().unwrap().name.as_deref(),
        Some("d1")
    );
    // Publishing the same event again updates it (series) instead of creating another.
    within("publish again", recorder.publish(&ev, &pod_ref))
        .await
        .unwrap();
    assert_eq!(
        within("list", v1.list(&ListParams::default()))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let core: Api<CoreEvent> = Api::namespaced(client, "spark");
    let e: CoreEvent = serde_json::from_value(json!({
        "metadata": { "name": "d1.scheduled" },
        "involvedObject": { "kind": "Pod", "name": "d1", "namespace": "spark" },
        "reason": "Scheduled", "message": "assigned spark/d1 to n1", "type": "Normal",
    }))
    .unwrap();
    within("create core event", core.create(&PostParams::default(), &e))
        .await
        .unwrap();
    let sel = ListParams::default().fields("involvedObject.name=d1,reason=Scheduled");
    assert_eq!(
        within("list core", core.list(&sel))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

/// POSTs raw JSON (so malformed times reach the server) and returns the error code.
async fn post_raw(client: &kube::Client, path: &str, body: serde_json::Value) -> Option<u16> {
    let req = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .unwrap();
    match within("post", client.request_text(req)).await {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => Some(s.code),
        Err(e) => panic!("transport error: {e}"),
    }
}

#[tokio::test]
async fn events_and_leases_are_validated_like_the_real_server() {
    let server = TestApiServer::start().await;
    let client = server.client();
    let events = "/apis/events.k8s.io/v1/namespaces/spark/events";
    let good = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": { "name": "p.1", "namespace": "spark" },
        "eventTime": "2026-01-02T03:04:05.123456Z",
        "regarding": { "kind": "Pod", "name": "p", "namespace": "spark" },
        "reason": "FailedScheduling", "action": "Scheduling", "type": "Warning",
        "reportingController": "spark-fleet", "reportingInstance": "spark-fleet-0",
        "note": "0/3 nodes are available",
    });
    let with = |field: &str, value: serde_json::Value| {
        let mut e = good.clone();
        e["metadata"]["name"] = json!(format!("p.{}", field.to_lowercase()));
        e[field] = value;
        e
    };
    assert_eq!(post_raw(&client, events, good.clone()).await, None);
    for field in [
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        assert_eq!(
            post_raw(&client, events, with(field, json!(""))).await,
            Some(422),
            "{field}"
        );
    }
    assert_eq!(
        post_raw(&client, events, with("eventTime", json!(null))).await,
        Some(422)
    );
    assert_eq!(
        post_raw(&client, events, with("type", json!("Info"))).await,
        Some(422)
    );
    let long_note = with("note", json!("x".repeat(1025)));
    assert_eq!(post_raw(&client, events, long_note).await, Some(422));
    assert_eq!(
        post_raw(&client, events, with("note", json!("x".repeat(1024)))).await,
        None
    );
    // MicroTime needs exactly six fractional digits.
    for bad in ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123456789Z"] {
        assert_eq!(
            post_raw(&client, events, with("eventTime", json!(bad))).await,
            Some(400),
            "{bad}"
        );
    }
    let series = json!({ "count": 1, "lastObservedTime": "2026-01-02T03:04:05.123456Z" });
    assert_eq!(
        post_raw(&client, events, with("series", series)).await,
        Some(422)
    );

    // On update the note is immutable, a new series must be valid.
    let v1: Api<EventV1> = Api::namespaced(client.clone(), "spark");
    let changed = json!({ "note": "something else" });
    let r = within(
        "patch note",
        v1.patch("p.1", &PatchParams::default(), &Patch::Merge(&changed)),
    )
    .await;
    assert!(
        matches!(r, Err(kube::Error::Api(ref s)) if s.code == 422),
        "{r:?}"
    );
    let series =
        json!({ "series": { "count": 2, "lastObservedTime": "2026-01-02T03:04:06.000000Z" } });
    within(
        "patch series",
        v1.patch("p.1", &PatchParams::default(), &Patch::Merge(&series)),
    )
    .await
    .unwrap();

    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
    let lease = |name: &str, spec: serde_json::Value| {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": name }, "spec": spec,
        })
    };
    let ok = lease(
        "a",
        json!({ "holderIdentity": "x", "leaseDurationSeconds": 15,
                "renewTime": "2026-01-02T03:04:05.000000Z" }),
    );
    assert_eq!(post_raw(&client, leases, ok).await, None);
    let zero = lease("b", json!({ "leaseDurationSeconds": 0 }));
    assert_eq!(post_raw(&client, leases, zero).await, Some(422));
    let seconds = lease("c", json!({ "renewTime": "2026-01-02T03:04:05Z" }));
    assert_eq!(post_raw(&client, leases, seconds).await, Some(400));
}

#[tokio::test]
async fn version_and_healthz_answer() {
    let server = TestApiServer::start().await;
    let client = server.client();
    let version = within("version", client.apiserver_version()).await.unwrap();
    assert_eq!(version.major, "1");
    let req = axum::http::Request::get("/healthz")
        .body(Vec::new())
        .unwrap();
    let text = within("healthz", client.request_text(req)).await.unwrap();
    assert!(text.contains("ok"));
}

#[tokio::test]
async fn dropping_the_server_stops_serving() {
    let server = TestApiServer::start().await;
    let client = server.client();
    let nodes: Api<Node> = Api::all(client);
    within("list", nodes.list(&ListParams::default()))
        .await
        .unwrap();
    let open = within("watch", nodes.watch(&WatchParams::default(), "0"))
        .await
        .unwrap();
    wait_until("watch open", || server.open_watches() == 1).await;
    drop(server);
    // Open watch streams end with the server instead of hanging.
    let _ = within("watch ends on drop", open.collect::<Vec<_>>()).await;
    let after = within("list after drop", async {
        // The listener closes asynchronously; poll until requests fail.
        loop {
            if let Err(e) = nodes.list(&ListParams::default()).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(!matches!(after, kube::Error::Api(_)), "{after:?}");
}

#[tokio::test]
async fn writes_follow_the_real_api_server_rules() {
    let server = TestApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pp = PostParams::default();

    let mut with_rv = pod("default", "x", "spark-fleet");
    with_rv.metadata.resource_version = Some("7".into());
    assert_eq!(
        api_code(within("create with rv", pods.create(&pp, &with_rv)).await),
        400
    );
    let mut wrong_ns = pod("other", "x", "spark-fleet");
    wrong_ns.metadata.namespace = Some("other".into());
    assert_eq!(
        api_code(within("ns mismatch", pods.create(&pp, &wrong_ns)).await),
        400
    );
    let mut generated = pod("default", "", "spark-fleet");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("exec-".into());
    let g = within("generateName", pods.create(&pp, &generated))
        .await
        .unwrap();
    assert!(g
        .metadata
        .name
        .as_deref()
        .is_some_and(|n| n.starts_with("exec-") && n.len() == 10));

    match within("get missing", pods.get("absent")).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
            assert_eq!(s.message, "pods \"absent\" not found");
            let details = s.details.unwrap();
            assert_eq!(
                (details.name.as_str(), details.kind.as_str()),
                ("absent", "pods")
            );
        }
        other => panic!("expected NotFound, got {other:?}"),
    }

    // Unconditional replace (no resourceVersion) is allowed; status is not writable through it.
    let mut p = server.create(&pod("default", "r", "spark-fleet")).unwrap();
    p.metadata.resource_version = None;
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("gen".into(), "2".into());
    p.status.as_mut().unwrap().phase = Some("Running".into());
    let replaced = within("replace", pods.replace("r", &pp, &p)).await.unwrap();
    assert_eq!(replaced.metadata.labels.unwrap()["gen"], "2");
    assert_eq!(replaced.status.unwrap().phase.as_deref(), Some("Pending"));

    // Finalizers merge as a set under strategic merge; `$patch: delete` removes a keyed item.
    let fin = json!({"metadata": {"finalizers": ["a"]}});
    within(
        "merge",
        pods.patch("r", &PatchParams::default(), &Patch::Merge(&fin)),
    )
    .await
    .unwrap();
    let fin2 = json!({"metadata": {"finalizers": ["b"]}});
    let out = within(
        "strategic",
        pods.patch("r", &PatchParams::default(), &Patch::Strategic(&fin2)),
    )
    .await
    .unwrap();
    assert_eq!(out.metadata.finalizers.unwrap(), ["a", "b"]);
    let conds = json!({"status": {"conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}]}});
    within(
        "status",
        pods.patch_status("r", &PatchParams::default(), &Patch::Strategic(&conds)),
    )
    .await
    .unwrap();
    let del = json!({"status": {"conditions": [{"type": "Initialized", "$patch": "delete"}]}});
    let out = within(
        "delete directive",
        pods.patch_status("r", &PatchParams::default(), &Patch::Strategic(&del)),
    )
    .await
    .unwrap();
    let types: Vec<String> = out
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(types, ["Ready"]);

    let apply = Patch::Apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "r"}}));
    assert_eq!(
        api_code(within("apply", pods.patch("r", &PatchParams::apply("t"), &apply)).await),
        415
    );

    // Malformed bodies are rejected as Invalid, not crashed on.
    let bad_labels = json!({"metadata": {"labels": {"n": 1}}});
    assert_eq!(
        api_code(
            within(
                "bad labels",
                pods.patch("r", &PatchParams::default(), &Patch::Merge(&bad_labels))
            )
            .await
        ),
        422
    );
    let raw: Api<kube::core::DynamicObject> = Api::namespaced_with(
        server.client(),
        "default",
        &kube::discovery::ApiResource::erase::<Pod>(&()),
    );
    let bad_spec: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": "not an object",
    }))
    .unwrap();
    assert_eq!(
        api_code(within("bad spec", raw.create(&pp, &bad_spec)).await),
        422
    );

    // Delete preconditions.
    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        api_code(within("stale delete", pods.delete("r", &stale)).await),
        409
    );
    assert!(server.get::<Pod>("default", "r").is_some());
}

#[tokio::test]
async fn raw_watch_and_legacy_bindings_endpoint() {
    let server = TestApiServer::start().await;
    server.create(&pod("default", "w", "spark-fleet")).unwrap();
    let client = server.client();
    // `watch=1` without a resourceVersion starts with the current state as ADDED events.
    let req = axum::http::Request::get("/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1")
        .body(Vec::new())
        .unwrap();
    let text = within("raw watch", client.request_text(req)).await.unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "w");

    let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "w"}, "target": {"kind": "Node", "name": "n3"}});
    let req = axum::http::Request::post("/api/v1/namespaces/default/bindings")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(
        &within("legacy bind", client.request_text(req))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            status["kind"].as_str(),
            status["status"].as_str(),
            status["code"].as_u64()
        ),
        (Some("Status"), Some("Success"), Some(201))
    );
    assert_eq!(
        server
            .get::<Pod>("default", "w")
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("n3")
    );
}

#[tokio::test]
async fn cluster_scoped_and_policy_resources_are_served() {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    let server = TestApiServer::start().await;
    let client = server.client();

    let pcs: Api<PriorityClass> = Api::all(client.clone());
    let pc: PriorityClass = serde_json::from_value(json!({
        "metadata": { "name": "spark-driver" }, "value": 1000, "preemptionPolicy": "PreemptLowerPriority",
    }))
    .unwrap();
    within("create pc", pcs.create(&PostParams::default(), &pc))
        .await
        .unwrap();
    assert_eq!(
        within("get pc", pcs.get("spark-driver"))
            .await
            .unwrap()
            .value,
        1000
    );
    assert_eq!(
        server
            .raw_list("scheduling.k8s.io", "priorityclasses")
            .len(),
        1
    );

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "spark");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": { "name": "drivers" },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "spark-role": "driver" } } },
    }))
    .unwrap();
    within("create pdb", pdbs.create(&PostParams::default(), &pdb))
        .await
        .unwrap();
    let all_pdbs: Api<PodDisruptionBudget> = Api::all(client.clone());
    assert_eq!(
        within("list pdbs", all_pdbs.list(&ListParams::default()))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(server
        .raw_get("policy", "poddisruptionbudgets", "spark", "drivers")
        .is_some());

    // Nodes: a cluster-wide watch sees a status patch (a kubelet heartbeat) as a change.
    server.create(&node("n1", json!({}))).unwrap();
    let nodes: Api<Node> = Api::all(client);
    let mut rx = drive(watcher::watcher(nodes.clone(), watcher::Config::default()));
    next_matching(&mut rx, "init done", |e| matches!(e, Event::InitDone)).await;
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    within(
        "node status",
        nodes.patch_status("n1", &PatchParams::default(), &Patch::Strategic(&patch)),
    )
    .await
    .unwrap();
    let ev = next_matching(&mut rx, "node modified", |e| matches!(e, Event::Apply(_))).await;
    let Event::Apply(n) = ev else { unreachable!() };
    assert_eq!(n.status.unwrap().conditions.unwrap()[0].type_, "Ready");
}

#[tokio::test]
async fn graceful_pod_deletion_marks_bound_pods_until_removed() {
    let server = TestApiServer::start_with(support::apiserver::ServerOptions {
        graceful_pod_deletion: true,
        ..Default::default()
    })
    .await;
    server
        .create(&pod("default", "bound", "spark-fleet"))
        .unwrap();
    server
        .create(&pod("default", "pending", "spark-fleet"))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    bind(&pods, "bound", "n1").await.unwrap();

    within(
        "delete bound",
        pods.delete("bound", &DeleteParams::default()),
    )
    .await
    .unwrap();
    let terminating = server.get::<Pod>("default", "bound").unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    // It stays until the "kubelet" (here: the handle) removes it.
    server.delete::<Pod>("default", "bound").unwrap();
    assert!(server.get::<Pod>("default", "bound").is_none());

    // Unbound pods, and gracePeriodSeconds=0, delete at once.
    within(
        "delete pending",
        pods.delete("pending", &DeleteParams::default()),
    )
    .await
    .unwrap();
    assert!(server.get::<Pod>("default", "pending").is_none());
    server
        .create(&pod("default", "forced", "spark-fleet"))
        .unwrap();
    bind(&pods, "forced", "n1").await.unwrap();
    within(
        "force delete",
        pods.delete("forced", &DeleteParams::default().grace_period(0)),
    )
    .await
    .unwrap();
    assert!(server.get::<Pod>("default", "forced").is_none());
}

#[tokio::test]
async fn wait_helpers_observe_changes_made_by_clients() {
    let server = TestApiServer::start().await;
    server.create(&pod("default", "w", "spark-fleet")).unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let binder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bind(&pods, "w", "n7").await.unwrap();
    });
    let is_bound = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("n7");
    assert!(server
        .get::<Pod>("default", "w")
        .is_some_and(|p| !is_bound(&p)));
    let bound = server.wait_for::<Pod>("default", "w", STEP, is_bound).await;
    assert!(bound.is_some());
    assert!(
        server
            .wait_for_requests("POST", "/pods/w/binding", 1, STEP)
            .await
    );
    binder.await.unwrap();
    // Conditions that never hold time out instead of hanging.
    let never = server
        .wait_for::<Pod>("default", "w", Duration::from_millis(50), |_| false)
        .await;
    assert!(never.is_none());
    assert!(
        !server
            .wait_for_requests("POST", "/pods/w/binding", 2, Duration::from_millis(50))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_loses_nothing_across_repeated_drops_on_a_multi_thread_runtime() {
    let server = TestApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let mut stream = drive(watcher::watcher(pods, watcher::Config::default()));
    next_matching(&mut stream, "init done", |e| matches!(e, Event::InitDone)).await;
    for round in 0..5 {
        let name = format!("p{round}");
        server.drop_watches();
        server
            .create(&pod("default", &name, "spark-fleet"))
            .unwrap();
        next_matching(&mut stream, "pod after drop", |e| applied(e, &name)).await;
    }
    let lists = server
        .request_log()
        .iter()
        .filter(|r| r.method == "GET" && !r.path.contains("watch="))
        .count();
    assert_eq!(lists, 1, "resumed without re-listing");
}
