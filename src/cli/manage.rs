use std::sync::Arc;

use anyhow::Context;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::password::PasswordManager;
use crate::jobs::Job;
use crate::lifecycle::Lifecycle;
use crate::lifecycle::personal_sessions::{self, NewPersonalSession};
use crate::lifecycle::registration_tokens;
use crate::lifecycle::sessions::{Ending, end_session};
use crate::lifecycle::users::{self, NewUser, UserError};
use crate::model::Scope;
use crate::model::scope::MATRIX_API;
use crate::store::Store;
use crate::store::personal::{Owner, PersonalFilter};
use crate::store::sessions::SessionKind;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a user (asks for the password unless --password is given).
    RegisterUser {
        username: String,
        #[arg(short, long)]
        password: Option<String>,
        /// Verified email address (repeatable).
        #[arg(short, long = "email")]
        emails: Vec<String>,
        #[arg(short = 'd', long)]
        display_name: Option<String>,
        /// Allow the user to request homeserver administration (`urn:synapse:admin:*`).
        #[arg(short, long)]
        admin: bool,
        /// Create the user without a password (sign-in by other means only).
        #[arg(long, conflicts_with = "password")]
        no_password: bool,
        /// Do not ask the homeserver whether the username is free.
        #[arg(long)]
        skip_homeserver_check: bool,
        /// Link an upstream account: `PROVIDER_ID:SUBJECT` (repeatable; as MAS).
        #[arg(long = "upstream-provider-mapping", value_name = "PROVIDER_ID:SUBJECT")]
        upstream_provider_mappings: Vec<String>,
    },
    /// Set a user's password (asks for it unless given).
    SetPassword {
        username: String,
        password: Option<String>,
    },
    /// Lock a user: sign-in refused and all tokens inactive.
    LockUser {
        username: String,
        /// Also deactivate the account.
        #[arg(long)]
        deactivate: bool,
    },
    /// Unlock a user.
    UnlockUser {
        username: String,
        /// Also reactivate a deactivated account.
        #[arg(long)]
        reactivate: bool,
    },
    /// Allow or forbid a user to request homeserver administration.
    PromoteAdmin {
        username: String,
    },
    DemoteAdmin {
        username: String,
    },
    /// List users and their state.
    ListUsers,
    /// Show whether a user has second factors (authenticator app, recovery codes, passkeys).
    ShowSecondFactors {
        username: String,
    },
    /// Remove every second factor of a user who lost them (their phone, their key); logged.
    ResetSecondFactors {
        username: String,
    },
    /// Queue provisioning of every user on the homeserver (recovery after a restore).
    ProvisionAllUsers,
    /// Reconcile the homeserver's devices of a user (or everyone) with the active sessions.
    SyncDevices {
        username: Option<String>,
    },
    /// Print a long-lived Matrix access token for a bot or an admin tool (upserts the device).
    IssueCompatibilityToken {
        username: String,
        device_id: Option<String>,
        /// Let the token administer the homeserver (`urn:synapse:admin:*`).
        #[arg(long)]
        yes_i_want_to_grant_synapse_admin_privileges: bool,
    },
    /// Print a personal access token (`mpt_…`) acting as a user, for a bot or an admin tool; its
    /// session id goes to stderr. A Matrix client token gets a device, created on the homeserver.
    IssuePersonalToken {
        username: String,
        /// What the token is for (shown in lists and as the device's name).
        #[arg(long)]
        name: String,
        /// The scope (default: the Matrix client API); a device scope is added to a Matrix one.
        #[arg(long)]
        scope: Option<String>,
        /// The Matrix device id (default: 10 random letters).
        #[arg(long)]
        device: Option<String>,
        /// Seconds until the token expires (default: never).
        #[arg(long)]
        expires_in: Option<u32>,
        /// Let the token administer the homeserver (`urn:synapse:admin:*`).
        #[arg(long)]
        yes_i_want_to_grant_synapse_admin_privileges: bool,
    },
    /// List personal access tokens (those acting as USERNAME, or all).
    ListPersonalTokens {
        username: Option<String>,
    },
    /// Revoke a personal access token by its session id; its device is deleted on the homeserver.
    RevokePersonalToken {
        session_id: String,
    },
    /// End every session of a user and delete their devices on the homeserver.
    KillSessions {
        username: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Create a registration token (invite code) for self-registration; prints it.
    IssueUserRegistrationToken {
        /// The token itself (default: 20 random letters and digits).
        #[arg(long)]
        token: Option<String>,
        /// How many accounts it may create (default: 1).
        #[arg(long, conflicts_with = "unlimited")]
        usage_limit: Option<u32>,
        /// Any number of accounts.
        #[arg(long)]
        unlimited: bool,
        /// Seconds until it expires (default: never).
        #[arg(long)]
        expires_in: Option<u32>,
    },
    /// List registration tokens with their uses, expiry and state.
    ListUserRegistrationTokens,
    /// Revoke a registration token: it creates no more accounts.
    RevokeUserRegistrationToken {
        token: String,
    },
}

struct Ctx {
    config: Config,
    store: Store,
    passwords: PasswordManager,
    clock: Arc<dyn Clock>,
    lifecycle: Lifecycle,
}

async fn open(config_path: &[std::path::PathBuf]) -> anyhow::Result<Ctx> {
    let config = super::load_config(config_path)?;
    let path = config.database_path();
    let readers = config.database.read_connections;
    let store =
        tokio::task::spawn_blocking(move || Store::open(&path, readers)).await?.context("cannot open database")?;
    let passwords = PasswordManager::new(&config.passwords);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let lifecycle = Lifecycle::new(store.clone(), crate::homeserver::connect(&config.matrix), clock.clone());
    Ok(Ctx { config, store, passwords, clock, lifecycle })
}

fn ask_password(username: &str) -> anyhow::Result<String> {
    let first = rpassword::prompt_password(format!("Password for {username}: ")).context("cannot read password")?;
    let again = rpassword::prompt_password("Again: ").context("cannot read password")?;
    anyhow::ensure!(first == again, "the passwords differ");
    anyhow::ensure!(!first.is_empty(), "empty password");
    Ok(first)
}

/// `--upstream-provider-mapping PROVIDER_ID:SUBJECT` values, checked before the user exists (as
/// MAS does): the provider is in the database and the subject is not linked to anyone yet.
async fn upstream_mappings(store: &Store, given: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    use crate::store::{upstream as upstream_store, users as user_store};
    let mut mappings = Vec::new();
    for m in given {
        let Some((provider, subject)) = m.split_once(':').filter(|(p, s)| !p.is_empty() && !s.is_empty()) else {
            anyhow::bail!("--upstream-provider-mapping {m:?}: expected PROVIDER_ID:SUBJECT");
        };
        let provider = provider.to_uppercase();
        anyhow::ensure!(
            ulid::Ulid::from_string(&provider).is_ok(),
            "--upstream-provider-mapping {m:?}: `{provider}` is not a provider id (the ULID `id` of an \
             upstream_oauth2.providers entry)"
        );
        let (id, sub) = (provider.clone(), subject.to_string());
        let (known, linked) = store
            .read(move |c| {
                let known = upstream_store::provider_by_id(c, &id)?.is_some();
                let linked = match upstream_store::link_by_subject(c, &id, &sub)?.and_then(|l| l.user_id) {
                    Some(user) => Some(user_store::by_id(c, &user)?.map_or(user, |u| u.username)),
                    None => None,
                };
                Ok((known, linked))
            })
            .await?;
        anyhow::ensure!(
            known,
            "no upstream provider {provider} in the database: add it to upstream_oauth2.providers and run \
             `appliance config sync` (the server also syncs at start); no user was created"
        );
        if let Some(other) = linked {
            anyhow::bail!("upstream {provider}:{subject} is already linked to {other}; no user was created");
        }
        mappings.push((provider, subject.to_string()));
    }
    Ok(mappings)
}

pub async fn run(config_path: &[std::path::PathBuf], cmd: Command) -> anyhow::Result<()> {
    let ctx = open(config_path).await?;
    let clock = ctx.clock.as_ref();
    match cmd {
        Command::RegisterUser {
            username,
            password,
            emails,
            display_name,
            admin,
            no_password,
            skip_homeserver_check,
            upstream_provider_mappings,
        } => {
            let mappings = upstream_mappings(&ctx.store, &upstream_provider_mappings).await?;
            if !skip_homeserver_check {
                match users::check_available(&ctx.lifecycle, &username).await {
                    Ok(()) => {}
                    Err(UserError::HomeserverRefused(other)) => {
                        anyhow::bail!("the homeserver refuses the username {username}: {other:?}")
                    }
                    Err(UserError::HomeserverUnreachable(e)) => anyhow::bail!(
                        "cannot ask the homeserver whether {username} is free: {e} (use --skip-homeserver-check to create it anyway)"
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
            let password = match (password, no_password) {
                (Some(p), _) => Some(p),
                (None, true) => None,
                (None, false) => Some(ask_password(&username)?),
            };
            let new = NewUser { username, password, emails, display_name, admin };
            let (user, provisioned) = users::create(&ctx.lifecycle, &ctx.passwords, new).await?;
            println!("created {} ({})", ctx.config.matrix.mxid(&user.username), user.id);
            for (provider, subject) in mappings {
                use crate::lifecycle::upstream::{AddLink, add_link};
                let now = clock.now();
                match add_link(&ctx.store, &user.id, &provider, &subject, None, now, ctx.lifecycle.rng().as_ref())
                    .await?
                {
                    AddLink::Created(_) | AddLink::Existing(_) => println!("linked upstream {provider}:{subject}"),
                    AddLink::Conflict => anyhow::bail!(
                        "upstream {provider}:{subject} was linked to another user meanwhile; the user was created \
                         without that link"
                    ),
                    AddLink::NoProvider => anyhow::bail!("upstream provider {provider} was removed meanwhile"),
                    AddLink::NoUser => anyhow::bail!("the user vanished"),
                }
            }
            if !provisioned {
                println!("the homeserver is unreachable: provisioning is queued and runs when the server is up");
            }
        }
        Command::SetPassword { username, password } => {
            let password = match password {
                Some(p) => p,
                None => ask_password(&username)?,
            };
            users::set_password(&ctx.store, &ctx.passwords, clock, ctx.lifecycle.rng().as_ref(), &username, password)
                .await?;
            println!("password of {username} changed");
        }
        Command::LockUser { username, deactivate } => {
            let user = users::find(&ctx.store, &username).await?;
            users::lock(&ctx.lifecycle, &user.id).await?;
            if deactivate {
                users::deactivate(&ctx.lifecycle, &user.id, false).await?;
            }
            println!("{username} locked{}", if deactivate { " and deactivated" } else { "" });
        }
        Command::UnlockUser { username, reactivate } => {
            let user = users::find(&ctx.store, &username).await?;
            if reactivate {
                // Reactivated on the homeserver first: the unlock is then pushed to a live account.
                users::reactivate(&ctx.lifecycle, &user.id).await?;
            }
            users::unlock(&ctx.lifecycle, &user.id).await?;
            println!("{username} unlocked{}", if reactivate { " and reactivated" } else { "" });
        }
        Command::ShowSecondFactors { username } => {
            let user = users::find(&ctx.store, &username).await?;
            let f = crate::lifecycle::factors::of(&ctx.store, &user.id).await?;
            println!("authenticator app: {}", if f.totp { "yes" } else { "no" });
            println!("recovery codes left: {}", f.recovery_codes_left);
            println!("passkeys: {}", f.passkeys);
        }
        Command::ResetSecondFactors { username } => {
            let user = users::find(&ctx.store, &username).await?;
            let f = crate::lifecycle::factors::reset(&ctx.store, &user.id, "appliance manage").await?;
            if f.any() || f.recovery_codes_left > 0 {
                println!(
                    "second factors of {username} removed (authenticator app: {}, recovery codes: {}, passkeys: {})",
                    if f.totp { "yes" } else { "no" },
                    f.recovery_codes_left,
                    f.passkeys
                );
            } else {
                println!("{username} had no second factor");
            }
        }
        Command::PromoteAdmin { username } => set_admin(&ctx, &username, true).await?,
        Command::DemoteAdmin { username } => set_admin(&ctx, &username, false).await?,
        Command::ProvisionAllUsers => {
            let list = ctx.store.read(crate::store::users::list).await?;
            for u in &list {
                ctx.lifecycle.enqueue(Job::ProvisionUser { user_id: u.id.clone() }).await?;
            }
            println!("queued provisioning of {} users; the server's worker runs it", list.len());
        }
        Command::SyncDevices { username } => {
            let list = match username {
                Some(name) => vec![users::find(&ctx.store, &name).await?],
                None => ctx.store.read(crate::store::users::list).await?,
            };
            let mut queued = 0;
            for u in &list {
                if !ctx.lifecycle.sync_devices(&u.id).await {
                    queued += 1;
                }
            }
            println!("devices of {} users reconciled ({queued} queued for retry)", list.len() - queued);
        }
        Command::IssueCompatibilityToken {
            username,
            device_id,
            yes_i_want_to_grant_synapse_admin_privileges: admin,
        } => {
            let device_id = device_id
                .map(|d| crate::model::DeviceId::parse(&d).map_err(|e| anyhow::anyhow!("{e} (got {d:?})")))
                .transpose()?;
            let user = users::find(&ctx.store, &username).await?;
            anyhow::ensure!(user.is_valid(), "{username} is locked or deactivated");
            let (u, now, rng) = (user.clone(), clock.now(), ctx.lifecycle.rng().clone());
            let crate::lifecycle::compat_sessions::StartedCompat { device_id, tokens } = ctx
                .store
                .write(move |c| {
                    let new = crate::lifecycle::compat_sessions::NewCompatSession {
                        user: &u,
                        device_id,
                        display_name: Some("appliance issued token".into()),
                        user_session_id: None,
                        is_synapse_admin: admin,
                        user_agent: None,
                    };
                    crate::lifecycle::compat_sessions::start(c, &new, false, 0, now, rng.as_ref())
                })
                .await?;
            if !ctx.lifecycle.ensure_device(&user, &device_id, Some("appliance issued token".into())).await {
                eprintln!("warning: the homeserver is unreachable; the device is created once it is back");
            }
            eprintln!(
                "device {} for {}{}",
                device_id,
                ctx.config.matrix.mxid(&user.username),
                if admin { " (homeserver admin)" } else { "" }
            );
            println!("{}", tokens.access_token);
        }
        Command::IssuePersonalToken {
            username,
            name,
            scope,
            device,
            expires_in,
            yes_i_want_to_grant_synapse_admin_privileges: admin,
        } => {
            anyhow::ensure!(expires_in != Some(0), "--expires-in must be at least 1 second");
            let user = users::find(&ctx.store, &username).await?;
            let scope = Scope::parse(scope.as_deref().unwrap_or(MATRIX_API)).context("invalid --scope")?;
            let new = NewPersonalSession {
                owner: Owner::User(user.id.clone()),
                actor_user_id: user.id.clone(),
                human_name: name,
                scope: personal_sessions::with_device(scope, device, ctx.lifecycle.rng().as_ref())?,
                expires_in,
                operator_grants_synapse_admin: admin,
            };
            let issued = personal_sessions::create(&ctx.lifecycle, &ctx.config.policy.data, new).await?;
            if !issued.device_ready {
                eprintln!("warning: the homeserver is unreachable; the device is created once it is back");
            }
            if user.locked_at.is_some() {
                eprintln!("warning: {username} is locked: the token works once the user is unlocked");
            }
            let device = issued.session.device_id().map(|d| format!(", device {d}")).unwrap_or_default();
            let expires = issued.expires_at.map(crate::lifecycle::registration::format_utc);
            eprintln!(
                "personal session {} for {}{device}, scope \"{}\", expires {}",
                issued.session.id,
                ctx.config.matrix.mxid(&user.username),
                issued.session.scope,
                expires.as_deref().unwrap_or("never")
            );
            println!("{}", issued.access_token);
        }
        Command::ListPersonalTokens { username } => {
            let actor = match username {
                Some(name) => Some(users::find(&ctx.store, &name).await?.id),
                None => None,
            };
            let filter = PersonalFilter { actor_user_id: actor, ..PersonalFilter::default() };
            let (list, everyone) = ctx
                .store
                .read(move |c| Ok((crate::store::personal::all(c, &filter)?, crate::store::users::list(c)?)))
                .await?;
            let now = clock.now();
            let time = crate::lifecycle::registration::format_utc;
            println!("{:<26}  {:<20}  {:<7}  {:<20}  {:<20}  NAME", "ID", "USER", "STATE", "EXPIRES", "LAST ACTIVE");
            for d in list {
                let s = &d.session;
                let state = match (s.revoked_at, d.expires_at) {
                    (Some(_), _) => "revoked",
                    (None, Some(e)) if e <= now => "expired",
                    _ => "active",
                };
                let user = everyone.iter().find(|u| u.id == s.actor_user_id).map(|u| u.username.as_str());
                let expires = match (s.revoked_at, d.expires_at) {
                    (Some(_), _) => "-".into(),
                    (None, e) => e.map(time).unwrap_or_else(|| "never".into()),
                };
                println!(
                    "{:<26}  {:<20}  {:<7}  {:<20}  {:<20}  {}",
                    s.id,
                    user.unwrap_or(&s.actor_user_id),
                    state,
                    expires,
                    d.activity.last_active_at.map(time).unwrap_or_else(|| "never".into()),
                    s.human_name
                );
            }
        }
        Command::RevokePersonalToken { session_id } => {
            let id = ulid::Ulid::from_string(&session_id)
                .map_err(|_| anyhow::anyhow!("{session_id} is not a personal session id (a ULID)"))?
                .to_string();
            let session = personal_sessions::get(&ctx.store, &id).await?;
            let ending = Ending::One(SessionKind::Personal, &session.id);
            if session.revoked_at.is_some() || end_session(&ctx.lifecycle, ending).await? == 0 {
                return Err(personal_sessions::PersonalError::AlreadyRevoked(session.id).into());
            }
            println!("personal access token {} ({}) revoked", session.id, session.human_name);
        }
        Command::KillSessions { username, dry_run } => {
            let user = users::find(&ctx.store, &username).await?;
            if dry_run {
                let id = user.id.clone();
                let n = ctx.store.read(move |c| crate::store::sessions::active_oauth_for_user(c, &id)).await?.len();
                println!("would end {n} sessions of {username}");
            } else {
                let n = users::end_all_sessions(&ctx.lifecycle, &user.id).await?;
                println!("ended {n} sessions of {username}");
            }
        }
        Command::IssueUserRegistrationToken { token, usage_limit, unlimited, expires_in } => {
            anyhow::ensure!(usage_limit != Some(0), "--usage-limit must be at least 1");
            let limit = if unlimited { None } else { Some(usage_limit.unwrap_or(1)) };
            let expires_at = expires_in.map(|s| clock.now().saturating_add(i64::from(s)));
            let t =
                registration_tokens::create(&ctx.store, clock, ctx.lifecycle.rng().as_ref(), token, limit, expires_at)
                    .await?;
            if !ctx.config.account.registration_token_required {
                eprintln!("note: account.registration_token_required is off, so registration does not ask for tokens");
            }
            println!("{}", t.token);
        }
        Command::ListUserRegistrationTokens => {
            let list = ctx.store.read(crate::store::registration_tokens::list).await?;
            let now = clock.now();
            println!("{:<24}  {:<9}  {:<7}  {:<20}  CREATED", "TOKEN", "STATE", "USED", "EXPIRES");
            let time = crate::lifecycle::registration::format_utc;
            for t in list {
                let state = match t.check(now) {
                    Ok(()) => "valid",
                    Err(crate::store::registration_tokens::TokenProblem::Revoked) => "revoked",
                    Err(crate::store::registration_tokens::TokenProblem::Expired) => "expired",
                    Err(_) => "used up",
                };
                let used = match t.usage_limit {
                    Some(l) => format!("{}/{l}", t.times_used),
                    None => format!("{}/-", t.times_used),
                };
                println!(
                    "{:<24}  {:<9}  {:<7}  {:<20}  {}",
                    t.token,
                    state,
                    used,
                    t.expires_at.map(time).unwrap_or_else(|| "never".into()),
                    time(t.created_at)
                );
            }
        }
        Command::RevokeUserRegistrationToken { token } => {
            let (t, now) = (token.clone(), clock.now());
            let found = ctx.store.write(move |c| crate::store::registration_tokens::revoke(c, &t, now)).await?;
            anyhow::ensure!(found, "no registration token {token}");
            println!("registration token {token} revoked");
        }
        Command::ListUsers => {
            let list = ctx.store.read(crate::store::users::list).await?;
            println!("{:<26}  {:<24}  {:<11}  {:<5}  DISPLAY NAME", "ID", "USERNAME", "STATE", "ADMIN");
            for u in list {
                let state = match (u.locked_at, u.deactivated_at) {
                    (_, Some(_)) => "deactivated",
                    (Some(_), None) => "locked",
                    _ => "active",
                };
                println!(
                    "{:<26}  {:<24}  {:<11}  {:<5}  {}",
                    u.id,
                    u.username,
                    state,
                    if u.can_request_admin { "yes" } else { "no" },
                    u.display_name.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

async fn set_admin(ctx: &Ctx, username: &str, admin: bool) -> anyhow::Result<()> {
    let user = users::find(&ctx.store, username).await?;
    users::set_admin(&ctx.store, &user.id, admin).await?;
    println!("{username} {} request homeserver administration", if admin { "may now" } else { "may no longer" });
    Ok(())
}
