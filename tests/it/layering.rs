//! The layering rules of `DESIGN.md`, checked on the source (issue 15): handlers reach the
//! homeserver only through `lifecycle` and never touch SQLite; `email` and `lifecycle` know no
//! HTTP; every form post of a page goes through the CSRF extractors. (`Lifecycle`'s handles
//! being private is checked by the compiler.)

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

/// The POST routes of a router file: (route path, handler path as written, e.g. `account::end_post`).
fn post_routes(router: &str) -> Vec<(String, String)> {
    let code = code_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join(router));
    let mut out = Vec::new();
    for rest in code.split(".route(").skip(1) {
        // The arguments of this `.route(…)` only: up to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(rest.len(), |(i, _)| i);
        let call = &rest[..end];
        let Some(path) = call.split('"').nth(1) else { continue };
        // `.post(x)` or `axum::routing::post(x)`, alone or after `get(…)`.
        for piece in call.split("post(").skip(1) {
            let handler: String = piece.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            if !handler.is_empty() {
                out.push((path.to_string(), handler));
            }
        }
    }
    out
}

/// The parameter list of `async fn name(` in the module `module` (relative to `base`, or to
/// `src/http`), looking into the module's files when it re-exports the handler.
fn handler_signature(base: &str, handler: &str) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut segments: Vec<&str> = handler.split("::").collect();
    let name = segments.pop()?;
    let module = segments.join("/");
    let mut files = Vec::new();
    for dir in [root.join(base), root.join("http")] {
        let m = if module.is_empty() { dir.join("mod.rs") } else { dir.join(format!("{module}.rs")) };
        if m.is_file() {
            files.push(m);
        }
        let d = if module.is_empty() { dir.clone() } else { dir.join(&module) };
        if !module.is_empty() && d.is_dir() {
            rust_files(&d, &mut files);
        }
        if !files.is_empty() {
            break;
        }
    }
    let needle = format!("fn {name}(");
    files.iter().map(|f| code_of(f)).find_map(|code| {
        let start = code.find(&needle)? + needle.len();
        let end = start + code[start..].find(") -> ")?;
        Some(code[start..end].to_string())
    })
}

#[test]
fn every_page_form_post_is_csrf_checked() {
    // The identity provider's own posts: its `response_mode=form_post` answer (bound to the
    // flow by its `state` cookie) and its back-channel logout (server to server, signed).
    let not_browser_forms = ["/upstream/callback/{id}", "/upstream/backchannel-logout/{id}"];
    let mut found = Vec::new();
    let mut checked = 0;
    for (router, base) in [("src/http/pages/mod.rs", "http/pages"), ("src/http/upstream/mod.rs", "http/upstream")] {
        for (path, handler) in post_routes(router) {
            if not_browser_forms.contains(&path.as_str()) {
                continue;
            }
            match handler_signature(base, &handler) {
                None => found.push(format!("POST {path}: handler {handler} not found")),
                Some(sig) if !sig.contains("CsrfForm<") && !sig.contains("SignedIn<") => {
                    found.push(format!("POST {path}: {handler} takes neither CsrfForm nor SignedIn"))
                }
                Some(_) => checked += 1,
            }
        }
    }
    assert!(checked >= 30, "only {checked} POST routes found: is the router scan still right?");
    // Nothing reads a form or checks a token by hand beside the extractors.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src/http/pages", "src/http/upstream", "src/http/compat"] {
        rust_files(&root.join(dir), &mut files);
    }
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(&f).to_string_lossy().into_owned();
        if rel.ends_with("pages/extract.rs") {
            continue;
        }
        let code = code_of(&f);
        if code.contains("check_csrf") {
            found.push(format!("{rel} checks a CSRF token by hand"));
        }
        // Only the identity provider's posts (above) may be read as a plain form.
        let idp_posts = rel.ends_with("upstream/mod.rs") || rel.ends_with("upstream/backchannel.rs");
        let plain_form =
            code.match_indices("Form<").any(|(i, _)| !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
        if plain_form && !idp_posts {
            found.push(format!("{rel} reads a form without its CSRF token (Form<…>): take CsrfForm<…> or SignedIn<…>"));
        }
    }
    assert!(found.is_empty(), "page form posts must go through the CSRF door:\n{}", found.join("\n"));
}

/// `code_of` without the unit-test modules (`#[cfg(test)] mod …`, at the end of a file by habit):
/// tests may make up their own IDs.
fn production_code_of(path: &Path) -> String {
    let code = code_of(path);
    let lines: Vec<&str> = code.lines().collect();
    let item_after = |i: usize| lines[i + 1..].iter().map(|l| l.trim()).find(|l| !l.starts_with("#["));
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].trim() == "#[cfg(test)]"
                && item_after(i).is_some_and(|n| n.trim_start_matches("pub(crate) ").starts_with("mod "))
        })
        .unwrap_or(lines.len());
    lines[..end].join("\n")
}

/// Direct sources of time and randomness. Everything else takes them from the injected
/// `Clock` and `Rng` (`AppState::{clock, rng}`, `Lifecycle::{clock, rng}`), so that a test pinning
/// both gets the same IDs and tokens every run.
const DIRECT: &[&str] = &[
    "Ulid::new(",
    "Ulid::from_parts(",
    "thread_rng",
    "OsRng",
    "rand::random",
    "gen_range",
    "getrandom",
    "SystemTime::now",
    "Utc::now",
    "OffsetDateTime::now",
];

/// The justified direct uses: (file, pattern, how many times, why).
const ALLOWED: &[(&str, &str, usize, &str)] = &[
    ("src/rng.rs", "OsRng", 3, "the production Rng itself"),
    ("src/rng.rs", "Ulid::from_parts(", 2, "Rng::ulid_at builds the IDs"),
    ("src/clock.rs", "SystemTime::now", 2, "the production Clock itself"),
    ("src/lib.rs", "OsRng", 1, "App::build: the production rng is chosen here"),
    ("src/lifecycle/mod.rs", "OsRng", 2, "Lifecycle::new, for the CLI commands"),
    ("src/crypto/password.rs", "OsRng", 2, "argon2 salts: password_hash's SaltString::generate wants an RngCore"),
    ("src/crypto/encrypter.rs", "OsRng", 1, "AEAD nonces must never repeat, as a pinned test rng would"),
    ("src/cli/config_cmd.rs", "OsRng", 3, "config generate / sync: commands without app state"),
    ("src/cli/doctor.rs", "OsRng", 1, "doctor: a command without app state"),
    ("src/syn2mas/writer.rs", "OsRng", 1, "the offline import: IDs at the imported rows' own times"),
];

#[test]
fn time_and_randomness_come_from_the_injected_clock_and_rng() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(&f).to_string_lossy().replace('\\', "/");
        let code = production_code_of(&f);
        for pattern in DIRECT {
            let n = code.matches(pattern).count();
            let allowed = ALLOWED.iter().find(|(file, p, _, _)| *file == rel && p == pattern).map_or(0, |a| a.2);
            if n != allowed {
                found.push(format!("{rel}: {pattern} {n} times (allowed: {allowed})"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "take time and randomness from the injected Clock / Rng (or justify the site in ALLOWED):\n{}",
        found.join("\n")
    );
}
