//! Writes what the reader streams into the appliance's database, inside the caller's transaction,
//! following MAS's rules (reference/synapse-import.md §2):
//! - users: id a ULID of `creation_ts`; admin → may request admin; locked/deactivated at their
//!   creation time; guests kept (no password, no sessions); appservice users not imported.
//! - password hashes verbatim, tagged with the bcrypt scheme's version (upgraded on first login).
//! - email threepids as verified addresses; other media kept as unsupported third-party ids.
//! - external ids → upstream links, through the provider whose `synapse_idp_id` is the id's
//!   `auth_provider`; with `--ignore-missing-auth-providers` the others are kept aside unlinked.
//! - devices → compat sessions (name, last seen, IP, user agent); access and refresh tokens
//!   attached to their device's session, stored hashed like every token. An access token without
//!   a device (Synapse's admin API, appservice tooling, old clients) gets a device-less compat
//!   session of its own, never a Synapse admin one (MAS's rule). Nothing for guests, deactivated
//!   or appservice users.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::Context;
use rusqlite::Connection;

use super::Progress;
use super::reader::{SourceCounts, SynapseReader};
use crate::model::upstream::UpstreamLink;
use crate::store::import::{self as store, ImportedSession, ImportedUser};
use crate::store::upstream as upstream_store;
use crate::tokens::hash_token;

/// What was imported and what was left out (and why).
#[derive(Debug, Default, Clone)]
pub struct ImportCounts {
    pub users: u64,
    pub admins: u64,
    pub locked: u64,
    pub deactivated: u64,
    pub guests: u64,
    pub appservice_users_skipped: u64,
    pub passwords: u64,
    pub emails: u64,
    pub unsupported_threepids: u64,
    /// External ids that became upstream links.
    pub upstream_links: u64,
    /// External ids no provider maps, kept aside unlinked (`--ignore-missing-auth-providers`).
    pub external_ids_not_linked: u64,
    pub sessions: u64,
    /// Every imported access token, those without a device included (MAS counts them so).
    pub access_tokens: u64,
    /// Access tokens without a device, each imported with a device-less compat session of its own
    /// (not counted in `sessions`, which are the devices).
    pub deviceless_sessions: u64,
    pub refresh_tokens: u64,
    pub rows_of_skipped_users: u64,
    pub tokens_without_device_skipped: u64,
    pub bad_ips_dropped: u64,
}

pub struct ImportSettings {
    pub server_name: String,
    /// The `passwords.schemes` version of the bcrypt scheme, when one is configured.
    pub bcrypt_version: Option<u16>,
    /// Unix seconds: the import time (stands in for missing timestamps).
    pub now: i64,
    /// Synapse `auth_provider` → the upstream provider (its database id) that takes it over.
    pub upstream_providers: HashMap<String, String>,
    pub ignore_missing_auth_providers: bool,
}

struct UserEntry {
    id: String,
    admin: bool,
    created_at: i64,
    /// Guests and deactivated users get no sessions.
    sessions: bool,
}

pub struct Importer<'a> {
    conn: &'a Connection,
    settings: &'a ImportSettings,
    users: HashMap<String, UserEntry>,
    /// (user MXID, device id) → compat session id.
    devices: HashMap<(String, String), String>,
    pub counts: ImportCounts,
}

/// The offline import runs without an app: its IDs (at the imported rows' own times) draw on the OS.
const RNG: &dyn crate::rng::Rng = &crate::rng::OsRng;

fn ulid_at(seconds: i64) -> String {
    RNG.id_at(seconds.max(0))
}

fn ulid_at_ms(ms: i64) -> String {
    RNG.ulid_at(u64::try_from(ms.max(0)).unwrap_or(0)).to_string()
}

impl<'a> Importer<'a> {
    pub fn new(conn: &'a Connection, settings: &'a ImportSettings) -> Self {
        Self { conn, settings, users: HashMap::new(), devices: HashMap::new(), counts: ImportCounts::default() }
    }

    /// Everything, in MAS's order; `progress` hears of each stage and row.
    pub fn run(
        &mut self,
        reader: &mut SynapseReader,
        totals: &SourceCounts,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<()> {
        progress.stage("users", totals.users);
        reader.users(|u| {
            progress.tick();
            self.user(u)
        })?;
        progress.stage("third-party ids", totals.threepids);
        reader.threepids(|t| {
            progress.tick();
            self.threepid(t)
        })?;
        progress.stage("external ids", totals.external_ids);
        reader.external_ids(|e| {
            progress.tick();
            self.external_id(e)
        })?;
        progress.stage("devices", totals.devices);
        reader.devices(|d| {
            progress.tick();
            self.device(d)
        })?;
        progress.stage("access tokens", totals.access_tokens);
        reader.access_tokens(|t| {
            progress.tick();
            self.access_token(t)
        })?;
        progress.stage("refresh tokens", totals.refresh_tokens);
        reader.refresh_tokens(|t| {
            progress.tick();
            self.refresh_token(t)
        })?;
        progress.done();
        Ok(())
    }

    fn localpart<'n>(&self, mxid: &'n str) -> anyhow::Result<&'n str> {
        let (local, server) = mxid
            .strip_prefix('@')
            .and_then(|s| s.split_once(':'))
            .with_context(|| format!("Synapse user `{mxid}` is not a Matrix user id"))?;
        anyhow::ensure!(
            server == self.settings.server_name,
            "Synapse user `{mxid}` is not on `{}` (Synapse's server_name and matrix.homeserver)",
            self.settings.server_name
        );
        Ok(local)
    }

    fn user(&mut self, u: super::reader::SynapseUser) -> anyhow::Result<()> {
        if u.appservice_id.is_some() {
            // The appservice manages these; they never log in here (MAS does the same).
            self.counts.appservice_users_skipped += 1;
            return Ok(());
        }
        let localpart = self.localpart(&u.name)?;
        let created_at = u.creation_ts.unwrap_or(self.settings.now);
        let id = ulid_at(created_at);
        store::insert_user(
            self.conn,
            &ImportedUser {
                id: &id,
                username: localpart,
                created_at,
                locked_at: u.locked.then_some(created_at),
                deactivated_at: u.deactivated.then_some(created_at),
                can_request_admin: u.admin,
                is_guest: u.is_guest,
            },
        )
        .with_context(|| format!("cannot import user `{}`", u.name))?;
        if let Some(hash) = &u.password_hash {
            let version = self.settings.bcrypt_version.context(
                "Synapse users have passwords but `passwords.schemes` has no bcrypt scheme (run `syn2mas check`)",
            )?;
            store::insert_password(self.conn, &ulid_at(created_at), &id, hash, version, created_at)?;
            self.counts.passwords += 1;
        }
        let c = &mut self.counts;
        c.users += 1;
        c.admins += u64::from(u.admin);
        c.locked += u64::from(u.locked);
        c.deactivated += u64::from(u.deactivated);
        c.guests += u64::from(u.is_guest);
        let sessions = !u.is_guest && !u.deactivated;
        self.users.insert(u.name, UserEntry { id, admin: u.admin, created_at, sessions });
        Ok(())
    }

    fn threepid(&mut self, t: super::reader::SynapseThreepid) -> anyhow::Result<()> {
        let Some(user) = self.users.get(&t.user_id) else {
            self.counts.rows_of_skipped_users += 1;
            return Ok(());
        };
        let created_at = t.added_at.map_or(user.created_at, |ms| ms / 1000);
        if t.medium == "email" {
            if store::insert_email(self.conn, &ulid_at(created_at), &user.id, &t.address, created_at)? {
                self.counts.emails += 1;
            }
        } else {
            store::insert_unsupported_threepid(self.conn, &user.id, &t.medium, &t.address, created_at)?;
            self.counts.unsupported_threepids += 1;
        }
        Ok(())
    }

    fn external_id(&mut self, e: super::reader::SynapseExternalId) -> anyhow::Result<()> {
        let Some(user) = self.users.get(&e.user_id) else {
            self.counts.rows_of_skipped_users += 1;
            return Ok(());
        };
        match self.settings.upstream_providers.get(&e.auth_provider) {
            Some(provider_id) => {
                let link = UpstreamLink {
                    id: ulid_at(user.created_at),
                    provider_id: provider_id.clone(),
                    user_id: Some(user.id.clone()),
                    subject: e.external_id,
                    human_account_name: None,
                    created_at: user.created_at,
                };
                upstream_store::insert_link(self.conn, &link).with_context(|| {
                    format!("cannot link {} to upstream provider {provider_id} ({})", e.user_id, e.auth_provider)
                })?;
                self.counts.upstream_links += 1;
            }
            None if self.settings.ignore_missing_auth_providers => {
                store::insert_external_id(self.conn, &user.id, &e.auth_provider, &e.external_id, user.created_at)?;
                self.counts.external_ids_not_linked += 1;
            }
            None => anyhow::bail!(
                "{} has an external id of auth_provider `{}`, which no upstream provider's `synapse_idp_id` names \
                 (run `syn2mas check`)",
                e.user_id,
                e.auth_provider
            ),
        }
        Ok(())
    }

    fn device(&mut self, d: super::reader::SynapseDevice) -> anyhow::Result<()> {
        let Some(user) = self.users.get(&d.user_id).filter(|u| u.sessions) else {
            self.counts.rows_of_skipped_users += 1;
            return Ok(());
        };
        // Synapse records no creation time: the earliest token use, else last seen, else now.
        let created_ms = match (d.first_token_seen, d.last_seen) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(self.settings.now * 1000),
        };
        let ip = match d.ip.as_deref() {
            None | Some("" | "-") => None,
            Some(ip) => match ip.parse::<IpAddr>() {
                Ok(addr) => Some(addr.to_string()),
                Err(_) => {
                    self.counts.bad_ips_dropped += 1;
                    None
                }
            },
        };
        let id = ulid_at_ms(created_ms);
        store::insert_compat_session(
            self.conn,
            &ImportedSession {
                id: &id,
                user_id: &user.id,
                device_id: Some(&d.device_id),
                is_synapse_admin: user.admin,
                human_name: d.display_name.as_deref(),
                user_agent: d.user_agent.as_deref(),
                created_at: created_ms / 1000,
                last_active_at: d.last_seen.map(|ms| ms / 1000),
                last_active_ip: ip.as_deref(),
            },
        )
        .with_context(|| format!("cannot import device {} of {}", d.device_id, d.user_id))?;
        self.counts.sessions += 1;
        self.devices.insert((d.user_id, d.device_id), id);
        Ok(())
    }

    /// The session of a token's device; counts why there is none.
    fn session_of(&mut self, user_id: &str, device_id: &str) -> Option<String> {
        if !self.users.get(user_id).is_some_and(|u| u.sessions) {
            self.counts.rows_of_skipped_users += 1;
            return None;
        }
        let found = self.devices.get(&(user_id.to_string(), device_id.to_string())).cloned();
        if found.is_none() {
            self.counts.tokens_without_device_skipped += 1;
        }
        found
    }

    fn insert_access(
        &mut self,
        session_id: &str,
        token: &str,
        valid_until_ms: Option<i64>,
        last_validated: Option<i64>,
    ) -> anyhow::Result<String> {
        let created_ms = last_validated.unwrap_or(self.settings.now * 1000);
        let id = ulid_at_ms(created_ms);
        store::insert_compat_access(
            self.conn,
            &id,
            session_id,
            &hash_token(token),
            created_ms / 1000,
            valid_until_ms.map(|ms| ms / 1000),
        )?;
        self.counts.access_tokens += 1;
        Ok(id)
    }

    fn access_token(&mut self, t: super::reader::SynapseAccessToken) -> anyhow::Result<()> {
        let session_id = match &t.device_id {
            Some(device_id) => self.session_of(&t.user_id, device_id),
            None => self.deviceless_session(&t.user_id, t.last_validated)?,
        };
        let Some(session_id) = session_id else { return Ok(()) };
        self.insert_access(&session_id, &t.token, t.valid_until_ms, t.last_validated)?;
        Ok(())
    }

    /// A compat session without a device for one device-less access token, dated like the token
    /// (its last validation, else now), with no activity and never Synapse admin, as MAS makes it.
    fn deviceless_session(&mut self, user_id: &str, last_validated: Option<i64>) -> anyhow::Result<Option<String>> {
        let Some(user) = self.users.get(user_id).filter(|u| u.sessions) else {
            self.counts.rows_of_skipped_users += 1;
            return Ok(None);
        };
        let created_ms = last_validated.unwrap_or(self.settings.now * 1000);
        let id = ulid_at_ms(created_ms);
        store::insert_compat_session(
            self.conn,
            &ImportedSession {
                id: &id,
                user_id: &user.id,
                device_id: None,
                is_synapse_admin: false,
                human_name: None,
                user_agent: None,
                created_at: created_ms / 1000,
                last_active_at: None,
                last_active_ip: None,
            },
        )
        .with_context(|| format!("cannot import a device-less access token of {user_id}"))?;
        self.counts.deviceless_sessions += 1;
        Ok(Some(id))
    }

    fn refresh_token(&mut self, t: super::reader::SynapseRefreshToken) -> anyhow::Result<()> {
        let Some(session_id) = self.session_of(&t.user_id, &t.device_id) else { return Ok(()) };
        let access_id = match &t.access_token {
            Some(token) => Some(self.insert_access(&session_id, token, t.valid_until_ms, t.last_validated)?),
            None => None,
        };
        let created_ms = t.last_validated.unwrap_or(self.settings.now * 1000);
        store::insert_compat_refresh(
            self.conn,
            &ulid_at_ms(created_ms),
            &session_id,
            access_id.as_deref(),
            &hash_token(&t.refresh_token),
            created_ms / 1000,
        )?;
        self.counts.refresh_tokens += 1;
        Ok(())
    }
}
