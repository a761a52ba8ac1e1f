//! Crash safety: `kill -9` of the real binary at random moments under mixed load loses no token
//! the client saw issued and brings back no token it saw revoked; a clean stop checkpoints the
//! WAL and closes the database.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use super::load::{self, Outcome, Target};
use crate::flows::clients_patch;
use crate::helpers::*;

/// How many times the server is killed.
const CYCLES: usize = 40;
const COMPAT_WORKERS: usize = 4;
const GRANT_WORKERS: usize = 2;
const PASSWORD: &str = "crash-test-password-1";

/// What the client saw: tokens that must introspect active, and tokens that must not.
#[derive(Default)]
struct Ledger {
    active: HashSet<String>,
    inactive: HashSet<String>,
    /// Requests answered, by kind (for the report).
    logins: usize,
    refreshes: usize,
    logouts: usize,
    grants: usize,
    revocations: usize,
    /// Requests the kill left without an answer (their outcome is unknown, so unchecked).
    unanswered: usize,
}

type Shared = Arc<Mutex<Ledger>>;

/// A compat session the client holds.
#[derive(Clone)]
struct Session {
    access: String,
    refresh: String,
}

/// The config of a server on `port` with the database in `dir`.
fn write_config(dir: &Path, port: u16) -> PathBuf {
    let public_base = format!("http://127.0.0.1:{port}/");
    let yaml = merged_yaml(&test_config_yaml(&public_base, &dir.join("appliance.db")), &clients_patch());
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// Starts `serve` on a free port (a new one if another process took it meanwhile).
fn start(dir: &Path) -> (ServeProcess, Target) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let config = write_config(dir, port);
        match ServeProcess::start(&config, Duration::from_secs(60)) {
            Ok(p) => return (p, Target::new(&format!("http://127.0.0.1:{port}"))),
            Err(e) if e.contains("cannot listen") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("cannot start the server: {last}");
}

pub fn integrity_check(db: &Path) {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database read-only");
    let result: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    assert_eq!(result, "ok", "PRAGMA integrity_check");
}

/// Logs in, refreshes and logs out as `user` until the server stops answering.
async fn compat_worker(t: Target, user: String, mut sessions: Vec<Session>, ledger: Shared) -> Vec<Session> {
    loop {
        let pick = rand::thread_rng().gen_range(0..10);
        if sessions.len() < 2 || pick < 3 {
            match load::compat_login(&t, &user, PASSWORD).await {
                Outcome::Done((access, refresh)) => {
                    let mut l = ledger.lock().unwrap();
                    l.logins += 1;
                    l.active.insert(access.clone());
                    sessions.push(Session { access, refresh });
                }
                Outcome::NoAnswer(_) => {
                    ledger.lock().unwrap().unanswered += 1;
                    return sessions;
                }
                other => panic!("login: {other:?}"),
            }
        } else if pick < 8 {
            let i = rand::thread_rng().gen_range(0..sessions.len());
            let old = sessions[i].clone();
            match load::compat_refresh(&t, &old.refresh).await {
                Outcome::Done((access, refresh)) => {
                    let mut l = ledger.lock().unwrap();
                    l.refreshes += 1;
                    l.active.remove(&old.access);
                    l.inactive.insert(old.access);
                    l.active.insert(access.clone());
                    sessions[i] = Session { access, refresh };
                }
                Outcome::NoAnswer(_) => {
                    // It may or may not have rotated: neither token is known any more.
                    let mut l = ledger.lock().unwrap();
                    l.unanswered += 1;
                    l.active.remove(&old.access);
                    sessions.swap_remove(i);
                    return sessions;
                }
                other => panic!("refresh of a refresh token the client saw issued: {other:?}"),
            }
        } else {
            let i = rand::thread_rng().gen_range(0..sessions.len());
            let old = sessions.swap_remove(i);
            match load::compat_logout(&t, &old.access).await {
                Outcome::Done(()) => {
                    let mut l = ledger.lock().unwrap();
                    l.logouts += 1;
                    l.active.remove(&old.access);
                    l.inactive.insert(old.access);
                }
                Outcome::NoAnswer(_) => {
                    let mut l = ledger.lock().unwrap();
                    l.unanswered += 1;
                    l.active.remove(&old.access);
                    return sessions;
                }
                other => panic!("logout with an access token the client saw issued: {other:?}"),
            }
        }
    }
}

/// Takes client_credentials tokens and revokes some until the server stops answering.
async fn grant_worker(t: Target, mut held: Vec<String>, ledger: Shared) -> Vec<String> {
    loop {
        let revoke = !held.is_empty() && (held.len() >= 8 || rand::thread_rng().gen_range(0..10) < 3);
        if revoke {
            let i = rand::thread_rng().gen_range(0..held.len());
            let token = held.swap_remove(i);
            match load::revoke(&t, &token).await {
                Outcome::Done(()) => {
                    let mut l = ledger.lock().unwrap();
                    l.revocations += 1;
                    l.active.remove(&token);
                    l.inactive.insert(token);
                }
                Outcome::NoAnswer(_) => {
                    let mut l = ledger.lock().unwrap();
                    l.unanswered += 1;
                    l.active.remove(&token);
                    return held;
                }
                other => panic!("revoke: {other:?}"),
            }
        } else {
            match load::client_credentials(&t).await {
                Outcome::Done(token) => {
                    let mut l = ledger.lock().unwrap();
                    l.grants += 1;
                    l.active.insert(token.clone());
                    held.push(token);
                }
                Outcome::NoAnswer(_) => {
                    ledger.lock().unwrap().unanswered += 1;
                    return held;
                }
                other => panic!("client_credentials: {other:?}"),
            }
        }
    }
}

/// Every token the client saw issued (and not revoked) is active; every one it saw revoked is not.
async fn verify(t: &Target, ledger: &Shared, cycle: usize) {
    let (active, inactive): (Vec<String>, Vec<String>) = {
        let l = ledger.lock().unwrap();
        (l.active.iter().cloned().collect(), l.inactive.iter().cloned().collect())
    };
    let lost = load::not_in_state(t, active.clone(), true).await;
    assert!(lost.is_empty(), "after kill {cycle}: {} of {} issued tokens are lost: {lost:?}", lost.len(), active.len());
    let back = load::not_in_state(t, inactive.clone(), false).await;
    assert!(back.is_empty(), "after kill {cycle}: {} revoked tokens came back: {back:?}", back.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_mixed_load_loses_no_issued_token_and_revives_no_revoked_one() {
    let dir = tempdir();
    let db = dir.path().join("appliance.db");
    let config = write_config(dir.path(), 9);
    let users: Vec<String> = (0..COMPAT_WORKERS).map(|i| format!("crash{i}")).collect();
    for u in &users {
        expect_success(
            "register-user",
            &run_cli(&config, &["manage", "register-user", u, "--password", PASSWORD, "--skip-homeserver-check"]),
        );
    }

    let ledger = Shared::default();
    let mut compat_state: Vec<Vec<Session>> = vec![Vec::new(); COMPAT_WORKERS];
    let mut grant_state: Vec<Vec<String>> = vec![Vec::new(); GRANT_WORKERS];
    let started = Instant::now();
    let mut kill_after_ms = Vec::new();
    for cycle in 0..CYCLES {
        let (mut server, t) = start(dir.path());
        integrity_check(&db);
        verify(&t, &ledger, cycle).await;

        let compat: Vec<_> = users
            .iter()
            .zip(std::mem::take(&mut compat_state))
            .map(|(u, s)| tokio::spawn(compat_worker(t.clone(), u.clone(), s, ledger.clone())))
            .collect();
        let grants: Vec<_> = std::mem::take(&mut grant_state)
            .into_iter()
            .map(|h| tokio::spawn(grant_worker(t.clone(), h, ledger.clone())))
            .collect();
        // Let the load run a random while, then pull the plug mid-flight.
        let ms = rand::thread_rng().gen_range(20..400);
        kill_after_ms.push(ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        server.signal("KILL");
        let status = server.wait_for_exit(Duration::from_secs(10)).expect("the server exits after SIGKILL");
        assert!(!status.success());
        for w in compat {
            compat_state.push(w.await.expect("compat worker"));
        }
        for w in grants {
            grant_state.push(w.await.expect("grant worker"));
        }
    }

    // The last restart: check everything once more, then stop cleanly.
    let (mut server, t) = start(dir.path());
    integrity_check(&db);
    verify(&t, &ledger, CYCLES).await;
    let status = server.terminate(Duration::from_secs(20)).expect("exit after SIGTERM");
    assert!(status.success(), "exit {status}:\n{}", server.stderr_text());
    integrity_check(&db);

    let l = ledger.lock().unwrap();
    eprintln!(
        "{CYCLES} kill -9 cycles in {:?} (kills after {kill_after_ms:?} ms of load): {} logins, {} refreshes, \
         {} logouts, {} client_credentials grants, {} revocations answered, {} left unanswered by the kill; \
         checked after every restart: {} tokens active, {} revoked tokens inactive",
        started.elapsed(),
        l.logins,
        l.refreshes,
        l.logouts,
        l.grants,
        l.revocations,
        l.unanswered,
        l.active.len(),
        l.inactive.len(),
    );
    // The kills must have landed on live traffic, or the test proved nothing.
    assert!(l.unanswered >= CYCLES / 2, "only {} requests were cut off by a kill", l.unanswered);
    assert!(l.refreshes > 0 && l.logouts > 0 && l.revocations > 0 && l.grants > 0 && l.logins > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_checkpoints_the_wal_and_closes_the_database() {
    for signal in ["INT", "TERM"] {
        let dir = tempdir();
        let db = dir.path().join("appliance.db");
        let wal = dir.path().join("appliance.db-wal");
        let shm = dir.path().join("appliance.db-shm");
        let (mut server, t) = start(dir.path());
        let mut issued = Vec::new();
        for _ in 0..30 {
            match load::client_credentials(&t).await {
                Outcome::Done(token) => issued.push(token),
                other => panic!("client_credentials: {other:?}"),
            }
        }
        assert!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0, "the writes went to the WAL");

        server.signal(signal);
        let status = server.wait_for_exit(Duration::from_secs(20)).expect("exit after the signal");
        assert!(status.success(), "SIG{signal}: exit {status}:\n{}", server.stderr_text());
        assert!(!wal.exists(), "SIG{signal} left a -wal file of {:?} bytes", std::fs::metadata(&wal).map(|m| m.len()));
        assert!(!shm.exists(), "SIG{signal} left a -shm file");
        integrity_check(&db);

        let (mut server, t) = start(dir.path());
        let lost = load::not_in_state(&t, issued, true).await;
        assert!(lost.is_empty(), "tokens lost over a clean restart: {lost:?}");
        server.terminate(Duration::from_secs(20)).expect("exit");
    }
}
