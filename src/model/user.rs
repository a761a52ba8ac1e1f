use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub created_at: i64,
    pub locked_at: Option<i64>,
    pub deactivated_at: Option<i64>,
    pub can_request_admin: bool,
}

impl User {
    /// Locked or deactivated users cannot sign in and their tokens are inactive.
    pub fn is_valid(&self) -> bool {
        self.locked_at.is_none() && self.deactivated_at.is_none()
    }
}

/// Longest display name, of a user or of a device, in characters (Synapse's limit).
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;

/// Why a username cannot be used, in words fit for a form.
pub fn check_localpart(localpart: &str) -> Result<(), &'static str> {
    if localpart.is_empty() {
        return Err("Username must not be empty");
    }
    if localpart.len() > 255 {
        return Err("Username is too long");
    }
    if localpart.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Username must not consist only of digits");
    }
    if !localpart.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+')) {
        return Err("Username may only contain a-z, 0-9 and . _ = - / +");
    }
    Ok(())
}
