//! Syncing `upstream_oauth2.providers[]` into the database (at every start and `config sync`).
//! A provider gone from the config is disabled (its links stay); `--prune` deletes it.

use crate::config::Config;
use crate::crypto::encrypter::Encrypter;
use crate::model::upstream::UpstreamProvider;
use crate::store::{Store, StoreResult, upstream as upstream_store};

use super::clients::SyncPlan;

/// Computes and (unless `dry_run`) applies the sync in one transaction.
pub async fn sync(
    config: &Config,
    store: &Store,
    encrypter: &Encrypter,
    prune: bool,
    dry_run: bool,
    now: i64,
) -> StoreResult<SyncPlan> {
    let wanted: Vec<_> = config
        .upstream_oauth2
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut stored = p.clone();
            stored.id = p.id.to_uppercase();
            let mut secret = stored.client_secret.take().map(|s| s.expose().to_string());
            stored.client_secret_file = None;
            // Sign in with Apple's `.p8` key is kept encrypted like a client secret (the method
            // has none), never in the provider's stored metadata.
            if let Some(apple) = stored.sign_in_with_apple.as_mut() {
                secret = apple.private_key.take().map(|s| s.expose().to_string());
                apple.private_key_file = None;
            }
            (stored, secret, i as i64)
        })
        .collect();
    let encrypter = encrypter.clone();
    store
        .write(move |conn| {
            let existing = upstream_store::list_providers(conn)?;
            let mut plan = SyncPlan::default();
            for (cfg, secret, order) in &wanted {
                let id = &cfg.id;
                let current = existing.iter().find(|p| &p.id == id);
                let disabled_at =
                    if cfg.enabled { None } else { Some(current.and_then(|p| p.disabled_at).unwrap_or(now)) };
                let same = |p: &UpstreamProvider| {
                    serde_json::to_value(&p.config).ok() == serde_json::to_value(cfg).ok()
                        && p.ui_order == *order
                        && p.disabled_at.is_some() == disabled_at.is_some()
                        && match (&p.encrypted_client_secret, secret) {
                            (None, None) => true,
                            (Some(enc), Some(s)) => encrypter.decrypt_string(enc).is_ok_and(|d| &d == s),
                            _ => false,
                        }
                };
                match current {
                    Some(p) if same(p) => plan.unchanged.push(id.clone()),
                    Some(_) => plan.updated.push(id.clone()),
                    None => plan.added.push(id.clone()),
                }
                if !dry_run && !plan.unchanged.contains(id) {
                    upstream_store::upsert_provider(
                        conn,
                        &UpstreamProvider {
                            id: id.clone(),
                            config: cfg.clone(),
                            encrypted_client_secret: secret.as_ref().map(|s| encrypter.encrypt(s.as_bytes())),
                            ui_order: *order,
                            created_at: current.map(|p| p.created_at).unwrap_or(now),
                            disabled_at,
                        },
                    )?;
                }
            }
            for p in existing.iter().filter(|p| !wanted.iter().any(|(c, ..)| c.id == p.id)) {
                if prune {
                    plan.stale.push(p.id.clone());
                    if !dry_run {
                        upstream_store::delete_provider(conn, &p.id)?;
                    }
                } else if p.disabled_at.is_none() {
                    plan.stale.push(p.id.clone());
                    if !dry_run {
                        upstream_store::set_provider_disabled(conn, &p.id, Some(now))?;
                    }
                }
            }
            Ok(plan)
        })
        .await
}
