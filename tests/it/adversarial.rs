//! Hostile requests, one row each: the endpoint, what an attacker sends, the status and the error
//! shape that must come back. The next hole found gets a row here, not a new harness.
//!
//! Rows run against one server (the flows' clients, an admin client, the recording fake
//! homeserver) with a few fixtures made first: a user, an admin bearer token, a client whose
//! stored auth method is unreadable, assertions signed to be refused.

use jwt_simple::prelude::*;
use serde_json::{Value, json};

use crate::admin::{PASSWORD, admin_app, admin_token};
use crate::flows::*;
use crate::helpers::{MATRIX_SECRET, TestApp};

/// Who the request authenticates as.
#[derive(Clone, Copy)]
enum Auth {
    None,
    /// `Authorization: Bearer <admin token>` (the admin API).
    Admin,
    /// `Authorization: Bearer <matrix.secret>` (introspection as the homeserver).
    Homeserver,
}

enum Body {
    None,
    Form(Vec<(String, String)>),
    Json(Value),
}

/// What the answer must look like besides its status.
enum Shape {
    /// RFC 6749 JSON: `{"error": …}`.
    OAuth(&'static str),
    /// RFC 6749 JSON with one of these errors.
    OAuthOneOf(&'static [&'static str]),
    /// Matrix JSON: `{"errcode": …}`.
    Matrix(&'static str),
    /// Admin API JSON: `{"errors": [{"title": …}]}`.
    Admin,
    /// An HTML error page.
    Page,
    /// Introspection's answer for anything not usable: `{"active": false}` and nothing else.
    Inactive,
}

struct Row {
    /// Which hole (issue 10 item) and what the attack is.
    name: &'static str,
    method: &'static str,
    path: String,
    auth: Auth,
    body: Body,
    status: u16,
    shape: Shape,
}

fn form(pairs: &[(&str, &str)]) -> Body {
    Body::Form(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn login_with_device(device_id: Value) -> Body {
    Body::Json(json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD,
        "device_id": device_id,
    }))
}

fn sso(redirect: &str) -> String {
    format!("/_matrix/client/v3/login/sso/redirect?redirectUrl={}", urlencode(redirect))
}

/// A dynamic client registration body (Element X's, as MAS accepts it) with `changes` merged in.
fn dcr(changes: Value) -> Body {
    let mut body = json!({
        "client_name": "Attacker", "client_uri": "https://attacker.example", "application_type": "native",
        "redirect_uris": ["example.attacker:/cb"], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
    });
    body.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
    Body::Json(body)
}

/// Assertion-authenticated client_credentials for the confidential client `client`.
fn assertion_grant(assertion: &str) -> Body {
    form(&[
        ("grant_type", "client_credentials"),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion),
    ])
}

const HS_CLIENT: &str = "01J0000000000000000000HS01";
const HS_SECRET: &str = "a-shared-secret-for-client-secret-jwt";
const BROKEN_CLIENT: &str = "01J0000000000000000000BRK1";

async fn app() -> (TestApp, String) {
    let extra = format!(
        r#"
clients:
  - client_id: 0000000000000000000SYNAPSE
    client_auth_method: client_secret_basic
    client_secret: "test-synapse-secret"
  - client_id: {PUBLIC_CLIENT}
    client_auth_method: none
    client_uri: "https://app.example.org/"
    redirect_uris: ["{REDIRECT}"]
  - client_id: {CONFIDENTIAL_CLIENT}
    client_auth_method: client_secret_post
    client_secret: "{CONFIDENTIAL_SECRET}"
    redirect_uris: ["{REDIRECT}"]
  - client_id: 01J0000000000000000000ADM1
    client_auth_method: client_secret_basic
    client_secret: admin-client-secret
  - client_id: {HS_CLIENT}
    client_auth_method: client_secret_jwt
    client_secret: "{HS_SECRET}"
account:
  password_registration_enabled: true
  password_registration_email_required: false
"#
    );
    let (app, _calls) = admin_app(&extra).await;
    register_user(&app, "alice", PASSWORD, false).await;
    // A confidential client whose stored method a later version (or damage) made unreadable.
    app.state
        .store
        .write(|c| {
            c.execute(
                "INSERT INTO oauth2_clients (client_id, metadata, is_static, created_at)
                 VALUES (?1, '{\"token_endpoint_auth_method\": \"client_secret_quantum\", \"grant_types\": [\"client_credentials\"]}', 0, 0)",
                [BROKEN_CLIENT],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let token = admin_token(&app).await;
    (app, token)
}

fn hs_assertion(app: &TestApp, jti: &str, exp: Option<i64>) -> String {
    let now = Clock::now_since_epoch().as_secs();
    let claims = JWTClaims {
        issued_at: Some(UnixTimeStamp::from_secs(now)),
        expires_at: exp.map(|e| UnixTimeStamp::from_secs(now.saturating_add_signed(e))),
        invalid_before: None,
        issuer: Some(HS_CLIENT.into()),
        subject: Some(HS_CLIENT.into()),
        audiences: Some(Audiences::AsString(app.url("/oauth2/token"))),
        jwt_id: Some(jti.into()),
        nonce: None,
        custom: NoCustomClaims {},
    };
    HS256Key::from_bytes(HS_SECRET.as_bytes()).authenticate(claims).unwrap()
}

fn rows(app: &TestApp, alice_id: &str) -> Vec<Row> {
    use Shape::{Inactive, Matrix, OAuth};
    let admin_personal =
        |scope: &str| Body::Json(json!({"actor_user_id": alice_id, "human_name": "bot", "scope": scope}));
    let mut rows = vec![
        // ---- Item 1: device IDs smuggling scope tokens ----
        Row {
            name: "1: compat login with a device id carrying a second scope token",
            method: "POST",
            path: "/_matrix/client/v3/login".into(),
            auth: Auth::None,
            body: login_with_device(json!("AAAAAAAAAA urn:synapse:admin:*")),
            status: 400,
            shape: Matrix("M_INVALID_PARAM"),
        },
        Row {
            name: "11.4: compat login with an initial_device_display_name over 256 characters",
            method: "POST",
            path: "/_matrix/client/v3/login".into(),
            auth: Auth::None,
            body: Body::Json(json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": PASSWORD,
                "initial_device_display_name": "d".repeat(257),
            })),
            status: 400,
            shape: Matrix("M_INVALID_PARAM"),
        },
        Row {
            name: "1: compat login with a TAB-separated device id",
            method: "POST",
            path: "/_matrix/client/r0/login".into(),
            auth: Auth::None,
            body: login_with_device(json!("AAAAAAAAAA\turn:synapse:admin:*")),
            status: 400,
            shape: Matrix("M_INVALID_PARAM"),
        },
        Row {
            name: "1: compat login with a quote in the device id",
            method: "POST",
            path: "/_matrix/client/v3/login".into(),
            auth: Auth::None,
            body: login_with_device(json!("AAAAAAAAAA\"x")),
            status: 400,
            shape: Matrix("M_INVALID_PARAM"),
        },
        Row {
            name: "1: compat login with a device id shorter than the grammar allows",
            method: "POST",
            path: "/_matrix/client/v3/login".into(),
            auth: Auth::None,
            body: login_with_device(json!("SHORT")),
            status: 400,
            shape: Matrix("M_INVALID_PARAM"),
        },
        Row {
            name: "1: compat login with a non-string device id",
            method: "POST",
            path: "/_matrix/client/v3/login".into(),
            auth: Auth::None,
            body: login_with_device(json!(["AAAAAAAAAA", "urn:synapse:admin:*"])),
            status: 400,
            shape: Matrix("M_INVALID_PARAM"),
        },
        Row {
            name: "1: admin API personal token with a device scope outside the grammar",
            method: "POST",
            path: "/api/admin/v1/personal-sessions".into(),
            auth: Auth::Admin,
            body: admin_personal("urn:matrix:client:api:* urn:matrix:client:device:SHORT"),
            status: 400,
            shape: Shape::Admin,
        },
        Row {
            name: "1: device authorization with a device scope outside the grammar",
            method: "POST",
            path: "/oauth2/device".into(),
            auth: Auth::None,
            body: form(&[
                ("client_id", PUBLIC_CLIENT),
                ("scope", "urn:matrix:client:api:* urn:matrix:client:device:AAAAAAAAAA\"x"),
            ]),
            status: 400,
            shape: OAuth("invalid_scope"),
        },
        // ---- Item 3: jwks_uri pointing inside the operator's network ----
        Row {
            name: "3: DCR with a plain-http jwks_uri on the LAN",
            method: "POST",
            path: "/oauth2/registration".into(),
            auth: Auth::None,
            body: dcr(json!({"token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_signing_alg": "ES256", "jwks_uri": "http://10.0.0.1/jwks"})),
            status: 400,
            shape: OAuth("invalid_client_metadata"),
        },
        Row {
            name: "3: DCR with the cloud metadata service as jwks_uri",
            method: "POST",
            path: "/oauth2/registration".into(),
            auth: Auth::None,
            body: dcr(json!({"token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_signing_alg": "ES256", "jwks_uri": "http://169.254.169.254/latest/meta-data/"})),
            status: 400,
            shape: OAuth("invalid_client_metadata"),
        },
        Row {
            name: "3: DCR with a file: jwks_uri",
            method: "POST",
            path: "/oauth2/registration".into(),
            auth: Auth::None,
            body: dcr(json!({"token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_signing_alg": "ES256", "jwks_uri": "file:///etc/passwd"})),
            status: 400,
            shape: OAuth("invalid_client_metadata"),
        },
        // ---- Item 6: client assertions ----
        Row {
            name: "6: client_secret_jwt assertion without exp (never forgotten, so never replayable)",
            method: "POST",
            path: "/oauth2/token".into(),
            auth: Auth::None,
            body: assertion_grant(&hs_assertion(app, "no-exp", None)),
            status: 401,
            shape: OAuth("invalid_client"),
        },
        Row {
            name: "6: client_secret_jwt assertion valid for a day",
            method: "POST",
            path: "/oauth2/token".into(),
            auth: Auth::None,
            body: assertion_grant(&hs_assertion(app, "a-day", Some(86_400))),
            status: 401,
            shape: OAuth("invalid_client"),
        },
        // ---- Item 9: fail closed ----
        Row {
            name: "9: a client with an unreadable auth method presenting no secret (not public)",
            method: "POST",
            path: "/oauth2/token".into(),
            auth: Auth::None,
            body: form(&[("grant_type", "client_credentials"), ("client_id", BROKEN_CLIENT)]),
            status: 401,
            shape: OAuth("invalid_client"),
        },
        Row {
            name: "9: a client with an unreadable auth method introspecting as a public client",
            method: "POST",
            path: "/oauth2/introspect".into(),
            auth: Auth::None,
            body: form(&[("token", "mat_x"), ("client_id", BROKEN_CLIENT)]),
            status: 401,
            shape: OAuth("invalid_client"),
        },
        // ---- Introspection never leaks anything about garbage ----
        Row {
            name: "introspection of garbage",
            method: "POST",
            path: "/oauth2/introspect".into(),
            auth: Auth::Homeserver,
            body: form(&[("token", "mct_AAAAAAAAAA urn:synapse:admin:*")]),
            status: 200,
            shape: Inactive,
        },
    ];
    // ---- Item 4: schemes a browser acts on, as redirect targets ----
    for target in [
        "javascript:alert(document.cookie)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "http://evil.example/",
        "ftp://evil.example/",
        "https://user:pass@evil.example/",
    ] {
        rows.push(Row {
            name: "4: compat SSO redirectUrl with a hostile scheme",
            method: "GET",
            path: sso(target),
            auth: Auth::None,
            body: Body::None,
            status: 400,
            shape: Matrix("M_INVALID_PARAM"),
        });
        rows.push(Row {
            name: "4: DCR redirect_uris with a hostile scheme",
            method: "POST",
            path: "/oauth2/registration".into(),
            auth: Auth::None,
            body: dcr(json!({"redirect_uris": [target]})),
            status: 400,
            shape: OAuth("invalid_redirect_uri"),
        });
        for field in ["client_uri", "logo_uri", "tos_uri", "policy_uri"] {
            rows.push(Row {
                name: "4: DCR client metadata URI with a hostile scheme",
                method: "POST",
                path: "/oauth2/registration".into(),
                auth: Auth::None,
                body: dcr(json!({ field: target })),
                status: 400,
                // A bad client_uri also leaves the redirect URIs without a host to match.
                shape: Shape::OAuthOneOf(&["invalid_client_metadata", "invalid_redirect_uri"]),
            });
        }
    }
    rows.push(Row {
        name: "4: /authorize with an unregistered javascript: redirect_uri gets a page, not a redirect",
        method: "GET",
        path: format!(
            "/authorize?client_id={PUBLIC_CLIENT}&response_type=code&scope=openid&redirect_uri={}",
            urlencode("javascript:alert(1)")
        ),
        auth: Auth::None,
        body: Body::None,
        status: 400,
        shape: Shape::Page,
    });
    rows.push(Row {
        name: "4: DCR whose single-label client_uri would vouch for a javascript: redirect",
        method: "POST",
        path: "/oauth2/registration".into(),
        auth: Auth::None,
        body: dcr(json!({"client_uri": "https://javascript/", "redirect_uris": ["javascript:/alert(1)"]})),
        status: 400,
        shape: OAuth("invalid_client_metadata"),
    });
    rows
}

async fn send(app: &TestApp, admin: &str, row: &Row) -> (u16, String) {
    let mut req = app.client.request(row.method.parse().unwrap(), app.url(&row.path));
    req = match row.auth {
        Auth::None => req,
        Auth::Admin => req.bearer_auth(admin),
        Auth::Homeserver => req.bearer_auth(MATRIX_SECRET),
    };
    req = match &row.body {
        Body::None => req,
        Body::Form(pairs) => req.form(pairs),
        Body::Json(v) => req.json(v),
    };
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn check_shape(shape: &Shape, body: &str) -> Result<(), String> {
    let json = || serde_json::from_str::<Value>(body).map_err(|_| format!("not JSON: {body}"));
    match shape {
        Shape::OAuth(error) => {
            let v = json()?;
            (v["error"] == *error).then_some(()).ok_or(format!("expected error {error}: {v}"))
        }
        Shape::OAuthOneOf(errors) => {
            let v = json()?;
            errors.iter().any(|e| v["error"] == *e).then_some(()).ok_or(format!("expected one of {errors:?}: {v}"))
        }
        Shape::Matrix(errcode) => {
            let v = json()?;
            (v["errcode"] == *errcode && v["error"].is_string()).then_some(()).ok_or(format!("expected {errcode}: {v}"))
        }
        Shape::Admin => {
            let v = json()?;
            v["errors"][0]["title"].is_string().then_some(()).ok_or(format!("expected admin errors: {v}"))
        }
        Shape::Page => body.contains("<html").then_some(()).ok_or(format!("expected an HTML page: {body}")),
        Shape::Inactive => {
            let v = json()?;
            (v == json!({"active": false})).then_some(()).ok_or(format!("expected inactive: {v}"))
        }
    }
}

#[tokio::test]
async fn hostile_requests_get_the_expected_refusal() {
    let (app, admin) = app().await;
    let mut failures = Vec::new();
    let alice = app.state.store.read(|c| appliance::store::users::by_username(c, "alice")).await.unwrap().unwrap();
    for row in rows(&app, &alice.id) {
        let (status, body) = send(&app, &admin, &row).await;
        let shape = check_shape(&row.shape, &body);
        if status != row.status || shape.is_err() {
            failures.push(format!(
                "{} — {} {}: got {status} (want {}), {}",
                row.name,
                row.method,
                row.path,
                row.status,
                shape.err().unwrap_or_else(|| body.chars().take(300).collect())
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} hostile requests were not refused as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Item 2: `next=` values a browser would follow off-site, on every page that takes `next`: a
/// signed-in visit to `/login?next=…` (which redirects straight on), the sign-in and sign-up
/// forms that would carry it on, and a sign-in posted with it.
#[tokio::test]
async fn hostile_next_values_never_become_a_redirect() {
    let (app, _) = app().await;
    const HOSTILE: &[&str] = &[
        "/\t/evil.example",
        "/%09/evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "//evil.example",
        "///evil.example",
        "/%2F/evil.example",
        "/%2f/evil.example",
        "/%5C/evil.example",
        "/%252F/evil.example",
        "/\r\n/evil.example",
        "/%0d%0a/evil.example",
        "/ /evil.example",
        "https://evil.example",
        "http:evil.example",
        "javascript:alert(1)",
        "evil.example",
        "\t//evil.example",
        "/\u{0085}/evil.example",
    ];
    let signed_in = signed_in(&app, "alice", PASSWORD).await;
    for next in HOSTILE {
        // Signed in: /login?next= sends the browser on at once — but not off-site.
        let res = signed_in.get(app.url(&format!("/login?next={}", urlencode(next)))).send().await.unwrap();
        if res.status().is_redirection() {
            panic!("/login?next={next:?} redirected to {:?}", res.headers().get("location"));
        }
        // Not carried into the forms of the sign-in and sign-up pages.
        let browser = app.new_client();
        for page in ["/login", "/register"] {
            let (status, html) = get(&app, &browser, &format!("{page}?next={}", urlencode(next))).await;
            assert_eq!(status, 200, "{page}?next={next:?}");
            assert!(!html.contains("name=\"next\""), "{page} carries next={next:?} on");
        }
        // A sign-in posted with it lands on the account page.
        let browser = app.new_client();
        let res = login(&app, &browser, next, "alice", PASSWORD).await;
        assert_eq!(res.status(), 303, "{next:?}");
        assert_eq!(location(&res), "/account/", "sign-in with next={next:?}");
    }
    // The percent-decoded forms reach the pages as the raw characters too.
    for next in ["/\t/evil.example", "/\\evil.example"] {
        let res = signed_in.get(app.url(&format!("/login?next={}", urlencode(next)))).send().await.unwrap();
        assert!(!res.status().is_redirection(), "{next:?}");
    }
    // Local paths still work.
    let res = signed_in.get(app.url("/login?next=%2Faccount%2Femails")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/account/emails".into()));
    let res = signed_in
        .get(app.url(&format!("/login?next={}", urlencode("/authorize?redirect_uri=https%3A%2F%2Fapp%2Fcb"))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "an encoded slash in the query is fine");
}

/// Issue 11 item 4: what a sign-up stores before anyone signed in (the user, or the pending
/// registration waiting for its email code) is capped field by field, each refused on the form
/// with its own error; a `next` longer than a redirect URI is dropped, not carried on.
#[tokio::test]
async fn sign_up_fields_over_their_caps_are_refused() {
    // Email required: the form then takes the address (a pending registration stores it).
    let (app, _calls) =
        admin_app("account:\n  password_registration_enabled: true\n  password_registration_email_required: true\n")
            .await;
    let long_email = format!("{}@example.org", "a".repeat(250));
    let rows: &[(&str, &str, String, &str)] = &[
        ("username over 255 characters", "username", "u".repeat(256), "username-error"),
        ("display name over 256 characters", "display_name", "d".repeat(257), "display_name-error"),
        ("email address over 254 characters", "email", long_email, "email-error"),
    ];
    const STRONG: &str = "correct horse battery staple lamp";
    for (what, field, value, error_id) in rows {
        let browser = app.new_client();
        let (status, html) = get(&app, &browser, "/register").await;
        assert_eq!(status, 200, "{html}");
        let mut form: Vec<(&str, &str)> = vec![
            ("csrf", ""),
            ("username", "capped"),
            ("password", STRONG),
            ("password_confirm", STRONG),
            ("email", "capped@example.org"),
        ];
        let csrf = csrf_of(&html);
        form[0].1 = &csrf;
        form.retain(|(k, _)| k != field);
        form.push((field, value));
        let res = browser.post(app.url("/register")).form(&form).send().await.unwrap();
        let status = res.status().as_u16();
        let html = res.text().await.unwrap();
        assert_eq!(status, 400, "{what}: {html}");
        assert!(html.contains(&format!("id=\"{error_id}\"")), "{what}: no {error_id} on the page:\n{html}");
    }
    let stored: i64 = app
        .state
        .store
        .read(|c| Ok(c.query_row("SELECT (SELECT COUNT(*) FROM pending_registrations) + (SELECT COUNT(*) FROM users WHERE username = 'capped')", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing over a cap was stored");

    // `next` at the cap is carried on; one byte more is dropped.
    let at_cap = format!("/{}", "n".repeat(2047));
    let over = format!("/{}", "n".repeat(2048));
    for page in ["/register", "/login"] {
        let browser = app.new_client();
        let (_, html) = get(&app, &browser, &format!("{page}?next={at_cap}")).await;
        assert!(html.contains("name=\"next\""), "{page} drops a next of 2048 bytes");
        let (status, html) = get(&app, &browser, &format!("{page}?next={over}")).await;
        assert_eq!(status, 200);
        assert!(!html.contains("name=\"next\""), "{page} carries a next of 2049 bytes on");
    }
}
