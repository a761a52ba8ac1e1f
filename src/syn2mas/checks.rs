//! What `syn2mas check` reports, and what `migrate` checks before it starts: errors stop a
//! migration; warnings are printed and never stop it (reference/synapse-import.md §4).

use super::reader::SynapseReader;
use super::synapse_config::SynapseConfig;
use crate::config::{Config, UpstreamProviderConfig};

#[derive(Debug, Default)]
pub struct Problems {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// The `passwords.schemes` entry that verifies Synapse's hashes.
#[derive(Debug, Clone)]
pub struct BcryptScheme {
    pub version: u16,
    pub pepper: String,
    pub unicode_normalization: bool,
}

pub fn bcrypt_scheme(config: &Config) -> Option<BcryptScheme> {
    config.passwords.synapse_bcrypt().map(|s| BcryptScheme {
        version: s.version,
        pepper: s.secret.as_ref().map_or("", |p| p.expose()).to_string(),
        unicode_normalization: s.unicode_normalization,
    })
}

/// Checks of Synapse's config against the appliance's (nothing read from a database).
pub fn config_problems(config: &Config, synapse: &SynapseConfig) -> Problems {
    let mut p = Problems::default();
    if synapse.allow_guest_access {
        p.errors.push(
            "Synapse has `allow_guest_access: true`: guest access does not work with delegated authentication; \
             set it to false"
                .into(),
        );
    }
    if synapse.enable_3pid_changes == Some(true) {
        p.errors.push(
            "Synapse has `enable_3pid_changes: true`: email addresses are managed by this service after the switch; \
             remove the setting"
                .into(),
        );
    }
    if synapse.login_via_existing_session {
        p.errors.push(
            "Synapse has `login_via_existing_session.enabled: true`: log-in-with-QR works differently with delegated \
             authentication; disable it"
                .into(),
        );
    }
    if synapse.server_name != config.matrix.homeserver {
        p.errors.push(format!(
            "Synapse's server_name is `{}` but matrix.homeserver is `{}`: they must be the same",
            synapse.server_name, config.matrix.homeserver
        ));
    }
    let passwords_used = synapse.password_enabled && synapse.password_localdb;
    match bcrypt_scheme(config) {
        None if passwords_used => p.errors.push(
            "passwords.schemes has no `algorithm: bcrypt` scheme: add one (`version: 1, algorithm: bcrypt, \
             secret: <Synapse's password_config.pepper>, unicode_normalization: true`) below an argon2id scheme \
             with a higher version, so that Synapse's password hashes keep working"
                .into(),
        ),
        Some(scheme) if scheme.pepper != synapse.pepper => p.errors.push(format!(
            "the bcrypt scheme (version {})'s `secret` differs from Synapse's password_config.pepper: users could \
             not log in with their passwords",
            scheme.version
        )),
        Some(scheme) if !scheme.unicode_normalization => p.errors.push(format!(
            "the bcrypt scheme (version {}) needs `unicode_normalization: true`: Synapse normalised passwords (NFKC) \
             before hashing them",
            scheme.version
        )),
        _ => {}
    }
    if passwords_used && !config.passwords.enabled {
        p.warnings.push("Synapse users log in with passwords but `passwords.enabled` is false here".into());
    }
    if synapse.enable_registration {
        p.warnings.push(
            "Synapse has `enable_registration: true`: registration moves here (`account.password_registration_enabled`)"
                .into(),
        );
    }
    if synapse.user_consent && config.branding.tos_uri.is_none() {
        p.warnings.push("Synapse's `user_consent` is set: set `branding.tos_uri` here instead".into());
    }
    if synapse.registration_captcha {
        p.warnings.push("Synapse has `enable_registration_captcha`: this service has no captcha".into());
    }
    for (on, what) in [(synapse.cas, "CAS"), (synapse.saml, "SAML"), (synapse.jwt, "JWT login")] {
        if on {
            p.warnings.push(format!("Synapse has {what} enabled: its users need a manual mapping"));
        }
    }
    if synapse.password_providers || (synapse.password_enabled && !synapse.password_localdb) {
        p.warnings.push(
            "Synapse uses a custom password provider: those users have no password hash to import and need a manual \
             mapping"
                .into(),
        );
    }
    p
}

/// The upstream provider that takes over Synapse's `auth_provider` (its `synapse_idp_id`).
pub fn provider_for<'c>(config: &'c Config, auth_provider: &str) -> Option<&'c UpstreamProviderConfig> {
    config.upstream_oauth2.providers.iter().find(|p| p.synapse_idp_id.as_deref() == Some(auth_provider))
}

/// Checks of the data in Synapse's database. External ids whose `auth_provider` no upstream
/// provider maps (`synapse_idp_id`) are an error, as in MAS, unless `ignore_missing_auth_providers`.
pub fn database_problems(
    config: &Config,
    synapse: &SynapseConfig,
    reader: &mut SynapseReader,
    ignore_missing_auth_providers: bool,
) -> anyhow::Result<Problems> {
    let mut p = Problems::default();
    let (guests, _hashed, sample) = reader.user_facts()?;
    if let Some(name) = sample {
        if !name.ends_with(&format!(":{}", synapse.server_name)) {
            p.errors.push(format!(
                "Synapse's database holds `{name}`, not a user of server_name `{}`: wrong database or wrong config?",
                synapse.server_name
            ));
        }
    }
    if guests > 0 {
        p.warnings.push(format!(
            "{guests} guest account(s): imported so their names stay taken, without sessions (guest access ends)"
        ));
    }
    for (medium, n) in reader.threepid_media()? {
        if medium != "email" {
            p.warnings.push(format!(
                "{n} third-party id(s) of medium `{medium}` (e.g. phone numbers): kept, but nothing uses them here"
            ));
        }
    }
    for (provider, n) in reader.external_providers()? {
        if provider == "oauth-delegated" {
            p.errors.push(format!(
                "{n} external id(s) of auth_provider `oauth-delegated`, left by an earlier delegated setup: remove them \
                 with `DELETE FROM user_external_ids WHERE auth_provider = 'oauth-delegated'` in Synapse's database"
            ));
            continue;
        }
        match provider_for(config, &provider) {
            Some(upstream) if !upstream.enabled => p.warnings.push(format!(
                "{n} external id(s) of `{provider}` become links to upstream provider {}, which is disabled \
                 (`enabled: false`): those users cannot sign in with it until it is enabled",
                upstream.id
            )),
            Some(_) => {}
            None if ignore_missing_auth_providers => p.warnings.push(format!(
                "{n} external id(s) of auth_provider `{provider}` are not linked (--ignore-missing-auth-providers): \
                 no upstream provider has `synapse_idp_id: {provider}`, so those users cannot sign in through it here"
            )),
            None => {
                let known = if synapse.oidc_auth_providers.contains(&provider) {
                    ""
                } else {
                    " (Synapse's config no longer declares it)"
                };
                p.errors.push(format!(
                    "{n} external id(s) of auth_provider `{provider}`{known}, but no upstream provider has \
                     `synapse_idp_id: {provider}`: add one to upstream_oauth2.providers so those users can sign in \
                     with it, or pass --ignore-missing-auth-providers to import them without their links"
                ));
            }
        }
    }
    Ok(p)
}
