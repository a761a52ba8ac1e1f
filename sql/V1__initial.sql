-- Core schema. Ids are ULID strings, times are unix seconds, secrets and tokens are stored hashed
-- or encrypted. Lifecycles are soft (nullable *_at columns) and cleaned up by jobs.

CREATE TABLE site_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    pem         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    user_id            TEXT PRIMARY KEY,
    username           TEXT NOT NULL,
    display_name       TEXT,
    created_at         INTEGER NOT NULL,
    locked_at          INTEGER,
    deactivated_at     INTEGER,
    can_request_admin  INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX users_username_unique ON users (lower(username));

CREATE TABLE user_passwords (
    user_password_id  TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    hashed_password   TEXT NOT NULL,
    version           INTEGER NOT NULL,
    upgraded_from_id  TEXT REFERENCES user_passwords (user_password_id),
    created_at        INTEGER NOT NULL
);
CREATE INDEX user_passwords_user ON user_passwords (user_id, created_at);

CREATE TABLE user_emails (
    user_email_id  TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    email          TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX user_emails_user_email ON user_emails (user_id, lower(email));
CREATE INDEX user_emails_email ON user_emails (lower(email));

-- OAuth clients; `metadata` is the RFC 7591 client metadata as JSON.
CREATE TABLE oauth2_clients (
    client_id                TEXT PRIMARY KEY,
    metadata                 TEXT NOT NULL,
    encrypted_client_secret  TEXT,
    is_static                INTEGER NOT NULL DEFAULT 0,
    metadata_digest          TEXT UNIQUE,
    created_at               INTEGER NOT NULL
);

-- Browser sessions (the cookie).
CREATE TABLE user_sessions (
    user_session_id   TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at        INTEGER NOT NULL,
    authenticated_at  INTEGER NOT NULL,
    finished_at       INTEGER,
    user_agent        TEXT,
    last_active_at    INTEGER,
    last_active_ip    TEXT
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);

CREATE TABLE oauth2_sessions (
    oauth2_session_id  TEXT PRIMARY KEY,
    user_id            TEXT REFERENCES users (user_id) ON DELETE CASCADE,
    user_session_id    TEXT REFERENCES user_sessions (user_session_id) ON DELETE SET NULL,
    client_id          TEXT NOT NULL REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    scope              TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    last_active_at     INTEGER,
    last_active_ip     TEXT,
    user_agent         TEXT,
    human_name         TEXT
);
CREATE INDEX oauth2_sessions_user ON oauth2_sessions (user_id, finished_at);
CREATE INDEX oauth2_sessions_client ON oauth2_sessions (client_id);

CREATE TABLE oauth2_authorization_grants (
    grant_id               TEXT PRIMARY KEY,
    client_id              TEXT NOT NULL REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    redirect_uri           TEXT NOT NULL,
    scope                  TEXT NOT NULL,
    state                  TEXT,
    nonce                  TEXT,
    response_mode          TEXT NOT NULL,
    code_challenge         TEXT,
    code_challenge_method  TEXT,
    prompt                 TEXT,
    login_hint             TEXT,
    user_session_id        TEXT REFERENCES user_sessions (user_session_id) ON DELETE CASCADE,
    code_hash              TEXT UNIQUE,
    oauth2_session_id      TEXT REFERENCES oauth2_sessions (oauth2_session_id) ON DELETE SET NULL,
    created_at             INTEGER NOT NULL,
    fulfilled_at           INTEGER,
    exchanged_at           INTEGER,
    cancelled_at           INTEGER
);

CREATE TABLE oauth2_access_tokens (
    access_token_id    TEXT PRIMARY KEY,
    oauth2_session_id  TEXT NOT NULL REFERENCES oauth2_sessions (oauth2_session_id) ON DELETE CASCADE,
    token_hash         TEXT NOT NULL UNIQUE,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER,
    revoked_at         INTEGER,
    first_used_at      INTEGER
);
CREATE INDEX oauth2_access_tokens_session ON oauth2_access_tokens (oauth2_session_id);

CREATE TABLE oauth2_refresh_tokens (
    refresh_token_id       TEXT PRIMARY KEY,
    oauth2_session_id      TEXT NOT NULL REFERENCES oauth2_sessions (oauth2_session_id) ON DELETE CASCADE,
    token_hash             TEXT NOT NULL UNIQUE,
    access_token_id        TEXT REFERENCES oauth2_access_tokens (access_token_id) ON DELETE SET NULL,
    created_at             INTEGER NOT NULL,
    consumed_at            INTEGER,
    revoked_at             INTEGER,
    next_refresh_token_id  TEXT REFERENCES oauth2_refresh_tokens (refresh_token_id) ON DELETE SET NULL
);
CREATE INDEX oauth2_refresh_tokens_session ON oauth2_refresh_tokens (oauth2_session_id);

-- RFC 8628 device authorization grants.
CREATE TABLE oauth2_device_code_grants (
    device_grant_id    TEXT PRIMARY KEY,
    client_id          TEXT NOT NULL REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    scope              TEXT NOT NULL,
    user_code          TEXT NOT NULL UNIQUE,
    device_code_hash   TEXT NOT NULL UNIQUE,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    fulfilled_at       INTEGER,
    rejected_at        INTEGER,
    exchanged_at       INTEGER,
    last_polled_at     INTEGER,
    user_session_id    TEXT REFERENCES user_sessions (user_session_id) ON DELETE CASCADE,
    oauth2_session_id  TEXT REFERENCES oauth2_sessions (oauth2_session_id) ON DELETE SET NULL
);

-- Seen client-assertion JWT ids, kept until the assertion expires (replay protection).
CREATE TABLE client_assertion_jtis (
    client_id   TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
