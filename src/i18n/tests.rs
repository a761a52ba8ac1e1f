use std::collections::BTreeSet;
use std::path::Path;

use super::*;

fn keys(text: &'static str) -> BTreeSet<&'static str> {
    parse(text).messages.keys().copied().collect()
}

#[test]
fn both_catalogues_have_the_same_keys() {
    let (en, de) = (keys(EN), keys(DE));
    let only_en: Vec<_> = en.difference(&de).collect();
    let only_de: Vec<_> = de.difference(&en).collect();
    assert!(only_en.is_empty(), "keys missing in locales/de.txt: {only_en:?}");
    assert!(only_de.is_empty(), "keys in locales/de.txt that en.txt does not have: {only_de:?}");
}

#[test]
fn every_line_of_the_catalogues_is_a_message() {
    for (name, text) in [("en", EN), ("de", DE)] {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            assert!(
                line.is_empty() || line.starts_with('#') || line.contains(" = "),
                "locales/{name}.txt:{}: not `key = text`: {line:?}",
                i + 1
            );
        }
    }
}

/// The message keys a template or source file uses: the first argument of `t(`, `t1(`, `t2(`,
/// `s(`, `s1(`, `s2(` and `text(` when it is a string literal with a dot and no space.
fn used_keys(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for call in [".t(\"", ".t1(\"", ".t2(\"", ".t3(\"", ".s(\"", ".s1(\"", ".s2(\"", ".text(\""] {
        for (at, _) in source.match_indices(call) {
            let rest = &source[at + call.len()..];
            let Some(end) = rest.find('"') else { continue };
            let key = &rest[..end];
            if key.contains('.') && !key.contains(' ') && !key.contains('{') {
                out.push(key.to_string());
            }
        }
    }
    out
}

fn walk(dir: &Path, exts: &[&str], out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, exts, out);
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.contains(&e)) {
            out.push(path);
        }
    }
}

#[test]
fn every_key_the_templates_and_the_code_use_is_in_both_catalogues() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("templates"), &["html", "txt"], &mut files);
    walk(&root.join("src"), &["rs"], &mut files);
    let (en, de) = (keys(EN), keys(DE));
    let mut missing = Vec::new();
    let mut used = 0;
    for file in files {
        if file.ends_with("i18n/tests.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        for key in used_keys(&source) {
            used += 1;
            for (lang, catalogue) in [("en", &en), ("de", &de)] {
                if !catalogue.contains(key.as_str()) {
                    missing.push(format!("{} uses {key:?}, missing in locales/{lang}.txt", file.display()));
                }
            }
        }
    }
    assert!(used > 100, "the scan found only {used} uses: is the pattern still right?");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn accept_language_picks_the_best_language_we_have() {
    assert_eq!(negotiate(None), Locale::En);
    assert_eq!(negotiate(Some("")), Locale::En);
    assert_eq!(negotiate(Some("de")), Locale::De);
    assert_eq!(negotiate(Some("de-AT")), Locale::De);
    assert_eq!(negotiate(Some("DE-ch, en;q=0.5")), Locale::De);
    assert_eq!(negotiate(Some("fr-FR, fr;q=0.9, de;q=0.8, en;q=0.7")), Locale::De);
    assert_eq!(negotiate(Some("fr-FR, fr;q=0.9, en;q=0.8, de;q=0.7")), Locale::En);
    assert_eq!(negotiate(Some("en-US,en;q=0.9,de;q=0.95")), Locale::En);
    assert_eq!(negotiate(Some("en;q=0.5, de;q=0.6")), Locale::De);
    assert_eq!(negotiate(Some("de;q=0, en")), Locale::En);
    assert_eq!(negotiate(Some("fr")), Locale::En);
    assert_eq!(negotiate(Some("*")), Locale::En);
    assert_eq!(negotiate(Some("de;q=garbage, fr")), Locale::En);
    assert_eq!(negotiate(Some("de_DE")), Locale::De);
}

#[test]
fn values_are_escaped_in_html_and_not_in_text() {
    let l = Locale::En;
    assert_eq!(
        l.t1("login.lead-client", "client", "<b>&'\"").0,
        "to continue to <strong>&lt;b&gt;&amp;&#39;&#34;</strong>"
    );
    assert_eq!(l.s1("email.recovery.subject", "mxid", "@a&b:x"), "Reset your password for @a&b:x");
    assert_eq!(Locale::De.s1("email.recovery.subject", "mxid", "@a:x"), "Passwort für @a:x zurücksetzen");
}

#[test]
fn messages_made_in_rust_are_translated_by_their_english_text() {
    let english = Locale::En.s("common.continue");
    assert_eq!(Locale::De.tr(english), "Weiter");
    assert_eq!(Locale::En.tr(english), "Continue");
    assert_eq!(Locale::De.tr("Something no catalogue has"), "Something no catalogue has");
}

#[test]
fn the_default_answers_when_no_language_of_ours_is_asked_for() {
    use super::negotiate_or;
    assert_eq!(negotiate_or(None, Locale::De), Locale::De);
    assert_eq!(negotiate_or(Some("fr"), Locale::De), Locale::De);
    assert_eq!(negotiate_or(Some("*"), Locale::De), Locale::De);
    assert_eq!(negotiate_or(Some("en-US"), Locale::De), Locale::En);
    assert_eq!(negotiate_or(Some("fr, de;q=0.5"), Locale::En), Locale::De);
}

#[tokio::test]
async fn the_password_checks_advice_is_in_the_pages_language() {
    use crate::lifecycle::registration::check_new_password;
    let (strength, problem) = super::with_locale(Locale::De, async { check_new_password("password", 3, &[]) }).await;
    let problem = problem.expect("a weak password is refused");
    assert!(problem.contains("Dies ist eines der 10 häufigsten Passwörter."), "{problem}");
    let tips = strength.expect("a strength").suggestions;
    assert!(!tips.is_empty());
    for tip in tips {
        assert_ne!(Locale::De.tr(&tip), tip.as_str(), "no German for {tip:?}");
    }
}
