//! Importer for the Alibaba spot GPU trace (`alibaba/clusterdata`, `cluster-trace-v2026-spot-gpu`,
//! the data of the ASPLOS '26 GFS paper). The rules are documented in `simulations/README.md`:
//!
//! - Nodes (`node_info_df.csv`) are added at `t = 0` as `spot-gpu-{node_name}`; capacity type,
//!   zone and price follow the same seeded rules as openb ([`super::csv_import`]).
//! - Memory is not in the trace: nodes and pods get [`MEMORY_GIB_PER_VCPU`] GiB per vCPU, so
//!   memory never binds before CPU does.
//! - Each job (`job_info_df.csv`) becomes `worker_num` pods `{job_name}-{k}` submitted at
//!   `submit_time`, each with the job's `cpu_request` vCPUs and `gpu_request` GPUs (per worker),
//!   required to run on the job's GPU model, for `duration` seconds.
//! - `HP` jobs get priority [`PRIORITY_HP`], `Spot` jobs [`PRIORITY_SPOT`], so HP may preempt Spot.
//!   The trace does not say which nodes serve Spot jobs, so Spot pods carry no capacity-type
//!   constraint.

use super::csv_import::{
    assemble, assign_capacity_and_zones, gpu_price_per_hour, import_files, int, ImportOptions,
    Table, PODS_PER_NODE, PRICE_PER_GIB_HOUR, PRICE_PER_VCPU_HOUR,
};
use super::{
    quantize, AffinityRequirement, Event, NodeAdd, PodSubmit, SelectorOperator, StringMap,
    TimedEvent, Trace, TraceError, DEFAULT_SCHEDULER_NAME, LABEL_GPU_MODEL, RESOURCE_GPU,
};
use crate::model::LABEL_HOSTNAME;
use std::path::Path;

/// Namespace of imported pods.
pub const NAMESPACE: &str = "spot-gpu";
/// Node names are this prefix and the trace's `node_name` (which is a bare number).
pub const NODE_PREFIX: &str = "spot-gpu-";
/// Memory per vCPU, for nodes and pods alike (assumption: the trace has no memory; 8 GiB per
/// vCPU is a common GPU-instance ratio, and the same ratio on both sides keeps memory neutral).
pub const MEMORY_GIB_PER_VCPU: u64 = 8;
/// Priority of `HP` (high-priority, strict SLO) jobs' pods.
pub const PRIORITY_HP: i32 = 1000;
/// Priority of `Spot` (opportunistic) jobs' pods: the lowest, so HP pods may preempt them.
pub const PRIORITY_SPOT: i32 = 0;
/// Pod label: the trace's `job_name`.
pub const LABEL_JOB: &str = "spark-fleet.io/job";
/// Pod label: the job type, `HP` or `Spot`.
pub const LABEL_JOB_TYPE: &str = "spark-fleet.io/job-type";
/// Pod label: the trace's `organization` (a cost organization id).
pub const LABEL_ORGANIZATION: &str = "spark-fleet.io/organization";

/// A job's type: its column value, matched without regard to case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    Hp,
    Spot,
}

impl JobType {
    pub fn parse(v: &str) -> Option<JobType> {
        if v.eq_ignore_ascii_case("HP") {
            Some(JobType::Hp)
        } else if v.eq_ignore_ascii_case("Spot") {
            Some(JobType::Spot)
        } else {
            None
        }
    }

    /// The label value, spelled as the upstream README does.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Hp => "HP",
            JobType::Spot => "Spot",
        }
    }

    pub fn priority(self) -> i32 {
        match self {
            JobType::Hp => PRIORITY_HP,
            JobType::Spot => PRIORITY_SPOT,
        }
    }
}

/// Imports the node and job CSV files.
pub fn import_spot_gpu(
    nodes_csv: &Path,
    jobs_csv: &Path,
    options: &ImportOptions,
) -> Result<Trace, TraceError> {
    import_files(
        "spot-gpu",
        "alibaba/clusterdata cluster-trace-v2026-spot-gpu",
        nodes_csv,
        jobs_csv,
        options,
        import_spot_gpu_readers,
    )
}

/// Imports from readers; `nodes_name`/`jobs_name` name the sources in errors.
pub fn import_spot_gpu_readers<N: std::io::Read, J: std::io::Read>(
    nodes: N,
    nodes_name: &str,
    jobs: J,
    jobs_name: &str,
    options: &ImportOptions,
) -> Result<Trace, TraceError> {
    options.check()?;
    let nodes = read_nodes(nodes, nodes_name, options)?;
    let pods = read_jobs(jobs, jobs_name)?;
    assemble("spot-gpu", (nodes_name, jobs_name), options, nodes, pods)
}

/// Most workers one job may ask for: each becomes a pod in memory, and a row asking for
/// billions would exhaust it rather than fail with its line.
pub const MAX_WORKERS: u64 = 100_000;

/// A count that must be at least 1.
fn positive(column: &str, v: &str) -> Result<u64, String> {
    match int(column, v)? {
        0 => Err(format!("column `{column}`: must be at least 1")),
        n => Ok(n),
    }
}

/// Seconds: a finite, non-negative number (fractions allowed).
fn seconds(column: &str, v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(quantize(s)),
        _ => Err(format!(
            "column `{column}`: {v:?} is not a non-negative number of seconds"
        )),
    }
}

fn memory_of(vcpus: u64) -> String {
    format!("{}Gi", vcpus * MEMORY_GIB_PER_VCPU)
}

fn read_nodes<R: std::io::Read>(
    input: R,
    file: &str,
    options: &ImportOptions,
) -> Result<Vec<NodeAdd>, TraceError> {
    let mut table = Table::open(
        input,
        file,
        &["node_name", "gpu_model", "gpu_capacity_num", "cpu_num"],
        &[],
    )?;
    let mut nodes = Vec::new();
    table.for_each(|_, v| {
        let (id, model) = (v[0], v[1]);
        if id.is_empty() {
            return Err("column `node_name` is empty".into());
        }
        let gpus = int("gpu_capacity_num", v[2])?;
        let vcpus = positive("cpu_num", v[3])?;
        let name = format!("{NODE_PREFIX}{id}");
        let mut labels = StringMap::new();
        labels.insert(LABEL_HOSTNAME.into(), name.clone());
        if !model.is_empty() {
            labels.insert(LABEL_GPU_MODEL.into(), model.into());
        }
        let mut allocatable = StringMap::new();
        allocatable.insert("cpu".into(), vcpus.to_string());
        allocatable.insert("memory".into(), memory_of(vcpus));
        allocatable.insert("pods".into(), PODS_PER_NODE.to_string());
        if gpus > 0 {
            allocatable.insert(RESOURCE_GPU.into(), gpus.to_string());
        }
        let price = vcpus as f64
            * (PRICE_PER_VCPU_HOUR + MEMORY_GIB_PER_VCPU as f64 * PRICE_PER_GIB_HOUR)
            + gpus as f64 * gpu_price_per_hour(model);
        nodes.push(NodeAdd {
            name,
            labels,
            allocatable,
            taints: Vec::new(),
            price_per_hour: Some(price),
            gpu: None,
            volume_limits: Default::default(),
        });
        Ok(())
    })?;
    assign_capacity_and_zones(&mut nodes, options);
    Ok(nodes)
}

fn read_jobs<R: std::io::Read>(input: R, file: &str) -> Result<Vec<TimedEvent>, TraceError> {
    let columns = [
        "job_name",
        "organization",
        "gpu_model",
        "cpu_request",
        "gpu_request",
        "worker_num",
        "submit_time",
        "duration",
        "job_type",
    ];
    let mut table = Table::open(input, file, &columns, &[])?;
    let mut pods = Vec::new();
    table.for_each(|_, v| {
        let (job, organization, model) = (v[0], v[1], v[2]);
        if job.is_empty() {
            return Err("column `job_name` is empty".into());
        }
        let vcpus = positive("cpu_request", v[3])?;
        // Zero GPUs is a CPU-only worker; a count above every node's stays pending.
        let gpus = int("gpu_request", v[4])?;
        let workers = positive("worker_num", v[5])?;
        if workers > MAX_WORKERS {
            return Err(format!(
                "column `worker_num`: {workers} workers, more than {MAX_WORKERS}"
            ));
        }
        let submitted = seconds("submit_time", v[6])?;
        // Empty: the job had not finished when the trace was cut, so it runs to the end.
        let duration = if v[7].is_empty() {
            None
        } else {
            Some(seconds("duration", v[7])?)
        };
        let job_type = JobType::parse(v[8]).ok_or_else(|| {
            format!(
                "column `job_type`: {:?} is neither `HP` nor `Spot` (any case)",
                v[8]
            )
        })?;
        let mut requests = StringMap::new();
        requests.insert("cpu".into(), vcpus.to_string());
        requests.insert("memory".into(), memory_of(vcpus));
        if gpus > 0 {
            requests.insert(RESOURCE_GPU.into(), gpus.to_string());
        }
        let required_node_affinity = if model.is_empty() {
            Vec::new()
        } else {
            vec![AffinityRequirement {
                key: LABEL_GPU_MODEL.into(),
                operator: SelectorOperator::In,
                values: vec![model.into()],
            }]
        };
        let mut labels = StringMap::new();
        labels.insert(LABEL_JOB.into(), job.into());
        labels.insert(LABEL_JOB_TYPE.into(), job_type.as_str().into());
        if !organization.is_empty() {
            labels.insert(LABEL_ORGANIZATION.into(), organization.into());
        }
        for k in 0..workers {
            pods.push(TimedEvent {
                t: submitted,
                event: Event::PodSubmit(PodSubmit {
                    name: format!("{job}-{k}"),
                    namespace: NAMESPACE.into(),
                    requests: requests.clone(),
                    priority: job_type.priority(),
                    duration_seconds: duration,
                    labels: labels.clone(),
                    node_selector: StringMap::new(),
                    tolerations: Vec::new(),
                    annotations: StringMap::new(),
                    required_node_affinity: required_node_affinity.clone(),
                    scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
                    gpu: None,
                    claims: Vec::new(),
                }),
            });
        }
        Ok(())
    })?;
    Ok(pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LABEL_ZONE;
    use crate::sim::trace::{CAPACITY_SPOT, LABEL_CAPACITY_TYPE};

    /// The first rows of `node_info_df.csv`, in its column order.
    const NODES: &str = "gpu_model,gpu_capacity_num,cpu_num,node_name\n\
        GPU-series-1,4,192,0\n\
        GPU-series-1,1,192,1\n\
        A10,1,128,2\n\
        A100-SXM4-80GB,8,128,3\n";

    const JOB_HEADER: &str = "job_name,organization,gpu_model,cpu_request,gpu_request,worker_num,submit_time,duration,job_type\n";

    /// The four sample rows of the upstream README.
    const README_JOBS: &str = "239255,13,A10,20,1,1,0,2764799,HP\n\
        253689,13,A10,8,1,1,0,15897599,HP\n\
        437260,57,A100-SXM4-80GB,15,1,16,9589663,41060,Spot\n\
        437261,57,A100-SXM4-80GB,15,1,94,9589663,71718,Spot\n";

    fn import_with(nodes: &str, jobs: &str, options: &ImportOptions) -> Result<Trace, TraceError> {
        import_spot_gpu_readers(
            nodes.as_bytes(),
            "nodes.csv",
            jobs.as_bytes(),
            "jobs.csv",
            options,
        )
    }

    fn import(jobs: &str) -> Result<Trace, TraceError> {
        import_with(NODES, jobs, &ImportOptions::default())
    }

    fn line_error(e: TraceError) -> (String, usize, String) {
        match e {
            TraceError::Line {
                file,
                line,
                message,
            } => (file, line, message),
            other => panic!("not a line error: {other:?}"),
        }
    }

    #[test]
    fn nodes_convert_with_assumed_memory_and_prices() {
        let on_demand = ImportOptions {
            spot_fraction: 0.0,
            ..Default::default()
        };
        let t = import_with(NODES, JOB_HEADER, &on_demand).unwrap();
        let nodes = t.node_adds();
        assert_eq!(nodes.len(), 4);
        let a100 = nodes[3];
        assert_eq!(a100.name, "spot-gpu-3");
        assert_eq!(a100.labels[LABEL_HOSTNAME], "spot-gpu-3");
        assert_eq!(a100.labels[LABEL_GPU_MODEL], "A100-SXM4-80GB");
        assert_eq!(a100.allocatable[RESOURCE_GPU], "8");
        let node = a100.to_node().unwrap();
        assert_eq!(node.allocatable.milli_cpu, 128_000);
        assert_eq!(node.allocatable.memory, 1024 << 30, "8 GiB per vCPU");
        assert_eq!(node.allocatable.pods, 110);
        // 128 vCPU × ($0.04 + 8 GiB × $0.005) + 8 × $3.40.
        let want = 128.0 * 0.08 + 8.0 * 3.40;
        assert!((a100.price_per_hour.unwrap() - want).abs() < 1e-6);
        let all_spot = ImportOptions {
            spot_fraction: 1.0,
            ..Default::default()
        };
        let t = import_with(NODES, JOB_HEADER, &all_spot).unwrap();
        let spot = t.node_adds()[3];
        assert_eq!(spot.labels[LABEL_CAPACITY_TYPE], CAPACITY_SPOT);
        assert!((spot.price_per_hour.unwrap() - want * 0.35).abs() < 1e-6);
        // Anonymised models are priced at the default.
        let s1 = t.node_adds()[0].price_per_hour.unwrap();
        assert!((s1 - (192.0 * 0.08 + 4.0) * 0.35).abs() < 1e-6, "{s1}");
    }

    #[test]
    fn jobs_expand_into_worker_pods() {
        let t = import(&format!("{JOB_HEADER}{README_JOBS}")).unwrap();
        let pods = t.pod_submits();
        assert_eq!(pods.len(), 1 + 1 + 16 + 94);
        let (t0, hp) = pods[0];
        assert_eq!((t0, hp.name.as_str()), (0.0, "239255-0"));
        assert_eq!(hp.namespace, NAMESPACE);
        assert_eq!(hp.priority, PRIORITY_HP);
        assert_eq!(hp.duration_seconds, Some(2_764_799.0));
        assert_eq!(hp.requests["cpu"], "20");
        assert_eq!(hp.requests["memory"], "160Gi");
        assert_eq!(hp.requests[RESOURCE_GPU], "1");
        assert_eq!(hp.labels[LABEL_JOB], "239255");
        assert_eq!(hp.labels[LABEL_JOB_TYPE], "HP");
        assert_eq!(hp.labels[LABEL_ORGANIZATION], "13");
        assert_eq!(hp.required_node_affinity[0].key, LABEL_GPU_MODEL);
        assert_eq!(hp.required_node_affinity[0].operator, SelectorOperator::In);
        assert_eq!(hp.required_node_affinity[0].values, ["A10"]);
        let big: Vec<_> = pods
            .iter()
            .filter(|(_, p)| p.labels[LABEL_JOB] == "437261")
            .collect();
        assert_eq!(big.len(), 94);
        let names: std::collections::BTreeSet<&str> =
            big.iter().map(|(_, p)| p.name.as_str()).collect();
        assert_eq!(names.len(), 94, "unique pod names");
        assert!(names.contains("437261-0") && names.contains("437261-93"));
        for (t, p) in big {
            assert_eq!(*t, 9_589_663.0);
            assert_eq!(p.priority, PRIORITY_SPOT);
            assert_eq!(p.labels[LABEL_JOB_TYPE], "Spot");
            assert_eq!(p.duration_seconds, Some(71_718.0));
            let r = p.requests().unwrap();
            assert_eq!((r.milli_cpu, r.memory), (15_000, 120 << 30));
            assert_eq!(p.requests[RESOURCE_GPU], "1", "per worker");
            assert_eq!(p.required_node_affinity[0].values, ["A100-SXM4-80GB"]);
        }
    }

    #[test]
    fn jobs_are_sorted_by_submit_time_and_empty_fields_relax() {
        let csv = format!(
            "{JOB_HEADER}late,1,A10,4,1,2,50,,spot\n\
             early,,,2,0,1,10.5,30,hp\n"
        );
        let t = import(&csv).unwrap();
        let seen: Vec<(f64, &str)> = t
            .pod_submits()
            .iter()
            .map(|(t, p)| (*t, p.name.as_str()))
            .collect();
        assert_eq!(
            seen,
            [(10.5, "early-0"), (50.0, "late-0"), (50.0, "late-1")]
        );
        let pods = t.pod_submits();
        let early = pods[0].1;
        assert!(
            early.required_node_affinity.is_empty(),
            "no model: any node"
        );
        assert!(!early.requests.contains_key(RESOURCE_GPU), "0 GPUs");
        assert!(!early.labels.contains_key(LABEL_ORGANIZATION));
        assert_eq!(pods[1].1.duration_seconds, None, "runs to the end");
    }

    #[test]
    fn capacity_types_are_seeded_and_exact() {
        let nodes: String =
            std::iter::once("gpu_model,gpu_capacity_num,cpu_num,node_name\n".into())
                .chain((0..20).map(|i| format!("A10,1,128,{i}\n")))
                .collect();
        let types = |seed: u64| -> Vec<String> {
            let options = ImportOptions {
                seed,
                spot_fraction: 0.3,
                zones: 3,
            };
            let t = import_with(&nodes, JOB_HEADER, &options).unwrap();
            t.node_adds()
                .iter()
                .map(|n| format!("{}/{}", n.labels[LABEL_CAPACITY_TYPE], n.labels[LABEL_ZONE]))
                .collect()
        };
        let a = types(1);
        assert_eq!(a, types(1), "same seed, same assignment");
        assert_eq!(a.iter().filter(|c| c.starts_with("spot/")).count(), 6);
        for zone in ["zone-a", "zone-b", "zone-c"] {
            let n = a.iter().filter(|c| c.ends_with(zone)).count();
            assert!((6..=7).contains(&n), "{zone}: {n}");
        }
        assert!((2..6).any(|s| types(s) != a), "other seeds differ");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let row = |fields: &str| import(&format!("{JOB_HEADER}{README_JOBS}{fields}\n"));
        for (fields, column) in [
            ("x,1,A10,4,1,0,0,1,HP", "worker_num"),
            ("x,1,A10,4,1,-2,0,1,HP", "worker_num"),
            ("x,1,A10,4,1.5,1,0,1,HP", "gpu_request"),
            ("x,1,A10,0,1,1,0,1,HP", "cpu_request"),
            ("x,1,A10,2.5,1,1,0,1,HP", "cpu_request"),
            ("x,1,A10,4,1,1,-1,1,HP", "submit_time"),
            ("x,1,A10,4,1,1,0,soon,HP", "duration"),
            ("x,1,A10,4,1,1,0,1,Premium", "job_type"),
            (",1,A10,4,1,1,0,1,HP", "job_name"),
            ("x,1,A10,4,1,100001,0,1,HP", "worker_num"),
            ("x,1,A10,2305843009213693952,1,1,0,1,HP", "cpu_request"),
        ] {
            let (file, line, message) = line_error(row(fields).unwrap_err());
            assert_eq!((file.as_str(), line), ("jobs.csv", 6), "{fields}");
            assert!(message.contains(&format!("column `{column}`")), "{message}");
        }
        let e = import("job_name,organization\n1,2\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("jobs.csv:1: missing column `gpu_model`"),
            "{e}"
        );
        let nodes = "gpu_model,gpu_capacity_num,cpu_num,node_name\nA10,1,lots,7\n";
        let e = import_with(nodes, JOB_HEADER, &ImportOptions::default()).unwrap_err();
        assert!(
            e.to_string().starts_with("nodes.csv:2: column `cpu_num`"),
            "{e}"
        );
        let bad = ImportOptions {
            zones: 0,
            ..Default::default()
        };
        assert!(matches!(
            import_with(NODES, JOB_HEADER, &bad),
            Err(TraceError::Options(_))
        ));
    }

    #[test]
    fn a_leading_index_column_is_ignored() {
        // pandas `to_csv` writes the index first, under an empty name.
        let indexed: String = std::iter::once(format!(",{JOB_HEADER}"))
            .chain(
                README_JOBS
                    .lines()
                    .enumerate()
                    .map(|(i, l)| format!("{i},{l}\n")),
            )
            .collect();
        let plain = import(&format!("{JOB_HEADER}{README_JOBS}")).unwrap();
        assert_eq!(import(&indexed).unwrap().events, plain.events);
        let nodes = ",node_name,gpu_capacity_num,cpu_num,gpu_model\n0,3,8,128,A100-SXM4-80GB\n";
        let t = import_with(nodes, JOB_HEADER, &ImportOptions::default()).unwrap();
        assert_eq!(t.node_adds()[0].allocatable[RESOURCE_GPU], "8");
    }

    #[test]
    fn job_type_is_read_in_any_case() {
        let csv = format!(
            "{JOB_HEADER}a,1,A10,1,1,1,0,1,hp\nb,1,A10,1,1,1,0,1,SPOT\nc,1,A10,1,1,1,0,1,Hp\n"
        );
        let t = import(&csv).unwrap();
        let seen: Vec<(i32, &str)> = t
            .pod_submits()
            .iter()
            .map(|(_, p)| (p.priority, p.labels[LABEL_JOB_TYPE].as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (PRIORITY_HP, "HP"),
                (PRIORITY_SPOT, "Spot"),
                (PRIORITY_HP, "HP")
            ]
        );
    }
}
