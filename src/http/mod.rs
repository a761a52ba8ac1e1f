//! The HTTP surfaces. `router` assembles one router per listener from the resources it serves.

pub mod admin;
pub mod assets;
pub mod client_ip;
pub mod compat;
pub mod cors;
pub mod discovery;
pub mod error;
pub mod health;
pub mod metrics;
pub mod middleware;
pub mod oauth2;
pub mod pages;
pub mod ratelimit;
pub mod router;
pub mod server;
pub mod state;
pub mod too_large;
pub mod upstream;

pub use state::AppState;
