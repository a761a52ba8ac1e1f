-- Self-registration: invite codes (MAS's `user_registration_tokens`) and accepted terms of service.
CREATE TABLE user_registration_tokens (
    user_registration_token_id  TEXT PRIMARY KEY,
    token                       TEXT NOT NULL UNIQUE,
    -- NULL: unlimited.
    usage_limit                 INTEGER,
    times_used                  INTEGER NOT NULL DEFAULT 0,
    created_at                  INTEGER NOT NULL,
    last_used_at                INTEGER,
    expires_at                  INTEGER,
    revoked_at                  INTEGER
);

-- Which terms of service (by URL) a user accepted, and when (MAS's `user_terms`).
CREATE TABLE user_terms (
    user_terms_id  TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    terms_url      TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX user_terms_user_url ON user_terms (user_id, terms_url);
