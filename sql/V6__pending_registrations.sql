-- Registrations waiting for their email address to be verified (MAS's `user_registrations`).
-- The password is stored only as its hash; the user is created when the code is entered.
CREATE TABLE pending_registrations (
    pending_registration_id  TEXT PRIMARY KEY,
    username                 TEXT NOT NULL,
    password_hash            TEXT NOT NULL,
    password_version         INTEGER NOT NULL,
    display_name             TEXT,
    accepted_terms           TEXT,
    registration_token_id    TEXT REFERENCES user_registration_tokens (user_registration_token_id) ON DELETE SET NULL,
    email_verification_id    TEXT NOT NULL,
    next                     TEXT,
    created_at               INTEGER NOT NULL,
    completed_at             INTEGER
);
CREATE INDEX pending_registrations_created ON pending_registrations (created_at);
