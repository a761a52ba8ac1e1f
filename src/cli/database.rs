use std::path::PathBuf;

use anyhow::Context;

use crate::store::{self, Store};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Apply pending migrations.
    Migrate,
    /// Write a consistent copy of the database to FILE (safe while the server runs).
    Backup {
        /// Destination file; must not exist.
        file: PathBuf,
    },
}

pub async fn run(config_path: &[std::path::PathBuf], cmd: Command) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    let path = config.database_path();
    match cmd {
        Command::Migrate => {
            let applied = tokio::task::spawn_blocking(move || store::migrate_path(&path)).await??;
            if applied.is_empty() {
                println!("database is up to date");
            } else {
                for m in applied {
                    println!("applied {m}");
                }
            }
        }
        Command::Backup { file } => {
            anyhow::ensure!(!file.exists(), "{} already exists; choose a new file", file.display());
            let readers = config.database.read_connections;
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let store = Store::open(&path, readers).context("cannot open database")?;
                store.backup_to(&file).with_context(|| format!("backup to {} failed", file.display()))?;
                println!("backed up {} to {}", path.display(), file.display());
                Ok(())
            })
            .await??;
        }
    }
    Ok(())
}
