//! Times each active score plugin's `score_nodes` alone over the feasible nodes
//! of the benchmark cluster, every node scored afresh (the cold cycle's score
//! phase, plugin by plugin). Prints the fastest of many rounds per plugin, the
//! figure least disturbed by other load on the machine. Usage:
//!   cargo run --release --example plugin_probe -- [NODES] [PROFILE] [ROUNDS]

use spark_fleet::config::Config;
use spark_fleet::framework::{Code, CycleState};
use spark_fleet::plugins::build_named_profile;
use spark_fleet::testkit::{bench_executor, synthetic_cluster_with_app};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let profile_name = args.next().unwrap_or_else(|| "spark-fleet".into());
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let Ok(profile) = build_named_profile(&Config::default(), &profile_name) else {
        eprintln!("no profile {profile_name}");
        std::process::exit(2);
    };
    let snap = synthetic_cluster_with_app(nodes, 30);
    let pod = bench_executor("exec-new").build();
    // The feasible nodes, as the cycle's filters leave them.
    let mut state = CycleState::default();
    state.set_fresh_scores(true);
    for p in &profile.pre_filter {
        if p.pre_filter(&mut state, &pod, &snap).code == Code::Skip {
            state.mark_skip_filter(p.name());
        }
    }
    let feasible: Vec<u32> = snap
        .nodes()
        .live_indices()
        .filter(|&n| {
            profile
                .filter
                .iter()
                .filter(|f| !state.skips_filter(f.name()))
                .all(|f| f.filter(&state, &pod, &snap, n).is_success())
        })
        .collect();
    for p in &profile.pre_score {
        if p.pre_score(&mut state, &pod, &snap, &feasible).code == Code::Skip {
            state.mark_skip_score(p.name());
        }
    }
    let active: Vec<_> = profile
        .score
        .iter()
        .filter(|(p, _)| !state.skips_score(p.name()))
        .filter(|(p, _)| p.uniform_score(&state, &pod, &snap).is_none())
        .collect();
    let mut out = vec![0i64; feasible.len()];
    let mut best = vec![f64::INFINITY; active.len()];
    let per_round = 100;
    for _ in 0..rounds {
        for ((p, _), b) in active.iter().zip(best.iter_mut()) {
            let start = Instant::now();
            for _ in 0..per_round {
                p.score_nodes(
                    &state,
                    &pod,
                    &snap,
                    std::hint::black_box(&feasible),
                    &mut out,
                );
            }
            *b = b.min(start.elapsed().as_secs_f64() * 1e6 / per_round as f64);
        }
    }
    println!(
        "{profile_name}: {nodes} nodes, {} feasible; fastest of {rounds} rounds, us per call:",
        feasible.len()
    );
    for ((p, _), b) in active.iter().zip(&best) {
        println!("  {:<36} {b:.1}", p.name());
    }
}
