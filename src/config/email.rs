//! `email`: how mail leaves this service (MAS's keys): `from`, `reply_to`, and a `transport` of
//! `blackhole` (the default: nothing is sent, the fact is logged) or `smtp`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, secrets::Secret};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The `From:` header, e.g. `"Example accounts" <accounts@example.org>`.
    #[serde(default = "default_from")]
    pub from: String,
    /// The `Reply-To:` header.
    #[serde(default = "default_from")]
    pub reply_to: String,
    #[serde(default)]
    pub transport: EmailTransportKind,
    /// `smtp`: plain (no TLS, for a local relay), tls (implicit TLS, port 465) or starttls (587).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SmtpMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Defaults by mode: 25 (plain), 465 (tls), 587 (starttls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTransportKind {
    #[default]
    Blackhole,
    Smtp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpMode {
    Plain,
    Tls,
    #[default]
    Starttls,
}

fn default_from() -> String {
    "\"Authentication Service\" <root@localhost>".into()
}

impl Default for EmailConfig {
    fn default() -> Self {
        serde_yaml::from_str("{}").unwrap_or_else(|_| unreachable!("all fields have defaults"))
    }
}

impl EmailConfig {
    pub(super) fn resolve_files(&mut self, base: &Path) -> Result<(), ConfigError> {
        if self.password.is_some() && self.password_file.is_some() {
            return Err(ConfigError::new("email", "set only one of `password` and `password_file`"));
        }
        if let Some(file) = &self.password_file {
            self.password = Some(Secret::new(super::read_secret_file(base, file, "email.password_file")?));
        }
        Ok(())
    }

    /// The SMTP port: configured, or the usual one for the mode.
    pub fn smtp_port(&self) -> u16 {
        self.port.unwrap_or(match self.mode.unwrap_or_default() {
            SmtpMode::Plain => 25,
            SmtpMode::Tls => 465,
            SmtpMode::Starttls => 587,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (path, value) in [("email.from", &self.from), ("email.reply_to", &self.reply_to)] {
            if value.parse::<lettre::message::Mailbox>().is_err() {
                return Err(ConfigError::new(
                    path,
                    format!(
                        "{value:?} is not an email address (use `name@example.org` or `\"Name\" <name@example.org>`)"
                    ),
                ));
            }
        }
        match self.transport {
            EmailTransportKind::Blackhole => Ok(()),
            EmailTransportKind::Smtp => {
                if self.hostname.as_deref().is_none_or(|h| h.trim().is_empty()) {
                    return Err(ConfigError::new("email.hostname", "the SMTP server's host name is required"));
                }
                if self.password.is_some() && self.username.is_none() {
                    return Err(ConfigError::new("email.username", "a password is set but no username"));
                }
                if self.username.is_some() && self.password.is_none() {
                    return Err(ConfigError::new("email.password", "a username is set but no password"));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<EmailConfig, ConfigError> {
        let mut c: EmailConfig = serde_yaml::from_str(yaml).map_err(|e| ConfigError::new("email", e.to_string()))?;
        c.resolve_files(Path::new("."))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_to_blackhole() {
        let c = parse("{}").expect("valid");
        assert_eq!(c.transport, EmailTransportKind::Blackhole);
        assert_eq!(c.from, "\"Authentication Service\" <root@localhost>");
    }

    #[test]
    fn smtp() {
        let c =
            parse("transport: smtp\nhostname: mail.example.org\nmode: tls\nusername: u\npassword: p\n").expect("valid");
        assert_eq!(c.smtp_port(), 465);
        assert_eq!(parse("transport: smtp\nhostname: h\n").expect("valid").smtp_port(), 587);
        assert_eq!(parse("transport: smtp\nhostname: h\nmode: plain\n").expect("valid").smtp_port(), 25);
        assert_eq!(parse("transport: smtp\n").unwrap_err().path, "email.hostname");
        assert_eq!(parse("transport: smtp\nhostname: h\nusername: u\n").unwrap_err().path, "email.password");
        assert_eq!(parse("from: not an address\n").unwrap_err().path, "email.from");
        assert!(parse("transport: sendmail\n").is_err());
        assert!(parse("password: a\npassword_file: /nonexistent\n").is_err());
    }
}
