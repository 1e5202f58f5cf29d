//! The `spark-fleet` command: run | explain | simulate | trace generate | config check.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use spark_fleet::config::Config;
use spark_fleet::sim::trace::generate::{generate, GenerateParams};
use spark_fleet::{explain, manifests, plugins};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "spark-fleet",
    version,
    about = "A Kubernetes scheduler for Apache Spark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Autoscaler {
    Auto,
    Karpenter,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler against a Kubernetes cluster (in-cluster config unless --kubeconfig).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Replay a cluster trace through the scheduler once per policy and compare them.
    Simulate {
        /// A native trace (JSON Lines), `openb:NODES.csv,PODS.csv` or
        /// `spot-gpu:NODES.csv,JOBS.csv`.
        #[arg(long)]
        trace: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// A policy; repeat to compare. Named policies: all-on-demand, all-spot,
        /// mixed-node-group, karpenter-spread, kube-default, spark-fleet (see
        /// simulations/README.md); any other profile name of the config runs that profile.
        /// `NAME@N` runs profile NAME with percentageOfNodesToScore N (0..=100, 0 = every node),
        /// e.g. `--policy spark-fleet --policy spark-fleet@10`. Default: for a trace with Spark
        /// applications all-on-demand, all-spot, karpenter-spread and spark-fleet; otherwise
        /// spark-fleet and kube-default.
        #[arg(long = "policy")]
        policies: Vec<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where report.json and the SVG charts go.
        #[arg(long, default_value = "out/sim")]
        out: PathBuf,
        /// openb and spot-gpu import: fraction of nodes assigned spot (seeded).
        #[arg(long, default_value_t = 0.3)]
        spot_fraction: f64,
        /// Who launches nodes for pending pods: `karpenter` (config `simulation.karpenter`),
        /// `off`, or `auto` (Karpenter for traces with Spark applications).
        #[arg(long, value_enum, default_value = "auto", num_args = 0..=1, default_missing_value = "karpenter")]
        autoscaler: Autoscaler,
        /// Skip the shadow full scans that measure what node sampling costs in placement
        /// quality (report `sampling_quality` stays null): sampled runs then time as live.
        #[arg(long)]
        no_sampling_quality: bool,
        /// `replay` (default): replay the trace's events. `fgd`: the FGD paper's protocol on an
        /// openb trace (GPU nodes, pod list shuffled and cloned to 130% of the GPUs, one attempt
        /// per pod); writes fgd-allocation.csv, fgd-fragmentation.csv and fgd-allocation.svg.
        #[arg(long, default_value = "replay")]
        protocol: String,
        /// With --protocol fgd: the seeds, e.g. 42-51 (default 42-51).
        #[arg(long)]
        seeds: Option<String>,
    },
    /// Explain where one pod would go on a snapshot of Kubernetes objects, and why.
    Explain {
        /// YAML or JSON file of Nodes, Pods, PodDisruptionBudgets and PriorityClasses.
        #[arg(long)]
        snapshot: PathBuf,
        /// One Pod manifest.
        #[arg(long)]
        pod: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Profile to use (default: the config's defaultProfile).
        #[arg(long)]
        profile: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Trace commands.
    Trace {
        #[command(subcommand)]
        command: TraceCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum TraceCommand {
    /// Generate a synthetic Spark workload trace (native JSON Lines; see simulations/README.md).
    Generate {
        #[arg(long)]
        apps: usize,
        #[arg(long)]
        nodes: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Fraction of nodes that are spot, 0..=1.
        #[arg(long)]
        spot_fraction: Option<f64>,
        /// Expected spot interruptions per spot node per month.
        #[arg(long)]
        monthly_interruption_rate: Option<f64>,
        /// Length of the arrival window in hours.
        #[arg(long)]
        duration_hours: Option<f64>,
        #[arg(long)]
        zones: Option<u32>,
        /// Share of apps arriving in top-of-hour bursts.
        #[arg(long)]
        scheduled_fraction: Option<f64>,
        /// Share of apps using dynamic allocation.
        #[arg(long)]
        dynamic_fraction: Option<f64>,
        /// Plain pods of other tenants.
        #[arg(long)]
        other_pods: Option<usize>,
        /// Interruptions per node-month of the spot nodes the simulated autoscaler launches
        /// (written into the trace; default: the config's rates).
        #[arg(long)]
        spot_interruption_rate: Option<f64>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file.
    Check { file: PathBuf },
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// Bad input: one clear line on stderr, exit 2.
struct InputError(anyhow::Error);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spark-fleet: {:#}", e.0);
            ExitCode::from(2)
        }
    }
}

/// `simulate --protocol fgd`: the FGD paper's protocol on an openb trace.
fn fgd_protocol(
    trace: &str,
    policies: &[String],
    seeds: Option<&str>,
    out: &std::path::Path,
) -> Result<(), spark_fleet::sim::fgd::FgdError> {
    use spark_fleet::sim::fgd::{parse_seeds, run_all, FgdError, Policy, Protocol};
    let files = trace
        .strip_prefix("openb:")
        .and_then(|f| f.split_once(','))
        .filter(|(n, p)| !n.is_empty() && !p.is_empty() && !p.contains(','));
    let Some((nodes, pods)) = files else {
        return Err(FgdError::Usage(format!(
            "--protocol fgd needs --trace openb:NODES.csv,PODS.csv, got {trace:?}"
        )));
    };
    let seeds = parse_seeds(seeds.unwrap_or("42-51"))?;
    let mut chosen = Vec::new();
    for p in policies {
        let p = Policy::parse(p)?;
        if chosen.contains(&p) {
            return Err(FgdError::Usage(format!(
                "--policy {} is listed twice",
                p.name()
            )));
        }
        chosen.push(p);
    }
    if chosen.is_empty() {
        chosen = Policy::ALL.to_vec();
    }
    let protocol = Protocol::from_openb(std::path::Path::new(nodes), std::path::Path::new(pods))?;
    let report = run_all(&protocol, &chosen, &seeds);
    print!("{}", report.summary());
    for f in report.write(out)? {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

fn run(cli: Cli) -> Result<(), InputError> {
    match cli.command {
        Command::Run { config, kubeconfig } => {
            let config = load_config(config.as_ref()).map_err(InputError)?;
            spark_fleet::kube::init_logging(config.logging.format);
            let runtime = tokio::runtime::Runtime::new()
                .context("starting the async runtime")
                .map_err(InputError)?;
            runtime
                .block_on(spark_fleet::kube::run(
                    config,
                    kubeconfig,
                    shutdown_signal(),
                ))
                .context("running the scheduler")
                .map_err(InputError)
        }
        Command::Simulate {
            trace,
            config,
            policies,
            seed,
            out,
            spot_fraction,
            autoscaler,
            no_sampling_quality,
            protocol,
            seeds,
        } => {
            match protocol.as_str() {
                "replay" if seeds.is_some() => {
                    return Err(InputError(anyhow::anyhow!(
                        "--seeds is for --protocol fgd (the replay takes --seed)"
                    )))
                }
                "replay" => {}
                "fgd" => {
                    return fgd_protocol(&trace, &policies, seeds.as_deref(), &out)
                        .map_err(|e| InputError(e.into()))
                }
                other => {
                    return Err(InputError(anyhow::anyhow!(
                        "--protocol {other:?}: expected replay or fgd"
                    )))
                }
            }
            use spark_fleet::sim::{
                baselines, simulate, trace::ImportOptions, trace::Trace, AutoscalerMode, SimOptions,
            };
            let config = load_config(config.as_ref()).map_err(InputError)?;
            let import = ImportOptions {
                seed,
                spot_fraction,
                ..ImportOptions::default()
            };
            let trace = Trace::load(&trace, &import).map_err(|e| InputError(e.into()))?;
            let policies = if policies.is_empty() {
                baselines::default_policies(trace.has_apps())
            } else {
                policies
            };
            let opts = SimOptions {
                seed,
                autoscaler: match autoscaler {
                    Autoscaler::Auto => AutoscalerMode::Auto,
                    Autoscaler::Karpenter => AutoscalerMode::Karpenter,
                    Autoscaler::Off => AutoscalerMode::Off,
                },
                progress: true,
                sampling_quality: !no_sampling_quality,
                price_per_vcpu_hour: config.simulation.price_per_vcpu_hour.clone(),
                default_price_per_vcpu_hour: config.simulation.default_price_per_vcpu_hour,
                ..SimOptions::default()
            };
            let report =
                simulate(&trace, &config, &policies, &opts).map_err(|e| InputError(e.into()))?;
            print!("{}", report.summary_table());
            print!("{}", report.never_bound_summary());
            let written = report.write(&out).map_err(|e| InputError(e.into()))?;
            for f in written {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Command::Explain {
            snapshot,
            pod,
            config,
            profile,
            output,
        } => {
            let config = load_config(config.as_ref()).map_err(InputError)?;
            let m = manifests::load_snapshot_file(&snapshot).map_err(|e| InputError(e.into()))?;
            let pod = manifests::load_pod_file(&pod, &m).map_err(|e| InputError(e.into()))?;
            let name = profile.unwrap_or_else(|| config.default_profile.clone());
            let profile = plugins::build_named_profile(&config, &name)
                .context("building the profile")
                .map_err(InputError)?;
            // Warnings only once the input is known good: bad input gets exactly one line.
            for (line, kind) in &m.skipped {
                eprintln!(
                    "spark-fleet: warning: {}:{line}: skipping kind {kind}",
                    snapshot.display()
                );
            }
            let mut snap = explain::snapshot_from(&m, &config);
            let e = explain::explain(&profile, &config, &pod, &mut snap);
            match output {
                Output::Json => {
                    let s = serde_json::to_string_pretty(&e).map_err(|e| InputError(e.into()))?;
                    println!("{s}");
                }
                Output::Text => print!("{}", explain::render_text(&e, &name)),
            }
            Ok(())
        }
        Command::Trace {
            command:
                TraceCommand::Generate {
                    apps,
                    nodes,
                    seed,
                    out,
                    spot_fraction,
                    monthly_interruption_rate,
                    duration_hours,
                    zones,
                    scheduled_fraction,
                    dynamic_fraction,
                    other_pods,
                    spot_interruption_rate,
                },
        } => {
            let d = GenerateParams::default();
            let params = GenerateParams {
                apps,
                nodes,
                seed,
                spot_fraction: spot_fraction.unwrap_or(d.spot_fraction),
                monthly_interruption_rate: monthly_interruption_rate
                    .unwrap_or(d.monthly_interruption_rate),
                duration_hours: duration_hours.unwrap_or(d.duration_hours),
                zones: zones.unwrap_or(d.zones),
                scheduled_fraction: scheduled_fraction.unwrap_or(d.scheduled_fraction),
                dynamic_fraction: dynamic_fraction.unwrap_or(d.dynamic_fraction),
                other_pods: other_pods.unwrap_or(d.other_pods),
                spot_interruption_rate,
                ..d
            };
            let trace = generate(&params).map_err(|e| InputError(e.into()))?;
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))
                .map_err(InputError)?;
            trace
                .write_jsonl(std::io::BufWriter::new(file))
                .map_err(|e| InputError(e.into()))?;
            println!("{}: {} events", out.display(), trace.events.len());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let cfg = Config::load(&file).map_err(|e| InputError(e.into()))?;
            for p in &cfg.profiles {
                plugins::build_profile(&cfg, p).map_err(|e| InputError(e.into()))?;
            }
            println!(
                "{}: ok ({} profiles: {})",
                file.display(),
                cfg.profiles.len(),
                cfg.profiles
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
    }
}
