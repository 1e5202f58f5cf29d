//! Trace formats end to end: native round trip, openb import of the fixture slice and of the
//! full node list, generator determinism and shape, and the committed `spark-small` trace.

use spark_fleet::sim::trace::{
    generate, openb, Event, ExecutorScaling, GenerateParams, OpenbOptions, Trace, TraceError,
    CAPACITY_SPOT, LABEL_CAPACITY_TYPE,
};
use std::collections::{BTreeMap, BTreeSet};

#[path = "support/traces.rs"]
mod traces;
use traces::repo;

fn to_jsonl(t: &Trace) -> String {
    let mut out = Vec::new();
    t.write_jsonl(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn parse(text: &str) -> Result<Trace, TraceError> {
    spark_fleet::sim::trace::native::parse_jsonl(text.as_bytes(), "mem.jsonl")
}

/// The parameters of `simulations/traces/spark-small.jsonl` (also in simulations/README.md).
fn spark_small_params() -> GenerateParams {
    GenerateParams {
        name: Some("spark-small".into()),
        apps: 60,
        nodes: 3,
        seed: 7,
        spot_fraction: 0.0,
        duration_hours: 4.0,
        spot_interruption_rate: Some(40.0),
        ..Default::default()
    }
}

const EVERY_FIELD: &str = r#"{"format":"spark-fleet-trace","version":1,"name":"all","source":"hand","seed":3}
{"t":0,"type":"node_add","name":"n1","labels":{"karpenter.sh/capacity-type":"spot","topology.kubernetes.io/zone":"zone-a"},"allocatable":{"cpu":"16","memory":"64Gi","nvidia.com/gpu":"8","pods":"110"},"taints":[{"key":"gpu","value":"true","effect":"NoSchedule"}],"price_per_hour":1.25,"gpu":{"count":8,"model":"T4"}}
{"t":0,"type":"node_add","name":"n2","allocatable":{"cpu":"7900m","memory":"31Gi"}}
{"t":1.5,"type":"app_submit","id":"a1","namespace":"etl","driver":{"requests":{"cpu":"1","memory":"4Gi"},"priority":100000},"executor":{"requests":{"cpu":"4","memory":"16Gi"},"priority":50000},"dynamic":{"min":1,"max":8},"work_executor_seconds":3600.25,"annotations":{"spark-fleet.io/executor-capacity-mix":"spot=40,on-demand=60"},"labels":{"team":"etl"}}
{"t":1.5,"type":"app_submit","id":"a2","driver":{"requests":{"cpu":"1"}},"executor":{"requests":{"cpu":"2"}},"executors":3,"work_executor_seconds":60}
{"t":2,"type":"pod_submit","name":"p","namespace":"web","requests":{"cpu":"500m","memory":"1Gi"},"priority":7,"duration_seconds":30.000001,"labels":{"app":"web"},"node_selector":{"disk":"ssd"},"tolerations":[{"key":"gpu","operator":"Exists","effect":"NoSchedule"},{"operator":"Exists"}],"annotations":{"x":"y"},"required_node_affinity":[{"key":"spark-fleet.io/gpu-model","operator":"In","values":["T4","G2"]},{"key":"rank","operator":"Gt","values":["3"]}],"scheduler_name":"other","gpu":{"milli":250,"models":["T4","G2"]}}
{"t":100,"type":"spot_interruption","node":"n1","notice_seconds":30}
{"t":130,"type":"node_remove","name":"n1"}
"#;

#[test]
fn native_round_trip_keeps_every_field() {
    let t = parse(EVERY_FIELD).unwrap();
    assert_eq!(t.events.len(), 7);
    let again = parse(&to_jsonl(&t)).unwrap();
    assert_eq!(again, t);
    assert_eq!(to_jsonl(&again), to_jsonl(&t), "writing is deterministic");

    let Event::NodeAdd(n1) = &t.events[0].event else {
        panic!()
    };
    let node = n1.to_node().unwrap();
    assert_eq!(node.allocatable.milli_cpu, 16_000);
    assert_eq!(node.allocatable.memory, 64 << 30);
    assert_eq!(node.labels.get_str("kubernetes.io/hostname"), Some("n1"));
    assert_eq!(node.taints.len(), 1);
    let Event::AppSubmit(a1) = &t.events[2].event else {
        panic!()
    };
    assert_eq!(a1.scaling(), ExecutorScaling::Dynamic { min: 1, max: 8 });
    assert_eq!(a1.executor_requests().unwrap().milli_cpu, 4000);
    let Event::PodSubmit(p) = &t.events[4].event else {
        panic!()
    };
    let reqs = p.affinity_requirements().unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].number, 3);
    assert_eq!(p.tolerations[1].to_toleration().key, None);
    // GPU cards: the node's count and model, the pod's share (count 1 by default).
    assert_eq!(
        node.allocatable
            .scalar(spark_fleet::model::Sym::new("alibabacloud.com/gpu-count")),
        8
    );
    assert_eq!(
        node.labels.get_str("alibabacloud.com/gpu-card-model"),
        Some("T4")
    );
    let g = p.gpu_request().unwrap().unwrap();
    assert_eq!((g.count, g.milli, g.models.len()), (1, 250, 2));
}

#[test]
fn generated_traces_round_trip() {
    for seed in [1, 2, 3] {
        let t = generate(&GenerateParams {
            seed,
            monthly_interruption_rate: 100.0,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(parse(&to_jsonl(&t)).unwrap(), t, "seed {seed}");
    }
}

#[test]
fn malformed_lines_report_line_and_field() {
    let lines: Vec<&str> = EVERY_FIELD.lines().collect();
    // (line to corrupt (1-based), replacement, text the message must contain)
    let cases = [
        (
            3,
            lines[2]
                .replace("\"cpu\"", "\"cpus\"")
                .replace("allocatable", "allocatables"),
            "allocatables",
        ),
        (3, lines[2].replace("7900m", "7900q"), "allocatable.cpu"),
        (5, lines[4].replace("\"executors\":3,", ""), "executors"),
        (
            6,
            lines[5].replace("\"priority\":7", "\"priority\":\"high\""),
            "invalid type",
        ),
        (6, lines[5].replace("\"Gt\"", "\"Greater\""), "Greater"),
        (
            6,
            lines[5].replace("duration_seconds\":30.000001", "duration_seconds\":-3"),
            "duration_seconds",
        ),
        (
            7,
            lines[6].replace("spot_interruption", "spot_warning"),
            "spot_warning",
        ),
        (8, lines[7].replace("\"t\":130", "\"t\":99"), "time-ordered"),
        (
            4,
            lines[3].replace("\"min\":1", "\"min\":1,\"mid\":2"),
            "unknown field `mid`",
        ),
        (
            6,
            lines[5].replace("\"milli\":250", "\"milli\":250,\"count\":2"),
            "field `gpu.milli`: a share of a GPU (250 milli) is for one GPU, but the GPU count is 2",
        ),
        (
            6,
            lines[5].replace("\"milli\":250", "\"milli\":1250"),
            "gpu.milli",
        ),
        (
            2,
            lines[1].replace("\"count\":8", "\"count\":65"),
            "gpu.count",
        ),
    ];
    for (line, bad, needle) in cases {
        let mut text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        text[line - 1] = bad;
        match parse(&text.join("\n")) {
            Err(TraceError::Line {
                line: got, message, ..
            }) => {
                assert_eq!(got, line, "{needle}: {message}");
                assert!(message.contains(needle), "wanted {needle:?} in {message:?}");
            }
            other => panic!("{needle}: expected a line error, got {other:?}"),
        }
    }
}

fn capacity_types(t: &Trace) -> Vec<String> {
    t.node_adds()
        .iter()
        .map(|n| n.labels[LABEL_CAPACITY_TYPE].clone())
        .collect()
}

fn fixture_import(options: &OpenbOptions) -> Trace {
    openb::import_openb(
        &repo("tests/fixtures/traces/openb_nodes_slice.csv"),
        &repo("tests/fixtures/traces/openb_pods_first50.csv"),
        options,
    )
    .unwrap()
}

#[test]
fn openb_fixture_import() {
    let t = fixture_import(&OpenbOptions::default());
    let nodes = t.node_adds();
    let pods = t.pod_submits();
    assert_eq!((nodes.len(), pods.len()), (24, 50));
    assert!(t.events.windows(2).all(|w| w[0].t <= w[1].t));

    let gpu_nodes: Vec<_> = nodes.iter().filter(|n| n.gpu.is_some()).collect();
    assert_eq!(gpu_nodes.len(), 14);
    assert!(gpu_nodes.iter().all(|n| n
        .gpu
        .as_ref()
        .is_some_and(|g| g.count > 0 && g.model.is_some())));
    for n in &nodes {
        n.to_node().unwrap();
    }

    // openb-pod-0000: 12000 milli-CPU, 16384 MiB, 1 whole GPU, LS, created at 0, ran 0..12537496.
    let (t0, p0) = pods
        .iter()
        .find(|(_, p)| p.name == "openb-pod-0000")
        .unwrap();
    assert_eq!(*t0, 0.0);
    let g0 = p0.gpu_request().unwrap().unwrap();
    assert_eq!((g0.count, g0.milli), (1, 1000));
    assert_eq!(p0.duration_seconds, Some(12_537_496.0));
    let r = p0.requests().unwrap();
    assert_eq!((r.milli_cpu, r.memory), (12_000, 16_384 << 20));
    // openb-pod-0001 shares a GPU: 460 milli of one card.
    let (_, p1) = pods
        .iter()
        .find(|(_, p)| p.name == "openb-pod-0001")
        .unwrap();
    let g1 = p1.gpu_request().unwrap().unwrap();
    assert_eq!((g1.count, g1.milli, g1.is_share()), (1, 460, true));
    // An 8-GPU pod asks for 8 whole cards.
    assert!(pods.iter().any(|(_, p)| p
        .gpu_request()
        .unwrap()
        .is_some_and(|g| g.count == 8 && g.milli == 1000)));
}

#[test]
fn openb_capacity_types_are_seeded() {
    let a = capacity_types(&fixture_import(&OpenbOptions::default()));
    let b = capacity_types(&fixture_import(&OpenbOptions::default()));
    assert_eq!(a, b, "same seed, same assignment");
    let other: Vec<Vec<String>> = (2..6)
        .map(|seed| {
            capacity_types(&fixture_import(&OpenbOptions {
                seed,
                ..Default::default()
            }))
        })
        .collect();
    assert!(
        other.iter().any(|o| *o != a),
        "other seeds change the assignment"
    );
}

#[test]
fn openb_full_trace_honours_spot_fraction_and_zones() {
    let options = OpenbOptions {
        seed: 11,
        spot_fraction: 0.3,
        zones: 3,
    };
    let t = Trace::load(
        &format!(
            "openb:{},{}",
            repo("simulations/traces/openb/openb_node_list_all_node.csv").display(),
            repo("simulations/traces/openb/openb_pod_list_default.csv").display()
        ),
        &options,
    )
    .unwrap();
    let nodes = t.node_adds();
    assert_eq!(nodes.len(), 1523);
    assert_eq!(t.events.len(), 1523 + 8152);
    let spot = nodes
        .iter()
        .filter(|n| n.capacity_type() == Some(CAPACITY_SPOT))
        .count();
    let fraction = spot as f64 / nodes.len() as f64;
    assert!((fraction - 0.3).abs() < 0.01, "{fraction}");
    let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &nodes {
        *zones
            .entry(n.labels["topology.kubernetes.io/zone"].as_str())
            .or_default() += 1;
    }
    assert_eq!(zones.len(), 3);
    assert!(
        zones.values().all(|&c| c.abs_diff(1523 / 3) <= 1),
        "{zones:?}"
    );
}

#[test]
fn generator_is_deterministic() {
    let p = GenerateParams::default();
    let a = to_jsonl(&generate(&p).unwrap());
    let b = to_jsonl(&generate(&p).unwrap());
    assert_eq!(a, b);
    let c = to_jsonl(&generate(&GenerateParams { seed: 8, ..p }).unwrap());
    assert_ne!(a, c);
}

#[test]
fn generated_shape_is_sane() {
    let params = GenerateParams {
        apps: 300,
        nodes: 60,
        seed: 5,
        monthly_interruption_rate: 200.0,
        duration_hours: 6.0,
        ..Default::default()
    };
    let t = generate(&params).unwrap();
    assert!(t.events.windows(2).all(|w| w[0].t <= w[1].t));
    let mut spot_nodes = BTreeSet::new();
    let mut interruptions = 0;
    let mut apps = Vec::new();
    for e in &t.events {
        match &e.event {
            Event::NodeAdd(n) => {
                let node = n.to_node().unwrap();
                assert!(node.allocatable.milli_cpu > 0);
                if n.capacity_type() == Some(CAPACITY_SPOT) {
                    spot_nodes.insert(n.name.clone());
                }
            }
            Event::SpotInterruption(s) => {
                assert!(
                    spot_nodes.contains(&s.node),
                    "{} is not a spot node",
                    s.node
                );
                assert_eq!(s.notice_seconds, 120.0);
                interruptions += 1;
            }
            Event::AppSubmit(a) => {
                a.driver_requests().unwrap();
                a.executor_requests().unwrap();
                assert!(e.t < 6.0 * 3600.0);
                apps.push(a);
            }
            Event::PodSubmit(p) => {
                p.requests().unwrap();
            }
            Event::NodeRemove(_) => panic!("the generator does not remove nodes"),
            Event::StorageClass(_) | Event::VolumeAdd(_) | Event::ClaimAdd(_) => {
                panic!("the generator writes no storage objects")
            }
            Event::SpotInterruptionRate(_) => panic!("written only when asked for"),
        }
    }
    assert!(interruptions > 0);
    assert_eq!(apps.len(), 300);
    let max_executors = |a: &&spark_fleet::sim::trace::AppSubmit| match a.scaling() {
        ExecutorScaling::Fixed(n) => n,
        ExecutorScaling::Dynamic { min, max } => {
            assert!(1 <= min && min <= max);
            max
        }
    };
    let counts: Vec<u32> = apps.iter().map(max_executors).collect();
    assert!(counts.iter().all(|&n| (2..=200).contains(&n)));
    let small = counts.iter().filter(|&&n| n <= 10).count();
    assert!(small > 200, "mostly small: {small}/300");
    assert!(counts.iter().any(|&n| n >= 30), "heavy tail");
    let dynamic = apps.iter().filter(|a| a.dynamic.is_some()).count();
    assert!((40..=110).contains(&dynamic), "{dynamic}");
    let mixed = apps
        .iter()
        .filter(|a| {
            a.annotations
                .contains_key("spark-fleet.io/executor-capacity-mix")
        })
        .count();
    assert!(mixed > 220, "{mixed}");
    assert!(apps
        .iter()
        .all(|a| a.driver.priority == 100_000 && a.executor.priority == 50_000));
    // Scheduled jobs arrive in the first two minutes of an hour: more apps there than a
    // uniform arrival process (2/60 of the time) would give.
    let at_top = apps
        .iter()
        .zip(
            t.events
                .iter()
                .filter(|e| matches!(e.event, Event::AppSubmit(_))),
        )
        .filter(|(_, e)| e.t % 3600.0 < 120.0)
        .count();
    assert!(at_top > 100, "{at_top}");
    for a in &apps {
        let per_executor = a.work_executor_seconds / max_executors(a) as f64;
        assert!((299.0..=3601.0).contains(&per_executor), "{per_executor}");
    }
}

#[test]
fn committed_spark_small_matches_generator() {
    let path = repo("simulations/traces/spark-small.jsonl");
    let fresh = to_jsonl(&generate(&spark_small_params()).unwrap());
    if std::env::var_os("SPARK_FLEET_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(committed, fresh, "regenerate with SPARK_FLEET_BLESS=1");
    let t = Trace::read_file(&path).unwrap();
    // An elastic cluster: a base pool of three on-demand nodes, the autoscaler's spot nodes
    // interrupted at 40 a node-month.
    let nodes = t
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::NodeAdd(_)))
        .count();
    assert_eq!(nodes, 3);
    assert!(matches!(
        &t.events[0].event,
        Event::SpotInterruptionRate(r) if r.per_month == 40.0
    ));
}

#[test]
fn readme_example_parses() {
    let readme = std::fs::read_to_string(repo("simulations/README.md")).unwrap();
    let start = readme.find("```json\n").unwrap() + "```json\n".len();
    let len = readme[start..].find("```").unwrap();
    let t = parse(&readme[start..start + len]).unwrap();
    assert_eq!(t.events.len(), 6);
    assert_eq!(t.header.seed, Some(7));
}

mod round_trip_property {
    use super::*;
    use proptest::prelude::*;
    use spark_fleet::sim::trace::{
        quantize, NodeRemove, SpotInterruption, TimedEvent, TraceHeader,
    };

    proptest! {
        #[test]
        fn arbitrary_times_survive(mut times in proptest::collection::vec(0.0f64..1e9, 1..40),
                                   notices in proptest::collection::vec(0.0f64..1e5, 40)) {
            times.sort_by(f64::total_cmp);
            let events = times
                .iter()
                .zip(&notices)
                .enumerate()
                .map(|(i, (&t, &notice))| TimedEvent {
                    t: quantize(t),
                    event: if i % 2 == 0 {
                        Event::NodeRemove(NodeRemove { name: format!("n{i}") })
                    } else {
                        Event::SpotInterruption(SpotInterruption {
                            node: format!("n{i}"),
                            notice_seconds: quantize(notice),
                        })
                    },
                })
                .collect();
            let t = Trace { header: TraceHeader::new(None, None, None), events };
            prop_assert_eq!(parse(&to_jsonl(&t)).unwrap(), t);
        }
    }
}
