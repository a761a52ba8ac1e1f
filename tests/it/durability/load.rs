//! The requests the durability tests send, each with its outcome as the client saw it: a
//! definite answer (success, refusal, server error) or none at all (the connection died).

use serde_json::{Value, json};

use crate::flows::{CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET};
use crate::helpers::MATRIX_SECRET;

/// What the client learned from one request.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// A 4xx answer, with its body.
    Refused(u16, String),
    /// A 5xx answer, with its body.
    Failed(u16, String),
    /// No answer: the connection broke (the server was killed).
    NoAnswer(String),
}

#[derive(Clone)]
pub struct Target {
    pub base: String,
    pub client: reqwest::Client,
}

impl Target {
    pub fn new(base: &str) -> Target {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        Target { base: base.trim_end_matches('/').to_string(), client }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn answer(res: Result<reqwest::Response, reqwest::Error>) -> Outcome<Value> {
    let res = match res {
        Ok(r) => r,
        Err(e) => return Outcome::NoAnswer(e.to_string()),
    };
    let status = res.status().as_u16();
    let body = match res.text().await {
        Ok(b) => b,
        Err(e) => return Outcome::NoAnswer(e.to_string()),
    };
    match status {
        200..=299 => Outcome::Done(serde_json::from_str(&body).unwrap_or(Value::Null)),
        400..=499 => Outcome::Refused(status, body),
        _ => Outcome::Failed(status, body),
    }
}

fn map<T>(o: Outcome<Value>, f: impl FnOnce(Value) -> T) -> Outcome<T> {
    match o {
        Outcome::Done(v) => Outcome::Done(f(v)),
        Outcome::Refused(s, b) => Outcome::Refused(s, b),
        Outcome::Failed(s, b) => Outcome::Failed(s, b),
        Outcome::NoAnswer(e) => Outcome::NoAnswer(e),
    }
}

fn string(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}")).to_string()
}

/// A compat password login asking for a refresh token: (access, refresh).
pub async fn compat_login(t: &Target, user: &str, password: &str) -> Outcome<(String, String)> {
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                      "password": password, "refresh_token": true});
    let res = t.client.post(t.url("/_matrix/client/v3/login")).json(&body).send().await;
    map(answer(res).await, |v| (string(&v, "access_token"), string(&v, "refresh_token")))
}

/// A compat refresh: the new (access, refresh).
pub async fn compat_refresh(t: &Target, refresh: &str) -> Outcome<(String, String)> {
    let res = t.client.post(t.url("/_matrix/client/v3/refresh")).json(&json!({"refresh_token": refresh})).send().await;
    map(answer(res).await, |v| (string(&v, "access_token"), string(&v, "refresh_token")))
}

/// A compat logout with `access`.
pub async fn compat_logout(t: &Target, access: &str) -> Outcome<()> {
    let res = t.client.post(t.url("/_matrix/client/v3/logout")).bearer_auth(access).json(&json!({})).send().await;
    map(answer(res).await, |_| ())
}

/// The client_credentials grant for the confidential test client: the access token.
pub async fn client_credentials(t: &Target) -> Outcome<String> {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CONFIDENTIAL_CLIENT),
        ("client_secret", CONFIDENTIAL_SECRET),
    ];
    let res = t.client.post(t.url("/oauth2/token")).form(&form).send().await;
    map(answer(res).await, |v| string(&v, "access_token"))
}

/// `/oauth2/revoke` of `token` by the confidential test client.
pub async fn revoke(t: &Target, token: &str) -> Outcome<()> {
    let form = [("token", token), ("client_id", CONFIDENTIAL_CLIENT), ("client_secret", CONFIDENTIAL_SECRET)];
    let res = t.client.post(t.url("/oauth2/revoke")).form(&form).send().await;
    map(answer(res).await, |_| ())
}

/// Whether `token` introspects active (as Synapse asks). Panics when there is no clean answer.
pub async fn is_active(t: &Target, token: &str) -> bool {
    let res = t
        .client
        .post(t.url("/oauth2/introspect"))
        .bearer_auth(MATRIX_SECRET)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("introspection: {e}"));
    assert_eq!(res.status(), 200, "introspection answered {}", res.status());
    let v: Value = res.json().await.expect("introspection JSON");
    v["active"].as_bool().expect("active is a boolean")
}

/// Introspects every token, 16 at a time: those whose state is not `want`.
pub async fn not_in_state(t: &Target, tokens: impl IntoIterator<Item = String>, want: bool) -> Vec<String> {
    let tokens: Vec<String> = tokens.into_iter().collect();
    let mut wrong = Vec::new();
    for chunk in tokens.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for tok in chunk {
            let (t, tok) = (t.clone(), tok.clone());
            set.spawn(async move {
                let active = is_active(&t, &tok).await;
                (tok, active)
            });
        }
        while let Some(r) = set.join_next().await {
            let (tok, active) = r.expect("introspection task");
            if active != want {
                wrong.push(tok);
            }
        }
    }
    wrong
}
