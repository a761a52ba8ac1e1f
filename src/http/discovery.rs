//! `/.well-known/openid-configuration`, `/.well-known/webfinger` and `/oauth2/keys.json`.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::config::ClientAuthMethod;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(openid_configuration))
        .route("/.well-known/webfinger", get(webfinger))
}

pub fn keys_router() -> Router<AppState> {
    Router::new().route("/oauth2/keys.json", get(jwks))
}

/// The account page actions Element X and Synapse may deep-link to (MSC4191).
pub const ACCOUNT_ACTIONS: &[&str] = &[
    "org.matrix.profile",
    "org.matrix.devices_list",
    "org.matrix.device_view",
    "org.matrix.device_delete",
    "org.matrix.cross_signing_reset",
    "org.matrix.sessions_list",
    "org.matrix.session_view",
    "org.matrix.session_end",
    "org.matrix.account_deactivate",
];

pub fn document(state: &AppState) -> Value {
    let url = |p: &str| state.url(p);
    let auth_methods: Vec<&str> = ClientAuthMethod::ALL.iter().map(|m| m.as_str()).collect();
    let assertion_algs =
        ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"];
    let signing_algs = state.keys.algs();
    let mut prompts = vec!["none", "login", "consent"];
    if crate::http::pages::registration_offered(state) {
        prompts.push("create");
    }
    json!({
        "issuer": state.config.http.issuer().as_str(),
        "authorization_endpoint": url("authorize"),
        "token_endpoint": url("oauth2/token"),
        "jwks_uri": url("oauth2/keys.json"),
        "registration_endpoint": url("oauth2/registration"),
        "introspection_endpoint": url("oauth2/introspect"),
        "revocation_endpoint": url("oauth2/revoke"),
        "userinfo_endpoint": url("oauth2/userinfo"),
        "device_authorization_endpoint": url("oauth2/device"),
        "scopes_supported": ["openid", "email"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["form_post", "query", "fragment"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code"
        ],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "code_challenge_methods_supported": ["plain", "S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": signing_algs,
        "userinfo_signing_alg_values_supported": signing_algs,
        "display_values_supported": ["page"],
        "claim_types_supported": ["normal"],
        "claims_supported": ["iss", "sub", "aud", "iat", "exp", "nonce", "auth_time", "at_hash", "c_hash"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "prompt_values_supported": prompts,
        "account_management_uri": url("account/"),
        "account_management_actions_supported": ACCOUNT_ACTIONS,
    })
}

async fn openid_configuration(State(state): State<AppState>) -> Response {
    let mut res = Json(document(&state)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut res = Json(state.keys.jwks()).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

#[derive(Deserialize)]
struct WebfingerQuery {
    resource: Option<String>,
    rel: Option<String>,
}

const ISSUER_REL: &str = "http://openid.net/specs/connect/1.0/issuer";

/// RFC 7033 for OpenID issuer discovery: the issuer link only when asked for it.
async fn webfinger(State(state): State<AppState>, Query(q): Query<WebfingerQuery>) -> Response {
    let Some(resource) = q.resource else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "missing resource"}))).into_response();
    };
    let links = if q.rel.as_deref() == Some(ISSUER_REL) {
        json!([{ "rel": ISSUER_REL, "href": state.config.http.issuer().as_str() }])
    } else {
        json!([])
    };
    (
        [(header::CONTENT_TYPE, "application/jrd+json"), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        Json(json!({ "subject": resource, "links": links })),
    )
        .into_response()
}
