//! The single writer thread: group commit, one savepoint per job, and the rules that keep every
//! caller's answer true when a job panics or SQLite rolls the whole transaction back.
//!
//! - A job that panics is caught (`catch_unwind`), its savepoint rolled back, and only its caller
//!   gets an error; the rest of the batch commits.
//! - Nothing commits but the writer's own `COMMIT`: a commit hook vetoes any other commit, so a
//!   job that swallows an error after SQLite rolled the transaction back cannot go on writing in
//!   autocommit mode (which would half-apply it).
//! - When the transaction is gone after a job (SQLite rolls it back by itself on a full disk or an
//!   I/O error), every job that ran in it is told so, even those that returned `Ok`; the jobs not
//!   run yet start afresh in a new transaction. When `COMMIT` fails, every job in the batch is
//!   told. A caller is told "committed" only after `COMMIT` returned `Ok` (with
//!   `synchronous=FULL`, after the fsync).
//! - If the connection cannot be brought back out of a failed transaction, or the loop itself
//!   panics, the thread ends and says so on the status channel: `/health` then fails and
//!   `serve` exits non-zero so that systemd restarts the process.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::watch;

use super::{StoreError, StoreResult};

/// A queued write: runs against the open transaction (or is told it could not begin), and returns
/// the function that delivers its result once the commit outcome is known.
pub(super) type WriteJob = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> Deliver + Send>;
pub(super) type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;

pub(super) enum Msg {
    Job(WriteJob),
    /// Checkpoint the WAL (TRUNCATE), close the connection and end the thread.
    Close(tokio::sync::oneshot::Sender<StoreResult<()>>),
    /// Test builds only: the thread panics outside any job, as a bug in the loop would.
    #[cfg(feature = "fault-injection")]
    Die,
}

/// What the writer thread is doing, watched by `/health` and by `serve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterState {
    Running,
    /// Closed on purpose (shutdown): writes fail from now on, and that is expected.
    Closed,
    /// Ended by a fault: the process must restart.
    Died,
}

/// Most writes a single commit groups.
const MAX_BATCH: usize = 64;

pub(super) fn make_job<T, F>(f: F, send: impl FnOnce(StoreResult<T>) + Send + 'static) -> WriteJob
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    Box::new(move |conn| {
        let result = match conn {
            Ok(conn) => run_in_savepoint(conn, f),
            Err(e) => Err(StoreError::Transaction(format!("cannot begin: {e}"))),
        };
        Box::new(move |batch_error: Option<&StoreError>| {
            let outcome = match (result, batch_error) {
                (Ok(_), Some(e)) => Err(StoreError::Transaction(format!("not committed: {e}"))),
                (r, _) => r,
            };
            send(outcome);
        })
    })
}

fn run_in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    conn.execute_batch("SAVEPOINT job")?;
    let result = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
        Ok(r) => r,
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            tracing::error!(panic = %message, "a write job panicked; its changes are rolled back");
            Err(StoreError::JobPanicked(message))
        }
    };
    if conn.is_autocommit() {
        // SQLite rolled the whole transaction back under the job; the batch reports it.
        return result;
    }
    let end = if result.is_ok() { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
    match (conn.execute_batch(end), result) {
        (Ok(()), r) => r,
        (Err(e), Ok(_)) => Err(e.into()),
        (Err(e), Err(first)) => {
            tracing::error!(error = %e, "cannot roll back a failed write job's savepoint");
            Err(first)
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".into()
    }
}

/// Sets `Died` when the thread ends in any way other than `Close` (a panic unwinding included).
struct Watchdog(watch::Sender<WriterState>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        if *self.0.borrow() == WriterState::Running {
            tracing::error!("the database writer stopped; every write fails until the process restarts");
            self.0.send_replace(WriterState::Died);
        }
    }
}

pub(super) fn spawn(conn: Connection, rx: mpsc::Receiver<Msg>) -> std::io::Result<watch::Receiver<WriterState>> {
    let (status, watch) = watch::channel(WriterState::Running);
    std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || {
        let dog = Watchdog(status);
        writer_loop(conn, rx, &dog);
    })?;
    Ok(watch)
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Msg>, dog: &Watchdog) {
    let commit_allowed = guard_commits(&conn);
    let mut close = None;
    while close.is_none() {
        let mut batch = Vec::new();
        match rx.recv() {
            Ok(Msg::Job(job)) => batch.push(job),
            Ok(Msg::Close(reply)) => close = Some(reply),
            #[cfg(feature = "fault-injection")]
            Ok(Msg::Die) => die(),
            // Every `Store` is gone: nobody can write any more.
            Err(_) => {
                dog.0.send_replace(WriterState::Closed);
                return;
            }
        }
        while batch.len() < MAX_BATCH && close.is_none() && !batch.is_empty() {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => batch.push(job),
                Ok(Msg::Close(reply)) => close = Some(reply),
                #[cfg(feature = "fault-injection")]
                Ok(Msg::Die) => die(),
                Err(_) => break,
            }
        }
        #[cfg(feature = "fault-injection")]
        fault::before_batch();
        if !run_batch(&conn, &commit_allowed, batch) {
            // Still inside a transaction we cannot end: the connection is unusable.
            return;
        }
    }
    let result = checkpoint_and_close(conn);
    dog.0.send_replace(WriterState::Closed);
    if let Some(reply) = close {
        let _ = reply.send(result);
    }
}

#[cfg(feature = "fault-injection")]
fn die() -> ! {
    #[allow(clippy::panic)]
    {
        panic!("fault injection: the database writer dies")
    }
}

/// Only the writer's own COMMIT may commit (see the module docs): returns the flag it raises.
fn guard_commits(conn: &Connection) -> Arc<AtomicBool> {
    let commit_allowed = Arc::new(AtomicBool::new(false));
    let allowed = commit_allowed.clone();
    // A hook returning true turns the commit into a rollback.
    conn.commit_hook(Some(move || !allowed.load(Ordering::SeqCst)));
    commit_allowed
}

/// Runs the jobs, committing them together where it can. Returns `false` when the connection is
/// left inside a transaction it cannot end.
pub(super) fn run_batch(conn: &Connection, commit_allowed: &AtomicBool, batch: Vec<WriteJob>) -> bool {
    let mut pending: VecDeque<WriteJob> = batch.into();
    while !pending.is_empty() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = StoreError::from(e);
            tracing::error!(error = %e, "cannot begin write transaction");
            for job in pending.drain(..) {
                job(Err(&e))(None);
            }
            return conn.is_autocommit();
        }
        let mut ran = Vec::with_capacity(pending.len());
        let mut rolled_back = false;
        while let Some(job) = pending.pop_front() {
            ran.push(job(Ok(conn)));
            if conn.is_autocommit() {
                rolled_back = true;
                break;
            }
        }
        let batch_error = if rolled_back {
            tracing::error!(jobs = ran.len(), "SQLite rolled the write transaction back; its jobs are not committed");
            Some(StoreError::Transaction("SQLite rolled the write transaction back".into()))
        } else {
            commit_allowed.store(true, Ordering::SeqCst);
            let committed = conn.execute_batch("COMMIT");
            commit_allowed.store(false, Ordering::SeqCst);
            match committed {
                Ok(()) => None,
                Err(e) => {
                    tracing::error!(error = %e, jobs = ran.len(), "commit failed; the batch is rolled back");
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    Some(StoreError::from(e))
                }
            }
        };
        for deliver in ran {
            deliver(batch_error.as_ref());
        }
        if !conn.is_autocommit() {
            tracing::error!("the write connection is stuck inside a failed transaction");
            for job in pending.drain(..) {
                let e = StoreError::Transaction("the write connection is unusable".into());
                job(Err(&e))(None);
            }
            return false;
        }
    }
    true
}

/// Moves the whole WAL into the database and empties it, then closes the connection (the last
/// connection to close removes the `-wal` and `-shm` files).
fn checkpoint_and_close(conn: Connection) -> StoreResult<()> {
    let (busy, _, _): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if busy != 0 {
        tracing::warn!("the WAL checkpoint at shutdown was blocked by a reader; it completes at the next start");
    }
    conn.close().map_err(|(_, e)| StoreError::from(e))
}

#[cfg(feature = "fault-injection")]
mod fault {
    /// `APPLIANCE_FAULT_KILL_WRITER=PATH` (test builds only): once PATH exists, the writer
    /// thread panics before its next batch, outside any job, as a bug in the loop would.
    pub fn before_batch() {
        if let Some(path) = std::env::var_os("APPLIANCE_FAULT_KILL_WRITER") {
            if std::path::Path::new(&path).exists() {
                super::die();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    type Outcomes = Arc<Mutex<Vec<(&'static str, StoreResult<()>)>>>;

    fn db() -> (Connection, Arc<AtomicBool>) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT NOT NULL)").unwrap();
        let guard = guard_commits(&conn);
        (conn, guard)
    }

    fn job(
        name: &'static str,
        outcomes: &Outcomes,
        f: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static,
    ) -> WriteJob {
        let outcomes = outcomes.clone();
        make_job(f, move |r| outcomes.lock().unwrap().push((name, r)))
    }

    fn insert(c: &Connection, v: &str) -> StoreResult<()> {
        c.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
        Ok(())
    }

    fn rows(c: &Connection) -> Vec<String> {
        let mut st = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn summary(outcomes: &Outcomes) -> Vec<(&'static str, Result<(), String>)> {
        outcomes.lock().unwrap().iter().map(|(n, r)| (*n, r.as_ref().map(|_| ()).map_err(|e| e.to_string()))).collect()
    }

    #[test]
    fn a_panicking_job_fails_alone_and_its_writes_are_rolled_back() {
        let (conn, guard) = db();
        let outcomes = Outcomes::default();
        let batch = vec![
            job("a", &outcomes, |c| insert(c, "a")),
            job("b", &outcomes, |c| {
                insert(c, "b")?;
                let v: Vec<u8> = Vec::new();
                let _ = v[1];
                Ok(())
            }),
            job("c", &outcomes, |c| insert(c, "c")),
        ];
        assert!(run_batch(&conn, &guard, batch));
        let got = summary(&outcomes);
        assert_eq!(got[0], ("a", Ok(())));
        assert!(
            matches!(&got[1], ("b", Err(e)) if e.contains("panicked") && e.contains("index out of bounds")),
            "{got:?}"
        );
        assert_eq!(got[2], ("c", Ok(())));
        assert_eq!(rows(&conn), ["a", "c"]);
        assert!(conn.is_autocommit());
    }

    #[test]
    fn when_sqlite_rolls_the_transaction_back_no_job_that_ran_in_it_is_reported_committed() {
        let (conn, guard) = db();
        let outcomes = Outcomes::default();
        let batch = vec![
            job("a", &outcomes, |c| insert(c, "a")),
            // What SQLite does by itself on SQLITE_FULL or an I/O error: the transaction is gone.
            // The job swallows the error and carries on; nothing it writes afterwards may stick.
            job("b", &outcomes, |c| {
                insert(c, "b")?;
                c.execute_batch("ROLLBACK")?;
                let _ = insert(c, "b-after-rollback");
                Ok(())
            }),
            job("c", &outcomes, |c| insert(c, "c")),
            job("d", &outcomes, |c| insert(c, "d")),
        ];
        assert!(run_batch(&conn, &guard, batch));
        let got = summary(&outcomes);
        assert!(matches!(&got[0], ("a", Err(e)) if e.contains("not committed")), "{got:?}");
        assert!(matches!(&got[1], ("b", Err(e)) if e.contains("not committed")), "{got:?}");
        // The jobs not run yet start again in a fresh transaction.
        assert_eq!(&got[2..], [("c", Ok(())), ("d", Ok(()))]);
        assert_eq!(rows(&conn), ["c", "d"]);
    }

    #[test]
    fn a_job_cannot_commit_on_its_own() {
        let (conn, guard) = db();
        let outcomes = Outcomes::default();
        let batch = vec![
            job("a", &outcomes, |c| insert(c, "a")),
            job("b", &outcomes, |c| {
                insert(c, "b")?;
                let _ = c.execute_batch("RELEASE job; COMMIT");
                Ok(())
            }),
        ];
        assert!(run_batch(&conn, &guard, batch));
        let got = summary(&outcomes);
        assert!(got.iter().all(|(_, r)| r.is_err()), "{got:?}");
        assert!(rows(&conn).is_empty());
    }

    /// A real SQLITE_FULL (the page limit stands in for the disk): SQLite rolls back the whole
    /// transaction, not just the statement, so the job before it is not committed either.
    #[test]
    fn a_full_database_fails_every_job_of_the_transaction_and_the_next_ones_start_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("full.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v TEXT NOT NULL);").unwrap();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        conn.execute_batch(&format!("PRAGMA max_page_count = {}", pages + 2)).unwrap();
        let guard = guard_commits(&conn);
        let outcomes = Outcomes::default();
        let big = "x".repeat(64 * 1024);
        let batch = vec![
            job("small", &outcomes, |c| insert(c, "small")),
            job("big", &outcomes, move |c| insert(c, &big)),
            job("after", &outcomes, |c| insert(c, "after")),
        ];
        assert!(run_batch(&conn, &guard, batch));
        let got = summary(&outcomes);
        assert!(matches!(&got[0], ("small", Err(e)) if e.contains("not committed")), "{got:?}");
        assert!(matches!(&got[1], ("big", Err(e)) if e.contains("full")), "{got:?}");
        assert_eq!(got[2], ("after", Ok(())));
        assert_eq!(rows(&conn), ["after"]);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn close_checkpoints_the_wal_and_closes_every_connection() {
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appliance.db");
        let wal = dir.path().join("appliance.db-wal");
        let shm = dir.path().join("appliance.db-shm");
        let store = Store::open(&path, 2).unwrap();
        store.write_blocking(|c| Ok(c.execute_batch("CREATE TABLE t (v TEXT NOT NULL)")?)).unwrap();
        for i in 0..20 {
            store.write_blocking(move |c| insert(c, &format!("row {i}"))).unwrap();
        }
        assert_eq!(store.read_blocking(|c| Ok(rows(c).len())).unwrap(), 20);
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);

        runtime().block_on(store.close()).unwrap();
        assert!(!wal.exists(), "the WAL is left behind");
        assert!(!shm.exists(), "the shared-memory file is left behind");
        assert_eq!(store.writer_state(), WriterState::Closed);
        assert!(matches!(store.write_blocking(|c| insert(c, "late")), Err(StoreError::WriterGone)));
        assert!(matches!(store.read_blocking(|c| Ok(rows(c))), Err(StoreError::Closed)));

        let reopened = Connection::open(&path).unwrap();
        assert_eq!(rows(&reopened).len(), 20);
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn a_dead_writer_is_reported_and_writes_fail() {
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("appliance.db"), 1).unwrap();
        assert_eq!(store.writer_state(), WriterState::Running);
        store.kill_writer();
        runtime().block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), store.writer_died()).await.unwrap();
        });
        assert_eq!(store.writer_state(), WriterState::Died);
        assert!(matches!(store.write_blocking(|_| Ok(())), Err(StoreError::WriterGone)));
    }
}
