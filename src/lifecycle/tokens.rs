//! Looking up an OAuth or personal access token and deciding whether it works right now, written
//! once for every surface that accepts one (introspection, the admin API).

use crate::config::PolicyData;
use crate::model::Scope;
use crate::model::scope::{MAS_ADMIN, SYNAPSE_ADMIN};
use crate::store::personal as personal_store;
use crate::store::sessions::SessionKind;
use crate::store::tokens::{self as token_store, TokenInfo};
use crate::store::{Store, StoreResult};
use crate::tokens::{TokenKind, hash_token};

/// What the store knows about an OAuth access or refresh token or a personal access token
/// (`None` for any other kind, and for tokens it does not know). Only the token's hash reaches
/// the database. A personal token's user is the user it acts as, and its `client_id` the client
/// that owns it, if a client does.
pub async fn lookup(store: &Store, kind: TokenKind, token: &str) -> StoreResult<Option<TokenInfo>> {
    let hash = hash_token(token);
    match kind {
        TokenKind::AccessToken => store.read(move |c| token_store::introspect_access(c, &hash)).await,
        TokenKind::RefreshToken => store.read(move |c| token_store::introspect_refresh(c, &hash)).await,
        TokenKind::PersonalAccessToken => store.read(move |c| personal_store::introspect(c, &hash)).await,
        _ => Ok(None),
    }
}

/// Whether a token works at `now`: neither revoked, consumed nor expired, its session not
/// finished, and its user (if it has one) neither locked nor deactivated.
pub fn is_active(info: &TokenInfo, now: i64) -> bool {
    !info.dead && !info.session_finished && info.user_valid && info.expires_at.is_none_or(|e| e > now)
}

/// The scope a token carries right now (fail closed): the administration scopes only while
/// their holder may still have them — a user demoted (flag cleared, or removed from
/// `policy.data.admin_users`) or a client removed from `policy.data.admin_clients` loses them at
/// its next request, whatever was granted earlier. A personal session keeps the
/// `urn:synapse:admin:*` its operator granted explicitly.
pub fn effective_scope(info: &TokenInfo, data: &PolicyData) -> Scope {
    let scope = Scope::parse(&info.scope).unwrap_or_default();
    if !scope.contains(MAS_ADMIN) && !scope.contains(SYNAPSE_ADMIN) {
        return scope;
    }
    let (mas_admin, synapse_admin) = match &info.username {
        Some(username) => {
            let admin = info.user_can_request_admin || data.is_admin_user(username);
            (admin, admin || info.synapse_admin_by_operator)
        }
        None => (info.client_id.as_deref().is_some_and(|c| data.is_admin_client(c)), false),
    };
    scope
        .iter()
        .filter(|t| (*t != MAS_ADMIN || mas_admin) && (*t != SYNAPSE_ADMIN || synapse_admin))
        .map(String::from)
        .collect()
}

/// The session behind a bearer token that works at `now` — an OAuth access token (`mat_…`) or a
/// personal access token (`mpt_…`) — and which kind of session that is; `None` for anything
/// else: garbage, another kind of token, unknown, revoked, expired, or its session ended.
pub async fn active_access_token(
    store: &Store,
    token: &str,
    now: i64,
) -> StoreResult<Option<(SessionKind, TokenInfo)>> {
    let (kind, session) = match TokenKind::check(token) {
        Some(TokenKind::AccessToken) => (TokenKind::AccessToken, SessionKind::OAuth2),
        Some(TokenKind::PersonalAccessToken) => (TokenKind::PersonalAccessToken, SessionKind::Personal),
        _ => return Ok(None),
    };
    Ok(lookup(store, kind, token).await?.filter(|info| is_active(info, now)).map(|info| (session, info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_rules() {
        let info = TokenInfo {
            token_id: "T".into(),
            created_at: 0,
            expires_at: Some(100),
            dead: false,
            first_used_at: None,
            session_id: "S".into(),
            session_finished: false,
            scope: String::new(),
            client_id: Some("C".into()),
            user_id: None,
            username: None,
            user_valid: true,
            user_can_request_admin: false,
            synapse_admin_by_operator: false,
        };
        assert!(is_active(&info, 99));
        assert!(!is_active(&info, 100), "expired at its expiry time");
        assert!(is_active(&TokenInfo { expires_at: None, ..info.clone() }, i64::MAX));
        assert!(!is_active(&TokenInfo { dead: true, ..info.clone() }, 0));
        assert!(!is_active(&TokenInfo { session_finished: true, ..info.clone() }, 0));
        assert!(!is_active(&TokenInfo { user_valid: false, ..info }, 0));
    }
}
