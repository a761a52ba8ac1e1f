-- Whether `/authorize` received `redirect_uri` (RFC 6749 §4.1.3: then the token request must
-- repeat it). Grants in flight at upgrade keep the old, lenient rule.
ALTER TABLE oauth2_authorization_grants ADD COLUMN redirect_uri_given INTEGER NOT NULL DEFAULT 0;

-- The refresh token whose rotation issued this one: every successor of a consumed token is found
-- by it (a client's concurrent refreshes issue siblings), so reuse after any of them was used is
-- detected (RFC 9700 §4.14.2).
ALTER TABLE oauth2_refresh_tokens ADD COLUMN parent_refresh_token_id TEXT;
CREATE INDEX oauth2_refresh_tokens_parent ON oauth2_refresh_tokens (parent_refresh_token_id);

-- A personal session whose `urn:synapse:admin:*` the operator granted explicitly (`manage
-- issue-personal-token --yes-i-want-to-grant-synapse-admin-privileges`): it keeps it whatever the
-- actor's admin flag. Any other administration scope is re-checked against the actor at each use.
ALTER TABLE personal_sessions ADD COLUMN synapse_admin_by_operator INTEGER NOT NULL DEFAULT 0;
