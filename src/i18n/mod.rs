//! Pages, emails and form messages in the user's language.
//!
//! The catalogues `locales/en.txt` and `locales/de.txt` are compiled into the binary (no runtime
//! files). Each line is `key = text`; `#` starts a comment; `{name}` is a placeholder. English is
//! complete by definition and the fallback for a key missing in another language; a unit test
//! checks that both catalogues have the same keys and that every key the templates and the code
//! use exists.
//!
//! The language of a request is negotiated from `Accept-Language` (q-values, `de-AT` → `de`,
//! English when nothing matches) by a middleware on every router, which runs the request inside
//! a task-local scope: page contexts, error pages and emails read it with [`current`].
//!
//! Templates call `ctx.t("key")` for catalogue text (trusted, may hold simple markup such as
//! `<strong>`) and `ctx.t1("key", "name", value)` / `ctx.t2(…)` with values, which are
//! HTML-escaped. Messages made in Rust (`PageError`s, form errors) are English strings; a page
//! shows them through `ctx.tr(message)`, which finds the catalogue entry whose English text is
//! exactly the message and gives its translation (the message itself when there is none).

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::OnceLock;

use askama::filters::Safe;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

const EN: &str = include_str!("../../locales/en.txt");
const DE: &str = include_str!("../../locales/de.txt");

/// A language of the pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    En,
    De,
}

pub const LOCALES: [Locale; 2] = [Locale::En, Locale::De];

struct Catalogue {
    messages: HashMap<&'static str, &'static str>,
}

fn parse(text: &'static str) -> Catalogue {
    let mut messages = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once(" = ") {
            messages.insert(key.trim(), value.trim());
        } else if let Some(key) = line.strip_suffix(" =") {
            messages.insert(key.trim(), "");
        }
    }
    Catalogue { messages }
}

struct Catalogues {
    en: Catalogue,
    de: Catalogue,
    /// English text → key, for messages made in Rust (`tr`).
    by_english: HashMap<&'static str, &'static str>,
}

fn catalogues() -> &'static Catalogues {
    static C: OnceLock<Catalogues> = OnceLock::new();
    C.get_or_init(|| {
        let en = parse(EN);
        let by_english = en.messages.iter().map(|(k, v)| (*v, *k)).collect();
        Catalogues { en, de: parse(DE), by_english }
    })
}

impl Locale {
    /// The BCP 47 tag (`<html lang>`, `Content-Language`).
    pub fn tag(&self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::De => "de",
        }
    }

    fn catalogue(&self) -> &'static Catalogue {
        let c = catalogues();
        match self {
            Locale::En => &c.en,
            Locale::De => &c.de,
        }
    }

    /// The text of `key`, falling back to English, then to the key itself.
    pub fn get(&self, key: &str) -> &'static str {
        if let Some(m) = self.catalogue().messages.get(key) {
            return m;
        }
        match catalogues().en.messages.get(key) {
            Some(m) => m,
            None => {
                tracing::warn!(key, "no such message in the catalogue");
                catalogues().en.messages.get("missing").copied().unwrap_or("?")
            }
        }
    }

    /// Catalogue text for a page (trusted: not escaped again).
    pub fn t(&self, key: &str) -> Safe<&'static str> {
        Safe(self.get(key))
    }

    /// Catalogue text with one value, HTML-escaped.
    pub fn t1(&self, key: &str, name: &str, value: impl Display) -> Safe<String> {
        Safe(fill(self.get(key), &[(name, &value.to_string())], true))
    }

    /// Catalogue text with two values, HTML-escaped.
    pub fn t2(&self, key: &str, n1: &str, v1: impl Display, n2: &str, v2: impl Display) -> Safe<String> {
        Safe(fill(self.get(key), &[(n1, &v1.to_string()), (n2, &v2.to_string())], true))
    }

    /// Catalogue text with three values, HTML-escaped.
    #[allow(clippy::too_many_arguments)]
    pub fn t3(
        &self,
        key: &str,
        n1: &str,
        v1: impl Display,
        n2: &str,
        v2: impl Display,
        n3: &str,
        v3: impl Display,
    ) -> Safe<String> {
        let args = [(n1, v1.to_string()), (n2, v2.to_string()), (n3, v3.to_string())];
        let args: Vec<(&str, &str)> = args.iter().map(|(n, v)| (*n, v.as_str())).collect();
        Safe(fill(self.get(key), &args, true))
    }

    /// Plain catalogue text (escaped when a template shows it: for macro arguments, attributes).
    pub fn s(&self, key: &str) -> &'static str {
        self.get(key)
    }

    /// Plain text with one value (not escaped here).
    pub fn s1(&self, key: &str, name: &str, value: impl Display) -> String {
        fill(self.get(key), &[(name, &value.to_string())], false)
    }

    /// Plain text with two values (not escaped here).
    pub fn s2(&self, key: &str, n1: &str, v1: impl Display, n2: &str, v2: impl Display) -> String {
        fill(self.get(key), &[(n1, &v1.to_string()), (n2, &v2.to_string())], false)
    }

    /// Plain text with values (emails' text parts, subjects, messages rendered later).
    pub fn text(&self, key: &str, args: &[(&str, &str)]) -> String {
        fill(self.get(key), args, false)
    }

    /// The translation of an English message made in Rust, or the message itself.
    pub fn tr<'a>(&self, english: &'a str) -> std::borrow::Cow<'a, str> {
        match catalogues().by_english.get(english) {
            Some(key) if *self != Locale::En => self.get(key).into(),
            _ => english.into(),
        }
    }
}

/// Replaces each `{name}` with its value (escaped for HTML when `html`).
fn fill(template: &str, args: &[(&str, &str)], html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match args.iter().find(|(n, _)| *n == name) {
            Some((_, v)) if html => escape_into(&mut out, v),
            Some((_, v)) => out.push_str(v),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// HTML-escapes `s` as askama does (`& < > " '`).
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The best language for an `Accept-Language` header: the highest q-value among the languages
/// we have (by primary subtag, so `de-AT` is German; `*` is English), English when none.
pub fn negotiate(accept_language: Option<&str>) -> Locale {
    negotiate_or(accept_language, Locale::En)
}

/// As [`negotiate`], with the operator's `branding.default_language` for a browser that names
/// none of our languages (or `*`, or sends no header).
pub fn negotiate_or(accept_language: Option<&str>, default: Locale) -> Locale {
    let Some(header) = accept_language else { return default };
    let mut best: Option<(f32, Locale)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .next()
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)));
        let Some(q) = q.filter(|q| *q > 0.0) else { continue };
        let primary = tag.split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
        let locale = match primary.as_str() {
            "de" => Locale::De,
            "en" => Locale::En,
            "*" => default,
            _ => continue,
        };
        // The first of equal q-values wins (the order the browser lists them in).
        if best.is_none_or(|(b, _)| q > b) {
            best = Some((q, locale));
        }
    }
    best.map_or(default, |(_, l)| l)
}

tokio::task_local! {
    static CURRENT: Locale;
}

/// The language of the request being handled (English outside a request).
pub fn current() -> Locale {
    CURRENT.try_with(|l| *l).unwrap_or_default()
}

/// Runs `f` with `locale` as the current language (tests, jobs acting for a request).
pub async fn with_locale<F: std::future::Future>(locale: Locale, f: F) -> F::Output {
    CURRENT.scope(locale, f).await
}

/// Middleware: negotiates the request's language and handles the request in it. Pages vary by
/// `Accept-Language`, and say which language they are in.
pub async fn negotiate_layer(State(default): State<Locale>, req: Request, next: Next) -> Response {
    let header = req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let locale = negotiate_or(header, default);
    let mut res = CURRENT.scope(locale, next.run(req)).await;
    let is_html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        let h = res.headers_mut();
        h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(locale.tag()));
        h.append(header::VARY, HeaderValue::from_static("accept-language"));
    }
    res
}

mod page;
#[cfg(test)]
mod tests;
