//! Command line: `serve`, `config …`, `database …`, `manage …` (MAS's command names).

mod config_cmd;
mod database;
mod doctor;
mod doctor_client;
mod manage;
mod serve;
mod syn2mas;
mod synapse_config;
mod synapse_import;
mod systemd;
mod yaml_lines;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(name = "appliance", version, about = "A Matrix authentication service: one binary, one SQLite file")]
struct Cli {
    /// Configuration file; repeat it (or separate files with `:` in APPLIANCE_CONFIG) to merge
    /// several in order, the later winning, as MAS does.
    #[arg(short, long, global = true, env = "APPLIANCE_CONFIG", value_delimiter = ':', default_value = "config.yaml")]
    config: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database and syncs config clients first).
    #[command(alias = "server")]
    Serve(serve::Args),
    /// Generate, check, dump and sync the configuration.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Database maintenance.
    #[command(subcommand)]
    Database(database::Command),
    /// Manage users.
    #[command(subcommand)]
    Manage(manage::Command),
    /// Check each link from this service to the homeserver, and the path a Matrix client
    /// follows to it, and say what to fix.
    Doctor(doctor::Args),
    /// Import an existing Synapse's users, passwords, emails, devices and tokens (SQLite or PostgreSQL).
    Syn2mas(syn2mas::Args),
}

/// Ends the command with this exit code; what went wrong was printed already
/// (`syn2mas`: 10 = a check failed, 11 = `check` found only warnings).
#[derive(Debug)]
pub(crate) struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

pub use config_cmd::generate as generate_config;

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Config(cmd) => config_cmd::run(&cli.config, cmd),
        other => runtime().and_then(|rt| {
            rt.block_on(async move {
                match other {
                    Command::Serve(args) => serve::run(&cli.config, args).await,
                    Command::Database(cmd) => database::run(&cli.config, cmd).await,
                    Command::Manage(cmd) => manage::run(&cli.config, cmd).await,
                    Command::Doctor(args) => doctor::run(&cli.config, args).await,
                    Command::Syn2mas(args) => syn2mas::run(&cli.config, args).await,
                    Command::Config(_) => Ok(()),
                }
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ExitWith>().is_some() => {
            ExitCode::from(e.downcast_ref::<ExitWith>().map_or(1, |c| c.0))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    limit_malloc_arenas();
    // A few workers: thread count dominates idle memory; SQLite runs on the blocking pool and
    // argon2 on its own threads.
    let workers = std::env::var("APPLIANCE_WORKER_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get().min(4)).unwrap_or(2));
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(32)
        .enable_all()
        .build()?)
}

/// glibc gives each busy thread its own malloc arena (up to 8 per core), each keeping the memory
/// its thread freed: under load the process grows with the thread count, not with the work.
/// Two arenas keep contention low on a small machine and the footprint flat.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; it runs before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!under_journald && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // journald adds its own timestamps.
    let _ = if under_journald { builder.without_time().try_init() } else { builder.try_init() };
}

fn load_config(paths: &[PathBuf]) -> anyhow::Result<Config> {
    Config::load_all(paths)
}
