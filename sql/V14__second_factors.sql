-- Second factors (issue 16): one TOTP secret per user (encrypted with the site key; unconfirmed
-- until the first code is entered) and its single-use recovery codes (SHA-256 of the code).
CREATE TABLE user_totp (
    user_id       TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    secret        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    confirmed_at  INTEGER,
    -- The last 30-second step a code was accepted for: a code works once.
    last_step     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE user_recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash)
);
