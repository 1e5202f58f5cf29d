//! Importer for the Alibaba openb GPU cluster trace (`alibaba/clusterdata`,
//! `cluster-trace-gpu-v2023`). The rules are documented in `simulations/README.md`:
//!
//! - Every node is added at `t = 0`. Capacity type and zone are not in the trace; they are
//!   assigned from a ChaCha8 stream seeded with [`ImportOptions::seed`]: a seeded shuffle of the
//!   nodes, the first `round(n · spot_fraction)` of which are spot; then a second shuffle whose
//!   position `j` goes to zone `j mod zones` (zones `zone-a`, `zone-b`, ...).
//! - Prices are assumptions (on-demand per vCPU, per GiB and per GPU by model; spot at
//!   [`SPOT_PRICE_RATIO`] of on-demand), not data from the trace.
//! - GPUs at card level (`model::gpu`): a GPU node has `gpu` cards of `model`; a pod asks for
//!   `num_gpu` whole cards (`gpu_milli` 1000, or above, which the FGD paper's converter caps at
//!   1000) or a share of one card (`num_gpu` 1, `gpu_milli` below 1000), of the `gpu_spec`
//!   models. `num_gpu` 0 or `gpu_milli` 0: no GPU.
//! - Priority from `qos`: see [`priority_of_qos`].
//! - Samples without the time, QoS and `gpu_spec` columns (`multigpu20`): pod k of the file
//!   arrives at `t = k` s and runs to the end, at priority 0, on any GPU model.

use super::csv_import::{
    assemble, assign_capacity_and_zones, cpu_quantity, import_files, int, Table,
};
pub use super::csv_import::{
    gpu_price_per_hour, zone_name, ImportOptions, PODS_PER_NODE, PRICE_PER_GIB_HOUR,
    PRICE_PER_VCPU_HOUR, SPOT_PRICE_RATIO,
};
use super::{
    Event, NodeAdd, NodeGpuSpec, PodGpuSpec, PodSubmit, StringMap, TimedEvent, Trace, TraceError,
    DEFAULT_SCHEDULER_NAME,
};
use crate::model::LABEL_HOSTNAME;
use std::path::Path;

/// Pod label carrying the trace's QoS class.
pub const LABEL_QOS: &str = "spark-fleet.io/openb-qos";
/// Namespace of imported pods.
pub const NAMESPACE: &str = "openb";

/// QoS class → pod priority: `LS` (latency-sensitive services) 1000, `Guaranteed` 1000,
/// `Burstable` 500, `BE` (best effort) 0. Higher classes may preempt lower ones.
pub fn priority_of_qos(qos: &str) -> Option<i32> {
    Some(match qos {
        "LS" | "Guaranteed" => 1000,
        "Burstable" => 500,
        "BE" => 0,
        _ => return None,
    })
}

/// The openb importer's options (the CSV importers share them).
pub type OpenbOptions = ImportOptions;

/// Imports the node and pod CSV files.
pub fn import_openb(
    nodes_csv: &Path,
    pods_csv: &Path,
    options: &OpenbOptions,
) -> Result<Trace, TraceError> {
    import_files(
        "openb",
        "alibaba/clusterdata cluster-trace-gpu-v2023",
        nodes_csv,
        pods_csv,
        options,
        import_openb_readers,
    )
}

/// Imports from readers; `nodes_name`/`pods_name` name the sources in errors.
pub fn import_openb_readers<N: std::io::Read, P: std::io::Read>(
    nodes: N,
    nodes_name: &str,
    pods: P,
    pods_name: &str,
    options: &OpenbOptions,
) -> Result<Trace, TraceError> {
    options.check()?;
    let nodes = read_nodes(nodes, nodes_name, options)?;
    let pods = read_pods(pods, pods_name)?;
    assemble("openb", (nodes_name, pods_name), options, nodes, pods)
}

fn optional_int(column: &str, v: &str) -> Result<Option<u64>, String> {
    if v.is_empty() {
        Ok(None)
    } else {
        int(column, v).map(Some)
    }
}

fn read_nodes<R: std::io::Read>(
    input: R,
    file: &str,
    options: &OpenbOptions,
) -> Result<Vec<NodeAdd>, TraceError> {
    let mut table = Table::open(
        input,
        file,
        &["sn", "cpu_milli", "memory_mib", "gpu", "model"],
        &[],
    )?;
    let mut nodes = Vec::new();
    table.for_each(|_, v| {
        let (name, cpu, mem, gpu, model) = (v[0], v[1], v[2], v[3], v[4]);
        if name.is_empty() {
            return Err("column `sn` is empty".into());
        }
        let cpu = int("cpu_milli", cpu)?;
        let mem = int("memory_mib", mem)?;
        let gpu = int("gpu", gpu)?;
        let mut labels = StringMap::new();
        labels.insert(LABEL_HOSTNAME.into(), name.into());
        let mut allocatable = StringMap::new();
        allocatable.insert("cpu".into(), cpu_quantity(cpu));
        allocatable.insert("memory".into(), format!("{mem}Mi"));
        allocatable.insert("pods".into(), PODS_PER_NODE.to_string());
        let mut price =
            cpu as f64 / 1000.0 * PRICE_PER_VCPU_HOUR + mem as f64 / 1024.0 * PRICE_PER_GIB_HOUR;
        let gpu = if gpu > 0 {
            let count = u32::try_from(gpu)
                .ok()
                .filter(|&c| c as usize <= crate::model::gpu::MAX_CARDS)
                .ok_or_else(|| format!("column `gpu`: {gpu} GPUs, at most 64 per node"))?;
            price += gpu as f64 * gpu_price_per_hour(model);
            Some(NodeGpuSpec {
                count,
                model: (!model.is_empty()).then(|| model.to_owned()),
            })
        } else {
            None
        };
        nodes.push(NodeAdd {
            name: name.into(),
            labels,
            allocatable,
            taints: Vec::new(),
            price_per_hour: Some(price),
            gpu,
            volume_limits: Default::default(),
        });
        Ok(())
    })?;
    assign_capacity_and_zones(&mut nodes, options);
    Ok(nodes)
}

fn read_pods<R: std::io::Read>(input: R, file: &str) -> Result<Vec<TimedEvent>, TraceError> {
    // Some samples (`multigpu20`) carry only the first five columns.
    let required = ["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"];
    let optional = [
        "gpu_spec",
        "qos",
        "creation_time",
        "deletion_time",
        "scheduled_time",
    ];
    // Positions of the optional columns among the values `for_each` passes.
    const GPU_SPEC: usize = 5;
    const QOS: usize = 6;
    const CREATED: usize = 7;
    const DELETED: usize = 8;
    const SCHEDULED: usize = 9;
    let mut table = Table::open(input, file, &required, &optional)?;
    let (has_qos, has_creation) = (table.has(QOS), table.has(CREATED));
    let mut pods = Vec::new();
    table.for_each(|row, v| {
        let name = v[0];
        if name.is_empty() {
            return Err("column `name` is empty".into());
        }
        let cpu = int("cpu_milli", v[1])?;
        let mem = int("memory_mib", v[2])?;
        let num_gpu = int("num_gpu", v[3])?;
        let gpu_milli = int("gpu_milli", v[4])?;
        let qos = v[QOS];
        let priority = if has_qos {
            priority_of_qos(qos).ok_or_else(|| format!("column `qos`: unknown class {qos:?}"))?
        } else {
            0
        };
        // Without the column, pods arrive one a second in file order.
        let created = if has_creation {
            int("creation_time", v[CREATED])?
        } else {
            row as u64
        };
        let deleted = optional_int("deletion_time", v[DELETED])?;
        let scheduled = optional_int("scheduled_time", v[SCHEDULED])?;
        let duration = match (deleted, scheduled) {
            (Some(d), Some(s)) => Some(d.checked_sub(s).ok_or_else(|| {
                format!("deletion_time {d} is before scheduled_time {s}")
            })?),
            (Some(d), None) => Some(d.checked_sub(created).ok_or_else(|| {
                format!("deletion_time {d} is before creation_time {created}")
            })?),
            (None, _) => None,
        };
        let mut requests = StringMap::new();
        requests.insert("cpu".into(), cpu_quantity(cpu));
        requests.insert("memory".into(), format!("{mem}Mi"));
        // The FGD paper's converter: no GPU at 0 cards or 0 milli, milli capped at 1000.
        let gpu = match (num_gpu, gpu_milli) {
            (0, _) | (_, 0) => None,
            (n, m) if m >= 1000 => Some((n, 1000)),
            (1, m) => Some((1, m)),
            (n, m) => {
                return Err(format!(
                    "columns `num_gpu`, `gpu_milli`: {n} GPUs at {m} milli each is not a form openb uses"
                ))
            }
        };
        let gpu = match gpu {
            None => None,
            Some((n, m)) => {
                let count = u32::try_from(n)
                    .ok()
                    .filter(|&c| c as usize <= crate::model::gpu::MAX_CARDS)
                    .ok_or_else(|| format!("column `num_gpu`: {n} GPUs, at most 64 per pod"))?;
                let models: Vec<String> = crate::model::gpu::parse_models(v[GPU_SPEC])
                    .iter()
                    .map(|m| m.as_str().to_owned())
                    .collect();
                Some(PodGpuSpec {
                    count: Some(count),
                    milli: Some(m as u32),
                    models,
                })
            }
        };
        let mut labels = StringMap::new();
        if has_qos {
            labels.insert(LABEL_QOS.into(), qos.into());
        }
        pods.push(TimedEvent {
            t: created as f64,
            event: Event::PodSubmit(PodSubmit {
                name: name.into(),
                namespace: NAMESPACE.into(),
                requests,
                priority,
                duration_seconds: duration.map(|d| d as f64),
                labels,
                node_selector: StringMap::new(),
                tolerations: Vec::new(),
                annotations: StringMap::new(),
                required_node_affinity: Vec::new(),
                scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
                gpu,
                claims: Vec::new(),
            }),
        });
        Ok(())
    })?;
    Ok(pods)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "sn,cpu_milli,memory_mib,gpu,model\n\
        n0,32000,262144,0,\n\
        n1,96000,393216,8,G2\n\
        n2,64000,131072,2,T4\n";

    fn import(pods: &str, options: &OpenbOptions) -> Result<Trace, TraceError> {
        import_openb_readers(
            NODES.as_bytes(),
            "nodes.csv",
            pods.as_bytes(),
            "pods.csv",
            options,
        )
    }

    const POD_HEADER: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n";

    #[test]
    fn gpu_rules_durations_and_order() {
        let csv = format!(
            "{POD_HEADER}\
             whole,12000,16384,2,1000,,LS,Running,50,150,60\n\
             share,6000,12288,1,460,T4|G2|T4,BE,Running,10,100,\n\
             cpu,500,1024,0,0,,Burstable,Pending,10,,\n"
        );
        let t = import(&csv, &OpenbOptions::default()).unwrap();
        let pods = t.pod_submits();
        let names: Vec<&str> = pods.iter().map(|(_, p)| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["share", "cpu", "whole"],
            "sorted by creation time, stable"
        );
        let (t_whole, whole) = pods[2];
        assert_eq!(t_whole, 50.0);
        assert_eq!(whole.duration_seconds, Some(90.0));
        let g = whole.gpu_request().unwrap().unwrap();
        assert_eq!((g.count, g.milli, g.models.len()), (2, 1000, 0));
        assert_eq!(whole.requests.len(), 2, "cpu and memory; GPUs are cards");
        assert_eq!(whole.requests["cpu"], "12");
        assert_eq!(whole.priority, 1000);
        let share = pods[0].1;
        let g = share.gpu_request().unwrap().unwrap();
        assert_eq!(
            (g.count, g.milli, g.models_joined().as_str()),
            (1, 460, "T4|G2")
        );
        assert_eq!(
            share.duration_seconds,
            Some(90.0),
            "never scheduled: deletion - creation"
        );
        assert_eq!(share.priority, 0);
        let cpu = pods[1].1;
        assert_eq!(cpu.duration_seconds, None);
        assert_eq!(cpu.gpu, None);
        assert_eq!(cpu.requests["cpu"], "500m");
        assert_eq!(cpu.priority, 500);
        let Event::NodeAdd(n1) = &t.events[1].event else {
            panic!()
        };
        assert_eq!(
            n1.gpu,
            Some(NodeGpuSpec {
                count: 8,
                model: Some("G2".into())
            })
        );
        let node = n1.to_node().unwrap();
        assert_eq!(crate::model::gpu::node_cards(&node.allocatable), 8);
        assert_eq!(
            node.labels.get_str(crate::model::gpu::LABEL_GPU_MODEL),
            Some("G2")
        );
        assert_eq!(node.allocatable.memory, 393216 << 20);
        assert_eq!(node.allocatable.milli_cpu, 96000);
    }

    #[test]
    fn five_column_samples_arrive_in_file_order() {
        // The multigpu20 sample's form: no gpu_spec, qos or times.
        let csv = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n\
                   a,12000,16384,8,1000\n\
                   b,6000,12288,1,460\n\
                   c,500,1024,0,0\n";
        let t = import(csv, &OpenbOptions::default()).unwrap();
        let pods = t.pod_submits();
        let seen: Vec<(f64, &str)> = pods.iter().map(|(t, p)| (*t, p.name.as_str())).collect();
        assert_eq!(seen, [(0.0, "a"), (1.0, "b"), (2.0, "c")]);
        for (_, p) in &pods {
            assert_eq!(p.priority, 0);
            assert_eq!(p.duration_seconds, None);
            assert!(p.required_node_affinity.is_empty());
            assert!(!p.labels.contains_key(LABEL_QOS));
        }
        assert_eq!(pods[0].1.gpu_request().unwrap().unwrap().count, 8);
        assert_eq!(pods[1].1.gpu_request().unwrap().unwrap().milli, 460);
        // A column that is there must still hold valid values.
        let e = import(
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,creation_time\nx,1,1,0,0,\n",
            &OpenbOptions::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pods.csv:2: column `creation_time`"),
            "{e}"
        );
        let e = import(
            "name,cpu_milli,memory_mib,num_gpu\nx,1,1,0\n",
            &OpenbOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing column `gpu_milli`"), "{e}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let csv = format!(
            "{POD_HEADER}ok,1,1,0,0,,LS,Running,0,1,0\nbad,1,1,0,0,,Premium,Running,0,1,0\n"
        );
        match import(&csv, &OpenbOptions::default()) {
            Err(TraceError::Line {
                file,
                line,
                message,
            }) => {
                assert_eq!((file.as_str(), line), ("pods.csv", 3));
                assert!(message.contains("Premium"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let csv = format!("{POD_HEADER}x,1,lots,0,0,,LS,Running,0,1,0\n");
        let e = import(&csv, &OpenbOptions::default()).unwrap_err();
        assert!(
            e.to_string().starts_with("pods.csv:2: column `memory_mib`"),
            "{e}"
        );
        // A GPU count that would overflow as GPU-milli is refused, not multiplied.
        let csv = format!("{POD_HEADER}x,1,1,9223372036854775807,1000,,LS,Running,0,1,0\n");
        let e = import(&csv, &OpenbOptions::default()).unwrap_err();
        assert!(
            e.to_string().starts_with("pods.csv:2: column `num_gpu`"),
            "{e}"
        );
        let e = import("name,cpu_milli\nx,1\n", &OpenbOptions::default()).unwrap_err();
        assert!(e.to_string().contains("missing column `memory_mib`"), "{e}");
        let bad = OpenbOptions {
            spot_fraction: 1.5,
            ..Default::default()
        };
        assert!(matches!(
            import(POD_HEADER, &bad),
            Err(TraceError::Options(_))
        ));
    }

    #[test]
    fn spot_nodes_are_discounted() {
        let all_spot = OpenbOptions {
            spot_fraction: 1.0,
            ..Default::default()
        };
        let spot = import(POD_HEADER, &all_spot).unwrap();
        let od = import(
            POD_HEADER,
            &OpenbOptions {
                spot_fraction: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        let price = |t: &Trace| match &t.events[0].event {
            Event::NodeAdd(n) => n.price_per_hour.unwrap(),
            _ => panic!(),
        };
        // n0: 32 vCPU, 256 GiB, no GPU.
        let want = 32.0 * PRICE_PER_VCPU_HOUR + 256.0 * PRICE_PER_GIB_HOUR;
        assert!((price(&od) - want).abs() < 1e-6);
        assert!((price(&spot) - want * SPOT_PRICE_RATIO).abs() < 1e-6);
    }
}
