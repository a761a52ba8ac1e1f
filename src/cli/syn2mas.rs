//! `appliance syn2mas check|migrate [--dry-run]` (MAS's names and exit codes: 10 when a check
//! fails, 11 when `check` only warns; `migrate` never stops for a warning).

use std::io::{IsTerminal, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::ExitWith;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::syn2mas::{self, LockMode, Problems, Progress, SynapseConfig, SynapseReader};

#[derive(clap::Args)]
pub struct Args {
    /// Synapse's homeserver.yaml (repeat for a config split over several files).
    #[arg(long = "synapse-config", global = true, value_name = "FILE")]
    synapse_config: Vec<PathBuf>,
    /// Synapse's database instead of the one homeserver.yaml names: `postgresql://user:pass@host/db`
    /// (PGHOST, PGUSER, PGPASSWORD, … fill what it leaves out) or `sqlite:/path/homeserver.db`.
    #[arg(long, global = true, value_name = "URI")]
    synapse_database_uri: Option<String>,
    /// Import external ids whose `auth_provider` no upstream provider maps (`synapse_idp_id`)
    /// without a link, with a warning, instead of refusing.
    #[arg(long, global = true)]
    ignore_missing_auth_providers: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check that Synapse and this service are ready for the import (Synapse may keep running).
    Check,
    /// Import Synapse's users, passwords, emails, devices and tokens (Synapse must be stopped).
    Migrate {
        /// Do everything, then roll back and print what would have been imported.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(config_path: &[std::path::PathBuf], args: Args) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    tokio::task::spawn_blocking(move || run_blocking(&config, args)).await?
}

fn run_blocking(config: &Config, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(!args.synapse_config.is_empty(), "--synapse-config <homeserver.yaml> is required");
    let synapse = SynapseConfig::load(&args.synapse_config)?;
    let uri = args.synapse_database_uri.as_deref();
    let mut options =
        syn2mas::Options { dry_run: false, ignore_missing_auth_providers: args.ignore_missing_auth_providers };
    match args.command {
        Command::Check => {
            let mut reader = SynapseReader::open(&synapse.database, uri, LockMode::Shared)?;
            let problems = syn2mas::check(config, &synapse, &mut reader, &config.database_path(), options)?;
            print_problems(&problems);
            if !problems.errors.is_empty() {
                return Err(ExitWith(10).into());
            }
            if !problems.warnings.is_empty() {
                println!("check passed with warnings: `syn2mas migrate` will proceed despite them");
                return Err(ExitWith(11).into());
            }
            println!("check passed: ready to migrate (stop Synapse first)");
            Ok(())
        }
        Command::Migrate { dry_run } => {
            options.dry_run = dry_run;
            migrate(config, &synapse, uri, options)
        }
    }
}

fn migrate(
    config: &Config,
    synapse: &SynapseConfig,
    uri: Option<&str>,
    options: syn2mas::Options,
) -> anyhow::Result<()> {
    let dry_run = options.dry_run;
    let mode = if dry_run { LockMode::Shared } else { LockMode::Exclusive };
    if !dry_run {
        refuse_running_synapse(synapse)?;
    }
    let mut reader = SynapseReader::open(&synapse.database, uri, mode)?;
    let problems = syn2mas::check(config, synapse, &mut reader, &config.database_path(), options)?;
    print_problems(&problems);
    if !problems.errors.is_empty() {
        eprintln!("nothing was imported: fix the errors above first");
        return Err(ExitWith(10).into());
    }
    let started = Instant::now();
    let mut progress = CliProgress::new();
    let outcome = syn2mas::migrate(config, synapse, &mut reader, options, SystemClock.now(), &mut progress)?;
    drop(reader);
    let c = &outcome.counts;
    let head = if outcome.committed {
        format!("imported in {:.1} s:", started.elapsed().as_secs_f64())
    } else {
        format!("dry run in {:.1} s, rolled back; it would import:", started.elapsed().as_secs_f64())
    };
    println!(
        "{head} {} users ({} admins, {} locked, {} deactivated, {} guests; {} appservice users left to their \
         appservice), {} password hashes, {} email addresses, {} other third-party ids, {} external ids as upstream \
         links, {} devices as compat sessions, {} access tokens, {} refresh tokens",
        c.users,
        c.admins,
        c.locked,
        c.deactivated,
        c.guests,
        c.appservice_users_skipped,
        c.passwords,
        c.emails,
        c.unsupported_threepids,
        c.upstream_links,
        c.sessions,
        c.access_tokens,
        c.refresh_tokens,
    );
    if c.deviceless_sessions > 0 {
        println!(
            "  of the access tokens, {} had no device (Synapse's admin API, appservice tooling or old clients): each \
             is a compat session without a device, as in MAS",
            c.deviceless_sessions
        );
    }
    if c.external_ids_not_linked > 0 {
        println!(
            "warning: {} external id(s) were not linked (--ignore-missing-auth-providers): no upstream provider's \
             synapse_idp_id names their auth_provider; they are kept in the table user_synapse_external_ids",
            c.external_ids_not_linked
        );
    }
    let skipped = [
        (c.tokens_without_device_skipped, "tokens of devices that were not imported (hidden or deleted devices)"),
        (c.rows_of_skipped_users, "rows of appservice, guest or deactivated users (no sessions for them)"),
        (c.bad_ips_dropped, "device IP addresses that did not parse (dropped)"),
    ];
    for (n, what) in skipped {
        if n > 0 {
            println!("  not imported: {n} {what}");
        }
    }
    if outcome.committed {
        print_next_steps(config);
    }
    Ok(())
}

fn print_problems(p: &Problems) {
    for e in &p.errors {
        println!("error: {e}");
    }
    for w in &p.warnings {
        println!("warning: {w}");
    }
}

/// Synapse on SQLite holds no lock while idle, so a listener that still answers is the surest
/// sign that it runs.
fn refuse_running_synapse(synapse: &SynapseConfig) -> anyhow::Result<()> {
    for (host, port) in &synapse.listeners {
        let Ok(addrs) = (host.as_str(), *port).to_socket_addrs() else { continue };
        for addr in addrs {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
                anyhow::bail!(
                    "something listens on {addr}, Synapse's listener in homeserver.yaml: stop Synapse before migrating \
                     (`syn2mas check` and `migrate --dry-run` may run while it does)"
                );
            }
        }
    }
    Ok(())
}

fn print_next_steps(config: &Config) {
    println!(
        "\nNext steps:\n\
         1. Change homeserver.yaml as below (remove password_config.pepper and any enable_registration / \
         allow_guest_access settings), then start Synapse again:\n"
    );
    for line in super::synapse_config::render(config, None, None).lines() {
        println!("    {line}");
    }
    println!(
        "\n2. Start this service (`appliance serve`), then run `appliance doctor`: it checks the database, the \
         signing keys, discovery at the public URL, that Synapse is reachable and accepts the shared secret, and \
         that its version suits matrix.kind.\n\
         3. Users keep their devices and tokens; their passwords work as before and are re-hashed with argon2id at \
         their first login."
    );
}

/// A progress bar on a terminal; a line every few seconds otherwise.
struct CliProgress {
    tty: bool,
    stage: String,
    total: u64,
    done: u64,
    stage_started: Instant,
    last_print: Instant,
}

impl CliProgress {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            tty: std::io::stderr().is_terminal(),
            stage: String::new(),
            total: 0,
            done: 0,
            stage_started: now,
            last_print: now,
        }
    }

    fn finish_stage(&mut self) {
        if self.stage.is_empty() {
            return;
        }
        let line = format!("{}: {} rows in {:.1} s", self.stage, self.done, self.stage_started.elapsed().as_secs_f64());
        if self.tty {
            eprintln!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn draw(&mut self) {
        let pct = (self.done * 100).checked_div(self.total).map_or(100, |p| p.min(100));
        if self.tty {
            let filled = (pct / 5) as usize;
            eprint!(
                "\r\x1b[2K{:<16} [{}{}] {:>3}% {}/{}",
                self.stage,
                "#".repeat(filled),
                " ".repeat(20 - filled),
                pct,
                self.done,
                self.total
            );
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{}: {} of {} ({pct}%)", self.stage, self.done, self.total);
        }
    }
}

impl Progress for CliProgress {
    fn stage(&mut self, name: &str, total: u64) {
        self.finish_stage();
        self.stage = name.to_string();
        self.total = total;
        self.done = 0;
        self.stage_started = Instant::now();
        self.last_print = Instant::now();
        if self.tty {
            self.draw();
        }
    }

    fn tick(&mut self) {
        self.done += 1;
        let every = if self.tty { Duration::from_millis(100) } else { Duration::from_secs(5) };
        if self.done % 1024 == 0 && self.last_print.elapsed() >= every {
            self.last_print = Instant::now();
            self.draw();
        }
    }

    fn done(&mut self) {
        self.finish_stage();
        self.stage.clear();
    }
}
