//! Prometheus metrics, served on a listener with the `prometheus` resource only.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::lifecycle::expiry::ExpiredLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub grant_type: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub token_requests: Family<GrantLabels, Counter>,
    pub introspections: Family<ResultLabels, Counter>,
    pub logins: Family<ResultLabels, Counter>,
    pub responses: Family<StatusLabels, Counter>,
    /// Session activity records written (shared with the tracker).
    pub activity_records: Counter,
    /// Sessions ended by inactive-session expiry, by kind (given to the job worker's task).
    pub sessions_expired: Family<ExpiredLabels, Counter>,
    /// Password recovery requests once settled: sent, no_account, failed, limited.
    pub recovery_requests: Family<ResultLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_activity(Counter::default())
    }

    /// With the activity tracker's counter of written records.
    pub fn with_activity(activity_records: Counter) -> Self {
        let mut registry = Registry::with_prefix("appliance");
        let token_requests = Family::<GrantLabels, Counter>::default();
        let introspections = Family::<ResultLabels, Counter>::default();
        let logins = Family::<ResultLabels, Counter>::default();
        let responses = Family::<StatusLabels, Counter>::default();
        registry.register(
            "oauth2_token_requests",
            "Token endpoint requests by grant type and result",
            token_requests.clone(),
        );
        registry.register("oauth2_introspections", "Introspection requests by result", introspections.clone());
        registry.register("logins", "Password logins by result", logins.clone());
        registry.register("http_responses", "HTTP responses by status code", responses.clone());
        registry.register(
            "session_activity_records",
            "Session activity records written to the database",
            activity_records.clone(),
        );
        let sessions_expired = Family::<ExpiredLabels, Counter>::default();
        registry.register(
            "sessions_expired",
            "Sessions ended by experimental.inactive_session_expiration, by kind",
            sessions_expired.clone(),
        );
        let recovery_requests = Family::<ResultLabels, Counter>::default();
        registry.register(
            "password_recovery_requests",
            "Password recovery requests by outcome (sent, no_account, failed, limited)",
            recovery_requests.clone(),
        );
        Self {
            registry: Arc::new(registry),
            token_requests,
            introspections,
            logins,
            responses,
            activity_records,
            sessions_expired,
            recovery_requests,
        }
    }

    pub fn token(&self, grant_type: &str, result: &str) {
        self.token_requests.get_or_create(&GrantLabels { grant_type: grant_type.into(), result: result.into() }).inc();
    }

    pub fn recovery_request(&self, result: &str) {
        self.recovery_requests.get_or_create(&ResultLabels { result: result.into() }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}
