//! Outgoing email: the `Mailer` (SMTP through lettre with rustls, or a blackhole that only logs
//! that a message would have been sent), the message templates, and email verification codes
//! (6 digits, 10 minutes, 5 attempts, sending rate-limited) that the account page and registration
//! share, with what the user is told when a code is refused or not sent.
//!
//! Nothing here ever logs a code, a link or a password.

use std::net::IpAddr;
use std::time::Duration;

use askama::Template;
use axum::http::StatusCode;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailConfig, EmailTransportKind, SmtpMode};
use crate::http::AppState;
use crate::i18n::Locale;
use crate::store::email_codes::{self, EmailVerification};

/// How long a verification code is accepted.
pub const CODE_TTL_SECS: i64 = 600;
/// Wrong codes allowed before the code stops working.
pub const MAX_CODE_ATTEMPTS: u32 = 5;
/// How long a recovery link works.
pub const RECOVERY_TTL_SECS: i64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("invalid email address: {0}")]
    Address(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("cannot render the message: {0}")]
    Render(#[from] askama::Error),
    #[error("the mail server refused or could not be reached: {0}")]
    Transport(String),
}

#[derive(Clone)]
enum Transport {
    Blackhole,
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends messages as configured in `email`. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    reply_to: Mailbox,
    transport: Transport,
}

impl Mailer {
    /// `hello_name` is the name given in SMTP `EHLO` (the public host name of this service).
    pub fn new(config: &EmailConfig, hello_name: &str) -> anyhow::Result<Mailer> {
        let from: Mailbox = config.from.parse().map_err(|e| anyhow::anyhow!("email.from: {e}"))?;
        let reply_to: Mailbox = config.reply_to.parse().map_err(|e| anyhow::anyhow!("email.reply_to: {e}"))?;
        let transport = match config.transport {
            EmailTransportKind::Blackhole => Transport::Blackhole,
            EmailTransportKind::Smtp => {
                let host = config.hostname.as_deref().unwrap_or("localhost");
                let builder = match config.mode.unwrap_or_default() {
                    SmtpMode::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                    SmtpMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
                    SmtpMode::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
                };
                let mut builder = builder
                    .port(config.smtp_port())
                    .timeout(Some(Duration::from_secs(15)))
                    .hello_name(ClientId::Domain(hello_name.to_string()));
                if let (Some(user), Some(password)) = (&config.username, &config.password) {
                    builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_string()));
                }
                Transport::Smtp(builder.build())
            }
        };
        Ok(Mailer { from, reply_to, transport })
    }

    /// A mailer that sends nothing (tests, tools).
    pub fn blackhole() -> Mailer {
        let addr: Mailbox = "\"Authentication Service\" <root@localhost>".parse().unwrap_or_else(|_| unreachable!());
        Mailer { from: addr.clone(), reply_to: addr, transport: Transport::Blackhole }
    }

    pub fn is_blackhole(&self) -> bool {
        matches!(self.transport, Transport::Blackhole)
    }

    /// Sends one message with an HTML and a plain-text part. The outcome is logged with `kind`
    /// (what sort of mail it is) only: subjects and bodies carry codes and links, which must
    /// never reach a log. Failures are returned.
    pub async fn send(
        &self,
        kind: &'static str,
        to: &str,
        subject: &str,
        html: String,
        text: String,
    ) -> Result<(), EmailError> {
        let result = self.try_send(to, subject, html, text).await;
        match &result {
            Ok(()) => tracing::info!(kind, blackhole = self.is_blackhole(), "email sent"),
            Err(e) => tracing::error!(kind, error = %e, "email not sent"),
        }
        result
    }

    async fn try_send(&self, to: &str, subject: &str, html: String, text: String) -> Result<(), EmailError> {
        let to: Mailbox = to.parse().map_err(|e: lettre::address::AddressError| EmailError::Address(e.to_string()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .reply_to(self.reply_to.clone())
            .to(to)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| EmailError::Build(e.to_string()))?;
        match &self.transport {
            Transport::Blackhole => Ok(()),
            Transport::Smtp(smtp) => {
                smtp.send(message).await.map(|_| ()).map_err(|e| EmailError::Transport(e.to_string()))
            }
        }
    }
}

/// Whether `s` is an address we can send to (`local@domain`, at most 254 characters).
pub fn valid_address(s: &str) -> bool {
    s.len() <= 254 && s.parse::<lettre::Address>().is_ok()
}

#[derive(Template)]
#[template(path = "emails/verification.html")]
struct VerificationHtml<'a> {
    l: Locale,
    service_name: &'a str,
    code: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "emails/verification.txt")]
struct VerificationText<'a> {
    l: Locale,
    service_name: &'a str,
    code: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "emails/recovery.html")]
struct RecoveryHtml<'a> {
    l: Locale,
    service_name: &'a str,
    mxid: &'a str,
    link: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "emails/recovery.txt")]
struct RecoveryText<'a> {
    l: Locale,
    service_name: &'a str,
    mxid: &'a str,
    link: &'a str,
    minutes: i64,
}

fn service_name(state: &AppState) -> String {
    state.config.branding.service_name.clone().unwrap_or_else(|| format!("{} accounts", state.config.matrix.homeserver))
}

/// Sends the verification code for `email`.
pub async fn send_verification_code(state: &AppState, email: &str, code: &str) -> Result<(), EmailError> {
    let name = service_name(state);
    let minutes = CODE_TTL_SECS / 60;
    // In the language of the page that asked for it.
    let l = crate::i18n::current();
    let html = VerificationHtml { l, service_name: &name, code, minutes }.render()?;
    let text = VerificationText { l, service_name: &name, code, minutes }.render()?;
    let subject = l.s1("email.verification.subject", "code", code);
    state.mailer.send("verification code", email, &subject, html, text).await
}

/// Sends a password-recovery link for the account `mxid` to `email`.
pub async fn send_recovery_link(state: &AppState, email: &str, mxid: &str, link: &str) -> Result<(), EmailError> {
    let name = service_name(state);
    let minutes = RECOVERY_TTL_SECS / 60;
    let l = crate::i18n::current();
    let html = RecoveryHtml { l, service_name: &name, mxid, link, minutes }.render()?;
    let text = RecoveryText { l, service_name: &name, mxid, link, minutes }.render()?;
    let subject = l.s1("email.recovery.subject", "mxid", mxid);
    state.mailer.send("password recovery", email, &subject, html, text).await
}

fn new_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// Starts verifying `email` (for `user_id`, or for an account being registered when `None`):
/// stores a fresh code and emails it. Returns the verification id.
pub async fn start_verification(state: &AppState, user_id: Option<&str>, email: &str) -> anyhow::Result<String> {
    let now = state.now();
    let id = ulid::Ulid::new().to_string();
    let code = new_code();
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
    state
        .store
        .write(move |c| {
            // Old finished or expired codes are not needed for anything.
            email_codes::prune_verifications(c, now - 86_400)?;
            email_codes::insert_verification(c, &v)
        })
        .await?;
    send_verification_code(state, email, &code).await?;
    Ok(id)
}

/// What the user is told when no more codes may be sent for now.
pub const TOO_MANY_CODES: &str = "Too many codes were sent. Wait a while and try again.";
/// What the user is told when the first code to an address could not be sent.
pub const FIRST_CODE_NOT_SENT: &str = "The email could not be sent. Check the address or try again later.";

/// Whether a code may be sent to `address` for a client at `ip`: takes one from the per-IP limit
/// and, when that allows it, one from the per-address limit.
pub fn may_send_code(state: &AppState, ip: IpAddr, address: &str) -> bool {
    state.limiters.email_per_ip.check_ip(ip).is_ok()
        && state.limiters.email_per_address.check(&address.to_lowercase()).is_ok()
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
    pub fn status(self) -> StatusCode {
        match self {
            NotResent::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            NotResent::Failed => StatusCode::BAD_GATEWAY,
        }
    }

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
pub async fn resend_code(state: &AppState, ip: IpAddr, verification: &EmailVerification) -> Result<(), NotResent> {
    if !may_send_code(state, ip, &verification.email) {
        return Err(NotResent::RateLimited);
    }
    resend_verification(state, verification).await.map_err(|e| {
        tracing::error!(error = %e, "cannot resend the verification code");
        NotResent::Failed
    })
}

async fn resend_verification(state: &AppState, verification: &EmailVerification) -> anyhow::Result<()> {
    let now = state.now();
    let code = new_code();
    let (id, hash) = (verification.id.clone(), email_codes::code_hash(&verification.id, &code));
    state.store.write(move |c| email_codes::replace_code(c, &id, &hash, now, now + CODE_TTL_SECS)).await?;
    send_verification_code(state, &verification.email, &code).await?;
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
            CodeCheck::Wrong { attempts_left } => Some(format!(
                "That code is not right. {attempts_left} {} left.",
                if *attempts_left == 1 { "attempt" } else { "attempts" }
            )),
            CodeCheck::Expired => Some("This code has expired. Send a new one.".to_string()),
            CodeCheck::TooManyAttempts => Some(format!(
                "The code was entered wrong {MAX_CODE_ATTEMPTS} times and no longer works. Send a new one."
            )),
        }
    }
}

/// Checks `code` against a verification (counting the attempt).
pub async fn check_code(state: &AppState, verification: &EmailVerification, code: &str) -> anyhow::Result<CodeCheck> {
    let now = state.now();
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
    state
        .store
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
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let c = new_code();
            assert_eq!(c.len(), 6);
            assert!(c.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn addresses() {
        assert!(valid_address("alice@example.org"));
        assert!(!valid_address("alice"));
        assert!(!valid_address("alice@"));
        assert!(!valid_address("<alice@example.org>"));
        assert!(!valid_address(&format!("{}@example.org", "a".repeat(260))));
    }

    #[tokio::test]
    async fn blackhole_sends_nothing() {
        let m = Mailer::blackhole();
        m.send("test", "bob@example.org", "hi", "<p>hi</p>".into(), "hi".into()).await.expect("blackhole");
        assert!(m.send("test", "not an address", "hi", String::new(), String::new()).await.is_err());
    }
}
