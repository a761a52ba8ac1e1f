//! Sign in with Apple against a fake Apple (the in-process provider, `upstream_op`, checking the
//! ES256 client secret against the key's public half), MAS's documented Apple block with its
//! templates over Apple's `user` form field, the key's absence from the database, the logs and
//! the config dump; and `skip_confirmation`.

use jwt_simple::prelude::*;
use serde_json::json;

use crate::flows::{csrf_of, location};
use crate::helpers::{LogCapture, TestApp};
use crate::upstream_journey::{count, provider, to_link_page, upstream_app, user_id};
use crate::upstream_op::{Expect, FakeOp};

const P_APPLE: &str = "01JAYS74TCG3BTWKADN5Q4518C";
const TEAM: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const SERVICE_ID: &str = "org.example.matrix";

/// MAS's documented Apple block (docs/setup/sso.md) pointed at `op`, its templates unchanged.
fn apple_provider(op: &FakeOp, key_file: &std::path::Path) -> String {
    format!(
        r#"    - id: {P_APPLE}
      issuer: "{issuer}"
      human_name: "Apple"
      brand_name: "apple"
      client_id: "{SERVICE_ID}"
      scope: "openid name email"
      response_mode: "form_post"
      token_endpoint_auth_method: "sign_in_with_apple"
      sign_in_with_apple:
        private_key_file: "{key}"
        team_id: "{TEAM}"
        key_id: "{KEY_ID}"
      claims_imports:
        localpart:
          action: ignore
        displayname:
          action: suggest
          # SiWA passes down the user infos as query parameters in the callback
          # which is available in the extra_callback_parameters variable
          template: |
            {{%- set u = extra_callback_parameters["user"] | from_json -%}}
            {{{{- u.name.firstName }}}} {{{{ u.name.lastName -}}}}
        email:
          action: suggest
        account_name:
          template: |
            {{%- set u = extra_callback_parameters["user"] | from_json -%}}
            {{{{- u.name.firstName }}}} {{{{ u.name.lastName -}}}}
"#,
        issuer = op.issuer,
        key = key_file.display(),
    )
}

/// The `.p8` key (PKCS#8 PEM, P-256) in a file, and its public half for the fake Apple.
fn apple_key(dir: &std::path::Path) -> (std::path::PathBuf, String, String) {
    let key = ES256KeyPair::generate();
    let pem = key.to_pem().unwrap();
    let path = dir.join("AuthKey_KEY1234567.p8");
    std::fs::write(&path, &pem).unwrap();
    (path, pem, key.public_key().to_pem().unwrap())
}

async fn apple_app(op: &FakeOp) -> (TestApp, tempfile::TempDir, String) {
    let keys = crate::helpers::tempdir();
    let (path, pem, public) = apple_key(keys.path());
    let app = upstream_app(&[apple_provider(op, &path)], "").await;
    op.client(SERVICE_ID, Expect::Apple { team_id: TEAM.into(), key_id: KEY_ID.into(), public_key_pem: public });
    (app, keys, pem)
}

const APPLE_USER: &str = r#"{"name":{"firstName":"Ada","lastName":"Lovelace"},"email":"ada@privaterelay.appleid.com"}"#;

/// Sign in with Apple end to end against the fake Apple: the token request carries an ES256
/// client secret Apple accepts (kid, iss = team, aud = Apple, sub = service id, iat/exp), the
/// `user` field Apple posts on the first authorization fills MAS's displayname and account-name
/// templates, the new account gets the name; the second sign-in (no `user`) finds the account and
/// keeps its name. The `user` field never appears in a URL.
#[tokio::test]
async fn sign_in_with_apple_creates_the_account_with_the_name_from_apples_user_field() {
    let op = FakeOp::start().await;
    let (app, _keys, _pem) = apple_app(&op).await;
    let claims = json!({"sub": "001234.abcdef.1234", "email": "ada@privaterelay.appleid.com"});

    let browser = app.new_client();
    let res = op.sign_in(&app, &browser, P_APPLE, "", claims.clone(), &[("user", APPLE_USER)]).await;
    let seen = op.requests().into_iter().last().expect("a token request");
    assert_eq!((seen.method.as_str(), seen.refused.as_deref()), ("sign_in_with_apple", None), "{seen:?}");
    assert_eq!(seen.form.get("client_id").map(String::as_str), Some(SERVICE_ID));
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let link = location(&res);
    assert!(link.starts_with("/upstream/link/") && !link.contains("Lovelace"), "{link}");

    let page = browser.get(app.url(&link)).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("Ada Lovelace"), "the name from Apple's `user` is offered: {html}");
    assert!(html.contains("ada@privaterelay.appleid.com"), "{html}");
    let form = [
        ("csrf", csrf_of(&html)),
        ("action", "register".into()),
        ("username", "ada".into()),
        ("import_display_name", "on".into()),
        ("import_email", "on".into()),
    ];
    let res = browser.post(app.url(&link)).form(&form).send().await.unwrap();
    assert_eq!(location(&res), "/account/", "{}", res.text().await.unwrap());
    let ada = user_id(&app, "ada");
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let (name, account): (Option<String>, Option<String>) = conn
        .query_row(
            "SELECT u.display_name, l.human_account_name FROM users u JOIN upstream_oauth_links l USING (user_id)
             WHERE u.user_id = ?1",
            [&ada],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((name.as_deref(), account.as_deref()), (Some("Ada Lovelace"), Some("Ada Lovelace")));
    assert_eq!(count(&app, "SELECT count(*) FROM user_emails WHERE email = 'ada@privaterelay.appleid.com'"), 1);

    // Apple sends `user` only the first time: the next sign-in finds the link, keeps the name.
    let again = app.new_client();
    let res = op.sign_in(&app, &again, P_APPLE, "", claims, &[]).await;
    assert_eq!(res.status(), 303);
    let res = again.get(app.url(&location(&res))).send().await.unwrap();
    assert_eq!(location(&res), "/account/");
    let account: Option<String> = conn
        .query_row("SELECT human_account_name FROM upstream_oauth_links WHERE user_id = ?1", [&ada], |r| r.get(0))
        .unwrap();
    assert_eq!(account.as_deref(), Some("Ada Lovelace"));
    assert_eq!(op.requests().iter().filter(|r| r.refused.is_none()).count(), 2);
}

/// The `.p8` key is in no stored provider metadata, no log line and no config dump or doctor
/// output; it is kept encrypted. A sign-in still uses it (the fake Apple verifies the secret).
#[tokio::test]
async fn the_apple_key_stays_out_of_the_database_logs_and_dumps() {
    let log = LogCapture::start();
    let op = FakeOp::start().await;
    let (app, _keys, pem) = apple_app(&op).await;
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let res = op.sign_in(&app, &app.new_client(), P_APPLE, "", json!({"sub": "s1"}), &[("user", APPLE_USER)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(op.requests().last().unwrap().refused, None);

    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let (metadata, secret): (String, Option<String>) = conn
        .query_row(
            "SELECT metadata, encrypted_client_secret FROM upstream_oauth_providers WHERE upstream_oauth_provider_id = ?1",
            [P_APPLE],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let secret = secret.expect("the key is kept encrypted");
    let out = {
        let config = app.config_path.clone();
        tokio::task::spawn_blocking(move || {
            let dump = crate::helpers::run_cli(&config, &["config", "dump"]);
            let doctor = crate::helpers::run_cli(&config, &["doctor"]);
            [dump, doctor]
                .iter()
                .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
    };
    assert!(out[0].contains("sign_in_with_apple") && out[0].contains(KEY_ID), "dump: {}", out[0]);
    let logs = log.text();
    for (what, text) in [
        ("metadata", metadata.as_str()),
        ("secret column", secret.as_str()),
        ("dump", &out[0]),
        ("doctor", &out[1]),
        ("log", &logs),
    ] {
        assert!(!text.contains("PRIVATE KEY"), "{what} holds the key");
        for line in &body {
            assert!(!text.contains(line), "{what} holds a line of the key");
        }
    }
}

const P_SKIP: &str = "01JX0000000000000000000071";
const P_ASK: &str = "01JX0000000000000000000072";

fn skipping(imports_more: &str) -> String {
    format!(
        "      token_endpoint_auth_method: none\n      claims_imports:\n        skip_confirmation: true\n        localpart: {{action: require}}\n        displayname: {{action: force}}\n        email: {{action: force}}\n{imports_more}"
    )
}

/// `skip_confirmation: true` (localpart required, nothing suggested): the new account is created
/// straight from the provider's claims, without the confirmation page; it is still shown when
/// something needs the person — here a registration token.
#[tokio::test]
async fn skip_confirmation_creates_the_account_without_the_page() {
    let op = FakeOp::start().await;
    let app = upstream_app(
        &[
            provider(P_SKIP, &op, "c-skip", &skipping("")),
            provider(P_ASK, &op, "c-ask", &(skipping("") + "      registration_token_required: true\n")),
        ],
        "",
    )
    .await;
    op.client("c-skip", Expect::None);
    op.client("c-ask", Expect::None);

    let browser = app.new_client();
    let claims =
        json!({"sub": "grace", "preferred_username": "grace", "name": "Grace Hopper", "email": "grace@example.org"});
    let (_, res) = to_link_page(&app, &op, &browser, P_SKIP, claims).await;
    assert_eq!(res.status(), 303, "no page: {}", res.text().await.unwrap());
    assert_eq!(location(&res), "/account/");
    let grace = user_id(&app, "grace");
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let name: Option<String> =
        conn.query_row("SELECT display_name FROM users WHERE user_id = ?1", [&grace], |r| r.get(0)).unwrap();
    assert_eq!(name.as_deref(), Some("Grace Hopper"));
    assert_eq!(count(&app, "SELECT count(*) FROM user_emails WHERE email = 'grace@example.org'"), 1);
    assert_eq!(count(&app, "SELECT count(*) FROM upstream_oauth_links WHERE user_id IS NOT NULL"), 1);
    let res = browser.get(app.url("/account/")).send().await.unwrap();
    assert_eq!(res.status(), 200, "signed in");

    // A token to enter: the page is shown, nothing created yet.
    let claims = json!({"sub": "alan", "preferred_username": "alan", "name": "Alan Turing"});
    let (_, page) = to_link_page(&app, &op, &app.new_client(), P_ASK, claims).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("name=\"token\""));
    assert_eq!(count(&app, "SELECT count(*) FROM users WHERE username = 'alan'"), 0);
}
