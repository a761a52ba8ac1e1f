//! `appliance config synapse`: the homeserver.yaml section and reverse-proxy rules for this config.

use crate::config::{Config, HomeserverKind};

pub fn render(config: &Config) -> String {
    let issuer = config.http.issuer();
    let public = config.http.public_base.as_str();
    let internal = config
        .http
        .listeners
        .iter()
        .find(|l| l.resources.contains(&crate::config::Resource::Oauth))
        .and_then(|l| l.binds.first())
        .map(|b| format!("http://{}/", b.describe().replace("0.0.0.0", "127.0.0.1").replace("[::]", "127.0.0.1")))
        .unwrap_or_else(|| public.to_string());
    let synapse_section = match config.matrix.kind {
        HomeserverKind::Synapse => format!(
            "matrix_authentication_service:\n  enabled: true\n  endpoint: \"{internal}\"\n  secret: \"{secret}\"\n",
            secret = config.matrix.secret()
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
        "# homeserver.yaml (Synapse) — {kind:?} mode\n{synapse_section}password_config:\n  enabled: false\nenable_registration: false\nserve_client_wellknown: true\n\n\
# nginx: in the homeserver's server block, send the legacy login API to appliance\n\
location ~ ^/_matrix/client/(.*)/(login|logout|refresh) {{\n    proxy_pass {internal};\n    proxy_set_header Host $host;\n    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    proxy_set_header X-Forwarded-Proto $scheme;\n}}\n\
# and serve {public} (appliance's own host) entirely from it:\n\
# location / {{ proxy_pass {internal}; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme; }}\n\n\
# Caddy\n\
# <homeserver host> {{\n#     route {{\n#         @compat path_regexp ^/_matrix/client/(.*)/(login|logout|refresh)\n#         reverse_proxy @compat {internal_hostport}\n#         reverse_proxy /_matrix/* <synapse>\n#         reverse_proxy /_synapse/client/* <synapse>\n#     }}\n# }}\n# <appliance host> {{\n#     reverse_proxy {internal_hostport}\n# }}\n",
        kind = config.matrix.kind,
        internal_hostport = internal.trim_start_matches("http://").trim_end_matches('/'),
    )
}
