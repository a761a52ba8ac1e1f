// A small web client on its own origin, for the cross-origin browser tests (tests/it/webclient.rs).
// It runs the code Element Web runs to sign in (matrix-js-sdk's OIDC helpers with oidc-client-ts),
// a legacy password login, and what element-admin does (dynamic registration as a `web` client
// asking for `urn:mas:admin`, then admin API calls). The test drives it over WebDriver: each
// `walk.*` function returns a JSON report of what the page saw.
import {
    createClient,
    registerOidcClient,
    generateOidcAuthorizationUrl,
    completeAuthorizationCodeGrant,
    OidcTokenRefresher,
} from "matrix-js-sdk";
import { OidcClient } from "oidc-client-ts";

const here = () => window.location.origin + "/";
const saved = (key) => JSON.parse(sessionStorage.getItem(key) ?? "null");
const save = (key, value) => sessionStorage.setItem(key, JSON.stringify(value));

// `fetch` that never throws: a CORS refusal becomes `{status: 0, error}`.
async function call(url, init = {}) {
    try {
        const res = await fetch(url, init);
        const text = await res.text();
        let body = null;
        try {
            body = text ? JSON.parse(text) : null;
        } catch {
            body = text;
        }
        return { status: res.status, body };
    } catch (e) {
        return { status: 0, error: String(e) };
    }
}

async function whoami(hs, accessToken) {
    return call(`${hs}_matrix/client/v3/account/whoami`, { headers: { Authorization: `Bearer ${accessToken}` } });
}

// Element Web: discovery through the homeserver, registration, then off to the authorization URL.
async function elementStart(hs) {
    const client = createClient({ baseUrl: hs });
    const metadata = await client.getAuthMetadata();
    const clientId = await registerOidcClient(metadata, {
        clientName: "Element (cross-origin test)",
        clientUri: here(),
        applicationType: "web",
        redirectUris: [here()],
        contacts: [],
        tosUri: undefined,
        policyUri: undefined,
    });
    const nonce = crypto.randomUUID();
    const url = await generateOidcAuthorizationUrl({
        metadata,
        redirectUri: here(),
        clientId,
        homeserverUrl: hs,
        nonce,
    });
    save("element", { hs, clientId, metadata });
    return { issuer: metadata.issuer, clientId, url };
}

// Back from the authorization server: the code grant, whoami, a refresh, logout (revocation).
async function elementFinish() {
    const { hs, clientId, metadata } = saved("element");
    const params = new URLSearchParams(window.location.search);
    const report = { steps: [] };
    const grant = await completeAuthorizationCodeGrant(params.get("code"), params.get("state"));
    const tokens = grant.tokenResponse;
    report.homeserverUrl = grant.homeserverUrl;
    report.clientId = grant.oidcClientSettings.clientId;
    report.sub = grant.idTokenClaims.sub;
    report.scope = tokens.scope;
    report.hasRefreshToken = !!tokens.refresh_token;
    const first = await whoami(hs, tokens.access_token);
    report.whoami = first;
    const deviceId = first.body?.device_id;

    const refresher = new OidcTokenRefresher(metadata.issuer, clientId, here(), deviceId, grant.idTokenClaims);
    await refresher.oidcClientReady;
    const fresh = await refresher.doRefreshAccessToken(tokens.refresh_token);
    report.refreshed = { changed: fresh.accessToken !== tokens.access_token, hasRefreshToken: !!fresh.refreshToken };
    report.whoamiAfterRefresh = await whoami(hs, fresh.accessToken);

    // Element Web's logout: revoke the tokens at the revocation endpoint (oidc-client-ts).
    const oidc = new OidcClient({
        authority: metadata.issuer,
        metadata,
        client_id: clientId,
        redirect_uri: here(),
    });
    await oidc.revokeToken(fresh.accessToken, "access_token");
    if (fresh.refreshToken) await oidc.revokeToken(fresh.refreshToken, "refresh_token");
    report.whoamiAfterLogout = await whoami(hs, fresh.accessToken);
    return report;
}

// A legacy client: `/login` flows, a password login, whoami, logout — all through the proxy.
async function legacy(hs, user, password) {
    const anonymous = createClient({ baseUrl: hs });
    const flows = await anonymous.loginFlows();
    const login = await anonymous.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
        initial_device_display_name: "Legacy web page",
    });
    const client = createClient({ baseUrl: hs, accessToken: login.access_token, userId: login.user_id });
    const who = await client.whoami();
    await client.logout();
    return {
        flows: flows.flows.map((f) => f.type),
        userId: login.user_id,
        deviceId: login.device_id,
        whoami: who,
        whoamiAfterLogout: await whoami(hs, login.access_token),
    };
}

function base64url(bytes) {
    return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// element-admin: discovery through the homeserver, registration as a `web` client, PKCE.
async function adminStart(hs) {
    const meta = await call(`${hs}_matrix/client/unstable/org.matrix.msc2965/auth_metadata`);
    const m = meta.body;
    const registration = await call(m.registration_endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
            application_type: "web",
            client_name: "Element Admin",
            client_uri: here(),
            redirect_uris: [here() + "callback"],
            token_endpoint_auth_method: "none",
            grant_types: ["authorization_code", "refresh_token"],
            response_types: ["code"],
        }),
    });
    const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
    const challenge = base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
    const state = base64url(crypto.getRandomValues(new Uint8Array(12)));
    const clientId = registration.body?.client_id;
    const url = new URL(m.authorization_endpoint);
    url.search = new URLSearchParams({
        response_type: "code",
        client_id: clientId,
        redirect_uri: here() + "callback",
        scope: "urn:mas:admin urn:synapse:admin:*",
        state,
        code_challenge: challenge,
        code_challenge_method: "S256",
    }).toString();
    save("admin", { metadata: m, clientId, verifier, state });
    return { registration, url: url.toString() };
}

async function adminFinish() {
    const { metadata, clientId, verifier, state } = saved("admin");
    const params = new URLSearchParams(window.location.search);
    const report = { stateMatches: params.get("state") === state };
    const form = (fields) => ({
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(fields).toString(),
    });
    const token = await call(
        metadata.token_endpoint,
        form({
            grant_type: "authorization_code",
            code: params.get("code"),
            redirect_uri: here() + "callback",
            client_id: clientId,
            code_verifier: verifier,
        }),
    );
    report.token = { status: token.status, scope: token.body?.scope };
    const api = metadata.issuer.replace(/\/?$/, "/") + "api/admin/v1";
    const admin = (path, init = {}) =>
        call(api + path, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token.body.access_token}` } });
    report.siteConfig = await admin("/site-config");
    report.version = await admin("/version");
    report.users = await admin("/users?page[first]=200&count=false");
    report.count = await admin("/users?count=only");
    report.newToken = await admin("/user-registration-tokens", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ usage_limit: 3 }),
    });
    report.spec = await call(metadata.issuer.replace(/\/?$/, "/") + "api/spec.json");
    if (report.spec.status === 200) report.spec = { status: 200, openapi: report.spec.body.openapi };
    const refreshed = await call(
        metadata.token_endpoint,
        form({ grant_type: "refresh_token", refresh_token: token.body.refresh_token, client_id: clientId }),
    );
    report.refresh = { status: refreshed.status };
    const revoked = await call(
        metadata.revocation_endpoint,
        form({ token: refreshed.body.access_token, token_type_hint: "access_token", client_id: clientId }),
    );
    report.revoke = { status: revoked.status };
    report.afterRevoke = await call(api + "/version", {
        headers: { Authorization: `Bearer ${refreshed.body.access_token}` },
    });
    return report;
}

// Errors become a report too, so the test shows them rather than a WebDriver timeout.
const reporting =
    (f) =>
    async (...args) => {
        try {
            return await f(...args);
        } catch (e) {
            return { error: String(e), stack: e?.stack };
        }
    };

window.walk = {
    elementStart: reporting(elementStart),
    elementFinish: reporting(elementFinish),
    legacy: reporting(legacy),
    adminStart: reporting(adminStart),
    adminFinish: reporting(adminFinish),
};
document.getElementById("status").textContent = "ready";
