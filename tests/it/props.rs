//! Property tests (issue 11 item 10): every parser that takes outside input, fed arbitrary input.
//! The promise is the same everywhere: no panic, no 5xx, a well-formed error.
//!
//! The first half checks the parsers one by one (form bodies, scopes, device IDs, redirect URIs,
//! token formats, the config file). The second half builds the real router over a real server's
//! state (temporary SQLite) and sends arbitrary bodies, headers and paths to every endpoint a
//! caller reaches without signing in, in process (`tower::ServiceExt::oneshot`), including client
//! assertions that are JWT-shaped but arbitrary. Case counts stay modest so each test takes a few
//! seconds; `PROPTEST_CASES=…` runs more.

use std::net::{IpAddr, SocketAddr};

use appliance::config::Config;
use appliance::http::oauth2::authorize::redirect_matches;
use appliance::http::oauth2::params::{MAX_PARAMS, Params};
use appliance::model::device::DeviceId;
use appliance::model::scope::{MAX_SCOPE_TOKENS, Scope};
use appliance::tokens::TokenKind;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::Value;
use tower::ServiceExt;

use crate::flows::{CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, PUBLIC_CLIENT, REDIRECT, register_user};
use crate::helpers::{MATRIX_SECRET, SYNAPSE_CLIENT_ID, SYNAPSE_CLIENT_SECRET, TestApp, spawn_app_with};

/// Cases per property: `PROPTEST_CASES` or `default`, and never a regression file in the tree.
fn cases(default: u32) -> RunnerConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() }
}

/// Printable ASCII and some of everything else: what a hostile client types.
fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(proptest::char::range(' ', '~'), 0..max).prop_map(|v| v.into_iter().collect()),
        proptest::collection::vec(any::<char>(), 0..max).prop_map(|v| v.into_iter().collect()),
    ]
}

// ------------------------------------------------------------------------------------------
// Form bodies (RFC 6749 parameters: no repeats, a cap on the count)

const OAUTH_KEYS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "token",
    "token_type_hint",
    "device_code",
    "client_assertion",
    "client_assertion_type",
    "response_type",
    "state",
    "nonce",
    "prompt",
    "login_hint",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
];

fn param_key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => proptest::sample::select(OAUTH_KEYS).prop_map(String::from),
        2 => hostile_text(12),
        1 => hostile_text(80),
    ]
}

fn encode(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn form_bodies_parse_or_refuse_as_invalid_request(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = Params::parse(&body) {
            prop_assert_eq!(e.status.as_u16(), 400);
            prop_assert_eq!(e.error, "invalid_request");
        }
    }

    #[test]
    fn distinct_parameters_read_back(pairs in proptest::collection::hash_map(param_key(), hostile_text(40), 0..MAX_PARAMS)) {
        let pairs: Vec<(String, String)> = pairs.into_iter().collect();
        let params = Params::parse(encode(&pairs).as_bytes()).expect("distinct parameters within the cap");
        for (k, v) in &pairs {
            // An empty value counts as absent (RFC 6749 §3.1).
            prop_assert_eq!(params.get(k), Some(v.as_str()).filter(|v| !v.is_empty()));
        }
    }

    #[test]
    fn a_repeated_parameter_is_refused(
        pairs in proptest::collection::hash_map(param_key(), hostile_text(20), 1..MAX_PARAMS),
        pick in any::<prop::sample::Index>(),
        again in hostile_text(20),
    ) {
        let mut pairs: Vec<(String, String)> = pairs.into_iter().collect();
        let key = pairs[pick.index(pairs.len())].0.clone();
        pairs.insert(pick.index(pairs.len() + 1), (key, again));
        let e = Params::parse(encode(&pairs).as_bytes()).expect_err("a repeated parameter");
        prop_assert_eq!((e.status.as_u16(), e.error), (400, "invalid_request"));
    }

    #[test]
    fn more_parameters_than_the_cap_are_refused(extra in 1usize..200) {
        let pairs: Vec<(String, String)> = (0..MAX_PARAMS + extra).map(|i| (format!("k{i}"), "v".into())).collect();
        let e = Params::parse(encode(&pairs).as_bytes()).expect_err("over the cap");
        prop_assert_eq!((e.status.as_u16(), e.error), (400, "invalid_request"));
    }
}

// ------------------------------------------------------------------------------------------
// Scopes

fn scope_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("openid".to_string()),
        Just("urn:matrix:client:api:*".to_string()),
        "urn:matrix:client:device:[A-Za-z0-9!\"'\\\\ ]{0,14}",
        "[!-~]{1,12}",
        hostile_text(12),
    ]
}

fn valid_token_byte(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn scopes_parse_into_distinct_valid_tokens_or_refuse(tokens in proptest::collection::vec(scope_token(), 0..80), seps in "[ ]{1,3}") {
        let text = tokens.join(&seps);
        match Scope::parse(&text) {
            Ok(scope) => {
                let parsed: Vec<&str> = scope.iter().collect();
                prop_assert!(parsed.len() <= MAX_SCOPE_TOKENS);
                let distinct: std::collections::HashSet<&str> = parsed.iter().copied().collect();
                prop_assert_eq!(distinct.len(), parsed.len(), "no token twice");
                for t in &parsed {
                    prop_assert!(!t.is_empty() && t.bytes().all(valid_token_byte), "token {:?}", t);
                }
                // What it prints parses back to itself (scopes are stored and re-read as text).
                prop_assert_eq!(Scope::parse(&scope.to_string()).expect("round trip"), scope.clone());
                // Every Matrix device of the scope keeps to the device-ID grammar once normalised.
                for id in scope.normalised().device_ids() {
                    prop_assert!(!id.contains(' ') && !id.contains('"') && !id.contains('\\'));
                }
            }
            Err(_) => {
                let bad = text.split(' ').any(|t| !t.bytes().all(valid_token_byte));
                let distinct: std::collections::HashSet<&str> = text.split(' ').filter(|t| !t.is_empty()).collect();
                prop_assert!(bad || distinct.len() > MAX_SCOPE_TOKENS, "refused a valid scope {:?}", text);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Device IDs

const DEVICE_ID_CHARS: &str = "-._~!$&'()*+,;=:@/";

fn device_id_candidate() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9\\-._~!$&'()*+,;=:@/]{0,20}", "[A-Z0-9]{10}", "[A-Za-z0-9]{250,260}", hostile_text(24),]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn device_ids_follow_the_grammar(id in device_id_candidate()) {
        let chars_ok = id.bytes().all(|b| b.is_ascii_alphanumeric() || DEVICE_ID_CHARS.as_bytes().contains(&b));
        let new = DeviceId::parse(&id);
        let stored = DeviceId::parse_stored(&id);
        prop_assert_eq!(new.is_ok(), chars_ok && (10..=255).contains(&id.len()), "parse {:?}", id);
        prop_assert_eq!(stored.is_ok(), chars_ok && (1..=255).contains(&id.len()), "parse_stored {:?}", id);
        if let Ok(d) = new {
            prop_assert_eq!(d.as_str(), id.as_str());
            // A device ID can never smuggle a second token into a scope string.
            let scope = Scope::parse(&format!("openid urn:matrix:client:device:{d}")).expect("device scope");
            prop_assert_eq!(scope.device_id(), Some(id.as_str()));
        }
    }

    #[test]
    fn generated_device_ids_are_valid(_n in 0u8..16) {
        let id = DeviceId::generate(&appliance::rng::OsRng);
        prop_assert!(DeviceId::parse(id.as_str()).is_ok(), "{}", id);
    }
}

// ------------------------------------------------------------------------------------------
// Redirect URIs: exact match, except a loopback redirect on another port (RFC 8252 §7.3)

fn registered_redirect() -> impl Strategy<Value = String> {
    prop_oneof![
        "https://[a-z]{1,8}\\.example/[a-z/]{0,10}",
        "http://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:[0-9]{2,5})?/[a-z]{0,8}",
        "[a-z]{2,6}\\.[a-z]{2,6}:/[a-z]{0,8}",
    ]
}

fn mutation() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        Just("?x=1".to_string()),
        Just("#f".to_string()),
        Just(".evil.example".to_string()),
        Just("@evil.example".to_string()),
        Just("%2F..".to_string()),
        "[!-~]{1,6}",
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn redirect_uris_match_exactly(registered in registered_redirect(), suffix in mutation(), junk in hostile_text(40)) {
        prop_assert!(redirect_matches(&registered, &registered));
        // Never panics on anything, in either position.
        let _ = redirect_matches(&junk, &registered);
        let _ = redirect_matches(&registered, &junk);
        let longer = format!("{registered}{suffix}");
        if redirect_matches(&registered, &longer) {
            // Only a loopback http redirect may differ, and then only in its port.
            let (r, q) = (url::Url::parse(&registered).unwrap(), url::Url::parse(&longer).unwrap());
            prop_assert_eq!(r.scheme(), "http");
            prop_assert!(matches!(r.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")));
            prop_assert_eq!((r.host_str(), r.path(), r.query()), (q.host_str(), q.path(), q.query()));
            prop_assert!(q.fragment().is_none() && q.username().is_empty());
        }
    }

    #[test]
    fn a_loopback_redirect_may_change_only_its_port(path in "/[a-z]{0,8}", port in 1u16..65535, suffix in mutation()) {
        let registered = format!("http://127.0.0.1{path}");
        let (other_port, other_host, https) = (
            format!("http://127.0.0.1:{port}{path}"),
            format!("http://127.0.0.2:{port}{path}"),
            format!("https://127.0.0.1:{port}{path}"),
        );
        prop_assert!(redirect_matches(&registered, &other_port), "{}", other_port);
        prop_assert!(!redirect_matches(&registered, &other_host), "{}", other_host);
        prop_assert!(!redirect_matches(&registered, &https), "{}", https);
        let changed = format!("http://127.0.0.1:{port}{path}{suffix}");
        let q = url::Url::parse(&changed).unwrap();
        let same = q.path() == url::Url::parse(&registered).unwrap().path() && q.query().is_none() && q.fragment().is_none();
        prop_assert_eq!(redirect_matches(&registered, &changed), same, "{}", changed);
    }
}

// ------------------------------------------------------------------------------------------
// Token formats: prefix, 30 random characters, 6-character base62 CRC-32

const KINDS: &[TokenKind] = &[
    TokenKind::AccessToken,
    TokenKind::RefreshToken,
    TokenKind::CompatAccessToken,
    TokenKind::CompatRefreshToken,
    TokenKind::PersonalAccessToken,
];

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn tokens_check_or_refuse(text in prop_oneof![hostile_text(60), "(mat|mar|mct|mcr|mpt|syt|syr)_[A-Za-z0-9_]{0,40}"]) {
        // Ours carry their kind's prefix; only compat kinds come without (Synapse's imported tokens).
        if let Some(kind) = TokenKind::check(&text) {
            let compat = matches!(kind, TokenKind::CompatAccessToken | TokenKind::CompatRefreshToken);
            prop_assert!(text.starts_with(&format!("{}_", kind.prefix())) || compat, "{}", text);
        }
    }

    #[test]
    fn generated_tokens_check_and_any_one_change_is_caught(
        kind in proptest::sample::select(KINDS),
        at in any::<prop::sample::Index>(),
        with in proptest::char::range('0', 'z'),
    ) {
        let token = kind.generate(&appliance::rng::OsRng);
        prop_assert_eq!(TokenKind::check(&token), Some(kind));
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != with as u8);
        bytes[i] = with as u8;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(TokenKind::check(&changed), None, "{} → {}", token, changed);
    }
}

// ------------------------------------------------------------------------------------------
// The config file: any YAML is a config or an error naming what is wrong, never a panic

const BASE_CONFIG: &str = r#"
http:
  public_base: "http://127.0.0.1:8080/"
  listeners:
    - name: web
      resources: [{name: discovery}, {name: human}, {name: oauth}, {name: compat}, {name: health}]
      binds: [{address: "127.0.0.1:8080"}]
database:
  path: "appliance.db"
matrix:
  homeserver: "example.org"
  secret: "a-secret-shared-with-synapse"
  endpoint: "http://127.0.0.1:8008/"
clients:
  - client_id: 01J0000000000000000000PB01
    client_auth_method: none
    redirect_uris: ["https://app.example.org/callback"]
passwords:
  schemes: [{version: 1, algorithm: argon2id}]
rate_limiting:
  login: {per_ip: {burst: 3, per_second: 0.1}}
"#;

fn yaml_leaf() -> impl Strategy<Value = serde_yaml::Value> {
    use serde_yaml::Value as Y;
    prop_oneof![
        Just(Y::Null),
        any::<bool>().prop_map(Y::Bool),
        any::<i64>().prop_map(|n| Y::Number(n.into())),
        any::<f64>().prop_map(|n| Y::Number(n.into())),
        hostile_text(16).prop_map(Y::String),
        proptest::sample::select(&["", "none", "http://[::1]:0/", "-1", "1e400", "argon2id", "/", "web"][..])
            .prop_map(|s| Y::String(s.into())),
    ]
}

fn yaml_value() -> impl Strategy<Value = serde_yaml::Value> {
    yaml_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_yaml::Value::Sequence),
            proptest::collection::vec((hostile_text(8), inner), 0..4).prop_map(|kv| {
                serde_yaml::Value::Mapping(kv.into_iter().map(|(k, v)| (serde_yaml::Value::String(k), v)).collect())
            }),
        ]
    })
}

/// Every path (mapping keys and sequence indices) to a node of `v`.
fn paths(v: &serde_yaml::Value, prefix: &mut Vec<serde_yaml::Value>, out: &mut Vec<Vec<serde_yaml::Value>>) {
    out.push(prefix.clone());
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, child) in m {
                prefix.push(k.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        serde_yaml::Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                prefix.push(serde_yaml::Value::Number(i.into()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn node_at<'a>(v: &'a mut serde_yaml::Value, path: &[serde_yaml::Value]) -> &'a mut serde_yaml::Value {
    path.iter().fold(v, |node, key| match (node, key) {
        (serde_yaml::Value::Sequence(s), serde_yaml::Value::Number(i)) => &mut s[i.as_u64().unwrap() as usize],
        (node, key) => node.get_mut(key).unwrap(),
    })
}

fn parse_config(text: &str, dir: &std::path::Path) -> Result<(), TestCaseError> {
    match std::panic::catch_unwind(|| Config::parse(text, dir)) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            prop_assert!(!e.to_string().trim().is_empty(), "an empty error for {:?}", text);
            Ok(())
        }
        Err(_) => Err(TestCaseError::fail(format!("the config parser panicked on:\n{text}"))),
    }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn the_base_config_of_these_properties_parses(_n in 0u8..1) {
        let dir = tempfile::tempdir().unwrap();
        Config::parse(BASE_CONFIG, dir.path()).expect("base config");
    }

    #[test]
    fn arbitrary_text_is_a_config_error(text in prop_oneof![hostile_text(200), "[a-z_]{1,10}: [!-~ ]{0,20}\n( +[a-z_]{1,10}: [!-~ ]{0,20}\n){0,4}"]) {
        let dir = tempfile::tempdir().unwrap();
        parse_config(&text, dir.path())?;
    }

    #[test]
    fn a_changed_node_of_a_valid_config_parses_or_errs(pick in any::<prop::sample::Index>(), new in yaml_value(), remove in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut config: serde_yaml::Value = serde_yaml::from_str(BASE_CONFIG).unwrap();
        let mut all = Vec::new();
        paths(&config, &mut Vec::new(), &mut all);
        let path = &all[pick.index(all.len())];
        match (remove, path.split_last()) {
            (true, Some((last, parent))) => match node_at(&mut config, parent) {
                serde_yaml::Value::Mapping(m) => {
                    m.remove(last);
                }
                serde_yaml::Value::Sequence(s) => {
                    s.remove(last.as_u64().unwrap() as usize);
                }
                _ => {}
            },
            _ => *node_at(&mut config, path) = new,
        }
        let text = serde_yaml::to_string(&config).unwrap();
        parse_config(&text, dir.path())?;
    }
}

// ------------------------------------------------------------------------------------------
// The router: every endpoint reachable without signing in, fed arbitrary requests

const HS_CLIENT: &str = "01J0000000000000000000HS01";
const PK_CLIENT: &str = "01J0000000000000000000PK01";

/// What an error from this endpoint must look like.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    /// RFC 6749 JSON `{"error": …}`.
    OAuth,
    /// Matrix JSON `{"errcode": …}`.
    Matrix,
    /// An HTML page (or a redirect).
    Page,
    /// Discovery, assets, health: JSON with `error`, a page, or a plain 404.
    Any,
}

#[derive(Debug, Clone, Copy)]
enum BodyKind {
    Form,
    Json,
    None,
}

struct Endpoint {
    method: &'static str,
    /// `{id}` is replaced by an arbitrary path segment.
    path: &'static str,
    body: BodyKind,
    family: Family,
}

const fn ep(method: &'static str, path: &'static str, body: BodyKind, family: Family) -> Endpoint {
    Endpoint { method, path, body, family }
}

const ENDPOINTS: &[Endpoint] = &[
    ep("POST", "/oauth2/token", BodyKind::Form, Family::OAuth),
    ep("POST", "/oauth2/introspect", BodyKind::Form, Family::OAuth),
    ep("POST", "/oauth2/revoke", BodyKind::Form, Family::OAuth),
    ep("POST", "/oauth2/device", BodyKind::Form, Family::OAuth),
    ep("POST", "/oauth2/registration", BodyKind::Json, Family::OAuth),
    ep("GET", "/oauth2/userinfo", BodyKind::None, Family::OAuth),
    ep("POST", "/oauth2/userinfo", BodyKind::Form, Family::OAuth),
    ep("GET", "/authorize", BodyKind::None, Family::Page),
    ep("GET", "/.well-known/webfinger", BodyKind::None, Family::Any),
    ep("GET", "/.well-known/openid-configuration", BodyKind::None, Family::Any),
    ep("GET", "/oauth2/keys.json", BodyKind::None, Family::Any),
    ep("GET", "/_matrix/client/v3/login", BodyKind::None, Family::Matrix),
    ep("POST", "/_matrix/client/v3/login", BodyKind::Json, Family::Matrix),
    ep("POST", "/_matrix/client/{id}/login", BodyKind::Json, Family::Matrix),
    ep("POST", "/_matrix/client/v3/logout", BodyKind::Json, Family::Matrix),
    ep("POST", "/_matrix/client/v3/logout/all", BodyKind::Json, Family::Matrix),
    ep("POST", "/_matrix/client/v3/refresh", BodyKind::Json, Family::Matrix),
    ep("GET", "/_matrix/client/v3/login/sso/redirect", BodyKind::None, Family::Matrix),
    ep("GET", "/_matrix/client/v3/login/sso/redirect/{id}", BodyKind::None, Family::Matrix),
    ep("GET", "/login", BodyKind::None, Family::Page),
    ep("POST", "/login", BodyKind::Form, Family::Page),
    ep("GET", "/login/mfa", BodyKind::None, Family::Page),
    ep("POST", "/login/mfa", BodyKind::Form, Family::Page),
    ep("GET", "/register", BodyKind::None, Family::Page),
    ep("POST", "/register", BodyKind::Form, Family::Page),
    ep("GET", "/register/verify/{id}", BodyKind::None, Family::Page),
    ep("POST", "/register/verify/{id}", BodyKind::Form, Family::Page),
    ep("POST", "/register/resend/{id}", BodyKind::Form, Family::Page),
    ep("GET", "/recover", BodyKind::None, Family::Page),
    ep("POST", "/recover", BodyKind::Form, Family::Page),
    ep("GET", "/recover/{id}", BodyKind::None, Family::Page),
    ep("POST", "/recover/{id}", BodyKind::Form, Family::Page),
    ep("GET", "/link", BodyKind::None, Family::Page),
    ep("POST", "/link", BodyKind::Form, Family::Page),
    ep("GET", "/device/{id}", BodyKind::None, Family::Page),
    ep("POST", "/device/{id}", BodyKind::Form, Family::Page),
    ep("GET", "/consent/{id}", BodyKind::None, Family::Page),
    ep("POST", "/consent/{id}", BodyKind::Form, Family::Page),
    ep("GET", "/complete-compat-sso/{id}", BodyKind::None, Family::Page),
    ep("POST", "/complete-compat-sso/{id}", BodyKind::Form, Family::Page),
    ep("POST", "/logout", BodyKind::Form, Family::Page),
    ep("GET", "/account", BodyKind::None, Family::Page),
    ep("POST", "/account/password", BodyKind::Form, Family::Page),
    ep("GET", "/assets/{id}", BodyKind::None, Family::Any),
    ep("GET", "/health", BodyKind::None, Family::Any),
];

/// One arbitrary request, before it is aimed at an endpoint.
#[derive(Debug, Clone)]
struct Case {
    segment: String,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    json: Option<Value>,
    raw: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    authorization: Option<String>,
    cookie: Option<String>,
    accept: Option<&'static str>,
    forwarded: Option<String>,
    peer: [u8; 4],
}

/// Values with a chance of getting past the first check, so later parsers see input too.
fn interesting_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => hostile_text(40),
        1 => proptest::sample::select(&[
            PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, HS_CLIENT, PK_CLIENT, SYNAPSE_CLIENT_ID, REDIRECT,
            "authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "code", "S256", "plain", "form_post", "query",
            "openid urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ", "create", "consent login none",
            "alice", "password", "m.login.password", "m.login.token", "m.id.user", "http://127.0.0.1:1/cb",
        ][..]).prop_map(String::from),
        1 => (proptest::sample::select(KINDS), any::<bool>()).prop_map(|(k, ok)| {
            let t = k.generate(&appliance::rng::OsRng);
            if ok { t } else { format!("{}x", &t[..t.len() - 1]) }
        }),
        1 => jwt_shaped(),
    ]
}

/// `header.payload.signature`: base64 of arbitrary JSON naming one of the assertion clients, so
/// the assertion parsers (unverified subject, header, JWKS selection, signature) all run.
fn jwt_shaped() -> impl Strategy<Value = String> {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let alg = proptest::sample::select(&["HS256", "HS512", "ES256", "RS256", "none", "EdDSA", ""][..]);
    let sub = proptest::sample::select(&[HS_CLIENT, PK_CLIENT, PUBLIC_CLIENT, "", "nobody"][..]);
    (alg, sub, hostile_text(8), any::<Option<i64>>(), proptest::collection::vec(any::<u8>(), 0..80), any::<u8>())
        .prop_map(move |(alg, sub, kid, exp, sig, shape)| {
            let header = serde_json::json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string();
            let payload =
                serde_json::json!({"sub": sub, "iss": sub, "aud": "http://x/oauth2/token", "exp": exp, "jti": kid})
                    .to_string();
            match shape % 4 {
                0 => format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(&sig)),
                1 => format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes())),
                2 => format!("{}.{}.{}.{}", b64(&sig), b64(payload.as_bytes()), b64(&sig), b64(&sig)),
                _ => format!("{}.{}.", b64(&sig), b64(payload.as_bytes())),
            }
        })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        interesting_value().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        proptest::sample::select(
                            &[
                                "type",
                                "identifier",
                                "user",
                                "password",
                                "token",
                                "device_id",
                                "initial_device_display_name",
                                "refresh_token",
                                "refresh_token",
                                "redirect_uris",
                                "client_name",
                                "client_uri",
                                "token_endpoint_auth_method",
                                "grant_types",
                                "response_types",
                                "application_type",
                                "jwks",
                                "jwks_uri",
                                "logo_uri",
                            ][..]
                        )
                        .prop_map(String::from),
                        hostile_text(8),
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn case() -> impl Strategy<Value = Case> {
    let pairs = || proptest::collection::vec((param_key(), interesting_value()), 0..8);
    let content_type = proptest::option::of(proptest::sample::select(
        &[
            "application/x-www-form-urlencoded",
            "application/json",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded; charset=utf-16",
            "\u{0}",
        ][..],
    ));
    let authorization = proptest::option::of(prop_oneof![
        hostile_text(30),
        interesting_value().prop_map(|t| format!("Bearer {t}")),
        Just(format!("Bearer {MATRIX_SECRET}")),
        (interesting_value(), interesting_value()).prop_map(|(id, secret)| format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )),
        proptest::collection::vec(any::<u8>(), 0..30)
            .prop_map(|b| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(b))),
    ]);
    let accept = proptest::option::of(proptest::sample::select(&["text/html", "application/json", "*/*", ""][..]));
    (
        (hostile_text(20), pairs(), pairs()),
        (proptest::option::of(json_value()), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300))),
        (content_type, authorization, proptest::option::of(hostile_text(60)), accept),
        (proptest::option::of("[0-9a-f:., ]{0,40}"), any::<[u8; 4]>()),
    )
        .prop_map(
            |(
                (segment, query, form),
                (json, raw),
                (content_type, authorization, cookie, accept),
                (forwarded, peer),
            )| {
                Case { segment, query, form, json, raw, content_type, authorization, cookie, accept, forwarded, peer }
            },
        )
}

fn request(ep: &Endpoint, case: &Case) -> Option<Request<Body>> {
    let segment: String = url::form_urlencoded::byte_serialize(case.segment.as_bytes()).collect();
    let mut uri = ep.path.replace("{id}", if segment.is_empty() { "x" } else { &segment });
    if !case.query.is_empty() {
        uri = format!("{uri}?{}", encode(&case.query));
    }
    let body = match (&case.raw, ep.body) {
        (Some(raw), _) => raw.clone(),
        (None, BodyKind::Form) => encode(&case.form).into_bytes(),
        (None, BodyKind::Json) => case.json.as_ref().map(|j| j.to_string().into_bytes()).unwrap_or_default(),
        (None, BodyKind::None) => Vec::new(),
    };
    let default_type = match ep.body {
        BodyKind::Form => Some("application/x-www-form-urlencoded"),
        BodyKind::Json => Some("application/json"),
        BodyKind::None => None,
    };
    let mut builder = Request::builder().method(ep.method).uri(uri);
    if let Some(t) = case.content_type.or(default_type) {
        builder = builder.header(header::CONTENT_TYPE, t);
    }
    // Header values a client cannot send (control characters) are left out, as hyper would refuse them.
    for (name, value) in [
        (header::AUTHORIZATION, &case.authorization),
        (header::COOKIE, &case.cookie),
        (header::HeaderName::from_static("x-forwarded-for"), &case.forwarded),
    ] {
        if let Some(v) = value.as_ref().and_then(|v| header::HeaderValue::from_str(v).ok()) {
            builder = builder.header(name, v);
        }
    }
    if let Some(a) = case.accept {
        builder = builder.header(header::ACCEPT, a);
    }
    let mut req = builder.body(Body::from(body)).ok()?;
    let peer = SocketAddr::new(IpAddr::from(case.peer), 40000);
    req.extensions_mut().insert(ConnectInfo(peer));
    Some(req)
}

async fn check(app: &TestApp, router: &axum::Router, ep: &Endpoint, case: &Case) -> Result<(), TestCaseError> {
    let Some(req) = request(ep, case) else {
        return Ok(());
    };
    let what = format!("{} {}", req.method(), req.uri());
    let res = router.clone().oneshot(req).await.expect("the router is infallible");
    let status = res.status().as_u16();
    let content_type =
        res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body = axum::body::to_bytes(res.into_body(), 4 << 20).await.expect("body");
    let text = String::from_utf8_lossy(&body);
    prop_assert!(status < 500, "{what} answered {status}: {text}\n{case:?}");
    if status < 400 {
        return Ok(());
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let has = |field: &str| json.as_ref().and_then(|j| j.get(field)).is_some_and(Value::is_string);
    let page = content_type.starts_with("text/html");
    let ok = match ep.family {
        Family::OAuth => has("error"),
        Family::Matrix => has("errcode"),
        Family::Page => page,
        // A missing asset is a plain 404 for anyone but a browser, on purpose.
        Family::Any => has("error") || has("errcode") || page || status == 404,
    };
    prop_assert!(ok, "{what} answered {status} ({content_type}) not in the {:?} shape: {text}\n{case:?}", ep.family);
    let _ = app;
    Ok(())
}

fn router_app_patch() -> String {
    use jwt_simple::prelude::*;
    let point = ES256KeyPair::generate().public_key().public_key().to_bytes_uncompressed();
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
    format!(
        r#"
clients:
  - client_id: {SYNAPSE_CLIENT_ID}
    client_auth_method: client_secret_basic
    client_secret: "{SYNAPSE_CLIENT_SECRET}"
  - client_id: {PUBLIC_CLIENT}
    client_auth_method: none
    redirect_uris: ["{REDIRECT}", "http://127.0.0.1/callback"]
  - client_id: {CONFIDENTIAL_CLIENT}
    client_auth_method: client_secret_post
    client_secret: "{CONFIDENTIAL_SECRET}"
    redirect_uris: ["{REDIRECT}"]
  - client_id: {HS_CLIENT}
    client_auth_method: client_secret_jwt
    client_secret: "a-shared-secret-for-client-secret-jwt"
  - client_id: {PK_CLIENT}
    client_auth_method: private_key_jwt
    jwks: {jwks}
account:
  password_registration_enabled: true
  password_recovery_enabled: true
"#
    )
}

#[test]
fn unauthenticated_endpoints_never_answer_5xx_and_always_in_their_error_shape() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (app, router) = rt.block_on(async {
        let app = spawn_app_with(&router_app_patch()).await;
        register_user(&app, "alice", "correct horse battery staple", false).await;
        let resources = app.state.config.http.listeners[0].resources.clone();
        let router = appliance::http::router::build(app.state.clone(), &resources);
        (app, router)
    });
    for ep in ENDPOINTS {
        // A runner per endpoint: one runner counts its cases across runs.
        TestRunner::new(cases(24))
            .run(&case(), |case| rt.block_on(check(&app, &router, ep, &case)))
            .unwrap_or_else(|e| panic!("{} {}: {e}", ep.method, ep.path));
    }
    rt.block_on(app.stop());
}
