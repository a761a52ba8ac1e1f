//! Sessions: every active OAuth, compat and browser session of the user; view one, end one.
//! Ending an app session also deletes its device in the homeserver (device sync).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{SESSIONS_URL, ToSessions, describe_user_agent, error_page, human_time, iso_time, relative_time};
use crate::http::AppState;
use crate::http::pages::context::{Browser, PageContext};
use crate::http::pages::error::{PageError, render};
use crate::http::pages::extract::SignedIn;
use crate::model::Scope;
use crate::store::personal::{self as personal_store, PersonalFilter};
use crate::store::sessions::{SessionActivity, SessionKind};
use crate::store::{clients as client_store, compat as compat_store, sessions as session_store};

/// One session as the pages show it.
pub struct SessionView {
    /// `oauth`, `compat` or `browser`: what `POST /account/sessions/end` takes.
    pub kind: &'static str,
    pub id: String,
    /// Client name, device name or browser.
    pub title: String,
    /// `App`, `Legacy sign-in` or `Browser`.
    pub kind_label: &'static str,
    pub device_id: Option<String>,
    pub client_uri: Option<String>,
    pub created: String,
    pub created_iso: String,
    pub created_ago: String,
    pub last_active: Option<String>,
    pub last_active_iso: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub current: bool,
}

impl SessionView {
    pub fn view_url(&self) -> Option<String> {
        self.device_id.as_ref().map(|d| {
            format!(
                "/account/?action=org.matrix.device_view&device_id={}",
                url::form_urlencoded::byte_serialize(d.as_bytes()).collect::<String>()
            )
        })
    }
}

#[derive(Template)]
#[template(path = "pages/account_sessions.html")]
struct SessionsPage {
    ctx: PageContext,
    notice: Option<&'static str>,
    apps: Vec<SessionView>,
    browsers: Vec<SessionView>,
}

#[derive(Template)]
#[template(path = "pages/account_session.html")]
struct SessionPage {
    ctx: PageContext,
    session: SessionView,
    /// The `device_delete` confirmation rather than the plain view.
    confirm: bool,
}

fn base_view(now: i64, kind: &'static str, id: String, created_at: i64, activity: SessionActivity) -> SessionView {
    let last = activity.last_active_at.filter(|t| *t > created_at);
    SessionView {
        kind,
        id,
        title: String::new(),
        kind_label: match kind {
            "oauth" => "App",
            "compat" => "Legacy sign-in",
            "personal" => "Personal access token",
            _ => "Browser",
        },
        device_id: None,
        client_uri: None,
        created: human_time(created_at),
        created_iso: iso_time(created_at),
        created_ago: relative_time(created_at, now),
        last_active: last.map(|t| relative_time(t, now)),
        last_active_iso: last.map(iso_time),
        user_agent: activity.user_agent,
        ip: activity.last_active_ip,
        current: false,
    }
}

/// Every active session of a user: (apps, browsers), newest first.
async fn load(
    state: &AppState,
    user_id: &str,
    current_browser: Option<&str>,
) -> Result<(Vec<SessionView>, Vec<SessionView>), PageError> {
    let id = user_id.to_string();
    let (oauth, compat, browsers, personal) = state
        .store
        .read(move |c| {
            let mut oauth = Vec::new();
            for (s, a) in session_store::active_oauth_with_activity(c, &id)? {
                let client = client_store::by_id(c, &s.client_id)?;
                oauth.push((s, a, client));
            }
            let compat = compat_store::active_with_activity(c, &id)?;
            let browsers = session_store::active_browser_with_activity(c, &id)?;
            // Tokens that act as this user (bots, admin tools), whoever issued them.
            let acting = PersonalFilter { actor_user_id: Some(id.clone()), active: Some(true), ..Default::default() };
            let personal = personal_store::all(c, &acting)?;
            Ok((oauth, compat, browsers, personal))
        })
        .await?;
    let now = state.now();
    let mut apps = Vec::new();
    for (s, a, client) in oauth {
        let a = state.lifecycle.activity().merged(SessionKind::OAuth2, &s.id, a);
        let mut v = base_view(now, "oauth", s.id.clone(), s.created_at, a);
        v.title = client.as_ref().map(|c| c.display_name().to_string()).unwrap_or_else(|| s.client_id.clone());
        v.client_uri = client.and_then(|c| c.metadata.client_uri.clone());
        v.device_id = Scope::parse(&s.scope).ok().and_then(|sc| sc.device_id().map(String::from));
        apps.push((s.created_at, v));
    }
    for (s, a) in compat {
        let a = state.lifecycle.activity().merged(SessionKind::Compat, &s.id, a);
        let mut v = base_view(now, "compat", s.id.clone(), s.created_at, a);
        v.title = s.human_name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "Matrix client".into());
        v.device_id = s.device_id.clone();
        apps.push((s.created_at, v));
    }
    for d in personal {
        let a = state.lifecycle.activity().merged(SessionKind::Personal, &d.session.id, d.activity);
        let mut v = base_view(now, "personal", d.session.id.clone(), d.session.created_at, a);
        v.title = d.session.human_name.clone();
        v.device_id = d.session.device_id();
        apps.push((d.session.created_at, v));
    }
    apps.sort_by_key(|a| std::cmp::Reverse(a.0));
    let mut browser_views = Vec::new();
    for (s, a) in browsers {
        let a = state.lifecycle.activity().merged(SessionKind::Browser, &s.id, a);
        let title = a.user_agent.as_deref().and_then(describe_user_agent).unwrap_or_else(|| "Web browser".into());
        let mut v = base_view(now, "browser", s.id.clone(), s.created_at, a);
        v.title = title;
        v.current = current_browser == Some(s.id.as_str());
        browser_views.push(v);
    }
    // The current browser first.
    browser_views.sort_by_key(|v| !v.current);
    Ok((apps.into_iter().map(|(_, v)| v).collect(), browser_views))
}

pub(super) async fn list(state: &AppState, browser: Browser, notice: Option<&'static str>) -> Response {
    let Some(session) = &browser.session else { return Redirect::to("/login").into_response() };
    match load(state, &session.user.id, Some(&session.id)).await {
        Ok((apps, browsers)) => {
            let page = SessionsPage { ctx: browser.context(state), notice, apps, browsers };
            (browser.jar, render(&page)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `device_view` / `device_delete`: one app session, found by its device id.
pub(super) async fn view(state: &AppState, browser: Browser, device_id: &str, confirm: bool) -> Response {
    let Some(session) = &browser.session else { return Redirect::to("/login").into_response() };
    let apps = match load(state, &session.user.id, Some(&session.id)).await {
        Ok((apps, _)) => apps,
        Err(e) => return e.into_response(),
    };
    match apps.into_iter().find(|v| v.device_id.as_deref() == Some(device_id)) {
        Some(found) => {
            let page = SessionPage { ctx: browser.context(state), session: found, confirm };
            (browser.jar, render(&page)).into_response()
        }
        None => error_page(
            state,
            browser,
            StatusCode::NOT_FOUND,
            "Session not found",
            "There is no active session for this device. It may have been signed out already.",
            SESSIONS_URL,
        ),
    }
}

#[derive(Deserialize)]
pub struct EndForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    id: String,
}

/// `POST /account/sessions/end`: ends one of the user's own sessions.
#[tracing::instrument(name = "http.pages.account.end_session", skip_all)]
pub async fn end_post(
    State(state): State<AppState>,
    SignedIn { browser, session, form, .. }: SignedIn<ToSessions, EndForm>,
) -> Response {
    let (user_id, id) = (session.user.id.clone(), form.id.clone());
    // Only the user's own, still active sessions.
    let owned = {
        let (user_id, id) = (user_id.clone(), id.clone());
        let kind = form.kind.clone();
        state
            .store
            .read(move |c| {
                Ok(match kind.as_str() {
                    "oauth" => session_store::oauth_by_id(c, &id)?
                        .is_some_and(|s| s.user_id.as_deref() == Some(&user_id) && s.finished_at.is_none()),
                    "compat" => compat_store::session_by_id(c, &id)?
                        .is_some_and(|s| s.user_id == user_id && s.finished_at.is_none()),
                    "browser" => session_store::browser_by_id(c, &id)?
                        .is_some_and(|s| s.user_id == user_id && s.finished_at.is_none()),
                    "personal" => personal_store::session_by_id(c, &id)?
                        .is_some_and(|s| s.actor_user_id == user_id && s.revoked_at.is_none()),
                    _ => false,
                })
            })
            .await
    };
    match owned {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                &state,
                browser,
                StatusCode::NOT_FOUND,
                "Session not found",
                "This session does not exist or has already ended.",
                SESSIONS_URL,
            );
        }
        Err(e) => return PageError::internal(e).into_response(),
    }
    let kind = match form.kind.as_str() {
        "oauth" => SessionKind::OAuth2,
        "compat" => SessionKind::Compat,
        "personal" => SessionKind::Personal,
        _ => SessionKind::Browser,
    };
    // The same step as /oauth2/revoke, compat /logout and the admin API: the device goes too.
    use crate::lifecycle::sessions::{Ending, end_session};
    if let Err(e) = end_session(&state.lifecycle, Ending::One(kind, &id)).await {
        return PageError::internal(e).into_response();
    }
    if kind == SessionKind::Browser && id == session.id {
        // Ending this very browser session is signing out.
        return (browser.without_session(), Redirect::to("/login")).into_response();
    }
    (browser.jar, Redirect::to(&format!("{SESSIONS_URL}&notice=session_ended"))).into_response()
}
