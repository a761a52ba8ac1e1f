//! `/users/{id}/second-factors`: whether a user has second factors (authenticator app, recovery
//! codes left, passkeys) and the reset for a user who lost them — the lifecycle functions
//! `appliance manage show-second-factors | reset-second-factors` use. No MAS counterpart (MAS has
//! no second factors); the shapes follow the rest of the API.

use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;

use super::openapi::{Answer, Body, Op, Routes};
use super::params::{NoFields, optional_json_body};
use super::{AdminError, Caller, IdPath, Resource, single, single_at};
use crate::http::AppState;
use crate::lifecycle::factors::{self, Factors};

pub fn routes() -> Routes {
    let one = Answer::One("UserSecondFactors");
    Routes::new("user")
        .route(
            Op::get("/users/{id}/second-factors", "getUserSecondFactors", "Get the user's second factors", one),
            get_one,
        )
        .route(
            Op::post(
                "/users/{id}/second-factors/reset",
                "resetUserSecondFactors",
                "Remove every second factor of the user (authenticator app, recovery codes, passkeys)",
                one,
            )
            .body(Body::Optional("Empty")),
            reset,
        )
}

/// A user's second factors (counts and flags, never a secret).
#[derive(Serialize)]
pub struct SecondFactorsResource {
    #[serde(skip)]
    id: String,
    user_id: String,
    /// Whether signing in asks for a second factor.
    has_second_factor: bool,
    totp: bool,
    recovery_codes_left: usize,
    passkeys: usize,
}

impl From<Factors> for SecondFactorsResource {
    fn from(f: Factors) -> Self {
        Self {
            has_second_factor: f.any(),
            id: f.user_id.clone(),
            user_id: f.user_id,
            totp: f.totp,
            recovery_codes_left: f.recovery_codes_left,
            passkeys: f.passkeys,
        }
    }
}

impl Resource for SecondFactorsResource {
    const KIND: &'static str = "user-second-factors";
    const PATH: &'static str = "/api/admin/v1/users";
    fn id(&self) -> &str {
        &self.id
    }
    fn path(&self) -> String {
        format!("{}/{}/second-factors", Self::PATH, self.id)
    }
}

#[tracing::instrument(name = "http.admin.users.second_factors", skip_all)]
async fn get_one(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Json<Value>, AdminError> {
    Ok(single(&SecondFactorsResource::from(factors::of(&state.store, &id).await?)))
}

#[tracing::instrument(name = "http.admin.users.second_factors_reset", skip_all)]
async fn reset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let NoFields {} = optional_json_body(&body)?;
    let by = format!("admin API session {}", caller.session_id);
    factors::reset(&state.store, &id, &by).await?;
    let r = SecondFactorsResource::from(factors::of(&state.store, &id).await?);
    let at = format!("{}/reset", r.path());
    Ok(single_at(&r, at))
}
