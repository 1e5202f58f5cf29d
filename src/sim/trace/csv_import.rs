//! What the CSV trace importers ([`super::openb`], [`super::spot_gpu`]) share: the options, the
//! named-column reader, the seeded capacity-type and zone rule, and the assembly of the trace.
//! The rules are documented in `simulations/README.md`.

use super::generate::Sampler;
use super::{
    quantize, Event, NodeAdd, TimedEvent, Trace, TraceError, TraceHeader, CAPACITY_ON_DEMAND,
    CAPACITY_SPOT, LABEL_CAPACITY_TYPE,
};
use crate::model::LABEL_ZONE;
use std::path::Path;

/// Spot price as a fraction of on-demand (assumption: a typical ~65% spot discount).
pub const SPOT_PRICE_RATIO: f64 = 0.35;
/// On-demand $/vCPU-hour (assumption, close to general-purpose cloud list prices).
pub const PRICE_PER_VCPU_HOUR: f64 = 0.04;
/// On-demand $/GiB-hour (assumption).
pub const PRICE_PER_GIB_HOUR: f64 = 0.005;
/// Pods per node (the kubelet default `maxPods`).
pub const PODS_PER_NODE: i64 = 110;

/// On-demand $/GPU-hour by the traces' GPU model names (assumptions, in the range of public
/// cloud GPU prices; A800 and H800 are priced as A100 and H100; openb's `G2`, `G3`, the spot GPU
/// trace's anonymised `GPU-series-N` and unknown models at $1.00).
pub fn gpu_price_per_hour(model: &str) -> f64 {
    match model {
        "T4" => 0.35,
        "A10" => 0.75,
        "P100" => 1.46,
        "V100M16" => 2.48,
        "V100M32" => 2.98,
        "A100-SXM4-80GB" | "A800-SXM4-80GB" => 3.40,
        "H800" => 5.00,
        _ => 1.00,
    }
}

/// Options of the CSV importers: what the recorded traces lack and the importer assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    /// Seeds the capacity-type and zone assignment.
    pub seed: u64,
    /// Fraction of nodes labelled spot, in [0, 1].
    pub spot_fraction: f64,
    /// Number of zones, 1..=26.
    pub zones: u32,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            seed: 1,
            spot_fraction: 0.3,
            zones: 3,
        }
    }
}

impl ImportOptions {
    pub(super) fn check(&self) -> Result<(), TraceError> {
        if !(0.0..=1.0).contains(&self.spot_fraction) {
            return Err(TraceError::Options(format!(
                "spot_fraction {} is not in [0, 1]",
                self.spot_fraction
            )));
        }
        if !(1..=26).contains(&self.zones) {
            return Err(TraceError::Options(format!(
                "zones {} is not in 1..=26",
                self.zones
            )));
        }
        Ok(())
    }

    /// The options as the trace header's `source` quotes them.
    pub(super) fn describe(&self) -> String {
        format!(
            "seed {}, spot_fraction {}, zones {}",
            self.seed, self.spot_fraction, self.zones
        )
    }
}

/// Name of zone `i`: `zone-a`, `zone-b`, ...
pub fn zone_name(i: u32) -> String {
    format!("zone-{}", char::from(b'a' + (i % 26) as u8))
}

fn open_file(p: &Path) -> Result<std::fs::File, TraceError> {
    std::fs::File::open(p).map_err(|source| TraceError::Io {
        file: p.display().to_string(),
        source,
    })
}

/// An importer over two readers (nodes, then pods or jobs), each named for errors.
pub(super) type ReadersImporter =
    fn(std::fs::File, &str, std::fs::File, &str, &ImportOptions) -> Result<Trace, TraceError>;

/// Opens the node file and the workload file, imports them, and records in the header where
/// they came from: `{prefix}:{nodes},{workload} ({origin}; {options})`.
pub(super) fn import_files(
    prefix: &str,
    origin: &str,
    nodes_csv: &Path,
    workload_csv: &Path,
    options: &ImportOptions,
    import: ReadersImporter,
) -> Result<Trace, TraceError> {
    let mut trace = import(
        open_file(nodes_csv)?,
        &nodes_csv.display().to_string(),
        open_file(workload_csv)?,
        &workload_csv.display().to_string(),
        options,
    )?;
    trace.header.source = Some(format!(
        "{prefix}:{},{} ({origin}; {})",
        nodes_csv.display(),
        workload_csv.display(),
        options.describe()
    ));
    Ok(trace)
}

/// Labels the nodes' capacity type and zone by the seeded rule, discounts spot prices by
/// [`SPOT_PRICE_RATIO`] and quantizes prices. Spot: the first `round(n · spot_fraction)` nodes
/// of a seeded shuffle; zone: position `j` of a second shuffle goes to zone `j mod zones`.
pub(super) fn assign_capacity_and_zones(nodes: &mut [NodeAdd], options: &ImportOptions) {
    let mut sampler = Sampler::new(options.seed);
    let n = nodes.len();
    let spot_count = (n as f64 * options.spot_fraction).round() as usize;
    for (rank, i) in sampler.permutation(n).into_iter().enumerate() {
        let node = &mut nodes[i];
        let spot = rank < spot_count;
        let capacity = if spot {
            CAPACITY_SPOT
        } else {
            CAPACITY_ON_DEMAND
        };
        node.labels
            .insert(LABEL_CAPACITY_TYPE.into(), capacity.into());
        if spot {
            node.price_per_hour = node.price_per_hour.map(|p| p * SPOT_PRICE_RATIO);
        }
        node.price_per_hour = node.price_per_hour.map(quantize);
    }
    for (pos, i) in sampler.permutation(n).into_iter().enumerate() {
        nodes[i]
            .labels
            .insert(LABEL_ZONE.into(), zone_name(pos as u32 % options.zones));
    }
}

/// The imported trace, named `prefix` with source `{prefix}:{nodes},{workload}`: every node at
/// `t = 0`, then the pod events sorted by time (stable, so events of the same second keep their
/// file order); validated.
pub(super) fn assemble(
    prefix: &str,
    (nodes_name, workload_name): (&str, &str),
    options: &ImportOptions,
    nodes: Vec<NodeAdd>,
    mut pods: Vec<TimedEvent>,
) -> Result<Trace, TraceError> {
    let header = TraceHeader::new(
        Some(prefix.into()),
        Some(format!("{prefix}:{nodes_name},{workload_name}")),
        Some(options.seed),
    );
    pods.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut events: Vec<TimedEvent> = nodes
        .into_iter()
        .map(|n| TimedEvent {
            t: 0.0,
            event: Event::NodeAdd(n),
        })
        .collect();
    events.extend(pods);
    let trace = Trace { header, events };
    trace.validate()?;
    Ok(trace)
}

/// One CSV file with named columns; errors name the file and the 1-based line. Columns the
/// importer does not ask for (e.g. a pandas index column) are ignored.
pub(super) struct Table<R: std::io::Read> {
    file: String,
    reader: csv::Reader<R>,
    /// Per wanted column, its position in the file (None: an optional column it lacks).
    columns: Vec<Option<usize>>,
}

impl<R: std::io::Read> Table<R> {
    /// Every `required` column must be in the header; `optional` ones may be
    /// missing, and then read as empty. Values come in `required` then `optional` order.
    pub(super) fn open(
        input: R,
        file: &str,
        required: &[&str],
        optional: &[&str],
    ) -> Result<Table<R>, TraceError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(input);
        let headers = reader.headers().map_err(|e| TraceError::Line {
            file: file.to_owned(),
            line: 1,
            message: e.to_string(),
        })?;
        let position = |w: &str| headers.iter().position(|h| h.trim() == w);
        let mut columns = required
            .iter()
            .map(|w| {
                position(w).map(Some).ok_or_else(|| TraceError::Line {
                    file: file.to_owned(),
                    line: 1,
                    message: format!("missing column `{w}`"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        columns.extend(optional.iter().map(|w| position(w)));
        Ok(Table {
            file: file.to_owned(),
            reader,
            columns,
        })
    }

    /// Whether the file has wanted column `k` (in `open`'s order).
    pub(super) fn has(&self, k: usize) -> bool {
        self.columns.get(k).is_some_and(Option::is_some)
    }

    /// Calls `row` with the 0-based row number and the wanted columns' values,
    /// in `open`'s order; its errors get file and line.
    pub(super) fn for_each(
        &mut self,
        mut row: impl FnMut(usize, &[&str]) -> Result<(), String>,
    ) -> Result<(), TraceError> {
        let mut record = csv::StringRecord::new();
        for index in 0.. {
            let more = self
                .reader
                .read_record(&mut record)
                .map_err(|e| TraceError::Line {
                    file: self.file.clone(),
                    line: e.position().map_or(0, |p| p.line() as usize),
                    message: e.to_string(),
                })?;
            if !more {
                break;
            }
            let line = record.position().map_or(0, |p| p.line() as usize);
            let values: Vec<&str> = self
                .columns
                .iter()
                .map(|c| c.and_then(|c| record.get(c)).unwrap_or("").trim())
                .collect();
            row(index, &values).map_err(|message| TraceError::Line {
                file: self.file.clone(),
                line,
                message,
            })?;
        }
        Ok(())
    }
}

/// Largest integer a trace column may hold (2^40: 10^12 millicores, an EiB in MiB, 35,000
/// years in seconds): products the importers form from it (×1000 GPU-milli, ×8 GiB per vCPU)
/// then cannot overflow.
pub(super) const MAX_INT: u64 = 1 << 40;

/// A non-negative integer up to `MAX_INT`; the error names the column.
pub(super) fn int(column: &str, v: &str) -> Result<u64, String> {
    let n: u64 = v
        .parse()
        .map_err(|_| format!("column `{column}`: {v:?} is not a non-negative integer"))?;
    if n > MAX_INT {
        return Err(format!("column `{column}`: {n} is above {MAX_INT}"));
    }
    Ok(n)
}

/// `milli` thousandths of a CPU as a quantity: whole cores when exact, else millicores.
pub(super) fn cpu_quantity(milli: u64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}
