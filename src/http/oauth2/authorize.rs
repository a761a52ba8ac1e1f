//! `GET /authorize`: validates the request, records a grant and sends the browser to sign in
//! and consent. Errors go back to the client only once its redirect URI is known to be genuine.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use url::Url;

use super::params::{
    MAX_LOGIN_HINT_LENGTH, MAX_NONCE_LENGTH, MAX_PROMPT_LENGTH, MAX_REDIRECT_URI_LENGTH, MAX_SCOPE_LENGTH,
    MAX_STATE_LENGTH, Params,
};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::ErrorCode;
use crate::http::pages::context::{Browser, PageContext, page_context};
use crate::http::pages::error::{PageError, render};
use crate::http::pages::login::login_url;
use crate::lifecycle::policy;
use crate::model::client::GRANT_AUTHORIZATION_CODE;
use crate::model::{Client, Scope};
use crate::store::{
    clients as client_store,
    grants::{self as grant_store, AuthorizationGrant},
};

/// Where and how an answer goes back to the client.
pub struct ClientRedirect {
    pub uri: String,
    pub mode: String,
    pub state: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/form_post.html")]
struct FormPostPage {
    ctx: PageContext,
    redirect_uri: String,
    params: Vec<(String, String)>,
}

impl ClientRedirect {
    /// Sends `params` (plus `state`) to the client in its response mode.
    pub fn respond(&self, app: &AppState, mut params: Vec<(String, String)>) -> Response {
        if let Some(s) = &self.state {
            params.push(("state".into(), s.clone()));
        }
        if self.mode == "form_post" {
            let page =
                FormPostPage { ctx: page_context(app, String::new(), None), redirect_uri: self.uri.clone(), params };
            // Its form posts to the client: only /authorize serves it, with FLOW_PAGE_CSP.
            return render(&page);
        }
        let Ok(mut url) = Url::parse(&self.uri) else {
            return PageError::bad_request("The application's redirect address is invalid.").into_response();
        };
        let encoded: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
        if self.mode == "fragment" {
            url.set_fragment(Some(&encoded));
        } else {
            url.query_pairs_mut().extend_pairs(&params);
        }
        Redirect::to(url.as_str()).into_response()
    }

    /// An error for the client (RFC 6749 §4.1.2.1), sent to its redirect URI.
    pub fn error(&self, app: &AppState, error: ErrorCode, description: &str) -> Response {
        let params = vec![("error".into(), error.as_str().into()), ("error_description".into(), description.into())];
        self.respond(app, params)
    }
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// Exact match, except that a loopback redirect may use any port (RFC 8252 §7.3).
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(r), Ok(q)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    r.scheme() == "http"
        && q.scheme() == "http"
        && is_loopback(&r)
        && r.host_str() == q.host_str()
        && r.path() == q.path()
        && r.query() == q.query()
        && q.fragment().is_none()
        && q.username().is_empty()
}

fn resolve_redirect(client: &Client, requested: Option<&str>) -> Option<String> {
    let registered = &client.metadata.redirect_uris;
    match requested {
        Some(r) => registered.iter().any(|reg| redirect_matches(reg, r)).then(|| r.to_string()),
        None if registered.len() == 1 => Some(registered[0].clone()),
        None => None,
    }
}

fn page_error(message: &str) -> Response {
    PageError::bad_request(message.to_string()).into_response()
}

#[tracing::instrument(name = "http.oauth2.authorize", skip_all, fields(client_id))]
pub async fn get(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    browser: Browser,
    RawQuery(query): RawQuery,
) -> Response {
    // Each request stores a grant before anyone signed in: bounded per client IP and in size.
    if state.limiters.authorization.check_ip(ip).is_err() {
        return PageError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "Too many sign-in requests came from your network. Wait a minute and try again.",
        )
        .into_response();
    }
    let params = match Params::from_query(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return page_error(e.description.as_deref().unwrap_or("Malformed request")),
    };
    if let Err(e) = params.check_lengths(&[
        ("state", MAX_STATE_LENGTH),
        ("nonce", MAX_NONCE_LENGTH),
        ("login_hint", MAX_LOGIN_HINT_LENGTH),
        ("scope", MAX_SCOPE_LENGTH),
        ("prompt", MAX_PROMPT_LENGTH),
        ("redirect_uri", MAX_REDIRECT_URI_LENGTH),
    ]) {
        return page_error(e.description.as_deref().unwrap_or("Malformed request"));
    }
    let Some(client_id) = params.get("client_id").map(String::from) else {
        return page_error("The application did not say who it is (missing client_id).");
    };
    tracing::Span::current().record("client_id", client_id.as_str());
    let lookup = client_id.clone();
    let client = match state.store.read(move |c| client_store::by_id(c, &lookup)).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return page_error("This application is not known to this server (unknown client_id).");
        }
        Err(e) => return PageError::internal(e).into_response(),
    };
    let Some(redirect_uri) = resolve_redirect(&client, params.get("redirect_uri")) else {
        return page_error(
            "The application asked to send you to an address it has not registered (redirect_uri mismatch).",
        );
    };
    let response_mode = params.get("response_mode").unwrap_or("query").to_string();
    let target = ClientRedirect {
        uri: redirect_uri.clone(),
        mode: if matches!(response_mode.as_str(), "query" | "fragment" | "form_post") {
            response_mode.clone()
        } else {
            "query".into()
        },
        state: params.get("state").map(String::from),
    };
    if !matches!(response_mode.as_str(), "query" | "fragment" | "form_post") {
        return target.error(&state, ErrorCode::InvalidRequest, "unsupported response_mode");
    }
    for (param, error) in [
        ("request", ErrorCode::RequestNotSupported),
        ("request_uri", ErrorCode::RequestUriNotSupported),
        ("registration", ErrorCode::RegistrationNotSupported),
    ] {
        if params.get(param).is_some() {
            return target.error(&state, error, &format!("the {param} parameter is not supported"));
        }
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return target.error(&state, ErrorCode::InvalidRequest, "missing response_type"),
        Some(_) => {
            return target.error(&state, ErrorCode::UnsupportedResponseType, "only response_type=code is supported");
        }
    }
    if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
        return target.error(
            &state,
            ErrorCode::UnauthorizedClient,
            "the client may not use the authorization code grant",
        );
    }
    let scope = match Scope::parse(params.get("scope").unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return target.error(&state, ErrorCode::InvalidScope, &e.to_string()),
    };
    if let Err(violation) = policy::check_shape(&scope) {
        return target.error(&state, ErrorCode::InvalidScope, &violation);
    }
    let challenge = params.get("code_challenge").map(String::from);
    let method = params.get("code_challenge_method").map(String::from);
    match (&challenge, method.as_deref()) {
        (None, Some(_)) => {
            return target.error(&state, ErrorCode::InvalidRequest, "code_challenge_method without code_challenge");
        }
        (None, None) if client.is_public() => {
            return target.error(
                &state,
                ErrorCode::InvalidRequest,
                "public clients must use PKCE (code_challenge with S256)",
            );
        }
        (Some(c), m) => {
            let m = m.unwrap_or("plain");
            if !matches!(m, "plain" | "S256") {
                return target.error(&state, ErrorCode::InvalidRequest, "code_challenge_method must be S256 or plain");
            }
            if client.is_public() && m != "S256" {
                return target.error(
                    &state,
                    ErrorCode::InvalidRequest,
                    "public clients must use code_challenge_method=S256",
                );
            }
            if !(43..=128).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                return target.error(&state, ErrorCode::InvalidRequest, "malformed code_challenge");
            }
        }
        (None, None) => {}
    }
    let prompt = params.get("prompt").map(String::from);
    let prompts: Vec<&str> = prompt.as_deref().unwrap_or("").split(' ').filter(|p| !p.is_empty()).collect();
    if prompts.contains(&"none") {
        // Consent is asked every time, so a silent authorization can never succeed.
        let error = if browser.session.is_some() { ErrorCode::ConsentRequired } else { ErrorCode::LoginRequired };
        return target.error(&state, error, "user interaction is required");
    }
    let grant = AuthorizationGrant {
        id: state.rng.id(state.clock.as_ref()),
        client_id: client.id.clone(),
        redirect_uri,
        redirect_uri_given: params.get("redirect_uri").is_some(),
        scope: scope.to_string(),
        state: target.state.clone(),
        nonce: params.get("nonce").map(String::from),
        response_mode,
        code_challenge: challenge,
        code_challenge_method: method,
        prompt: prompt.clone(),
        login_hint: params.get("login_hint").map(String::from),
        user_session_id: None,
        oauth2_session_id: None,
        created_at: state.now(),
        fulfilled_at: None,
        exchanged_at: None,
        cancelled_at: None,
    };
    let grant_id = grant.id.clone();
    let hint = grant.login_hint.clone();
    if let Err(e) = state.store.write(move |c| grant_store::insert_grant(c, &grant)).await {
        return PageError::internal(e).into_response();
    }
    let consent = format!("/consent/{grant_id}");
    if prompts.contains(&"create") && crate::http::pages::registration_offered(&state) {
        let next = url::form_urlencoded::byte_serialize(consent.as_bytes()).collect::<String>();
        return Redirect::to(&format!("/register?next={next}")).into_response();
    }
    if browser.session.is_none() || prompts.contains(&"login") {
        let mut url = login_url(&consent);
        if let Some(h) = hint {
            url.push_str("&login_hint=");
            url.extend(url::form_urlencoded::byte_serialize(h.as_bytes()));
        }
        return (browser.jar, Redirect::to(&url)).into_response();
    }
    (browser.jar, Redirect::to(&consent)).into_response()
}

#[cfg(test)]
mod tests {
    use super::redirect_matches;

    #[test]
    fn loopback_port_rule() {
        assert!(redirect_matches("http://127.0.0.1/cb", "http://127.0.0.1:4567/cb"));
        assert!(redirect_matches("http://localhost:1/cb", "http://localhost:9/cb"));
        assert!(!redirect_matches("http://127.0.0.1/cb", "http://127.0.0.1:4567/other"));
        assert!(!redirect_matches("https://app.example/cb", "https://app.example:444/cb"));
        assert!(!redirect_matches("https://app.example/cb", "https://app.example/cb/"));
        assert!(!redirect_matches("http://localhost/cb", "http://127.0.0.1/cb"));
    }
}
