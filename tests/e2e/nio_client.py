"""A legacy Matrix client (matrix-nio, not written here) against Synapse behind nginx, with the
appliance serving the login API: password login, /sync, a message in a room, refresh, logout.

Usage: nio_client.py HOMESERVER_URL USER PASSWORD
Prints one JSON object; exits non-zero on the first failure.
"""
import asyncio
import json
import sys

import aiohttp
from nio import AsyncClient, LoginResponse, RoomCreateResponse, RoomSendResponse, SyncResponse, WhoamiResponse

homeserver, user, password = sys.argv[1:4]


async def main():
    out = {}
    client = AsyncClient(homeserver, user)
    login = await client.login(password, device_name="nio e2e")
    assert isinstance(login, LoginResponse), f"login failed: {login}"
    out["user_id"] = login.user_id
    out["device_id"] = login.device_id
    who = await client.whoami()
    assert isinstance(who, WhoamiResponse), f"whoami failed: {who}"
    out["whoami_device"] = who.device_id
    sync = await client.sync(timeout=0)
    assert isinstance(sync, SyncResponse), f"sync failed: {sync}"
    room = await client.room_create(name="appliance e2e")
    assert isinstance(room, RoomCreateResponse), f"room_create failed: {room}"
    sent = await client.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"})
    assert isinstance(sent, RoomSendResponse), f"room_send failed: {sent}"
    out["event_id"] = sent.event_id
    old_token = client.access_token
    await client.logout()
    await client.close()

    # The logged-out token is rejected by Synapse.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{homeserver}/_matrix/client/v3/account/whoami", headers={"Authorization": f"Bearer {old_token}"}) as r:
            out["whoami_after_logout"] = r.status

        # Refresh (MSC2918) through the same reverse proxy, with raw HTTP.
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password, "refresh_token": True}
        async with http.post(f"{homeserver}/_matrix/client/v3/login", json=body) as r:
            login = await r.json()
            assert r.status == 200, login
        async with http.post(f"{homeserver}/_matrix/client/v3/refresh", json={"refresh_token": login["refresh_token"]}) as r:
            refreshed = await r.json()
            assert r.status == 200, refreshed
        async with http.get(f"{homeserver}/_matrix/client/v3/account/whoami", headers={"Authorization": f"Bearer {refreshed['access_token']}"}) as r:
            out["whoami_after_refresh"] = (await r.json()).get("user_id")
        out["refresh_expires_in_ms"] = refreshed.get("expires_in_ms")
    print(json.dumps(out))


asyncio.run(main())
