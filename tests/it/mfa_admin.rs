//! Second factors for operators (issue 16 item 5): the admin API and `appliance manage` show
//! whether a user has factors and reset them for a user who lost their phone.

use serde_json::Value;

use crate::admin::{admin_app, admin_token};
use crate::flows::{location, register_user, signed_in};
use crate::helpers::{TestApp, expect_success};
use crate::mfa::{PASSWORD, enrol, password_step};

const API: &str = "/api/admin/v1";

async fn call(app: &TestApp, token: &str, method: reqwest::Method, path: &str) -> (u16, Value) {
    let res = app.client.request(method, app.url(&format!("{API}{path}"))).bearer_auth(token).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn user_id(app: &TestApp, name: &str) -> String {
    let name = name.to_string();
    let user = app.state.store.read(move |c| appliance::store::users::by_username(c, &name)).await.unwrap();
    user.expect("user").id
}

#[tokio::test]
async fn admin_api_shows_and_resets_second_factors() {
    let (app, _) = admin_app("").await;
    register_user(&app, "alice", PASSWORD, false).await;
    let token = admin_token(&app).await;
    let id = user_id(&app, "alice").await;
    let path = format!("/users/{id}/second-factors");

    let (status, body) = call(&app, &token, reqwest::Method::GET, &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["type"], "user-second-factors");
    assert_eq!(body["data"]["attributes"]["has_second_factor"], false, "{body}");

    enrol(&app).await;
    let (_, body) = call(&app, &token, reqwest::Method::GET, &path).await;
    let a = &body["data"]["attributes"];
    assert_eq!((a["has_second_factor"].clone(), a["totp"].clone()), (true.into(), true.into()), "{body}");
    assert_eq!(a["recovery_codes_left"], 10);
    assert_eq!(a["passkeys"], 0);
    assert_eq!(body["data"]["links"]["self"], format!("{API}{path}"));
    password_step(&app).await;

    let (status, body) = call(&app, &token, reqwest::Method::POST, &format!("{path}/reset")).await;
    assert_eq!(status, 200, "{body}");
    let a = &body["data"]["attributes"];
    assert_eq!((a["has_second_factor"].clone(), a["recovery_codes_left"].clone()), (false.into(), 0.into()));
    assert_eq!(body["links"]["self"], format!("{API}{path}/reset"));
    // Lost phone: the password alone signs in again.
    signed_in(&app, "alice", PASSWORD).await;

    let unknown = "/users/01J00000000000000000000000/second-factors";
    assert_eq!(call(&app, &token, reqwest::Method::GET, unknown).await.0, 404);
    assert_eq!(call(&app, &token, reqwest::Method::POST, &format!("{unknown}/reset")).await.0, 404);
    let res = app.client.get(app.url(&format!("{API}{path}"))).send().await.unwrap();
    assert_eq!(res.status(), 401, "the bearer token is required");
}

#[tokio::test]
async fn manage_shows_and_resets_second_factors() {
    let (app, _) = admin_app("").await;
    register_user(&app, "alice", PASSWORD, false).await;
    let show = |app: &TestApp| {
        expect_success("show-second-factors", &app.run_cli(&["manage", "show-second-factors", "alice"]))
    };
    assert!(show(&app).contains("authenticator app: no"), "{}", show(&app));
    enrol(&app).await;
    let out = show(&app);
    assert!(out.contains("authenticator app: yes") && out.contains("recovery codes left: 10"), "{out}");
    assert!(out.contains("passkeys: 0"), "{out}");

    let out = app.run_cli(&["manage", "reset-second-factors", "alice"]);
    let stdout = expect_success("reset-second-factors", &out);
    assert!(stdout.contains("second factors of alice removed"), "{stdout}");
    assert!(show(&app).contains("authenticator app: no"));
    let client = app.new_client();
    let res = crate::flows::login(&app, &client, "/account/", "alice", PASSWORD).await;
    assert_eq!(location(&res), "/account/", "no code asked after the reset");
    let out = app.run_cli(&["manage", "reset-second-factors", "nobody"]);
    assert!(!out.status.success(), "an unknown user is an error");
}
