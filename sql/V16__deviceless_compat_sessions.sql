-- Compat sessions without a device: Synapse access tokens that never had one (issued through its
-- admin API, by appservice tooling, or by very old clients) are imported as such, as MAS does.
--
-- SQLite cannot drop a NOT NULL constraint in place, so `compat_sessions` is rebuilt. Foreign keys
-- are on and cannot be turned off inside the migration's transaction, and dropping the old table
-- would cascade into the tokens that reference it; so its three child tables are rebuilt with it:
-- the new tables are filled, the old ones dropped (children first, so nothing cascades), and the
-- new ones renamed into place (a rename rewrites the references that point at the renamed
-- table). Every column, constraint and index is as before; only `device_id` may now be NULL.

CREATE TABLE compat_sessions_new (
    compat_session_id  TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id          TEXT,
    user_session_id    TEXT REFERENCES user_sessions (user_session_id) ON DELETE SET NULL,
    is_synapse_admin   INTEGER NOT NULL DEFAULT 0,
    human_name         TEXT,
    user_agent         TEXT,
    created_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    last_active_at     INTEGER,
    last_active_ip     TEXT
);
INSERT INTO compat_sessions_new (compat_session_id, user_id, device_id, user_session_id, is_synapse_admin,
                                 human_name, user_agent, created_at, finished_at, last_active_at, last_active_ip)
SELECT compat_session_id, user_id, device_id, user_session_id, is_synapse_admin,
       human_name, user_agent, created_at, finished_at, last_active_at, last_active_ip
FROM compat_sessions;

CREATE TABLE compat_access_tokens_new (
    compat_access_token_id  TEXT PRIMARY KEY,
    compat_session_id       TEXT NOT NULL REFERENCES compat_sessions_new (compat_session_id) ON DELETE CASCADE,
    token_hash              TEXT NOT NULL UNIQUE,
    created_at              INTEGER NOT NULL,
    expires_at              INTEGER,
    revoked_at              INTEGER
);
INSERT INTO compat_access_tokens_new (compat_access_token_id, compat_session_id, token_hash, created_at,
                                      expires_at, revoked_at)
SELECT compat_access_token_id, compat_session_id, token_hash, created_at, expires_at, revoked_at
FROM compat_access_tokens;

CREATE TABLE compat_refresh_tokens_new (
    compat_refresh_token_id  TEXT PRIMARY KEY,
    compat_session_id        TEXT NOT NULL REFERENCES compat_sessions_new (compat_session_id) ON DELETE CASCADE,
    compat_access_token_id   TEXT REFERENCES compat_access_tokens_new (compat_access_token_id) ON DELETE SET NULL,
    token_hash               TEXT NOT NULL UNIQUE,
    created_at               INTEGER NOT NULL,
    consumed_at              INTEGER
);
INSERT INTO compat_refresh_tokens_new (compat_refresh_token_id, compat_session_id, compat_access_token_id,
                                       token_hash, created_at, consumed_at)
SELECT compat_refresh_token_id, compat_session_id, compat_access_token_id, token_hash, created_at, consumed_at
FROM compat_refresh_tokens;

CREATE TABLE compat_sso_logins_new (
    compat_sso_login_id  TEXT PRIMARY KEY,
    redirect_uri         TEXT NOT NULL,
    login_token_hash     TEXT NOT NULL UNIQUE,
    user_session_id      TEXT REFERENCES user_sessions (user_session_id) ON DELETE CASCADE,
    compat_session_id    TEXT REFERENCES compat_sessions_new (compat_session_id) ON DELETE SET NULL,
    created_at           INTEGER NOT NULL,
    fulfilled_at         INTEGER,
    exchanged_at         INTEGER
);
INSERT INTO compat_sso_logins_new (compat_sso_login_id, redirect_uri, login_token_hash, user_session_id,
                                   compat_session_id, created_at, fulfilled_at, exchanged_at)
SELECT compat_sso_login_id, redirect_uri, login_token_hash, user_session_id,
       compat_session_id, created_at, fulfilled_at, exchanged_at
FROM compat_sso_logins;

-- Children first: once they are gone, nothing references the old `compat_sessions`.
DROP TABLE compat_refresh_tokens;
DROP TABLE compat_sso_logins;
DROP TABLE compat_access_tokens;
DROP TABLE compat_sessions;

ALTER TABLE compat_sessions_new RENAME TO compat_sessions;
ALTER TABLE compat_access_tokens_new RENAME TO compat_access_tokens;
ALTER TABLE compat_refresh_tokens_new RENAME TO compat_refresh_tokens;
ALTER TABLE compat_sso_logins_new RENAME TO compat_sso_logins;

-- The indexes went with the old tables (V3, V9).
CREATE INDEX compat_sessions_user ON compat_sessions (user_id, finished_at);
CREATE INDEX compat_sessions_device ON compat_sessions (user_id, device_id) WHERE finished_at IS NULL;
CREATE INDEX compat_sessions_last_seen ON compat_sessions (coalesce(last_active_at, created_at), compat_session_id)
    WHERE finished_at IS NULL;
CREATE INDEX compat_access_tokens_session ON compat_access_tokens (compat_session_id);
CREATE INDEX compat_refresh_tokens_session ON compat_refresh_tokens (compat_session_id);
