//! Agreement with the FGD paper's published results: for every openb pod list
//! in `simulations/traces/openb/` with published rows, the mean over seeds
//! 42–51 of allocated GPU % at 130% arrived lies, per policy, within the
//! published per-seed range.
//!
//! Published: `experiments/analysis/expected_results/analysis_allo_discrete.csv`
//! in `hkust-adsl/kubernetes-scheduler-simulator`, commit
//! `1853fc0e79d74778719c8137d7ca31dd61729e4f`, column `130`, min and max over
//! seeds 42–51. Sixty runs per pod list: ignored by default, run with
//! `cargo test --release --test fgd_agreement -- --ignored`.

use spark_fleet::sim::fgd::{run_all, Policy, Protocol};
use std::path::Path;

/// (workload, policy, published min, published max).
const PUBLISHED: &[(&str, &str, f64, f64)] = &[
    ("cpu050", "Random", 90.97, 91.58),
    ("cpu050", "DotProd", 92.85, 93.50),
    ("cpu050", "GpuClustering", 93.33, 94.32),
    ("cpu050", "GpuPacking", 93.17, 94.21),
    ("cpu050", "BestFit", 93.52, 93.97),
    ("cpu050", "FGD", 95.06, 95.34),
    ("default", "Random", 87.07, 88.03),
    ("default", "DotProd", 90.54, 91.28),
    ("default", "GpuClustering", 90.81, 92.96),
    ("default", "GpuPacking", 91.29, 92.79),
    ("default", "BestFit", 92.87, 93.25),
    ("default", "FGD", 95.27, 95.49),
    ("gpushare40", "Random", 85.40, 86.49),
    ("gpushare40", "DotProd", 89.36, 89.84),
    ("gpushare40", "GpuClustering", 88.73, 90.86),
    ("gpushare40", "GpuPacking", 89.03, 90.67),
    ("gpushare40", "BestFit", 91.16, 91.96),
    ("gpushare40", "FGD", 94.04, 94.24),
    ("gpuspec10", "Random", 86.86, 87.89),
    ("gpuspec10", "DotProd", 89.83, 90.87),
    ("gpuspec10", "GpuClustering", 91.00, 93.07),
    ("gpuspec10", "GpuPacking", 91.20, 93.30),
    ("gpuspec10", "BestFit", 92.97, 93.61),
    ("gpuspec10", "FGD", 94.55, 95.31),
    ("multigpu20", "Random", 88.05, 89.76),
    ("multigpu20", "DotProd", 91.69, 92.61),
    ("multigpu20", "GpuClustering", 92.73, 94.49),
    ("multigpu20", "GpuPacking", 92.88, 94.59),
    ("multigpu20", "BestFit", 93.58, 94.30),
    ("multigpu20", "FGD", 95.44, 95.92),
];

#[test]
#[ignore = "sixty runs per pod list: run in release with --ignored"]
fn means_over_seeds_lie_within_the_published_range() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations/traces/openb");
    let nodes = dir.join("openb_node_list_all_node.csv");
    let seeds: Vec<u64> = (42..=51).collect();
    let mut checked = 0;
    let mut outside = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(workload) = name
            .strip_prefix("openb_pod_list_")
            .and_then(|n| n.strip_suffix(".csv"))
        else {
            continue;
        };
        let rows: Vec<_> = PUBLISHED.iter().filter(|r| r.0 == workload).collect();
        if rows.is_empty() {
            continue;
        }
        let protocol = Protocol::from_openb(&nodes, &path).unwrap();
        let report = run_all(&protocol, &Policy::ALL, &seeds);
        for &&(_, policy, lo, hi) in &rows {
            let values = report.at(Policy::parse(policy).unwrap(), 130, false);
            assert_eq!(values.len(), seeds.len(), "{workload} {policy}");
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            println!("{workload:12} {policy:14} {mean:6.2}  published {lo:6.2}..{hi:6.2}");
            if !(lo..=hi).contains(&mean) {
                outside.push(format!("{workload} {policy}: {mean:.2} not in {lo}..{hi}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "no pod list with published rows");
    assert!(outside.is_empty(), "{outside:#?}");
}

/// The published ordering on a tenth of the cluster, fast enough for every
/// `cargo test`: every tenth GPU node of openb and the default pod list (the
/// arrivals still fill the smaller cluster to 130%), three seeds. Published,
/// at 130% on the whole cluster and on every pod list: FGD above every other
/// policy, and BestFit above Random by about five points.
#[test]
fn policies_rank_as_published_on_a_tenth_of_the_cluster() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations/traces/openb");
    let full = Protocol::from_openb(
        &dir.join("openb_node_list_all_node.csv"),
        &dir.join("openb_pod_list_default.csv"),
    )
    .unwrap();
    let nodes = full.nodes.iter().step_by(10).cloned().collect();
    let pods = full.pods.iter().map(|p| (**p).clone()).collect();
    let protocol = Protocol::new("default-tenth", nodes, pods, full.tune);
    let report = run_all(&protocol, &Policy::ALL, &[42, 43, 44]);
    let mean = |p: Policy| {
        let v = report.at(p, 130, false);
        assert_eq!(v.len(), 3, "{p:?}");
        v.iter().sum::<f64>() / v.len() as f64
    };
    let means: Vec<(Policy, f64)> = Policy::ALL.iter().map(|&p| (p, mean(p))).collect();
    println!("{means:?}");
    let fgd = mean(Policy::Fgd);
    for &(p, m) in &means {
        if p != Policy::Fgd {
            assert!(fgd > m, "FGD {fgd:.2} not above {p:?} {m:.2}: {means:?}");
        }
    }
    assert!(
        mean(Policy::BestFit) > mean(Policy::Random) + 2.0,
        "{means:?}"
    );
}
