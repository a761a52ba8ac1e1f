//! `appliance config systemd`: a hardened service unit for the server.

/// A systemd service unit running `{binary} serve --config {config}` as `user`.
///
/// `Type=notify`: the server reports readiness once its listeners are bound. State lives in
/// `/var/lib/appliance` (`StateDirectory=`, created and chowned by systemd) and the config in
/// `/etc/appliance` (`ConfigurationDirectory=`); everything else is read-only to the service.
/// `LimitNOFILE=` leaves room for `http.max_connections` (4096 by default) plus the database and
/// listeners; the server warns at start when the limit it got is lower.
pub fn unit(binary: &str, config: &str, user: &str) -> String {
    format!(
        r#"[Unit]
Description=appliance: Matrix authentication service (OAuth 2.0 / OpenID Connect)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart={binary} serve --config {config}
User={user}
Group={user}
Restart=on-failure
RestartSec=2s
TimeoutStopSec=30s
LimitNOFILE=65536

StateDirectory=appliance
StateDirectoryMode=0700
ConfigurationDirectory=appliance
WorkingDirectory=/var/lib/appliance
ReadWritePaths=/var/lib/appliance
UMask=0077

NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_hardened_and_names_its_inputs() {
        let u = unit("/usr/local/bin/appliance", "/etc/appliance/config.yaml", "appliance");
        for line in [
            "Type=notify",
            "ExecStart=/usr/local/bin/appliance serve --config /etc/appliance/config.yaml",
            "User=appliance",
            "Group=appliance",
            "StateDirectory=appliance",
            "ConfigurationDirectory=appliance",
            "Restart=on-failure",
            "LimitNOFILE=65536",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "RestrictNamespaces=yes",
            "LockPersonality=yes",
            "MemoryDenyWriteExecute=yes",
            "RestrictRealtime=yes",
            "RestrictSUIDSGID=yes",
            "SystemCallArchitectures=native",
            "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=",
            "UMask=0077",
            "ReadWritePaths=/var/lib/appliance",
            "WorkingDirectory=/var/lib/appliance",
            "WantedBy=multi-user.target",
        ] {
            assert!(u.lines().any(|l| l == line), "missing line {line:?} in\n{u}");
        }
        // Every line is a section header, a comment-free `Key=value` or blank.
        for l in u.lines() {
            assert!(l.is_empty() || (l.starts_with('[') && l.ends_with(']')) || l.contains('='), "odd line {l:?}");
        }
    }
}
