//! A full disk under load: no request is told "issued" for a write that did not commit, nothing
//! half-applied stays behind, and the service recovers by itself once space is freed.
//!
//! The database lives on a real size-limited filesystem: a tmpfs with `size=` mounted for the
//! test (this needs root, as the tests run here and in CI).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::crash::integrity_check;
use super::load::{self, Outcome, Target};
use crate::flows::{CONFIDENTIAL_CLIENT, clients_patch, register_user};
use crate::helpers::*;

/// A tmpfs of `size` mounted on a fresh temporary directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempdir();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a size-limited tmpfs and needs root: mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Writes `path` until the filesystem is full; returns its size.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create ballast");
    let chunk = vec![0xA5u8; 16 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("ballast: {e}"),
        }
    }
    let _ = f.sync_all();
    written
}

#[derive(Default)]
struct Tally {
    /// Access tokens answered 200, and how many sessions each kind of request created.
    issued: Vec<String>,
    grants: usize,
    logins: usize,
    /// 5xx answers, with their bodies.
    failed: Vec<String>,
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// `rounds` requests from each of 8 tasks, half client_credentials grants, half compat logins.
async fn load(t: &Target, rounds: usize, tally: &Arc<Mutex<Tally>>) {
    let mut set = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (t, tally) = (t.clone(), tally.clone());
        set.spawn(async move {
            for _ in 0..rounds {
                if w % 2 == 0 {
                    match load::client_credentials(&t).await {
                        Outcome::Done(token) => {
                            let mut tally = tally.lock().unwrap();
                            tally.grants += 1;
                            tally.issued.push(token);
                        }
                        Outcome::Failed(status, body) => {
                            let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"));
                            assert_eq!(v["error"], "server_error", "{status}: {body}");
                            tally.lock().unwrap().failed.push(body);
                        }
                        other => panic!("client_credentials: {other:?}"),
                    }
                } else {
                    match load::compat_login(&t, "disk", "disk-full-password-1").await {
                        Outcome::Done((access, _)) => {
                            let mut tally = tally.lock().unwrap();
                            tally.logins += 1;
                            tally.issued.push(access);
                        }
                        Outcome::Failed(status, body) => {
                            let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"));
                            assert!(v["errcode"].is_string(), "{status}: {body}");
                            tally.lock().unwrap().failed.push(body);
                        }
                        other => panic!("compat login: {other:?}"),
                    }
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("load task");
    }
}

/// Every token the client was given works; the writes it was told failed left nothing behind.
async fn verify(t: &Target, db: &Path, tally: &Tally) {
    let lost = load::not_in_state(t, tally.issued.clone(), true).await;
    assert!(lost.is_empty(), "{} of {} issued tokens are lost", lost.len(), tally.issued.len());
    let grant_sessions =
        count(db, &format!("SELECT count(*) FROM oauth2_sessions WHERE client_id = '{CONFIDENTIAL_CLIENT}'"));
    assert_eq!(grant_sessions, tally.grants as i64, "sessions in the database vs. grants answered 200");
    let compat_sessions = count(db, "SELECT count(*) FROM compat_sessions");
    assert_eq!(compat_sessions, tally.logins as i64, "compat sessions in the database vs. logins answered 200");
    let bare = count(
        db,
        "SELECT count(*) FROM oauth2_sessions s WHERE NOT EXISTS \
         (SELECT 1 FROM oauth2_access_tokens t WHERE t.oauth2_session_id = s.oauth2_session_id)",
    ) + count(
        db,
        "SELECT count(*) FROM compat_sessions s WHERE NOT EXISTS \
         (SELECT 1 FROM compat_access_tokens t WHERE t.compat_session_id = s.compat_session_id)",
    );
    assert_eq!(bare, 0, "half-applied writes: sessions without their token");
    integrity_check(db);
}

/// On a real full filesystem SQLite fails at COMMIT (the WAL cannot grow): the whole batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_fails_requests_truthfully_and_the_service_recovers_when_space_returns() {
    let fs = Tmpfs::mount("6m");
    let db: PathBuf = fs.path().join("appliance.db");
    let patch = format!("{}\ndatabase:\n  path: \"{}\"\n", clients_patch(), db.display());
    let app = spawn_app_with(&patch).await;
    register_user(&app, "disk", "disk-full-password-1", false).await;
    let t = Target::new(&app.base);
    let tally = Arc::new(Mutex::new(Tally::default()));

    // Fill the filesystem, then give back a little room so that some writes land first.
    let ballast = fs.path().join("ballast");
    let size = fill(&ballast);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .and_then(|f| f.set_len(size.saturating_sub(512 * 1024)))
        .expect("shrink ballast");

    load(&t, 40, &tally).await;
    let (failed_while_full, issued_while_full) = {
        let t = tally.lock().unwrap();
        (t.failed.len(), t.issued.len())
    };
    eprintln!("disk full: {issued_while_full} tokens issued, {failed_while_full} requests failed");
    assert!(failed_while_full > 0, "the disk never filled up: the test proved nothing");
    assert_eq!(app.get("/health").await.status(), 200, "the writer is alive on a full disk");

    // Free the space: the same process serves writes again, no restart.
    std::fs::remove_file(&ballast).expect("remove ballast");
    let failed_before = tally.lock().unwrap().failed.len();
    load(&t, 10, &tally).await;
    let tally = Arc::try_unwrap(tally).ok().expect("load done").into_inner().unwrap();
    assert_eq!(tally.failed.len(), failed_before, "writes still fail after space was freed: {:?}", tally.failed);
    assert!(tally.issued.len() > issued_while_full);

    verify(&t, &db, &tally).await;
    integrity_check(&db);
    app.stop().await;
    integrity_check(&db);
}

/// When a statement hits the limit, SQLite rolls back the whole transaction under the batch:
/// the jobs that ran before it in the batch are not committed, and the ones after it must not
/// run in autocommit mode. The page limit (`max_page_count`, set on the writer's own
/// connection) stands in for the disk here, because on a full filesystem the failure comes at
/// COMMIT rather than inside a statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_rolled_back_under_a_batch_fails_each_of_its_jobs_truthfully() {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "disk", "disk-full-password-1", false).await;
    let t = Target::new(&app.base);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let store = app.state.store.clone();
    let set_limit = |extra: Option<i64>| {
        let store = store.clone();
        async move {
            store
                .write(move |c| {
                    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                    let limit = extra.map(|e| pages + e).unwrap_or(1_073_741_823);
                    c.query_row(&format!("PRAGMA max_page_count = {limit}"), [], |_| Ok(()))?;
                    Ok(())
                })
                .await
                .expect("set max_page_count")
        }
    };

    set_limit(Some(4)).await;
    load(&t, 40, &tally).await;
    let (failed_while_full, issued_while_full) = {
        let t = tally.lock().unwrap();
        (t.failed.len(), t.issued.len())
    };
    eprintln!("page limit: {issued_while_full} tokens issued, {failed_while_full} requests failed");
    assert!(failed_while_full > 0, "the limit was never reached: the test proved nothing");

    set_limit(None).await;
    let failed_before = tally.lock().unwrap().failed.len();
    load(&t, 10, &tally).await;
    let tally = Arc::try_unwrap(tally).ok().expect("load done").into_inner().unwrap();
    assert_eq!(tally.failed.len(), failed_before, "writes still fail after the limit was lifted: {:?}", tally.failed);
    verify(&t, &app.db_path, &tally).await;
}
