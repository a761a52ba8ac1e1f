//! The profile page: display name (pushed to the homeserver), email addresses, password change.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::recheck::{FactorAsk, PasswordCheck, confirm_identity, factor_ask};
use super::{Reauth, ToProfile, has_password, new_password_problem};
use crate::http::AppState;
use crate::http::pages::context::{Browser, PageContext};
use crate::http::pages::error::{PageError, render};
use crate::http::pages::extract::SignedIn;
use crate::lifecycle::users as user_lifecycle;
use crate::model::User;
use crate::store::personal::{self as personal_store, PersonalFilter};
use crate::store::{sessions as session_store, users as user_store};

#[derive(Default)]
struct PasswordErrors {
    form: Option<String>,
    current: Option<String>,
    new: Option<String>,
    confirm: Option<String>,
    /// The second factor's code.
    code: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/account.html")]
struct ProfilePage {
    ctx: PageContext,
    notice: Option<&'static str>,
    display_name: String,
    display_name_error: Option<String>,
    display_name_allowed: bool,
    emails: Vec<String>,
    password_allowed: bool,
    pw: PasswordErrors,
    /// What the password form asks beyond the current password.
    factor: FactorAsk,
    deactivation_allowed: bool,
    session_count: usize,
    /// Linked upstream accounts: (link id, provider name, account name).
    upstream_links: Vec<(String, String, String)>,
    /// Providers the user has no link with yet: (authorize URL, name).
    upstream_available: Vec<(String, String)>,
}

async fn build(
    state: &AppState,
    browser: &Browser,
    user: &User,
    notice: Option<&'static str>,
) -> Result<ProfilePage, PageError> {
    let user_id = user.id.clone();
    let (emails, session_count, links) = state
        .store
        .read(move |c| {
            let links = crate::store::upstream::links_of_user(c, &user_id)?;
            let emails = user_store::emails(c, &user_id)?;
            let count = session_store::active_oauth_for_user(c, &user_id)?.len()
                + crate::store::compat::active_for_user(c, &user_id)?.len()
                + session_store::active_browser_with_activity(c, &user_id)?.len()
                + personal_store::count(
                    c,
                    &PersonalFilter { actor_user_id: Some(user_id.clone()), active: Some(true), ..Default::default() },
                )?;
            Ok((emails, count, links))
        })
        .await?;
    let providers: Vec<_> = state.config.upstream_oauth2.enabled().collect();
    let name_of = |id: &str| {
        providers.iter().find(|p| p.id.eq_ignore_ascii_case(id)).map(|p| p.display_name()).unwrap_or_else(|| id.into())
    };
    let upstream_links = links
        .iter()
        .map(|l| {
            (l.id.clone(), name_of(&l.provider_id), l.human_account_name.clone().unwrap_or_else(|| l.subject.clone()))
        })
        .collect();
    let upstream_available = providers
        .iter()
        .filter(|p| !links.iter().any(|l| l.provider_id.eq_ignore_ascii_case(&p.id)))
        .map(|p| (format!("/upstream/authorize/{}?next=%2Faccount%2F", p.id.to_uppercase()), p.display_name()))
        .collect();
    let account = &state.config.account;
    let factor = match &browser.session {
        Some(session) => factor_ask(state, browser, session).await?,
        None => FactorAsk::default(),
    };
    Ok(ProfilePage {
        ctx: browser.context(state),
        notice,
        display_name: user.display_name.clone().unwrap_or_default(),
        display_name_error: None,
        display_name_allowed: account.displayname_change_allowed,
        emails,
        password_allowed: account.password_change_allowed && has_password(state, &user.id).await?,
        pw: PasswordErrors::default(),
        factor,
        deactivation_allowed: account.account_deactivation_allowed,
        session_count,
        upstream_links,
        upstream_available,
    })
}

pub(super) async fn page(state: &AppState, browser: Browser, notice: Option<&'static str>) -> Response {
    let Some(session) = &browser.session else { return Redirect::to("/login").into_response() };
    match build(state, &browser, &session.user, notice).await {
        Ok(p) => (browser.jar, render(&p)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    display_name: String,
}

/// `POST /account/profile`: stores the display name and pushes it to the homeserver at once;
/// when the homeserver cannot take it, a provisioning job carries it over later.
#[tracing::instrument(name = "http.pages.account.profile", skip_all)]
pub async fn profile_post(
    State(state): State<AppState>,
    SignedIn { browser, session, form, .. }: SignedIn<ToProfile, ProfileForm>,
) -> Response {
    if !state.config.account.displayname_change_allowed {
        return PageError::new(StatusCode::FORBIDDEN, "Not allowed", "Display names cannot be changed on this server.")
            .into_response();
    }
    let name = form.display_name.trim().to_string();
    if let Some(problem) = user_lifecycle::display_name_problem(&name) {
        let mut p = match build(&state, &browser, &session.user, None).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        p.display_name = form.display_name.clone();
        p.display_name_error = Some(problem);
        return (StatusCode::BAD_REQUEST, browser.jar, render(&p)).into_response();
    }
    let name = Some(name).filter(|n| !n.is_empty());
    if let Err(e) = user_lifecycle::set_display_name(&state.lifecycle, &session.user, name).await {
        return PageError::internal(e).into_response();
    }
    (browser.jar, Redirect::to("/account/?notice=profile_saved")).into_response()
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
    /// A TOTP or recovery code, for a user with a second factor.
    #[serde(default)]
    code: String,
}

/// `POST /account/password`: the current password, then the new one twice.
#[tracing::instrument(name = "http.pages.account.password", skip_all)]
pub async fn password_post(
    State(state): State<AppState>,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToProfile, PasswordForm>,
) -> Response {
    if !state.config.passwords.enabled || !state.config.account.password_change_allowed {
        return PageError::new(StatusCode::FORBIDDEN, "Not allowed", "Passwords cannot be changed on this server.")
            .into_response();
    }
    let fail = |browser: Browser, status: StatusCode, errors: PasswordErrors| {
        let state = state.clone();
        let user = session.user.clone();
        async move {
            match build(&state, &browser, &user, None).await {
                Ok(mut p) => {
                    p.pw = errors;
                    (status, browser.jar, render(&p)).into_response()
                }
                Err(e) => e.into_response(),
            }
        }
    };
    // Cheap checks first, so a typo in the new password does not cost a password attempt.
    if let Some(problem) = new_password_problem(&state, &session.user, &form.new_password) {
        let errors = PasswordErrors { new: Some(problem), ..Default::default() };
        return fail(browser, StatusCode::BAD_REQUEST, errors).await;
    }
    if form.new_password != form.new_password_confirm {
        let errors = PasswordErrors { confirm: Some("The passwords do not match.".into()), ..Default::default() };
        return fail(browser, StatusCode::BAD_REQUEST, errors).await;
    }
    let check = PasswordCheck::Always(&form.current_password);
    if let Err(why) = confirm_identity(&state, &mut browser, &session, check, &form.code).await {
        let status = why.status();
        if let Reauth::Internal(e) = why {
            return e.into_response();
        }
        let e = why.errors();
        let errors = PasswordErrors { current: e.password, code: e.code, form: e.form, ..Default::default() };
        return fail(browser, status, errors).await;
    }
    let (version, hash) = match state.passwords.hash(form.new_password.clone()).await {
        Ok(v) => v,
        Err(e) => return PageError::internal(e).into_response(),
    };
    let (user_id, now, id) = (session.user.id.clone(), state.now(), state.rng.id(state.clock.as_ref()));
    if let Err(e) = state.store.write(move |c| user_store::set_password(c, &id, &user_id, &hash, version, now)).await {
        return PageError::internal(e).into_response();
    }
    (browser.jar, Redirect::to("/account/?notice=password_changed")).into_response()
}
