//! The one integration-test binary: `cargo test --test it`. Add a module per area here.

mod account;
mod activity;
mod admin;
mod browser;
mod browser_walk;
mod client_auth;
mod client_ip;
mod compat;
mod csrf;
mod e2e_lifecycle;
mod e2e_synapse;
mod email;
mod expiry;
mod flows;
mod foundation;
mod helpers;
mod locked;
mod oauth;
mod oauth_extras;
mod oauth_library;
mod personal;
mod register;
mod register_email;
mod registration;
mod synapse_harness;
mod token_refusals;
