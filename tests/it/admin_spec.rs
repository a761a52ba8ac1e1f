//! `/api/spec.json` (issue 12): the admin API's OpenAPI 3.1 document against the router that
//! serves it. Both come from `admin::routes()`; this checks the document lists exactly those
//! operations, and that the running server routes every documented operation and nothing else on
//! the documented paths.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::admin::{admin_app, admin_token};
use crate::helpers::TestApp;

const ULID: &str = "01J00000000000000000000000";

fn fill(path: &str) -> String {
    format!("/api/admin/v1{}", path.replace("{id}", ULID).replace("{username}", "nobody"))
}

async fn spec(app: &TestApp) -> Value {
    let res = app.client.get(app.url("/api/spec.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    res.json().await.expect("spec JSON")
}

/// The answer of an admin API call: status and the error title, if any.
async fn call(app: &TestApp, token: &str, method: &Method, path: &str) -> (u16, String) {
    let res = app.client.request(method.clone(), app.url(path)).bearer_auth(token).send().await.unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["errors"][0]["title"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routed_operations() {
    let (app, _calls) = admin_app("").await;
    let doc = spec(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], format!("{}/api/admin/v1", app.base));

    // The document against the router's own list.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().expect("path item").keys().map(move |m| (m.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let (_, ops) = appliance::http::admin::routes().into_parts();
    let routed: BTreeSet<(String, String)> =
        ops.iter().map(|(_, op)| (op.method.to_string(), op.path.to_string())).collect();
    assert_eq!(ops.len(), routed.len(), "an operation is routed twice");
    assert_eq!(documented, routed, "documented vs routed");

    // The running server: every documented operation is routed (a handler answers, not the
    // API's fallback), and the documented paths answer no other method.
    crate::flows::register_user(&app, "nobody", "correct horse battery staple", false).await;
    let token = admin_token(&app).await;
    let (status, title) = call(&app, &token, &Method::GET, "/api/admin/v1/no-such-thing").await;
    assert_eq!((status, title.as_str()), (404, "Not found"), "the fallback");
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let (status, title) = call(&app, &token, &method, &fill(path)).await;
            let is_documented = documented.contains(&(method.to_string(), path.clone()));
            let what = format!("{method} {path}: {status} {title:?}");
            if is_documented {
                assert!(status != 405 && !(status == 404 && title == "Not found"), "documented, not routed: {what}");
            } else {
                assert_eq!(status, 405, "routed, not documented: {what}");
            }
        }
    }
}
