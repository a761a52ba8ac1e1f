//! `/account`: the signed-in user's own account: profile (display name, emails, password),
//! sessions (OAuth, compat and browser; view and end), cross-signing reset and deactivation.
//!
//! Matrix clients deep-link with `?action=…&device_id=…` (MSC4191, plus the unstable
//! `org.matrix.sessions_list|session_view|session_end` names). Every form posts to its own path
//! under `/account/` and redirects back with a fixed `notice=` on success (post/redirect/get).

pub mod emails;
pub mod mfa;
pub mod passkeys;
mod profile;
pub mod recheck;
mod security;
mod sessions;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::context::{Browser, Session};
use super::error::{ErrorPage, PageError, render};
use super::extract::ReturnTo;
use super::login::{LoginFailure, login_url, verify_password};
use crate::clock::civil_from_days;
use crate::http::AppState;

pub use profile::{password_post, profile_post};
pub use security::{cross_signing_reset_post, deactivate_post};
pub use sessions::end_post;

/// The sessions list, as linked from every account page.
pub const SESSIONS_URL: &str = "/account/?action=org.matrix.sessions_list";

/// What `?action=` asks for.
#[derive(Debug, PartialEq)]
enum Action {
    Profile,
    SessionsList,
    SessionView(String),
    SessionEnd(String),
    CrossSigningReset,
    Deactivate,
}

#[derive(Debug, Default)]
struct AccountQuery {
    action: Option<String>,
    device_id: Option<String>,
    notice: Option<String>,
}

fn parse_query(raw: Option<&str>) -> AccountQuery {
    let mut q = AccountQuery::default();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let v = Some(v.into_owned()).filter(|v| !v.is_empty());
        match k.as_ref() {
            "action" => q.action = v,
            "device_id" => q.device_id = v,
            "notice" => q.notice = v,
            _ => {}
        }
    }
    q
}

impl Action {
    /// Unknown actions, and device actions without a device, fall back to a sensible page.
    fn of(q: &AccountQuery) -> Action {
        let device = q.device_id.clone();
        match (q.action.as_deref().unwrap_or_default(), device) {
            ("org.matrix.devices_list" | "org.matrix.sessions_list", _) => Action::SessionsList,
            ("org.matrix.device_view" | "org.matrix.session_view", Some(d)) => Action::SessionView(d),
            ("org.matrix.device_delete" | "org.matrix.session_end", Some(d)) => Action::SessionEnd(d),
            (
                "org.matrix.device_view"
                | "org.matrix.session_view"
                | "org.matrix.device_delete"
                | "org.matrix.session_end",
                None,
            ) => Action::SessionsList,
            ("org.matrix.cross_signing_reset", _) => Action::CrossSigningReset,
            ("org.matrix.account_deactivate", _) => Action::Deactivate,
            _ => Action::Profile,
        }
    }
}

/// A success message shown after a redirect; only fixed texts, never text from the query.
fn notice_text(notice: Option<&str>) -> Option<&'static str> {
    match notice? {
        "profile_saved" => Some("Your display name was saved."),
        "password_changed" => Some("Your password was changed."),
        "session_ended" => Some("The session was ended. The device was signed out."),
        "upstream_unlinked" => Some("The account was unlinked."),
        _ => None,
    }
}

/// `GET /account` and `/account/`: dispatches on `?action=`.
#[tracing::instrument(name = "http.pages.account.get", skip_all)]
pub async fn get(State(state): State<AppState>, browser: Browser, RawQuery(raw): RawQuery) -> Response {
    if browser.session.is_none() {
        let here = match raw.as_deref() {
            Some(q) if !q.is_empty() => format!("/account/?{q}"),
            _ => "/account/".to_string(),
        };
        return (browser.jar, Redirect::to(&login_url(&here))).into_response();
    }
    let q = parse_query(raw.as_deref());
    let notice = notice_text(q.notice.as_deref());
    match Action::of(&q) {
        Action::Profile => profile::page(&state, browser, notice).await,
        Action::SessionsList => sessions::list(&state, browser, notice).await,
        Action::SessionView(device) => sessions::view(&state, browser, &device, false).await,
        Action::SessionEnd(device) => sessions::view(&state, browser, &device, true).await,
        Action::CrossSigningReset => security::reset_page(&state, browser).await,
        Action::Deactivate => security::deactivate_page(&state, browser).await,
    }
}

/// Signed-out posts of the profile page come back to it.
pub struct ToProfile;

impl ReturnTo for ToProfile {
    async fn url(_: &mut axum::http::request::Parts) -> String {
        "/account/".into()
    }
}

/// Signed-out posts of the sessions list come back to it.
pub struct ToSessions;

impl ReturnTo for ToSessions {
    async fn url(_: &mut axum::http::request::Parts) -> String {
        SESSIONS_URL.into()
    }
}

/// The signed-in session of a page, or the redirect to sign in.
fn signed_in(browser: &Browser, back_to: &str) -> Result<Session, Box<Response>> {
    match &browser.session {
        Some(s) => Ok(Session { id: s.id.clone(), user: s.user.clone(), authenticated_at: s.authenticated_at }),
        None => Err(Box::new(Redirect::to(&login_url(back_to)).into_response())),
    }
}

/// An error page that keeps the signed-in context and offers a way back.
fn error_page(
    state: &AppState,
    browser: Browser,
    status: StatusCode,
    title: &str,
    message: &str,
    back: &str,
) -> Response {
    let page = ErrorPage {
        ctx: browser.context(state),
        title: title.into(),
        message: message.into(),
        details: None,
        back_url: Some(back.into()),
    };
    let mut res = render(&page);
    *res.status_mut() = status;
    (browser.jar, res).into_response()
}

/// Why a re-authentication failed.
pub(crate) enum Reauth {
    /// The password is not correct.
    Wrong,
    /// The user has a second factor, not confirmed lately, and sent no code (`totp`: a code
    /// from the app would do; otherwise only a passkey on the confirmation page).
    FactorMissing {
        totp: bool,
    },
    /// The TOTP or recovery code is not correct, or was used before.
    WrongCode,
    RateLimited,
    Internal(PageError),
}

/// The form errors of a failed re-authentication, by field.
#[derive(Default)]
pub(crate) struct ReauthErrors {
    pub password: Option<String>,
    pub code: Option<String>,
    pub form: Option<String>,
}

impl Reauth {
    fn message(&self) -> &'static str {
        match self {
            Reauth::Wrong => "That password is not correct.",
            Reauth::FactorMissing { totp: true } => {
                "Enter a code from your authenticator app or a recovery code, or confirm it’s you with a passkey."
            }
            Reauth::FactorMissing { totp: false } => "Confirm it’s you with your passkey first.",
            Reauth::WrongCode => "That code is not correct, or was already used.",
            Reauth::RateLimited => "Too many attempts. Wait a minute and try again.",
            Reauth::Internal(_) => "Something went wrong. Try again in a moment.",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Reauth::Wrong | Reauth::FactorMissing { .. } | Reauth::WrongCode => StatusCode::UNAUTHORIZED,
            Reauth::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Reauth::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message under the field it is about (the password, the code) or above the form.
    fn errors(&self) -> ReauthErrors {
        let m = Some(self.message().to_string());
        match self {
            Reauth::Wrong => ReauthErrors { password: m, ..Default::default() },
            Reauth::FactorMissing { totp: true } | Reauth::WrongCode => ReauthErrors { code: m, ..Default::default() },
            _ => ReauthErrors { form: m, ..Default::default() },
        }
    }
}

/// Whether the user can prove who they are with a password here.
async fn has_password(state: &AppState, user_id: &str) -> Result<bool, PageError> {
    if !state.config.passwords.enabled {
        return Ok(false);
    }
    let id = user_id.to_string();
    Ok(state.store.read(move |c| crate::store::users::current_password(c, &id)).await?.is_some())
}

/// Why `password` cannot become the user's new password (zxcvbn against
/// `passwords.minimum_complexity`, the account's names counting as guessable); `None` when it can.
pub(crate) fn new_password_problem(state: &AppState, user: &crate::model::User, password: &str) -> Option<String> {
    let service = state.config.branding.service_name.clone().unwrap_or_default();
    let display_name = user.display_name.clone().unwrap_or_default();
    let inputs =
        [user.username.as_str(), display_name.as_str(), state.config.matrix.homeserver.as_str(), service.as_str()];
    crate::lifecycle::registration::check_new_password(password, state.config.passwords.minimum_complexity, &inputs).1
}

/// Checks the signed-in user's password, rate-limited like sign-in (per account).
async fn reauthenticate(state: &AppState, username: &str, password: String) -> Result<(), Reauth> {
    if password.is_empty() {
        return Err(Reauth::Wrong);
    }
    if state.limiters.login_per_account.check(username).is_err() {
        return Err(Reauth::RateLimited);
    }
    match verify_password(state, username, password).await {
        Ok(_) => Ok(()),
        Err(LoginFailure::Invalid | LoginFailure::Locked) => Err(Reauth::Wrong),
        Err(LoginFailure::Internal(e)) => Err(Reauth::Internal(e)),
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `2026-01-03T14:05:00Z`, for `<time datetime>`.
pub(crate) fn iso_time(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    let s = ts.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// `3 Jan 2026, 14:05 UTC`.
pub(crate) fn human_time(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    let s = ts.rem_euclid(86_400);
    format!("{d} {} {y}, {:02}:{:02} UTC", MONTHS[(m - 1) as usize], s / 3600, s / 60 % 60)
}

/// `just now`, `5 minutes ago`, `3 days ago`, or a date for anything older than a month.
pub(crate) fn relative_time(ts: i64, now: i64) -> String {
    let ago = (now - ts).max(0);
    let plural = |n: i64, unit: &str| if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") };
    match ago {
        0..60 => "just now".into(),
        60..3600 => plural(ago / 60, "minute"),
        3600..86_400 => plural(ago / 3600, "hour"),
        86_400..2_592_000 => plural(ago / 86_400, "day"),
        _ => {
            let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
            format!("on {d} {} {y}", MONTHS[(m - 1) as usize])
        }
    }
}

/// `Firefox on Linux`, from a User-Agent header (best effort).
pub(crate) fn describe_user_agent(ua: &str) -> Option<String> {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    .into_iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("CrOS", "ChromeOS"),
        ("Mac OS X", "macOS"),
        ("Windows", "Windows"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| name);
    match (browser, os) {
        (Some(b), Some(o)) => Some(format!("{b} on {o}")),
        (Some(b), None) => Some(b.to_string()),
        (None, Some(o)) => Some(format!("Browser on {o}")),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        let q = |s: &str| Action::of(&parse_query(Some(s)));
        assert_eq!(q(""), Action::Profile);
        assert_eq!(q("action=org.matrix.profile"), Action::Profile);
        assert_eq!(q("action=whatever"), Action::Profile);
        assert_eq!(q("action=org.matrix.devices_list"), Action::SessionsList);
        assert_eq!(q("action=org.matrix.sessions_list"), Action::SessionsList);
        assert_eq!(q("action=org.matrix.device_view&device_id=AB"), Action::SessionView("AB".into()));
        assert_eq!(q("action=org.matrix.session_view&device_id=AB"), Action::SessionView("AB".into()));
        assert_eq!(q("action=org.matrix.session_view"), Action::SessionsList);
        assert_eq!(q("action=org.matrix.device_delete&device_id=AB"), Action::SessionEnd("AB".into()));
        assert_eq!(q("action=org.matrix.session_end&device_id=AB"), Action::SessionEnd("AB".into()));
        assert_eq!(q("action=org.matrix.cross_signing_reset"), Action::CrossSigningReset);
    }

    #[test]
    fn times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(1_767_449_100), "2026-01-03T14:05:00Z");
        assert_eq!(human_time(1_767_449_100), "3 Jan 2026, 14:05 UTC");
        assert_eq!(human_time(951_782_400), "29 Feb 2000, 00:00 UTC");
        assert_eq!(relative_time(100, 130), "just now");
        assert_eq!(relative_time(0, 120), "2 minutes ago");
        assert_eq!(relative_time(0, 3600), "1 hour ago");
        assert_eq!(relative_time(0, 86_400 * 3), "3 days ago");
        assert_eq!(relative_time(0, 86_400 * 90), "on 1 Jan 1970");
    }

    #[test]
    fn user_agents() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(describe_user_agent(ff).as_deref(), Some("Firefox on Linux"));
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(describe_user_agent(safari).as_deref(), Some("Safari on iOS"));
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
        assert_eq!(describe_user_agent(chrome).as_deref(), Some("Chrome on Windows"));
        assert_eq!(describe_user_agent("curl/8.0"), None);
    }
}
