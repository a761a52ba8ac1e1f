//! Static files embedded in the binary, served at content-hashed URLs with long cache lifetimes.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const FILES: &[Asset] = &[
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("../../assets/app.css") },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/app.js"),
    },
    Asset { name: "logo.svg", content_type: "image/svg+xml", bytes: include_bytes!("../../assets/logo.svg") },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", bytes: include_bytes!("../../assets/favicon.svg") },
];

/// The embedded files with their hashed names (`app.3f2a9c1d.css`).
pub struct Assets {
    hashed: Vec<(String, &'static Asset)>,
}

impl Assets {
    pub fn new() -> Self {
        let hashed = FILES
            .iter()
            .map(|a| {
                let hash = &crate::crypto::sha256_hex(a.bytes)[..10];
                let (stem, ext) = a.name.rsplit_once('.').unwrap_or((a.name, ""));
                (format!("{stem}.{hash}.{ext}"), a)
            })
            .collect();
        Self { hashed }
    }

    /// The URL path of an asset by its plain name, e.g. `app.css` → `/assets/app.3f2a9c1d.css`.
    pub fn path(&self, name: &str) -> String {
        self.hashed
            .iter()
            .find(|(_, a)| a.name == name)
            .map(|(h, _)| format!("/assets/{h}"))
            .unwrap_or_else(|| format!("/assets/{name}"))
    }
}

impl Default for Assets {
    fn default() -> Self {
        Self::new()
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/assets/{name}", get(serve))
}

async fn serve(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    if let Some((_, asset)) = state.assets.hashed.iter().find(|(h, _)| *h == name) {
        return (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.bytes,
        )
            .into_response();
    }
    // Unhashed names still work (bookmarks, external links) but are revalidated.
    if let Some(asset) = FILES.iter().find(|a| a.name == name) {
        return (
            [(header::CONTENT_TYPE, asset.content_type), (header::CACHE_CONTROL, "public, max-age=300")],
            asset.bytes,
        )
            .into_response();
    }
    (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "public, max-age=300")], "not found").into_response()
}
