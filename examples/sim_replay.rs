//! Replays a trace under the default policies until `spark-fleet simulate` is wired into the CLI:
//! `cargo run --release --example sim_replay -- TRACE [OUT_DIR]`.

use spark_fleet::config::Config;
use spark_fleet::sim::trace::Trace;
use spark_fleet::sim::{simulate, SimOptions};
use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let spec = args.next().ok_or("usage: sim_replay TRACE [OUT_DIR]")?;
    let out = PathBuf::from(args.next().unwrap_or_else(|| "sim-out".into()));
    let started = std::time::Instant::now();
    let trace = Trace::load(&spec, &Default::default())?;
    let policies = vec!["spark-fleet".to_owned(), "kube-default".to_owned()];
    let report = simulate(
        &trace,
        &Config::default(),
        &policies,
        &SimOptions::default(),
    )?;
    print!("{}", report.summary_table());
    report.write(&out)?;
    eprintln!(
        "wrote {} in {:.2}s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
