//! The `explain` command as a user runs it: both outcomes, JSON contract, bad input → exit 2.

use serde_json::Value;
use std::process::Command;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/explain/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn explain(pod: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spark-fleet"))
        .args([
            "explain",
            "--snapshot",
            &fixture("cluster.yaml"),
            "--pod",
            &fixture(pod),
        ])
        .args(extra)
        .output()
        .expect("run spark-fleet")
}

fn json(pod: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--output", "json"];
    args.extend_from_slice(extra);
    let out = explain(pod, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn unschedulable_pod_gets_upstream_message() {
    for profile in ["spark-fleet", "kube-default"] {
        let v = json("pod-untolerated.yaml", &["--profile", profile]);
        assert_eq!(v["pod"], "default/big");
        assert_eq!(v["outcome"], "Unschedulable");
        assert_eq!(v["node"], Value::Null);
        assert_eq!(v["feasible"], serde_json::json!([]));
        assert_eq!(
            v["message"],
            // A 4-CPU request exceeds the small nodes' allocatable outright: since kube-scheduler
            // 1.34 that is unresolvable too, so preemption can help on no node.
            "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: spark}. \
             preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
        );
        let filtered = v["filtered"].as_array().unwrap();
        assert_eq!(filtered.len(), 5);
        assert_eq!(filtered[0]["node"], "small-1");
        assert_eq!(filtered[0]["plugin"], "NodeResourcesFit");
        assert_eq!(filtered[0]["reason"], "Insufficient cpu");
        assert_eq!(filtered[2]["plugin"], "TaintToleration");
        assert_eq!(v["preemption"], Value::Null);
    }
}

#[test]
fn driver_is_scheduled_on_demand_with_scores() {
    let v = json("pod-driver.yaml", &[]);
    assert_eq!(v["outcome"], "Scheduled");
    // Drivers stay off spot by default; small nodes fit too, so feasible lists them.
    let feasible: Vec<&str> = v["feasible"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(!feasible.contains(&"spark-1"), "{feasible:?}");
    assert!(feasible.contains(&"spark-2"));
    let node = v["node"].as_str().unwrap();
    assert_eq!(v["scores"][0]["node"], node);
    assert!(v["scores"][0]["plugins"]
        .as_object()
        .unwrap()
        .contains_key("NodeResourcesFit"));
    assert_eq!(
        v["message"],
        format!("Successfully assigned default/etl-driver to {node}")
    );
    let spot = v["filtered"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["node"] == "spark-1")
        .unwrap();
    assert_eq!(spot["plugin"], "CapacityMix");
}

#[test]
fn text_output_is_a_table() {
    let out = explain("pod-driver.yaml", &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("outcome: Scheduled"), "{text}");
    assert!(text.contains("feasible nodes"), "{text}");
    assert!(text.contains("filtered nodes"), "{text}");
    assert!(
        text.contains("application mix: target spot=40,on-demand=60 (soft), placed executors spot=0,on-demand=0, next executor wants on-demand"),
        "{text}"
    );
    // The skipped ConfigMap is reported on stderr, not fatal.
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipping kind ConfigMap"));
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let cases = [
        ("pod-bad-cpu.yaml", "cpu"),
        ("pod-no-containers.yaml", "spec.containers"),
        ("bad-yaml.yaml", "bad-yaml.yaml"),
        ("does-not-exist.yaml", "does-not-exist.yaml"),
    ];
    for (pod, needle) in cases {
        let out = explain(pod, &[]);
        assert_eq!(out.status.code(), Some(2), "{pod}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{pod}: {err}");
        assert!(err.contains(needle), "{pod}: {err}");
        assert!(err.contains(pod), "{pod}: names the file: {err}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn bad_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "schedulerName: x\nbogus: 1\n").unwrap();
    let out = explain("pod-driver.yaml", &["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}

#[test]
fn config_check_command() {
    let ok = Command::new(env!("CARGO_BIN_EXE_spark-fleet"))
        .args([
            "config",
            "check",
            &format!("{}/config/spark-fleet.yaml", env!("CARGO_MANIFEST_DIR")),
        ])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "spark:\n  executorCapacityMix: \"spot=0\"\n").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_spark-fleet"))
        .args(["config", "check", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("spark.executorCapacityMix"));
}

#[test]
fn preemption_respects_disruption_budgets_from_the_snapshot() {
    let run = |snapshot: &str| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_spark-fleet"))
            .args([
                "explain",
                "--snapshot",
                &fixture(snapshot),
                "--pod",
                &fixture("pod-urgent.yaml"),
                "--output",
                "json",
            ])
            .output()
            .expect("run spark-fleet");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let free = run("preempt-cluster.yaml");
    assert_eq!(free["outcome"], "Unschedulable");
    assert_eq!(
        free["preemption"],
        serde_json::json!({"node": "node-a", "victims": ["default/cheap"]})
    );
    let guarded = run("preempt-cluster-pdb.yaml");
    assert_eq!(
        guarded["preemption"],
        serde_json::json!({"node": "node-b", "victims": ["default/dear"]})
    );
}

/// An executor the admission webhook annotated: explain shows the type it was
/// admitted with and why, and the scheduler targets that type.
#[test]
fn shows_the_admitted_capacity_type_and_why() {
    let v = json("pod-executor-admitted.yaml", &[]);
    assert_eq!(v["admission"]["capacityType"], "spot");
    assert!(v["admission"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("mix spot=40,on-demand=60 (soft); counted spot 2"));
    let out = explain("pod-executor-admitted.yaml", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "admitted with capacity type spot (spark-fleet.io/capacity-type): mix spot=40"
        ),
        "{text}"
    );
    // Another pod has no admission.
    assert_eq!(json("pod-driver.yaml", &[])["admission"], Value::Null);
}
