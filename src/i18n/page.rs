//! What templates call on their `ctx`: the page context's language.

use std::borrow::Cow;
use std::fmt::Display;

use askama::filters::Safe;

use crate::http::pages::context::PageContext;

impl PageContext {
    /// Catalogue text, shown as it is (see [`super::Locale::t`]).
    pub fn t(&self, key: &str) -> Safe<&'static str> {
        self.locale.t(key)
    }
    /// Catalogue text with one HTML-escaped value.
    pub fn t1(&self, key: &str, name: &str, value: impl Display) -> Safe<String> {
        self.locale.t1(key, name, value)
    }
    /// Catalogue text with two HTML-escaped values.
    pub fn t2(&self, key: &str, n1: &str, v1: impl Display, n2: &str, v2: impl Display) -> Safe<String> {
        self.locale.t2(key, n1, v1, n2, v2)
    }
    /// Catalogue text with three HTML-escaped values.
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
        self.locale.t3(key, n1, v1, n2, v2, n3, v3)
    }
    /// Plain catalogue text, for macro arguments and attributes (escaped where it is shown).
    pub fn s(&self, key: &str) -> &'static str {
        self.locale.s(key)
    }
    /// Plain catalogue text with one value.
    pub fn s1(&self, key: &str, name: &str, value: impl Display) -> String {
        self.locale.s1(key, name, value)
    }
    /// A message made in Rust (English), translated when the catalogue has it.
    pub fn tr<'a>(&self, english: &'a str) -> Cow<'a, str> {
        self.locale.tr(english)
    }
}
