"""Walks the appliance's OAuth 2.0 / OpenID Connect grants with Authlib, a client library not
written here. The browser part (sign-in form, consent) is driven with requests.

Usage: oauth_client.py BASE PUBLIC_CLIENT REDIRECT USER PASSWORD CONF_CLIENT CONF_SECRET
Prints one JSON object with what each step returned; exits non-zero on the first failure.
"""
import json
import re
import secrets
import sys
from urllib.parse import urljoin

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt

base, client_id, redirect, user, password, conf_id, conf_secret = sys.argv[1:8]
meta = requests.get(base + "/.well-known/openid-configuration", timeout=10).json()
out = {"issuer": meta["issuer"]}


def csrf(html):
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no csrf token in page"
    return m.group(1)


def follow_browser(browser, url):
    """Sign-in and consent as a person would; returns the redirect to the client."""
    r = browser.get(url, allow_redirects=False)
    location = r.headers["location"]
    if location.startswith("/login"):
        page = browser.get(urljoin(base, location))
        nxt = re.search(r'name="next" value="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        r = browser.post(urljoin(base, "/login"), data={"csrf": csrf(page.text), "username": user, "password": password, "next": nxt}, allow_redirects=False)
        assert r.status_code == 303, f"login answered {r.status_code}"
        location = r.headers["location"]
    page = browser.get(urljoin(base, location))
    assert "will be able to" in page.text, "consent page does not list permissions"
    r = browser.post(urljoin(base, location), data={"csrf": csrf(page.text), "decision": "allow"}, allow_redirects=False)
    assert r.status_code == 303, f"consent answered {r.status_code}"
    return r.headers["location"]


# Authorization code + PKCE (S256) with nonce, as a public client.
session = OAuth2Session(
    client_id,
    redirect_uri=redirect,
    scope="openid urn:matrix:client:api:* urn:matrix:client:device:AUTHLIBDEV1",
    code_challenge_method="S256",
    token_endpoint_auth_method="none",
)
verifier = secrets.token_urlsafe(48)
nonce = secrets.token_urlsafe(12)
url, state = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
callback = follow_browser(requests.Session(), url)
token = session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state)
out["token_type"] = token["token_type"]
out["has_refresh_token"] = "refresh_token" in token

# The ID token verifies against the published JWKS.
keys = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
claims = jwt.decode(
    token["id_token"],
    keys,
    claims_options={"iss": {"essential": True, "value": meta["issuer"]}, "aud": {"essential": True, "value": client_id}, "nonce": {"essential": True, "value": nonce}},
)
claims.validate()
out["id_token_sub"] = claims["sub"]

# Userinfo with the access token.
out["userinfo"] = session.get(meta["userinfo_endpoint"]).json()

# Refresh (rotation): the new token works, the old refresh token is spent.
refreshed = session.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
out["refreshed"] = refreshed["access_token"] != token["access_token"]

# Client credentials as a confidential client, then introspection by that client.
confidential = OAuth2Session(conf_id, conf_secret, token_endpoint_auth_method="client_secret_post")
cc = confidential.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
introspected = confidential.introspect_token(meta["introspection_endpoint"], token=refreshed["access_token"]).json()
out["introspected_active"] = introspected["active"]
out["introspected_username"] = introspected.get("username")
out["client_credentials_token"] = bool(cc.get("access_token"))

# Once the new access token has been used, the spent refresh token is refused.
replay = requests.post(meta["token_endpoint"], data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": client_id}, timeout=10)
out["old_refresh_after_use"] = replay.status_code

# Revocation ends the session.
session.token = refreshed
r = session.revoke_token(meta["revocation_endpoint"], token=refreshed["refresh_token"], token_type_hint="refresh_token")
out["revoke_status"] = r.status_code
after = confidential.introspect_token(meta["introspection_endpoint"], token=refreshed["access_token"]).json()
out["active_after_revoke"] = after["active"]

print(json.dumps(out))
