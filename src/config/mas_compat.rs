//! An operator's MAS configuration loads: keys that MAS knows and this service does not use are
//! removed before the typed parse, each with one warning naming it and why; any other unknown
//! key still fails the parse (`deny_unknown_fields`), naming it, so typos never pass silently.

use serde_yaml::{Mapping, Value};

/// MAS keys this service accepts and ignores: a dotted path (`[]` = any list item) and why.
const IGNORED: &[(&str, &str)] = &[
    (
        "telemetry",
        "tracing/metrics exporters and Sentry: this service logs to stderr and serves Prometheus /metrics (resource `prometheus`)",
    ),
    ("templates", "templates, translations and assets are built into the binary"),
    ("captcha", "no CAPTCHA support: use registration tokens (account.registration_token_required)"),
    ("oauth", "the device code grant is always on"),
    ("database.uri", "the state is one SQLite file at database.path"),
    ("database.host", "the state is one SQLite file at database.path"),
    ("database.port", "the state is one SQLite file at database.path"),
    ("database.socket", "the state is one SQLite file at database.path"),
    ("database.username", "the state is one SQLite file at database.path"),
    ("database.password", "the state is one SQLite file at database.path"),
    ("database.password_file", "the state is one SQLite file at database.path"),
    ("database.database", "the state is one SQLite file at database.path"),
    ("database.ssl_mode", "the state is one SQLite file at database.path"),
    ("database.ssl_ca", "the state is one SQLite file at database.path"),
    ("database.ssl_ca_file", "the state is one SQLite file at database.path"),
    ("database.ssl_certificate", "the state is one SQLite file at database.path"),
    ("database.ssl_certificate_file", "the state is one SQLite file at database.path"),
    ("database.ssl_key", "the state is one SQLite file at database.path"),
    ("database.ssl_key_file", "the state is one SQLite file at database.path"),
    ("database.min_connections", "SQLite: one writer and database.read_connections readers"),
    ("database.max_connections", "SQLite: one writer and database.read_connections readers"),
    ("database.connect_timeout", "SQLite has no connection to time out"),
    ("database.idle_timeout", "SQLite has no connection to time out"),
    ("database.max_lifetime", "SQLite has no connection to time out"),
    (
        "secrets.keys_dir",
        "list the keys under secrets.keys, or leave them out to have them generated into the database",
    ),
    ("passwords.schemes[].cost", "bcrypt hashes are only verified (imported from Synapse); new ones are argon2id"),
    ("policy.wasm_module", "the policy is built in (OPA is not used)"),
    ("policy.client_registration_entrypoint", "the policy is built in (OPA is not used)"),
    ("policy.register_entrypoint", "the policy is built in (OPA is not used)"),
    ("policy.authorization_grant_entrypoint", "the policy is built in (OPA is not used)"),
    ("policy.password_entrypoint", "the policy is built in (OPA is not used)"),
    ("policy.email_entrypoint", "the policy is built in (OPA is not used)"),
    ("policy.compat_login_entrypoint", "the policy is built in (OPA is not used)"),
    ("policy.data.registration", "allowed and banned usernames are not enforced"),
    ("policy.data.emails", "allowed and banned email addresses are not enforced"),
    ("policy.data.requester", "banned IPs and user agents are not enforced: block them at the reverse proxy"),
    ("rate_limiting.email_authentication.emails_per_session", "codes are limited per address and per IP"),
    ("rate_limiting.email_authentication.attempt_per_session", "each code allows 5 attempts"),
    (
        "upstream_oauth2.providers[].claims_imports.email.set_email_verification",
        "an imported address is always added to the account as confirmed",
    ),
    ("experimental.plan_management_iframe_uri", "no plan management page"),
    ("experimental.session_limit", "sessions per user are not limited"),
];

/// Listener resources MAS has and this service does not serve.
const IGNORED_RESOURCES: &[(&str, &str)] = &[
    ("graphql", "there is no GraphQL API; the admin REST API is the `adminapi` resource"),
    ("connection-info", "a MAS debugging page"),
];

/// Removes the keys of `IGNORED` (and the resources of `IGNORED_RESOURCES`) from `root`; one
/// warning for each, naming it.
pub fn strip(root: &mut Value) -> Vec<String> {
    let mut warnings = Vec::new();
    walk(root, "", "", &mut warnings);
    warnings
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// `pattern` is the path with `[]` for list items; `path` names the actual indexes.
fn walk(value: &mut Value, pattern: &str, path: &str, warnings: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            let keys: Vec<String> = map.keys().filter_map(|k| k.as_str().map(str::to_string)).collect();
            for key in keys {
                let (p, full) = (join(pattern, &key), join(path, &key));
                if let Some((_, why)) = IGNORED.iter().find(|(ignored, _)| *ignored == p) {
                    map.remove(key.as_str());
                    warnings
                        .push(format!("config key `{full}` is MAS's and not used by this service ({why}); ignored"));
                    continue;
                }
                if p == "http.listeners[].resources" {
                    if let Some(Value::Sequence(resources)) = map.get_mut(key.as_str()) {
                        strip_resources(resources, &full, warnings);
                    }
                }
                if let Some(child) = map.get_mut(key.as_str()) {
                    walk(child, &p, &full, warnings);
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{pattern}[]"), &format!("{path}[{i}]"), warnings);
            }
        }
        _ => {}
    }
}

fn strip_resources(resources: &mut Vec<Value>, path: &str, warnings: &mut Vec<String>) {
    let mut i = 0;
    let mut index = 0;
    while i < resources.len() {
        let name = resources[i].get("name").and_then(Value::as_str).map(str::to_string);
        match name.and_then(|n| IGNORED_RESOURCES.iter().find(|(r, _)| *r == n)) {
            Some((name, why)) => {
                warnings.push(format!(
                    "config `{path}[{index}]`: MAS's resource `{name}` is not served by this service ({why}); ignored"
                ));
                resources.remove(i);
            }
            None => i += 1,
        }
        index += 1;
    }
}

/// Deep merge as MAS merges its `-c` files: mappings merge key by key, the later file's value
/// wins for anything else (lists included).
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// An empty mapping (what an empty file parses to, too).
pub fn empty() -> Value {
    Value::Mapping(Mapping::new())
}

#[cfg(test)]
mod tests {
    use super::{merge, strip};

    #[test]
    fn mas_only_keys_are_removed_with_one_warning_each() {
        let mut v: serde_yaml::Value = serde_yaml::from_str(
            "telemetry: {tracing: {exporter: none}}\ndatabase: {uri: 'postgresql://x', path: a.db}\n\
             http: {listeners: [{name: web, resources: [{name: oauth}, {name: graphql, playground: true}, {name: human}]}]}\n\
             passwords: {schemes: [{version: 1, algorithm: argon2id}, {version: 2, algorithm: argon2id, cost: 12}]}\n\
             matrix: {secrte: typo}\n",
        )
        .expect("yaml");
        let w = strip(&mut v);
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].contains("`telemetry`"));
        assert!(w.iter().any(|w| w.contains("`database.uri`")));
        assert!(w.iter().any(|w| w.contains("`http.listeners[0].resources[1]`") && w.contains("graphql")));
        assert!(w.iter().any(|w| w.contains("`passwords.schemes[1].cost`")));
        assert_eq!(v["http"]["listeners"][0]["resources"].as_sequence().map(Vec::len), Some(2));
        assert_eq!(v["database"]["path"].as_str(), Some("a.db"));
        // Unknown to both: left for the typed parse to refuse.
        assert_eq!(v["matrix"]["secrte"].as_str(), Some("typo"));
    }

    #[test]
    fn later_files_win_and_mappings_merge() {
        let mut a: serde_yaml::Value =
            serde_yaml::from_str("matrix: {homeserver: a, secret: s}\nclients: [{client_id: x}]").expect("yaml");
        let b: serde_yaml::Value =
            serde_yaml::from_str("matrix: {homeserver: b}\nclients: [{client_id: y}]").expect("yaml");
        merge(&mut a, b);
        assert_eq!(a["matrix"]["homeserver"].as_str(), Some("b"));
        assert_eq!(a["matrix"]["secret"].as_str(), Some("s"));
        assert_eq!(a["clients"][0]["client_id"].as_str(), Some("y"));
    }
}
