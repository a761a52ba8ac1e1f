//! The SQLite store: the only place with SQL.
//!
//! One writer thread owns the only write connection. Concurrent writes queue up there and are
//! committed together (each in its own savepoint), so durability (`synchronous=FULL`) costs one
//! fsync per batch rather than per request, and "database is locked" cannot happen between our
//! own writers. Reads run on a small pool of read-only connections in `spawn_blocking`.

pub mod clients;
pub mod compat;
pub mod email_codes;
pub mod grants;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod mfa;
pub mod page;
pub mod passkeys;
pub mod pending_registrations;
pub mod personal;
pub mod registration_tokens;
pub mod sessions;
pub mod tokens;
pub mod upstream;
pub mod users;
mod writer;

pub use writer::WriterState;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, mpsc};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, watch};

use writer::{Msg, make_job};

mod embedded {
    refinery::embed_migrations!("sql");
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database pool error: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("write transaction failed: {0}")]
    Transaction(String),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("database writer is gone")]
    WriterGone,
    #[error("a write job panicked: {0}")]
    JobPanicked(String),
    #[error("the database is closed")]
    Closed,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Maps a UNIQUE violation to a domain conflict.
pub(crate) fn on_conflict<T>(r: rusqlite::Result<T>, what: &'static str) -> StoreResult<T> {
    match r {
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(StoreError::Conflict(what))
        }
        other => Ok(other?),
    }
}

#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    writer: mpsc::Sender<Msg>,
    writer_state: watch::Receiver<WriterState>,
    /// `None` once closed; the lock is only held to clone the pool handle out.
    readers: Arc<RwLock<Option<Pool>>>,
}

type Pool = r2d2::Pool<SqliteConnectionManager>;

const PRAGMAS: &str = "PRAGMA journal_mode = WAL;
     PRAGMA synchronous = FULL;
     PRAGMA foreign_keys = ON;
     PRAGMA busy_timeout = 5000;
     PRAGMA temp_store = MEMORY;";

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(path: &Path, readers: u32) -> StoreResult<Self> {
        let mut conn = open_write_connection(path)?;
        migrate(&mut conn)?;
        restrict_permissions(path);

        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)
            .with_init(|c| {
                c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
            });
        let readers = r2d2::Pool::builder()
            .max_size(readers)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;

        let (tx, rx) = mpsc::channel::<Msg>();
        let writer_state =
            writer::spawn(conn, rx).map_err(|e| StoreError::Migration(format!("cannot start writer thread: {e}")))?;
        Ok(Self { path: path.to_path_buf(), writer: tx, writer_state, readers: Arc::new(RwLock::new(Some(readers))) })
    }

    fn readers(&self) -> StoreResult<Pool> {
        match self.readers.read() {
            Ok(pool) => pool.clone().ok_or(StoreError::Closed),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// The writer thread's state right now.
    pub fn writer_state(&self) -> WriterState {
        *self.writer_state.borrow()
    }

    /// Resolves when the writer thread has died (never after a `close`).
    pub async fn writer_died(&self) {
        let mut rx = self.writer_state.clone();
        let died = matches!(rx.wait_for(|s| *s != WriterState::Running).await.as_deref(), Ok(WriterState::Died));
        if !died {
            // Closed on purpose: not a fault.
            std::future::pending::<()>().await;
        }
    }

    /// Clean shutdown: writes queued before this call are committed, the WAL is checkpointed
    /// (TRUNCATE) and every connection is closed, which removes the `-wal` and `-shm` files.
    /// Every later read or write fails.
    pub async fn close(&self) -> StoreResult<()> {
        // Readers first: the last connection to close deletes the WAL.
        let pool = self.readers.write().map(|mut p| p.take()).unwrap_or(None);
        drop(pool);
        let (tx, rx) = oneshot::channel();
        self.writer.send(Msg::Close(tx)).map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Test builds only: makes the writer thread panic outside any job.
    #[cfg(feature = "fault-injection")]
    pub fn kill_writer(&self) {
        let _ = self.writer.send(Msg::Die);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside the shared write transaction; the result is delivered after COMMIT.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job = make_job(f, move |r| {
            let _ = tx.send(r);
        });
        self.writer.send(Msg::Job(job)).map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `f` on a read-only connection off the async workers.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.readers()?;
        tokio::task::spawn_blocking(move || {
            let conn = pool.get()?;
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::WriterGone)?
    }

    /// Blocking variants for the CLI (no runtime needed).
    pub fn write_blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel::<StoreResult<T>>();
        let job = make_job(f, move |r| {
            let _ = tx.send(r);
        });
        self.writer.send(Msg::Job(job)).map_err(|_| StoreError::WriterGone)?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let conn = self.readers()?.get()?;
        f(&conn)
    }

    /// A consistent copy of the live database (SQLite online backup).
    pub fn backup_to(&self, dest: &Path) -> StoreResult<()> {
        let src = self.readers()?.get()?;
        create_private(dest)?;
        let mut dst = Connection::open(dest)?;
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
        backup.run_to_completion(256, Duration::from_millis(0), None)?;
        drop(backup);
        restrict_permissions(dest);
        Ok(())
    }

    /// A cheap liveness probe (`/health`).
    pub async fn ping(&self) -> StoreResult<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map(|_| ())?)).await
    }
}

fn open_write_connection(path: &Path) -> StoreResult<Connection> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Migration(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    create_private(path)?;
    let conn = Connection::open(path)?;
    conn.execute_batch(PRAGMAS)?;
    Ok(conn)
}

/// Creates `path` empty with mode 0600 unless it exists, so the database holds no byte readable
/// by others at any moment: SQLite creates `-wal` and `-shm` with the mode of the database file.
fn create_private(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Migration(format!("cannot create {}: {e}", path.display()))),
    }
}

/// Applies the embedded migrations; returns the names applied.
pub fn migrate(conn: &mut Connection) -> StoreResult<Vec<String>> {
    let report = embedded::migrations::runner().run(conn).map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
}

/// Applies the embedded migrations up to `version` (tests of a migration start from the one before).
#[cfg(test)]
pub(crate) fn migrate_to(conn: &mut Connection, version: i32) -> StoreResult<()> {
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run(conn)
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(())
}

/// Applies migrations to the database at `path` and returns what was applied.
pub fn migrate_path(path: &Path) -> StoreResult<Vec<String>> {
    let mut conn = open_write_connection(path)?;
    let applied = migrate(&mut conn)?;
    restrict_permissions(path);
    Ok(applied)
}

/// Mode 0600 for a database made before files were created private, and its `-wal`/`-shm`.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600));
    }
}

/// Helpers shared by the table modules.
pub(crate) fn opt<T>(r: rusqlite::Result<T>) -> StoreResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Fixtures for unit tests that need a migrated database.
#[cfg(test)]
pub(crate) mod test_support {
    use rusqlite::Connection;

    use crate::model::User;

    /// A migrated in-memory database.
    pub fn memory_db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::migrate(&mut conn).unwrap();
        conn
    }

    /// Inserts a plain user named `name`; returns its id.
    pub fn insert_user(conn: &Connection, name: &str) -> String {
        let u = User {
            id: ulid::Ulid::new().to_string(),
            username: name.into(),
            display_name: None,
            created_at: 0,
            locked_at: None,
            deactivated_at: None,
            can_request_admin: false,
        };
        super::users::insert(conn, &u).unwrap();
        u.id
    }
}
