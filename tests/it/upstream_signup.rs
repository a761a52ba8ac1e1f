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

const P_TOKEN: &str = "01JX0000000000000000000061";

/// `registration_token_required: true`: a new account through the provider needs a valid
/// registration token, used like the password sign-up uses it; a used-up, unknown or missing
/// token creates nothing.
#[tokio::test]
async fn a_provider_requiring_registration_tokens_consumes_one_per_new_account() {
    let op = FakeOp::start().await;
    let more = format!("{NONE}      registration_token_required: true\n");
    let app = upstream_app(&[provider(P_TOKEN, &op, "c-token", &more)], "").await;
    op.client("c-token", Expect::None);
    let s = &app.state;
    appliance::lifecycle::registration_tokens::create(
        &s.store,
        s.clock.as_ref(),
        s.rng.as_ref(),
        Some("INVITE-1".into()),
        Some(1),
        None,
    )
    .await
    .unwrap();
    let users = "SELECT count(*) FROM users";
    let used = "SELECT times_used FROM user_registration_tokens WHERE token = 'INVITE-1'";

    let browser = app.new_client();
    let (link, page) = to_link_page(&app, &op, &browser, P_TOKEN, json!({"sub": "ivy"})).await;
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"token\""), "the token field is asked for: {html}");
    for (token, says) in [(None, "not valid"), (Some("NOPE"), "not valid")] {
        let mut form = vec![("csrf", csrf_of(&html)), ("action", "register".into()), ("username", "ivy".into())];
        if let Some(t) = token {
            form.push(("token", t.into()));
        }
        let res = browser.post(app.url(&link)).form(&form).send().await.unwrap();
        assert_eq!(res.status(), 400, "{token:?}");
        let page = res.text().await.unwrap();
        assert!(page.contains(says) && page.contains("aria-invalid=\"true\""), "{token:?}: {page}");
    }
    assert_eq!(count(&app, users), 0);
    let form = [
        ("csrf", csrf_of(&html)),
        ("action", "register".into()),
        ("username", "ivy".into()),
        ("token", "INVITE-1".into()),
    ];
    let res = browser.post(app.url(&link)).form(&form).send().await.unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/account/".to_string()));
    assert_eq!((count(&app, users), count(&app, used)), (1, 1));

    // The token allowed one account: the next person through the provider is refused.
    let other = app.new_client();
    let res =
        sign_up(&app, &op, &other, P_TOKEN, json!({"sub": "jack"}), &[("username", "jack"), ("token", "INVITE-1")])
            .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("used up"));
    assert_eq!((count(&app, users), count(&app, used)), (1, 1));
}

const P_TOS: &str = "01JX0000000000000000000071";

/// With `branding.tos_uri`, a new account through a provider accepts the terms on the link page;
/// the acceptance is recorded with the account. An existing user signing in is not asked.
#[tokio::test]
async fn new_upstream_users_accept_the_terms_of_service() {
    let op = FakeOp::start().await;
    let app =
        upstream_app(&[provider(P_TOS, &op, "c-tos", NONE)], "branding: {tos_uri: \"https://example.org/tos\"}").await;
    op.client("c-tos", Expect::None);

    let browser = app.new_client();
    let (link, page) = to_link_page(&app, &op, &browser, P_TOS, json!({"sub": "kim"})).await;
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"tos\"") && html.contains("href=\"https://example.org/tos\""), "{html}");
    let form = vec![("csrf", csrf_of(&html)), ("action", "register".to_string()), ("username", "kim".to_string())];
    let res = browser.post(app.url(&link)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let page = res.text().await.unwrap();
    assert!(page.contains("Accept the terms of service") && page.contains("id=\"tos-error\""), "{page}");
    assert_eq!(count(&app, "SELECT count(*) FROM users"), 0);

    let mut form = form;
    form.push(("tos", "accept".into()));
    let res = browser.post(app.url(&link)).form(&form).send().await.unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/account/".to_string()));
    let terms = "SELECT count(*) FROM user_terms JOIN users USING (user_id) WHERE username = 'kim' AND terms_url = 'https://example.org/tos'";
    assert_eq!(count(&app, terms), 1);

    // Signing in again with the linked account asks nothing.
    let again = app.new_client();
    let (_, res) = to_link_page(&app, &op, &again, P_TOS, json!({"sub": "kim"})).await;
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/account/".to_string()));
}
