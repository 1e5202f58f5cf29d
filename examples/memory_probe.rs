//! Resident memory of a snapshot of N nodes and M bound pods (issue target:
//! ≤ 200 MB for 5,000 nodes + 150,000 pods). Usage:
//!   cargo run --release --example memory_probe -- [NODES] [PODS_PER_NODE]

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let per_node: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let before = rss_kib().unwrap_or(0);
    let snap = spark_fleet::testkit::synthetic_cluster(nodes, per_node, 1);
    let after = rss_kib().unwrap_or(0);
    println!(
        "nodes={} pods={} rss_before_kib={before} rss_after_kib={after} snapshot_mib={:.1}",
        snap.nodes().len(),
        snap.pod_count(),
        (after.saturating_sub(before)) as f64 / 1024.0
    );
}
