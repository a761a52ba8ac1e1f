//! Outgoing email: the `Mailer` (SMTP through lettre with rustls, or a blackhole that only logs
//! that a message would have been sent) and the message templates. The verification workflow
//! that sends codes lives in `lifecycle::emails`; this module knows no HTTP.
//!
//! Nothing here ever logs a code, a link or a password.

use std::time::Duration;

use askama::Template;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailConfig, EmailTransportKind, SmtpMode};
use crate::i18n::Locale;

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
    /// What mails call this service (`branding.service_name`, else "<server name> accounts").
    service_name: String,
    from: Mailbox,
    reply_to: Mailbox,
    transport: Transport,
}

impl Mailer {
    /// `hello_name` is the name given in SMTP `EHLO` (the public host name of this service).
    pub fn new(config: &EmailConfig, hello_name: &str, service_name: String) -> anyhow::Result<Mailer> {
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
        Ok(Mailer { service_name, from, reply_to, transport })
    }

    /// A mailer that sends nothing (tests, tools).
    pub fn blackhole() -> Mailer {
        let addr: Mailbox = "\"Authentication Service\" <root@localhost>".parse().unwrap_or_else(|_| unreachable!());
        Mailer {
            service_name: "Authentication Service".into(),
            from: addr.clone(),
            reply_to: addr,
            transport: Transport::Blackhole,
        }
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

/// Sends the verification code for `email` (accepted for `minutes`).
pub async fn send_verification_code(mailer: &Mailer, email: &str, code: &str, minutes: i64) -> Result<(), EmailError> {
    let name = mailer.service_name.as_str();
    // In the language of the page that asked for it.
    let l = crate::i18n::current();
    let html = VerificationHtml { l, service_name: name, code, minutes }.render()?;
    let text = VerificationText { l, service_name: name, code, minutes }.render()?;
    let subject = l.s1("email.verification.subject", "code", code);
    mailer.send("verification code", email, &subject, html, text).await
}

/// Sends a password-recovery link for the account `mxid` to `email`.
pub async fn send_recovery_link(mailer: &Mailer, email: &str, mxid: &str, link: &str) -> Result<(), EmailError> {
    let name = mailer.service_name.as_str();
    let minutes = RECOVERY_TTL_SECS / 60;
    let l = crate::i18n::current();
    let html = RecoveryHtml { l, service_name: name, mxid, link, minutes }.render()?;
    let text = RecoveryText { l, service_name: name, mxid, link, minutes }.render()?;
    let subject = l.s1("email.recovery.subject", "mxid", mxid);
    mailer.send("password recovery", email, &subject, html, text).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
