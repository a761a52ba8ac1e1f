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
    Asset {
        name: "passkey.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/passkey.js"),
    },
    Asset { name: "logo.svg", content_type: "image/svg+xml", bytes: include_bytes!("../../assets/logo.svg") },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", bytes: include_bytes!("../../assets/favicon.svg") },
];

/// The embedded files with their hashed names (`app.3f2a9c1d.css`), and the operator's logo.
pub struct Assets {
    hashed: Vec<(String, &'static Asset)>,
    brand_logo: Option<BrandLogo>,
}

/// `branding.logo_path`, read at start.
struct BrandLogo {
    hashed_name: String,
    content_type: &'static str,
    bytes: Vec<u8>,
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
        Self { hashed, brand_logo: None }
    }

    /// The embedded files plus the operator's logo (`content_type`, bytes).
    pub fn with_logo(logo: Option<(&'static str, Vec<u8>)>) -> Self {
        let mut assets = Self::new();
        assets.brand_logo = logo.map(|(content_type, bytes)| {
            let ext = content_type.trim_start_matches("image/").trim_end_matches("+xml").replace("jpeg", "jpg");
            let hashed_name = format!("brand-logo.{}.{ext}", &crate::crypto::sha256_hex(&bytes)[..10]);
            BrandLogo { hashed_name, content_type, bytes }
        });
        assets
    }

    /// The URL path of the logo shown on every page: the operator's, else the built-in one.
    pub fn logo_path(&self) -> String {
        match &self.brand_logo {
            Some(logo) => format!("/assets/{}", logo.hashed_name),
            None => self.path("logo.svg"),
        }
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
    if let Some(logo) = state.assets.brand_logo.as_ref().filter(|l| l.hashed_name == name) {
        return (
            [
                (header::CONTENT_TYPE, logo.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                // An SVG opened on its own must not run scripts on this origin.
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; sandbox"),
            ],
            logo.bytes.clone(),
        )
            .into_response();
    }
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
