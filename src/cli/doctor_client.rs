//! `doctor`, second half: the path a Matrix client follows to this service.
//!
//! `https://<server_name>/.well-known/matrix/client` → `m.homeserver.base_url` → the homeserver's
//! `auth_metadata` names our issuer → `GET /_matrix/client/v3/login` on the public base URL is
//! answered by this service (the most common mistake: the reverse proxy sends it to Synapse) →
//! the issuer is https → the homeserver's clock agrees with ours.

use serde_json::Value;
use url::Url;

use super::doctor::{Files, Finding, agent, is_loopback_host, our_issuer_key};
use crate::config::{Config, HomeserverKind};

/// How far the homeserver's clock may be from ours: token lifetimes are minutes.
const MAX_SKEW_SECS: i64 = 30;

/// The URL whose `.well-known/matrix/client` clients fetch: `https://<server_name>/`, or http
/// when the server name is a loopback host (a test setup).
fn server_url(server_name: &str) -> Option<Url> {
    let host = Url::parse(&format!("http://{server_name}/")).ok()?;
    let scheme = if host.host_str().is_some_and(is_loopback_host) { "http" } else { "https" };
    Url::parse(&format!("{scheme}://{server_name}/")).ok()
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') { url.to_string() } else { format!("{url}/") }
}

/// A response, read whole.
struct Got {
    status: u16,
    body: String,
    date: Option<String>,
}

impl Got {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
    fn snippet(&self) -> String {
        let s: String = self.body.chars().take(160).collect();
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn get(agent: &ureq::Agent, url: &str) -> Result<Got, String> {
    let mut res = agent.get(url).header("Accept", "application/json").call().map_err(|e| e.to_string())?;
    let date = res.headers().get("date").and_then(|d| d.to_str().ok()).map(str::to_string);
    let status = res.status().as_u16();
    let body = res.body_mut().read_to_string().unwrap_or_default();
    Ok(Got { status, body, date })
}

pub fn check(config: &Config, files: &Files, override_url: Option<&Url>) -> Vec<Finding> {
    let mut out = Vec::new();
    let agent = agent();
    let ours = config.http.issuer().to_string();
    let server_name = &config.matrix.homeserver;
    let proxy_fix = |host: &str| {
        format!(
            "the reverse proxy's server block for {host} must send ^/_matrix/client/(.*)/(login|logout|refresh) \
             to this service: `appliance config synapse --part nginx-homeserver` (or --part caddy) prints it"
        )
    };

    issuer_scheme(config, files, &mut out);

    // 1. The server name's well-known.
    let Some(base) = override_url.cloned().or_else(|| server_url(server_name)) else {
        out.push(Finding::fail(
            format!("matrix.homeserver {server_name:?} is not a server name"),
            format!("{} must be the homeserver's server_name", files.config("matrix.homeserver")),
        ));
        return out;
    };
    let well_known = format!("{}.well-known/matrix/client", with_slash(base.as_str()));
    // Where clients look: https, or http for a loopback server name (what `server_url` fetches).
    let client_url = server_url(server_name).map_or_else(|| format!("https://{server_name}/"), |u| u.to_string());
    let wk_fix = format!(
        "clients read it from {client_url}: set {} and route /.well-known/matrix/client to Synapse \
         on that host (`appliance config synapse --part nginx-homeserver`), or serve that JSON there yourself",
        files.homeserver("serve_client_wellknown")
    );
    let doc = match get(&agent, &well_known) {
        Err(e) => {
            out.push(Finding::fail(format!("cannot fetch {well_known}: {e}"), wk_fix));
            return out;
        }
        Ok(got) if got.status != 200 => {
            out.push(Finding::fail(format!("{well_known} answered {}: {}", got.status, got.snippet()), wk_fix));
            return out;
        }
        Ok(got) => match got.json() {
            Some(doc) => doc,
            None => {
                out.push(Finding::fail(format!("{well_known} is not JSON: {}", got.snippet()), wk_fix));
                return out;
            }
        },
    };
    let Some(base_url) = doc.pointer("/m.homeserver/base_url").and_then(Value::as_str).map(with_slash) else {
        out.push(Finding::fail(
            format!("{well_known} has no m.homeserver.base_url"),
            format!("set {} to the homeserver's public URL", files.homeserver("public_baseurl")),
        ));
        return out;
    };
    out.push(Finding::ok(format!("{well_known} names the homeserver {base_url}")));
    if let Some(issuer) = doc.pointer("/org.matrix.msc2965.authentication/issuer").and_then(Value::as_str) {
        if issuer != ours {
            out.push(Finding::fail(
                format!("{well_known} names the issuer {issuer}, but this service is {ours}"),
                format!(
                    "the well-known's org.matrix.msc2965.authentication.issuer must be {ours} (Synapse writes it from \
                     this service's discovery: check {})",
                    files.homeserver("matrix_authentication_service.endpoint")
                ),
            ));
        }
    }

    // 2. The homeserver's auth_metadata names our issuer.
    let mut date = None;
    let mut metadata = None;
    for path in ["_matrix/client/v1/auth_metadata", "_matrix/client/unstable/org.matrix.msc2965/auth_metadata"] {
        let url = format!("{base_url}{path}");
        match get(&agent, &url) {
            Err(e) => {
                out.push(Finding::fail(
                    format!("cannot reach the homeserver at {base_url} (from the well-known): {e}"),
                    format!(
                        "m.homeserver.base_url must be the homeserver's public URL: {}",
                        files.homeserver("public_baseurl")
                    ),
                ));
                return out;
            }
            Ok(got) => {
                date = date.or(got.date.clone());
                if got.status == 404 {
                    continue;
                }
                metadata = Some((url, got));
                break;
            }
        }
    }
    let (enable_key, issuer_key) = match config.matrix.kind {
        HomeserverKind::Synapse => ("matrix_authentication_service.enabled", "matrix_authentication_service.endpoint"),
        HomeserverKind::SynapseLegacy => {
            ("experimental_features.msc3861.enabled", "experimental_features.msc3861.issuer")
        }
    };
    match metadata {
        None => out.push(Finding::fail(
            format!("the homeserver at {base_url} does not delegate authentication (auth_metadata: 404)"),
            format!(
                "set {} to true with the section `appliance config synapse --part synapse` prints",
                files.homeserver(enable_key)
            ),
        )),
        Some((url, got)) if got.status != 200 => out.push(Finding::fail(
            format!("{url} answered {}: {}", got.status, got.snippet()),
            format!(
                "Synapse cannot read this service's discovery document: {} must reach this service",
                files.homeserver(issuer_key)
            ),
        )),
        Some((url, got)) => {
            let issuer = got.json().and_then(|d| d.get("issuer").and_then(Value::as_str).map(str::to_string));
            match issuer {
                Some(issuer) if issuer == ours => {
                    out.push(Finding::ok(format!("the homeserver's auth_metadata names this issuer ({ours})")))
                }
                other => out.push(Finding::fail(
                    format!(
                        "{url} names the issuer {}, but this service is {ours}",
                        other.as_deref().unwrap_or("(none)")
                    ),
                    match config.matrix.kind {
                        HomeserverKind::Synapse => format!(
                            "{} points at another service: make it this one's internal URL, or, if this service's \
                             issuer is wrong, fix {}",
                            files.homeserver(issuer_key),
                            files.config(our_issuer_key(config))
                        ),
                        HomeserverKind::SynapseLegacy => {
                            format!("set {} to {ours}", files.homeserver(issuer_key))
                        }
                    },
                )),
            }
        }
    }

    // 3. The legacy login API on the public URL is this service's.
    let public_login = format!("{base_url}_matrix/client/v3/login");
    let own_login = format!("{}/_matrix/client/v3/login", super::synapse_config::service_origin(config));
    let host = Url::parse(&base_url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    match (get(&agent, &public_login), get(&agent, &own_login)) {
        (_, Err(e)) => out.push(Finding::fail(
            format!("cannot ask this service for its login flows at {own_login}: {e}"),
            "start `appliance serve` (the compat resource must be on a listener)".to_string(),
        )),
        (Err(e), _) => out.push(Finding::fail(format!("cannot fetch {public_login}: {e}"), proxy_fix(&host))),
        (Ok(public), Ok(own)) => {
            date = date.or(public.date.clone());
            if public.status == 200 && public.json().is_some() && public.json() == own.json() {
                out.push(Finding::ok(format!("{public_login} is answered by this service")));
            } else {
                out.push(Finding::fail(
                    format!(
                        "{public_login} is not answered by this service (HTTP {}: {})",
                        public.status,
                        public.snippet()
                    ),
                    proxy_fix(&host),
                ));
            }
        }
    }

    // 4. The clocks agree (the Date header of the homeserver's answers).
    match date.as_deref().and_then(parse_http_date) {
        Some(theirs) => {
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            let skew = theirs - now;
            if skew.abs() <= MAX_SKEW_SECS {
                out.push(Finding::ok(format!("the homeserver's clock agrees with ours ({skew:+} s)")));
            } else {
                out.push(Finding::fail(
                    format!("the homeserver's clock is {skew:+} s from ours (more than {MAX_SKEW_SECS} s)"),
                    "run NTP on both machines (systemd-timesyncd or chrony): token lifetimes are minutes",
                ));
            }
        }
        None => out.push(Finding::warn(
            format!("cannot compare clocks: {base_url} sent no Date header"),
            "check the clocks of both machines by hand (NTP)",
        )),
    }
    out
}

/// The issuer must be https outside loopback: clients refuse plain http issuers, and tokens
/// would cross the network in clear.
fn issuer_scheme(config: &Config, files: &Files, out: &mut Vec<Finding>) {
    let issuer = config.http.issuer();
    let key = our_issuer_key(config);
    if issuer.scheme() == "https" {
        out.push(Finding::ok(format!("the issuer {issuer} is https")));
    } else if issuer.host_str().is_some_and(is_loopback_host) {
        out.push(Finding::ok(format!("the issuer {issuer} is plain http on loopback (a test setup)")));
    } else {
        out.push(Finding::warn(
            format!("the issuer {issuer} is plain http outside loopback"),
            format!("clients expect https: set {} to the https URL of your reverse proxy", files.config(key)),
        ));
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) as Unix seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace().skip(1);
    let day: i64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == month)? as i64
        + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::{parse_http_date, server_url};

    #[test]
    fn http_dates_parse() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn well_known_is_https_except_on_loopback() {
        assert_eq!(server_url("example.org").map(|u| u.to_string()), Some("https://example.org/".into()));
        assert_eq!(server_url("127.0.0.1:8448").map(|u| u.to_string()), Some("http://127.0.0.1:8448/".into()));
        assert_eq!(server_url("localhost").map(|u| u.to_string()), Some("http://localhost/".into()));
    }
}
