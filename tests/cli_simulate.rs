//! `spark-fleet simulate` as a user runs it: summary on stdout, report and charts on disk,
//! prices for unpriced nodes from the config, bad traces → exit 2 naming the line.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn simulate(trace: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spark-fleet"))
        .args([
            "simulate",
            "--trace",
            trace.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .expect("run spark-fleet")
}

const TRACE: &str = r#"{"format":"spark-fleet-trace","version":1,"name":"one-node"}
{"t":0.0,"type":"node_add","name":"n1","labels":{"kubernetes.io/hostname":"n1"},"allocatable":{"cpu":"4","memory":"16Gi","pods":"110"}}
{"t":0.0,"type":"pod_submit","name":"job","namespace":"default","requests":{"cpu":"1","memory":"1Gi"},"duration_seconds":3600.0}
"#;

#[test]
fn report_summary_and_config_prices() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.jsonl");
    std::fs::write(&trace, TRACE).unwrap();
    let cost = |extra: &[&str], out: &str| -> f64 {
        let out_dir = dir.path().join(out);
        let o = simulate(&trace, &out_dir, extra);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains("spark-fleet") && stdout.contains("kube-default"),
            "{stdout}"
        );
        for chart in ["nodes.svg", "cost.svg", "pending.svg"] {
            assert!(out_dir.join(chart).exists(), "{chart}");
        }
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
                .unwrap();
        let p = &report["policies"]["spark-fleet"];
        assert_eq!(p["pods_bound"], 1);
        p["cost_total"].as_f64().unwrap()
    };
    let default_cost = cost(&[], "a");
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "simulation:\n  pricePerVcpuHour: {on-demand: 1.0}\n").unwrap();
    let custom_cost = cost(&["--config", cfg.to_str().unwrap()], "b");
    assert!(default_cost > 0.0);
    // The unpriced on-demand node costs its vCPUs times the configured rate.
    let ratio = custom_cost / default_cost;
    assert!(
        (ratio - 1.0 / 0.048).abs() < 1e-6,
        "{custom_cost} / {default_cost}"
    );
}

#[test]
fn malformed_trace_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("bad.jsonl");
    std::fs::write(
        &trace,
        TRACE.replace("duration_seconds", "duration_secondz"),
    )
    .unwrap();
    let o = simulate(&trace, &dir.path().join("out"), &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.jsonl:3") && err.contains("duration_secondz"),
        "{err}"
    );
}

/// 150 nodes (sampling needs at least 100) and a few pods.
fn sampling_trace() -> String {
    let mut t = String::from(r#"{"format":"spark-fleet-trace","version":1,"name":"sampling"}"#);
    for i in 0..150 {
        let cpu = if i == 149 { 64 } else { 4 };
        t.push_str(&format!(
            "\n{{\"t\":0.0,\"type\":\"node_add\",\"name\":\"n{i:03}\",\"allocatable\":{{\"cpu\":\"{cpu}\",\"memory\":\"64Gi\",\"pods\":\"110\"}}}}"
        ));
    }
    for i in 0..5 {
        t.push_str(&format!(
            "\n{{\"t\":{i}.0,\"type\":\"pod_submit\",\"name\":\"job-{i}\",\"requests\":{{\"cpu\":\"1\",\"memory\":\"1Gi\"}},\"duration_seconds\":60.0}}"
        ));
    }
    t.push('\n');
    t
}

#[test]
fn sampled_policy_writes_sampling_quality() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.jsonl");
    std::fs::write(&trace, sampling_trace()).unwrap();
    let run = |out: &str, extra: &[&str]| -> (String, Value) {
        let out_dir = dir.path().join(out);
        let mut args = vec!["--policy", "kube-default", "--policy", "kube-default@10"];
        args.extend_from_slice(extra);
        let o = simulate(&trace, &out_dir, &args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let report =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
                .unwrap();
        (String::from_utf8_lossy(&o.stdout).into_owned(), report)
    };
    let (stdout, report) = run("a", &[]);
    assert!(stdout.contains("sampling: regret p50/p99/max"), "{stdout}");
    assert!(report["policies"]["kube-default"]["sampling_quality"].is_null());
    let q = &report["policies"]["kube-default@10"]["sampling_quality"];
    assert_eq!(q["percentage_of_nodes_to_score"], 10);
    assert_eq!(q["decisions"], 5);
    assert!(q["differs_fraction"].as_f64().unwrap() > 0.0, "{q}");
    assert!(q["regret"]["max"].as_f64().unwrap() > 0.0, "{q}");
    assert!(report["timing"]["kube-default@10"]["shadow_scan_seconds"].is_number());

    let (stdout, report) = run("b", &["--no-sampling-quality"]);
    assert!(!stdout.contains("sampling:"), "{stdout}");
    assert!(report["policies"]["kube-default@10"]["sampling_quality"].is_null());

    let o = simulate(
        &trace,
        &dir.path().join("c"),
        &["--policy", "spark-fleet@abc"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("spark-fleet@abc") && err.contains("0..=100"),
        "{err}"
    );
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/traces")
        .join(name)
}

fn report_of(out_dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn policies_by_name_and_the_default_set() {
    let dir = tempfile::tempdir().unwrap();
    let trace = fixture("one-app-empty.jsonl");
    // Every named policy runs; the report and the summary use its name.
    let names = [
        "all-on-demand",
        "all-spot",
        "mixed-node-group",
        "karpenter-spread",
        "kube-default",
        "spark-fleet",
        "spark-fleet-webhook",
    ];
    let mut args: Vec<&str> = Vec::new();
    for n in names {
        args.extend(["--policy", n]);
    }
    let out = dir.path().join("named");
    let o = simulate(&trace, &out, &args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let report = report_of(&out);
    for n in names {
        assert!(report["policies"][n].is_object(), "{n}");
        assert!(stdout.contains(n), "{n}");
    }
    assert_eq!(report["reference"], "all-on-demand");
    assert!(out.join("cost-vs-losses.svg").exists());
    // spark-fleet without the webhook leaves the driver pending: the summary says why.
    assert!(
        stdout.contains("spark-fleet: 1 pod(s) never bound"),
        "{stdout}"
    );

    // No --policy on a Spark trace: the policies that answer the question.
    let out = dir.path().join("default");
    let o = simulate(&trace, &out, &[]);
    assert_eq!(o.status.code(), Some(0));
    let report = report_of(&out);
    let mut got: Vec<&str> = report["policies"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "all-on-demand",
            "all-spot",
            "karpenter-spread",
            "mixed-node-group",
            "spark-fleet",
            "spark-fleet-webhook"
        ]
    );

    // An unknown name is one clear error.
    let o = simulate(&trace, &dir.path().join("bad"), &["--policy", "all-spotty"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("all-spotty"), "{err}");

    // --autoscaler off: the trace's nodes only (none here), and the run still ends.
    let out = dir.path().join("off");
    let o = simulate(
        &trace,
        &out,
        &["--autoscaler", "off", "--policy", "spark-fleet-webhook"],
    );
    assert_eq!(o.status.code(), Some(0));
    let report = report_of(&out);
    let p = &report["policies"]["spark-fleet-webhook"];
    assert_eq!(p["ended_by"], "stalled");
    assert!(p["autoscaler"].is_null());
}
