//! Issue 16 item 4: a user with a second factor who signs in through an upstream provider is
//! asked for it too (a factor the user set up is not bypassed), and the provider's
//! authorization session is tied to the browser session that starts after the code.

use appliance::clock::Clock;
use serde_json::json;

use crate::flows::{get, location, post, register_user};
use crate::mfa::{PASSWORD, code_at, enrol};
use crate::upstream_journey::{count, provider, to_link_page, upstream_app, user_id};
use crate::upstream_op::{Expect, FakeOp};

const P: &str = "01JX0000000000000000000161";

#[tokio::test]
async fn upstream_sign_in_asks_for_the_second_factor() {
    let op = FakeOp::start().await;
    let app = upstream_app(&[provider(P, &op, "c-mfa", "      token_endpoint_auth_method: none\n")], "").await;
    op.client("c-mfa", Expect::None);
    register_user(&app, "alice", PASSWORD, false).await;
    let (secret, _, _) = enrol(&app).await;
    let (store, now) = (&app.state.store, app.state.now());
    appliance::lifecycle::upstream::add_link(
        store,
        &user_id(&app, "alice"),
        P,
        "alice-sub",
        None,
        now,
        app.state.rng.as_ref(),
    )
    .await
    .unwrap();

    let browser = app.new_client();
    let (_, page) = to_link_page(&app, &op, &browser, P, json!({"sub": "alice-sub"})).await;
    assert_eq!(page.status(), 303, "{}", page.text().await.unwrap());
    assert_eq!(location(&page), "/login/mfa", "the provider does not replace the second factor");
    let res = browser.get(app.url("/account/")).send().await.unwrap();
    assert_eq!(res.status(), 303, "not signed in before the code");
    let consumed = "SELECT count(*) FROM upstream_oauth_authorization_sessions WHERE user_session_id IS NOT NULL";
    assert_eq!(count(&app, consumed), 0);

    let (status, html) = get(&app, &browser, "/login/mfa").await;
    assert_eq!(status, 200);
    let csrf = crate::flows::csrf_of(&html);
    assert_eq!(post(&app, &browser, "/login/mfa", &[("csrf", &csrf), ("code", "000000")]).await.status(), 401);
    app.clock.advance(30);
    let code = code_at(&secret, app.clock.now());
    let res = post(&app, &browser, "/login/mfa", &[("csrf", &csrf), ("code", &code)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/");
    assert_eq!(get(&app, &browser, "/account/").await.0, 200);
    assert_eq!(count(&app, consumed), 1, "the provider's session belongs to the new browser session");
}
