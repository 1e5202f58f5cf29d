//! Times the preemption search of the `preemption_search` bench (a 48-CPU driver
//! on a full synthetic cluster), for profilers (`perf record`). Usage:
//!   cargo run --release --example preemption_probe -- [NODES] [ITERATIONS] [PROFILE]

use spark_fleet::config::Config;
use spark_fleet::framework::{schedule, CycleOptions};
use spark_fleet::plugins::build_named_profile;
use spark_fleet::testkit::{preempting_driver, synthetic_cluster};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let profile_name = args.next().unwrap_or_else(|| "spark-fleet".into());
    let config = Config::default();
    let Ok(profile) = build_named_profile(&config, &profile_name) else {
        eprintln!("no profile {profile_name}");
        std::process::exit(2);
    };
    let mut snap = synthetic_cluster(nodes, 30, 9);
    let big = preempting_driver();
    // Without and with PostFilter, alternating, so both see the same machine noise.
    let mut elapsed = [Vec::new(), Vec::new()];
    let mut nominated = None;
    for _ in 0..iterations {
        for (mode, post_filter) in [false, true].into_iter().enumerate() {
            let opts = CycleOptions {
                detail: false,
                post_filter,
                ..CycleOptions::default()
            };
            let start = Instant::now();
            let d = schedule(&profile, &big, &mut snap, opts);
            elapsed[mode].push(start.elapsed().as_secs_f64() * 1e3);
            if post_filter {
                nominated = d.post_filter.and_then(|r| r.nomination).map(|n| {
                    let names: Vec<String> = n.victims.iter().map(|v| v.key.to_string()).collect();
                    (snap.nodes().name[n.node as usize].to_string(), names)
                });
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{profile_name}: {nodes} nodes, median of {iterations}: cycle without PostFilter {:.2} ms, with {:.2} ms; nominated {:?}",
        median(&mut elapsed[0]),
        median(&mut elapsed[1]),
        nominated
    );
}
