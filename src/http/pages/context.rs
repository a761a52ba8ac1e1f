//! What every page gets: branding, asset URLs, the CSRF token and the signed-in user; plus the
//! session and CSRF cookies behind them.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum_extra::extract::PrivateCookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

use super::error::PageError;
use crate::crypto::b64url;
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::model::User;
use crate::store::{sessions as session_store, users as user_store};

pub const SESSION_COOKIE: &str = "appliance-session";
pub const CSRF_COOKIE: &str = "appliance-csrf";

#[derive(Clone)]
pub struct CurrentUser {
    pub username: String,
    pub mxid: String,
    pub display_name: Option<String>,
}

pub struct PageContext {
    pub service_name: String,
    pub css_url: String,
    pub js_url: String,
    pub logo_url: String,
    pub favicon_url: String,
    pub csrf_token: String,
    pub user: Option<CurrentUser>,
    pub tos_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub imprint: Option<String>,
    pub server_name: String,
    /// The request's language (`ctx.t("key")` in templates: src/i18n/page.rs).
    pub locale: crate::i18n::Locale,
}

pub struct ScopeView {
    pub title: String,
    pub description: String,
    pub sensitive: bool,
}

/// The signed-in browser session, if any (cookie → active session → valid user).
#[derive(Clone)]
pub struct Session {
    pub id: String,
    pub user: User,
    pub authenticated_at: i64,
}

/// Cookies, the browser session and the CSRF token of a page request.
pub struct Browser {
    pub jar: PrivateCookieJar,
    pub session: Option<Session>,
    pub csrf: String,
}

/// A private cookie with the site's attributes: HttpOnly, SameSite=Lax, Secure on https, Path=/.
pub(crate) fn cookie(state: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    let mut c = Cookie::new(name, value);
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_secure(state.config.http.is_https());
    c.set_path("/");
    c
}

impl FromRequestParts<AppState> for Browser {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let jar = PrivateCookieJar::<axum_extra::extract::cookie::Key>::from_request_parts(parts, state)
            .await
            .map_err(|_| PageError::internal("cookie jar"))?;
        refuse_cross_site(parts)?;
        let (jar, csrf) = match jar.get(CSRF_COOKIE) {
            Some(c) if c.value().len() >= 32 => {
                let v = c.value().to_string();
                (jar, v)
            }
            _ => {
                let token = b64url(&state.rng.bytes::<32>());
                (jar.add(cookie(state, CSRF_COOKIE, token.clone())), token)
            }
        };
        let session = match jar.get(SESSION_COOKIE) {
            Some(c) => load_session(state, c.value()).await?,
            None => None,
        };
        if let Some(s) = &session {
            // Only a map insert: written to the database by the activity tracker's next flush.
            let ip = ClientIp::from_request_parts(parts, state).await.ok().map(|c| c.0);
            state.lifecycle.activity().record_browser(&s.id, ip);
        }
        Ok(Browser { jar, session, csrf })
    }
}

/// Second line of defence behind the CSRF token: refuse cross-site form posts.
pub(super) fn refuse_cross_site(parts: &Parts) -> Result<(), PageError> {
    if parts.method == Method::POST && is_cross_site(&parts.headers) {
        return Err(PageError::bad_request("This form was sent from another site and was refused."));
    }
    Ok(())
}

fn is_cross_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site")
}

async fn load_session(state: &AppState, id: &str) -> Result<Option<Session>, PageError> {
    let id = id.to_string();
    let oldest = state.now() - state.config.experimental.browser_session_ttl;
    let found = state
        .store
        .read(move |c| {
            let Some(s) = session_store::browser_by_id(c, &id)? else {
                return Ok(None);
            };
            // Ended, or signed in too long ago: the password is asked again.
            if s.finished_at.is_some() || s.authenticated_at < oldest {
                return Ok(None);
            }
            Ok(user_store::by_id(c, &s.user_id)?.map(|u| (s, u)))
        })
        .await
        .map_err(PageError::internal)?;
    Ok(found.filter(|(_, u)| u.is_valid()).map(|(s, user)| Session {
        id: s.id,
        user,
        authenticated_at: s.authenticated_at,
    }))
}

impl Browser {
    pub fn with_session(self, state: &AppState, session_id: &str) -> PrivateCookieJar {
        self.jar.add(cookie(state, SESSION_COOKIE, session_id.to_string()))
    }

    pub fn without_session(self) -> PrivateCookieJar {
        self.jar.remove(Cookie::build(SESSION_COOKIE).path("/"))
    }

    pub fn context(&self, state: &AppState) -> PageContext {
        page_context(state, self.csrf.clone(), self.session.as_ref().map(|s| &s.user))
    }
}

pub fn page_context(state: &AppState, csrf_token: String, user: Option<&User>) -> PageContext {
    let b = &state.config.branding;
    PageContext {
        service_name: b.service_name.clone().unwrap_or_else(|| format!("{} accounts", state.config.matrix.homeserver)),
        css_url: state.assets.path("app.css"),
        js_url: state.assets.path("app.js"),
        logo_url: state.assets.logo_path(),
        favicon_url: state.assets.path("favicon.svg"),
        csrf_token,
        user: user.map(|u| CurrentUser {
            username: u.username.clone(),
            mxid: state.config.matrix.mxid(&u.username),
            display_name: u.display_name.clone(),
        }),
        tos_uri: b.tos_uri.as_ref().map(|u| u.to_string()),
        policy_uri: b.policy_uri.as_ref().map(|u| u.to_string()),
        imprint: b.imprint.clone(),
        server_name: state.config.matrix.homeserver.clone(),
        locale: crate::i18n::current(),
    }
}

/// What each scope allows, in plain words, for consent pages.
pub fn describe_scopes(scope: &crate::model::Scope) -> Vec<ScopeView> {
    use crate::model::scope::{self, EMAIL, MAS_ADMIN, OPENID, SYNAPSE_ADMIN};
    let mut out = Vec::new();
    let mut push = |title: &str, description: &str, sensitive: bool| {
        if !out.iter().any(|s: &ScopeView| s.title == title) {
            out.push(ScopeView { title: title.into(), description: description.into(), sensitive });
        }
    };
    for token in scope.iter() {
        match token {
            OPENID => push("See your profile", "Your Matrix ID and the account identifier of this service.", false),
            EMAIL => push("See your email address", "The verified email addresses on your account.", false),
            SYNAPSE_ADMIN => push(
                "Administer the homeserver",
                "Full administrative control of the homeserver: manage every user, room and device. Only allow this for tools you trust completely.",
                true,
            ),
            MAS_ADMIN => push(
                "Administer accounts",
                "Manage every account of this service: create, lock and deactivate users and end their sessions.",
                true,
            ),
            t if t == scope::MATRIX_API || t == scope::MATRIX_API_UNSTABLE => push(
                "Use your account for chat",
                "Read and send messages, join and leave rooms, and manage your contacts and settings, as any Matrix app can.",
                false,
            ),
            t if scope::device_id_of(t).is_some() => {}
            other => push(other, "A permission this service does not describe.", false),
        }
    }
    out
}

/// `?notice=…`: which confirmation a page shows after a redirect.
#[derive(serde::Deserialize, Default)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}
