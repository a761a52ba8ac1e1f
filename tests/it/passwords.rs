//! Stored passwords: a login verifies without re-hashing or piling up rows; an outdated scheme
//! is upgraded once, in place.

use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

fn password_rows(app: &TestApp, username: &str) -> Vec<(String, u16)> {
    let conn = Connection::open_with_flags(&app.db_path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT p.hashed_password, p.version FROM user_passwords p JOIN users u ON u.user_id = p.user_id
             WHERE u.username = ?1",
        )
        .unwrap();
    stmt.query_map([username], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

async fn compat_login(app: &TestApp, username: &str) {
    let res = app
        .client
        .post(app.url("/_matrix/client/v3/login"))
        .json(&json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": username}, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn ten_logins_leave_one_unchanged_password_row() {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "bob", PASSWORD, false).await;
    let registered = password_rows(&app, "bob");
    assert_eq!(registered.len(), 1, "{registered:?}");

    for _ in 0..10 {
        compat_login(&app, "bob").await;
    }
    let after = password_rows(&app, "bob");
    assert_eq!(after, registered, "a login of the current scheme must neither re-hash nor add a row");
}

#[tokio::test]
async fn an_outdated_scheme_is_upgraded_once_in_place() {
    // bob's password is hashed with scheme 1; the server then runs with a cheaper scheme 2.
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "bob", PASSWORD, false).await;
    let (dir, patch) = app.stop().await;
    let upgraded = crate::helpers::spawn_app_in(
        dir,
        &format!(
            "{patch}passwords: {{schemes: [{{version: 1, algorithm: argon2id}}, \
             {{version: 2, algorithm: argon2id, memory_kib: 8192, iterations: 3}}]}}\n"
        ),
    )
    .await;
    let before = password_rows(&upgraded, "bob");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].1, 1);

    compat_login(&upgraded, "bob").await;
    let once = password_rows(&upgraded, "bob");
    assert_eq!(once.len(), 1, "the upgrade replaces the row: {once:?}");
    assert_eq!(once[0].1, 2);
    assert!(once[0].0.contains("m=8192,t=3,p=1"), "{}", once[0].0);

    for _ in 0..3 {
        compat_login(&upgraded, "bob").await;
    }
    assert_eq!(password_rows(&upgraded, "bob"), once, "upgraded once, then left alone");
}
