-- Upstream OAuth 2.0 / OpenID Connect providers (MAS's `upstream_oauth2`), their links to local
-- users and the authorization sessions of sign-ins through them.

-- Mirrors `upstream_oauth2.providers[]` (synced at start); a provider removed from the config is
-- disabled (`disabled_at`), `config sync --prune` deletes it.
CREATE TABLE upstream_oauth_providers (
    upstream_oauth_provider_id  TEXT PRIMARY KEY,
    -- The provider's config block as JSON, without its secrets.
    metadata                    TEXT NOT NULL,
    encrypted_client_secret     TEXT,
    ui_order                    INTEGER NOT NULL,
    created_at                  INTEGER NOT NULL,
    disabled_at                 INTEGER
);

-- One upstream account (provider, subject); `user_id` is NULL until the account is linked.
CREATE TABLE upstream_oauth_links (
    upstream_oauth_link_id      TEXT PRIMARY KEY,
    upstream_oauth_provider_id  TEXT NOT NULL REFERENCES upstream_oauth_providers (upstream_oauth_provider_id) ON DELETE CASCADE,
    user_id                     TEXT REFERENCES users (user_id) ON DELETE CASCADE,
    subject                     TEXT NOT NULL,
    human_account_name          TEXT,
    created_at                  INTEGER NOT NULL,
    UNIQUE (upstream_oauth_provider_id, subject)
);
CREATE INDEX upstream_oauth_links_user ON upstream_oauth_links (user_id);

-- One trip to the provider: state, nonce and PKCE verifier kept here (the browser holds only an
-- encrypted cookie naming the row), then what came back.
CREATE TABLE upstream_oauth_authorization_sessions (
    upstream_oauth_authorization_session_id  TEXT PRIMARY KEY,
    upstream_oauth_provider_id  TEXT NOT NULL REFERENCES upstream_oauth_providers (upstream_oauth_provider_id) ON DELETE CASCADE,
    upstream_oauth_link_id      TEXT REFERENCES upstream_oauth_links (upstream_oauth_link_id) ON DELETE SET NULL,
    state                       TEXT NOT NULL UNIQUE,
    nonce                       TEXT NOT NULL,
    code_challenge_verifier     TEXT,
    -- Where to go after signing in (a local path).
    next                        TEXT,
    id_token                    TEXT,
    id_token_claims             TEXT,
    userinfo                    TEXT,
    extra_callback_parameters   TEXT,
    -- The upstream session id (`sid` of the ID token), for back-channel logout.
    sid                         TEXT,
    subject                     TEXT,
    user_session_id             TEXT REFERENCES user_sessions (user_session_id) ON DELETE SET NULL,
    created_at                  INTEGER NOT NULL,
    completed_at                INTEGER,
    consumed_at                 INTEGER,
    unlinked_at                 INTEGER
);
CREATE INDEX upstream_oauth_authorization_sessions_link ON upstream_oauth_authorization_sessions (upstream_oauth_link_id);
CREATE INDEX upstream_oauth_authorization_sessions_sid ON upstream_oauth_authorization_sessions (upstream_oauth_provider_id, sid);
CREATE INDEX upstream_oauth_authorization_sessions_session ON upstream_oauth_authorization_sessions (user_session_id);
