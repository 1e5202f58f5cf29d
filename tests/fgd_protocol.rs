//! The FGD paper's protocol (`simulate --protocol fgd`) on a cluster small
//! enough to work out by hand, through the library and the command line.
//!
//! `tests/fixtures/fgd`: one GPU node (2 T4 cards, 32 CPUs) and one CPU node
//! (left out: the protocol runs on GPU nodes); a pod list of two pods of 600
//! milli of a GPU each. The cluster has 2 GPUs, so 130% is 2600 milli: the
//! list (1200) gets clones until the next would pass it, 4 pods in all,
//! arriving at 30, 60, 90 and 120%. Two fit, one per card; the others fit
//! nowhere. The typical pod is the 600-milli one: a card with 400 free is a
//! fragment for it. Every policy gives the same answer here.

use spark_fleet::sim::fgd::{run_all, Policy, Protocol};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fgd")
        .join(name)
}

/// The cells of a CSV row from column `0` on.
fn cells(row: &str) -> Vec<String> {
    row.split(',').skip(5).map(str::to_owned).collect()
}

/// The expected cells: `value` at `k - 1 ..= k + 1` for each `(k, value)`, else empty.
fn expected(points: &[(usize, &str)]) -> Vec<String> {
    let mut v = vec![String::new(); 131];
    for &(k, value) in points {
        for cell in &mut v[k - 1..=k + 1] {
            *cell = value.to_owned();
        }
    }
    v
}

#[test]
fn known_answer_for_every_policy() {
    let protocol = Protocol::from_openb(&fixture("nodes.csv"), &fixture("pods.csv")).unwrap();
    assert_eq!(protocol.nodes.len(), 1, "the CPU node is left out");
    assert_eq!((protocol.total_gpus, protocol.capacity_milli), (2, 2000));
    let report = run_all(&protocol, &Policy::ALL, &[42, 43]);
    assert_eq!(report.runs.len(), 12);
    for run in &report.runs {
        let r = &run.rows;
        assert_eq!(r.arrived, [600, 1200, 1800, 2400], "{:?}", run.policy);
        assert_eq!(r.allocated, [600, 1200, 1200, 1200], "{:?}", run.policy);
        assert_eq!(
            r.fragmented,
            [400.0, 800.0, 800.0, 800.0],
            "{:?}",
            run.policy
        );
        assert_eq!((r.placed, r.failed), (2, 2));
    }
    let alloc = report.allocation_csv();
    let rows: Vec<&str> = alloc.lines().collect();
    assert_eq!(rows.len(), 13);
    let header: Vec<&str> = rows[0].split(',').collect();
    assert_eq!(
        &header[..6],
        ["workload", "sc_policy", "tune", "seed", "total_gpus", "0"]
    );
    assert_eq!(header.len(), 5 + 131);
    assert_eq!(header[135], "130");
    assert!(
        rows[1].starts_with("pods,01-Random,1.3,42,2,"),
        "{}",
        rows[1]
    );
    assert!(
        rows[12].starts_with("pods,06-FGD,1.3,43,2,"),
        "{}",
        rows[12]
    );
    for row in &rows[1..] {
        assert_eq!(
            cells(row),
            expected(&[(30, "30.0"), (60, "60.0"), (90, "60.0"), (120, "60.0")])
        );
    }
    let frag = report.fragmentation_csv();
    for row in frag.lines().skip(1) {
        assert_eq!(
            cells(row),
            expected(&[(30, "20.0"), (60, "40.0"), (90, "40.0"), (120, "40.0")])
        );
    }
}

fn spark_fleet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spark-fleet"))
        .args(args)
        .output()
        .expect("run spark-fleet")
}

#[test]
fn command_writes_the_tables_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let trace = format!(
        "openb:{},{}",
        fixture("nodes.csv").display(),
        fixture("pods.csv").display()
    );
    let out = dir.path().join("out");
    let o = spark_fleet(&[
        "simulate",
        "--trace",
        &trace,
        "--protocol",
        "fgd",
        "--seeds",
        "42-44",
        "--policy",
        "Random",
        "--policy",
        "FGD",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("01-Random") && stdout.contains("06-FGD"),
        "{stdout}"
    );
    let alloc = std::fs::read_to_string(out.join("fgd-allocation.csv")).unwrap();
    let frag = std::fs::read_to_string(out.join("fgd-fragmentation.csv")).unwrap();
    for csv in [&alloc, &frag] {
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + 2 * 3);
        assert!(lines[0].starts_with("workload,sc_policy,tune,seed,total_gpus,0,1,2,"));
        assert!(lines[0].ends_with(",129,130"));
        let seeds: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split(',').nth(3).unwrap())
            .collect();
        assert_eq!(seeds, ["42", "43", "44", "42", "43", "44"]);
        assert!(lines[1..].iter().all(|l| l.split(',').count() == 136));
    }
    let svg = std::fs::read_to_string(out.join("fgd-allocation.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Random") && svg.contains("FGD"));
}

#[test]
fn bad_arguments_get_one_clear_line() {
    let trace = format!(
        "openb:{},{}",
        fixture("nodes.csv").display(),
        fixture("pods.csv").display()
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--trace",
                "simulations/traces/spark-small.jsonl",
                "--protocol",
                "fgd",
            ],
            "--protocol fgd needs --trace openb:NODES.csv,PODS.csv",
        ),
        (
            vec!["--trace", &trace, "--protocol", "fgd", "--seeds", "9-3"],
            "--seeds \"9-3\"",
        ),
        (
            vec!["--trace", &trace, "--protocol", "fgd", "--policy", "Tetris"],
            "unknown policy \"Tetris\"",
        ),
        (
            vec![
                "--trace",
                &trace,
                "--protocol",
                "fgd",
                "--policy",
                "FGD",
                "--policy",
                "fgd",
            ],
            "--policy FGD is listed twice",
        ),
        (
            vec!["--trace", &trace, "--protocol", "fdg"],
            "--protocol \"fdg\": expected replay or fgd",
        ),
        (
            vec!["--trace", &trace, "--seeds", "1-2"],
            "--seeds is for --protocol fgd",
        ),
        (
            vec![
                "--trace",
                "openb:missing-nodes.csv,missing-pods.csv",
                "--protocol",
                "fgd",
            ],
            "missing-nodes.csv",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (args, want) in cases {
        let mut all = vec!["simulate", "--out", dir.path().to_str().unwrap()];
        all.extend(args.iter().copied());
        let o = spark_fleet(&all);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

/// The paper's nodes take up to 1001 pods (their node list's `pods`), not a
/// kubelet's 110: 200 shares of 10 milli fill two cards.
#[test]
fn protocol_nodes_take_a_thousand_pods() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes.csv");
    let pods = dir.path().join("pods.csv");
    std::fs::write(
        &nodes,
        "sn,cpu_milli,memory_mib,gpu,model\ngpu-node,96000,786432,2,T4\n",
    )
    .unwrap();
    let mut list = String::from("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n");
    for i in 0..200 {
        list += &format!("p{i:03},100,100,1,10\n");
    }
    std::fs::write(&pods, list).unwrap();
    let protocol = Protocol::from_openb(&nodes, &pods).unwrap();
    let report = run_all(&protocol, &[Policy::BestFit], &[42]);
    let rows = &report.runs[0].rows;
    // 130% of 2000 milli: 260 pods of 10; 200 fit.
    assert_eq!((rows.placed, rows.failed), (200, 60));
    assert_eq!(*rows.allocated.last().unwrap(), 2000);
}
