//! `/site-config` and `/version`: what this server allows, and which build it is.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::openapi::{Answer, Op, Routes};
use crate::http::AppState;

pub fn routes() -> Routes {
    Routes::new("server")
        .route(
            Op::get("/site-config", "siteConfig", "What this server allows", Answer::Plain("SiteConfig")),
            site_config,
        )
        .route(Op::get("/version", "version", "Which version this is", Answer::Plain("Version")), version)
}

#[tracing::instrument(name = "http.admin.site_config", skip_all)]
async fn site_config(State(state): State<AppState>) -> Json<Value> {
    let (account, passwords) = (&state.config.account, &state.config.passwords);
    Json(json!({
        "server_name": state.config.matrix.homeserver,
        "password_login_enabled": passwords.enabled,
        "password_registration_enabled": passwords.enabled && account.password_registration_enabled,
        "password_registration_email_required": account.password_registration_email_required,
        "registration_token_required": account.registration_token_required,
        "email_change_allowed": account.email_change_allowed,
        "displayname_change_allowed": account.displayname_change_allowed,
        "password_change_allowed": passwords.enabled && account.password_change_allowed,
        "account_recovery_allowed": passwords.enabled && account.password_recovery_enabled,
        "account_deactivation_allowed": account.account_deactivation_allowed,
        "captcha_enabled": false,
        "minimum_password_complexity": passwords.minimum_complexity,
    }))
}

#[tracing::instrument(name = "http.admin.version", skip_all)]
async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}
