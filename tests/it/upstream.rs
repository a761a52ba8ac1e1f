//! Upstream providers and links through the admin API (MAS's shapes) and the CLI (issue 14).

use serde_json::{Value, json};

use crate::admin::{PASSWORD, admin_app, admin_token, call, title, user_id};
use crate::flows::register_user;

const PROVIDER: &str = "01H8PKNWKKRPCBW4YGH1RWV279";
const DISABLED: &str = "01H8PKNWKKRPCBW4YGH1RWV280";

fn providers() -> String {
    format!(
        r#"
upstream_oauth2:
  providers:
    - id: {PROVIDER}
      human_name: Keycloak
      brand_name: gitlab
      issuer: "https://sso.example.com/realms/matrix"
      client_id: matrix
      client_secret: "keycloak-secret"
      token_endpoint_auth_method: client_secret_basic
      scope: "openid profile"
      registration_token_required: true
    - id: {DISABLED}
      enabled: false
      issuer: "https://old.example.com/"
      client_id: matrix
      token_endpoint_auth_method: none
      scope: openid
"#
    )
}

#[tokio::test]
async fn upstream_providers_and_links_in_the_admin_api() {
    let (app, _calls) = admin_app(&providers()).await;
    let token = admin_token(&app).await;
    let t = Some(token.as_str());

    let (status, list) = call(&app, "GET", "/upstream-oauth-providers", t, None).await;
    assert_eq!((status, list["meta"]["count"].as_u64()), (200, Some(2)), "{list}");
    let first = &list["data"][0];
    assert_eq!(first["type"], "upstream-oauth-provider");
    assert_eq!(first["id"], PROVIDER);
    let a = &first["attributes"];
    assert_eq!(
        (a["issuer"].as_str(), a["human_name"].as_str(), a["brand_name"].as_str(), a["disabled_at"].is_null()),
        (Some("https://sso.example.com/realms/matrix"), Some("Keycloak"), Some("gitlab"), true)
    );
    assert_eq!(a["registration_token_required"], true);
    assert!(a.get("client_secret").is_none() && !list.to_string().contains("keycloak-secret"));
    let (_, enabled) = call(&app, "GET", "/upstream-oauth-providers?filter[enabled]=true", t, None).await;
    assert_eq!(enabled["meta"]["count"], 1);
    let (_, disabled) = call(&app, "GET", "/upstream-oauth-providers?filter[enabled]=false", t, None).await;
    assert_eq!(disabled["data"][0]["id"], DISABLED);
    assert!(disabled["data"][0]["attributes"]["disabled_at"].is_string());
    let (status, one) = call(&app, "GET", &format!("/upstream-oauth-providers/{PROVIDER}"), t, None).await;
    assert_eq!((status, one["data"]["id"].as_str()), (200, Some(PROVIDER)));

    register_user(&app, "erin", PASSWORD, false).await;
    register_user(&app, "frank", PASSWORD, false).await;
    let erin = user_id(&app, "erin").await;
    let frank = user_id(&app, "frank").await;
    let add = |user: &str, subject: &str| json!({"user_id": user, "provider_id": PROVIDER, "subject": subject, "human_account_name": "erin@sso"});
    let (status, link) = call(&app, "POST", "/upstream-oauth-links", t, Some(add(&erin, "sub-erin"))).await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(link["data"]["type"], "upstream-oauth-link");
    let attrs = &link["data"]["attributes"];
    assert_eq!(
        (attrs["user_id"].as_str(), attrs["provider_id"].as_str(), attrs["subject"].as_str()),
        (Some(erin.as_str()), Some(PROVIDER), Some("sub-erin"))
    );
    let link_id = link["data"]["id"].as_str().unwrap().to_string();
    // The same link again: 200; the subject for another user: 409.
    let (status, _) = call(&app, "POST", "/upstream-oauth-links", t, Some(add(&erin, "sub-erin"))).await;
    assert_eq!(status, 200);
    let (status, body) = call(&app, "POST", "/upstream-oauth-links", t, Some(add(&frank, "sub-erin"))).await;
    assert_eq!(status, 409, "{body}");
    let unknown_provider = json!({"user_id": erin, "provider_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "subject": "x"});
    let (status, body) = call(&app, "POST", "/upstream-oauth-links", t, Some(unknown_provider)).await;
    assert_eq!(status, 404, "{body}");
    assert!(title(&body).contains("provider"));
    let (status, _) = call(&app, "POST", "/upstream-oauth-links", t, Some(json!({"user_id": erin}))).await;
    assert_eq!(status, 400);
    call(&app, "POST", "/upstream-oauth-links", t, Some(add(&frank, "sub-frank"))).await;

    let (_, all) = call(&app, "GET", "/upstream-oauth-links", t, None).await;
    assert_eq!(all["meta"]["count"], 2);
    let (_, mine) = call(&app, "GET", &format!("/upstream-oauth-links?filter[user]={frank}"), t, None).await;
    assert_eq!(mine["data"][0]["attributes"]["subject"], "sub-frank");
    let (_, by_subject) = call(&app, "GET", "/upstream-oauth-links?filter[subject]=sub-erin", t, None).await;
    assert_eq!(by_subject["data"][0]["id"], link_id.as_str());
    let (status, body) = call(&app, "DELETE", &format!("/upstream-oauth-links/{link_id}"), t, None).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _) = call(&app, "GET", &format!("/upstream-oauth-links/{link_id}"), t, None).await;
    assert_eq!(status, 404);
}
