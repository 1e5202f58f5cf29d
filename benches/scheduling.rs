//! The scheduling hot loop (issue 7). Every node is filtered and scored (no sampling).
//!   cargo bench --bench scheduling
//! Results and the machine they ran on: benches/README.md.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use k8s_openapi::api::core::v1::Pod as K8sPod;
use spark_fleet::config::Config;
use spark_fleet::framework::{schedule, CycleOptions};
use spark_fleet::model::{pod_from_k8s, Pod, Sym};
use spark_fleet::plugins::build_named_profile;
use spark_fleet::snapshot::Snapshot;
use spark_fleet::testkit::{
    bench_executor, node, pod, preempting_driver, synthetic_cluster, synthetic_cluster_with_app, GI,
};
use std::hint::black_box;
use std::sync::Arc;

const PODS_PER_NODE: usize = 30;

fn cluster_with_app(nodes: usize) -> Snapshot {
    synthetic_cluster_with_app(nodes, PODS_PER_NODE)
}

fn next_executor(n: usize) -> Pod {
    bench_executor(&format!("bench-exec-new-{n}")).build()
}

/// One decision three ways. Cold (`spark-fleet`, `kube-default`): every node
/// filtered and scored afresh (`fresh`), nothing kept from earlier cycles; the
/// nodes that provably cannot win are left unscored (`framework::cycle::bounded`;
/// the decision is that of scoring them). Every node (`spark-fleet/every-node`):
/// cold, and every feasible node scored by every plugin (`exhaustive`); and
/// the same with the cycle split over the machine's cores
/// (`…/every-node-parallel`, `CycleOptions::parallel`). Node selector
/// (`spark-fleet/node-selector`): cold, for an executor whose node selector
/// half the nodes match (`NodeAffinity` over the table's label columns).
/// Next executor (`…/next`): the decision the scheduler makes for an
/// application's next executor, the previous one having just been placed; each
/// iteration assumes the pod on the chosen node and forgets it again (both
/// timed), so one node has changed since the last cycle: the filters and the
/// resource scorers examine that node and reuse the others' kept verdicts and
/// scores (`framework::cycle::kept_verdicts`, `plugins::score_memo`).
fn one_decision(c: &mut Criterion) {
    let config = Config::default();
    let mut g = c.benchmark_group("one_executor_decision");
    g.sample_size(30);
    for &nodes in &[500usize, 5_000, 15_000] {
        let mut snap = cluster_with_app(nodes);
        let p = Arc::new(next_executor(0));
        for profile_name in ["spark-fleet", "kube-default"] {
            let profile = build_named_profile(&config, profile_name).expect("built-in profile");
            let cold = CycleOptions {
                fresh: true,
                ..CycleOptions::default()
            };
            g.bench_with_input(BenchmarkId::new(profile_name, nodes), &nodes, |b, _| {
                b.iter(|| {
                    let d = schedule(&profile, black_box(&p), &mut snap, cold);
                    black_box(d.node)
                })
            });
            if profile_name == "spark-fleet" {
                let every = CycleOptions {
                    exhaustive: true,
                    ..cold
                };
                let id = BenchmarkId::new(format!("{profile_name}/every-node"), nodes);
                g.bench_with_input(id, &nodes, |b, _| {
                    b.iter(|| {
                        let d = schedule(&profile, black_box(&p), &mut snap, every);
                        black_box(d.node)
                    })
                });
                // An executor pinned to one instance family by a node selector
                // (Spark's `spark.kubernetes.executor.node.selector.*`), half
                // the nodes: cold, as the first row.
                let pinned = Arc::new(
                    bench_executor("bench-exec-pinned")
                        .node_selector("node.kubernetes.io/instance-type", "m6i.16xlarge")
                        .build(),
                );
                let id = BenchmarkId::new(format!("{profile_name}/node-selector"), nodes);
                g.bench_with_input(id, &nodes, |b, _| {
                    b.iter(|| {
                        let d = schedule(&profile, black_box(&pinned), &mut snap, cold);
                        black_box(d.node)
                    })
                });
                // The same split over the machine's cores (`parallel`), where
                // a cycle is split at all (4,096 nodes or more).
                if nodes >= 4_096 {
                    let split = CycleOptions {
                        parallel: true,
                        ..every
                    };
                    let id = BenchmarkId::new(format!("{profile_name}/every-node-parallel"), nodes);
                    g.bench_with_input(id, &nodes, |b, _| {
                        b.iter(|| {
                            let d = schedule(&profile, black_box(&p), &mut snap, split);
                            black_box(d.node)
                        })
                    });
                }
            }
            let id = BenchmarkId::new(format!("{profile_name}/next"), nodes);
            g.bench_with_input(id, &nodes, |b, _| {
                b.iter(|| {
                    let d = schedule(&profile, black_box(&p), &mut snap, CycleOptions::default());
                    if let Some(n) = d.node {
                        let _ = snap.assume(p.clone(), n);
                        snap.forget(&p.key);
                    }
                    black_box(d.node)
                })
            });
        }
    }
    g.finish();
}

fn ten_thousand_decisions(c: &mut Criterion) {
    let config = Config::default();
    let mut g = c.benchmark_group("decisions_with_assume");
    g.sample_size(10);
    let base = cluster_with_app(5_000);
    let pods: Vec<Arc<Pod>> = (0..10_000).map(|i| Arc::new(next_executor(i))).collect();
    for profile_name in ["spark-fleet", "kube-default"] {
        let profile = build_named_profile(&config, profile_name).expect("built-in profile");
        g.bench_function(BenchmarkId::new(profile_name, "10000x5000"), |b| {
            b.iter_batched(
                || base.clone(),
                |mut snap| {
                    for p in &pods {
                        let d = schedule(&profile, p, &mut snap, CycleOptions::default());
                        if let Some(n) = d.node {
                            let _ = snap.assume(p.clone(), n);
                        }
                    }
                    snap
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn snapshot_updates(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot_update");
    let mut snap = synthetic_cluster(5_000, PODS_PER_NODE, 7);
    let p = pod("churn", 500, GI)
        .namespace("spark")
        .executor("spark-app-3")
        .on("node-01234")
        .arc();
    let key = p.key.clone();
    g.bench_function("pod_add_remove", |b| {
        b.iter(|| {
            let _ = snap.upsert_pod(black_box(p.clone()));
            black_box(snap.remove_pod(&key))
        })
    });
    let updated = node("node-02345", 64_000, 256 * GI)
        .zone("zone-b")
        .spot()
        .label("team", "analytics")
        .pods(110)
        .build();
    g.bench_function("node_update", |b| {
        b.iter(|| black_box(snap.upsert_node(black_box(updated.clone()))))
    });
    g.finish();
}

fn preemption_search(c: &mut Criterion) {
    let config = Config::default();
    let mut g = c.benchmark_group("preemption_search");
    g.sample_size(20);
    // Every node runs ~30 executors (priority 50000) and has < 48 free CPUs: a
    // 48-CPU driver (priority 100000) fits nowhere without preemption.
    let mut snap = synthetic_cluster(5_000, PODS_PER_NODE, 9);
    let big = preempting_driver();
    for profile_name in ["spark-fleet", "kube-default"] {
        let profile = build_named_profile(&config, profile_name).expect("built-in profile");
        let d = schedule(
            &profile,
            &big,
            &mut snap,
            CycleOptions {
                detail: false,
                post_filter: true,
                ..CycleOptions::default()
            },
        );
        assert!(
            d.node.is_none(),
            "the cluster must be full for this benchmark"
        );
        assert!(
            d.post_filter
                .as_ref()
                .is_some_and(|r| r.nomination.is_some()),
            "{profile_name}: preemption should find a node"
        );
        g.bench_function(BenchmarkId::new(profile_name, 5_000), |b| {
            b.iter(|| {
                let d = schedule(
                    &profile,
                    black_box(&big),
                    &mut snap,
                    CycleOptions {
                        detail: false,
                        post_filter: true,
                        ..CycleOptions::default()
                    },
                );
                black_box(d.post_filter.map(|r| r.nomination.map(|n| n.node)))
            })
        });
    }
    let _ = Sym::new("unused");
    g.finish();
}

/// Converting a watched pod and dropping it again, as the pod watcher does for every
/// pod event: a Spark executor (Spark's labels, a node selector, a spread constraint
/// with `matchLabelKeys`), another pod of its application alive meanwhile (`executor`);
/// the same with one label value no other pod has, interned with the pod and freed
/// with it (`executor-unique-label`; the value is made in the untimed setup).
fn pod_conversion(c: &mut Criterion) {
    let mut g = c.benchmark_group("pod_conversion");
    let executor: K8sPod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "exec-1", "namespace": "spark", "uid": "0b7c4a3e-uid",
            "labels": {
                "spark-role": "executor",
                "spark-app-selector": "spark-5f1e0c8a9b2d4e6f8a1b3c5d7e9f0a2b",
                "spark-app-name": "etl-daily",
                "spark-exec-id": "17",
                "spark-exec-resourceprofile-id": "0",
                "spark-version": "3.5.1",
            },
        },
        "spec": {
            "schedulerName": "spark-fleet",
            "nodeSelector": {"node.kubernetes.io/instance-type": "m6i.4xlarge"},
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"spark-role": "executor"}},
                "matchLabelKeys": ["spark-app-selector"],
            }],
            "containers": [{"name": "spark-kubernetes-executor", "image": "spark:3.5.1",
                "resources": {"requests": {"cpu": "4", "memory": "16Gi"}}}],
        },
    }))
    .expect("a pod from literals");
    let _alive = pod_from_k8s(&executor, &()).expect("converts");
    g.bench_function("executor", |b| {
        b.iter(|| black_box(pod_from_k8s(black_box(&executor), &()).map(|p| p.priority)))
    });
    let mut n = 0u64;
    g.bench_function("executor-unique-label", |b| {
        b.iter_batched(
            || {
                n += 1;
                let mut p = executor.clone();
                if let Some(labels) = p.metadata.labels.as_mut() {
                    labels.insert("pod-unique".into(), format!("value-{n}"));
                }
                p
            },
            |p| black_box(pod_from_k8s(&p, &()).map(|p| p.priority)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    one_decision,
    ten_thousand_decisions,
    snapshot_updates,
    preemption_search,
    pod_conversion
);
criterion_main!(benches);
