//! The admin REST API (`/api/admin/v1`, listener resource `adminapi`): bearer-token checks, every
//! endpoint's happy path and main errors, pagination, and the lifecycle side effects (homeserver
//! calls, ended sessions) it shares with the CLI and the pages.

use appliance::store::users as user_store;
use serde_json::{Value, json};

use crate::flows::{
    CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, clients_patch, code_login, introspect, register_user, token_request,
};
use crate::helpers::{SYNAPSE_CLIENT_ID, TestApp, merged_yaml, spawn_app, spawn_app_with};
use crate::register::{Calls, fake_homeserver};

pub(crate) const ADMIN_CLIENT: &str = "01J0000000000000000000ADM1";
pub(crate) const ADMIN_SECRET: &str = "admin-client-secret";
pub(crate) const PASSWORD: &str = "correct horse battery staple wombat";
const API: &str = "/api/admin/v1";
const DEVICE_SCOPE: &str = "openid urn:matrix:client:api:* urn:matrix:client:device:ADMINTEST01";

/// The test config with the `adminapi` resource on the main listener, the flows' clients plus an
/// admin client (listed in `policy.data.admin_clients`) and the recording fake homeserver.
pub(crate) async fn admin_app(extra: &str) -> (TestApp, Calls) {
    let (endpoint, calls) = fake_homeserver().await;
    let yaml = merged_yaml(&admin_config(&endpoint), extra);
    (spawn_app_with(&yaml).await, calls)
}

/// The flows' clients plus the admin client, and the `adminapi` resource, with `endpoint` as
/// the homeserver.
pub(crate) fn admin_config(endpoint: &str) -> String {
    let mut base: serde_yaml::Value = serde_yaml::from_str(&clients_patch()).expect("clients patch");
    let admin_client: serde_yaml::Value = serde_yaml::from_str(&format!(
        "{{client_id: {ADMIN_CLIENT}, client_auth_method: client_secret_basic, client_secret: {ADMIN_SECRET}}}"
    ))
    .expect("client YAML");
    base["clients"].as_sequence_mut().expect("clients list").push(admin_client);
    let patch = format!(
        r#"
http:
  listeners:
    - name: web
      resources: [{{name: discovery}}, {{name: human}}, {{name: oauth}}, {{name: compat}}, {{name: assets}}, {{name: adminapi}}]
      binds: [{{address: "127.0.0.1:$PORT"}}]
matrix:
  endpoint: "{endpoint}"
policy:
  data:
    admin_clients: [{ADMIN_CLIENT}]
"#
    );
    let base = serde_yaml::to_string(&base).expect("YAML");
    merged_yaml(&base, &patch)
}

/// `client_credentials` with HTTP Basic for `client_id`, asking for `scope`.
async fn client_token(app: &TestApp, client_id: &str, secret: &str, scope: &str) -> reqwest::Response {
    let form = [("grant_type", "client_credentials"), ("scope", scope)];
    app.client.post(app.url("/oauth2/token")).basic_auth(client_id, Some(secret)).form(&form).send().await.unwrap()
}

pub(crate) async fn admin_token(app: &TestApp) -> String {
    let res = client_token(app, ADMIN_CLIENT, ADMIN_SECRET, "urn:mas:admin").await;
    assert_eq!(res.status(), 200, "admin client_credentials");
    res.json::<Value>().await.unwrap()["access_token"].as_str().expect("access token").to_string()
}

/// An admin API call: the status and the JSON body (`null` when there is none).
pub(crate) async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = app.url(&format!("{API}{path}"));
    let mut req = app.client.request(method.parse().expect("method"), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") })
}

/// What the fake homeserver was sent for `name`, in order.
pub(crate) fn calls_to(calls: &Calls, name: &str) -> Vec<Value> {
    calls.lock().unwrap().iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
}

pub(crate) fn title(body: &Value) -> &str {
    body["errors"][0]["title"].as_str().unwrap_or_else(|| panic!("no error title in {body}"))
}

pub(crate) async fn user_id(app: &TestApp, username: &str) -> String {
    let name = username.to_string();
    let user = app.state.store.read(move |c| user_store::by_username(c, &name)).await.unwrap();
    user.expect("user exists").id
}

#[tokio::test]
async fn bearer_tokens_need_an_active_session_with_the_admin_scope() {
    let (app, _) = admin_app("").await;
    let url = app.url(&format!("{API}/users"));

    let res = app.client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(title(&res.json().await.unwrap()), "Missing authorization header");
    for header in ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer mat_garbage", "Bearer mct_notoken"] {
        let res = app.client.get(&url).header("authorization", header).send().await.unwrap();
        assert_eq!(res.status(), 401, "{header}");
        assert!(res.headers().contains_key("www-authenticate"), "{header}");
    }

    // A token without the scope is refused.
    let res = client_token(&app, ADMIN_CLIENT, ADMIN_SECRET, "openid").await;
    let plain = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let (status, body) = call(&app, "GET", "/users", Some(&plain), None).await;
    assert_eq!((status, title(&body)), (403, "Missing urn:mas:admin scope"));

    // Only the clients in policy.data.admin_clients get the scope with client_credentials.
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "urn:mas:admin"),
        ("client_id", CONFIDENTIAL_CLIENT),
        ("client_secret", CONFIDENTIAL_SECRET),
    ];
    let res = token_request(&app, &form).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_scope");
    let token = admin_token(&app).await;
    let (status, body) = call(&app, "GET", "/users", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");

    // A user allowed to request administration gets a working token through the normal grant.
    register_user(&app, "alice", PASSWORD, true).await;
    let tokens = code_login(&app, "alice", PASSWORD, "openid urn:mas:admin").await;
    let alice_token = tokens["access_token"].as_str().unwrap().to_string();
    let (status, body) = call(&app, "GET", "/users/by-username/alice", Some(&alice_token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["admin"], true);

    // Ending the session (here through the admin API itself) ends the token's admin powers.
    let (_, sessions) =
        call(&app, "GET", &format!("/oauth2-sessions?filter[client]={ADMIN_CLIENT}"), Some(&token), None).await;
    let admin_sessions: Vec<&Value> =
        sessions["data"].as_array().unwrap().iter().filter(|s| s["attributes"]["scope"] == "urn:mas:admin").collect();
    assert_eq!(admin_sessions.len(), 1, "{sessions}");
    let session = admin_sessions[0]["id"].as_str().unwrap().to_string();
    let other = admin_token(&app).await;
    let (status, _) = call(&app, "POST", &format!("/oauth2-sessions/{session}/finish"), Some(&other), None).await;
    assert_eq!(status, 200);
    let (status, body) = call(&app, "GET", "/users", Some(&token), None).await;
    assert_eq!((status, title(&body)), (401, "Invalid access token"));

    // So does locking the user.
    let alice = user_id(&app, "alice").await;
    let (status, _) = call(&app, "POST", &format!("/users/{alice}/lock"), Some(&other), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&app, "GET", "/users", Some(&alice_token), None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn listener_without_adminapi_does_not_serve_it() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/api/admin/v1/users")).send().await.unwrap();
    assert_eq!(res.status(), 404);

    let (app, _) = admin_app("").await;
    let token = admin_token(&app).await;
    let (status, body) = call(&app, "GET", "/no-such-thing", Some(&token), None).await;
    assert_eq!((status, title(&body)), (404, "Not found"));
}

#[tokio::test]
async fn site_config_and_version() {
    let (app, _) = admin_app("account: {password_registration_enabled: true, registration_token_required: true}").await;
    let token = admin_token(&app).await;
    let (status, body) = call(&app, "GET", "/site-config", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["server_name"], "localhost");
    assert_eq!(body["password_login_enabled"], true);
    assert_eq!(body["password_registration_enabled"], true);
    assert_eq!(body["registration_token_required"], true);
    assert_eq!(body["minimum_password_complexity"], 3);
    let res = app.client.get(app.url(&format!("{API}/site-config"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let (status, body) = call(&app, "GET", "/version", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn users_are_added_read_and_changed_like_the_cli_does() {
    let (app, calls) = admin_app("").await;
    let token = admin_token(&app).await;
    let t = Some(token.as_str());

    let (status, body) = call(&app, "POST", "/users", t, Some(json!({"username": "bob"}))).await;
    assert_eq!(status, 200, "{body}");
    let bob = body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["data"]["type"], "user");
    assert_eq!(body["links"]["self"], format!("{API}/users/{bob}"));
    let attrs = &body["data"]["attributes"];
    assert_eq!((attrs["username"].as_str(), attrs["admin"].as_bool()), (Some("bob"), Some(false)));
    assert_eq!((attrs["locked_at"].is_null(), attrs["deactivated_at"].is_null()), (true, true));
    assert_eq!(attrs["legacy_guest"], false);
    assert!(attrs["created_at"].as_str().unwrap().ends_with('Z'), "RFC 3339: {attrs}");
    assert_eq!(calls_to(&calls, "is_localpart_available"), [json!("bob")]);
    assert_eq!(calls_to(&calls, "provision_user").last().unwrap()["localpart"], "bob");

    // Refusals: taken here, taken on the homeserver, malformed, bad bodies.
    let cases = [
        (json!({"username": "bob"}), 409, "User already exists"),
        (json!({"username": "taken"}), 409, "Username is reserved by the homeserver"),
        (json!({"username": "Not Valid"}), 400, "Username is not valid"),
        (json!({"username": "carol", "password": "x"}), 400, "unknown field `password`"),
        (json!({"name": "carol"}), 400, "invalid request body"),
        (json!(["carol"]), 400, "must be a JSON object"),
    ];
    for (body, status, expected) in cases {
        let (got, answer) = call(&app, "POST", "/users", t, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(title(&answer).contains(expected), "{body}: {answer}");
    }
    let res = app.client.post(app.url(&format!("{API}/users"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 400, "empty body");
    // The homeserver check can be skipped (as `manage register-user --skip-homeserver-check`).
    let (status, _) =
        call(&app, "POST", "/users", t, Some(json!({"username": "taken", "skip_homeserver_check": true}))).await;
    assert_eq!(status, 200);

    let (status, body) = call(&app, "GET", &format!("/users/{bob}"), t, None).await;
    assert_eq!((status, body["data"]["attributes"]["username"].as_str()), (200, Some("bob")));
    let (status, body) = call(&app, "GET", &format!("/users/{}", bob.to_lowercase()), t, None).await;
    assert_eq!((status, body["data"]["id"].as_str()), (200, Some(bob.as_str())), "ULIDs in any case");
    let (status, body) = call(&app, "GET", "/users/by-username/bob", t, None).await;
    assert_eq!((status, body["data"]["id"].as_str()), (200, Some(bob.as_str())));
    let (status, body) = call(&app, "GET", "/users/01ARZ3NDEKTSV4RRFFQ69G5FAV", t, None).await;
    assert_eq!((status, title(&body)), (404, "User ID 01ARZ3NDEKTSV4RRFFQ69G5FAV not found"));
    let (status, body) = call(&app, "GET", "/users/not-a-ulid", t, None).await;
    assert_eq!((status, title(&body)), (400, "Invalid ULID in path"));
    let (status, _) = call(&app, "GET", "/users/by-username/nobody", t, None).await;
    assert_eq!(status, 404);

    // Passwords: zxcvbn-checked unless skipped; then bob can sign in with it.
    let path = format!("/users/{bob}/set-password");
    let (status, body) = call(&app, "POST", &path, t, Some(json!({"password": "password1"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(title(&body).starts_with("Password is too weak"), "{body}");
    let (status, _) = call(&app, "POST", &path, t, Some(json!({"password": ""}))).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, "POST", &path, t, Some(json!({"password": PASSWORD}))).await;
    assert_eq!(status, 204);
    let (status, _) =
        call(&app, "POST", &path, t, Some(json!({"password": "password1", "skip_password_check": true}))).await;
    assert_eq!(status, 204);
    code_login(&app, "bob", "password1", "openid").await;

    let (status, body) = call(&app, "POST", &format!("/users/{bob}/set-admin"), t, Some(json!({"admin": true}))).await;
    assert_eq!((status, &body["data"]["attributes"]["admin"]), (200, &json!(true)));
    assert_eq!(body["links"]["self"], format!("{API}/users/{bob}/set-admin"));
    let (status, _) = call(&app, "POST", &format!("/users/{bob}/set-admin"), t, Some(json!({"admin": "yes"}))).await;
    assert_eq!(status, 400);

    // Lock and unlock reach the homeserver through provisioning.
    let (status, body) = call(&app, "POST", &format!("/users/{bob}/lock"), t, None).await;
    assert_eq!(status, 200);
    let locked_at = body["data"]["attributes"]["locked_at"].clone();
    assert!(locked_at.is_string());
    assert_eq!(calls_to(&calls, "provision_user").last().unwrap()["locked"], true);
    app.clock.advance(60);
    let (_, again) = call(&app, "POST", &format!("/users/{bob}/lock"), t, Some(json!({}))).await;
    assert_eq!(again["data"]["attributes"]["locked_at"], locked_at, "locking twice keeps the first time");
    let (status, _) = call(&app, "POST", &format!("/users/{bob}/lock"), t, Some(json!({"x": 1}))).await;
    assert_eq!(status, 400);
    let (status, body) = call(&app, "POST", &format!("/users/{bob}/unlock"), t, None).await;
    assert_eq!((status, body["data"]["attributes"]["locked_at"].is_null()), (200, true));
    assert_eq!(calls_to(&calls, "provision_user").last().unwrap()["locked"], false);
    let (status, _) = call(&app, "POST", "/users/01ARZ3NDEKTSV4RRFFQ69G5FAV/lock", t, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn deactivation_ends_sessions_and_deactivates_on_the_homeserver() {
    let (app, calls) = admin_app("").await;
    let token = admin_token(&app).await;
    let t = Some(token.as_str());
    register_user(&app, "dave", PASSWORD, false).await;
    let dave = user_id(&app, "dave").await;
    let tokens = code_login(&app, "dave", PASSWORD, DEVICE_SCOPE).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&app, &access).await["active"], true);

    let (status, body) = call(&app, "POST", &format!("/users/{dave}/deactivate"), t, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["attributes"]["deactivated_at"].is_string());
    assert_eq!(introspect(&app, &access).await["active"], false);
    let (_, active) =
        call(&app, "GET", &format!("/oauth2-sessions?filter[user]={dave}&filter[status]=active"), t, None).await;
    assert_eq!(active["meta"]["count"], 0, "{active}");
    assert_eq!(calls_to(&calls, "sync_devices").last().unwrap(), &json!({"localpart": "dave", "devices": []}));
    assert_eq!(calls_to(&calls, "delete_user"), [json!({"localpart": "dave", "erase": true})], "MAS erases by default");
    let (_, listed) = call(&app, "GET", "/users?filter[status]=deactivated", t, None).await;
    assert_eq!(listed["data"][0]["id"], dave.as_str());

    let (status, body) = call(&app, "POST", &format!("/users/{dave}/reactivate"), t, None).await;
    assert_eq!((status, body["data"]["attributes"]["deactivated_at"].is_null()), (200, true));
    assert_eq!(calls_to(&calls, "reactivate_user"), [json!({"localpart": "dave"})]);
    let (status, _) =
        call(&app, "POST", &format!("/users/{dave}/deactivate"), t, Some(json!({"skip_erase": true}))).await;
    assert_eq!(status, 200);
    assert_eq!(calls_to(&calls, "delete_user").last().unwrap()["erase"], false);
}

#[tokio::test]
async fn users_are_paginated_by_cursor() {
    let (app, _) = admin_app("").await;
    let token = admin_token(&app).await;
    let t = Some(token.as_str());
    for i in 0..25 {
        register_user(&app, &format!("user{i:02}"), PASSWORD, i % 5 == 0).await;
    }
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(user_id(&app, &format!("user{i:02}")).await);
    }
    ids.sort();
    let page_ids = |body: &Value| -> Vec<String> {
        body["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
    };

    let (status, body) = call(&app, "GET", "/users?count=only", t, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["count"], 25);
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(body["links"]["self"], format!("{API}/users?count=only"));

    let (_, first) = call(&app, "GET", "/users", t, None).await;
    assert_eq!(first["meta"]["count"], 25);
    assert_eq!(page_ids(&first), ids[..10]);
    assert_eq!(first["data"][0]["meta"]["page"]["cursor"], ids[0].as_str());
    assert_eq!(first["links"]["self"], format!("{API}/users?page[first]=10"));
    assert_eq!(first["links"]["first"], format!("{API}/users?page[first]=10"));
    assert_eq!(first["links"]["last"], format!("{API}/users?page[last]=10"));
    assert!(first["links"].get("prev").is_none());
    let next = first["links"]["next"].as_str().unwrap();
    assert_eq!(next, format!("{API}/users?page[after]={}&page[first]=10", ids[9]));

    // Following `next` links walks every user once.
    let mut seen = page_ids(&first);
    let mut link = next.strip_prefix(API).unwrap().to_string();
    loop {
        let (status, page) = call(&app, "GET", &link, t, None).await;
        assert_eq!(status, 200, "{link}: {page}");
        assert!(page["links"]["prev"].is_string(), "{page}");
        seen.extend(page_ids(&page));
        match page["links"]["next"].as_str() {
            Some(n) => link = n.strip_prefix(API).unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let (_, last) = call(&app, "GET", "/users?page[last]=10&count=false", t, None).await;
    assert_eq!(page_ids(&last), ids[15..]);
    assert!(last.get("meta").is_none(), "count=false: {last}");
    assert!(last["links"].get("next").is_none());
    assert_eq!(last["links"]["prev"], format!("{API}/users?count=false&page[before]={}&page[last]=10", ids[15]));
    let (_, before) = call(&app, "GET", &format!("/users?page[before]={}&page[last]=10", ids[15]), t, None).await;
    assert_eq!(page_ids(&before), ids[5..15]);
    assert!(before["links"]["next"].is_string() && before["links"]["prev"].is_string());
    let (_, after) = call(&app, "GET", &format!("/users?page[after]={}&page[first]=3", ids[20]), t, None).await;
    assert_eq!(page_ids(&after), ids[21..24]);

    // Filters, and the links keep them.
    let (_, admins) = call(&app, "GET", "/users?filter[admin]=true&page[first]=2", t, None).await;
    assert_eq!(admins["meta"]["count"], 5);
    assert!(admins["links"]["next"].as_str().unwrap().contains("filter[admin]=true&"), "{admins}");
    let (_, found) = call(&app, "GET", "/users?filter[search]=ER1", t, None).await;
    assert_eq!(found["meta"]["count"], 10, "user10..user19");
    let (_, active) = call(&app, "GET", "/users?filter[status]=active&count=only", t, None).await;
    assert_eq!(active["meta"]["count"], 25);

    for bad in [
        "/users?page[first]=0",
        "/users?page[first]=1001",
        "/users?page[first]=1&page[last]=1",
        "/users?page[after]=nope",
        "/users?count=sometimes",
        "/users?filter[admin]=maybe",
        "/users?filter[status]=sleeping",
        "/users?filter[nope]=1",
    ] {
        let (status, body) = call(&app, "GET", bad, t, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["errors"][0]["title"].is_string(), "{bad}");
    }
}

#[tokio::test]
async fn user_emails_are_pushed_to_the_homeserver() {
    let (app, calls) = admin_app("").await;
    let token = admin_token(&app).await;
    let t = Some(token.as_str());
    register_user(&app, "erin", PASSWORD, false).await;
    register_user(&app, "frank", PASSWORD, false).await;
    let erin = user_id(&app, "erin").await;
    let frank = user_id(&app, "frank").await;

    let (status, body) =
        call(&app, "POST", "/user-emails", t, Some(json!({"user_id": erin, "email": "erin@example.org"}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["type"], "user-email");
    assert_eq!(body["data"]["attributes"]["user_id"], erin.as_str());
    let email_id = body["data"]["id"].as_str().unwrap().to_string();
    let pushed = calls_to(&calls, "provision_user");
    assert_eq!(pushed.last().unwrap()["set_emails"], json!(["erin@example.org"]));

    let cases = [
        (json!({"user_id": frank, "email": "ERIN@example.org"}), 409),
        (json!({"user_id": erin, "email": "not an address"}), 400),
        (json!({"user_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "email": "x@example.org"}), 404),
        (json!({"user_id": "nope", "email": "x@example.org"}), 400),
        (json!({"user_id": erin}), 400),
    ];
    for (body, status) in cases {
        let (got, answer) = call(&app, "POST", "/user-emails", t, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    call(&app, "POST", "/user-emails", t, Some(json!({"user_id": frank, "email": "frank@example.org"}))).await;

    let (_, all) = call(&app, "GET", "/user-emails", t, None).await;
    assert_eq!(all["meta"]["count"], 2);
    let (_, mine) = call(&app, "GET", &format!("/user-emails?filter[user]={erin}"), t, None).await;
    assert_eq!(mine["data"][0]["id"], email_id.as_str());
    assert_eq!(mine["meta"]["count"], 1);
    let (_, by_address) = call(&app, "GET", "/user-emails?filter[email]=Frank@Example.org", t, None).await;
    assert_eq!(by_address["data"][0]["attributes"]["user_id"], frank.as_str());
    let (status, one) = call(&app, "GET", &format!("/user-emails/{email_id}"), t, None).await;
    assert_eq!((status, one["data"]["attributes"]["email"].as_str()), (200, Some("erin@example.org")));

    let (status, body) = call(&app, "DELETE", &format!("/user-emails/{email_id}"), t, None).await;
    assert_eq!((status, body), (204, Value::Null));
    let last = calls_to(&calls, "provision_user").last().unwrap().clone();
    assert_eq!((last["localpart"].as_str(), last["unset_emails"].as_bool()), (Some("erin"), Some(true)));
    let (status, _) = call(&app, "DELETE", &format!("/user-emails/{email_id}"), t, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&app, "GET", &format!("/user-emails/{email_id}"), t, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn sessions_are_listed_and_finished_like_logout() {
    let (app, calls) = admin_app("").await;
    let token = admin_token(&app).await;
    let t = Some(token.as_str());
    register_user(&app, "gina", PASSWORD, false).await;
    let gina = user_id(&app, "gina").await;
    let tokens = code_login(&app, "gina", PASSWORD, DEVICE_SCOPE).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "gina"},
                       "password": PASSWORD, "device_id": "COMPATDEV01"});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&login).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // OAuth 2.0 sessions: the admin client's own and gina's.
    let (_, all) = call(&app, "GET", "/oauth2-sessions", t, None).await;
    assert_eq!(all["meta"]["count"], 2, "{all}");
    let (_, hers) = call(&app, "GET", &format!("/oauth2-sessions?filter[user]={gina}"), t, None).await;
    assert_eq!(hers["meta"]["count"], 1);
    let session = &hers["data"][0];
    assert_eq!(session["type"], "oauth2-session");
    assert_eq!(session["attributes"]["scope"].as_str().unwrap().split(' ').count(), 3);
    assert!(session["attributes"]["finished_at"].is_null());
    assert!(session["attributes"]["last_active_at"].is_string());
    let oauth_id = session["id"].as_str().unwrap().to_string();
    let (_, by_client) = call(&app, "GET", &format!("/oauth2-sessions?filter[client]={ADMIN_CLIENT}"), t, None).await;
    assert_eq!(by_client["meta"]["count"], 1);
    assert!(by_client["data"][0]["attributes"]["user_id"].is_null());
    let (status, _) = call(&app, "GET", "/oauth2-sessions?filter[status]=open", t, None).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, "GET", "/compat-sessions?filter[client]=01ARZ3NDEKTSV4RRFFQ69G5FAV", t, None).await;
    assert_eq!(status, 400, "compat sessions have no client filter");

    let (status, body) = call(&app, "POST", &format!("/oauth2-sessions/{oauth_id}/finish"), t, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["attributes"]["finished_at"].is_string());
    assert_eq!(body["links"]["self"], format!("{API}/oauth2-sessions/{oauth_id}/finish"));
    assert_eq!(introspect(&app, &access).await["active"], false);
    // The device goes; the compat session's stays.
    assert_eq!(calls_to(&calls, "sync_devices").last().unwrap()["devices"], json!(["COMPATDEV01"]));
    let (status, body) = call(&app, "POST", &format!("/oauth2-sessions/{oauth_id}/finish"), t, None).await;
    assert_eq!((status, title(&body)), (400, format!("Session with ID {oauth_id} is already finished").as_str()));
    let (_, finished) = call(&app, "GET", "/oauth2-sessions?filter[status]=finished", t, None).await;
    assert_eq!(finished["data"][0]["id"], oauth_id.as_str());

    // Compat sessions.
    let (_, compat) =
        call(&app, "GET", &format!("/compat-sessions?filter[user]={gina}&filter[status]=active"), t, None).await;
    assert_eq!(compat["meta"]["count"], 1);
    assert_eq!(compat["data"][0]["attributes"]["device_id"], "COMPATDEV01");
    let compat_id = compat["data"][0]["id"].as_str().unwrap().to_string();
    let (status, one) = call(&app, "GET", &format!("/compat-sessions/{compat_id}"), t, None).await;
    assert_eq!((status, one["data"]["type"].as_str()), (200, Some("compat-session")));
    let (status, _) = call(&app, "POST", &format!("/compat-sessions/{compat_id}/finish"), t, None).await;
    assert_eq!(status, 200);
    assert_eq!(calls_to(&calls, "sync_devices").last().unwrap()["devices"], json!([]));

    // Browser sessions (the sign-in of the code login).
    let (_, browsers) = call(&app, "GET", &format!("/user-sessions?filter[user]={gina}"), t, None).await;
    assert_eq!(browsers["meta"]["count"], 1);
    let browser_id = browsers["data"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = call(&app, "POST", &format!("/user-sessions/{browser_id}/finish"), t, None).await;
    assert_eq!((status, body["data"]["attributes"]["finished_at"].is_string()), (200, true));

    for kind in ["user-sessions", "compat-sessions", "oauth2-sessions"] {
        let (status, _) = call(&app, "GET", &format!("/{kind}/01ARZ3NDEKTSV4RRFFQ69G5FAV"), t, None).await;
        assert_eq!(status, 404, "{kind}");
        let (status, _) = call(&app, "POST", &format!("/{kind}/01ARZ3NDEKTSV4RRFFQ69G5FAV/finish"), t, None).await;
        assert_eq!(status, 404, "{kind}");
    }
}

#[tokio::test]
async fn oauth2_clients_are_listed_without_secrets() {
    let (app, _) = admin_app("").await;
    let token = admin_token(&app).await;
    let t = Some(token.as_str());
    let (status, body) = call(&app, "GET", "/oauth2-clients", t, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["count"], 4, "{body}");
    assert!(!body.to_string().contains(ADMIN_SECRET) && !body.to_string().contains("secret\":"), "{body}");
    let (_, statics) = call(&app, "GET", "/oauth2-clients?filter[client-kind]=static", t, None).await;
    assert_eq!(statics["meta"]["count"], 4);
    let (_, dynamic) = call(&app, "GET", "/oauth2-clients?filter[client-kind]=dynamic", t, None).await;
    assert_eq!(dynamic["meta"]["count"], 0);
    let (status, one) = call(&app, "GET", &format!("/oauth2-clients/{CONFIDENTIAL_CLIENT}"), t, None).await;
    assert_eq!(status, 200);
    assert_eq!(one["data"]["attributes"]["client_name"], "Confidential App");
    assert_eq!(one["data"]["attributes"]["is_static"], true);
    let (status, _) = call(&app, "GET", &format!("/oauth2-clients/{SYNAPSE_CLIENT_ID}"), t, None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&app, "GET", "/oauth2-clients/01ARZ3NDEKTSV4RRFFQ69G5FAV", t, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn registration_tokens_are_issued_changed_and_revoked() {
    let (app, _) = admin_app("").await;
    let token = admin_token(&app).await;
    let t = Some(token.as_str());
    let base = "/user-registration-tokens";

    let (status, body) = call(
        &app,
        "POST",
        base,
        t,
        Some(json!({"token": "INVITE", "usage_limit": 2, "expires_at": "2100-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["type"], "user-registration_token");
    let attrs = &body["data"]["attributes"];
    assert_eq!((attrs["token"].as_str(), attrs["usage_limit"].as_u64()), (Some("INVITE"), Some(2)));
    assert_eq!((attrs["expires_at"].as_str(), attrs["valid"].as_bool()), (Some("2100-01-01T00:00:00Z"), Some(true)));
    let id = body["data"]["id"].as_str().unwrap().to_string();

    let (status, generated) = call(&app, "POST", base, t, Some(json!({}))).await;
    assert_eq!(status, 201);
    assert_eq!(generated["data"]["attributes"]["token"].as_str().unwrap().len(), 20);
    assert!(generated["data"]["attributes"]["usage_limit"].is_null(), "unlimited unless limited");

    let cases = [
        (json!({"token": "INVITE"}), 409),
        (json!({"token": "has space"}), 400),
        (json!({"usage_limit": 0}), 400),
        (json!({"usage_limit": -1}), 400),
        (json!({"expires_at": "tomorrow"}), 400),
        (json!({"uses": 1}), 400),
    ];
    for (body, status) in cases {
        let (got, answer) = call(&app, "POST", base, t, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
    }

    // PUT: a present field replaces the value, null removes it, an absent one stays.
    let one = format!("{base}/{id}");
    let (status, body) = call(&app, "PUT", &one, t, Some(json!({"usage_limit": 5}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["usage_limit"], 5);
    assert_eq!(body["data"]["attributes"]["expires_at"], "2100-01-01T00:00:00Z");
    let (_, body) = call(&app, "PUT", &one, t, Some(json!({"expires_at": null}))).await;
    assert!(body["data"]["attributes"]["expires_at"].is_null());
    assert_eq!(body["data"]["attributes"]["usage_limit"], 5);
    let (_, body) = call(&app, "PUT", &one, t, Some(json!({"expires_at": "2000-01-01T00:00:00+01:00"}))).await;
    assert_eq!(body["data"]["attributes"]["expires_at"], "1999-12-31T23:00:00Z");
    assert_eq!(body["data"]["attributes"]["valid"], false);
    let (_, expired) = call(&app, "GET", &format!("{base}?filter[expired]=true"), t, None).await;
    assert_eq!(expired["meta"]["count"], 1);
    call(&app, "PUT", &one, t, Some(json!({"expires_at": null, "usage_limit": null}))).await;
    let (status, _) = call(&app, "PUT", &one, t, Some(json!({"usage_limit": "many"}))).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, "PUT", &format!("{base}/01ARZ3NDEKTSV4RRFFQ69G5FAV"), t, Some(json!({}))).await;
    assert_eq!(status, 404);

    let (status, body) = call(&app, "POST", &format!("{one}/revoke"), t, None).await;
    assert_eq!(status, 200);
    assert!(body["data"]["attributes"]["revoked_at"].is_string());
    assert_eq!(body["data"]["attributes"]["valid"], false);
    let (status, body) = call(&app, "POST", &format!("{one}/revoke"), t, None).await;
    assert_eq!((status, title(&body)), (400, format!("Registration token with ID {id} is already revoked").as_str()));
    let (_, revoked) = call(&app, "GET", &format!("{base}?filter[revoked]=true"), t, None).await;
    assert_eq!(revoked["data"][0]["id"], id.as_str());
    let (_, valid) = call(&app, "GET", &format!("{base}?filter[valid]=true"), t, None).await;
    assert_eq!(valid["meta"]["count"], 1, "only the generated one");

    let (status, body) = call(&app, "POST", &format!("{one}/unrevoke"), t, None).await;
    assert_eq!((status, body["data"]["attributes"]["revoked_at"].is_null()), (200, true));
    let (status, _) = call(&app, "POST", &format!("{one}/unrevoke"), t, None).await;
    assert_eq!(status, 400);
    let (_, valid) = call(&app, "GET", &format!("{base}?filter[valid]=true&filter[used]=false"), t, None).await;
    assert_eq!(valid["meta"]["count"], 2);
    let (status, got) = call(&app, "GET", &one, t, None).await;
    assert_eq!((status, got["data"]["attributes"]["token"].as_str()), (200, Some("INVITE")));
    let (status, _) = call(&app, "GET", &format!("{base}/01ARZ3NDEKTSV4RRFFQ69G5FAV"), t, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn policy_admin_users_may_request_administration_at_consent() {
    let (app, _calls) =
        admin_app(&format!("policy:\n  data:\n    admin_clients: [{ADMIN_CLIENT}]\n    admin_users: [erin]\n")).await;
    register_user(&app, "erin", PASSWORD, false).await;
    let tokens = code_login(&app, "erin", PASSWORD, "openid urn:mas:admin").await;
    let token = tokens["access_token"].as_str().unwrap().to_string();
    let (status, body) = call(&app, "GET", "/users/by-username/erin", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    // The flag itself is untouched: the policy grants the scope, not the admin bit.
    assert_eq!(body["data"]["attributes"]["admin"], false);
}
