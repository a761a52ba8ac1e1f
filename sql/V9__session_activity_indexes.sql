-- Inactive-session expiry (experimental.inactive_session_expiration) lists active sessions, least
-- recently seen first, every few minutes inside a write. Finished sessions are kept, so without
-- these the listing would scan every session ever created; the indexes hold active sessions only.
CREATE INDEX oauth2_sessions_last_seen ON oauth2_sessions (coalesce(last_active_at, created_at), oauth2_session_id)
    WHERE finished_at IS NULL;
CREATE INDEX compat_sessions_last_seen ON compat_sessions (coalesce(last_active_at, created_at), compat_session_id)
    WHERE finished_at IS NULL;
CREATE INDEX user_sessions_last_seen ON user_sessions (coalesce(last_active_at, created_at), user_session_id)
    WHERE finished_at IS NULL;
