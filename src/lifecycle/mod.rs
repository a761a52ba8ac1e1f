//! State changes that several surfaces trigger, written once.

pub mod clients;
pub mod site_keys;
pub mod users;
