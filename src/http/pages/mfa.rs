//! Second factors: TOTP (RFC 6238) and recovery codes, and the sign-in step that asks for one
//! after the password (`/login/mfa`) before the browser session starts.
//!
//! Between the password and the code, the user is held in a private (AEAD) cookie naming the
//! user, the time the password was checked and where to go next; it is good for 5 minutes.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use totp_rs::{Algorithm, TOTP};

use super::context::{Browser, PageContext, cookie};
use super::error::{PageError, render};
use super::extract::CsrfForm;
use crate::crypto::{constant_time_eq, sha256_hex};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::model::User;
use crate::rng::Rng;
use crate::store::{mfa as mfa_store, users as user_store};

pub const PENDING_COOKIE: &str = "appliance-mfa";
const PENDING_TTL: i64 = 300;
const STEP: u64 = 30;
pub const RECOVERY_CODES: usize = 10;

fn totp(secret: &[u8]) -> Option<TOTP> {
    TOTP::new(Algorithm::SHA1, 6, 1, STEP, secret.to_vec()).ok()
}

/// A new 160-bit secret (RFC 4226's recommended length).
pub fn new_secret(rng: &dyn Rng) -> [u8; 20] {
    rng.bytes::<20>()
}

pub fn secret_base32(secret: &[u8]) -> String {
    totp(secret).map(|t| t.get_secret_base32()).unwrap_or_default()
}

/// The step (`unix time / 30`) whose code `code` is, within one step of `now`.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let t = totp(secret)?;
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let now_step = now.max(0) / STEP as i64;
    [now_step, now_step - 1, now_step + 1]
        .into_iter()
        .find(|s| *s >= 0 && constant_time_eq(t.generate(*s as u64 * STEP).as_bytes(), code.as_bytes()))
}

/// The `otpauth://` URI authenticator apps read from the QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20");
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        secret_base32(secret),
        enc(issuer)
    )
}

/// The QR code of `data` as an SVG document (no script, no external references).
pub fn qr_svg(data: &str) -> String {
    match qrcode::QrCode::new(data.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
        Err(_) => String::new(),
    }
}

/// Lower-case letters and digits without the look-alikes (0/o, 1/l/i).
const CODE_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// Ten new recovery codes (`xxxx-xxxx-xxxx`, ~59 bits each) and their hashes.
pub fn new_recovery_codes(rng: &dyn Rng) -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let raw = rng.string_of(CODE_ALPHABET, 12);
            format!("{}-{}-{}", &raw[..4], &raw[4..8], &raw[8..])
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// Codes are random and long, so a plain SHA-256 of the normalised code is enough at rest.
fn recovery_hash(code: &str) -> String {
    let norm: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    sha256_hex(format!("appliance-recovery-code:{norm}").as_bytes())
}

pub enum Check {
    Accepted,
    Wrong,
    RateLimited,
}

/// Checks a TOTP code (once per step) or a recovery code (once) of `user`, rate-limited per
/// account with sign-in's budget.
pub async fn check_code(state: &AppState, user: &User, code: &str) -> Result<Check, PageError> {
    if state.limiters.login_per_account.check(&user.username).is_err() {
        return Ok(Check::RateLimited);
    }
    let (user_id, now, code) = (user.id.clone(), state.now(), code.trim().to_string());
    let encrypter = state.encrypter.clone();
    let ok = state
        .store
        .write(move |c| {
            let Some(t) = mfa_store::totp(c, &user_id)? else { return Ok(false) };
            if t.confirmed_at.is_none() {
                return Ok(false);
            }
            let digits = code.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            if digits.len() == 6 && digits.chars().all(|c| c.is_ascii_digit()) {
                let secret =
                    encrypter.decrypt(&t.secret).map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
                return match matching_step(&secret, &digits, now) {
                    Some(step) => mfa_store::use_step(c, &user_id, step),
                    None => Ok(false),
                };
            }
            mfa_store::use_recovery_code(c, &user_id, &recovery_hash(&code), now)
        })
        .await
        .map_err(PageError::internal)?;
    if ok { Ok(Check::Accepted) } else { Ok(Check::Wrong) }
}

pub async fn has_factor(state: &AppState, user_id: &str) -> Result<bool, PageError> {
    let id = user_id.to_string();
    state.store.read(move |c| mfa_store::has_factor(c, &id)).await.map_err(PageError::internal)
}

/// After the password: holds the user in the pending cookie and asks for the code.
pub fn start_second_step(state: &AppState, browser: Browser, user: &User, next: Option<&str>) -> Response {
    start_second_step_after_upstream(state, browser, user, next, None)
}

/// Whether signing `user` in goes through the second step: they have a factor, or
/// `account.mfa: required` sets one up first. Upstream sign-in asks too: a factor the user set
/// up is not bypassed by signing in through a provider.
pub async fn needs_second_step(state: &AppState, user: &User) -> Result<bool, PageError> {
    Ok(state.config.account.mfa == crate::config::MfaPolicy::Required || has_factor(state, &user.id).await?)
}

/// As `start_second_step`, after an upstream provider's callback: the upstream authorization
/// session is consumed with the browser session the second step starts.
pub fn start_second_step_after_upstream(
    state: &AppState,
    browser: Browser,
    user: &User,
    next: Option<&str>,
    upstream_session: Option<&str>,
) -> Response {
    let value =
        format!("{}\n{}\n{}\n{}", user.id, state.now(), upstream_session.unwrap_or_default(), next.unwrap_or_default());
    (browser.jar.add(cookie(state, PENDING_COOKIE, value)), Redirect::to("/login/mfa")).into_response()
}

/// A user waiting for their second factor on this browser.
pub(crate) struct Pending {
    pub user: User,
    pub next: Option<String>,
    /// The upstream authorization session the sign-in came through.
    upstream: Option<String>,
}

/// The user waiting for their second factor on this browser, and where they go next.
pub(crate) async fn pending(state: &AppState, browser: &Browser) -> Result<Option<Pending>, PageError> {
    let Some(c) = browser.jar.get(PENDING_COOKIE) else { return Ok(None) };
    let mut parts = c.value().splitn(4, '\n');
    let (Some(id), Some(at), Some(upstream), next) =
        (parts.next(), parts.next().and_then(|a| a.parse::<i64>().ok()), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    if state.now() - at > PENDING_TTL {
        return Ok(None);
    }
    let upstream = Some(upstream.to_string()).filter(|u| !u.is_empty());
    let id = id.to_string();
    let user = state.store.read(move |c| user_store::by_id(c, &id)).await.map_err(PageError::internal)?;
    Ok(user.filter(|u| u.is_valid()).map(|user| Pending { user, next: super::login::safe_next(next), upstream }))
}

/// The second step is passed: the browser session starts (consuming the upstream authorization
/// session it came through, if any) and the user goes on.
pub(crate) async fn second_step_passed(
    state: &AppState,
    mut browser: Browser,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    p: &Pending,
) -> Response {
    browser.jar = browser.jar.remove(axum_extra::extract::cookie::Cookie::build(PENDING_COOKIE).path("/"));
    let ua = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(String::from);
    let existing = browser.session.as_ref().map(|s| s.id.clone());
    match start_session(state, &p.user, existing, ua, ip, p.upstream.clone()).await {
        Ok(session_id) => {
            let next = p.next.clone().unwrap_or_else(|| "/account/".into());
            // The factor was just given: sensitive account actions need it again only later.
            let jar = super::account::recheck::stamp(state, browser.with_session(state, &session_id), &session_id);
            (jar, Redirect::to(&next)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn start_session(
    state: &AppState,
    user: &User,
    existing: Option<String>,
    ua: Option<String>,
    ip: std::net::IpAddr,
    upstream: Option<String>,
) -> Result<String, PageError> {
    let session_id = super::login::start_browser_session(state, user, existing, ua, ip.to_string()).await?;
    if let Some(upstream) = upstream {
        let (sid, now) = (session_id.clone(), state.now());
        state
            .store
            .write(move |c| crate::store::upstream::consume_session(c, &upstream, &sid, now))
            .await
            .map_err(PageError::internal)?;
    }
    Ok(session_id)
}

pub(crate) const WRONG_FIRST_CODE: &str = "That code is not correct. Enter the code your app shows now.";

#[derive(Template)]
#[template(path = "pages/account_mfa_enrol.html")]
struct EnrolPage {
    ctx: PageContext,
    qr_svg: String,
    secret: String,
    error: Option<String>,
    /// Where the first code is sent: the account page, or the sign-in step.
    action: &'static str,
}

/// The recovery codes, shown once, then on to `next`.
#[derive(Template)]
#[template(path = "pages/account_mfa_codes.html")]
pub(crate) struct CodesPage {
    pub ctx: PageContext,
    pub codes: Vec<String>,
    pub first: bool,
    pub next: String,
}

/// The QR code and the text key of `secret`, and the form for the first code.
pub(crate) fn enrol_page(
    state: &AppState,
    browser: Browser,
    user: &User,
    secret: &[u8],
    error: Option<&str>,
    action: &'static str,
) -> Response {
    let uri = otpauth_uri(&state.config.matrix.homeserver, &state.config.matrix.mxid(&user.username), secret);
    let svg = qr_svg(&uri);
    // Inline in the page: without the XML prolog, labelled for assistive technology.
    let svg = svg.get(svg.find("<svg").unwrap_or(0)..).unwrap_or_default().replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code to scan with your authenticator app\" class=\"mfa-qr\" ",
        1,
    );
    let b32 = secret_base32(secret);
    let key = b32.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ");
    let status = if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let page =
        EnrolPage { ctx: browser.context(state), qr_svg: svg, secret: key, error: error.map(String::from), action };
    (status, browser.jar, render(&page)).into_response()
}

/// Turns the pending secret on when `code` is its current code; the new recovery codes.
pub(crate) async fn confirm_enrolment(
    state: &AppState,
    user: &User,
    secret: &[u8],
    code: &str,
) -> Result<Option<Vec<String>>, PageError> {
    let Some(step) = matching_step(secret, code, state.now()) else {
        return Ok(None);
    };
    let (codes, hashes) = new_recovery_codes(state.rng.as_ref());
    let (id, now) = (user.id.clone(), state.now());
    let confirmed = state
        .store
        .write(move |c| {
            let ok = mfa_store::confirm_totp(c, &id, step, now)?;
            if ok {
                mfa_store::replace_recovery_codes(c, &id, &hashes, now)?;
            }
            Ok(ok)
        })
        .await
        .map_err(PageError::internal)?;
    if confirmed {
        tracing::info!(user = %user.username, "second factor (TOTP) enrolled");
    }
    Ok(confirmed.then_some(codes))
}

/// `account.mfa: required`: the unconfirmed secret of a user signing in without a factor (new
/// when there is none).
async fn enrolment_secret(state: &AppState, user: &User) -> Result<Vec<u8>, PageError> {
    let (id, now, fresh) = (user.id.clone(), state.now(), state.encrypter.encrypt(&new_secret(state.rng.as_ref())));
    let stored = state
        .store
        .write(move |c| match mfa_store::totp(c, &id)? {
            Some(t) => Ok(t.secret),
            None => mfa_store::start_totp(c, &id, &fresh, now).map(|_| fresh),
        })
        .await
        .map_err(PageError::internal)?;
    state.encrypter.decrypt(&stored).map_err(PageError::internal)
}

#[derive(Template)]
#[template(path = "pages/login_mfa.html")]
struct CodePage {
    ctx: PageContext,
    error: Option<String>,
    /// "Use a passkey" (JSON options), when the user has one.
    passkey_options: Option<String>,
    passkey_js: String,
    passkey_error: Option<String>,
}

/// The code step for `user`, with a passkey button when they have a passkey. `error` goes with
/// the code field, `passkey_error` with the passkey button.
pub(crate) async fn code_page(
    state: &AppState,
    mut browser: Browser,
    user: &User,
    status: StatusCode,
    error: Option<String>,
    passkey_error: Option<String>,
) -> Response {
    let passkey_options = match super::passkeys::authentication_options(state, &mut browser, Some(user)).await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let page = CodePage {
        ctx: browser.context(state),
        error,
        passkey_options,
        passkey_js: state.assets.path("passkey.js"),
        passkey_error,
    };
    (status, browser.jar, render(&page)).into_response()
}

pub async fn get(State(state): State<AppState>, browser: Browser) -> Response {
    match pending(&state, &browser).await {
        Ok(Some(p)) if !matches!(has_factor(&state, &p.user.id).await, Ok(true)) => {
            match enrolment_secret(&state, &p.user).await {
                Ok(secret) => enrol_page(&state, browser, &p.user, &secret, None, "/login/mfa"),
                Err(e) => e.into_response(),
            }
        }
        Ok(Some(p)) => code_page(&state, browser, &p.user, StatusCode::OK, None, None).await,
        Ok(None) => (browser.jar, Redirect::to("/login")).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

#[tracing::instrument(name = "http.pages.login.mfa", skip_all)]
pub async fn post(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Response {
    let p = match pending(&state, &browser).await {
        Ok(Some(p)) => p,
        Ok(None) => return (browser.jar, Redirect::to("/login")).into_response(),
        Err(e) => return e.into_response(),
    };
    let user = &p.user;
    match has_factor(&state, &user.id).await {
        Ok(true) => {}
        Ok(false) => return enrol_at_sign_in(&state, browser, &headers, ip, &p, &form.code).await,
        Err(e) => return e.into_response(),
    }
    let message = match check_code(&state, user, &form.code).await {
        Ok(Check::Accepted) => {
            tracing::info!(user = %user.username, "second factor accepted");
            return second_step_passed(&state, browser, &headers, ip, &p).await;
        }
        Ok(Check::Wrong) => (StatusCode::UNAUTHORIZED, "That code is not correct, or was already used."),
        Ok(Check::RateLimited) => (StatusCode::TOO_MANY_REQUESTS, "Too many attempts. Wait a minute and try again."),
        Err(e) => return e.into_response(),
    };
    code_page(&state, browser, user, message.0, Some(message.1.into()), None).await
}

/// `account.mfa: required`: the first code turns the factor on and starts the session; the
/// recovery codes are shown once, with a link on to where the user was going.
async fn enrol_at_sign_in(
    state: &AppState,
    mut browser: Browser,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    p: &Pending,
    code: &str,
) -> Response {
    let (user, next) = (&p.user, p.next.clone());
    let secret = match enrolment_secret(state, user).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if state.limiters.login_per_account.check(&user.username).is_err() {
        let message = "Too many attempts. Wait a minute and try again.";
        return enrol_page(state, browser, user, &secret, Some(message), "/login/mfa");
    }
    let codes = match confirm_enrolment(state, user, &secret, code).await {
        Ok(Some(codes)) => codes,
        Ok(None) => return enrol_page(state, browser, user, &secret, Some(WRONG_FIRST_CODE), "/login/mfa"),
        Err(e) => return e.into_response(),
    };
    browser.jar = browser.jar.remove(axum_extra::extract::cookie::Cookie::build(PENDING_COOKIE).path("/"));
    let ua = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(String::from);
    let existing = browser.session.as_ref().map(|s| s.id.clone());
    match start_session(state, user, existing, ua, ip, p.upstream.clone()).await {
        Ok(session_id) => {
            let ctx = super::context::page_context(state, browser.csrf.clone(), Some(user));
            let page = CodesPage { ctx, codes, first: true, next: next.unwrap_or_else(|| "/account/".into()) };
            (browser.with_session(state, &session_id), render(&page)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_codes() {
        let secret = [7u8; 20];
        let t = totp(&secret).unwrap();
        let now = 1_767_449_100;
        assert_eq!(matching_step(&secret, &t.generate(now as u64), now), Some(now / 30));
        assert_eq!(matching_step(&secret, &t.generate(now as u64 - 30), now), Some(now / 30 - 1));
        assert_eq!(matching_step(&secret, &t.generate(now as u64 - 90), now), None);
        let (codes, hashes) = new_recovery_codes(&crate::rng::OsRng);
        assert_eq!(codes.len(), 10);
        assert_eq!(recovery_hash(&codes[0].to_uppercase().replace('-', " ")), hashes[0]);
        assert!(otpauth_uri("ex ample", "@a:b", &secret).starts_with("otpauth://totp/ex%20ample:%40a%3Ab?secret="));
        assert!(qr_svg("otpauth://totp/x").contains("<svg"));
    }
}
