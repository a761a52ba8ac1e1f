//! State changes that several surfaces trigger, written once.

pub mod clients;
pub mod oauth_sessions;
pub mod policy;
pub mod site_keys;
pub mod users;
