//! client_secret_jwt and private_key_jwt assertions (RFC 7523), and their negative table.

use jwt_simple::prelude::*;
use serde_json::{Value, json};

use crate::flows::token_request;
use crate::helpers::{SYNAPSE_CLIENT_ID, SYNAPSE_CLIENT_SECRET, TestApp, spawn_app_with};

const HS_CLIENT: &str = "01J0000000000000000000HS01";
const HS_SECRET: &str = "a-shared-secret-for-client-secret-jwt";
const PK_CLIENT: &str = "01J0000000000000000000PK01";

fn patch(jwks: &Value) -> String {
    format!(
        r#"
clients:
  - client_id: {SYNAPSE_CLIENT_ID}
    client_auth_method: client_secret_basic
    client_secret: "{SYNAPSE_CLIENT_SECRET}"
  - client_id: {HS_CLIENT}
    client_auth_method: client_secret_jwt
    client_secret: "{HS_SECRET}"
  - client_id: {PK_CLIENT}
    client_auth_method: private_key_jwt
    jwks: {jwks}
"#
    )
}

fn claims(app: &TestApp, client: &str, jti: &str) -> JWTClaims<NoCustomClaims> {
    Claims::create(Duration::from_mins(5))
        .with_issuer(client)
        .with_subject(client)
        .with_audience(app.url("/oauth2/token"))
        .with_jwt_id(jti)
}

async fn token_with(app: &TestApp, assertion: &str) -> (u16, Value) {
    let res = token_request(
        app,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
        ],
    )
    .await;
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn jwt_client_authentication() {
    let key = ES256KeyPair::generate().with_key_id("k1");
    let pk = key.public_key();
    let point = pk.public_key().to_bytes_uncompressed();
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
    let app = spawn_app_with(&patch(&jwks)).await;

    // client_secret_jwt
    let hs = HS256Key::from_bytes(HS_SECRET.as_bytes());
    let ok = hs.authenticate(claims(&app, HS_CLIENT, "jti-1")).unwrap();
    let (status, body) = token_with(&app, &ok).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = token_with(&app, &ok).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "a replayed jti is refused");

    // private_key_jwt
    let ok = key.sign(claims(&app, PK_CLIENT, "jti-2")).unwrap();
    let (status, body) = token_with(&app, &ok).await;
    assert_eq!(status, 200, "{body}");

    let other_key = ES256KeyPair::generate().with_key_id("k1");
    let wrong_hs = HS256Key::from_bytes(b"not the secret");
    let mut expired = claims(&app, PK_CLIENT, "jti-4");
    expired.expires_at = Some(UnixTimeStamp::from_secs(1_000_000));
    let wrong_aud = Claims::create(Duration::from_mins(5))
        .with_issuer(PK_CLIENT)
        .with_subject(PK_CLIENT)
        .with_audience("https://elsewhere.example/token")
        .with_jwt_id("jti-5");
    let no_jti = Claims::create(Duration::from_mins(5))
        .with_issuer(PK_CLIENT)
        .with_subject(PK_CLIENT)
        .with_audience(app.url("/oauth2/token"));
    let cases: Vec<(&str, String)> = vec![
        ("signed by another key", other_key.sign(claims(&app, PK_CLIENT, "jti-3")).unwrap()),
        ("HMAC with a wrong secret", wrong_hs.authenticate(claims(&app, HS_CLIENT, "jti-6")).unwrap()),
        ("expired", key.sign(expired).unwrap()),
        ("wrong audience", key.sign(wrong_aud).unwrap()),
        ("no jti", key.sign(no_jti).unwrap()),
        (
            "HMAC for a private_key_jwt client",
            HS256Key::from_bytes(b"some other shared secret").authenticate(claims(&app, PK_CLIENT, "jti-7")).unwrap(),
        ),
        ("not a JWT", "not.a.jwt".to_string()),
        ("garbage", "%%%".to_string()),
        ("unknown client", key.sign(claims(&app, "01J00000000000000000000000", "jti-8")).unwrap()),
    ];
    for (what, assertion) in cases {
        let (status, body) = token_with(&app, &assertion).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], "invalid_client", "{what}");
    }
}
