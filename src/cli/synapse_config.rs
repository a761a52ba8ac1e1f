//! `appliance config synapse`: the homeserver.yaml section and reverse-proxy rules for this config.
//!
//! Two layouts, chosen from the URLs: this service on its own host (`http.public_base` is
//! `https://auth.example.org/`), or on the homeserver's host (`public_base` has the same host as
//! `--homeserver-url`), where the homeserver's server block sends everything that is not
//! Synapse's to this service. Both the nginx and the Caddy output are checked by `nginx -t` and
//! `caddy validate` in tests/it/proxy_config.rs, and the end-to-end tests route through the nginx
//! locations printed here.

use url::Url;

use crate::config::{Config, HomeserverKind, Resource};

/// Which part to print (`--part`); all of them by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The section for Synapse's homeserver.yaml.
    Synapse,
    /// nginx `location` blocks for the server block of the homeserver's public host.
    NginxHomeserver,
    /// nginx `location` blocks for the server block of this service's own host.
    NginxService,
    /// A Caddyfile with a site block for each host.
    Caddy,
}

/// The hosts and upstreams the snippets need.
struct Layout {
    /// `http://127.0.0.1:8080`: where the proxy reaches this service (scheme, host, port).
    service: String,
    /// `http://127.0.0.1:8008`: where the proxy reaches Synapse (`matrix.endpoint`'s origin).
    synapse: String,
    /// The host (and port, when not the default) clients reach the homeserver at.
    homeserver_host: String,
    /// This service's public host (and port), from `http.public_base`.
    service_host: String,
    /// The service shares the homeserver's host.
    shared: bool,
}

fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// `http://127.0.0.1:8080`: where a proxy on this machine reaches this service (the first bind
/// of the listener serving the compat API), or `public_base`'s origin without one.
pub fn service_origin(config: &Config) -> String {
    config
        .http
        .listeners
        .iter()
        .find(|l| l.resources.contains(&Resource::Compat))
        .and_then(|l| l.binds.iter().find(|b| !matches!(b, crate::config::BindConfig::Fd { .. })))
        .map(|b| {
            let addr = b.describe().replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
            format!("http://{addr}")
        })
        .unwrap_or_else(|| origin(&config.http.public_base))
}

impl Layout {
    fn new(config: &Config, homeserver_url: Option<&Url>) -> Layout {
        let service = service_origin(config);
        let default_hs = format!("https://{}/", config.matrix.homeserver);
        let hs_url = homeserver_url.cloned().or_else(|| Url::parse(&default_hs).ok());
        let homeserver_host = hs_url.as_ref().map(host_port).unwrap_or_else(|| config.matrix.homeserver.clone());
        let service_host = host_port(&config.http.public_base);
        Layout {
            service,
            synapse: origin(&config.matrix.endpoint),
            shared: homeserver_host == service_host,
            homeserver_host,
            service_host,
        }
    }
}

fn nginx_location(matcher: &str, upstream: &str, extra: &str) -> String {
    format!(
        "location {matcher} {{\n    proxy_pass {upstream};\n    proxy_set_header Host $host;\n    \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    \
         proxy_set_header X-Forwarded-Proto $scheme;\n{extra}}}\n"
    )
}

/// `location` blocks for the homeserver host's server block.
fn nginx_homeserver(l: &Layout) -> String {
    let mut out = format!(
        "# nginx: inside the `server` block of {hs} (where Matrix clients reach the homeserver).\n\
         # Replace that block's /_matrix and /_synapse/client locations with these.\n\
         # The legacy login API (login, logout, refresh) is this service's: a regex location wins\n\
         # over the prefix locations below.\n",
        hs = l.homeserver_host
    );
    out += &nginx_location("~ ^/_matrix/client/(.*)/(login|logout|refresh)", &l.service, "");
    out += "# Everything else under /_matrix and /_synapse/client is Synapse's.\n";
    out += &nginx_location("/_matrix", &l.synapse, "    client_max_body_size 50M;\n");
    out += &nginx_location("/_synapse/client", &l.synapse, "");
    out += "# Synapse answers this (serve_client_wellknown) when this host is the server name's.\n";
    out += &nginx_location("= /.well-known/matrix/client", &l.synapse, "");
    if l.shared {
        out += &format!("# This service shares the host ({}): every other path is its.\n", l.service_host);
        out += &nginx_location("/", &l.service, "");
    }
    out
}

/// `location` blocks for the service's own server block.
fn nginx_service(l: &Layout) -> String {
    if l.shared {
        return format!(
            "# nginx: this service shares {}; the homeserver's server block above routes it.\n",
            l.service_host
        );
    }
    format!(
        "# nginx: inside the `server` block of {} (this service's own host).\n{}",
        l.service_host,
        nginx_location("/", &l.service, "")
    )
}

fn caddy(l: &Layout) -> String {
    let strip = |u: &str| u.trim_start_matches("http://").to_string();
    let (service, synapse) = (strip(&l.service), strip(&l.synapse));
    let mut out = format!(
        "# Caddyfile: a site block for each host (Caddy gets the certificates and sets X-Forwarded-*).\n\
         {hs} {{\n\
         \t@appliance_compat path_regexp ^/_matrix/client/(.*)/(login|logout|refresh)\n\
         \troute {{\n\
         \t\treverse_proxy @appliance_compat {service}\n\
         \t\treverse_proxy /_matrix/* {synapse}\n\
         \t\treverse_proxy /_synapse/client/* {synapse}\n\
         \t\treverse_proxy /.well-known/matrix/client {synapse}\n",
        hs = l.homeserver_host
    );
    if l.shared {
        out += &format!("\t\treverse_proxy {service}\n");
    }
    out += "\t}\n}\n";
    if !l.shared {
        out += &format!("{} {{\n\treverse_proxy {service}\n}}\n", l.service_host);
    }
    out
}

fn synapse_section(config: &Config, l: &Layout) -> String {
    let issuer = config.http.issuer();
    let section = match config.matrix.kind {
        HomeserverKind::Synapse => format!(
            "matrix_authentication_service:\n  enabled: true\n  endpoint: \"{}/\"\n  secret: \"{}\"\n",
            l.service,
            config.matrix.secret()
        ),
        HomeserverKind::SynapseLegacy => {
            let client = config.clients.iter().find(|c| c.client_id == "0000000000000000000SYNAPSE");
            let client_secret = client.and_then(|c| c.client_secret.as_ref()).map(|s| s.expose().to_string());
            format!(
                "experimental_features:\n  msc3861:\n    enabled: true\n    issuer: \"{issuer}\"\n    client_id: 0000000000000000000SYNAPSE\n    client_auth_method: client_secret_basic\n    client_secret: \"{}\"\n    admin_token: \"{}\"\n    account_management_url: \"{}\"\n",
                client_secret.unwrap_or_else(|| "<add the 0000000000000000000SYNAPSE client to `clients`>".into()),
                config.matrix.secret(),
                config.http.url("account/")
            )
        }
    };
    format!(
        "# homeserver.yaml (Synapse), {kind:?} mode\n{section}password_config:\n  enabled: false\nenable_registration: false\nserve_client_wellknown: true\n",
        kind = config.matrix.kind
    )
}

pub fn render(config: &Config, homeserver_url: Option<&Url>, part: Option<Part>) -> String {
    let l = Layout::new(config, homeserver_url);
    match part {
        Some(Part::Synapse) => synapse_section(config, &l),
        Some(Part::NginxHomeserver) => nginx_homeserver(&l),
        Some(Part::NginxService) => nginx_service(&l),
        Some(Part::Caddy) => caddy(&l),
        None => {
            let layout = if l.shared {
                format!("this service shares the homeserver's host {}", l.homeserver_host)
            } else {
                format!("this service on its own host {}, the homeserver on {}", l.service_host, l.homeserver_host)
            };
            format!(
                "# Layout: {layout} (--homeserver-url sets the homeserver's public URL).\n\
                 # Print one part with --part synapse|nginx-homeserver|nginx-service|caddy.\n\n{}\n{}\n{}\n{}",
                synapse_section(config, &l),
                nginx_homeserver(&l),
                nginx_service(&l),
                caddy(&l)
            )
        }
    }
}
