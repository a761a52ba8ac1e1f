use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::password::PasswordManager;
use crate::lifecycle::users::{self, NewUser};
use crate::store::Store;

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
}

struct Ctx {
    config: Config,
    store: Store,
    passwords: PasswordManager,
    clock: Arc<dyn Clock>,
}

async fn open(config_path: &Path) -> anyhow::Result<Ctx> {
    let config = super::load_config(config_path)?;
    let path = config.database_path();
    let readers = config.database.read_connections;
    let store = tokio::task::spawn_blocking(move || Store::open(&path, readers))
        .await?
        .context("cannot open database")?;
    let passwords = PasswordManager::new(&config.passwords);
    Ok(Ctx {
        config,
        store,
        passwords,
        clock: Arc::new(SystemClock),
    })
}

fn ask_password(username: &str) -> anyhow::Result<String> {
    let first = rpassword::prompt_password(format!("Password for {username}: "))
        .context("cannot read password")?;
    let again = rpassword::prompt_password("Again: ").context("cannot read password")?;
    anyhow::ensure!(first == again, "the passwords differ");
    anyhow::ensure!(!first.is_empty(), "empty password");
    Ok(first)
}

pub async fn run(config_path: &Path, cmd: Command) -> anyhow::Result<()> {
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
        } => {
            let password = match (password, no_password) {
                (Some(p), _) => Some(p),
                (None, true) => None,
                (None, false) => Some(ask_password(&username)?),
            };
            let user = users::register(
                &ctx.store,
                &ctx.passwords,
                clock,
                NewUser {
                    username,
                    password,
                    emails,
                    display_name,
                    admin,
                },
            )
            .await?;
            println!(
                "created {} ({})",
                ctx.config.matrix.mxid(&user.username),
                user.id
            );
        }
        Command::SetPassword { username, password } => {
            let password = match password {
                Some(p) => p,
                None => ask_password(&username)?,
            };
            users::set_password(&ctx.store, &ctx.passwords, clock, &username, password).await?;
            println!("password of {username} changed");
        }
        Command::LockUser {
            username,
            deactivate,
        } => {
            users::set_locked(&ctx.store, clock, &username, true).await?;
            if deactivate {
                users::set_deactivated(&ctx.store, clock, &username, true).await?;
            }
            println!(
                "{username} locked{}",
                if deactivate { " and deactivated" } else { "" }
            );
        }
        Command::UnlockUser {
            username,
            reactivate,
        } => {
            users::set_locked(&ctx.store, clock, &username, false).await?;
            if reactivate {
                users::set_deactivated(&ctx.store, clock, &username, false).await?;
            }
            println!(
                "{username} unlocked{}",
                if reactivate { " and reactivated" } else { "" }
            );
        }
        Command::PromoteAdmin { username } => set_admin(&ctx, &username, true).await?,
        Command::DemoteAdmin { username } => set_admin(&ctx, &username, false).await?,
        Command::ListUsers => {
            let list = ctx.store.read(crate::store::users::list).await?;
            println!(
                "{:<26}  {:<24}  {:<11}  {:<5}  {}",
                "ID", "USERNAME", "STATE", "ADMIN", "DISPLAY NAME"
            );
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
    ctx.store
        .write(move |c| crate::store::users::set_can_request_admin(c, &user.id, admin))
        .await?;
    println!(
        "{username} {} request homeserver administration",
        if admin { "may now" } else { "may no longer" }
    );
    Ok(())
}
