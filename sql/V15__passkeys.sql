-- Passkeys (issue 16): WebAuthn credentials a user signs in with (username-less, as the first
-- factor) or confirms a password with (as the second). `credential` is webauthn-rs's `Passkey`
-- as JSON (public key, counter, flags; nothing secret). The user handle sent to authenticators is
-- the user's ULID as 16 bytes, so no column maps handles to users.
CREATE TABLE user_passkeys (
    passkey_id    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    -- base64url (no padding) of the credential ID; a credential belongs to one account.
    credential_id TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    credential    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);
CREATE INDEX user_passkeys_user ON user_passkeys (user_id);

-- A WebAuthn challenge is carried in the browser's encrypted cookie; the challenges already
-- answered are kept here until they expire, so each one is accepted once.
CREATE TABLE webauthn_used_challenges (
    challenge  TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
