//! `/upstream/link/{session}`: after the provider, sign in with the linked account, offer to link
//! it to the signed-in user, or create an account from the imported claims; and unlinking from
//! the account page.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use super::{UPSTREAM_COOKIE, claims_context, enabled_provider, render};
use crate::config::{DEFAULT_DISPLAYNAME, DEFAULT_EMAIL, DEFAULT_LOCALPART, ImportAction, OnConflict};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::pages::context::{Browser, PageContext};
use crate::http::pages::error::{PageError, render as render_page};
use crate::http::pages::extract::CsrfForm;
use crate::http::pages::login::start_browser_session;
use crate::lifecycle::registration::RegistrationError;
use crate::lifecycle::upstream::Admission;
use crate::lifecycle::users::{NewUser, UserError};
use crate::model::upstream::{UpstreamLink, UpstreamProvider};
use crate::store::upstream::{self as upstream_store, AuthorizationSession};
use crate::store::users as user_store;

#[derive(Template)]
#[template(path = "pages/upstream_register.html")]
struct RegisterPage {
    ctx: PageContext,
    session_id: String,
    provider_name: String,
    account_name: Option<String>,
    username: String,
    username_locked: bool,
    display_name: Option<String>,
    display_name_forced: bool,
    email: Option<String>,
    email_forced: bool,
    token_required: bool,
    token_error: Option<String>,
    tos_accepted: bool,
    tos_error: Option<String>,
    form_error: Option<String>,
}

/// Why the register form is shown again, by field.
#[derive(Default)]
struct FormErrors {
    token: Option<String>,
    tos: Option<String>,
    form: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/upstream_suggest_link.html")]
struct SuggestLinkPage {
    ctx: PageContext,
    session_id: String,
    provider_name: String,
    account_name: Option<String>,
}

/// The completed, unused authorization session this browser holds, its link and provider.
async fn load(
    state: &AppState,
    browser: &Browser,
    session_id: &str,
) -> Result<(AuthorizationSession, UpstreamLink, UpstreamProvider), PageError> {
    let expired =
        || PageError::bad_request("This sign-in has expired or was already used. Start again from the sign-in page.");
    if browser.jar.get(UPSTREAM_COOKIE).map(|c| c.value().to_string()).as_deref() != Some(session_id) {
        return Err(expired());
    }
    let id = session_id.to_string();
    let found = state
        .store
        .read(move |c| {
            let Some(s) = upstream_store::session_by_id(c, &id)? else { return Ok(None) };
            let link = match &s.link_id {
                Some(l) => upstream_store::link_by_id(c, l)?,
                None => None,
            };
            Ok(link.map(|l| (s, l)))
        })
        .await?;
    let (session, link) = found.ok_or_else(expired)?;
    if session.completed_at.is_none() || session.consumed_at.is_some() {
        return Err(expired());
    }
    // An hour to finish the sign-in.
    if state.now() - session.created_at > 3600 {
        return Err(expired());
    }
    let provider = enabled_provider(state, &session.provider_id).await?;
    Ok((session, link, provider))
}

/// What the claims give for the new account.
struct Imports {
    localpart: Option<String>,
    display_name: Option<String>,
    email: Option<String>,
}

fn imports(session: &AuthorizationSession, provider: &UpstreamProvider) -> Imports {
    let parse = |s: &Option<String>| s.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok());
    let id_claims = parse(&session.id_token_claims).and_then(|v| v.as_object().cloned());
    let userinfo = parse(&session.userinfo);
    let extra = parse(&session.extra_callback_parameters);
    let ctx = claims_context(id_claims.as_ref(), userinfo.as_ref(), extra.as_ref());
    let c = &provider.config.claims_imports;
    let get = |action: ImportAction, t: &Option<String>, default: &str| {
        (action != ImportAction::Ignore)
            .then(|| render(t.as_deref().unwrap_or(default), &ctx))
            .filter(|s| !s.is_empty())
    };
    Imports {
        localpart: get(c.localpart.action, &c.localpart.template, DEFAULT_LOCALPART).map(|s| s.to_lowercase()),
        display_name: get(c.displayname.action, &c.displayname.template, DEFAULT_DISPLAYNAME),
        email: get(c.email.action, &c.email.template, DEFAULT_EMAIL),
    }
}

fn claim_missing(provider: &UpstreamProvider, what: &str) -> PageError {
    tracing::warn!(provider_id = %provider.id, claim = what, "upstream sign-in: a required claim is missing");
    PageError::new(
        StatusCode::BAD_REQUEST,
        "Your account at the sign-in provider lacks information",
        format!(
            "{} did not send the {what} this server requires for a new account. Ask the administrator of this server.",
            provider.config.display_name()
        ),
    )
    .with_details(format!("Provider {}", provider.id))
}

#[allow(clippy::too_many_arguments)] // the page's whole state; a struct would only rename them
fn register_page(
    state: &AppState,
    browser: &Browser,
    session: &AuthorizationSession,
    link: &UpstreamLink,
    provider: &UpstreamProvider,
    username: Option<String>,
    tos_accepted: bool,
    errors: FormErrors,
) -> Result<RegisterPage, PageError> {
    let i = imports(session, provider);
    let c = &provider.config.claims_imports;
    let hard = |a: ImportAction| matches!(a, ImportAction::Force | ImportAction::Require);
    for (action, value, what) in [
        (c.localpart.action, &i.localpart, "username"),
        (c.displayname.action, &i.display_name, "display name"),
        (c.email.action, &i.email, "email address"),
    ] {
        if action == ImportAction::Require && value.is_none() {
            return Err(claim_missing(provider, what));
        }
    }
    Ok(RegisterPage {
        ctx: browser.context(state),
        session_id: session.id.clone(),
        provider_name: provider.config.display_name(),
        account_name: link.human_account_name.clone(),
        username_locked: hard(c.localpart.action) && i.localpart.is_some(),
        username: username.or(i.localpart).unwrap_or_default(),
        display_name_forced: hard(c.displayname.action),
        display_name: i.display_name,
        email_forced: hard(c.email.action),
        email: i.email,
        token_required: provider.config.registration_token_required,
        token_error: errors.token,
        tos_accepted,
        tos_error: errors.tos,
        form_error: errors.form,
    })
}

#[tracing::instrument(name = "http.upstream.link.get", skip_all)]
pub async fn get(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(session_id): Path<String>,
) -> Response {
    let (session, link, provider) = match load(&state, &browser, &session_id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let current = browser.session.as_ref().map(|s| s.user.id.clone());
    match (current, link.user_id.clone()) {
        (Some(me), Some(owner)) if me == owner => sign_in(&state, browser, &headers, ip, &session, &owner).await,
        (Some(_), Some(_)) => {
            tracing::warn!(provider_id = %provider.id, "upstream account is linked to another user than the signed-in one");
            PageError::new(
                StatusCode::CONFLICT,
                "This account belongs to someone else",
                format!(
                    "Your {} account is linked to another user of this server. Sign out first to use it.",
                    provider.config.display_name()
                ),
            )
            .into_response()
        }
        (Some(_), None) => {
            let page = SuggestLinkPage {
                ctx: browser.context(&state),
                session_id: session.id.clone(),
                provider_name: provider.config.display_name(),
                account_name: link.human_account_name.clone(),
            };
            (browser.jar, render_page(&page)).into_response()
        }
        (None, Some(owner)) => sign_in(&state, browser, &headers, ip, &session, &owner).await,
        (None, None) => match conflict_or_page(&state, &browser, &session, &link, &provider).await {
            Ok(Some(owner)) => sign_in(&state, browser, &headers, ip, &session, &owner).await,
            Ok(None) => {
                match register_page(&state, &browser, &session, &link, &provider, None, false, FormErrors::default()) {
                    // `skip_confirmation`: nothing to ask, so no page — the account is created
                    // with what the provider sent (the register path's checks all still apply).
                    Ok(p) if skips_confirmation(&provider, &p) => {
                        tracing::info!(provider_id = %provider.id, "upstream sign-up without confirmation (skip_confirmation)");
                        let form = LinkForm::confirmed();
                        register(&state, browser, &headers, ip, &session, &link, &provider, form).await
                    }
                    Ok(p) => (browser.jar, render_page(&p)).into_response(),
                    Err(e) => e.into_response(),
                }
            }
            Err(e) => e.into_response(),
        },
    }
}

/// A forced/required localpart that already exists: `on_conflict` decides. Returns the user to
/// sign in when the link was attached to them.
async fn conflict_or_page(
    state: &AppState,
    _browser: &Browser,
    session: &AuthorizationSession,
    link: &UpstreamLink,
    provider: &UpstreamProvider,
) -> Result<Option<String>, PageError> {
    let c = &provider.config.claims_imports;
    if !matches!(c.localpart.action, ImportAction::Force | ImportAction::Require) {
        return Ok(None);
    }
    let Some(localpart) = imports(session, provider).localpart else { return Ok(None) };
    let name = localpart.clone();
    let Some(existing) = state.store.read(move |c| user_store::by_username(c, &name)).await? else {
        return Ok(None);
    };
    let (provider_id, user_id, link_id, mode) =
        (provider.id.clone(), existing.id.clone(), link.id.clone(), c.localpart.on_conflict);
    let attached = match mode {
        OnConflict::Fail => false,
        _ => {
            state
                .store
                .write(move |c| {
                    let others: Vec<_> = upstream_store::links_of_user(c, &user_id)?
                        .into_iter()
                        .filter(|l| l.provider_id == provider_id && l.id != link_id)
                        .collect();
                    match mode {
                        OnConflict::Set if !others.is_empty() => return Ok(false),
                        OnConflict::Replace => {
                            for l in &others {
                                upstream_store::delete_link(c, &l.id)?;
                            }
                        }
                        _ => {}
                    }
                    crate::lifecycle::upstream::attach(c, &link_id, &user_id)
                })
                .await?
        }
    };
    if attached {
        tracing::info!(provider_id = %provider.id, on_conflict = ?mode, "upstream account attached to an existing user by its localpart");
        return Ok(Some(existing.id));
    }
    tracing::warn!(provider_id = %provider.id, "upstream sign-in: the imported username is taken");
    Err(PageError::new(
        StatusCode::CONFLICT,
        "This username is already taken",
        format!(
            "{} gives you the username {localpart}, but an account with that name already exists here. Ask the administrator of this server.",
            provider.config.display_name()
        ),
    )
    .with_details(format!("Provider {}", provider.id)))
}

/// Signs the link's user in on this browser, marks the authorization session used, continues.
async fn sign_in(
    state: &AppState,
    browser: Browser,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    session: &AuthorizationSession,
    user_id: &str,
) -> Response {
    let id = user_id.to_string();
    let user = match state.store.read(move |c| user_store::by_id(c, &id)).await {
        Ok(Some(u)) => u,
        Ok(None) => return PageError::not_found("This account no longer exists.").into_response(),
        Err(e) => return PageError::internal(e).into_response(),
    };
    if !user.is_valid() {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "This account is locked",
            "Contact the administrator of this server.",
        )
        .into_response();
    }
    // A second factor the user set up is asked for after a provider too (issue 16).
    match crate::http::pages::mfa::needs_second_step(state, &user).await {
        Ok(true) => {
            let (next, sid) = (session.next.as_deref(), Some(session.id.as_str()));
            return crate::http::pages::mfa::start_second_step_after_upstream(state, browser, &user, next, sid);
        }
        Ok(false) => {}
        Err(e) => return e.into_response(),
    }
    let user_agent = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(String::from);
    let existing = browser.session.as_ref().map(|s| s.id.clone());
    let browser_session = match start_browser_session(state, &user, existing, user_agent, ip.to_string()).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (sid, bs, now) = (session.id.clone(), browser_session.clone(), state.now());
    if let Err(e) = state.store.write(move |c| upstream_store::consume_session(c, &sid, &bs, now)).await {
        return PageError::internal(e).into_response();
    }
    let next = session.next.clone().unwrap_or_else(|| "/account/".into());
    (browser.with_session(state, &browser_session), Redirect::to(&next)).into_response()
}

/// MAS's `skip_confirmation`, when the page would ask nothing: the username is imported (the
/// config makes it `require`d), no registration token and no terms of service to accept.
fn skips_confirmation(provider: &UpstreamProvider, page: &RegisterPage) -> bool {
    provider.config.claims_imports.skip_confirmation
        && page.username_locked
        && !page.token_required
        && page.ctx.tos_uri.is_none()
}

#[derive(Deserialize)]
pub struct LinkForm {
    action: String,
    username: Option<String>,
    import_display_name: Option<String>,
    import_email: Option<String>,
    token: Option<String>,
    tos: Option<String>,
}

impl LinkForm {
    /// The register form as if confirmed unchanged (forced and required imports only).
    fn confirmed() -> Self {
        LinkForm {
            action: "register".into(),
            username: None,
            import_display_name: None,
            import_email: None,
            token: None,
            tos: None,
        }
    }
}

#[tracing::instrument(name = "http.upstream.link.post", skip_all)]
pub async fn post(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(session_id): Path<String>,
    CsrfForm(form): CsrfForm<LinkForm>,
) -> Response {
    let (session, link, provider) = match load(&state, &browser, &session_id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    match (form.action.as_str(), &browser.session, &link.user_id) {
        ("link", Some(me), None) => {
            let (link_id, user_id) = (link.id.clone(), me.user.id.clone());
            match state.store.write(move |c| crate::lifecycle::upstream::attach(c, &link_id, &user_id)).await {
                Ok(true) => {
                    tracing::info!(provider_id = %provider.id, "upstream account linked from the account page");
                    let owner = me.user.id.clone();
                    sign_in(&state, browser, &headers, ip, &session, &owner).await
                }
                Ok(false) => PageError::bad_request("This account was linked meanwhile.").into_response(),
                Err(e) => PageError::internal(e).into_response(),
            }
        }
        ("register", None, None) => register(&state, browser, &headers, ip, &session, &link, &provider, form).await,
        _ => PageError::bad_request("This sign-in has changed meanwhile. Start again from the sign-in page.")
            .into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn register(
    state: &AppState,
    browser: Browser,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    session: &AuthorizationSession,
    link: &UpstreamLink,
    provider: &UpstreamProvider,
    form: LinkForm,
) -> Response {
    let c = &provider.config.claims_imports;
    let i = imports(session, provider);
    let hard = |a: ImportAction| matches!(a, ImportAction::Force | ImportAction::Require);
    let username = match (hard(c.localpart.action), &i.localpart) {
        (true, Some(l)) => l.clone(),
        _ => form.username.clone().unwrap_or_default().trim().to_lowercase(),
    };
    let pick = |action: ImportAction, value: &Option<String>, ticked: bool| match action {
        ImportAction::Force | ImportAction::Require => value.clone(),
        ImportAction::Suggest if ticked => value.clone(),
        _ => None,
    };
    let display_name = pick(c.displayname.action, &i.display_name, form.import_display_name.is_some());
    let email = pick(c.email.action, &i.email, form.import_email.is_some());
    let tos_accepted = form.tos.is_some();
    let again = |browser: Browser, errors: FormErrors| match register_page(
        state,
        &browser,
        session,
        link,
        provider,
        Some(username.clone()),
        tos_accepted,
        errors,
    ) {
        Ok(p) => (StatusCode::BAD_REQUEST, browser.jar, render_page(&p)).into_response(),
        Err(e) => e.into_response(),
    };
    let form_error = |message: String| FormErrors { form: Some(message), ..FormErrors::default() };
    // The terms of service, when the server has them, are accepted on this page.
    let terms = browser.context(state).tos_uri;
    if terms.is_some() && !tos_accepted {
        let errors =
            FormErrors { tos: Some("Accept the terms of service to create an account.".into()), ..Default::default() };
        return again(browser, errors);
    }
    let token = match provider.config.registration_token_required {
        false => None,
        true => {
            let token = form.token.clone().unwrap_or_default().trim().to_string();
            if let Err(e) = crate::lifecycle::registration::check_token(&state.store, &token, state.now()).await {
                let message = match e {
                    RegistrationError::Token(problem) => problem.message().to_string(),
                    other => other.to_string(),
                };
                return again(browser, FormErrors { token: Some(message), ..Default::default() });
            }
            Some(token)
        }
    };
    if let Err(e) = crate::lifecycle::users::check_available(&state.lifecycle, &username).await {
        let message = match e {
            UserError::Taken | UserError::HomeserverRefused(_) => {
                "This username is taken. Choose another one.".to_string()
            }
            other => other.to_string(),
        };
        return again(browser, form_error(message));
    }
    let new = NewUser {
        username: username.clone(),
        password: None,
        emails: email.into_iter().collect(),
        display_name,
        admin: false,
    };
    let admission = Admission { token, accepted_terms: terms };
    match crate::lifecycle::upstream::register(&state.lifecycle, new, &link.id, admission).await {
        Ok(user) => {
            tracing::info!(provider_id = %provider.id, user = %user.username, "account created through an upstream provider");
            sign_in(state, browser, headers, ip, session, &user.id).await
        }
        Err(RegistrationError::User(UserError::Taken)) => {
            again(browser, form_error("This username is taken. Choose another one.".into()))
        }
        Err(RegistrationError::Token(problem)) => {
            again(browser, FormErrors { token: Some(problem.message().into()), ..Default::default() })
        }
        Err(e) => PageError::internal(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct UnlinkForm {
    link_id: String,
}

/// Removes one of the signed-in user's upstream links.
pub async fn unlink_post(
    State(state): State<AppState>,
    browser: Browser,
    CsrfForm(form): CsrfForm<UnlinkForm>,
) -> Response {
    let Some(s) = &browser.session else {
        return Redirect::to(&crate::http::pages::login::login_url("/account/")).into_response();
    };
    match crate::lifecycle::upstream::unlink(&state.store, &s.user.id, &form.link_id).await {
        Ok(_) => Redirect::to("/account/?notice=upstream_unlinked").into_response(),
        Err(e) => PageError::internal(e).into_response(),
    }
}
