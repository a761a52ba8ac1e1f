-- The Matrix legacy login API (m.login.password / m.login.token) and its tokens.
CREATE TABLE compat_sessions (
    compat_session_id  TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id          TEXT NOT NULL,
    user_session_id    TEXT REFERENCES user_sessions (user_session_id) ON DELETE SET NULL,
    is_synapse_admin   INTEGER NOT NULL DEFAULT 0,
    human_name         TEXT,
    user_agent         TEXT,
    created_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    last_active_at     INTEGER
);
CREATE INDEX compat_sessions_user ON compat_sessions (user_id, finished_at);
CREATE INDEX compat_sessions_device ON compat_sessions (user_id, device_id) WHERE finished_at IS NULL;

CREATE TABLE compat_access_tokens (
    compat_access_token_id  TEXT PRIMARY KEY,
    compat_session_id       TEXT NOT NULL REFERENCES compat_sessions (compat_session_id) ON DELETE CASCADE,
    token_hash              TEXT NOT NULL UNIQUE,
    created_at              INTEGER NOT NULL,
    expires_at              INTEGER,
    revoked_at              INTEGER
);
CREATE INDEX compat_access_tokens_session ON compat_access_tokens (compat_session_id);

CREATE TABLE compat_refresh_tokens (
    compat_refresh_token_id  TEXT PRIMARY KEY,
    compat_session_id        TEXT NOT NULL REFERENCES compat_sessions (compat_session_id) ON DELETE CASCADE,
    compat_access_token_id   TEXT REFERENCES compat_access_tokens (compat_access_token_id) ON DELETE SET NULL,
    token_hash               TEXT NOT NULL UNIQUE,
    created_at               INTEGER NOT NULL,
    consumed_at              INTEGER
);
CREATE INDEX compat_refresh_tokens_session ON compat_refresh_tokens (compat_session_id);

-- SSO-redirect logins: created at /login/sso/redirect, fulfilled on the confirmation page,
-- exchanged once with m.login.token.
CREATE TABLE compat_sso_logins (
    compat_sso_login_id  TEXT PRIMARY KEY,
    redirect_uri         TEXT NOT NULL,
    login_token_hash     TEXT NOT NULL UNIQUE,
    user_session_id      TEXT REFERENCES user_sessions (user_session_id) ON DELETE CASCADE,
    compat_session_id    TEXT REFERENCES compat_sessions (compat_session_id) ON DELETE SET NULL,
    created_at           INTEGER NOT NULL,
    fulfilled_at         INTEGER,
    exchanged_at         INTEGER
);
