//! State changes that several surfaces trigger, written once.

pub mod activity;
pub mod clients;
pub mod compat_sessions;
pub mod emails;
pub mod expiry;
pub mod grants;
pub mod oauth_sessions;
pub mod personal_sessions;
pub mod policy;
pub mod provisioning;
pub mod registration;
pub mod registration_tokens;
pub mod sessions;
pub mod site_keys;
pub mod tokens;
pub mod upstream;
pub mod upstream_providers;
pub mod users;
