-- Personal access tokens (`mpt_`), as MAS's personal sessions: a long-lived session acting as
-- `actor_user_id`, owned by the user or the OAuth client (an admin tool) that created it. The
-- session carries the scope and the Matrix device; its token can be regenerated.
CREATE TABLE personal_sessions (
    personal_session_id     TEXT PRIMARY KEY,
    owner_user_id           TEXT REFERENCES users (user_id) ON DELETE CASCADE,
    owner_oauth2_client_id  TEXT REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    actor_user_id           TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    human_name              TEXT NOT NULL,
    scope                   TEXT NOT NULL,
    created_at              INTEGER NOT NULL,
    revoked_at              INTEGER,
    last_active_at          INTEGER,
    last_active_ip          TEXT,
    CHECK ((owner_user_id IS NULL) <> (owner_oauth2_client_id IS NULL))
);
CREATE INDEX personal_sessions_actor ON personal_sessions (actor_user_id, revoked_at);
CREATE INDEX personal_sessions_owner_user ON personal_sessions (owner_user_id);
CREATE INDEX personal_sessions_owner_client ON personal_sessions (owner_oauth2_client_id);

-- Only the SHA-256 of a token is kept.
CREATE TABLE personal_access_tokens (
    personal_access_token_id  TEXT PRIMARY KEY,
    personal_session_id       TEXT NOT NULL REFERENCES personal_sessions (personal_session_id) ON DELETE CASCADE,
    access_token_sha256       TEXT NOT NULL UNIQUE,
    created_at                INTEGER NOT NULL,
    expires_at                INTEGER,
    revoked_at                INTEGER
);
-- At most one live (not revoked) token per session.
CREATE UNIQUE INDEX personal_access_tokens_one_active
    ON personal_access_tokens (personal_session_id) WHERE revoked_at IS NULL;
