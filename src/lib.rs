//! appliance: a Matrix authentication service in one binary with one SQLite file.

#![deny(clippy::unwrap_used, clippy::panic, clippy::todo, clippy::await_holding_lock)]
// Unit tests may unwrap: a panic there is a failed test.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::panic))]

pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod email;
pub mod homeserver;
pub mod http;
pub mod i18n;
pub mod jobs;
pub mod lifecycle;
pub mod model;
pub mod rng;
pub mod store;
pub mod syn2mas;
pub mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use crate::clock::{BoxClock, SystemClock};
use crate::config::{BindConfig, Config};
use crate::crypto::encrypter::Encrypter;
use crate::crypto::password::PasswordManager;
use crate::http::state::AppInner;
use crate::http::{AppState, assets::Assets, metrics::Metrics};
use crate::store::Store;

/// A built server: listeners bound, state loaded, not yet serving.
pub struct App {
    state: AppState,
    listeners: Vec<BoundListener>,
}

struct BoundListener {
    name: String,
    listener: TcpListener,
    router: Router,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Migrates the database, loads or generates keys, syncs config clients and binds listeners.
    pub async fn build_with_clock(config: Config, clock: BoxClock) -> anyhow::Result<App> {
        Self::build_with(config, clock, Arc::new(rng::OsRng)).await
    }

    /// As `build_with_clock`, with the randomness injected too (tests pin both).
    pub async fn build_with(config: Config, clock: BoxClock, rng: rng::BoxRng) -> anyhow::Result<App> {
        // One ID sequence for the whole app: handlers and lifecycle share it.
        let rng: rng::BoxRng = rng::Monotonic::wrap(rng);
        let db_path = config.database_path();
        let readers = config.database.read_connections;
        let store = tokio::task::spawn_blocking(move || Store::open(&db_path, readers))
            .await?
            .with_context(|| format!("cannot open database {}", config.database_path().display()))?;

        let keys = {
            let (config, store, clock, rng) = (config.clone(), store.clone(), clock.clone(), rng.clone());
            tokio::task::spawn_blocking(move || {
                lifecycle::site_keys::load_or_generate(&config, &store, clock.as_ref(), rng.as_ref())
            })
            .await??
        };
        let encrypter = Encrypter::new(&keys.encryption);
        let plan = lifecycle::clients::sync(&config, &store, &encrypter, false, false, clock.now()).await?;
        for stale in &plan.stale {
            tracing::warn!(client_id = %stale, "client is in the database but no longer in the config; `config sync --prune` removes it");
        }
        let plan = lifecycle::upstream_providers::sync(&config, &store, &encrypter, false, false, clock.now()).await?;
        for stale in &plan.stale {
            tracing::warn!(provider_id = %stale, "upstream provider no longer in the config: disabled; `config sync --prune` deletes it with its links");
        }

        let cookie_key = {
            // Domain-separated so the cookie key differs from the key encrypting secrets at rest.
            use sha2::Digest;
            let material =
                sha2::Sha512::new().chain_update(b"appliance cookies\0").chain_update(keys.encryption).finalize();
            axum_extra::extract::cookie::Key::from(&material)
        };
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let jwks = http::oauth2::jwks_uri::JwksFetcher::new(&config);
        let config_limits = config.rate_limiting.clone();
        let mailer = {
            let hello = url::Url::parse(&config.http.url("/"))
                .ok()
                .and_then(|u| u.host_str().map(String::from))
                .unwrap_or_else(|| "localhost".into());
            let service_name = config
                .branding
                .service_name
                .clone()
                .unwrap_or_else(|| format!("{} accounts", config.matrix.homeserver));
            email::Mailer::new(&config.email, &hello, service_name).context("cannot set up the email transport")?
        };
        if mailer.is_blackhole() && config.account.password_recovery_enabled {
            tracing::warn!(
                "account.password_recovery_enabled is set, but email.transport is blackhole: no recovery email is sent"
            );
        }
        let assets = Assets::with_logo(config.branding.load_logo()?);
        let lifecycle = lifecycle::Lifecycle::with_rng(
            store.clone(),
            homeserver::connect(&config.matrix),
            clock.clone(),
            rng.clone(),
        );
        let state = AppState(Arc::new(AppInner {
            passwords: PasswordManager::new(&config.passwords),
            config,
            store,
            keys: keys.keystore,
            encrypter,
            cookie_key,
            clock,
            rng,
            assets,
            metrics: Metrics::with_activity(lifecycle.activity().flushed_counter()),
            http,
            jwks,
            limiters: http::ratelimit::Limiters::new(&config_limits),
            lifecycle,
            mailer,
        }));

        let mut listeners = Vec::new();
        for (i, l) in state.config.http.listeners.iter().enumerate() {
            let name = l.name.clone().unwrap_or_else(|| format!("listener{i}"));
            for bind in &l.binds {
                let listener =
                    bind_one(bind).await.with_context(|| format!("cannot listen on {} ({name})", bind.describe()))?;
                let router = http::router::build(state.clone(), &l.resources);
                listeners.push(BoundListener { name: name.clone(), listener, router });
            }
        }
        Ok(App { state, listeners })
    }

    /// The address of the first listener (tests bind `127.0.0.1:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs()[0].1
    }

    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.iter().filter_map(|l| Some((l.name.clone(), l.listener.local_addr().ok()?))).collect()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or SIGINT, then drains in-flight requests, checkpoints the WAL and
    /// closes the database. Ends with an error if the database writer dies.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let summary: Vec<String> =
            self.local_addrs().iter().map(|(name, addr)| format!("http://{addr} ({name})")).collect();
        let mut tasks = tokio::task::JoinSet::new();
        let lc = self.state.lifecycle.clone();
        let mut periodic = lifecycle::expiry::worker_tasks(
            &lc,
            self.state.config.experimental.inactive_session_expiration.as_ref(),
            self.state.metrics.sessions_expired.clone(),
        );
        periodic.push(lifecycle::clients::unused_dynamic_clients_task(
            &lc,
            self.state.config.experimental.dynamic_client_ttl,
        ));
        let worker = tokio::spawn(lc.run_worker(periodic, stop_rx.clone()));
        let activity = tokio::spawn(lc.activity().clone().run(stop_rx.clone()));
        let connections = http::server::Connections::new(
            self.state.config.http.max_connections,
            http::server::Timeouts {
                header_read: std::time::Duration::from_secs(self.state.config.http.header_read_timeout),
                idle: std::time::Duration::from_secs(self.state.config.http.idle_timeout),
            },
        );
        for l in self.listeners {
            tasks.spawn(http::server::serve(l.listener, l.router, connections.clone(), stop_rx.clone()));
        }
        tracing::info!("listening on {}; issuer {}", summary.join(", "), self.state.config.http.issuer());
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let store = self.state.store.clone();
        let writer_died = tokio::select! {
            () = shutdown => false,
            () = store.writer_died() => true,
        };
        if writer_died {
            tracing::error!("the database writer died; shutting down so that the service manager restarts us");
        } else {
            tracing::info!("shutting down");
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let _ = stop_tx.send(true);
        let mut served = Ok(());
        while let Some(r) = tasks.join_next().await {
            let r = r.map_err(anyhow::Error::from).and_then(|r| r.map_err(anyhow::Error::from));
            if let (Err(e), true) = (r, served.is_ok()) {
                served = Err(e);
            }
        }
        let _ = worker.await;
        let _ = activity.await;
        // The listeners are closed: nothing records any more, so this write is the last one.
        let written = lc.activity().flush().await;
        tracing::debug!(records = written, "session activity written at shutdown");
        if writer_died {
            anyhow::bail!("the database writer stopped; exiting so that the process is restarted");
        }
        // Checkpoint the WAL and close every connection: a clean stop leaves only the database file.
        if let Err(e) = store.close().await {
            tracing::warn!(error = %e, "cannot close the database cleanly");
        }
        served
    }
}

async fn bind_one(bind: &BindConfig) -> anyhow::Result<TcpListener> {
    match bind {
        BindConfig::Address { address } => Ok(TcpListener::bind(address.as_str()).await?),
        BindConfig::HostPort { host, port } => {
            Ok(TcpListener::bind((host.as_deref().unwrap_or("0.0.0.0"), *port)).await?)
        }
        BindConfig::Fd { fd } => {
            let listener = inherited_socket(*fd)?;
            listener.set_nonblocking(true)?;
            Ok(TcpListener::from_std(listener)?)
        }
    }
}

/// A socket passed by systemd socket activation (`LISTEN_FDS`, starting at fd 3).
fn inherited_socket(index: u32) -> anyhow::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    let pid_ok = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count: u32 = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    anyhow::ensure!(
        pid_ok && index < count,
        "no inherited socket {index} (LISTEN_FDS={count}); is the .socket unit active?"
    );
    // SAFETY: systemd passed us this descriptor (LISTEN_PID matches) and nothing else owns it.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(3 + index as i32) })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
