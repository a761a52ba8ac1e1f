//! Syncing the config file's clients into the database (at every start and `config sync`).

use crate::config::{ClientConfig, Config};
use crate::crypto::encrypter::Encrypter;
use crate::model::Client;
use crate::model::client::{
    ClientMetadata, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN,
};
use crate::store::{Store, StoreResult, clients as client_store};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    /// Config-managed clients no longer in the file: deleted with `--prune`, kept (with a warning) otherwise.
    pub stale: Vec<String>,
}

/// The stored form of a config client. Static clients may use every grant (as in MAS).
pub fn client_from_config(c: &ClientConfig) -> ClientMetadata {
    ClientMetadata {
        redirect_uris: c.redirect_uris.iter().map(|u| u.to_string()).collect(),
        grant_types: [GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE]
            .map(String::from)
            .to_vec(),
        response_types: vec!["code".into()],
        token_endpoint_auth_method: c.client_auth_method.as_str().into(),
        client_name: c.client_name.clone(),
        client_uri: c.client_uri.as_ref().map(|u| u.to_string()),
        jwks: c.jwks.clone(),
        jwks_uri: c.jwks_uri.as_ref().map(|u| u.to_string()),
        ..Default::default()
    }
}

/// Computes and (unless `dry_run`) applies the sync in one transaction.
pub async fn sync(
    config: &Config,
    store: &Store,
    encrypter: &Encrypter,
    prune: bool,
    dry_run: bool,
    now: i64,
) -> StoreResult<SyncPlan> {
    let wanted: Vec<(String, ClientMetadata, Option<String>)> = config
        .clients
        .iter()
        .map(|c| {
            let id = c.client_id.to_uppercase();
            (id, client_from_config(c), c.client_secret.as_ref().map(|s| s.expose().to_string()))
        })
        .collect();
    let encrypter = encrypter.clone();
    store
        .write(move |conn| {
            let existing = client_store::list(conn, false)?;
            let mut plan = SyncPlan::default();
            for (id, metadata, secret) in &wanted {
                let current = existing.iter().find(|c| &c.id == id);
                let same_secret = |c: &Client| match (&c.encrypted_secret, secret) {
                    (None, None) => true,
                    (Some(enc), Some(s)) => encrypter.decrypt_string(enc).is_ok_and(|d| &d == s),
                    _ => false,
                };
                match current {
                    Some(c) if c.is_static && &c.metadata == metadata && same_secret(c) => {
                        plan.unchanged.push(id.clone())
                    }
                    Some(_) => plan.updated.push(id.clone()),
                    None => plan.added.push(id.clone()),
                }
                if !dry_run && !plan.unchanged.contains(id) {
                    let client = Client {
                        id: id.clone(),
                        metadata: metadata.clone(),
                        encrypted_secret: secret.as_ref().map(|s| encrypter.encrypt(s.as_bytes())),
                        is_static: true,
                        created_at: current.map(|c| c.created_at).unwrap_or(now),
                    };
                    client_store::upsert(conn, &client, None)?;
                }
            }
            for c in existing.iter().filter(|c| c.is_static && !wanted.iter().any(|(id, ..)| id == &c.id)) {
                plan.stale.push(c.id.clone());
                if prune && !dry_run {
                    client_store::delete(conn, &c.id)?;
                }
            }
            Ok(plan)
        })
        .await
}

/// How often unused dynamic clients are looked for.
const UNUSED_CLIENTS_EVERY: i64 = 3600;

/// Deletes dynamically registered clients that completed no grant within `ttl` seconds.
pub async fn delete_unused_dynamic(store: &Store, now: i64, ttl: i64) -> StoreResult<usize> {
    store.write(move |c| client_store::delete_unused_dynamic(c, now - ttl)).await
}

/// The worker's hourly task running `delete_unused_dynamic`.
pub fn unused_dynamic_clients_task(lc: &super::Lifecycle, ttl: i64) -> crate::jobs::Periodic {
    let (store, clock) = (lc.store.clone(), lc.clock.clone());
    let run = move || -> crate::jobs::TaskFuture {
        let (store, now) = (store.clone(), clock.now());
        Box::pin(async move {
            match delete_unused_dynamic(&store, now, ttl).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(clients = n, "deleted dynamically registered clients that were never used"),
                Err(e) => tracing::warn!(error = %e, "cannot delete unused dynamic clients"),
            }
        })
    };
    crate::jobs::Periodic { name: "delete_unused_dynamic_clients", every: UNUSED_CLIENTS_EVERY, run: Box::new(run) }
}
