//! New accounts through an upstream provider (against the in-process provider, `upstream_op`):
//! registration tokens, terms of service, and the cleanup of abandoned sign-ins.

use std::time::Duration;

use serde_json::json;

use crate::flows::{csrf_of, location};
use crate::helpers::TestApp;
use crate::upstream_journey::{count, provider, sign_up, to_link_page, upstream_app};
use crate::upstream_op::{Expect, FakeOp};

const NONE: &str = "      token_endpoint_auth_method: none\n";

/// Waits (on the worker's hourly cleanup, driven by the mock clock) until `sql` counts `want`.
async fn wait_for_count(app: &TestApp, sql: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = count(app, sql);
        if n == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sql}: {n}, expected {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const P_CLEAN: &str = "01JX0000000000000000000051";
const SESSIONS: &str = "SELECT count(*) FROM upstream_oauth_authorization_sessions";

/// Abandoned sign-ins — left at the provider, or on the link page — and the sessions of browser
/// sessions that ended are deleted by the hourly cleanup a day later, with the links no user
/// took; the session a signed-in browser came through stays (back-channel logout needs it).
#[tokio::test]
async fn abandoned_upstream_sign_ins_are_pruned_with_the_other_expired_rows() {
    let op = FakeOp::start().await;
    let more = format!("{NONE}      on_backchannel_logout: logout_browser_only\n");
    let app = upstream_app(&[provider(P_CLEAN, &op, "c-clean", &more)], "").await;
    op.client("c-clean", Expect::None);

    // Left at the provider.
    let res = app.new_client().get(app.url(&format!("/upstream/authorize/{P_CLEAN}"))).send().await.unwrap();
    assert_eq!(res.status(), 303);
    // Left on the link page: a link without a user.
    let (_, page) = to_link_page(&app, &op, &app.new_client(), P_CLEAN, json!({"sub": "left"})).await;
    assert_eq!(page.status(), 200);
    // Signed up and still signed in.
    let kept = app.new_client();
    let res = sign_up(&app, &op, &kept, P_CLEAN, json!({"sub": "kept", "sid": "s1"}), &[("username", "kept")]).await;
    assert_eq!(location(&res), "/account/");
    // Signed up, then signed out.
    let gone = app.new_client();
    let res = sign_up(&app, &op, &gone, P_CLEAN, json!({"sub": "gone", "sid": "s2"}), &[("username", "gone")]).await;
    assert_eq!(location(&res), "/account/");
    let html = gone.get(app.url("/account/")).send().await.unwrap().text().await.unwrap();
    let res = gone.post(app.url("/logout")).form(&[("csrf", csrf_of(&html))]).send().await.unwrap();
    assert_eq!(location(&res), "/login");
    assert_eq!(count(&app, SESSIONS), 4);
    assert_eq!(count(&app, "SELECT count(*) FROM upstream_oauth_links"), 3);

    app.clock.advance(86_400 + 60);
    // A journey started now is not abandoned yet.
    let res = app.new_client().get(app.url(&format!("/upstream/authorize/{P_CLEAN}"))).send().await.unwrap();
    assert_eq!(res.status(), 303);
    wait_for_count(&app, SESSIONS, 2).await;
    assert_eq!(count(&app, &format!("{SESSIONS} WHERE subject = 'kept'")), 1);
    assert_eq!(count(&app, &format!("{SESSIONS} WHERE completed_at IS NULL")), 1, "the fresh journey");
    // The link nobody took is gone; the users' links stay.
    let links = "SELECT group_concat(subject, ',') FROM (SELECT subject FROM upstream_oauth_links ORDER BY subject)";
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let left: String = conn.query_row(links, [], |r| r.get(0)).unwrap();
    assert_eq!(left, "gone,kept");
    // The signed-in browser still ends through back-channel logout.
    let token = op.logout_token("c-clean", "kept", "s1");
    let res = app.post_form(&format!("/upstream/backchannel-logout/{P_CLEAN}"), &[("logout_token", &token)]).await;
    assert_eq!(res.status(), 200);
    let res = kept.get(app.url("/account/")).send().await.unwrap();
    assert!(location(&res).starts_with("/login"), "the browser session survived");
}
