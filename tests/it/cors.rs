//! CORS (issue 12): every API a browser app calls from its own origin answers preflights and
//! carries `Access-Control-Allow-Origin: *` (no credentials); the HTML pages carry no CORS header.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::admin::{admin_app, admin_token};
use crate::flows::{PUBLIC_CLIENT, REDIRECT, register_user};
use crate::helpers::TestApp;

const ORIGIN: &str = "https://app.element.example";
/// What Element Web and element-admin send on a preflight (matrix-js-sdk adds no custom header).
const REQUEST_HEADERS: &str = "authorization,content-type,x-requested-with";

/// The API routes outside the admin API (those come from `/api/spec.json`, the admin API's own
/// list of its routes): method and path.
const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/webfinger?resource=acct:alice@localhost&rel=http://openid.net/specs/connect/1.0/issuer"),
    ("GET", "/oauth2/keys.json"),
    ("POST", "/oauth2/token"),
    ("POST", "/oauth2/registration"),
    ("POST", "/oauth2/revoke"),
    ("POST", "/oauth2/introspect"),
    ("GET", "/oauth2/userinfo"),
    ("POST", "/oauth2/userinfo"),
    ("POST", "/oauth2/device"),
    ("GET", "/_matrix/client/v3/login"),
    ("POST", "/_matrix/client/v3/login"),
    ("POST", "/_matrix/client/v3/logout"),
    ("POST", "/_matrix/client/v3/logout/all"),
    ("POST", "/_matrix/client/v3/refresh"),
    ("POST", "/_matrix/client/r0/login"),
    ("GET", "/api/spec.json"),
];

/// Pages a browser navigates to: same-origin only.
const PAGES: &[&str] = &[
    "/",
    "/login",
    "/register",
    "/account",
    "/account/emails",
    "/consent/01J00000000000000000000000",
    "/link",
    "/recover",
    "/logout",
    "/complete-compat-sso/01J00000000000000000000000",
    "/_matrix/client/v3/login/sso/redirect?redirectUrl=https%3A%2F%2Fapp.example.org%2F",
];

fn header<'a>(res: &'a Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().expect("ASCII header"))
}

fn list(res: &Response, name: &str) -> Vec<String> {
    header(res, name).unwrap_or_default().split(',').map(|s| s.trim().to_ascii_lowercase()).collect()
}

async fn preflight(app: &TestApp, method: &str, path: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", ORIGIN)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", REQUEST_HEADERS)
        .send()
        .await
        .unwrap()
}

/// The admin API's operations, as its OpenAPI document lists them, with `{…}` parameters filled.
async fn admin_routes(app: &TestApp) -> Vec<(String, String)> {
    let spec: Value = app.get("/api/spec.json").await.json().await.expect("spec JSON");
    let mut routes = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let filled = path.replace("{username}", "alice").replace("{id}", "01J00000000000000000000000");
            routes.push((method.to_ascii_uppercase(), format!("/api/admin/v1{filled}")));
        }
    }
    assert!(routes.len() >= 30, "the admin API documents {} operations", routes.len());
    routes
}

#[tokio::test]
async fn preflights_on_every_api_route_allow_any_origin_the_method_and_matrix_headers() {
    let (app, _calls) = admin_app("").await;
    let mut routes: Vec<(String, String)> = API_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    routes.extend(admin_routes(&app).await);
    for (method, path) in &routes {
        let res = preflight(&app, method, path).await;
        let what = format!("preflight for {method} {path}");
        assert_eq!(res.status(), 200, "{what}");
        assert_eq!(header(&res, "access-control-allow-origin"), Some("*"), "{what}");
        assert!(list(&res, "access-control-allow-methods").contains(&method.to_ascii_lowercase()), "{what}: {res:?}");
        let allowed = list(&res, "access-control-allow-headers");
        for h in ["authorization", "content-type", "x-requested-with", "accept", "accept-language"] {
            assert!(allowed.contains(&h.to_string()), "{what}: {h} not in {allowed:?}");
        }
        assert_eq!(header(&res, "access-control-max-age"), Some("3600"), "{what}");
        assert_eq!(header(&res, "access-control-allow-credentials"), None, "{what}");
    }
}

#[tokio::test]
async fn api_answers_are_readable_from_any_origin_errors_included() {
    let (app, _calls) = admin_app("").await;
    register_user(&app, "alice", "correct horse battery staple", true).await;
    let token = admin_token(&app).await;
    let mut routes: Vec<(String, String)> = API_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    routes.extend(admin_routes(&app).await);
    for (method, path) in &routes {
        let mut req = app.client.request(method.parse().unwrap(), app.url(path)).header("origin", ORIGIN);
        if path.starts_with("/api/admin/") {
            req = req.bearer_auth(&token);
        }
        if method == "POST" && path == "/oauth2/registration" {
            req = req.json(&json!({"redirect_uris": [REDIRECT], "client_uri": "https://app.example.org/"}));
        } else if method == "POST" && !path.starts_with("/api/") {
            req = req.form(&[("client_id", PUBLIC_CLIENT)]);
        }
        let res = req.send().await.unwrap();
        let what = format!("{method} {path} answered {}", res.status());
        assert_ne!(res.status(), 405, "{what}: not routed");
        assert_eq!(header(&res, "access-control-allow-origin"), Some("*"), "{what}");
        assert_eq!(header(&res, "access-control-allow-credentials"), None, "{what}");
        assert!(list(&res, "access-control-expose-headers").contains(&"www-authenticate".into()), "{what}");
    }
    // An unauthenticated admin call: the 401 and its challenge are readable too.
    let res = app.client.get(app.url("/api/admin/v1/users")).header("origin", ORIGIN).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    assert!(header(&res, "www-authenticate").is_some());
}

#[tokio::test]
async fn pages_and_the_authorization_endpoint_carry_no_cors_headers() {
    let (app, _calls) = admin_app("").await;
    let authorize = format!(
        "/authorize?response_type=code&client_id={PUBLIC_CLIENT}&redirect_uri={}&scope=openid&state=s\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        crate::flows::urlencode(REDIRECT)
    );
    let assets = app.get("/login").await.text().await.unwrap();
    let css = assets.split('"').find(|s| s.starts_with("/assets/")).expect("a stylesheet on /login").to_string();
    for path in PAGES.iter().copied().chain([authorize.as_str(), css.as_str()]) {
        let res = app.client.get(app.url(path)).header("origin", ORIGIN).send().await.unwrap();
        let cors: Vec<_> = res.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).collect();
        assert!(cors.is_empty(), "GET {path} ({}) carries {cors:?}", res.status());
        for method in ["GET", "POST"] {
            let res = preflight(&app, method, path).await;
            let cors: Vec<_> = res.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).collect();
            assert!(cors.is_empty(), "preflight {method} {path} ({}) carries {cors:?}", res.status());
        }
    }
}

/// element-admin at its real origin registers itself with this metadata (MAS's default policy
/// accepts it, with no relaxation), cross-origin: the preflight and the answer are readable.
#[tokio::test]
async fn element_admins_registration_from_its_origin_is_accepted() {
    let (app, _calls) = admin_app("").await;
    let origin = "https://admin.element.io";
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/oauth2/registration"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), header(&res, "access-control-allow-origin")), (200, Some("*")));
    let body = json!({
        "application_type": "web",
        "client_name": "Element Admin",
        "client_uri": "https://admin.element.io/",
        "redirect_uris": ["https://admin.element.io/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    let res =
        app.client.post(app.url("/oauth2/registration")).header("origin", origin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    let answer: Value = res.json().await.unwrap();
    assert!(answer["client_id"].is_string(), "{answer}");
    assert_eq!(answer["application_type"], "web", "{answer}");
}
