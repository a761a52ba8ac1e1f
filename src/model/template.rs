//! The small, safe subset of MAS's (minijinja) claim templates used by `upstream_oauth2`:
//! literal text, `{{ a.b.c }}` lookups (with an optional `| default("x")`, `| lower`, `| trim`),
//! and `{% if a.b %}…{% endif %}` blocks (no else, no nesting). Nothing else is evaluated: no
//! calls, no loops, no arithmetic. A missing value renders as the empty string.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Default(String),
    Lower,
    Trim,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Lookup { path: Vec<String>, filters: Vec<Filter> },
    If { path: Vec<String>, body: Vec<Part> },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

fn parse_path(expr: &str, roots: &[&str]) -> Result<Vec<String>, String> {
    let path: Vec<String> = expr.split('.').map(|s| s.trim().to_string()).collect();
    for seg in &path {
        if seg.is_empty() || !seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("`{expr}` is not a plain lookup such as `user.preferred_username`"));
        }
    }
    if !roots.contains(&path[0].as_str()) {
        return Err(format!("unknown variable `{}` (expected one of: {})", path[0], roots.join(", ")));
    }
    Ok(path)
}

fn parse_filter(f: &str) -> Result<Filter, String> {
    let f = f.trim();
    match f {
        "lower" => return Ok(Filter::Lower),
        "trim" => return Ok(Filter::Trim),
        _ => {}
    }
    if let Some(arg) = f.strip_prefix("default(").and_then(|r| r.strip_suffix(')')) {
        let arg = arg.trim();
        for q in ['"', '\''] {
            if let Some(s) = arg.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
                return Ok(Filter::Default(s.to_string()));
            }
        }
    }
    Err(format!("unsupported filter `{f}` (supported: default(\"…\"), lower, trim)"))
}

impl Template {
    /// Parses `text`; `roots` are the variables the context provides.
    pub fn parse(text: &str, roots: &[&str]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut current_if: Option<(Vec<String>, Vec<Part>)> = None;
        let mut rest = text;
        while !rest.is_empty() {
            let next_expr = rest.find("{{");
            let next_tag = rest.find("{%");
            let (start, is_tag) = match (next_expr, next_tag) {
                (None, None) => {
                    push(&mut parts, &mut current_if, Part::Text(rest.to_string()));
                    break;
                }
                (Some(e), Some(t)) if t < e => (t, true),
                (Some(e), _) => (e, false),
                (None, Some(t)) => (t, true),
            };
            if start > 0 {
                push(&mut parts, &mut current_if, Part::Text(rest[..start].to_string()));
            }
            let close = if is_tag { "%}" } else { "}}" };
            let body_start = start + 2;
            let end =
                rest[body_start..].find(close).ok_or_else(|| format!("unclosed `{}`", &rest[start..start + 2]))?;
            let inner = rest[body_start..body_start + end].trim().trim_matches('-').trim();
            rest = &rest[body_start + end + 2..];
            if is_tag {
                if let Some(cond) = inner.strip_prefix("if ") {
                    if current_if.is_some() {
                        return Err("nested `{% if %}` is not supported".into());
                    }
                    current_if = Some((parse_path(cond.trim(), roots)?, Vec::new()));
                } else if inner == "endif" {
                    let (path, body) = current_if.take().ok_or("`{% endif %}` without `{% if %}`")?;
                    parts.push(Part::If { path, body });
                } else {
                    return Err(format!("unsupported tag `{{% {inner} %}}` (only `if` / `endif`)"));
                }
            } else {
                let mut pieces = inner.split('|');
                let path = parse_path(pieces.next().unwrap_or_default().trim(), roots)?;
                let filters = pieces.map(parse_filter).collect::<Result<_, _>>()?;
                push(&mut parts, &mut current_if, Part::Lookup { path, filters });
            }
        }
        if current_if.is_some() {
            return Err("`{% if %}` without `{% endif %}`".into());
        }
        Ok(Self { parts })
    }

    /// Renders against a JSON object whose top-level keys are the roots.
    pub fn render(&self, context: &Value) -> String {
        let mut out = String::new();
        render_parts(&self.parts, context, &mut out);
        out
    }
}

fn push(parts: &mut Vec<Part>, current_if: &mut Option<(Vec<String>, Vec<Part>)>, part: Part) {
    match current_if {
        Some((_, body)) => body.push(part),
        None => parts.push(part),
    }
}

fn lookup<'a>(context: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(context, |v, seg| v.get(seg.as_str()))
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn render_parts(parts: &[Part], context: &Value, out: &mut String) {
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Lookup { path, filters } => {
                let mut s = match lookup(context, path) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                for f in filters {
                    match f {
                        Filter::Default(d) if s.is_empty() => s = d.clone(),
                        Filter::Default(_) => {}
                        Filter::Lower => s = s.to_lowercase(),
                        Filter::Trim => s = s.trim().to_string(),
                    }
                }
                out.push_str(&s);
            }
            Part::If { path, body } => {
                if truthy(lookup(context, path)) {
                    render_parts(body, context, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOTS: &[&str] = &["user", "id_token_claims", "userinfo_claims", "params", "logged_out"];

    #[test]
    fn renders_lookups_filters_and_ifs() {
        let ctx = json!({"user": {"preferred_username": "Alice", "id": 7}, "logged_out": true, "params": {}});
        let t = |s| Template::parse(s, ROOTS).unwrap().render(&ctx);
        assert_eq!(t("{{ user.preferred_username }}"), "Alice");
        assert_eq!(t("@{{user.preferred_username|lower}}!"), "@alice!");
        assert_eq!(t("{{ user.id }}"), "7");
        assert_eq!(t("{{ user.missing }}"), "");
        assert_eq!(t("{{ user.missing | default('x') }}"), "x");
        assert_eq!(t("{% if logged_out %}login{% endif %}"), "login");
        assert_eq!(t("{% if params.login_hint %}x{% endif %}"), "");
    }

    #[test]
    fn refuses_what_it_cannot_evaluate_safely() {
        for bad in [
            "{{ user.name",
            "{{ os.system }}",
            "{{ user.name() }}",
            "{{ user.name | upper }}",
            "{% for x in user %}{% endfor %}",
            "{% if user.a %}",
            "{% endif %}",
        ] {
            assert!(Template::parse(bad, ROOTS).is_err(), "{bad}");
        }
    }
}
