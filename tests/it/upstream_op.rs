//! A small OpenID Provider inside the test process, for fast tests of the upstream sign-in (the
//! journey against a real provider, node oidc-provider, is `e2e_upstream`'s). It publishes
//! discovery and a JWKS, hands out the codes a test asks for, signs ID and logout tokens, and at
//! `/token` checks the client authentication it receives against what it was told to expect for
//! that client — refusing anything else with 401 `invalid_client` — and records every request.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{Value, json};

use crate::flows::location;
use crate::helpers::TestApp;

/// How a client must authenticate at the token endpoint.
#[derive(Clone, Debug)]
pub enum Expect {
    None,
    Basic {
        secret: String,
    },
    Post {
        secret: String,
    },
    SecretJwt {
        secret: String,
    },
    /// Verified against the appliance's published keys (`/oauth2/keys.json`).
    PrivateKeyJwt {
        jwks_url: String,
    },
    /// Sign in with Apple: `client_secret` is an ES256 JWT signed with the `.p8` key.
    Apple {
        team_id: String,
        key_id: String,
        public_key_pem: String,
    },
}

/// One request the token endpoint received.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub client_id: String,
    /// The method the provider recognised: `none`, `client_secret_basic`, … `sign_in_with_apple`.
    pub method: String,
    /// `None` when accepted, else why it was refused.
    pub refused: Option<String>,
    pub form: HashMap<String, String>,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<String, Expect>,
    /// code → (client_id, ID-token claims).
    codes: HashMap<String, (String, Value)>,
    /// access token → userinfo.
    access: HashMap<String, Value>,
    requests: Vec<TokenRequest>,
}

#[derive(Clone)]
pub struct FakeOp {
    pub issuer: String,
    inner: Arc<Mutex<Inner>>,
    key: Arc<RS256KeyPair>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random() -> String {
    (&appliance::rng::OsRng as &dyn appliance::rng::Rng).alnum(24)
}

impl FakeOp {
    pub async fn start() -> FakeOp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let key = RS256KeyPair::from_pem(&crate::helpers::test_keys().0).expect("RSA key").with_key_id("fake-op-key");
        let op = FakeOp { issuer, inner: Arc::default(), key: Arc::new(key) };
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", axum::routing::get(discovery))
            .route("/jwks", axum::routing::get(jwks))
            .route("/token", axum::routing::post(token))
            .route("/userinfo", axum::routing::get(userinfo))
            .with_state(op.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        op
    }

    /// Registers a client and how it must authenticate.
    pub fn client(&self, client_id: &str, expect: Expect) {
        self.inner.lock().unwrap().clients.insert(client_id.into(), expect);
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Signs `claims` (plus `iss`, `iat`, `exp`) with the provider's key.
    pub fn sign(&self, claims: Value) -> String {
        let Value::Object(custom) = claims else { panic!("claims must be an object") };
        let c = Claims::with_custom_claims(custom, Duration::from_mins(5)).with_issuer(&self.issuer);
        self.key.sign(c).expect("sign")
    }

    /// A back-channel logout token for `sid` (and `sub`).
    pub fn logout_token(&self, client_id: &str, sub: &str, sid: &str) -> String {
        self.sign(json!({
            "aud": client_id, "sub": sub, "sid": sid, "jti": random(),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }))
    }

    /// A browser's trip through the provider: `/upstream/authorize/{provider}?{query}` on the
    /// appliance, the provider "signs in" the account `claims` (at least `sub`), and the
    /// browser comes back to the callback — as a POST with `extra` fields when the appliance
    /// asked for `form_post`. Returns the callback's answer.
    pub async fn sign_in(
        &self,
        app: &TestApp,
        browser: &reqwest::Client,
        provider: &str,
        query: &str,
        claims: Value,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let res = browser.get(app.url(&format!("/upstream/authorize/{provider}{query}"))).send().await.unwrap();
        assert_eq!(res.status(), 303, "authorize: {}", res.text().await.unwrap());
        let to = url::Url::parse(&location(&res)).expect("absolute redirect to the provider");
        assert!(to.as_str().starts_with(&self.issuer), "not sent to the provider: {to}");
        let q: HashMap<String, String> = to.query_pairs().into_owned().collect();
        let client_id = q["client_id"].clone();
        let mut id_claims = claims;
        id_claims["aud"] = json!(client_id);
        if let Some(nonce) = q.get("nonce") {
            id_claims["nonce"] = json!(nonce);
        }
        let code = random();
        self.inner.lock().unwrap().codes.insert(code.clone(), (client_id, id_claims));
        let redirect = &q["redirect_uri"];
        let mut params = vec![("code", code.as_str()), ("state", q["state"].as_str())];
        params.extend_from_slice(extra);
        if q.get("response_mode").map(String::as_str) == Some("form_post") {
            // The provider's auto-submitting form: a cross-site POST, without the browser's cookies.
            let res = crate::helpers::new_client().post(redirect).form(&params).send().await.unwrap();
            assert_eq!(res.status(), 303, "form_post callback: {}", res.text().await.unwrap());
            let next = location(&res);
            browser.get(app.url(&next)).send().await.unwrap()
        } else {
            let url = reqwest::Url::parse_with_params(redirect, &params).unwrap();
            browser.get(url).send().await.unwrap()
        }
    }
}

async fn discovery(State(op): State<FakeOp>) -> axum::Json<Value> {
    let i = &op.issuer;
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported":
            ["none", "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"],
    }))
}

async fn jwks(State(op): State<FakeOp>) -> axum::Json<Value> {
    let c = op.key.public_key().to_components();
    axum::Json(
        json!({"keys": [{"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e), "kid": "fake-op-key", "alg": "RS256", "use": "sig"}]}),
    )
}

async fn userinfo(State(op): State<FakeOp>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match op.inner.lock().unwrap().access.get(token) {
        Some(info) => axum::Json(info.clone()).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn refuse(status: StatusCode, error: &str, why: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": why}))).into_response()
}

fn jwt_alg(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|h| h["alg"].as_str().map(String::from))
        .unwrap_or_default()
}

/// What the request carries, by its shape.
fn recognise(headers: &HeaderMap, form: &HashMap<String, String>) -> (String, String) {
    if let Some(basic) =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic).unwrap_or_default();
        let text = String::from_utf8(decoded).unwrap_or_default();
        let id = text.split(':').next().unwrap_or_default();
        let id = url::form_urlencoded::parse(format!("x={id}").as_bytes()).next().map(|(_, v)| v.into_owned());
        return ("client_secret_basic".into(), id.unwrap_or_default());
    }
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    if let Some(assertion) = form.get("client_assertion") {
        let method = if jwt_alg(assertion).starts_with("HS") { "client_secret_jwt" } else { "private_key_jwt" };
        return (method.into(), client_id);
    }
    match form.get("client_secret") {
        Some(s) if s.split('.').count() == 3 && jwt_alg(s) == "ES256" => ("sign_in_with_apple".into(), client_id),
        Some(_) => ("client_secret_post".into(), client_id),
        None => ("none".into(), client_id),
    }
}

/// Checks the client's credentials as `expect` says; `Err(why)` when they do not hold.
async fn check(
    op: &FakeOp,
    expect: &Expect,
    method: &str,
    client_id: &str,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(), String> {
    let token_endpoint = format!("{}/token", op.issuer);
    let assertion_options = || VerificationOptions {
        allowed_issuers: Some(HashSet::from([client_id.to_string()])),
        required_subject: Some(client_id.to_string()),
        allowed_audiences: Some(HashSet::from([token_endpoint.clone()])),
        ..Default::default()
    };
    let want = match expect {
        Expect::None => "none",
        Expect::Basic { .. } => "client_secret_basic",
        Expect::Post { .. } => "client_secret_post",
        Expect::SecretJwt { .. } => "client_secret_jwt",
        Expect::PrivateKeyJwt { .. } => "private_key_jwt",
        Expect::Apple { .. } => "sign_in_with_apple",
    };
    if method != want {
        return Err(format!("expected {want}, got {method}"));
    }
    match expect {
        Expect::None => Ok(()),
        Expect::Basic { secret } => {
            // RFC 6749 §2.3.1: both parts form-urlencoded, then joined by ':' and base64-encoded.
            let got = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(got.trim_start_matches("Basic "))
                .map_err(|e| format!("basic: {e}"))?;
            let text = String::from_utf8(decoded).map_err(|e| format!("basic: {e}"))?;
            let (id, pass) = text.split_once(':').ok_or("basic: no colon")?;
            let dec =
                |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
            (dec(id).as_deref() == Some(client_id) && dec(pass).as_ref() == Some(secret))
                .then_some(())
                .ok_or_else(|| "wrong basic credentials".into())
        }
        Expect::Post { secret } => {
            (form.get("client_secret") == Some(secret)).then_some(()).ok_or_else(|| "wrong client_secret".into())
        }
        Expect::SecretJwt { secret } => {
            if form.get("client_assertion_type").map(String::as_str)
                != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            {
                return Err("wrong client_assertion_type".into());
            }
            HS256Key::from_bytes(secret.as_bytes())
                .verify_token::<NoCustomClaims>(&form["client_assertion"], Some(assertion_options()))
                .map(|_| ())
                .map_err(|e| format!("client assertion: {e}"))
        }
        Expect::PrivateKeyJwt { jwks_url } => {
            let jwks: Value = reqwest::get(jwks_url).await.map_err(|e| e.to_string())?.json().await.unwrap();
            let assertion = &form["client_assertion"];
            let mut last = "no RSA key in the client's JWKS".to_string();
            for k in jwks["keys"].as_array().cloned().unwrap_or_default() {
                if k["kty"] != "RSA" {
                    continue;
                }
                let d =
                    |m: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(k[m].as_str().unwrap()).unwrap();
                let key = RS256PublicKey::from_components(&d("n"), &d("e")).unwrap();
                match key.verify_token::<NoCustomClaims>(assertion, Some(assertion_options())) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("client assertion: {e}"),
                }
            }
            Err(last)
        }
        Expect::Apple { team_id, key_id, public_key_pem } => {
            let secret = &form["client_secret"];
            let header: Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(secret.split('.').next().unwrap()).unwrap(),
            )
            .unwrap();
            if header["kid"] != json!(key_id) {
                return Err(format!("kid is {}, expected {key_id}", header["kid"]));
            }
            let options = VerificationOptions {
                allowed_issuers: Some(HashSet::from([team_id.clone()])),
                required_subject: Some(client_id.to_string()),
                allowed_audiences: Some(HashSet::from(["https://appleid.apple.com".to_string()])),
                ..Default::default()
            };
            let key = ES256PublicKey::from_pem(public_key_pem).expect("Apple public key");
            let claims = key
                .verify_token::<NoCustomClaims>(secret, Some(options))
                .map_err(|e| format!("Apple client secret: {e}"))?;
            if claims.issued_at.is_none() || claims.expires_at.is_none() {
                return Err("Apple client secret without iat/exp".into());
            }
            Ok(())
        }
    }
}

async fn token(State(op): State<FakeOp>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let (method, client_id) = recognise(&headers, &form);
    let expect = op.inner.lock().unwrap().clients.get(&client_id).cloned();
    let verdict = match &expect {
        None => Err(format!("unknown client {client_id:?}")),
        Some(e) => check(&op, e, &method, &client_id, &headers, &form).await,
    };
    op.inner.lock().unwrap().requests.push(TokenRequest {
        client_id: client_id.clone(),
        method: method.clone(),
        refused: verdict.clone().err(),
        form: form.clone(),
    });
    if let Err(why) = verdict {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client", &why);
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let Some((for_client, claims)) = op.inner.lock().unwrap().codes.remove(&code) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "unknown code");
    };
    if for_client != client_id {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "code of another client");
    }
    let access_token = random();
    op.inner.lock().unwrap().access.insert(access_token.clone(), claims.clone());
    let id_token = op.sign(claims);
    axum::Json(json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300, "id_token": id_token}))
        .into_response()
}
