//! The Debian package (packaging/deb/build.sh): installed with `dpkg -i`, it puts the binary and
//! the hardened unit in place (`systemd-analyze verify` passes), creates the system user,
//! /var/lib/appliance and, on first install, /etc/appliance/config.yaml with fresh secrets; an
//! upgrade keeps that config; removing keeps the config and the data, purging keeps the data.
//!
//! It installs into this machine (as CI does, as root): it runs only as root, and refuses to
//! touch an `appliance` package or /var/lib/appliance it did not install itself. systemd is not
//! the init here, so the unit is checked with `systemd-analyze verify`, not started. The package
//! carries the test binary with its debug info stripped; `bash packaging/deb/build.sh` builds the
//! release one.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::helpers::{appliance_bin, repo_root, system_program, tempdir};

/// Left in /var/lib/appliance by this test, so that a later run knows it may clean up.
const MARKER: &str = "/var/lib/appliance/.installed-by-appliance-deb-test";

fn run_program(program: &str, args: &[&str]) -> String {
    let path = if program.starts_with('/') { program.into() } else { system_program(program) };
    let out = Command::new(path)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "`{program} {}` failed ({}):\n{text}", args.join(" "), out.status);
    text
}

fn installed_version() -> Option<String> {
    let out = Command::new(system_program("dpkg-query"))
        .args(["-W", "-f", "${Status} ${Version}", "appliance"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.starts_with("install ok installed").then(|| text.rsplit(' ').next().unwrap_or_default().to_string())
}

fn build(binary: &Path, version: &str, out: &Path) -> String {
    let script = repo_root().join("packaging/deb/build.sh");
    let args = [
        "--binary",
        binary.to_str().expect("utf-8"),
        "--version",
        version,
        "--out",
        out.to_str().expect("utf-8"),
        "--compression",
        "none",
    ];
    let output = Command::new(system_program("bash")).arg(&script).args(args).output().expect("run build.sh");
    assert!(output.status.success(), "build.sh failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn mode_owner(path: &str) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

fn id_of(db: &str, name: &str) -> u32 {
    let line = run_program("getent", &[db, name]);
    line.split(':').nth(2).and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("getent {db} {name}: {line}"))
}

#[test]
fn the_debian_package_installs_upgrades_and_removes_keeping_the_data() {
    if not_root() {
        eprintln!("[deb] skipped: installing a package needs root (CI runs as root)");
        return;
    }
    crate::synapse_harness::ensure_installed();
    // Only ever touch what this test installed.
    if installed_version().is_some() || Path::new("/var/lib/appliance").exists() {
        assert!(
            Path::new(MARKER).exists(),
            "an appliance package or /var/lib/appliance that this test did not install is on this machine; not touching it"
        );
        if installed_version().is_some() {
            run_program("dpkg", &["--purge", "appliance"]);
        }
        std::fs::remove_dir_all("/var/lib/appliance").expect("clean the last run's data");
    }

    let dir = tempdir();
    let binary = dir.path().join("appliance");
    run_program("strip", &["--strip-debug", "-o", binary.to_str().expect("utf-8"), appliance_bin()]);
    let v1 = build(&binary, "0.0.1~test1", dir.path());
    let v2 = build(&binary, "0.0.1~test2", dir.path());
    let contents = run_program("dpkg-deb", &["--contents", &v1]);
    for path in ["./usr/bin/appliance", "./lib/systemd/system/appliance.service", "./usr/share/doc/appliance/README.md"]
    {
        assert!(contents.contains(path), "the package lacks {path}:\n{contents}");
    }

    // First install.
    let said = run_program("dpkg", &["-i", &v1]);
    assert!(said.contains("wrote /etc/appliance/config.yaml"), "{said}");
    std::fs::write(MARKER, "").expect("mark the data dir as this test's");
    assert_eq!(installed_version().as_deref(), Some("0.0.1~test1"));
    run_program("/usr/bin/appliance", &["--version"]);
    let unit = std::fs::read_to_string("/lib/systemd/system/appliance.service").expect("unit installed");
    assert!(unit.contains("ExecStart=/usr/bin/appliance serve --config /etc/appliance/config.yaml"), "{unit}");
    assert!(unit.contains("User=appliance") && unit.contains("ProtectSystem=strict"), "{unit}");
    run_program("systemd-analyze", &["verify", "/lib/systemd/system/appliance.service"]);
    let (uid, gid) = (id_of("passwd", "appliance"), id_of("group", "appliance"));
    assert_eq!(mode_owner("/var/lib/appliance"), (0o700, uid, gid));
    assert_eq!(mode_owner("/etc/appliance"), (0o750, 0, gid));
    assert_eq!(mode_owner("/etc/appliance/config.yaml"), (0o640, 0, gid));
    let config = std::fs::read_to_string("/etc/appliance/config.yaml").expect("config written");
    run_program("/usr/bin/appliance", &["-c", "/etc/appliance/config.yaml", "config", "check"]);
    // Data, as the service would write it.
    run_program("/usr/bin/appliance", &["-c", "/etc/appliance/config.yaml", "database", "migrate"]);
    assert!(Path::new("/var/lib/appliance/appliance.db").exists());

    // Upgrade: the config is the operator's now; it is not regenerated.
    let said = run_program("dpkg", &["-i", &v2]);
    assert!(!said.contains("wrote /etc/appliance/config.yaml"), "{said}");
    assert_eq!(installed_version().as_deref(), Some("0.0.1~test2"));
    assert_eq!(std::fs::read_to_string("/etc/appliance/config.yaml").expect("config kept"), config);
    assert!(Path::new("/var/lib/appliance/appliance.db").exists());

    // Remove: program and unit go, config and data stay.
    run_program("dpkg", &["-r", "appliance"]);
    assert!(!Path::new("/usr/bin/appliance").exists() && !Path::new("/lib/systemd/system/appliance.service").exists());
    assert_eq!(std::fs::read_to_string("/etc/appliance/config.yaml").expect("config kept on remove"), config);
    assert!(Path::new("/var/lib/appliance/appliance.db").exists(), "remove must not delete the database");

    // Purge: the config goes, the database still stays.
    let said = run_program("dpkg", &["--purge", "appliance"]);
    assert!(!Path::new("/etc/appliance/config.yaml").exists());
    assert!(Path::new("/var/lib/appliance/appliance.db").exists(), "purge must not delete the database: {said}");
    std::fs::remove_dir_all("/var/lib/appliance").expect("clean up this test's data");
}

fn not_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() != 0).unwrap_or(true)
}
