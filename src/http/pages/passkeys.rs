//! Passkeys (WebAuthn, webauthn-rs): the ceremonies behind "Add a passkey" on the account page,
//! "Sign in with a passkey" (username-less, discoverable credentials) on `/login`, and the passkey
//! as the second step after a password on `/login/mfa`.
//!
//! A page that offers a ceremony renders its options into a form (`data-options`), and keeps the
//! ceremony's state in an encrypted (AEAD) cookie good for five minutes. `assets/passkey.js`
//! talks to the authenticator and posts the answer with the form; without JavaScript the passkey
//! forms stay hidden and everything else works. On the way back the challenge is recorded as
//! answered (`webauthn_used_challenges`), so each one is accepted once.
//!
//! The relying party is `http.public_base`'s host (a domain: browsers refuse WebAuthn on an IP
//! address, so passkeys are offered only when `public_base` names a host), its origin the
//! origin of `public_base`. The user handle given to authenticators is the user's ULID as 16 bytes.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::Cookie;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Uuid, Webauthn, WebauthnBuilder,
};

use super::context::{Browser, cookie};
use super::error::PageError;
use super::extract::CsrfForm;
use crate::crypto::b64url;
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::model::User;
use crate::store::{passkeys as passkey_store, users as user_store};

pub const REGISTER_COOKIE: &str = "appliance-passkey-reg";
pub const AUTH_COOKIE: &str = "appliance-passkey-auth";
const TTL: i64 = 300;
/// A passkey's name: what the user calls it ("Laptop", "Phone").
pub const MAX_NAME: usize = 64;

/// The relying party of `http.public_base`; `None` when its host is an IP address.
pub fn webauthn(state: &AppState) -> Option<Webauthn> {
    let base = &state.config.http.public_base;
    let Some(url::Host::Domain(rp_id)) = base.host() else { return None };
    let origin = url::Url::parse(&base.origin().ascii_serialization()).ok()?;
    let name = state.config.branding.service_name.clone().unwrap_or_else(|| state.config.matrix.homeserver.clone());
    WebauthnBuilder::new(rp_id, &origin).ok()?.rp_name(&name).build().ok()
}

/// The user handle of `user_id` (a ULID) for authenticators, and back.
fn user_handle(user_id: &str) -> Option<Uuid> {
    ulid::Ulid::from_string(user_id).ok().map(|u| Uuid::from_u128(u.0))
}

fn user_id_of(handle: Uuid) -> String {
    ulid::Ulid(handle.as_u128()).to_string()
}

/// A ceremony in progress, as kept in its cookie.
#[derive(Serialize, Deserialize)]
struct Ceremony<S> {
    /// The user it is for (none for a username-less sign-in).
    user: Option<String>,
    at: i64,
    /// The challenge (base64url), recorded once answered.
    challenge: String,
    state: S,
}

fn save<S: Serialize>(state: &AppState, browser: &mut Browser, name: &'static str, c: &Ceremony<S>) -> bool {
    match serde_json::to_string(c) {
        Ok(v) => {
            browser.jar = browser.jar.clone().add(cookie(state, name, v));
            true
        }
        Err(_) => false,
    }
}

/// The ceremony of this browser's cookie `name` (removed: it is good for one answer), unless
/// it expired.
fn take<S: DeserializeOwned>(state: &AppState, browser: &mut Browser, name: &'static str) -> Option<Ceremony<S>> {
    let value = browser.jar.get(name)?.value().to_string();
    browser.jar = browser.jar.clone().remove(Cookie::build(name).path("/"));
    let c: Ceremony<S> = serde_json::from_str(&value).ok()?;
    (state.now() - c.at <= TTL && c.at <= state.now()).then_some(c)
}

/// Why a passkey was not accepted.
pub enum Refused {
    /// No ceremony on this browser, or it expired: reload the page.
    Expired,
    /// The answer does not verify, names an unknown passkey, or another user's.
    Invalid,
    /// The challenge was answered before.
    Replayed,
    /// The account is locked or deactivated.
    Locked,
    RateLimited,
    Internal(PageError),
}

impl Refused {
    pub fn message(&self) -> &'static str {
        match self {
            Refused::Expired => "The passkey request expired. Try again.",
            Refused::Invalid | Refused::Replayed => "That passkey was not accepted.",
            Refused::Locked => "This account is locked. Contact the administrator of this server.",
            Refused::RateLimited => "Too many attempts. Wait a minute and try again.",
            Refused::Internal(_) => "Something went wrong.",
        }
    }

    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Refused::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Refused::Locked => StatusCode::FORBIDDEN,
            Refused::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

async fn passkeys_of(state: &AppState, user_id: &str) -> Result<Vec<passkey_store::Passkey>, PageError> {
    let id = user_id.to_string();
    state.store.read(move |c| passkey_store::of_user(c, &id)).await.map_err(PageError::internal)
}

/// Options for "Add a passkey" (a discoverable credential, user verification required), its
/// ceremony kept on `browser`; `None` when passkeys cannot be offered.
pub async fn registration_options(
    state: &AppState,
    browser: &mut Browser,
    user: &User,
) -> Result<Option<String>, PageError> {
    let (Some(wa), Some(handle)) = (webauthn(state), user_handle(&user.id)) else { return Ok(None) };
    let exclude = passkeys_of(state, &user.id)
        .await?
        .iter()
        .filter_map(|p| serde_json::from_str::<Passkey>(&p.credential).ok())
        .map(|p| p.cred_id().clone())
        .collect::<Vec<_>>();
    let mxid = state.config.matrix.mxid(&user.username);
    let display = user.display_name.clone().unwrap_or_else(|| mxid.clone());
    let Ok((ccr, reg)) = wa.start_passkey_registration(handle, &mxid, &display, Some(exclude)) else {
        return Ok(None);
    };
    let ceremony = Ceremony {
        user: Some(user.id.clone()),
        at: state.now(),
        challenge: b64url(&ccr.public_key.challenge),
        state: reg,
    };
    if !save(state, browser, REGISTER_COOKIE, &ceremony) {
        return Ok(None);
    }
    Ok(require_resident_key(&ccr))
}

/// The options as JSON, asking for a discoverable credential: passkeys sign in without a
/// username, so the credential must live on the authenticator. (webauthn-rs asks for one as
/// "discouraged"; its verification does not depend on it.)
fn require_resident_key(ccr: &CreationChallengeResponse) -> Option<String> {
    let mut v = serde_json::to_value(ccr).ok()?;
    let sel = v.get_mut("publicKey")?.get_mut("authenticatorSelection")?.as_object_mut()?;
    sel.insert("residentKey".into(), "required".into());
    sel.insert("requireResidentKey".into(), true.into());
    Some(v.to_string())
}

/// Finishes "Add a passkey": the new passkey's id.
pub async fn finish_registration(
    state: &AppState,
    browser: &mut Browser,
    user: &User,
    credential: &str,
    name: &str,
) -> Result<String, Refused> {
    let ceremony: Ceremony<PasskeyRegistration> = take(state, browser, REGISTER_COOKIE).ok_or(Refused::Expired)?;
    if ceremony.user.as_deref() != Some(user.id.as_str()) {
        return Err(Refused::Expired);
    }
    let wa = webauthn(state).ok_or(Refused::Expired)?;
    let reg: RegisterPublicKeyCredential = serde_json::from_str(credential).map_err(|_| Refused::Invalid)?;
    let passkey = wa.finish_passkey_registration(&reg, &ceremony.state).map_err(|e| {
        tracing::info!(error = %e, "passkey registration refused");
        Refused::Invalid
    })?;
    let json = serde_json::to_string(&passkey).map_err(|e| Refused::Internal(PageError::internal(e)))?;
    let row = passkey_store::Passkey {
        id: state.rng.id(state.clock.as_ref()),
        user_id: user.id.clone(),
        credential_id: b64url(passkey.cred_id()),
        name: clean_name(name),
        credential: json,
        created_at: state.now(),
        last_used_at: None,
    };
    let (id, challenge, now) = (row.id.clone(), ceremony.challenge, state.now());
    let added = state
        .store
        .write(move |c| {
            if !passkey_store::use_challenge(c, &challenge, now + TTL, now)? {
                return Ok(Err(Refused::Replayed));
            }
            Ok(if passkey_store::insert(c, &row)? { Ok(()) } else { Err(Refused::Invalid) })
        })
        .await
        .map_err(|e| Refused::Internal(PageError::internal(e)))?;
    added?;
    tracing::info!(user = %user.username, passkey = %id, "passkey added");
    Ok(id)
}

/// A passkey name as stored: trimmed, control characters dropped, at most `MAX_NAME` characters.
pub fn clean_name(name: &str) -> String {
    let n: String = name.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
    let n = n.trim();
    if n.is_empty() { "Passkey".into() } else { n.to_string() }
}

/// Options for signing in with a passkey: for `user` (their passkeys only; `None` when they have
/// none) or, without a user, any passkey of this site (username-less). The ceremony is kept on
/// `browser`.
pub async fn authentication_options(
    state: &AppState,
    browser: &mut Browser,
    user: Option<&User>,
) -> Result<Option<String>, PageError> {
    let Some(wa) = webauthn(state) else { return Ok(None) };
    let allow = match user {
        Some(u) => {
            let ids: Vec<Vec<u8>> = passkeys_of(state, &u.id)
                .await?
                .iter()
                .filter_map(|p| serde_json::from_str::<Passkey>(&p.credential).ok())
                .map(|p| p.cred_id().to_vec())
                .collect();
            if ids.is_empty() {
                return Ok(None);
            }
            ids
        }
        None => vec![],
    };
    let Ok((mut rcr, auth)) = wa.start_discoverable_authentication() else { return Ok(None) };
    // A button starts it, not the browser's autofill (conditional mediation).
    rcr.mediation = None;
    let ceremony = Ceremony {
        user: user.map(|u| u.id.clone()),
        at: state.now(),
        challenge: b64url(&rcr.public_key.challenge),
        state: auth,
    };
    if !save(state, browser, AUTH_COOKIE, &ceremony) {
        return Ok(None);
    }
    // The user's own passkeys, when the user is known.
    let mut v = match serde_json::to_value(&rcr) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let list = allow.iter().map(|id| serde_json::json!({ "type": "public-key", "id": b64url(id) })).collect();
    v["publicKey"]["allowCredentials"] = serde_json::Value::Array(list);
    Ok(Some(v.to_string()))
}

/// Checks a passkey answer: for `expected` (the second step, or a re-check) or, without one,
/// any user's (a username-less sign-in). Rate-limited as password sign-in. The user signed in.
pub async fn finish_authentication(
    state: &AppState,
    browser: &mut Browser,
    ip: std::net::IpAddr,
    expected: Option<&User>,
    credential: &str,
) -> Result<User, Refused> {
    if expected.is_none() && state.limiters.login_per_ip.check_ip(ip).is_err() {
        return Err(Refused::RateLimited);
    }
    let ceremony: Ceremony<DiscoverableAuthentication> = take(state, browser, AUTH_COOKIE).ok_or(Refused::Expired)?;
    if ceremony.user.as_deref() != expected.map(|u| u.id.as_str()) {
        return Err(Refused::Expired);
    }
    let wa = webauthn(state).ok_or(Refused::Expired)?;
    let answer: PublicKeyCredential = serde_json::from_str(credential).map_err(|_| Refused::Invalid)?;
    let (handle, cred_id) = wa.identify_discoverable_authentication(&answer).map_err(|_| Refused::Invalid)?;
    let (user_id, cred_id) = (user_id_of(handle), b64url(cred_id));
    let found = state
        .store
        .read(move |c| {
            let Some(p) = passkey_store::by_credential_id(c, &cred_id)? else { return Ok(None) };
            Ok(user_store::by_id(c, &p.user_id)?.map(|u| (p, u)))
        })
        .await
        .map_err(|e| Refused::Internal(PageError::internal(e)))?;
    let Some((row, user)) = found.filter(|(p, _)| p.user_id == user_id) else { return Err(Refused::Invalid) };
    if expected.is_some_and(|e| e.id != user.id) {
        return Err(Refused::Invalid);
    }
    if state.limiters.login_per_account.check(&user.username).is_err() {
        return Err(Refused::RateLimited);
    }
    let mut passkey: Passkey =
        serde_json::from_str(&row.credential).map_err(|e| Refused::Internal(PageError::internal(e)))?;
    let result = wa.finish_discoverable_authentication_v2(&answer, ceremony.state, &passkey).map_err(|e| {
        tracing::info!(user = %user.username, error = %e, "passkey refused");
        Refused::Invalid
    })?;
    passkey.update_credential(&result);
    let json = serde_json::to_string(&passkey).map_err(|e| Refused::Internal(PageError::internal(e)))?;
    let (challenge, now, id) = (ceremony.challenge, state.now(), row.id.clone());
    let fresh = state
        .store
        .write(move |c| {
            let fresh = passkey_store::use_challenge(c, &challenge, now + TTL, now)?;
            if fresh {
                passkey_store::used(c, &id, &json, now)?;
            }
            Ok(fresh)
        })
        .await
        .map_err(|e| Refused::Internal(PageError::internal(e)))?;
    if !fresh {
        return Err(Refused::Replayed);
    }
    if !user.is_valid() {
        return Err(Refused::Locked);
    }
    tracing::info!(user = %user.username, passkey = %row.id, "passkey accepted");
    Ok(user)
}

/// A passkey's answer, posted by assets/passkey.js.
#[derive(Deserialize)]
pub struct AnswerForm {
    #[serde(default)]
    credential: String,
    next: Option<String>,
}

/// `POST /login/passkey`: username-less sign-in. A passkey verifies the user (PIN, biometrics),
/// so it is a whole sign-in: no second step follows.
#[tracing::instrument(name = "http.pages.login.passkey", skip_all)]
pub async fn login_post(
    State(state): State<AppState>,
    mut browser: Browser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<AnswerForm>,
) -> Response {
    let next = super::login::safe_next(form.next.as_deref());
    let result = finish_authentication(&state, &mut browser, ip, None, &form.credential).await;
    let label = match &result {
        Ok(_) => "success",
        Err(Refused::RateLimited) => "rate_limited",
        Err(_) => "failure",
    };
    state.metrics.logins.get_or_create(&crate::http::metrics::ResultLabels { result: label.into() }).inc();
    match result {
        Ok(user) => {
            let how = super::login::SignedInWith::Factor;
            super::login::sign_in_and_continue(&state, browser, &headers, ip, &user, next.as_deref(), how).await
        }
        Err(Refused::Internal(e)) => e.into_response(),
        Err(why) => super::login::passkey_refused(&state, browser, next, why.status(), why.message()).await,
    }
}

/// `POST /login/mfa/passkey`: a passkey as the second step after the password.
#[tracing::instrument(name = "http.pages.login.mfa.passkey", skip_all)]
pub async fn second_step_post(
    State(state): State<AppState>,
    mut browser: Browser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<AnswerForm>,
) -> Response {
    let p = match super::mfa::pending(&state, &browser).await {
        Ok(Some(p)) => p,
        Ok(None) => return (browser.jar, Redirect::to("/login")).into_response(),
        Err(e) => return e.into_response(),
    };
    match finish_authentication(&state, &mut browser, ip, Some(&p.user), &form.credential).await {
        Ok(user) => {
            tracing::info!(user = %user.username, "second factor (passkey) accepted");
            super::mfa::second_step_passed(&state, browser, &headers, ip, &p).await
        }
        Err(Refused::Internal(e)) => e.into_response(),
        Err(why) => {
            super::mfa::code_page(&state, browser, &p.user, why.status(), None, Some(why.message().into())).await
        }
    }
}

/// A passkey as the account page lists it.
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: Option<String>,
}

pub async fn list(state: &AppState, user_id: &str) -> Result<Vec<PasskeyView>, PageError> {
    let day = super::account::human_time;
    Ok(passkeys_of(state, user_id)
        .await?
        .into_iter()
        .map(|p| PasskeyView { id: p.id, name: p.name, created: day(p.created_at), last_used: p.last_used_at.map(day) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_handles_round_trip_and_names_are_cleaned() {
        let id = "01J0000000000000000000ADM1";
        assert_eq!(user_id_of(user_handle(id).unwrap()), id);
        assert_eq!(clean_name("  Laptop\u{7}  "), "Laptop");
        assert_eq!(clean_name("   "), "Passkey");
        assert_eq!(clean_name(&"x".repeat(100)).len(), MAX_NAME);
    }
}
