//! The `spark-fleet` command: run | explain | simulate | trace generate | config check.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use spark_fleet::config::Config;
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
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file.
    Check { file: PathBuf },
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

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

fn run(cli: Cli) -> Result<(), InputError> {
    match cli.command {
        Command::Explain {
            snapshot,
            pod,
            config,
            profile,
            output,
        } => {
            let config = load_config(config.as_ref()).map_err(InputError)?;
            let m = manifests::load_snapshot_file(&snapshot).map_err(|e| InputError(e.into()))?;
            for (line, kind) in &m.skipped {
                eprintln!(
                    "spark-fleet: warning: {}:{line}: skipping kind {kind}",
                    snapshot.display()
                );
            }
            let pod = manifests::load_pod_file(&pod, &m).map_err(|e| InputError(e.into()))?;
            let name = profile.unwrap_or_else(|| config.default_profile.clone());
            let profile = plugins::build_named_profile(&config, &name)
                .context("building the profile")
                .map_err(InputError)?;
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
