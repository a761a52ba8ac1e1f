//! State changes of upstream sign-ins: recording what a provider sent (finding or creating the
//! link), creating a user from an upstream account, linking and unlinking, and back-channel logout.

use rusqlite::Connection;

use super::Lifecycle;
use super::registration::RegistrationError;
use super::sessions::{Ended, sync_ended};
use super::users::{NewUser, UserError};
use crate::config::OnBackchannelLogout;
use crate::model::User;
use crate::model::upstream::UpstreamLink;
use crate::model::user::check_localpart;
use crate::rng::Rng;
use crate::store::registration_tokens as token_store;
use crate::store::sessions::SessionKind;
use crate::store::{Store, StoreError, StoreResult, upstream as upstream_store, users as user_store};

pub struct Callback {
    pub session_id: String,
    pub provider_id: String,
    pub subject: String,
    pub account_name: Option<String>,
    pub id_token: Option<String>,
    pub id_token_claims: Option<String>,
    pub userinfo: Option<String>,
    pub sid: Option<String>,
    pub extra_callback_parameters: Option<String>,
}

/// Finds or creates the link `(provider, subject)` and completes the authorization session.
/// Returns the link id.
pub async fn record_callback(store: &Store, cb: Callback, now: i64, rng: &dyn Rng) -> StoreResult<String> {
    let new_link_id = rng.id_at(now);
    store
        .write(move |c| {
            let link = match upstream_store::link_by_subject(c, &cb.provider_id, &cb.subject)? {
                Some(l) => {
                    if cb.account_name.is_some() && l.human_account_name != cb.account_name {
                        upstream_store::set_link_user(c, &l.id, l.user_id.as_deref(), cb.account_name.as_deref())?;
                    }
                    l
                }
                None => {
                    let l = UpstreamLink {
                        id: new_link_id,
                        provider_id: cb.provider_id.clone(),
                        user_id: None,
                        subject: cb.subject.clone(),
                        human_account_name: cb.account_name.clone(),
                        created_at: now,
                    };
                    upstream_store::insert_link(c, &l)?;
                    l
                }
            };
            upstream_store::complete_session(
                c,
                &cb.session_id,
                &link.id,
                cb.id_token.as_deref(),
                cb.id_token_claims.as_deref(),
                cb.userinfo.as_deref(),
                cb.sid.as_deref(),
                &cb.subject,
                cb.extra_callback_parameters.as_deref(),
                now,
            )?;
            Ok(link.id)
        })
        .await
}

/// Attaches the link to `user_id` (it must be unlinked or already theirs) inside a write.
pub fn attach(conn: &Connection, link_id: &str, user_id: &str) -> StoreResult<bool> {
    match upstream_store::link_by_id(conn, link_id)? {
        Some(l) if l.user_id.as_deref().is_none_or(|u| u == user_id) => {
            upstream_store::set_link_user(conn, link_id, Some(user_id), None)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// What else a new account through a provider brings: the registration token when the provider
/// requires one, and the terms of service the person accepted.
#[derive(Debug, Default)]
pub struct Admission {
    pub token: Option<String>,
    pub accepted_terms: Option<String>,
}

/// Creates the user of an upstream account (no password), uses the registration token, records
/// the accepted terms and attaches the link in one write — a token that cannot be used changes
/// nothing — then provisions the user on the homeserver (queued when it is down).
pub async fn register(
    lc: &Lifecycle,
    new: NewUser,
    link_id: &str,
    admission: Admission,
) -> Result<User, RegistrationError> {
    check_localpart(&new.username).map_err(UserError::InvalidUsername)?;
    let now = lc.clock.now();
    let user = User {
        id: lc.new_id(),
        username: new.username,
        display_name: new.display_name,
        created_at: now,
        locked_at: None,
        deactivated_at: None,
        can_request_admin: new.admin,
    };
    let (row, link) = (user.clone(), link_id.to_string());
    let emails: Vec<_> = new.emails.into_iter().map(|e| (lc.new_id(), e)).collect();
    let terms_id = lc.new_id();
    let attached = lc
        .store
        .write(move |c| {
            if let Some(t) = &admission.token {
                if let Err(problem) = token_store::consume(c, t, now)? {
                    return Ok(Err(problem));
                }
            }
            user_store::insert(c, &row)?;
            for (id, e) in &emails {
                user_store::add_email(c, id, &row.id, e, now)?;
            }
            if let Some(url) = &admission.accepted_terms {
                token_store::accept_terms(c, &terms_id, &row.id, url, now)?;
            }
            if !attach(c, &link, &row.id)? {
                // Rolls the user and the token use back.
                return Err(StoreError::Conflict("upstream link"));
            }
            Ok(Ok(()))
        })
        .await;
    match attached {
        Ok(Ok(())) => {}
        Ok(Err(problem)) => return Err(RegistrationError::Token(problem)),
        Err(StoreError::Conflict("upstream link")) => {
            return Err(UserError::NotFound(format!("upstream link {link_id}")).into());
        }
        Err(e) => return Err(UserError::from(e).into()),
    }
    lc.provision_user(&user.id).await;
    Ok(user)
}

/// Removes a link of `user_id`; `false` when it is not theirs.
pub async fn unlink(store: &Store, user_id: &str, link_id: &str) -> StoreResult<bool> {
    let (user, link) = (user_id.to_string(), link_id.to_string());
    store
        .write(move |c| match upstream_store::link_by_id(c, &link)? {
            Some(l) if l.user_id.as_deref() == Some(user.as_str()) => upstream_store::delete_link(c, &link),
            _ => Ok(false),
        })
        .await
}

/// Applies `on_backchannel_logout` to the browser sessions started through `provider_id` for the
/// upstream session `sid` (or every session of `sub`). Returns how many browser sessions ended.
pub async fn backchannel_logout(
    lc: &Lifecycle,
    provider_id: &str,
    sid: Option<&str>,
    sub: Option<&str>,
    mode: OnBackchannelLogout,
) -> StoreResult<usize> {
    let (provider, sid, sub) = (provider_id.to_string(), sid.map(String::from), sub.map(String::from));
    let now = lc.clock.now();
    let browser_sessions = lc
        .store
        .read(move |c| upstream_store::browser_sessions_for(c, &provider, sid.as_deref(), sub.as_deref()))
        .await?;
    if mode == OnBackchannelLogout::DoNothing {
        return Ok(0);
    }
    let mut browsers_ended = 0;
    let mut ended = Ended::default();
    for id in browser_sessions {
        let all = mode == OnBackchannelLogout::LogoutAll;
        let (browser_ended, these) = lc
            .store
            .write(move |c| {
                let mut these = Ended::default();
                if all {
                    let (oauth, compat) = upstream_store::sessions_of_browser(c, &id)?;
                    for s in oauth {
                        these.end(c, SessionKind::OAuth2, &s, now)?;
                    }
                    for s in compat {
                        these.end(c, SessionKind::Compat, &s, now)?;
                    }
                }
                let browser_ended = these.end(c, SessionKind::Browser, &id, now)?;
                Ok((browser_ended, these))
            })
            .await?;
        browsers_ended += usize::from(browser_ended);
        ended.merge(these);
    }
    sync_ended(lc, ended).await;
    Ok(browsers_ended)
}

#[derive(Debug)]
pub enum AddLink {
    Created(UpstreamLink),
    /// The same link already existed.
    Existing(UpstreamLink),
    /// The subject is linked to another user.
    Conflict,
    NoUser,
    NoProvider,
}

/// Links `(provider, subject)` to `user_id` (admin API, `manage register-user`): an unlinked
/// account of that subject is attached, an identical link is returned as it is.
pub async fn add_link(
    store: &Store,
    user_id: &str,
    provider_id: &str,
    subject: &str,
    human_account_name: Option<String>,
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<AddLink> {
    let (user, provider, subject) = (user_id.to_string(), provider_id.to_uppercase(), subject.to_string());
    let new_link_id = rng.id_at(now);
    store
        .write(move |c| {
            if user_store::by_id(c, &user)?.is_none() {
                return Ok(AddLink::NoUser);
            }
            if upstream_store::provider_by_id(c, &provider)?.is_none() {
                return Ok(AddLink::NoProvider);
            }
            match upstream_store::link_by_subject(c, &provider, &subject)? {
                Some(l) if l.user_id.as_deref() == Some(user.as_str()) => Ok(AddLink::Existing(l)),
                Some(l) if l.user_id.is_some() => Ok(AddLink::Conflict),
                Some(l) => {
                    upstream_store::set_link_user(c, &l.id, Some(&user), human_account_name.as_deref())?;
                    Ok(AddLink::Created(upstream_store::link_by_id(c, &l.id)?.unwrap_or(l)))
                }
                None => {
                    let l = UpstreamLink {
                        id: new_link_id,
                        provider_id: provider.clone(),
                        user_id: Some(user.clone()),
                        subject: subject.clone(),
                        human_account_name,
                        created_at: now,
                    };
                    upstream_store::insert_link(c, &l)?;
                    Ok(AddLink::Created(l))
                }
            }
        })
        .await
}
