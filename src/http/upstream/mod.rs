//! Signing in with an upstream OAuth 2.0 / OpenID Connect provider (MAS's `upstream_oauth2`):
//! `/upstream/authorize/{id}` → the provider → `/upstream/callback/{id}` (query or form_post) →
//! `/upstream/link/{session}` (sign in, link, or create the account), and the back-channel logout
//! receiver `/upstream/backchannel-logout/{id}`.

pub mod backchannel;
pub mod client;
pub mod link;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::PrivateCookieJar;
use serde::Deserialize;
use serde_json::{Value, json};

use self::client::UpstreamError;
use super::AppState;
use super::pages::context::cookie;
use super::pages::error::PageError;
use super::pages::login::safe_next;
use crate::config::{CLAIM_ROOTS, PARAM_ROOTS, UpstreamProviderConfig};
use crate::model::template::Template;
use crate::model::upstream::UpstreamProvider;
use crate::store::upstream as upstream_store;

/// The private cookie naming the browser's authorization session.
pub const UPSTREAM_COOKIE: &str = "appliance-upstream";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/upstream/authorize/{id}", get(authorize))
        .route("/upstream/callback/{id}", get(callback).post(callback_post))
        .route("/upstream/link/{session}", get(link::get).post(link::post))
        .route("/upstream/backchannel-logout/{id}", post(backchannel::post))
        .route("/account/upstream/unlink", post(link::unlink_post))
}

/// The error page of a failed upstream sign-in, logged with the provider id.
pub fn upstream_error(provider_id: &str, e: &UpstreamError) -> PageError {
    tracing::warn!(provider_id, error = %e, "upstream sign-in failed");
    let (status, title) = match e {
        UpstreamError::Unreachable(_) | UpstreamError::BadMetadata(_) => {
            (StatusCode::BAD_GATEWAY, "The sign-in provider cannot be reached")
        }
        UpstreamError::Refused(_) => (StatusCode::FORBIDDEN, "The sign-in provider refused the sign-in"),
        UpstreamError::TokenEndpoint(_) | UpstreamError::Userinfo(_) => {
            (StatusCode::BAD_GATEWAY, "The sign-in provider did not complete the sign-in")
        }
        UpstreamError::BadIdToken(_) => (StatusCode::BAD_REQUEST, "The sign-in provider sent an invalid identity"),
    };
    PageError::new(status, title, format!("{e}. Try again, or tell the administrator of this server."))
        .with_details(format!("Provider {provider_id}"))
}

/// An enabled provider from the database.
pub async fn enabled_provider(state: &AppState, id: &str) -> Result<UpstreamProvider, PageError> {
    let key = id.to_uppercase();
    let found = state.store.read(move |c| upstream_store::provider_by_id(c, &key)).await?;
    found
        .filter(|p| p.disabled_at.is_none())
        .ok_or_else(|| PageError::not_found("There is no such sign-in provider on this server."))
}

/// The provider's client secret — or, for `sign_in_with_apple`, its `.p8` key — decrypted.
pub fn client_secret(state: &AppState, p: &UpstreamProvider) -> Result<Option<String>, PageError> {
    p.encrypted_client_secret
        .as_ref()
        .map(|enc| state.encrypter.decrypt_string(enc).map_err(PageError::internal))
        .transpose()
}

pub fn redirect_uri(state: &AppState, provider_id: &str) -> String {
    state.url(&format!("upstream/callback/{provider_id}"))
}

#[derive(Deserialize)]
pub struct AuthorizeQuery {
    next: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// `additional_authorization_parameters` rendered over the raw downstream parameters.
fn extra_params(p: &UpstreamProviderConfig, params: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    let mut templates = p.additional_authorization_parameters.clone();
    if p.forward_login_hint && !templates.contains_key("login_hint") {
        templates.insert("login_hint".into(), "{{ params.login_hint }}".into());
    }
    let ctx = json!({"params": params, "logged_out": false});
    templates
        .iter()
        .filter_map(|(k, t)| {
            let v = Template::parse(t, PARAM_ROOTS).ok()?.render(&ctx);
            (!v.is_empty()).then(|| (k.clone(), v))
        })
        .collect()
}

#[tracing::instrument(name = "http.upstream.authorize", skip_all, fields(provider_id = %id))]
pub async fn authorize(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    match start(&state, jar, &id, q).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn start(state: &AppState, jar: PrivateCookieJar, id: &str, q: AuthorizeQuery) -> Result<Response, PageError> {
    let provider = enabled_provider(state, id).await?;
    let cfg = provider.config.clone();
    let agent = state.http.clone();
    let meta = tokio::task::spawn_blocking(move || client::metadata(&agent, &cfg))
        .await
        .map_err(PageError::internal)?
        .map_err(|e| upstream_error(&provider.id, &e))?;
    let random = || crate::crypto::b64url(&state.rng.bytes::<32>());
    let verifier = client::uses_pkce(&provider.config, &meta).then(random);
    let session = upstream_store::AuthorizationSession {
        id: state.rng.id(state.clock.as_ref()),
        provider_id: provider.id.clone(),
        link_id: None,
        state: random(),
        nonce: random(),
        code_challenge_verifier: verifier.clone(),
        next: safe_next(q.next.as_deref()),
        id_token_claims: None,
        userinfo: None,
        sid: None,
        subject: None,
        user_session_id: None,
        created_at: state.now(),
        completed_at: None,
        consumed_at: None,
        extra_callback_parameters: None,
    };
    let row = session.clone();
    state.store.write(move |c| upstream_store::insert_session(c, &row)).await?;
    let url = client::authorization_url(
        &provider.config,
        &meta,
        &redirect_uri(state, &provider.id),
        &session.state,
        &session.nonce,
        verifier.as_deref(),
        &extra_params(&provider.config, &q.rest),
    );
    let jar = jar.add(cookie(state, UPSTREAM_COOKIE, session.id));
    Ok((jar, Redirect::to(url.as_str())).into_response())
}

/// What the provider sends back to the callback: the standard fields, and the rest (MAS's
/// `extra_callback_parameters`, e.g. Apple's `user` with the name and email on the first sign-in).
#[derive(Default)]
pub struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    extra: serde_json::Map<String, Value>,
}

/// The most the extra fields of one callback may weigh (Apple's `user` is a few hundred bytes).
const MAX_EXTRA_BYTES: usize = 8 * 1024;

impl CallbackParams {
    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut p = CallbackParams::default();
        let mut weight = 0;
        for (k, v) in pairs {
            match k.as_str() {
                "state" => p.state = Some(v),
                "code" => p.code = Some(v),
                "error" => p.error = Some(v),
                "error_description" => p.error_description = Some(v),
                _ => {
                    weight += k.len() + v.len();
                    if weight <= MAX_EXTRA_BYTES {
                        p.extra.insert(k, Value::String(v));
                    }
                }
            }
        }
        p
    }
}

/// `response_mode: form_post`: the provider's page posts here cross-site, where the SameSite=Lax
/// cookie is not sent; a 303 turns it into a top-level GET of the same callback, which carries it.
/// Extra fields (Apple's `user`) are kept with the session of that `state` rather than put in the
/// URL, so a name and an email never land in browser history or access logs.
pub async fn callback_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let params = CallbackParams::from_pairs(pairs);
    let id: String = id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if let (Some(st), false) = (&params.state, params.extra.is_empty()) {
        let (provider, st, json) = (id.to_uppercase(), st.clone(), Value::Object(params.extra.clone()).to_string());
        if let Err(e) =
            state.store.write(move |c| upstream_store::set_callback_parameters(c, &provider, &st, &json)).await
        {
            return PageError::internal(e).into_response();
        }
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("state", &params.state), ("code", &params.code), ("error", &params.error)]
        .into_iter()
        .chain([("error_description", &params.error_description)])
    {
        if let Some(v) = v {
            query.append_pair(k, v);
        }
    }
    let query = query.finish();
    Redirect::to(&format!("/upstream/callback/{id}?{query}")).into_response()
}

#[tracing::instrument(name = "http.upstream.callback", skip_all, fields(provider_id = %id))]
pub async fn callback(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    match complete(&state, &jar, &id, CallbackParams::from_pairs(pairs)).await {
        Ok(session_id) => Redirect::to(&format!("/upstream/link/{session_id}")).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn complete(
    state: &AppState,
    jar: &PrivateCookieJar,
    id: &str,
    params: CallbackParams,
) -> Result<String, PageError> {
    let provider = enabled_provider(state, id).await?;
    let expired = || {
        tracing::warn!(provider_id = %provider.id, "upstream callback without a matching authorization session");
        PageError::bad_request(
            "This sign-in has expired or was started in another browser. Start again from the sign-in page.",
        )
    };
    let cookie_session = jar.get(UPSTREAM_COOKIE).map(|c| c.value().to_string()).ok_or_else(expired)?;
    let lookup = cookie_session.clone();
    let session = state
        .store
        .read(move |c| upstream_store::session_by_id(c, &lookup))
        .await?
        .filter(|s| s.provider_id == provider.id && s.completed_at.is_none())
        .ok_or_else(expired)?;
    if params.state.as_deref().map(|s| crate::crypto::constant_time_eq(s.as_bytes(), session.state.as_bytes()))
        != Some(true)
    {
        return Err(expired());
    }
    if let Some(error) = params.error {
        let e = UpstreamError::Refused(
            format!("{error} {}", params.error_description.unwrap_or_default()).trim().to_string(),
        );
        return Err(upstream_error(&provider.id, &e));
    }
    let code = params.code.ok_or_else(|| PageError::bad_request("The provider sent no authorization code."))?;
    let secret = client_secret(state, &provider)?;
    let (agent, cfg, st) = (state.http.clone(), provider.config.clone(), state.clone());
    let redirect = redirect_uri(state, &provider.id);
    let (nonce, verifier) = (session.nonce.clone(), session.code_challenge_verifier.clone());
    let outcome = tokio::task::spawn_blocking(move || -> Result<_, UpstreamError> {
        let meta = client::metadata(&agent, &cfg)?;
        let tokens = client::exchange_code(
            &agent,
            &cfg,
            &meta,
            secret.as_deref(),
            &st.keys,
            st.rng.as_ref(),
            &code,
            &redirect,
            verifier.as_deref(),
        )?;
        let id_claims = match (&tokens.id_token, cfg.has_openid()) {
            (Some(t), _) => Some(client::verify_id_token(&agent, &cfg, &meta, t, &nonce)?),
            (None, true) => return Err(UpstreamError::BadIdToken("the token response has no id_token".into())),
            (None, false) => None,
        };
        let userinfo =
            if cfg.fetch_userinfo { Some(client::userinfo(&agent, &meta, &tokens.access_token)?) } else { None };
        Ok((tokens.id_token, id_claims, userinfo))
    })
    .await
    .map_err(PageError::internal)?;
    let (id_token, id_claims, userinfo) = outcome.map_err(|e| upstream_error(&provider.id, &e))?;
    // Posted fields kept by `callback_post`, and any the provider put in the query.
    let mut extra = match session.extra_callback_parameters.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(m))) => m,
        _ => serde_json::Map::new(),
    };
    extra.extend(params.extra);
    let extra = Value::Object(extra);
    let context = claims_context(id_claims.as_ref(), userinfo.as_ref(), Some(&extra));
    let imports = &provider.config.claims_imports;
    let subject = render(imports.subject.template.as_deref().unwrap_or(crate::config::DEFAULT_SUBJECT), &context);
    if subject.is_empty() {
        let e = UpstreamError::BadIdToken("the subject claim is missing".into());
        return Err(upstream_error(&provider.id, &e));
    }
    let account_name = imports.account_name.template.as_deref().map(|t| render(t, &context)).filter(|s| !s.is_empty());
    let sid = id_claims.as_ref().and_then(|c| c.get("sid")).and_then(Value::as_str).map(String::from);
    let done = crate::lifecycle::upstream::record_callback(
        &state.store,
        crate::lifecycle::upstream::Callback {
            session_id: session.id.clone(),
            provider_id: provider.id.clone(),
            subject,
            account_name,
            id_token,
            id_token_claims: id_claims.map(|c| Value::Object(c).to_string()),
            userinfo: userinfo.map(|u| u.to_string()),
            sid,
            extra_callback_parameters: Some(extra.to_string()),
        },
        state.now(),
        state.rng.as_ref(),
    )
    .await?;
    tracing::info!(provider_id = %provider.id, link_id = %done, "upstream sign-in completed");
    Ok(session.id)
}

/// The template context: `id_token_claims`, `userinfo_claims`, `user` (the two merged,
/// userinfo winning) and `extra_callback_parameters` (what else came to the callback).
pub fn claims_context(
    id_claims: Option<&serde_json::Map<String, Value>>,
    userinfo: Option<&Value>,
    extra: Option<&Value>,
) -> Value {
    let mut user = id_claims.cloned().unwrap_or_default();
    if let Some(Value::Object(u)) = userinfo {
        for (k, v) in u {
            user.insert(k.clone(), v.clone());
        }
    }
    json!({
        "id_token_claims": id_claims.cloned().unwrap_or_default(),
        "userinfo_claims": userinfo.cloned().unwrap_or(json!({})),
        "user": user,
        "extra_callback_parameters": extra.cloned().unwrap_or(json!({})),
    })
}

/// Renders a (config-validated) template; an unparsable one renders empty.
pub fn render(template: &str, context: &Value) -> String {
    Template::parse(template, CLAIM_ROOTS).map(|t| t.render(context)).unwrap_or_default().trim().to_string()
}
