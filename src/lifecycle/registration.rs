//! Self-registration: password strength (zxcvbn), registration tokens, and creating the user
//! together with the token use and the accepted terms in one write.

use crate::clock::Clock;
use crate::crypto::password::PasswordManager;
use crate::model::User;
use crate::model::user::check_localpart;
use crate::rng::Rng;
use crate::store::pending_registrations::{self as pending_store, PendingRegistration};
use crate::store::registration_tokens::{self as token_store, RegistrationToken, TokenProblem};
use crate::store::{Store, StoreError, users as user_store};

use super::users::UserError;

/// zxcvbn looks at this many characters at most (longer passwords only get stronger, and the
/// estimator's cost grows with the length).
const STRENGTH_INPUT_LIMIT: usize = 100;

/// What zxcvbn thinks of a password, for the strength meter.
#[derive(Debug, Clone)]
pub struct Strength {
    /// 0 (too guessable) to 4 (very unguessable).
    pub score: u8,
    pub minimum: u8,
    pub warning: Option<String>,
    pub suggestions: Vec<String>,
}

impl Strength {
    pub fn acceptable(&self) -> bool {
        self.score >= self.minimum
    }

    /// A word for the score.
    pub fn label(&self) -> &'static str {
        match self.score {
            0 => "Very weak",
            1 => "Weak",
            2 => "Fair",
            3 => "Strong",
            _ => "Very strong",
        }
    }
}

/// Scores `password`; `user_inputs` (username, display name, server name…) count as guessable.
pub fn strength(password: &str, minimum: u8, user_inputs: &[&str]) -> Strength {
    let cut: String = password.chars().take(STRENGTH_INPUT_LIMIT).collect();
    let inputs: Vec<&str> = user_inputs.iter().copied().filter(|s| !s.is_empty()).collect();
    let entropy = zxcvbn::zxcvbn(&cut, &inputs);
    let (warning, suggestions) = match entropy.feedback() {
        Some(f) => (f.warning().map(|w| w.to_string()), f.suggestions().iter().map(|s| s.to_string()).collect()),
        None => (None, Vec::new()),
    };
    let mut s = Strength { score: u8::from(entropy.score()), minimum, warning, suggestions };
    if !s.acceptable() && s.warning.is_none() && s.suggestions.is_empty() {
        s.suggestions.push("Add another word or two. Uncommon words are better.".into());
    }
    s
}

/// Longest password accepted: argon2 takes any length, this bounds the work per request.
pub const MAX_PASSWORD_LENGTH: usize = 1024;

/// Hint shown under every "new password" field.
pub const NEW_PASSWORD_HINT: &str = "Make it long and hard to guess: a few uncommon words work well.";

/// Checks a new password (registration, password change, recovery) against the server's
/// `passwords.minimum_complexity`; `user_inputs` (username, display name, server name…) count as
/// guessable. Returns the strength for a meter, and why the password is refused, in words.
pub fn check_new_password(password: &str, minimum: u8, user_inputs: &[&str]) -> (Option<Strength>, Option<String>) {
    if password.is_empty() {
        return (None, Some("Choose a password.".into()));
    }
    if password.chars().count() > MAX_PASSWORD_LENGTH {
        return (None, Some(crate::i18n::current().s1("form.too-long", "n", MAX_PASSWORD_LENGTH)));
    }
    let s = strength(password, minimum, user_inputs);
    let problem = (!s.acceptable()).then(|| {
        // In the page's language; zxcvbn's advice is English, translated by its text.
        let l = crate::i18n::current();
        let why = s.warning.as_ref().or_else(|| s.suggestions.first()).map(|w| l.tr(w).into_owned());
        let label = l.tr(s.label()).to_lowercase();
        let (score, minimum) = (s.score.to_string(), s.minimum.to_string());
        let args = [("label", label.as_str()), ("score", score.as_str()), ("minimum", minimum.as_str())];
        match why {
            Some(w) => l.text("form.too-easy-why", &[args.as_slice(), &[("why", w.as_str())]].concat()),
            None => l.text("form.too-easy", &args),
        }
    });
    (Some(s), problem)
}

/// A new registration token as the administrator asked for it.
pub fn new_token(
    token: Option<String>,
    usage_limit: Option<u32>,
    expires_in: Option<i64>,
    now: i64,
    rng: &dyn Rng,
) -> RegistrationToken {
    RegistrationToken {
        id: rng.id_at(now),
        token: token.unwrap_or_else(|| rng.alnum(20)),
        usage_limit,
        times_used: 0,
        created_at: now,
        last_used_at: None,
        expires_at: expires_in.map(|s| now.saturating_add(s)),
        revoked_at: None,
    }
}

impl TokenProblem {
    pub fn message(self) -> &'static str {
        match self {
            TokenProblem::Unknown => "This registration token is not valid. Check it and try again.",
            TokenProblem::Revoked => "This registration token has been revoked.",
            TokenProblem::Expired => "This registration token has expired.",
            TokenProblem::Exhausted => "This registration token has been used up.",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error("registration token: {0:?}")]
    Token(TokenProblem),
    #[error("the email address is used by another account")]
    EmailInUse,
    #[error("the registration was already completed")]
    AlreadyCompleted,
}

impl From<StoreError> for RegistrationError {
    fn from(e: StoreError) -> Self {
        RegistrationError::User(e.into())
    }
}

pub struct NewRegistration {
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
    /// Required when the server requires tokens; consumed in the same write as the user.
    pub token: Option<String>,
    /// The terms-of-service URL the user accepted, if the server has terms.
    pub accepted_terms: Option<String>,
}

/// Checks a token without using it (for an early, friendly answer; `register` decides).
pub async fn check_token(store: &Store, token: &str, now: i64) -> Result<(), RegistrationError> {
    let t = token.to_string();
    match store.read(move |c| token_store::by_token(c, &t)).await? {
        None => Err(RegistrationError::Token(TokenProblem::Unknown)),
        Some(t) => t.check(now).map_err(RegistrationError::Token),
    }
}

/// Creates the user with its password, uses the token and records the terms — all or nothing.
/// The homeserver side (availability, provisioning) is the caller's.
pub async fn register(
    store: &Store,
    passwords: &PasswordManager,
    clock: &dyn Clock,
    rng: &dyn Rng,
    new: NewRegistration,
) -> Result<User, RegistrationError> {
    check_localpart(&new.username).map_err(UserError::InvalidUsername)?;
    let (version, hash) = passwords.hash(new.password).await.map_err(UserError::from)?;
    let now = clock.now();
    let user = User {
        id: rng.id(clock),
        username: new.username,
        display_name: new.display_name,
        created_at: now,
        locked_at: None,
        deactivated_at: None,
        can_request_admin: false,
    };
    let (row, token, terms) = (user.clone(), new.token, new.accepted_terms);
    let (password_id, terms_id) = (rng.id(clock), rng.id(clock));
    let outcome = store
        .write(move |c| {
            if let Some(t) = &token {
                if let Err(problem) = token_store::consume(c, t, now)? {
                    return Ok(Err(problem));
                }
            }
            user_store::insert(c, &row)?;
            user_store::set_password(c, &password_id, &row.id, &hash, version, now)?;
            if let Some(url) = &terms {
                token_store::accept_terms(c, &terms_id, &row.id, url, now)?;
            }
            Ok(Ok(()))
        })
        .await?;
    outcome.map_err(RegistrationError::Token)?;
    Ok(user)
}

/// Creates the user of a pending registration whose email address was verified: the user, its
/// password, the token use, the accepted terms, the verified address and the completion mark in
/// one write. The homeserver side (availability, provisioning) is the caller's.
pub async fn complete_pending(
    store: &Store,
    clock: &dyn Clock,
    rng: &dyn Rng,
    pending: &PendingRegistration,
    email: &str,
) -> Result<User, RegistrationError> {
    check_localpart(&pending.username).map_err(UserError::InvalidUsername)?;
    let now = clock.now();
    let user = User {
        id: rng.id(clock),
        username: pending.username.clone(),
        display_name: pending.display_name.clone(),
        created_at: now,
        locked_at: None,
        deactivated_at: None,
        can_request_admin: false,
    };
    let (row, p, email) = (user.clone(), pending.clone(), email.to_string());
    let (password_id, terms_id, email_id) = (rng.id(clock), rng.id(clock), rng.id(clock));
    let outcome = store
        .write(move |c| {
            // Checks first: a refusal returns before anything is changed.
            if user_store::by_email(c, &email)?.is_some() {
                return Ok(Err(RegistrationError::EmailInUse));
            }
            if let Some(token_id) = &p.registration_token_id {
                let Some(t) = pending_store::token_of(c, token_id)? else {
                    return Ok(Err(RegistrationError::Token(TokenProblem::Unknown)));
                };
                // Changes nothing when the token cannot be used.
                if let Err(problem) = token_store::consume(c, &t, now)? {
                    return Ok(Err(RegistrationError::Token(problem)));
                }
            }
            // From here on, any error rolls the whole job back (its savepoint).
            if !pending_store::complete(c, &p.id, now)? {
                return Err(StoreError::Conflict("pending registration"));
            }
            user_store::insert(c, &row)?;
            user_store::set_password(c, &password_id, &row.id, &p.password_hash, p.password_version, now)?;
            if let Some(url) = &p.accepted_terms {
                token_store::accept_terms(c, &terms_id, &row.id, url, now)?;
            }
            user_store::add_email(c, &email_id, &row.id, &email, now)?;
            Ok(Ok(()))
        })
        .await;
    match outcome {
        Ok(Ok(())) => Ok(user),
        Ok(Err(e)) => Err(e),
        Err(StoreError::Conflict("pending registration")) => Err(RegistrationError::AlreadyCompleted),
        Err(StoreError::Conflict("email")) => Err(RegistrationError::EmailInUse),
        Err(e) => Err(e.into()),
    }
}

/// `2025-01-31 13:05 UTC` (for the token list).
pub fn format_utc(t: i64) -> String {
    let (year, month, day) = crate::clock::civil_from_days(t.div_euclid(86_400));
    let secs = t.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_strong_passwords() {
        let weak = strength("password", 3, &[]);
        assert!(!weak.acceptable());
        assert!(weak.score <= 1);
        assert!(weak.warning.is_some() || !weak.suggestions.is_empty());
        let strong = strength("correct horse battery staple wombat", 3, &[]);
        assert!(strong.acceptable(), "{strong:?}");
        let own_name = strength("alice", 1, &["alice"]);
        assert!(!own_name.acceptable());
        assert!(strength("x", 0, &[]).acceptable());
    }

    #[test]
    fn new_passwords_are_checked_against_the_minimum() {
        let (s, problem) = check_new_password("password1", 3, &[]);
        assert!(s.is_some_and(|s| !s.acceptable()));
        assert!(problem.is_some_and(|p| p.contains("too easy to guess") && p.contains("at least 3 of 4")));
        assert_eq!(check_new_password("", 0, &[]).1.as_deref(), Some("Choose a password."));
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_LENGTH + 1), 0, &[]).1.is_some());
        assert!(check_new_password("correct horse battery staple wombat", 3, &["alice"]).1.is_none());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_709_210_096), "2024-02-29 12:34 UTC");
    }

    /// `new_token` drawing from the OS.
    fn new_token(token: Option<String>, limit: Option<u32>, expires_in: Option<i64>, now: i64) -> RegistrationToken {
        super::new_token(token, limit, expires_in, now, &crate::rng::OsRng)
    }

    #[test]
    fn token_checks() {
        let mut t = new_token(Some("abc".into()), Some(1), Some(60), 1000);
        assert_eq!(t.check(1000), Ok(()));
        assert_eq!(t.check(1060), Err(TokenProblem::Expired));
        t.times_used = 1;
        assert_eq!(t.check(1000), Err(TokenProblem::Exhausted));
        t.revoked_at = Some(1);
        assert_eq!(t.check(1000), Err(TokenProblem::Revoked));
        assert_eq!(new_token(None, None, None, 0).token.len(), 20);
    }
}
