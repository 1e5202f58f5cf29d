//! The spot-gpu importer end to end: the fixtures through `Trace::load` and the simulator, the
//! full node list, and `spark-fleet simulate --trace spot-gpu:...` as a user runs it.

use spark_fleet::config::Config;
use spark_fleet::sim::trace::{spot_gpu, ImportOptions, Trace, CAPACITY_SPOT, RESOURCE_GPU};
use spark_fleet::sim::{simulate, SimOptions};
use std::collections::BTreeMap;
use std::path::Path;

#[path = "support/traces.rs"]
mod traces;
use traces::repo;

fn spec(nodes: &str, jobs: &str) -> String {
    format!(
        "spot-gpu:{},{}",
        repo(nodes).display(),
        repo(jobs).display()
    )
}

const NODES_SLICE: &str = "tests/fixtures/traces/spot_gpu_nodes_slice.csv";
const JOBS: &str = "tests/fixtures/traces/spot_gpu_jobs.csv";
const NODES_ALL: &str = "simulations/traces/spot-gpu/node_info_df.csv";

fn fixture() -> Trace {
    Trace::load(&spec(NODES_SLICE, JOBS), &ImportOptions::default()).unwrap()
}

#[test]
fn fixture_imports_through_the_trace_spec() {
    let t = fixture();
    assert_eq!(t.header.name.as_deref(), Some("spot-gpu"));
    let nodes = t.node_adds();
    assert_eq!(nodes.len(), 12);
    for n in &nodes {
        n.to_node().unwrap();
    }
    let pods = t.pod_submits();
    // README rows 1 + 1 + 16 + 94 workers, crafted rows 2 + 1 + 1 + 2.
    assert_eq!(pods.len(), 118);
    assert!(t.events.windows(2).all(|w| w[0].t <= w[1].t));
    let hp = pods
        .iter()
        .filter(|(_, p)| p.priority == spot_gpu::PRIORITY_HP)
        .count();
    assert_eq!(hp, 1 + 1 + 2 + 1 + 2);
    let e = Trace::load("spot-gpu:nodes.csv", &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("spot-gpu:NODES.csv,JOBS.csv"), "{e}");
}

#[test]
fn full_node_list_honours_spot_fraction_and_zones() {
    let options = ImportOptions {
        seed: 11,
        spot_fraction: 0.3,
        zones: 3,
    };
    let t = Trace::load(&spec(NODES_ALL, JOBS), &options).unwrap();
    let nodes = t.node_adds();
    assert_eq!(nodes.len(), 4278);
    let spot = nodes
        .iter()
        .filter(|n| n.capacity_type() == Some(CAPACITY_SPOT))
        .count();
    assert_eq!(spot, 1283, "round(4278 × 0.3)");
    let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &nodes {
        *zones
            .entry(n.labels["topology.kubernetes.io/zone"].as_str())
            .or_default() += 1;
    }
    assert_eq!(zones.values().copied().collect::<Vec<_>>(), [1426; 3]);
    let gpus: u64 = nodes
        .iter()
        .map(|n| n.allocatable[RESOURCE_GPU].parse::<u64>().unwrap())
        .sum();
    // 2494 A10 ×1, 901 + 1 GPU-series-1 ×1, 10 ×4, (432 + 219 + 122 + 77 + 22) ×8.
    assert_eq!(gpus, 2494 + 902 + 40 + 872 * 8);
}

/// The slice has 2 nodes per GPU model. The Spot jobs' 110 A100 workers (1 GPU, 15 vCPU each)
/// get 16 slots on the two 8-GPU, 128-vCPU A100 nodes and run in waves; the HP job arriving
/// just after them has 2 workers of 2 GPUs, and each preempts 2 one-GPU Spot workers (which
/// are recreated and run later). The 16-GPU-per-worker H800 job never fits.
#[test]
fn simulator_runs_the_fixture() {
    let t = fixture();
    let opts = SimOptions {
        progress: false,
        ..SimOptions::default()
    };
    let policies = vec!["spark-fleet".to_owned(), "kube-default".to_owned()];
    let report = simulate(&t, &Config::default(), &policies, &opts).unwrap();
    for policy in &policies {
        let r = &report.policies[policy];
        assert_eq!(r.pods_never_bound, 1, "{policy}: the 16-GPU worker");
        assert_eq!(r.preemptions, 4, "{policy}: HP preempts Spot");
        assert_eq!(r.plain_pods_lost, 4, "{policy}");
        assert_eq!(r.pods_submitted, 118 + 4, "{policy}: the victims come back");
        assert_eq!(r.pods_bound, 121, "{policy}");
        // Spot workers waited for a slot: longer than a whole wave of the shorter job.
        assert!(
            r.pending_seconds.max > 41_060.0,
            "{policy}: {:?}",
            r.pending_seconds
        );
        // The longest HP job (253689) ends at 15,897,599 s; the H800 worker still waits, so the
        // run ends when nothing has progressed for the stall horizon after that.
        assert_eq!(r.end_seconds, 15_897_599.0 + opts.stall_seconds, "{policy}");
    }
}

#[test]
fn cli_simulates_a_spot_gpu_trace_and_reports_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let run = |jobs: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_spark-fleet"))
            .args([
                "simulate",
                "--trace",
                &format!(
                    "spot-gpu:{},{}",
                    repo(NODES_SLICE).display(),
                    jobs.display()
                ),
                "--out",
                dir.path().join("out").to_str().unwrap(),
                "--policy",
                "kube-default",
            ])
            .output()
            .expect("run spark-fleet")
    };
    let header = "job_name,organization,gpu_model,cpu_request,gpu_request,worker_num,submit_time,duration,job_type\n";
    // Small and short, so the run is quick: 3 workers that all fit.
    let good = dir.path().join("good.csv");
    std::fs::write(
        &good,
        format!("{header}1,2,A10,4,1,2,0,60,hp\n2,2,H800,8,8,1,5,60,SPOT\n"),
    )
    .unwrap();
    let o = run(&good);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["policies"]["kube-default"]["pods_bound"], 3);
    assert_eq!(report["policies"]["kube-default"]["pods_never_bound"], 0);
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, format!("{header}1,2,A10,4,1,0,0,60,HP\n")).unwrap();
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("bad.csv:2: column `worker_num`: must be at least 1"),
        "{stderr}"
    );
}
