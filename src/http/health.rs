use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use super::AppState;
use crate::store::WriterState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// Answers `ok` when the database answers reads and its writer thread is running.
async fn health(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.store.writer_state() != WriterState::Running {
        tracing::error!("health check failed: the database writer is not running");
        return (StatusCode::SERVICE_UNAVAILABLE, "database writer stopped");
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
