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

/// `explain` against a snapshot with storage objects: each node's volume
/// verdict, and what VolumeBinding would do on the chosen node.
fn explain_volumes(pod: &str, output: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spark-fleet"))
        .args([
            "explain",
            "--snapshot",
            &fixture("volumes-cluster.yaml"),
            "--pod",
            &fixture(pod),
        ])
        .args(output)
        .output()
        .expect("run spark-fleet")
}

#[test]
fn volume_verdicts_are_explained() {
    for profile in ["spark-fleet", "kube-default"] {
        let out = explain_volumes(
            "pod-executor-volumes.yaml",
            &["--output", "json", "--profile", profile],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["outcome"], "Scheduled", "{profile}");
        assert_eq!(v["node"], "node-b", "{profile}: the shuffle volume's zone");
        let verdict = |node: &str| {
            v["filtered"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["node"] == node)
                .map(|f| {
                    (
                        f["plugin"].as_str().unwrap().to_owned(),
                        f["reason"].as_str().unwrap().to_owned(),
                    )
                })
                .unwrap()
        };
        assert_eq!(
            verdict("node-a"),
            (
                "VolumeBinding".into(),
                "node(s) had volume node affinity conflict".into()
            )
        );
        // node-c attaches its one EBS volume already; the executor needs two more.
        assert_eq!(
            verdict("node-c"),
            (
                "NodeVolumeLimits".into(),
                "node(s) exceed max volume count".into()
            )
        );
    }
    let out = explain_volumes("pod-executor-volumes.yaml", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "volume binding: claim etl-exec-1-pvc-0 would be provisioned for node node-b"
        ),
        "{text}"
    );
}

#[test]
fn a_missing_claim_is_explained_as_upstream_words_it() {
    let out = explain_volumes("pod-missing-claim.yaml", &["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "Unschedulable");
    assert_eq!(
        v["message"],
        "0/3 nodes are available: persistentvolumeclaim \"etl-exec-2-pvc-0\" not found. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
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

#[test]
fn gpu_share_shows_the_card_and_free_milli_per_card() {
    let run = |pod: &str, output: &str| {
        Command::new(env!("CARGO_BIN_EXE_spark-fleet"))
            .args(["explain", "--snapshot", &fixture("gpu-cluster.yaml")])
            .args(["--pod", &fixture(pod), "--output", output])
            .output()
            .expect("run spark-fleet")
    };
    let out = run("pod-gpu-share.yaml", "json");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Only gpu-a has T4 cards; its card 1 has 300 milli left, so the share goes on card 0.
    assert_eq!(v["node"], "gpu-a");
    assert_eq!(v["gpu_cards"], "0");
    assert_eq!(
        v["gpus"],
        serde_json::json!([
            {"node": "gpu-a", "model": "T4", "free_milli": [1000, 300]},
            {"node": "gpu-b", "model": "V100M16", "free_milli": [1000, 1000, 1000, 1000]},
        ])
    );
    let filtered = v["filtered"].as_array().unwrap();
    assert_eq!(filtered[0]["node"], "gpu-b");
    assert_eq!(filtered[0]["plugin"], "GpuShare");
    let text = String::from_utf8(run("pod-gpu-share.yaml", "text").stdout).unwrap();
    assert!(text.contains("GPU cards: 0"), "{text}");
    assert!(
        text.contains("gpu-a") && text.contains("1000 300"),
        "{text}"
    );
    // Without GPU requests or GPU nodes the JSON has neither field.
    let plain = json("pod-driver.yaml", &[]);
    assert!(plain.get("gpus").is_none() && plain.get("gpu_cards").is_none());
}
