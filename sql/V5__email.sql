-- Email verification codes (adding an address on the account page; registration) and password
-- recovery tickets. Codes and tickets are stored only as SHA-256 hashes.
CREATE TABLE user_email_verifications (
    verification_id  TEXT PRIMARY KEY,
    -- NULL while the account does not exist yet (registration).
    user_id          TEXT REFERENCES users (user_id) ON DELETE CASCADE,
    email            TEXT NOT NULL,
    code_hash        TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    verified_at      INTEGER
);
CREATE INDEX user_email_verifications_user ON user_email_verifications (user_id, created_at);

CREATE TABLE user_recovery_tickets (
    recovery_ticket_id  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    email               TEXT NOT NULL,
    ticket_hash         TEXT NOT NULL UNIQUE,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    used_at             INTEGER
);
CREATE INDEX user_recovery_tickets_user ON user_recovery_tickets (user_id);
