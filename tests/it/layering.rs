//! The layering rules of `DESIGN.md`, checked on the source (issue 15): handlers reach the
//! homeserver only through `lifecycle` and never touch SQLite; `email` and `lifecycle` know no
//! HTTP. (`Lifecycle`'s handles being private is checked by the compiler.)

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `path` without comments (a doc comment may name what the code must not use).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file under `src/<dir>` (relative to the crate) that uses one of `forbidden`; a grouped
/// `use crate::{…}` counts too.
fn offenders(dir: &str, forbidden: &[&str], except: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src").join(dir), &mut files);
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(&f).to_string_lossy().into_owned();
        if except.iter().any(|e| rel.ends_with(e)) {
            continue;
        }
        let code = code_of(&f);
        // `use crate::{a, b::c}` → `crate::a`, `crate::b::c` (one level is all the code uses).
        let mut flat = code.clone();
        for group in code.split("crate::{").skip(1) {
            if let Some(end) = group.find('}') {
                for item in group[..end].split(',') {
                    flat.push_str(&format!("\ncrate::{}", item.trim()));
                }
            }
        }
        for word in forbidden {
            if flat.contains(word) {
                found.push(format!("{rel} uses {word}"));
            }
        }
    }
    found
}

#[test]
fn handlers_reach_neither_the_homeserver_nor_sqlite() {
    let mut found = offenders("http", &["crate::homeserver"], &[]);
    found.extend(offenders("http", &["rusqlite"], &[]));
    assert!(found.is_empty(), "handlers must go through lifecycle:\n{}", found.join("\n"));
}

#[test]
fn email_knows_no_http() {
    let found = offenders("email", &["crate::http", "axum"], &[]);
    assert!(found.is_empty(), "email/ is transport and templates only:\n{}", found.join("\n"));
}

#[test]
fn lifecycle_knows_no_http() {
    let found = offenders("lifecycle", &["crate::http", "axum"], &[]);
    assert!(found.is_empty(), "lifecycle/ must not reach up into http:\n{}", found.join("\n"));
}
