//! A user's email addresses: added and removed by an administrator, and the verification
//! workflow that the account page and registration share (a 6-digit code, 10 minutes, 5
//! attempts, sending rate-limited per client and per address). The homeserver gets the user's
//! whole address list again (provisioning) after every change.
//!
//! The workflow takes the `Mailer` (transport and templates) and the sending limits as
//! arguments: it knows no HTTP. Nothing here ever logs a code.

use std::net::IpAddr;

use super::Lifecycle;
use crate::email::Mailer;
use crate::store::StoreError;
use crate::store::email_codes::{self, EmailVerification};
use crate::store::users::{self as user_store, UserEmail};

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("email {0:?} is not valid")]
    Invalid(String),
    #[error("user email {0:?} already in use")]
    InUse(String),
    #[error("user ID {0} not found")]
    UserNotFound(String),
    #[error("user email ID {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds `email` to the user. Refused when another account (or this one) already has it.
pub async fn add(lc: &Lifecycle, user_id: &str, email: &str) -> Result<UserEmail, EmailError> {
    let email = email.trim().to_string();
    if !crate::email::valid_address(&email) {
        return Err(EmailError::Invalid(email));
    }
    let (id, address, now, email_id) = (user_id.to_string(), email.clone(), lc.clock.now(), lc.new_id());
    let added = lc
        .store
        .write(move |c| {
            if user_store::by_id(c, &id)?.is_none() {
                return Ok(Err(EmailError::UserNotFound(id)));
            }
            if user_store::by_email(c, &address)?.is_some() {
                return Ok(Err(EmailError::InUse(address)));
            }
            match user_store::insert_email(c, &email_id, &id, &address, now) {
                Ok(row) => Ok(Ok(row)),
                Err(StoreError::Conflict(_)) => Ok(Err(EmailError::InUse(address))),
                Err(e) => Err(e),
            }
        })
        .await??;
    lc.provision_user(&added.user_id).await;
    Ok(added)
}

/// Removes the address with this id from its user.
pub async fn remove(lc: &Lifecycle, email_id: &str) -> Result<UserEmail, EmailError> {
    let id = email_id.to_string();
    let removed = lc
        .store
        .write(move |c| {
            let Some(row) = user_store::email_by_id(c, &id)? else { return Ok(None) };
            Ok(user_store::delete_email(c, &id)?.then_some(row))
        })
        .await?
        .ok_or_else(|| EmailError::NotFound(email_id.to_string()))?;
    lc.provision_user(&removed.user_id).await;
    Ok(removed)
}

/// How long a verification code is accepted.
pub const CODE_TTL_SECS: i64 = 600;
/// Wrong codes allowed before the code stops working.
pub const MAX_CODE_ATTEMPTS: u32 = 5;

/// What the user is told when no more codes may be sent for now.
pub const TOO_MANY_CODES: &str = "Too many codes were sent. Wait a while and try again.";
/// What the user is told when the first code to an address could not be sent.
pub const FIRST_CODE_NOT_SENT: &str = "The email could not be sent. Check the address or try again later.";

/// The sending limits, kept by the surface that knows the client (`http`'s rate limiters).
pub trait SendLimits {
    /// Takes one send from the client at `ip`; `false` when none is left.
    fn per_ip(&self, ip: IpAddr) -> bool;
    /// Takes one send to `address` (lowercased); `false` when none is left.
    fn per_address(&self, address: &str) -> bool;
}

/// Whether a code may be sent to `address` for a client at `ip`: takes one from the per-IP limit
/// and, when that allows it, one from the per-address limit.
pub fn may_send_code(limits: &(dyn SendLimits + Sync), ip: IpAddr, address: &str) -> bool {
    limits.per_ip(ip) && limits.per_address(&address.to_lowercase())
}

#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Email(#[from] crate::email::EmailError),
}

fn new_code(rng: &dyn crate::rng::Rng) -> String {
    format!("{:06}", rng.below(1_000_000))
}

/// Starts verifying `email` (for `user_id`, or for an account being registered when `None`):
/// stores a fresh code and emails it. Returns the verification id.
pub async fn start_verification(
    lc: &Lifecycle,
    mailer: &Mailer,
    user_id: Option<&str>,
    email: &str,
) -> Result<String, VerificationError> {
    let now = lc.clock.now();
    let id = lc.new_id();
    let code = new_code(lc.rng.as_ref());
    let v = EmailVerification {
        id: id.clone(),
        user_id: user_id.map(String::from),
        email: email.to_string(),
        code_hash: email_codes::code_hash(&id, &code),
        attempts: 0,
        created_at: now,
        expires_at: now + CODE_TTL_SECS,
        verified_at: None,
    };
    lc.store
        .write(move |c| {
            // Old finished or expired codes are not needed for anything.
            email_codes::prune_verifications(c, now - 86_400)?;
            email_codes::insert_verification(c, &v)
        })
        .await?;
    crate::email::send_verification_code(mailer, email, &code, CODE_TTL_SECS / 60).await?;
    Ok(id)
}

/// Why a new code was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotResent {
    /// Too many codes for this client or this address (`may_send_code`).
    RateLimited,
    /// Storing or emailing the code failed (logged).
    Failed,
}

impl NotResent {
    /// What the user is told.
    pub fn message(self) -> &'static str {
        match self {
            NotResent::RateLimited => TOO_MANY_CODES,
            NotResent::Failed => "The email could not be sent. Try again later.",
        }
    }
}

/// Sends a new code for an unfinished verification (attempts start over; the old code stops
/// working), rate-limited like the first one (`may_send_code`).
pub async fn resend_code(
    lc: &Lifecycle,
    mailer: &Mailer,
    limits: &(dyn SendLimits + Sync),
    ip: IpAddr,
    verification: &EmailVerification,
) -> Result<(), NotResent> {
    if !may_send_code(limits, ip, &verification.email) {
        return Err(NotResent::RateLimited);
    }
    resend_verification(lc, mailer, verification).await.map_err(|e| {
        tracing::error!(error = %e, "cannot resend the verification code");
        NotResent::Failed
    })
}

async fn resend_verification(
    lc: &Lifecycle,
    mailer: &Mailer,
    verification: &EmailVerification,
) -> Result<(), VerificationError> {
    let now = lc.clock.now();
    let code = new_code(lc.rng.as_ref());
    let (id, hash) = (verification.id.clone(), email_codes::code_hash(&verification.id, &code));
    lc.store.write(move |c| email_codes::replace_code(c, &id, &hash, now, now + CODE_TTL_SECS)).await?;
    crate::email::send_verification_code(mailer, &verification.email, &code, CODE_TTL_SECS / 60).await?;
    Ok(())
}

/// What checking a code found.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right code: the verification is now marked done.
    Verified,
    /// Wrong code; this many attempts are left.
    Wrong {
        attempts_left: u32,
    },
    Expired,
    TooManyAttempts,
    AlreadyVerified,
}

impl CodeCheck {
    /// What the user is told when the code was not accepted; `None` when the address is verified
    /// (now or earlier).
    pub fn problem(&self) -> Option<String> {
        match self {
            CodeCheck::Verified | CodeCheck::AlreadyVerified => None,
            CodeCheck::Wrong { attempts_left: 1 } => Some(crate::i18n::current().s("form.code-wrong-one").into()),
            CodeCheck::Wrong { attempts_left } => {
                Some(crate::i18n::current().s1("form.code-wrong", "n", attempts_left))
            }
            CodeCheck::Expired => Some("This code has expired. Send a new one.".to_string()),
            CodeCheck::TooManyAttempts => Some(crate::i18n::current().s1("form.code-too-many", "n", MAX_CODE_ATTEMPTS)),
        }
    }
}

/// Checks `code` against a verification (counting the attempt).
pub async fn check_code(lc: &Lifecycle, verification: &EmailVerification, code: &str) -> Result<CodeCheck, StoreError> {
    let now = lc.clock.now();
    if verification.verified_at.is_some() {
        return Ok(CodeCheck::AlreadyVerified);
    }
    if verification.expires_at <= now {
        return Ok(CodeCheck::Expired);
    }
    if verification.attempts >= MAX_CODE_ATTEMPTS {
        return Ok(CodeCheck::TooManyAttempts);
    }
    let code: String = code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    let right = crate::crypto::constant_time_eq(
        email_codes::code_hash(&verification.id, &code).as_bytes(),
        verification.code_hash.as_bytes(),
    );
    let id = verification.id.clone();
    lc.store
        .write(move |c| {
            let attempts = email_codes::count_attempt(c, &id)?;
            if attempts > MAX_CODE_ATTEMPTS {
                return Ok(CodeCheck::TooManyAttempts);
            }
            if right {
                return Ok(if email_codes::mark_verified(c, &id, now)? {
                    CodeCheck::Verified
                } else {
                    CodeCheck::AlreadyVerified
                });
            }
            Ok(match MAX_CODE_ATTEMPTS - attempts {
                0 => CodeCheck::TooManyAttempts,
                left => CodeCheck::Wrong { attempts_left: left },
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let c = new_code(&crate::rng::OsRng);
            assert_eq!(c.len(), 6);
            assert!(c.chars().all(|c| c.is_ascii_digit()));
        }
    }
}
