-- What `syn2mas migrate` brings over from Synapse that had no place yet (MAS's columns and tables).

-- Synapse guest accounts: imported so their names stay taken; they have no password and no sessions.
ALTER TABLE users ADD COLUMN is_guest INTEGER NOT NULL DEFAULT 0;

-- Third-party ids other than email (phone numbers): kept, not lost, though nothing uses them yet
-- (MAS's `user_unsupported_third_party_ids`).
CREATE TABLE user_unsupported_third_party_ids (
    user_id     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    medium      TEXT NOT NULL,
    address     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, medium, address)
);

-- Synapse's `user_external_ids` (SSO logins: `oidc-<idp_id>`, `saml`, `cas`, …), kept verbatim
-- until an upstream provider declares the matching `synapse_idp_id` and links them.
CREATE TABLE user_synapse_external_ids (
    user_id        TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    auth_provider  TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (auth_provider, external_id)
);
CREATE INDEX user_synapse_external_ids_user ON user_synapse_external_ids (user_id);
