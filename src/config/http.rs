use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

/// `http`: where the service listens and the public URL clients see.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The public URL of the service, as clients and browsers reach it.
    #[serde(default = "default_public_base")]
    pub public_base: Url,
    /// The OpenID issuer; defaults to `public_base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Url>,
    /// Peers whose `X-Forwarded-For` is believed (CIDR ranges or addresses).
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConfig>,
    /// Seconds a client has to send a complete request header, counted from when it connected or
    /// first wrote to a kept-alive connection; then the connection is closed.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: u64,
    /// Seconds a connection may sit with nothing moving: an idle keep-alive connection between
    /// requests, a stalled request body, a client that stops reading its response.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// Open connections across all listeners; above it new ones are answered 503 and closed.
    /// The systemd unit's `LimitNOFILE` leaves room for it.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    75
}
fn default_max_connections() -> usize {
    4096
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            public_base: default_public_base(),
            issuer: None,
            trusted_proxies: default_trusted_proxies(),
            listeners: default_listeners(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub resources: Vec<Resource>,
    pub binds: Vec<BindConfig>,
    /// Accepted for compatibility; TLS is terminated by the reverse proxy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_protocol: bool,
}

/// What a listener serves (MAS's resource names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Resource {
    Discovery,
    Human,
    Oauth,
    Compat,
    Assets,
    Health,
    Prometheus,
    Adminapi,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum BindConfig {
    /// `address: "127.0.0.1:8080"` or `"[::]:8080"`.
    Address { address: String },
    /// `host: localhost` + `port: 8080`.
    HostPort { host: Option<String>, port: u16 },
    /// An inherited socket (systemd socket activation, `LISTEN_FDS`): `fd: 0` is the first one.
    Fd { fd: u32 },
}

impl BindConfig {
    pub fn describe(&self) -> String {
        match self {
            BindConfig::Address { address } => address.clone(),
            BindConfig::HostPort { host, port } => {
                format!("{}:{port}", host.as_deref().unwrap_or("0.0.0.0"))
            }
            BindConfig::Fd { fd } => format!("fd:{fd}"),
        }
    }
}

fn default_public_base() -> Url {
    Url::parse("http://127.0.0.1:8080/").expect("static URL")
}

fn default_trusted_proxies() -> Vec<String> {
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_listeners() -> Vec<ListenerConfig> {
    vec![
        ListenerConfig {
            name: Some("web".into()),
            resources: vec![
                Resource::Discovery,
                Resource::Human,
                Resource::Oauth,
                Resource::Compat,
                Resource::Assets,
                Resource::Health,
            ],
            binds: vec![BindConfig::Address { address: "127.0.0.1:8080".into() }],
            proxy_protocol: false,
        },
        ListenerConfig {
            name: Some("internal".into()),
            resources: vec![Resource::Health],
            binds: vec![BindConfig::Address { address: "127.0.0.1:8081".into() }],
            proxy_protocol: false,
        },
    ]
}

impl HttpConfig {
    pub fn issuer(&self) -> Url {
        self.issuer.clone().unwrap_or_else(|| self.public_base.clone())
    }

    /// Absolute URL of `path` under `public_base` (which always ends in `/`).
    pub fn url(&self, path: &str) -> String {
        let base = self.public_base.as_str();
        let base = base.strip_suffix('/').unwrap_or(base);
        format!("{base}/{}", path.trim_start_matches('/'))
    }

    /// Whether cookies get the `Secure` flag.
    pub fn is_https(&self) -> bool {
        self.public_base.scheme() == "https"
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_no_path_prefix(&self.public_base)?;
        check_base_url(&self.public_base, "http.public_base")?;
        if let Some(issuer) = &self.issuer {
            check_base_url(issuer, "http.issuer")?;
        }
        for (i, cidr) in self.trusted_proxies.iter().enumerate() {
            parse_cidr(cidr).map_err(|m| ConfigError::new(format!("http.trusted_proxies[{i}]"), m))?;
        }
        for (path, secs) in
            [("http.header_read_timeout", self.header_read_timeout), ("http.idle_timeout", self.idle_timeout)]
        {
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::new(path, "must be between 1 and 3600 seconds"));
            }
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(ConfigError::new("http.max_connections", "must be between 1 and 1000000"));
        }
        if self.listeners.is_empty() {
            return Err(ConfigError::new("http.listeners", "at least one listener is required"));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if l.binds.is_empty() {
                return Err(ConfigError::new(format!("http.listeners[{i}].binds"), "at least one bind is required"));
            }
            for (j, b) in l.binds.iter().enumerate() {
                if let BindConfig::Address { address } = b {
                    if address.parse::<std::net::SocketAddr>().is_err() {
                        return Err(ConfigError::new(
                            format!("http.listeners[{i}].binds[{j}].address"),
                            format!("expected IP:PORT such as 127.0.0.1:8080 or [::]:8080, got {address:?}"),
                        ));
                    }
                }
            }
            if l.proxy_protocol {
                return Err(ConfigError::new(
                    format!("http.listeners[{i}].proxy_protocol"),
                    "the PROXY protocol is not supported; use X-Forwarded-For with http.trusted_proxies",
                ));
            }
        }
        Ok(())
    }
}

fn check_base_url(url: &Url, path: &str) -> Result<(), ConfigError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(path, "must be an http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(path, "must not have a query or fragment"));
    }
    if !url.path().ends_with('/') {
        return Err(ConfigError::new(path, format!("must end with a slash, e.g. {url}/")));
    }
    Ok(())
}

/// `public_base` must be the root of its host. Pages, redirects, cookies (`Path=/`), the routes
/// and the proxy snippets of `config synapse` all assume it; a prefix such as `/auth/` would give
/// discovery URLs under the prefix and page links outside it. Give the service its own host, or
/// share the homeserver's host at its root (`config synapse` routes everything not Synapse's here).
fn check_no_path_prefix(url: &Url) -> Result<(), ConfigError> {
    if url.path() == "/" {
        return Ok(());
    }
    let mut root = url.clone();
    root.set_path("/");
    Err(ConfigError::new(
        "http.public_base",
        format!(
            "must be the root of a host, without a path: {url} has the path {path:?}, which this service cannot be \
             served under; use its own host (e.g. https://auth.{host}/) or the root of this one ({root})",
            path = url.path(),
            host = url.host_str().unwrap_or("example.org"),
        ),
    ))
}

/// Parses `addr` or `addr/prefix` into (network, prefix length).
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.parse().map_err(|_| format!("expected an IP address or CIDR range, got {s:?}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("bad prefix length in {s:?}"))?,
        None => max,
    };
    Ok((ip, len))
}
