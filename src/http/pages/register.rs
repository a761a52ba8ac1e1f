//! `/register`: self-registration with a password (and `prompt=create` from `/authorize`).
//!
//! One form: username, password twice (strength checked server-side with zxcvbn and shown as a
//! meter when the form comes back), optional display name, registration token when the server
//! requires one, terms of service when configured. The username is checked against the Matrix
//! grammar, the local database and the homeserver; the user is then created (the token use and
//! the accepted terms in the same write), provisioned in the homeserver (queued when it is down),
//! and signed in.
//!
//! With an email address (required by `account.password_registration_email_required`, optional
//! otherwise when the server can send mail), the user is not created right away: the checked
//! registration is stored as pending (password only hashed), a 6-digit code is emailed, and the
//! browser (bound by a private cookie) goes to `/register/verify/{id}`. The right code creates
//! the user with the verified address (the token used in the same write), then as above.

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::Cookie;
use serde::Deserialize;

use super::context::{Browser, NoticeQuery, PageContext};
use super::error::{PageError, render};
use super::extract::CsrfForm;
use super::login::{SignedInWith, localpart_of, login_url, safe_next, sign_in_and_continue};
use crate::email;
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::lifecycle::emails as verification;
use crate::lifecycle::registration::{self, NewRegistration, RegistrationError, Strength};
use crate::lifecycle::users::{self, Availability, UserError};
use crate::model::user::check_localpart;
use crate::store::email_codes::{self, EmailVerification};
use crate::store::pending_registrations::{self as pending_store, PendingRegistration};
use crate::store::registration_tokens as token_store;

/// The private cookie binding a pending registration to the browser that started it.
const PENDING_COOKIE: &str = "appliance-registration";
/// How long a pending registration is kept (the code can be resent meanwhile).
const PENDING_TTL_SECS: i64 = 86_400;

#[derive(Default)]
struct FieldErrors {
    username: Option<String>,
    email: Option<String>,
    password: Option<String>,
    password_confirm: Option<String>,
    display_name: Option<String>,
    token: Option<String>,
    tos: Option<String>,
}

impl FieldErrors {
    fn any(&self) -> bool {
        self.first().is_some()
    }

    /// The first field with an error, in page order (it gets the focus).
    fn first(&self) -> Option<&'static str> {
        [
            ("username", &self.username),
            ("email", &self.email),
            ("password", &self.password),
            ("password_confirm", &self.password_confirm),
            ("display_name", &self.display_name),
            ("token", &self.token),
            ("tos", &self.tos),
        ]
        .into_iter()
        .find(|(_, e)| e.is_some())
        .map(|(n, _)| n)
    }
}

#[derive(Template)]
#[template(path = "pages/register.html")]
struct RegisterPage {
    ctx: PageContext,
    next: Option<String>,
    login_link: String,
    username: String,
    email: String,
    /// Whether the form asks for an email address, and whether it must be given.
    email_offered: bool,
    email_required: bool,
    display_name: String,
    token: String,
    token_required: bool,
    tos_accepted: bool,
    errors: FieldErrors,
    form_error: Option<String>,
    strength: Option<Strength>,
    /// The field that gets the focus ("" for the first).
    focus: &'static str,
    providers: Vec<super::login::ProviderButton>,
}

#[derive(Deserialize)]
pub struct RegisterQuery {
    next: Option<String>,
    token: Option<String>,
}

fn disabled() -> Response {
    PageError::not_found("This server does not offer sign-up. Ask its administrator for an account.").into_response()
}

/// Sign-up is offered: a post to `/register` is refused with 404 otherwise, before its token is
/// looked at.
pub struct Offered;

impl FromRequestParts<AppState> for Offered {
    type Rejection = Response;

    async fn from_request_parts(_: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Response> {
        if super::registration_offered(state) { Ok(Offered) } else { Err(disabled()) }
    }
}

/// The form asks for an address when one is required, or when the server can actually send mail.
fn email_offered(state: &AppState) -> bool {
    state.config.account.password_registration_email_required || !state.mailer.is_blackhole()
}

fn page(state: &AppState, browser: &Browser, next: Option<String>) -> RegisterPage {
    RegisterPage {
        ctx: browser.context(state),
        providers: super::login::provider_buttons(state, next.as_deref()),
        login_link: next.as_deref().map(login_url).unwrap_or_else(|| "/login".into()),
        next,
        username: String::new(),
        email: String::new(),
        email_offered: email_offered(state),
        email_required: state.config.account.password_registration_email_required,
        display_name: String::new(),
        token: String::new(),
        token_required: state.config.account.registration_token_required,
        tos_accepted: false,
        errors: FieldErrors::default(),
        form_error: None,
        strength: None,
        focus: "",
    }
}

#[tracing::instrument(name = "http.pages.register.get", skip_all)]
pub async fn get(State(state): State<AppState>, browser: Browser, Query(q): Query<RegisterQuery>) -> Response {
    if !super::registration_offered(&state) {
        return disabled();
    }
    let mut p = page(&state, &browser, safe_next(q.next.as_deref()));
    // Invite links may carry the token (`/register?token=…`).
    p.token = q.token.unwrap_or_default();
    (browser.jar, render(&p)).into_response()
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    token: String,
    tos: Option<String>,
    next: Option<String>,
}

#[tracing::instrument(name = "http.pages.register.post", skip_all)]
pub async fn post(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    _: Offered,
    CsrfForm(form): CsrfForm<RegisterForm>,
) -> Response {
    let config = &state.config;
    let next = safe_next(form.next.as_deref());
    let mut p = page(&state, &browser, next.clone());
    p.username = form.username.trim().to_string();
    p.display_name = form.display_name.trim().to_string();
    p.email = form.email.trim().to_string();
    p.token = form.token.trim().to_string();
    p.tos_accepted = form.tos.is_some();

    // 1. What can be checked without the database or the homeserver.
    let server_name = &config.matrix.homeserver;
    let localpart = match localpart_of(&form.username, server_name) {
        Some(l) if !l.is_empty() => match check_localpart(&l) {
            Ok(()) if config.matrix.mxid(&l).len() > 255 => {
                p.errors.username = Some("This username is too long.".into());
                None
            }
            Ok(()) => Some(l),
            Err(why) => {
                p.errors.username = Some(format!("{why}."));
                None
            }
        },
        Some(_) => {
            p.errors.username = Some("Choose a username.".into());
            None
        }
        None => {
            p.errors.username = Some(crate::i18n::current().s1("form.choose-username", "server", server_name));
            None
        }
    };
    if let Some(l) = &localpart {
        p.username = l.clone();
    }
    let address = if !p.email_offered || p.email.is_empty() {
        if p.email_required {
            p.errors.email = Some("Enter your email address.".into());
        }
        None
    } else if !email::valid_address(&p.email) {
        p.errors.email = Some("Enter an email address, like alice@example.org.".into());
        None
    } else {
        Some(p.email.clone())
    };
    let display_name = Some(p.display_name.clone()).filter(|n| !n.is_empty());
    p.errors.display_name = users::display_name_problem(&p.display_name);

    let service = config.branding.service_name.clone().unwrap_or_default();
    let inputs = [p.username.as_str(), p.display_name.as_str(), server_name.as_str(), service.as_str()];
    let (strength, problem) =
        registration::check_new_password(&form.password, config.passwords.minimum_complexity, &inputs);
    p.errors.password = problem;
    if strength.is_some() && form.password_confirm != form.password {
        p.errors.password_confirm = Some("The passwords do not match.".into());
    }
    p.strength = strength;

    let token = if p.token_required {
        if p.token.is_empty() {
            p.errors.token = Some("Enter the registration token you were given.".into());
        }
        Some(p.token.clone())
    } else {
        None
    };
    let terms = p.ctx.tos_uri.clone();
    if terms.is_some() && !p.tos_accepted {
        p.errors.tos = Some("Accept the terms of service to create an account.".into());
    }
    if p.errors.any() {
        return refuse(browser, p, StatusCode::BAD_REQUEST);
    }
    let Some(localpart) = localpart else {
        return refuse(browser, p, StatusCode::BAD_REQUEST);
    };

    // 2. Attempts that reach the database and the homeserver are rate limited per client IP.
    if state.limiters.registration.check_ip(ip).is_err() {
        p.form_error = Some("Too many sign-ups from your network. Wait a while and try again.".into());
        return refuse(browser, p, StatusCode::TOO_MANY_REQUESTS);
    }

    match users::check_free_here(&state.lifecycle, &localpart).await {
        Ok(()) => {}
        Err(UserError::Taken) => {
            p.errors.username = Some("This username is taken. Choose another one.".into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Err(e) => return PageError::internal(e).into_response(),
    }
    if let Some(t) = &token {
        match registration::check_token(&state.store, t, state.now()).await {
            Ok(()) => {}
            Err(RegistrationError::Token(problem)) => {
                p.errors.token = Some(problem.message().into());
                return refuse(browser, p, StatusCode::BAD_REQUEST);
            }
            Err(e) => return PageError::internal(e).into_response(),
        }
    }
    match users::check_free_on_homeserver(&state.lifecycle, &localpart).await {
        Ok(()) => {}
        Err(UserError::HomeserverRefused(Availability::Exclusive)) => {
            p.errors.username = Some("This username is reserved. Choose another one.".into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Err(UserError::HomeserverRefused(Availability::Invalid)) => {
            p.errors.username = Some("The homeserver does not accept this username. Choose another one.".into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Err(UserError::HomeserverRefused(_)) => {
            p.errors.username = Some("This username is taken. Choose another one.".into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check username availability");
            p.form_error =
                Some("We cannot reach the homeserver to check whether this username is free. Try again later.".into());
            return refuse(browser, p, StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    // 3a. With an email address: store the registration, send the code, ask for it.
    if let Some(address) = address {
        return start_pending(
            &state,
            browser,
            ip,
            p,
            address,
            localpart,
            form.password,
            display_name,
            token,
            terms,
            next,
        )
        .await;
    }

    // 3. Create, provision, sign in.
    let new =
        NewRegistration { username: localpart, password: form.password, display_name, token, accepted_terms: terms };
    let user =
        match registration::register(&state.store, &state.passwords, state.clock.as_ref(), state.rng.as_ref(), new)
            .await
        {
            Ok(u) => u,
            Err(RegistrationError::Token(problem)) => {
                p.errors.token = Some(problem.message().into());
                return refuse(browser, p, StatusCode::BAD_REQUEST);
            }
            Err(RegistrationError::User(UserError::Taken)) => {
                p.errors.username = Some("This username is taken. Choose another one.".into());
                return refuse(browser, p, StatusCode::BAD_REQUEST);
            }
            Err(RegistrationError::User(UserError::InvalidUsername(why))) => {
                p.errors.username = Some(format!("{why}."));
                return refuse(browser, p, StatusCode::BAD_REQUEST);
            }
            Err(e) => return PageError::internal(e).into_response(),
        };
    tracing::info!(user_id = %user.id, username = %user.username, "user registered");
    if !state.lifecycle.provision_user(&user.id).await {
        tracing::warn!(user_id = %user.id, "homeserver unreachable after registration; provisioning queued");
    }
    sign_in_and_continue(&state, browser, &headers, ip, &user, next.as_deref(), SignedInWith::Password).await
}

/// The form again, with its errors; the password fields are never filled back in.
fn refuse(browser: Browser, mut p: RegisterPage, status: StatusCode) -> Response {
    p.focus = p.errors.first().unwrap_or("");
    (status, browser.jar, render(&p)).into_response()
}

/// Stores a checked registration until its email address is verified and sends the code.
#[allow(clippy::too_many_arguments)]
async fn start_pending(
    state: &AppState,
    browser: Browser,
    ip: std::net::IpAddr,
    mut p: RegisterPage,
    address: String,
    username: String,
    password: String,
    display_name: Option<String>,
    token: Option<String>,
    terms: Option<String>,
    next: Option<String>,
) -> Response {
    // Whether another account uses the address is told only once the code proves the visitor
    // owns it (`complete_pending`): until then an address in use gets the same answer and the
    // same mail as a free one, so the form cannot be used to find out who has an account.
    if !verification::may_send_code(&state.limiters, ip, &address) {
        p.form_error = Some(verification::TOO_MANY_CODES.into());
        return refuse(browser, p, StatusCode::TOO_MANY_REQUESTS);
    }
    let token_id = match token {
        None => None,
        Some(t) => match state.store.read(move |c| token_store::by_token(c, &t)).await {
            Ok(Some(t)) => Some(t.id),
            Ok(None) => {
                p.errors.token = Some(crate::store::registration_tokens::TokenProblem::Unknown.message().into());
                return refuse(browser, p, StatusCode::BAD_REQUEST);
            }
            Err(e) => return PageError::internal(e).into_response(),
        },
    };
    let (password_version, password_hash) = match state.passwords.hash(password).await {
        Ok(h) => h,
        Err(e) => return PageError::internal(e).into_response(),
    };
    let verification_id = match verification::start_verification(&state.lifecycle, &state.mailer, None, &address).await
    {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "cannot start email verification for a registration");
            p.errors.email = Some(verification::FIRST_CODE_NOT_SENT.into());
            return refuse(browser, p, StatusCode::BAD_GATEWAY);
        }
    };
    let now = state.now();
    let pending = PendingRegistration {
        id: state.rng.id(state.clock.as_ref()),
        username,
        password_hash,
        password_version,
        display_name,
        accepted_terms: terms,
        registration_token_id: token_id,
        email_verification_id: verification_id,
        next,
        created_at: now,
        completed_at: None,
    };
    let (row, id) = (pending.clone(), pending.id.clone());
    let stored = state
        .store
        .write(move |c| {
            pending_store::prune(c, now - PENDING_TTL_SECS)?;
            pending_store::insert(c, &row)
        })
        .await;
    if let Err(e) = stored {
        return PageError::internal(e).into_response();
    }
    let cookie = super::context::cookie(state, PENDING_COOKIE, id.clone());
    (browser.jar.add(cookie), Redirect::to(&format!("/register/verify/{id}"))).into_response()
}

#[derive(Template)]
#[template(path = "pages/register_verify.html")]
struct VerifyPage {
    ctx: PageContext,
    id: String,
    email: String,
    minutes: i64,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

fn verify_page(
    state: &AppState,
    browser: Browser,
    status: StatusCode,
    v: &EmailVerification,
    id: &str,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let page = VerifyPage {
        ctx: browser.context(state),
        id: id.to_string(),
        email: v.email.clone(),
        minutes: verification::CODE_TTL_SECS / 60,
        error,
        notice,
    };
    (status, browser.jar, render(&page)).into_response()
}

fn start_again(status: StatusCode, title: &str, message: &str) -> Response {
    PageError::new(status, title, message).into_response()
}

/// The pending registration `id` of this browser with its verification, or the page to show.
async fn pending_of(
    state: &AppState,
    browser: &Browser,
    id: &str,
) -> Result<(PendingRegistration, EmailVerification), Response> {
    if !super::registration_offered(state) {
        return Err(disabled());
    }
    let unknown = || {
        start_again(
            StatusCode::NOT_FOUND,
            "Nothing to verify here",
            "This sign-up does not exist, has expired or was started in another browser. Create your account again.",
        )
    };
    if browser.jar.get(PENDING_COOKIE).is_none_or(|c| c.value() != id) {
        return Err(unknown());
    }
    let pid = id.to_string();
    let found = state
        .store
        .read(move |c| {
            let Some(p) = pending_store::by_id(c, &pid)? else { return Ok(None) };
            let v = email_codes::verification_by_id(c, &p.email_verification_id)?;
            Ok(v.map(|v| (p, v)))
        })
        .await;
    match found {
        Err(e) => Err(PageError::internal(e).into_response()),
        Ok(None) => Err(unknown()),
        Ok(Some((p, _))) if p.completed_at.is_some() => Err(start_again(
            StatusCode::CONFLICT,
            "Account already created",
            "This account has already been created. Sign in to continue.",
        )),
        Ok(Some((p, _))) if p.created_at + PENDING_TTL_SECS <= state.now() => Err(unknown()),
        Ok(Some((p, v))) if v.user_id.is_none() => Ok((p, v)),
        Ok(Some(_)) => Err(unknown()),
    }
}

fn notice_text(notice: Option<&str>) -> Option<&'static str> {
    match notice? {
        "resent" => Some("A new code was sent."),
        _ => None,
    }
}

/// `GET /register/verify/{id}`: the code form.
#[tracing::instrument(name = "http.pages.register.verify_get", skip_all)]
pub async fn verify_get(
    State(state): State<AppState>,
    browser: Browser,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    match pending_of(&state, &browser, &id).await {
        Err(r) => r,
        Ok((_, v)) => verify_page(&state, browser, StatusCode::OK, &v, &id, None, notice_text(q.notice.as_deref())),
    }
}

/// `POST /register/verify/{id}`: the right code creates the account and signs in.
#[tracing::instrument(name = "http.pages.register.verify_post", skip_all)]
pub async fn verify_post(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Response {
    let (pending, v) = match pending_of(&state, &browser, &id).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let check = match verification::check_code(&state.lifecycle, &v, &form.code).await {
        Ok(c) => c,
        Err(e) => return PageError::internal(e).into_response(),
    };
    // Already verified goes on too: verified earlier but the account could not be created then
    // (homeserver down…).
    if let Some(message) = check.problem() {
        return verify_page(&state, browser, StatusCode::BAD_REQUEST, &v, &id, Some(message), None);
    }

    // The username may have been taken meanwhile: check again, here and on the homeserver.
    let taken = || {
        start_again(
            StatusCode::CONFLICT,
            "Username taken",
            "Someone took this username while you were verifying your email address. Create your account again with another username.",
        )
    };
    match users::check_available(&state.lifecycle, &pending.username).await {
        Ok(()) => {}
        Err(UserError::Taken | UserError::HomeserverRefused(_) | UserError::InvalidUsername(_)) => return taken(),
        Err(UserError::HomeserverUnreachable(e)) => {
            tracing::warn!(error = %e, "cannot check username availability");
            let message =
                "We cannot reach the homeserver to check whether this username is free. Try again later.".to_string();
            return verify_page(&state, browser, StatusCode::SERVICE_UNAVAILABLE, &v, &id, Some(message), None);
        }
        Err(e) => return PageError::internal(e).into_response(),
    }

    let user = match registration::complete_pending(
        &state.store,
        state.clock.as_ref(),
        state.rng.as_ref(),
        &pending,
        &v.email,
    )
    .await
    {
        Ok(u) => u,
        Err(RegistrationError::Token(problem)) => {
            return start_again(StatusCode::BAD_REQUEST, "Registration token not valid", problem.message());
        }
        Err(RegistrationError::User(UserError::Taken)) => return taken(),
        Err(RegistrationError::EmailInUse) => {
            return start_again(
                StatusCode::CONFLICT,
                "Address in use",
                "Another account on this server already uses this email address.",
            );
        }
        Err(RegistrationError::AlreadyCompleted) => {
            return start_again(
                StatusCode::CONFLICT,
                "Account already created",
                "This account has already been created. Sign in to continue.",
            );
        }
        Err(e) => return PageError::internal(e).into_response(),
    };
    tracing::info!(user_id = %user.id, username = %user.username, "user registered with a verified email address");
    if !state.lifecycle.provision_user(&user.id).await {
        tracing::warn!(user_id = %user.id, "homeserver unreachable after registration; provisioning queued");
    }
    // The sign-up is finished: its cookie is removed as the browser signs in.
    let browser = Browser { jar: browser.jar.remove(Cookie::build(PENDING_COOKIE).path("/")), ..browser };
    sign_in_and_continue(
        &state,
        browser,
        &headers,
        ip,
        &user,
        safe_next(pending.next.as_deref()).as_deref(),
        SignedInWith::Password,
    )
    .await
}

/// `POST /register/resend/{id}`: a new code (the old one stops working), rate-limited.
#[tracing::instrument(name = "http.pages.register.resend", skip_all)]
pub async fn resend_post(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    _: CsrfForm<CodeForm>,
) -> Response {
    let (_, v) = match pending_of(&state, &browser, &id).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let here = format!("/register/verify/{id}");
    if v.verified_at.is_some() {
        return (browser.jar, Redirect::to(&here)).into_response();
    }
    if let Err(why) = verification::resend_code(&state.lifecycle, &state.mailer, &state.limiters, ip, &v).await {
        let status = super::account::emails::not_resent_status(why);
        return verify_page(&state, browser, status, &v, &id, Some(why.message().to_string()), None);
    }
    (browser.jar, Redirect::to(&format!("{here}?notice=resent"))).into_response()
}
