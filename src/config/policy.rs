use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `policy`: the data MAS's built-in policy reads (its rules are written into
/// `lifecycle::policy`; there is no `wasm_module` to load).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub data: PolicyData,
}

/// `policy.data`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyData {
    /// Client ids that may get `urn:mas:admin` (the admin API) with the client_credentials grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_clients: Vec<String>,
    /// Usernames that may request `urn:synapse:admin:*` and `urn:mas:admin` in interactive grants,
    /// as if their `can_request_admin` flag were set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_users: Vec<String>,
    /// What dynamic client registration accepts beyond MAS's default policy.
    #[serde(default, skip_serializing_if = "ClientRegistrationPolicy::is_default")]
    pub client_registration: ClientRegistrationPolicy,
}

/// `policy.data.client_registration` (MAS's names; all off by default). For development setups,
/// e.g. a web client served from `http://localhost:3000`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistrationPolicy {
    /// Accept `http://` and loopback-host URIs (client_uri, redirect_uris, logo/tos/policy URIs).
    #[serde(default)]
    pub allow_insecure_uris: bool,
    /// Accept redirect and logo/tos/policy URIs on another host than the client_uri.
    #[serde(default)]
    pub allow_host_mismatch: bool,
    /// Accept a registration without client_uri.
    #[serde(default)]
    pub allow_missing_client_uri: bool,
}

impl ClientRegistrationPolicy {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl PolicyData {
    pub fn is_admin_client(&self, client_id: &str) -> bool {
        self.admin_clients.iter().any(|c| c.eq_ignore_ascii_case(client_id))
    }

    pub fn is_admin_user(&self, username: &str) -> bool {
        self.admin_users.iter().any(|u| u == username)
    }
}

impl PolicyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, id) in self.data.admin_clients.iter().enumerate() {
            if ulid::Ulid::from_string(id).is_err() {
                return Err(ConfigError::new(
                    format!("policy.data.admin_clients[{i}]"),
                    format!("{id:?} is not a client id (a ULID such as 01J0000000000000000000ADM1)"),
                ));
            }
        }
        for (i, name) in self.data.admin_users.iter().enumerate() {
            if let Err(why) = crate::model::user::check_localpart(name) {
                return Err(ConfigError::new(
                    format!("policy.data.admin_users[{i}]"),
                    format!("{name:?} is not a username (the localpart, without @ and server name): {why}"),
                ));
            }
        }
        Ok(())
    }
}
