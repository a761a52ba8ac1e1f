//! The README's test command must pass on a fresh Debian machine: `tests/e2e/setup.sh` installs
//! every system program the tests start. This test lists those programs by scanning `tests/` for
//! `Command::new("…")`, `system_program("…")`, `run_program("…")` and `binary("…")`, and checks that setup.sh's
//! `system_programs` table names each of them (and that, after setup, each is on PATH).

use std::collections::BTreeSet;
use std::path::Path;

use crate::helpers::repo_root;

/// Calls that start a system program named by a string literal.
const LAUNCHERS: &[&str] = &["Command::new(\"", "system_program(\"", "binary(\"", "run_program(\""];

fn scan(dir: &Path, found: &mut BTreeSet<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            scan(&path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("tooling.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a test source");
        for launcher in LAUNCHERS {
            for (at, _) in text.match_indices(launcher) {
                let rest = &text[at + launcher.len()..];
                let name = &rest[..rest.find('"').expect("a closing quote")];
                if name.starts_with('/') {
                    continue; // an absolute path: a file the test installed, not a program to install
                }
                let file = path.strip_prefix(repo_root()).unwrap_or(&path).display().to_string();
                found.insert((name.to_string(), file));
            }
        }
    }
}

/// `system_programs=( "program package" … )` in setup.sh, as (program, package).
fn setup_table() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("tests/e2e/setup.sh")).expect("read setup.sh");
    let start = text.find("system_programs=(").expect("setup.sh has a system_programs table");
    let body = &text[start..];
    let body = &body[..body.find("\n)").expect("the table ends with a `)` line")];
    body.lines()
        .skip(1)
        .filter_map(|l| l.trim().strip_prefix('"')?.strip_suffix('"').map(str::to_string))
        .map(|l| {
            let (program, package) = l.split_once(' ').expect("\"program package\"");
            (program.to_string(), package.to_string())
        })
        .collect()
}

#[test]
fn setup_installs_every_program_the_tests_start() {
    let mut found = BTreeSet::new();
    scan(&repo_root().join("tests"), &mut found);
    let programs: BTreeSet<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    // The scan must see the programs we know the suite runs, or it has stopped working.
    for known in ["chromedriver", "chromium", "nginx", "caddy", "kill", "sh", "bash"] {
        assert!(programs.contains(known), "the scan of tests/ no longer finds {known}: {programs:?}");
    }
    let table = setup_table();
    let installed: BTreeSet<&str> = table.iter().map(|(p, _)| p.as_str()).collect();
    let missing: Vec<String> = found
        .iter()
        .filter(|(p, _)| !installed.contains(p.as_str()))
        .map(|(p, file)| format!("{p} (started in {file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "tests/e2e/setup.sh does not install: {}; add \"program debian-package\" to its system_programs table",
        missing.join(", ")
    );

    // After setup (which the harness runs once per test process), each one is on PATH.
    crate::synapse_harness::ensure_installed();
    for (program, package) in &table {
        assert!(
            which(program).is_some(),
            "{program} (Debian package {package}) is not on PATH after tests/e2e/setup.sh"
        );
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}
