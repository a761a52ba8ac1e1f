//! Reads Synapse's database, SQLite or PostgreSQL, and never writes to it.
//!
//! Both run the same SQL: flags are normalised with `CASE WHEN … THEN 1 ELSE 0 END` (SQLite keeps
//! booleans as integers, PostgreSQL has both `smallint` and `boolean` flags) and numbers are cast
//! to BIGINT, so a row reads the same from either.
//!
//! Locking, so that a Synapse that is still running cannot change what is being copied:
//! - PostgreSQL: one `SERIALIZABLE READ ONLY DEFERRABLE` transaction that first takes
//!   `LOCK TABLE … IN EXCLUSIVE MODE NOWAIT` (ACCESS SHARE for `check` and dry runs) on the
//!   tables read, failing at once when Synapse holds them.
//! - SQLite: `BEGIN EXCLUSIVE` with a zero busy timeout on a connection that is `query_only`,
//!   so Synapse cannot write while the import reads (a plain read transaction for `check`).

use anyhow::{Context, bail};
use postgres::fallible_iterator::FallibleIterator;
use rusqlite::OpenFlags;

use super::synapse_config::SynapseDatabase;

/// How the Synapse database is held while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// `check` and `--dry-run`: Synapse may keep running.
    Shared,
    /// A real `migrate`: fail unless Synapse is stopped (nothing else may hold the tables).
    Exclusive,
}

const TABLES: [&str; 6] =
    ["users", "user_threepids", "user_external_ids", "devices", "access_tokens", "refresh_tokens"];

pub struct SynapseUser {
    pub name: String,
    pub password_hash: Option<String>,
    pub admin: bool,
    pub deactivated: bool,
    pub locked: bool,
    /// Seconds (Synapse's `creation_ts`); `None` on very old rows.
    pub creation_ts: Option<i64>,
    pub is_guest: bool,
    pub appservice_id: Option<String>,
}

pub struct SynapseThreepid {
    pub user_id: String,
    pub medium: String,
    pub address: String,
    /// Milliseconds.
    pub added_at: Option<i64>,
}

pub struct SynapseExternalId {
    pub user_id: String,
    pub auth_provider: String,
    pub external_id: String,
}

pub struct SynapseDevice {
    pub user_id: String,
    pub device_id: String,
    pub display_name: Option<String>,
    /// Milliseconds.
    pub last_seen: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Milliseconds: the earliest `last_validated` of the device's access tokens.
    pub first_token_seen: Option<i64>,
}

pub struct SynapseAccessToken {
    pub user_id: String,
    pub device_id: Option<String>,
    pub token: String,
    pub valid_until_ms: Option<i64>,
    pub last_validated: Option<i64>,
}

pub struct SynapseRefreshToken {
    pub user_id: String,
    pub device_id: String,
    pub refresh_token: String,
    /// The access token issued with it, if Synapse still has it.
    pub access_token: Option<String>,
    pub valid_until_ms: Option<i64>,
    pub last_validated: Option<i64>,
}

/// Row counts, for progress and the dry-run summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceCounts {
    pub users: u64,
    pub threepids: u64,
    pub external_ids: u64,
    pub devices: u64,
    pub access_tokens: u64,
    pub refresh_tokens: u64,
}

pub struct SynapseReader {
    db: Db,
}

enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

/// One row from either database; columns are TEXT or BIGINT (see the module doc).
trait SourceRow {
    fn text(&self, i: usize) -> anyhow::Result<Option<String>>;
    fn int(&self, i: usize) -> anyhow::Result<Option<i64>>;
    fn req_text(&self, i: usize) -> anyhow::Result<String> {
        self.text(i)?.with_context(|| format!("column {i} is NULL"))
    }
    fn flag(&self, i: usize) -> anyhow::Result<bool> {
        Ok(self.int(i)?.unwrap_or(0) != 0)
    }
}

impl SourceRow for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> anyhow::Result<Option<String>> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> anyhow::Result<Option<i64>> {
        Ok(self.get(i)?)
    }
}

impl SourceRow for postgres::Row {
    fn text(&self, i: usize) -> anyhow::Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> anyhow::Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
}

const USERS_SQL: &str = "SELECT name, password_hash,
        CAST(CASE WHEN admin <> 0 THEN 1 ELSE 0 END AS BIGINT),
        CAST(CASE WHEN deactivated <> 0 THEN 1 ELSE 0 END AS BIGINT),
        CAST(CASE WHEN locked THEN 1 ELSE 0 END AS BIGINT),
        CAST(creation_ts AS BIGINT),
        CAST(CASE WHEN is_guest <> 0 THEN 1 ELSE 0 END AS BIGINT),
        appservice_id
    FROM users";

const THREEPIDS_SQL: &str = "SELECT user_id, medium, address, CAST(added_at AS BIGINT) FROM user_threepids";

const EXTERNAL_IDS_SQL: &str = "SELECT user_id, auth_provider, external_id FROM user_external_ids";

/// Devices as MAS imports them: not hidden (dehydrated) and not the guests' shared device.
const DEVICES_SQL: &str =
    "SELECT d.user_id, d.device_id, d.display_name, CAST(d.last_seen AS BIGINT), d.ip, d.user_agent,
        (SELECT CAST(MIN(a.last_validated) AS BIGINT) FROM access_tokens a
         WHERE a.user_id = d.user_id AND a.device_id = d.device_id)
    FROM devices d
    WHERE CASE WHEN d.hidden THEN 1 ELSE 0 END = 0 AND d.device_id <> 'guest_device'";

/// Access tokens without a refresh token, with or without a device; puppet ("log in as") tokens
/// are not imported.
const ACCESS_TOKENS_SQL: &str =
    "SELECT user_id, device_id, token, CAST(valid_until_ms AS BIGINT), CAST(last_validated AS BIGINT)
    FROM access_tokens WHERE puppets_user_id IS NULL AND refresh_token_id IS NULL";

/// Refresh tokens with their access token, except those already replaced: the successor's
/// access token was used, so Synapse would refuse the old refresh token (MAS's rule).
const REFRESH_TOKENS_SQL: &str = "SELECT rt.user_id, rt.device_id, rt.token, at.token,
        CAST(at.valid_until_ms AS BIGINT), CAST(at.last_validated AS BIGINT)
    FROM refresh_tokens rt
    LEFT JOIN access_tokens at ON at.refresh_token_id = rt.id
    WHERE NOT EXISTS (SELECT 1 FROM access_tokens nx
                      WHERE rt.next_token_id IS NOT NULL AND nx.refresh_token_id = rt.next_token_id
                        AND CASE WHEN nx.used THEN 1 ELSE 0 END = 1)";

impl SynapseReader {
    /// Connects and takes the locks of `mode`, inside the read transaction that every later read uses.
    pub fn open(db: &SynapseDatabase, uri_override: Option<&str>, mode: LockMode) -> anyhow::Result<Self> {
        let target = match uri_override {
            Some(uri) => parse_uri(uri)?,
            None => db.clone(),
        };
        match target {
            SynapseDatabase::Sqlite(path) => Self::open_sqlite(&path, mode),
            SynapseDatabase::Postgres(args) => Self::open_postgres(&args, mode),
        }
    }

    fn open_sqlite(path: &std::path::Path, mode: LockMode) -> anyhow::Result<Self> {
        anyhow::ensure!(path.exists(), "Synapse's SQLite database {} does not exist", path.display());
        // Read-write only to be able to hold the write lock; `query_only` refuses any change.
        let flags = match mode {
            LockMode::Shared => OpenFlags::SQLITE_OPEN_READ_ONLY,
            LockMode::Exclusive => OpenFlags::SQLITE_OPEN_READ_WRITE,
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(path, flags)
            .with_context(|| format!("cannot open Synapse's database {}", path.display()))?;
        match mode {
            LockMode::Shared => {
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                conn.execute_batch("BEGIN")?;
            }
            LockMode::Exclusive => {
                conn.busy_timeout(std::time::Duration::ZERO)?;
                conn.execute_batch("BEGIN EXCLUSIVE").map_err(|e| {
                    anyhow::anyhow!(
                        "cannot lock Synapse's database {} ({e}): is Synapse still running? Stop it before migrating",
                        path.display()
                    )
                })?;
            }
        }
        // From here on the connection refuses any change (set after BEGIN EXCLUSIVE, which it
        // would refuse too).
        conn.execute_batch("PRAGMA query_only = ON")?;
        let mut reader = SynapseReader { db: Db::Sqlite(conn) };
        reader.ensure_schema()?;
        Ok(reader)
    }

    fn open_postgres(args: &[(String, String)], mode: LockMode) -> anyhow::Result<Self> {
        let config = pg_config(args)?;
        let mut client = config.connect(postgres::NoTls).context("cannot connect to Synapse's PostgreSQL database")?;
        client.batch_execute("BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE")?;
        let lock = match mode {
            LockMode::Shared => "ACCESS SHARE",
            LockMode::Exclusive => "EXCLUSIVE",
        };
        for table in TABLES {
            client.batch_execute(&format!("LOCK TABLE {table} IN {lock} MODE NOWAIT")).map_err(|e| {
                anyhow::anyhow!(
                    "cannot lock Synapse's table `{table}` ({}): is Synapse still running? Stop it before migrating",
                    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
                )
            })?;
        }
        let mut reader = SynapseReader { db: Db::Postgres(Box::new(client)) };
        reader.ensure_schema()?;
        Ok(reader)
    }

    /// A clear message when this is not a Synapse database (or one too old to have `locked`).
    fn ensure_schema(&mut self) -> anyhow::Result<()> {
        let probe = "SELECT name, locked, appservice_id FROM users WHERE 1 = 0";
        let ok = match &mut self.db {
            Db::Sqlite(c) => c.prepare(probe).is_ok(),
            Db::Postgres(c) => {
                c.batch_execute("SAVEPOINT probe").is_ok() && {
                    let ok = c.prepare(probe).is_ok();
                    c.batch_execute("ROLLBACK TO SAVEPOINT probe")?;
                    ok
                }
            }
        };
        if !ok {
            bail!(
                "this is not a Synapse database of a supported version (users.locked is missing: Synapse >= 1.93 needed)"
            );
        }
        Ok(())
    }

    /// Streams each row of `sql` into `f`.
    fn each(&mut self, sql: &str, f: &mut dyn FnMut(&dyn SourceRow) -> anyhow::Result<()>) -> anyhow::Result<()> {
        match &mut self.db {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare(sql)?;
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    f(row)?;
                }
            }
            Db::Postgres(c) => {
                let mut rows = c.query_raw(sql, std::iter::empty::<&str>())?;
                while let Some(row) = rows.next()? {
                    f(&row)?;
                }
            }
        }
        Ok(())
    }

    fn scalar(&mut self, sql: &str) -> anyhow::Result<i64> {
        let mut out = 0;
        self.each(sql, &mut |r| {
            out = r.int(0)?.unwrap_or(0);
            Ok(())
        })?;
        Ok(out)
    }

    fn strings(&mut self, sql: &str) -> anyhow::Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        self.each(sql, &mut |r| {
            out.push((r.req_text(0)?, r.int(1)?.unwrap_or(0)));
            Ok(())
        })?;
        Ok(out)
    }

    pub fn counts(&mut self) -> anyhow::Result<SourceCounts> {
        let n =
            |r: &mut Self, t: &str| r.scalar(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {t}")).map(|n| n as u64);
        Ok(SourceCounts {
            users: n(self, "users")?,
            threepids: n(self, "user_threepids")?,
            external_ids: n(self, "user_external_ids")?,
            devices: n(self, "devices")?,
            access_tokens: n(self, "access_tokens")?,
            refresh_tokens: n(self, "refresh_tokens")?,
        })
    }

    /// Facts the checks need: (guests, users with a password hash, a sample user name).
    pub fn user_facts(&mut self) -> anyhow::Result<(u64, u64, Option<String>)> {
        let guests = self.scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM users WHERE is_guest <> 0")?;
        let hashed = self.scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM users WHERE password_hash IS NOT NULL")?;
        let mut sample = None;
        self.each("SELECT name FROM users WHERE appservice_id IS NULL ORDER BY name LIMIT 1", &mut |r| {
            sample = r.text(0)?;
            Ok(())
        })?;
        Ok((guests as u64, hashed as u64, sample))
    }

    /// Third-party ids by medium, with counts.
    pub fn threepid_media(&mut self) -> anyhow::Result<Vec<(String, i64)>> {
        self.strings("SELECT medium, CAST(COUNT(*) AS BIGINT) FROM user_threepids GROUP BY medium ORDER BY medium")
    }

    /// External ids by `auth_provider`, with counts.
    pub fn external_providers(&mut self) -> anyhow::Result<Vec<(String, i64)>> {
        self.strings(
            "SELECT auth_provider, CAST(COUNT(*) AS BIGINT) FROM user_external_ids GROUP BY auth_provider ORDER BY auth_provider",
        )
    }

    pub fn users(&mut self, mut f: impl FnMut(SynapseUser) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.each(USERS_SQL, &mut |r| {
            f(SynapseUser {
                name: r.req_text(0)?,
                password_hash: r.text(1)?,
                admin: r.flag(2)?,
                deactivated: r.flag(3)?,
                locked: r.flag(4)?,
                creation_ts: r.int(5)?,
                is_guest: r.flag(6)?,
                appservice_id: r.text(7)?,
            })
        })
    }

    pub fn threepids(&mut self, mut f: impl FnMut(SynapseThreepid) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.each(THREEPIDS_SQL, &mut |r| {
            f(SynapseThreepid {
                user_id: r.req_text(0)?,
                medium: r.req_text(1)?,
                address: r.req_text(2)?,
                added_at: r.int(3)?,
            })
        })
    }

    pub fn external_ids(&mut self, mut f: impl FnMut(SynapseExternalId) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.each(EXTERNAL_IDS_SQL, &mut |r| {
            f(SynapseExternalId { user_id: r.req_text(0)?, auth_provider: r.req_text(1)?, external_id: r.req_text(2)? })
        })
    }

    pub fn devices(&mut self, mut f: impl FnMut(SynapseDevice) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.each(DEVICES_SQL, &mut |r| {
            f(SynapseDevice {
                user_id: r.req_text(0)?,
                device_id: r.req_text(1)?,
                display_name: r.text(2)?,
                last_seen: r.int(3)?,
                ip: r.text(4)?,
                user_agent: r.text(5)?,
                first_token_seen: r.int(6)?,
            })
        })
    }

    pub fn access_tokens(&mut self, mut f: impl FnMut(SynapseAccessToken) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.each(ACCESS_TOKENS_SQL, &mut |r| {
            f(SynapseAccessToken {
                user_id: r.req_text(0)?,
                device_id: r.text(1)?,
                token: r.req_text(2)?,
                valid_until_ms: r.int(3)?,
                last_validated: r.int(4)?,
            })
        })
    }

    pub fn refresh_tokens(
        &mut self,
        mut f: impl FnMut(SynapseRefreshToken) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.each(REFRESH_TOKENS_SQL, &mut |r| {
            f(SynapseRefreshToken {
                user_id: r.req_text(0)?,
                device_id: r.req_text(1)?,
                refresh_token: r.req_text(2)?,
                access_token: r.text(3)?,
                valid_until_ms: r.int(4)?,
                last_validated: r.int(5)?,
            })
        })
    }
}

impl Drop for SynapseReader {
    fn drop(&mut self) {
        // Nothing was written; ending the transaction only releases the locks.
        match &mut self.db {
            Db::Sqlite(c) => drop(c.execute_batch("ROLLBACK")),
            Db::Postgres(c) => drop(c.batch_execute("ROLLBACK")),
        }
    }
}

/// `--synapse-database-uri`: `postgresql://…` / `postgres://…`, or `sqlite:PATH` / `sqlite://PATH`.
fn parse_uri(uri: &str) -> anyhow::Result<SynapseDatabase> {
    if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
        return Ok(SynapseDatabase::Postgres(vec![("uri".into(), uri.into())]));
    }
    if let Some(path) = uri.strip_prefix("sqlite://").or_else(|| uri.strip_prefix("sqlite:")) {
        return Ok(SynapseDatabase::Sqlite(path.into()));
    }
    bail!(
        "--synapse-database-uri must start with postgresql:// or sqlite: (got `{}`)",
        uri.split(':').next().unwrap_or("")
    )
}

/// A connection config from psycopg2's keywords (or a URI), with the libpq environment variables
/// (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`) filling what is not given.
fn pg_config(args: &[(String, String)]) -> anyhow::Result<postgres::Config> {
    let mut config = match args.iter().find(|(k, _)| k == "uri") {
        Some((_, uri)) => uri.parse::<postgres::Config>().context("invalid PostgreSQL URI")?,
        None => postgres::Config::new(),
    };
    for (k, v) in args {
        match k.as_str() {
            "user" => {
                config.user(v);
            }
            "password" => {
                config.password(v);
            }
            "dbname" => {
                config.dbname(v);
            }
            "host" => {
                config.host(v);
            }
            "port" => {
                config.port(v.parse().with_context(|| format!("database.args.port `{v}` is not a port"))?);
            }
            "connect_timeout" => {
                config.connect_timeout(std::time::Duration::from_secs(v.parse().unwrap_or(10)));
            }
            "sslmode" if v != "disable" && v != "prefer" && v != "allow" => {
                bail!(
                    "database.args.sslmode `{v}`: TLS to PostgreSQL is not supported; connect over a Unix socket or localhost"
                )
            }
            _ => {}
        }
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() {
        let host = env("PGHOST").unwrap_or_else(|| {
            let socket_dir = "/var/run/postgresql";
            if std::path::Path::new(socket_dir).exists() { socket_dir.into() } else { "localhost".into() }
        });
        config.host(&host);
    }
    if config.get_ports().is_empty() {
        if let Some(p) = env("PGPORT").and_then(|p| p.parse().ok()) {
            config.port(p);
        }
    }
    if config.get_user().is_none() {
        config.user(&env("PGUSER").or_else(|| env("USER")).unwrap_or_else(|| "postgres".into()));
    }
    if config.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            config.password(&p);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(d) = env("PGDATABASE") {
            config.dbname(&d);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    Ok(config)
}
