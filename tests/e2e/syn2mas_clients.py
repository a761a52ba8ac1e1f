"""Users and logged-in Matrix clients (matrix-nio, not written here) on a Synapse with its own
password login, before `syn2mas migrate`; and the same clients, holding the same tokens, after it.

Usage:
  syn2mas_clients.py before SYNAPSE_URL SHARED_SECRET SERVER_NAME   # prints the state as JSON
  syn2mas_clients.py after HOMESERVER_URL STATE_JSON_FILE           # prints the results as JSON
Exits non-zero on the first failure.
"""
import asyncio
import hashlib
import hmac
import json
import sys

import aiohttp
from nio import AsyncClient, LoginResponse, SyncResponse, WhoamiResponse

# NFKC turns the ligature and the roman numeral into "fish IX": Synapse hashes the normalised form.
PASSWORDS = {
    "alice": "alice correct horse battery",
    "bob": "\ufb01sh \u2168 battery staple",
    # 80 bytes: bcrypt (and Synapse) only look at the first 72.
    "carol": "c" * 70 + "-carol-end",
    "dave": "dave correct horse battery",
    "erin": "erin correct horse battery",
}


async def register(http, base, secret, user, admin):
    async with http.get(f"{base}/_synapse/admin/v1/register") as r:
        nonce = (await r.json())["nonce"]
    password = PASSWORDS[user]
    message = "\x00".join([nonce, user, password, "admin" if admin else "notadmin"])
    mac = hmac.new(secret.encode(), message.encode("utf8"), hashlib.sha1)
    body = {"nonce": nonce, "username": user, "password": password, "admin": admin, "mac": mac.hexdigest()}
    async with http.post(f"{base}/_synapse/admin/v1/register", json=body) as r:
        out = await r.json()
        assert r.status == 200, out
        return out


async def raw_login(http, base, user, refresh):
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": PASSWORDS[user],
        "initial_device_display_name": f"{user} raw{' refreshable' if refresh else ''}",
        "refresh_token": refresh,
    }
    async with http.post(f"{base}/_matrix/client/v3/login", json=body) as r:
        out = await r.json()
        assert r.status == 200, out
        return out


async def whoami(http, base, token):
    async with http.get(f"{base}/_matrix/client/v3/account/whoami", headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


async def before(base, secret, server_name):
    state = {"devices": []}
    async with aiohttp.ClientSession() as http:
        admin = await register(http, base, secret, "alice", True)
        for user in ("bob", "carol", "dave", "erin"):
            await register(http, base, secret, user, False)
        auth = {"Authorization": f"Bearer {admin['access_token']}"}

        async def admin_put(user, body):
            async with http.put(f"{base}/_synapse/admin/v2/users/@{user}:{server_name}", json=body, headers=auth) as r:
                assert r.status == 200, await r.text()

        await admin_put("bob", {"threepids": [
            {"medium": "email", "address": "bob@example.org"},
            {"medium": "msisdn", "address": "447700900123"},
        ]})
        await admin_put("carol", {
            "threepids": [{"medium": "email", "address": "carol@example.org"}],
            "external_ids": [{"auth_provider": "oidc-github", "external_id": "carol-gh-1"}],
        })
        await admin_put("dave", {"locked": True})
        async with http.post(f"{base}/_synapse/admin/v1/deactivate/@erin:{server_name}", json={"erase": False}, headers=auth) as r:
            assert r.status == 200, await r.text()

        # matrix-nio logins (no refresh tokens).
        for user in ("alice", "bob"):
            client = AsyncClient(base, f"@{user}:{server_name}")
            login = await client.login(PASSWORDS[user], device_name=f"nio {user}")
            assert isinstance(login, LoginResponse), f"login failed: {login}"
            sync = await client.sync(timeout=0)
            assert isinstance(sync, SyncResponse), f"sync failed: {sync}"
            state["devices"].append({"user": user, "user_id": login.user_id, "device_id": login.device_id,
                                     "access_token": login.access_token})
            await client.close()

        # A refreshable login that stays as issued.
        login = await raw_login(http, base, "carol", True)
        assert "refresh_token" in login, login
        state["devices"].append({"user": "carol", "user_id": login["user_id"], "device_id": login["device_id"],
                                 "access_token": login["access_token"], "refresh_token": login["refresh_token"]})

        # A refreshable login refreshed once in Synapse, the new access token used: the first
        # refresh token is spent, the second one lives.
        login = await raw_login(http, base, "carol", True)
        async with http.post(f"{base}/_matrix/client/v3/refresh", json={"refresh_token": login["refresh_token"]}) as r:
            refreshed = await r.json()
            assert r.status == 200, refreshed
        status, who = await whoami(http, base, refreshed["access_token"])
        assert status == 200, who
        state["devices"].append({"user": "carol", "user_id": login["user_id"], "device_id": login["device_id"],
                                 "access_token": refreshed["access_token"], "refresh_token": refreshed["refresh_token"],
                                 "spent_refresh_token": login["refresh_token"]})
    print(json.dumps(state))


async def after(base, state_file):
    with open(state_file) as f:
        state = json.load(f)
    results = []
    async with aiohttp.ClientSession() as http:
        for d in state["devices"]:
            out = {"user": d["user"], "device_id": d["device_id"]}
            # The same client, restored with its old token: no new login.
            client = AsyncClient(base, d["user_id"])
            client.restore_login(d["user_id"], d["device_id"], d["access_token"])
            who = await client.whoami()
            assert isinstance(who, WhoamiResponse), f"whoami with the old token of {d['user']} failed: {who}"
            out["whoami_device"] = who.device_id
            sync = await client.sync(timeout=0)
            assert isinstance(sync, SyncResponse), f"sync with the old token of {d['user']} failed: {sync}"
            out["synced"] = True
            await client.close()
            if "spent_refresh_token" in d:
                async with http.post(f"{base}/_matrix/client/v3/refresh", json={"refresh_token": d["spent_refresh_token"]}) as r:
                    out["spent_refresh_status"] = r.status
            if "refresh_token" in d:
                async with http.post(f"{base}/_matrix/client/v3/refresh", json={"refresh_token": d["refresh_token"]}) as r:
                    refreshed = await r.json()
                    assert r.status == 200, refreshed
                out["refreshed_access_prefix"] = refreshed["access_token"][:4]
                out["refreshed_refresh_prefix"] = refreshed["refresh_token"][:4]
                status, who = await whoami(http, base, refreshed["access_token"])
                assert status == 200, who
                out["refreshed_whoami_device"] = who.get("device_id")
            results.append(out)
    print(json.dumps(results))


if __name__ == "__main__":
    if sys.argv[1] == "before":
        asyncio.run(before(*sys.argv[2:5]))
    else:
        asyncio.run(after(*sys.argv[2:4]))
