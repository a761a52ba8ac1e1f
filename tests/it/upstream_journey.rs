//! The upstream sign-in against the in-process provider (`upstream_op`): client authentication
//! at the provider's token endpoint, the direct redirect when passwords are off, back-channel
//! logout modes, `localpart.on_conflict`, and unlinking from the account page.

use serde_json::{Value, json};

use crate::flows::{PUBLIC_CLIENT, REDIRECT, introspect, register_user};
use crate::flows::{authorize_and_consent, clients_patch, csrf_of, exchange_code, location, pkce, redirect_params};
use crate::helpers::{TestApp, merged_yaml, spawn_app_with};
use crate::upstream_op::{Expect, FakeOp};

pub const PASSWORD: &str = "correct horse battery staple wombat";

/// One `upstream_oauth2.providers[]` item at `op`; `more` are further keys (6-space indented).
pub fn provider(id: &str, op: &FakeOp, client_id: &str, more: &str) -> String {
    format!(
        "    - id: {id}\n      issuer: \"{}\"\n      human_name: \"Provider {client_id}\"\n      client_id: {client_id}\n      scope: \"openid profile email\"\n{more}",
        op.issuer
    )
}

/// The app with the flows' clients, the recording fake homeserver, `providers` and `extra`.
pub async fn upstream_app(providers: &[String], extra: &str) -> TestApp {
    let (endpoint, _calls) = crate::register::fake_homeserver().await;
    let patch = merged_yaml(&clients_patch(), &format!("matrix:\n  endpoint: \"{endpoint}\"\n"));
    let list = format!("upstream_oauth2:\n  providers:\n{}", providers.concat());
    spawn_app_with(&merged_yaml(&merged_yaml(&patch, &list), extra)).await
}

/// The provider signs in `claims` and the browser follows the callback to the link page.
pub async fn to_link_page(
    app: &TestApp,
    op: &FakeOp,
    browser: &reqwest::Client,
    provider: &str,
    claims: Value,
) -> (String, reqwest::Response) {
    let res = op.sign_in(app, browser, provider, "", claims, &[]).await;
    assert_eq!(res.status(), 303, "callback: {}", res.text().await.unwrap());
    let link = location(&res);
    assert!(link.starts_with("/upstream/link/"), "{link}");
    let page = browser.get(app.url(&link)).send().await.unwrap();
    (link, page)
}

/// A new account through the provider: the link page's register form with `fields` posted.
pub async fn sign_up(
    app: &TestApp,
    op: &FakeOp,
    browser: &reqwest::Client,
    provider: &str,
    claims: Value,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (link, page) = to_link_page(app, op, browser, provider, claims).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = csrf_of(&html);
    let mut form = vec![("csrf", csrf.as_str()), ("action", "register")];
    form.extend_from_slice(fields);
    browser.post(app.url(&link)).form(&form).send().await.unwrap()
}

pub fn user_id(app: &TestApp, username: &str) -> String {
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.query_row("SELECT user_id FROM users WHERE username = ?1", [username], |r| r.get(0)).unwrap()
}

pub fn count(app: &TestApp, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn status(app: &TestApp, browser: &reqwest::Client, path: &str) -> (u16, String) {
    let res = browser.get(app.url(path)).send().await.unwrap();
    let status = res.status().as_u16();
    let to = res.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    (status, to)
}

const P_NONE: &str = "01JX0000000000000000000001";
const P_BASIC: &str = "01JX0000000000000000000002";
const P_POST: &str = "01JX0000000000000000000003";
const P_SJWT: &str = "01JX0000000000000000000004";
const P_PKJWT: &str = "01JX0000000000000000000005";
const P_WRONG: &str = "01JX0000000000000000000006";

/// Each `token_endpoint_auth_method` authenticates at the provider the way the provider expects
/// (it verifies the secret, the HMAC or the signature against /oauth2/keys.json); a wrong secret
/// ends on the error page.
#[tokio::test]
async fn each_client_authentication_method_reaches_the_provider_as_it_expects() {
    let op = FakeOp::start().await;
    let method = |m: &str| format!("      token_endpoint_auth_method: {m}\n");
    let secret = |m: &str, s: &str| format!("{}      client_secret: \"{s}\"\n", method(m));
    let app = upstream_app(
        &[
            provider(P_NONE, &op, "c-none", &method("none")),
            provider(P_BASIC, &op, "c-basic:x", &secret("client_secret_basic", "basic s3cret&=")),
            provider(P_POST, &op, "c-post", &secret("client_secret_post", "post-secret")),
            provider(P_SJWT, &op, "c-sjwt", &secret("client_secret_jwt", "hmac-secret-of-32-bytes-or-more!!")),
            provider(
                P_PKJWT,
                &op,
                "c-pkjwt",
                &format!("{}      token_endpoint_auth_signing_alg: RS256\n", method("private_key_jwt")),
            ),
            provider(P_WRONG, &op, "c-wrong", &secret("client_secret_post", "not-what-the-provider-has")),
        ],
        "",
    )
    .await;
    op.client("c-none", Expect::None);
    op.client("c-basic:x", Expect::Basic { secret: "basic s3cret&=".into() });
    op.client("c-post", Expect::Post { secret: "post-secret".into() });
    op.client("c-sjwt", Expect::SecretJwt { secret: "hmac-secret-of-32-bytes-or-more!!".into() });
    op.client("c-pkjwt", Expect::PrivateKeyJwt { jwks_url: app.url("/oauth2/keys.json") });
    op.client("c-wrong", Expect::Post { secret: "the-real-secret".into() });

    for (provider, client, method) in [
        (P_NONE, "c-none", "none"),
        (P_BASIC, "c-basic:x", "client_secret_basic"),
        (P_POST, "c-post", "client_secret_post"),
        (P_SJWT, "c-sjwt", "client_secret_jwt"),
        (P_PKJWT, "c-pkjwt", "private_key_jwt"),
    ] {
        let browser = app.new_client();
        let res = op.sign_in(&app, &browser, provider, "", json!({"sub": format!("sub-{client}")}), &[]).await;
        let status = res.status();
        let body = res.text().await.unwrap();
        let seen = op.requests().into_iter().rev().find(|r| r.client_id == client);
        let seen = seen.unwrap_or_else(|| panic!("{method}: the provider saw no token request ({status}): {body}"));
        assert_eq!((seen.method.as_str(), seen.refused.as_deref()), (method, None), "{method}: {body}");
        assert_eq!(status, 303, "{method}: {body}");
    }
    // Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1).
    assert!(op.requests().iter().any(|r| r.client_id == "c-basic:x" && r.refused.is_none()));

    let browser = app.new_client();
    let res = op.sign_in(&app, &browser, P_WRONG, "", json!({"sub": "sub-wrong"}), &[]).await;
    assert_eq!(res.status(), 502);
    let page = res.text().await.unwrap();
    assert!(page.contains("did not complete the sign-in") && page.contains("invalid_client"), "{page}");
    assert!(page.contains(P_WRONG), "the page names the provider: {page}");
}

const P_ONE: &str = "01JX0000000000000000000011";
const P_TWO: &str = "01JX0000000000000000000012";

/// Passwords off and a single provider: `/login` goes straight to it, keeping `next`; with two
/// providers, or with passwords on, the page is shown.
#[tokio::test]
async fn passwords_off_and_one_provider_send_the_sign_in_straight_to_it() {
    let op = FakeOp::start().await;
    let none = "      token_endpoint_auth_method: none\n";
    let app = upstream_app(&[provider(P_ONE, &op, "one", none)], "passwords: {enabled: false}").await;
    let (code, to) = status(&app, &app.new_client(), "/login?next=%2Faccount%2F").await;
    assert_eq!(code, 303);
    assert_eq!(to, format!("/upstream/authorize/{P_ONE}?next=%2Faccount%2F"));
    // And the provider is where the browser ends up.
    let res = app.new_client().get(app.url(&to)).send().await.unwrap();
    assert!(location(&res).starts_with(&format!("{}/authorize?", op.issuer)));

    let two = upstream_app(
        &[provider(P_ONE, &op, "one", none), provider(P_TWO, &op, "two", none)],
        "passwords: {enabled: false}",
    )
    .await;
    let (code, _) = status(&two, &two.new_client(), "/login").await;
    assert_eq!(code, 200, "two providers: the choice is shown");

    let with_passwords = upstream_app(&[provider(P_ONE, &op, "one", none)], "").await;
    let (code, _) = status(&with_passwords, &with_passwords.new_client(), "/login").await;
    assert_eq!(code, 200, "passwords on: the form is shown");
}

const P_NOTHING: &str = "01JX0000000000000000000021";
const P_BROWSER: &str = "01JX0000000000000000000022";
const P_ALL: &str = "01JX0000000000000000000023";

/// An OAuth session started from `browser` (already signed in): its access token.
async fn oauth_session(app: &TestApp, browser: &reqwest::Client) -> String {
    let p = pkce();
    let query = [
        ("client_id", PUBLIC_CLIENT),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid urn:matrix:client:api:*"),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let res = authorize_and_consent(app, browser, &query, None).await;
    let params = redirect_params(&location(&res));
    let res = exchange_code(app, PUBLIC_CLIENT, REDIRECT, &params["code"], &p.verifier).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

/// `on_backchannel_logout`: `do_nothing` keeps everything, `logout_browser_only` ends the browser
/// session started through the provider but not the OAuth session started from it, `logout_all`
/// ends both. A logout token for another `sid` ends nothing.
#[tokio::test]
async fn backchannel_logout_applies_each_mode() {
    let op = FakeOp::start().await;
    let mode = |m: &str| format!("      token_endpoint_auth_method: none\n      on_backchannel_logout: {m}\n");
    let app = upstream_app(
        &[
            provider(P_NOTHING, &op, "c-nothing", &mode("do_nothing")),
            provider(P_BROWSER, &op, "c-browser", &mode("logout_browser_only")),
            provider(P_ALL, &op, "c-all", &mode("logout_all")),
        ],
        "",
    )
    .await;
    for c in ["c-nothing", "c-browser", "c-all"] {
        op.client(c, Expect::None);
    }
    for (provider, client, name, browser_ends, oauth_ends) in [
        (P_NOTHING, "c-nothing", "nothing", false, false),
        (P_BROWSER, "c-browser", "browseronly", true, false),
        (P_ALL, "c-all", "everything", true, true),
    ] {
        let browser = app.new_client();
        let sub = format!("sub-{name}");
        let claims = json!({"sub": sub, "sid": format!("sid-{name}")});
        let res = sign_up(&app, &op, &browser, provider, claims, &[("username", name)]).await;
        assert_eq!((res.status().as_u16(), location(&res)), (303, "/account/".to_string()), "{name}");
        let token = oauth_session(&app, &browser).await;

        // Another upstream session of the same provider: nothing ends.
        let other = op.logout_token(client, &sub, "another-sid");
        let res = app.post_form(&format!("/upstream/backchannel-logout/{provider}"), &[("logout_token", &other)]).await;
        assert_eq!(res.status(), 200);
        assert_eq!(status(&app, &browser, "/account/").await.0, 200, "{name}: another sid ended the session");

        let logout = op.logout_token(client, &sub, &format!("sid-{name}"));
        let res =
            app.post_form(&format!("/upstream/backchannel-logout/{provider}"), &[("logout_token", &logout)]).await;
        assert_eq!(res.status(), 200, "{name}: {}", res.text().await.unwrap());
        let (code, to) = status(&app, &browser, "/account/").await;
        assert_eq!(code == 303 && to.starts_with("/login"), browser_ends, "{name}: browser session ({code} {to})");
        assert_eq!(introspect(&app, &token).await["active"], json!(!oauth_ends), "{name}: OAuth session");
    }
    // A token the provider did not sign is refused.
    let forged = format!("{}x", op.logout_token("c-all", "sub-x", "sid-x"));
    let res = app.post_form(&format!("/upstream/backchannel-logout/{P_ALL}"), &[("logout_token", &forged)]).await;
    assert_eq!(res.status(), 400);
}

const P_FAIL: &str = "01JX0000000000000000000031";
const P_ADD: &str = "01JX0000000000000000000032";
const P_SET: &str = "01JX0000000000000000000033";

async fn add_link(app: &TestApp, user: &str, provider: &str, subject: &str) {
    let (store, now) = (&app.state.store, app.state.now());
    let added = appliance::lifecycle::upstream::add_link(
        store,
        &user_id(app, user),
        provider,
        subject,
        None,
        now,
        app.state.rng.as_ref(),
    )
    .await
    .unwrap();
    assert!(matches!(added, appliance::lifecycle::upstream::AddLink::Created(_)), "{added:?}");
}

/// `claims_imports.localpart.on_conflict` when the required localpart is an existing user's:
/// `fail` refuses; `add` attaches the upstream account even though the user has a link to that
/// provider already; `set` attaches only to a user without one.
#[tokio::test]
async fn a_taken_localpart_follows_on_conflict() {
    let op = FakeOp::start().await;
    let conflict = |c: &str| {
        format!(
            "      token_endpoint_auth_method: none\n      claims_imports:\n        localpart: {{action: require, on_conflict: {c}}}\n"
        )
    };
    let app = upstream_app(
        &[
            provider(P_FAIL, &op, "c-fail", &conflict("fail")),
            provider(P_ADD, &op, "c-add", &conflict("add")),
            provider(P_SET, &op, "c-set", &conflict("set")),
        ],
        "",
    )
    .await;
    for c in ["c-fail", "c-add", "c-set"] {
        op.client(c, Expect::None);
    }
    for name in ["erin", "frank"] {
        register_user(&app, name, PASSWORD, false).await;
    }
    // erin already has an account of both the `add` and the `set` provider linked.
    add_link(&app, "erin", P_ADD, "erin-old").await;
    add_link(&app, "erin", P_SET, "erin-old").await;
    let links = |user: &str| {
        count(&app, &format!("SELECT count(*) FROM upstream_oauth_links WHERE user_id = '{}'", user_id(&app, user)))
    };
    assert_eq!(links("erin"), 2);

    // fail: the error page, nothing linked.
    let browser = app.new_client();
    let (_, page) =
        to_link_page(&app, &op, &browser, P_FAIL, json!({"sub": "erin-new", "preferred_username": "erin"})).await;
    assert_eq!(page.status(), 409);
    assert!(page.text().await.unwrap().contains("already taken"));
    assert_eq!(status(&app, &browser, "/account/").await.0, 303, "not signed in");

    // add: linked to erin (a second account of that provider) and signed in as erin.
    let browser = app.new_client();
    let (_, res) =
        to_link_page(&app, &op, &browser, P_ADD, json!({"sub": "erin-new", "preferred_username": "erin"})).await;
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/account/".to_string()));
    assert_eq!(links("erin"), 3);
    let (code, _) = status(&app, &browser, "/account/").await;
    assert_eq!(code, 200);

    // set: erin already has a link to this provider → refused; frank has none → linked.
    let browser = app.new_client();
    let (_, page) =
        to_link_page(&app, &op, &browser, P_SET, json!({"sub": "erin-new", "preferred_username": "erin"})).await;
    assert_eq!(page.status(), 409);
    assert_eq!(links("erin"), 3);
    let (_, res) =
        to_link_page(&app, &op, &browser, P_SET, json!({"sub": "frank-1", "preferred_username": "Frank"})).await;
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/account/".to_string()));
    assert_eq!(links("frank"), 1);
    let html = browser.get(app.url("/account/")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("@frank:localhost"), "signed in as frank");
}

const P_LINK: &str = "01JX0000000000000000000041";

/// A password user links an upstream account from the account page, signs in with it, then
/// unlinks it there: the link is gone, the next sign-in with that account offers a new account,
/// and another user's link cannot be removed by id.
#[tokio::test]
async fn linking_and_unlinking_from_the_account_page() {
    let op = FakeOp::start().await;
    let app = upstream_app(&[provider(P_LINK, &op, "c-link", "      token_endpoint_auth_method: none\n")], "").await;
    op.client("c-link", Expect::None);
    register_user(&app, "gina", PASSWORD, false).await;
    register_user(&app, "hal", PASSWORD, false).await;
    add_link(&app, "hal", P_LINK, "hal-sub").await;

    let browser = crate::flows::signed_in(&app, "gina", PASSWORD).await;
    let html = browser.get(app.url("/account/")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(&format!("/upstream/authorize/{P_LINK}?next=%2Faccount%2F")), "{html}");
    let res = op.sign_in(&app, &browser, P_LINK, "?next=%2Faccount%2F", json!({"sub": "gina-sub"}), &[]).await;
    let link = location(&res);
    let html = browser.get(app.url(&link)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("link-account"), "the suggest-link page: {html}");
    let res = browser
        .post(app.url(&link))
        .form(&[("csrf", csrf_of(&html).as_str()), ("action", "link")])
        .send()
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/account/".to_string()));

    let gina_link: String = {
        let conn = rusqlite::Connection::open(&app.db_path).unwrap();
        conn.query_row("SELECT upstream_oauth_link_id FROM upstream_oauth_links WHERE subject = 'gina-sub'", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let html = browser.get(app.url("/account/")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(&gina_link) && html.contains("Provider c-link"), "the link is listed: {html}");

    // Another user's link id: refused quietly, nothing removed.
    let hal_link: String = {
        let conn = rusqlite::Connection::open(&app.db_path).unwrap();
        conn.query_row("SELECT upstream_oauth_link_id FROM upstream_oauth_links WHERE subject = 'hal-sub'", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let csrf = csrf_of(&html);
    browser
        .post(app.url("/account/upstream/unlink"))
        .form(&[("csrf", csrf.as_str()), ("link_id", &hal_link)])
        .send()
        .await
        .unwrap();
    assert_eq!(count(&app, "SELECT count(*) FROM upstream_oauth_links WHERE subject = 'hal-sub'"), 1);

    // Without the CSRF token: refused.
    let res = browser
        .post(app.url("/account/upstream/unlink"))
        .form(&[("link_id", gina_link.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(count(&app, "SELECT count(*) FROM upstream_oauth_links WHERE subject = 'gina-sub'"), 1);

    let html = browser.get(app.url("/account/")).send().await.unwrap().text().await.unwrap();
    let res = browser
        .post(app.url("/account/upstream/unlink"))
        .form(&[("csrf", csrf_of(&html).as_str()), ("link_id", gina_link.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/account/?notice=upstream_unlinked".to_string()));
    assert_eq!(count(&app, "SELECT count(*) FROM upstream_oauth_links WHERE subject = 'gina-sub'"), 0);
    let html = browser.get(app.url("/account/?notice=upstream_unlinked")).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains(&gina_link) && html.contains("The account was unlinked."));

    // Signed out, the same upstream account no longer signs in as gina: it offers a new account.
    let fresh = app.new_client();
    let (_, page) = to_link_page(&app, &op, &fresh, P_LINK, json!({"sub": "gina-sub"})).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Create your account"));
}
