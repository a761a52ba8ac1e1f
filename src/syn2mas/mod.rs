//! `syn2mas`: bring an existing Synapse's users over — from SQLite or PostgreSQL — with their
//! passwords, emails, external ids, devices and live tokens, so nobody is logged out.
//!
//! The whole import is one SQLite transaction on the appliance's database (a failed or
//! interrupted run leaves it as it was; `--dry-run` rolls it back). Synapse's database is only
//! read (see `reader`).

pub mod checks;
pub mod reader;
pub mod synapse_config;
pub mod writer;

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

pub use checks::Problems;
pub use reader::{LockMode, SourceCounts, SynapseReader};
pub use synapse_config::SynapseConfig;
pub use writer::ImportCounts;

use crate::config::Config;
use crate::model::upstream::UpstreamProvider;
use crate::store::import as store;
use crate::store::upstream as upstream_store;

/// Told about each stage and row of an import (a progress bar, log lines, or nothing).
pub trait Progress {
    fn stage(&mut self, name: &str, total: u64);
    fn tick(&mut self);
    fn done(&mut self);
}

/// Progress nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&mut self, _: &str, _: u64) {}
    fn tick(&mut self) {}
    fn done(&mut self) {}
}

/// Every check: the two configs, Synapse's data, and that the appliance's database is empty.
pub fn check(
    config: &Config,
    synapse: &SynapseConfig,
    reader: &mut SynapseReader,
    appliance_db: &Path,
    options: Options,
) -> anyhow::Result<Problems> {
    let mut problems = checks::config_problems(config, synapse);
    let data = checks::database_problems(config, synapse, reader, options.ignore_missing_auth_providers)?;
    problems.errors.extend(data.errors);
    problems.warnings.extend(data.warnings);
    if appliance_db.exists() {
        let conn = rusqlite::Connection::open_with_flags(appliance_db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        if let Some(table) = store::first_non_empty_table(&conn)? {
            problems.errors.push(format!(
                "the appliance's database {} is not empty (rows in `{table}`): import into a new database",
                appliance_db.display()
            ));
        }
    }
    Ok(problems)
}

/// What `check` and `migrate` are told on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--dry-run`: import, count, roll back.
    pub dry_run: bool,
    /// `--ignore-missing-auth-providers`: external ids whose `auth_provider` no upstream provider
    /// maps are imported without a link instead of stopping the import.
    pub ignore_missing_auth_providers: bool,
}

pub struct Outcome {
    pub counts: ImportCounts,
    pub source: SourceCounts,
    pub committed: bool,
}

/// Imports everything in one transaction; commits unless `dry_run`. Refuses a non-empty database.
pub fn migrate(
    config: &Config,
    synapse: &SynapseConfig,
    reader: &mut SynapseReader,
    options: Options,
    now: i64,
    progress: &mut dyn Progress,
) -> anyhow::Result<Outcome> {
    let path = config.database_path();
    let mut conn = store::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let tx = store::begin(&mut conn)?;
    if let Some(table) = store::first_non_empty_table(&tx)? {
        anyhow::bail!(
            "the appliance's database {} is not empty (rows in `{table}`): import into a new database",
            path.display()
        );
    }
    let source = reader.counts()?;
    let settings = writer::ImportSettings {
        server_name: synapse.server_name.clone(),
        bcrypt_version: checks::bcrypt_scheme(config).map(|s| s.version),
        now,
        upstream_providers: upstream_providers(&tx, config, now)?,
        ignore_missing_auth_providers: options.ignore_missing_auth_providers,
    };
    let mut importer = writer::Importer::new(&tx, &settings);
    importer.run(reader, &source, progress)?;
    let counts = importer.counts.clone();
    drop(importer);
    if options.dry_run {
        tx.rollback()?;
    } else {
        tx.commit().context("cannot commit the import")?;
    }
    Ok(Outcome { counts, source, committed: !options.dry_run })
}

/// The upstream providers that take over Synapse's `auth_provider`s, by `synapse_idp_id`. Links
/// need their provider's row: one the server has not synced yet is added here, inside the
/// import's transaction, as `config sync` would store it but without its client secret (the
/// server's sync at start adds it, encrypted).
fn upstream_providers(
    conn: &rusqlite::Connection,
    config: &Config,
    now: i64,
) -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for (order, p) in config.upstream_oauth2.providers.iter().enumerate() {
        let Some(idp) = &p.synapse_idp_id else { continue };
        let id = p.id.to_uppercase();
        if upstream_store::provider_by_id(conn, &id)?.is_none() {
            let mut stored = p.clone();
            stored.id.clone_from(&id);
            stored.client_secret = None;
            stored.client_secret_file = None;
            upstream_store::upsert_provider(
                conn,
                &UpstreamProvider {
                    id: id.clone(),
                    config: stored,
                    encrypted_client_secret: None,
                    ui_order: order as i64,
                    created_at: now,
                    disabled_at: (!p.enabled).then_some(now),
                },
            )?;
        }
        map.entry(idp.clone()).or_insert(id);
    }
    Ok(map)
}
