use crate::App;
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(config_path: &[std::path::PathBuf], _args: Args) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    log_network_limits(&config);
    let app = App::build(config).await?;
    app.run_until_stopped().await
}

/// Says at start whose `X-Forwarded-For` is believed (per-IP rate limits depend on it), and
/// whether the process may open as many descriptors as `http.max_connections` needs.
fn log_network_limits(config: &Config) {
    let trusted = &config.http.trusted_proxies;
    if trusted.is_empty() {
        tracing::info!("no trusted proxies: every client is identified by its peer address");
    } else {
        tracing::info!(
            trusted_proxies = %trusted.join(", "),
            "X-Forwarded-For is believed only from these peers; a proxy missing here makes every \
             client behind it share the proxy's per-IP rate limits"
        );
    }
    let needed = config.http.max_connections as u64 + 64;
    if let Some(soft) = open_files_limit().filter(|soft| *soft < needed) {
        tracing::warn!(
            limit = soft,
            max_connections = config.http.max_connections,
            "the open-files limit is below http.max_connections; raise LimitNOFILE (the generated \
             systemd unit does) or lower http.max_connections"
        );
    }
}

/// The soft limit on open files, from /proc (no libc binding needed).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
