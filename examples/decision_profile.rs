//! Runs many executor decisions on one synthetic cluster, for profilers
//! (`perf record`, `valgrind --tool=callgrind`). Usage:
//!   cargo run --release --example decision_profile -- [NODES] [DECISIONS] [PROFILE] [--parallel] [--assume] [--fresh] [--exhaustive] [--compare-exhaustive] [--node-selector=KEY=VALUE]... [--claims] [--images] [--without=PLUGIN]...
//! With `--parallel`, sequential and parallel cycles alternate and both are timed;
//! with `--compare-exhaustive`, the default selection (bounded where it pays)
//! and every node scored.
//! With `--assume`, every decision schedules a new executor and assumes it (the
//! application grows, as in the `decisions_with_assume` benchmark). Each
//! `--node-selector=KEY=VALUE` adds to the executor's node selector (e.g.
//! `node.kubernetes.io/instance-type=m6i.16xlarge`, half the nodes). With
//! `--claims`, each executor mounts its own OnDemand claim of a
//! WaitForFirstConsumer class (the volume plugins work; without it they skip).
//! With `--images`, every other node holds the executor's image (1.2 GB), so
//! ImageLocality scores nodes apart (without it, one score for every node).
//! Each `--without=PLUGIN` drops that plugin from the profile.

use spark_fleet::config::Config;
use spark_fleet::framework::{schedule, CycleOptions};
use spark_fleet::plugins::build_named_profile;
use spark_fleet::testkit::{bench_executor, synthetic_cluster_with_app};
use std::time::Instant;

/// The executor's image (held by every other node with `--images`).
const SPARK_IMAGE: &str = "apache/spark:3.5.3";

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let decisions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let profile_name = args.next().unwrap_or_else(|| "spark-fleet".into());
    let flags: Vec<String> = args.collect();
    let flag = |f: &str| flags.iter().any(|a| a == f);
    let compare_parallel = flag("--parallel");
    // The default selection and every node scored, alternating.
    let compare_exhaustive = flag("--compare-exhaustive");
    let assume = flag("--assume");
    // Every verdict and score computed afresh, none kept from earlier cycles.
    let fresh = flag("--fresh");
    // Every feasible node scored, none left out as unable to win.
    let exhaustive = flag("--exhaustive");
    let mut config = Config::default();
    // `--without=PLUGIN` drops a plugin from every profile (to measure what it costs).
    for name in flags.iter().filter_map(|f| f.strip_prefix("--without=")) {
        for p in &mut config.profiles {
            p.plugins.retain(|e| e.name != name);
        }
    }
    let Ok(profile) = build_named_profile(&config, &profile_name) else {
        eprintln!("no profile {profile_name}");
        std::process::exit(2);
    };
    // The benchmark's cluster and application (benches/scheduling.rs).
    let mut snap = synthetic_cluster_with_app(nodes, 30);
    let mut selector: Vec<(&str, &str)> = Vec::new();
    for f in flags
        .iter()
        .filter_map(|f| f.strip_prefix("--node-selector="))
    {
        let Some(pair) = f.split_once('=') else {
            eprintln!("--node-selector={f}: expected KEY=VALUE");
            std::process::exit(2);
        };
        selector.push(pair);
    }
    if flag("--images") {
        let t = snap.nodes();
        let with_image: Vec<spark_fleet::model::Node> = t
            .live_indices()
            .filter(|i| i % 2 == 0)
            .map(|i| {
                let mut n = t.node[i as usize].clone();
                n.images = spark_fleet::model::NodeImages::from_pairs(vec![(
                    spark_fleet::model::Sym::new(SPARK_IMAGE),
                    1_200_000_000,
                )]);
                n
            })
            .collect();
        for n in with_image {
            snap.upsert_node(n);
        }
    }
    let claims = flag("--claims");
    if claims {
        snap.storage_mut()
            .upsert_class(spark_fleet::testkit::storage_class(
                "gp3",
                "ebs.csi.aws.com",
                true,
            ));
    }
    let executor = |name: &str, snap: &mut spark_fleet::snapshot::Snapshot| {
        let b = selector
            .iter()
            .fold(bench_executor(name), |b, (k, v)| b.node_selector(k, v))
            .image(SPARK_IMAGE);
        if !claims {
            return b;
        }
        let claim = format!("{name}-pvc-0");
        let c = spark_fleet::testkit::claim(&claim, "gp3").namespace("spark");
        snap.storage_mut()
            .upsert_claim(c.request(200 << 30).build());
        b.claim(&claim)
    };
    let p = executor("exec-new", &mut snap).build();
    // The modes timed, each with its options: with a comparison, the two
    // alternate in short rounds within one process, so both see the same
    // machine (on a noisy VM, separate runs of one binary differ by 20%).
    let base = CycleOptions {
        fresh,
        exhaustive,
        ..CycleOptions::default()
    };
    let mut modes = vec![("sequential", base)];
    if compare_parallel {
        modes.push((
            "parallel",
            CycleOptions {
                parallel: true,
                ..base
            },
        ));
    }
    if compare_exhaustive {
        modes[0].0 = "default";
        modes.push((
            "every node",
            CycleOptions {
                exhaustive: true,
                ..base
            },
        ));
    }
    let mut elapsed = vec![0f64; modes.len()];
    let rounds = 40;
    let per_round = (decisions / rounds).max(1);
    for _ in 0..rounds {
        for (&(_, opts), spent) in modes.iter().zip(elapsed.iter_mut()) {
            let start = Instant::now();
            for k in 0..per_round {
                if assume {
                    let name = format!("exec-new-{k}-{}", snap.generation());
                    let next = std::sync::Arc::new(executor(&name, &mut snap).build());
                    if let Some(n) = schedule(&profile, &next, &mut snap, opts).node {
                        let _ = snap.assume(next, n);
                    }
                } else {
                    std::hint::black_box(schedule(&profile, &p, &mut snap, opts).node);
                    if claims {
                        // Each decision as the first for its claim: none selected a node yet.
                        snap.storage_mut().release(&p.key);
                    }
                }
            }
            *spent += start.elapsed().as_secs_f64();
        }
    }
    let per = |e: f64| e * 1e6 / (per_round * rounds) as f64;
    let timed: Vec<String> = modes
        .iter()
        .zip(&elapsed)
        .map(|((name, _), &e)| format!("{name} {:.1} us/decision", per(e)))
        .collect();
    println!(
        "{profile_name}: {nodes} nodes, {} decisions per mode: {}",
        per_round * rounds,
        timed.join(", ")
    );
}
