//! Where a key sits in a YAML file, so that `doctor` can say "config.yaml:12 (http.public_base)".
//!
//! A line scanner, not a parser: it follows block mappings by indentation, which is how
//! operators write config.yaml and homeserver.yaml. For a key written in flow style
//! (`http: {public_base: …}`) or not written at all it gives the line of the deepest parent found.

use std::path::{Path, PathBuf};

/// A YAML file an operator edits, with its text (empty when it cannot be read).
pub struct YamlFile {
    pub path: PathBuf,
    text: String,
}

impl YamlFile {
    pub fn read(path: &Path) -> YamlFile {
        YamlFile { path: path.to_path_buf(), text: std::fs::read_to_string(path).unwrap_or_default() }
    }

    /// "FILE:LINE (dotted.key)" when the key (or its parent) is found, "FILE (dotted.key)" otherwise.
    pub fn locate(&self, dotted: &str) -> String {
        match key_line(&self.text, dotted) {
            Some((line, true)) => format!("{}:{line} ({dotted})", self.path.display()),
            Some((line, false)) => format!("{}:{line} (add {dotted})", self.path.display()),
            None => format!("{} ({dotted})", self.path.display()),
        }
    }

    /// Whether the file sets the dotted key.
    pub fn has(&self, dotted: &str) -> bool {
        matches!(key_line(&self.text, dotted), Some((_, true)))
    }
}

/// The 1-based line of `dotted` (`a.b.c`) and whether it is the key itself (true) or only the
/// deepest parent found (false). None when not even the first component is there.
pub fn key_line(text: &str, dotted: &str) -> Option<(usize, bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found: Option<usize> = None;
    for component in dotted.split('.') {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if parent_indent.is_some_and(|p| indent <= p) {
                break;
            }
            let key = trimmed.trim_start_matches("- ");
            let matches = key.strip_prefix(component).is_some_and(|rest| rest.starts_with(':'))
                || key.strip_prefix(&format!("\"{component}\"")).is_some_and(|rest| rest.starts_with(':'));
            if matches {
                hit = Some((i, indent));
                break;
            }
        }
        match hit {
            Some((i, indent)) => {
                found = Some(i + 1);
                start = i + 1;
                parent_indent = Some(indent);
            }
            None => return found.map(|line| (line, false)),
        }
    }
    found.map(|line| (line, true))
}

#[cfg(test)]
mod tests {
    use super::key_line;

    const TEXT: &str = "# comment\nhttp:\n  listeners:\n    - name: web\n  public_base: \"https://a/\"\nmatrix:\n  secret: x\n  endpoint: y\nflow: {a: 1}\n";

    #[test]
    fn finds_nested_keys_by_indentation() {
        assert_eq!(key_line(TEXT, "http.public_base"), Some((5, true)));
        assert_eq!(key_line(TEXT, "matrix.endpoint"), Some((8, true)));
        assert_eq!(key_line(TEXT, "matrix"), Some((6, true)));
        // A key under another section is not taken for this one.
        assert_eq!(key_line(TEXT, "http.secret"), Some((2, false)));
        assert_eq!(key_line(TEXT, "flow.a"), Some((9, false)));
        assert_eq!(key_line(TEXT, "nothing.here"), None);
    }
}
