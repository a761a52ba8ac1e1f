//! The authorization-code and device-code exchanges of `/oauth2/token`: the grant's checks (client,
//! expiry, redirect URI, PKCE, replay), the session start and the grant marked exchanged in one
//! write, then the device made on the homeserver before the token is handed out. The handler
//! parses, authenticates the client and renders what comes back.

use sha2::{Digest, Sha256};

use super::Lifecycle;
use super::oauth_sessions::{self, IssuedTokens, NewSession};
use super::sessions::{Ended, sync_ended};
use crate::crypto::{b64url, constant_time_eq};
use crate::model::client::GRANT_REFRESH_TOKEN;
use crate::model::{Client, Scope, User};
use crate::rng::Rng;
use crate::store::grants::{self as grant_store, AuthorizationGrant};
use crate::store::sessions::SessionKind;
use crate::store::{StoreError, StoreResult, sessions as session_store, users as user_store};
use crate::tokens::hash_token;
use rusqlite::Connection;

/// How long a code stays exchangeable after consent.
pub const CODE_TTL: i64 = 600;
/// Seconds a device client waits between polls (RFC 8628 §3.5).
pub const POLL_INTERVAL: i64 = 5;

/// Why a grant was refused. The message is the RFC 6749 `error_description`.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// `invalid_grant`.
    #[error("{0}")]
    Invalid(&'static str),
    /// `invalid_request`: the PKCE parameters do not fit the authorization request.
    #[error("{0}")]
    BadRequest(&'static str),
    /// The code was used before: the session it issued has been ended (`invalid_grant`).
    #[error("the authorization code was already used; its session has been ended")]
    CodeReplayed,
    #[error("the user denied the request")]
    AccessDenied,
    #[error("the device code has expired")]
    ExpiredToken,
    #[error("polling too fast")]
    SlowDown,
    #[error("waiting for the user")]
    AuthorizationPending,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The session a code or device grant issued.
pub struct Approved {
    pub tokens: IssuedTokens,
    pub scope: Scope,
    pub user: User,
    /// When the user last signed in to the browser session that approved the grant.
    pub auth_time: i64,
    /// The authorization request's `nonce` (code grant only).
    pub nonce: Option<String>,
}

/// What the token request carries for the code grant.
pub struct CodeRequest {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
}

/// What a grant's write decided.
enum Exchange {
    Issued(Box<Approved>),
    Refused(GrantError),
    /// A code used again; the session it issued was ended.
    Replayed(Ended),
}

/// Exchanges an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6). A code presented a second
/// time ends the session it issued (RFC 6749 §4.1.2) and its device goes from the homeserver.
pub async fn exchange_code(
    lc: &Lifecycle,
    client: &Client,
    req: CodeRequest,
    ttl: i64,
) -> Result<Approved, GrantError> {
    let (now, rng) = (lc.clock.now(), lc.rng.clone());
    let (client_id, with_refresh) = (client.id.clone(), client.allows_grant(GRANT_REFRESH_TOKEN));
    let outcome =
        lc.store.write(move |c| redeem_code(c, &client_id, &req, with_refresh, ttl, now, rng.as_ref())).await?;
    issued(lc, client, outcome).await
}

/// Exchanges a device code (RFC 8628 §3.4): refused while the user has not decided yet, and when
/// the client polls faster than `POLL_INTERVAL`.
pub async fn exchange_device_code(
    lc: &Lifecycle,
    client: &Client,
    device_code: &str,
    ttl: i64,
) -> Result<Approved, GrantError> {
    let (now, rng) = (lc.clock.now(), lc.rng.clone());
    let (client_id, with_refresh) = (client.id.clone(), client.allows_grant(GRANT_REFRESH_TOKEN));
    let hash = hash_token(device_code);
    let outcome =
        lc.store.write(move |c| redeem_device_code(c, &client_id, &hash, with_refresh, ttl, now, rng.as_ref())).await?;
    issued(lc, client, outcome).await
}

/// The homeserver side of an exchange: the replayed session's device goes (as after a logout);
/// an issued token's device must exist before the token is handed out.
async fn issued(lc: &Lifecycle, client: &Client, outcome: Exchange) -> Result<Approved, GrantError> {
    match outcome {
        Exchange::Issued(approved) => {
            if let Some(device) = approved.scope.device_id() {
                lc.ensure_device(&approved.user, device, Some(client.display_name().to_string())).await;
            }
            Ok(*approved)
        }
        Exchange::Refused(e) => Err(e),
        Exchange::Replayed(ended) => {
            sync_ended(lc, ended).await;
            Err(GrantError::CodeReplayed)
        }
    }
}

fn redeem_code(
    c: &Connection,
    client_id: &str,
    req: &CodeRequest,
    with_refresh: bool,
    ttl: i64,
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<Exchange> {
    let Some(grant) = grant_store::grant_by_code(c, &hash_token(&req.code))? else {
        return Ok(Exchange::Refused(GrantError::Invalid("unknown authorization code")));
    };
    if grant.client_id != client_id {
        return Ok(Exchange::Refused(GrantError::Invalid("the code was issued to another client")));
    }
    if grant.exchanged_at.is_some() {
        let mut ended = Ended::default();
        if let Some(session_id) = &grant.oauth2_session_id {
            ended.end(c, SessionKind::OAuth2, session_id, now)?;
        }
        return Ok(Exchange::Replayed(ended));
    }
    if let Err(e) = check_code(&grant, req, now) {
        return Ok(Exchange::Refused(e));
    }
    let mut approved = match start_approved(
        c,
        client_id,
        grant.user_session_id.as_deref(),
        &grant.scope,
        (with_refresh, ttl),
        now,
        rng,
    )? {
        Ok(approved) => approved,
        Err(why) => return Ok(Exchange::Refused(GrantError::Invalid(why))),
    };
    if !grant_store::exchange_grant(c, &grant.id, &approved.tokens.session_id, now)? {
        // Cannot happen inside the single writer; roll everything back if it does.
        return Err(StoreError::Conflict("authorization code exchange"));
    }
    approved.nonce = grant.nonce;
    Ok(Exchange::Issued(Box::new(approved)))
}

/// The code's own rules: still fresh, the same redirect URI, the PKCE verifier.
fn check_code(grant: &AuthorizationGrant, req: &CodeRequest, now: i64) -> Result<(), GrantError> {
    let fulfilled_at = grant.fulfilled_at.unwrap_or(grant.created_at);
    if now > fulfilled_at + CODE_TTL {
        return Err(GrantError::Invalid("the authorization code has expired"));
    }
    // RFC 6749 §4.1.3: when the authorization request carried redirect_uri, the token request
    // must carry the same one; when it did not, a given one must still match.
    match req.redirect_uri.as_deref() {
        Some(r) if r != grant.redirect_uri => {
            return Err(GrantError::Invalid("redirect_uri does not match the authorization request"));
        }
        None if grant.redirect_uri_given => {
            return Err(GrantError::Invalid("redirect_uri is required: the authorization request carried one"));
        }
        _ => {}
    }
    match (&grant.code_challenge, &req.code_verifier) {
        (Some(challenge), Some(v)) => {
            let method = grant.code_challenge_method.as_deref().unwrap_or("plain");
            if !verify_pkce(challenge, method, v) {
                return Err(GrantError::Invalid("PKCE verification failed"));
            }
        }
        (Some(_), None) => return Err(GrantError::BadRequest("missing code_verifier")),
        (None, Some(_)) => return Err(GrantError::BadRequest("code_verifier given but no code_challenge was sent")),
        (None, None) => {}
    }
    Ok(())
}

fn redeem_device_code(
    c: &Connection,
    client_id: &str,
    device_code_hash: &str,
    with_refresh: bool,
    ttl: i64,
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<Exchange> {
    let refused = |e| Ok(Exchange::Refused(e));
    let Some(grant) = grant_store::device_by_code(c, device_code_hash)? else {
        return refused(GrantError::Invalid("unknown device code"));
    };
    if grant.client_id != client_id {
        return refused(GrantError::Invalid("the device code was issued to another client"));
    }
    if grant.exchanged_at.is_some() {
        return refused(GrantError::Invalid("the device code was already used"));
    }
    if grant.rejected_at.is_some() {
        return refused(GrantError::AccessDenied);
    }
    if grant.fulfilled_at.is_none() {
        if now >= grant.expires_at {
            return refused(GrantError::ExpiredToken);
        }
        let too_fast = grant.last_polled_at.is_some_and(|t| now - t < POLL_INTERVAL);
        grant_store::touch_device_poll(c, &grant.id, now)?;
        return refused(if too_fast { GrantError::SlowDown } else { GrantError::AuthorizationPending });
    }
    let approved = match start_approved(
        c,
        client_id,
        grant.user_session_id.as_deref(),
        &grant.scope,
        (with_refresh, ttl),
        now,
        rng,
    )? {
        Ok(approved) => approved,
        Err(why) => return refused(GrantError::Invalid(why)),
    };
    if !grant_store::exchange_device(c, &grant.id, &approved.tokens.session_id, now)? {
        return Err(StoreError::Conflict("device code exchange"));
    }
    Ok(Exchange::Issued(Box::new(approved)))
}

/// RFC 7636 §4.6.
fn verify_pkce(challenge: &str, method: &str, verifier: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let computed = match method {
        "S256" => b64url(&Sha256::digest(verifier.as_bytes())),
        _ => verifier.to_string(),
    };
    constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// The browser session that approved a grant and its user, both still valid; or why not.
fn approver(
    c: &Connection,
    user_session_id: Option<&str>,
) -> StoreResult<Result<(session_store::BrowserSession, User), &'static str>> {
    let Some(browser) = user_session_id.map(|id| session_store::browser_by_id(c, id)).transpose()?.flatten() else {
        return Ok(Err("the authorization was not completed"));
    };
    if browser.finished_at.is_some() {
        return Ok(Err("the browser session has ended"));
    }
    match user_store::by_id(c, &browser.user_id)?.filter(User::is_valid) {
        Some(user) => Ok(Ok((browser, user))),
        None => Ok(Err("the user can no longer sign in")),
    }
}

/// Starts the session that a code or device grant issues: for the user who approved it in the
/// browser session `user_session_id` (see `approver`), with the grant's `scope`. `Err` says why it
/// cannot be issued.
fn start_approved(
    c: &Connection,
    client_id: &str,
    user_session_id: Option<&str>,
    scope: &str,
    (with_refresh, ttl): (bool, i64),
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<Result<Approved, &'static str>> {
    let (browser, user) = match approver(c, user_session_id)? {
        Ok(found) => found,
        Err(why) => return Ok(Err(why)),
    };
    let scope = Scope::parse(scope).unwrap_or_default();
    let new = NewSession {
        client_id,
        user_id: Some(&user.id),
        user_session_id: Some(&browser.id),
        scope: &scope,
        user_agent: None,
    };
    let tokens = oauth_sessions::start(c, new, with_refresh, ttl, now, rng)?;
    Ok(Ok(Approved { tokens, scope, user, auth_time: browser.authenticated_at, nonce: None }))
}

#[cfg(test)]
mod tests {
    use super::verify_pkce;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verify_pkce("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256", verifier));
        assert!(!verify_pkce(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "S256",
            "wrong-verifier-wrong-verifier-wrong-verifier"
        ));
        assert!(!verify_pkce("short", "plain", "short"));
    }
}
