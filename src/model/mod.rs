//! Plain data types shared by the store, the lifecycle functions and the HTTP surfaces.

pub mod client;
pub mod device;
pub mod scope;
pub mod template;
pub mod upstream;
pub mod user;

pub use client::Client;
pub use device::DeviceId;
pub use scope::Scope;
pub use user::User;
