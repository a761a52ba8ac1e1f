//! The safe subset of MAS's (minijinja) templates used by `upstream_oauth2` claim imports and
//! authorization parameters — what MAS's documented provider templates use, and no more:
//!
//! - `{{ expr }}` output, `{% set name = expr %}`, `{% if %}…{% elif %}…{% else %}…{% endif %}`
//!   (nested), `{# comments #}`, and whitespace trimming with `{{-`, `-}}`, `{%-`, `-%}`;
//! - expressions: the context's variables and `set` names, string / integer / `true` / `false` /
//!   `none` literals, `a.b`, `a["b"]`, `a[0]` (negative counts from the end), parentheses,
//!   `~` (concatenation), `==`, `!=`, `not`, `and`, `or`, `is [not] defined|none`;
//! - filters: `default(x)` (`d`), `lower`, `trim`, `from_json`, `split(sep)`, `first`, `last`,
//!   `string`.
//!
//! Nothing else is evaluated: no calls, no loops, no arithmetic, no attribute of anything but JSON
//! data. A missing value renders as the empty string. Parsing checks every variable name, so a
//! typo is a config error at start, not an empty field at sign-in.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Default(Expr),
    Lower,
    Trim,
    FromJson,
    Split(Option<Expr>),
    First,
    Last,
    String,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Defined,
    None,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Lit(Lit),
    Var(String),
    Attr(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Filter(Box<Expr>, Box<Filter>),
    Concat(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>, bool),
    Is(Box<Expr>, Test, bool),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Output(Expr),
    Set(String, Expr),
    If { branches: Vec<(Expr, Vec<Node>)>, otherwise: Vec<Node> },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

// ---------------------------------------------------------------------------------------------
// Splitting the text into text, `{{ }}`, `{% %}` and `{# #}` pieces.

enum Piece<'a> {
    Text(String),
    Output(&'a str),
    Tag(&'a str),
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    loop {
        let next = ["{{", "{%", "{#"].iter().filter_map(|o| rest.find(o).map(|i| (i, *o))).min();
        let Some((start, open)) = next else {
            let t = if trim_next { rest.trim_start() } else { rest };
            if !t.is_empty() {
                out.push(Piece::Text(t.to_string()));
            }
            return Ok(out);
        };
        let close = match open {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        let mut inner_start = start + 2;
        let trim_before = rest[inner_start..].starts_with('-');
        if trim_before {
            inner_start += 1;
        }
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            out.push(Piece::Text(text.to_string()));
        }
        let end = rest[inner_start..].find(close).ok_or_else(|| format!("unclosed `{open}`"))? + inner_start;
        let mut inner = &rest[inner_start..end];
        trim_next = inner.ends_with('-');
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        match open {
            "{{" => out.push(Piece::Output(inner.trim())),
            "{%" => out.push(Piece::Tag(inner.trim())),
            _ => {}
        }
        rest = &rest[end + 2..];
    }
}

// ---------------------------------------------------------------------------------------------
// Expressions.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Int(i64),
    Punct(&'static str),
}

fn tokens(src: &str) -> Result<Vec<Tok>, String> {
    const PUNCT: &[&str] = &["==", "!=", ".", "[", "]", "(", ")", "|", ",", "~", "=", "-"];
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i;
            while let Some(&(j, c)) = chars.peek() {
                if !(c.is_ascii_alphanumeric() || c == '_') {
                    break;
                }
                end = j + c.len_utf8();
                chars.next();
            }
            out.push(Tok::Name(src[i..end].to_string()));
        } else if c.is_ascii_digit() {
            let mut end = i;
            while let Some(&(j, c)) = chars.peek() {
                if !c.is_ascii_digit() {
                    break;
                }
                end = j + 1;
                chars.next();
            }
            out.push(Tok::Int(src[i..end].parse().map_err(|_| format!("number too large in `{src}`"))?));
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("unclosed string in `{src}`")),
                    Some((_, q)) if q == c => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => s.push('\n'),
                        Some((_, 't')) => s.push('\t'),
                        Some((_, e)) => s.push(e),
                        None => return Err(format!("unclosed string in `{src}`")),
                    },
                    Some((_, ch)) => s.push(ch),
                }
            }
            out.push(Tok::Str(s));
        } else {
            let p = PUNCT
                .iter()
                .find(|p| src[i..].starts_with(**p))
                .ok_or_else(|| format!("unexpected `{c}` in `{src}`"))?;
            for _ in 0..p.len() {
                chars.next();
            }
            out.push(Tok::Punct(p));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    src: &'a str,
    known: &'a HashSet<String>,
    roots: &'a [&'a str],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }
    fn is_name(&self, n: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(m)) if m == n)
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        let yes = self.is_punct(p);
        self.pos += usize::from(yes);
        yes
    }
    fn eat_name(&mut self, n: &str) -> bool {
        let yes = self.is_name(n);
        self.pos += usize::from(yes);
        yes
    }
    fn expect_punct(&mut self, p: &str) -> Result<(), String> {
        if self.eat_punct(p) { Ok(()) } else { Err(format!("expected `{p}` in `{}`", self.src)) }
    }
    fn name(&mut self) -> Result<String, String> {
        match self.toks.get(self.pos) {
            Some(Tok::Name(n)) => {
                self.pos += 1;
                Ok(n.clone())
            }
            _ => Err(format!("expected a name in `{}`", self.src)),
        }
    }
    fn done(&self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(format!("unexpected {} in `{}`", describe(t), self.src)),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.eat_name("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.not()?;
        while self.eat_name("and") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }
    fn not(&mut self) -> Result<Expr, String> {
        if self.eat_name("not") { Ok(Expr::Not(Box::new(self.not()?))) } else { self.compare() }
    }
    fn compare(&mut self) -> Result<Expr, String> {
        let e = self.concat()?;
        if self.eat_punct("==") {
            return Ok(Expr::Eq(Box::new(e), Box::new(self.concat()?), true));
        }
        if self.eat_punct("!=") {
            return Ok(Expr::Eq(Box::new(e), Box::new(self.concat()?), false));
        }
        if self.eat_name("is") {
            let negated = self.eat_name("not");
            let test = match self.name()?.as_str() {
                "defined" => Test::Defined,
                "undefined" => return Ok(Expr::Is(Box::new(e), Test::Defined, !negated)),
                "none" => Test::None,
                other => return Err(format!("unsupported test `{other}` (supported: defined, undefined, none)")),
            };
            return Ok(Expr::Is(Box::new(e), test, negated));
        }
        Ok(e)
    }
    fn concat(&mut self) -> Result<Expr, String> {
        let mut e = self.filtered()?;
        while self.eat_punct("~") {
            e = Expr::Concat(Box::new(e), Box::new(self.filtered()?));
        }
        Ok(e)
    }
    fn filtered(&mut self) -> Result<Expr, String> {
        let mut e = self.postfix()?;
        while self.eat_punct("|") {
            let name = self.name()?;
            let mut args = Vec::new();
            if self.eat_punct("(") && !self.eat_punct(")") {
                loop {
                    args.push(self.expr()?);
                    if self.eat_punct(")") {
                        break;
                    }
                    self.expect_punct(",")?;
                }
            }
            let arity = |n: usize, f: Filter| {
                if args.len() <= n { Ok(f) } else { Err(format!("too many arguments to `{name}`")) }
            };
            let filter = match name.as_str() {
                "default" | "d" => match args.first() {
                    Some(a) => Filter::Default(a.clone()),
                    None => Filter::Default(Expr::Lit(Lit::Str(String::new()))),
                },
                "lower" => arity(0, Filter::Lower)?,
                "trim" => arity(0, Filter::Trim)?,
                "from_json" => arity(0, Filter::FromJson)?,
                "split" => arity(1, Filter::Split(args.first().cloned()))?,
                "first" => arity(0, Filter::First)?,
                "last" => arity(0, Filter::Last)?,
                "string" => arity(0, Filter::String)?,
                _ => {
                    return Err(format!(
                        "unsupported filter `{name}` (supported: default, lower, trim, from_json, split, first, last, string)"
                    ));
                }
            };
            e = Expr::Filter(Box::new(e), Box::new(filter));
        }
        Ok(e)
    }
    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat_punct(".") {
                let key = match self.toks.get(self.pos) {
                    Some(Tok::Name(n)) => n.clone(),
                    Some(Tok::Int(i)) => i.to_string(),
                    _ => return Err(format!("expected a name after `.` in `{}`", self.src)),
                };
                self.pos += 1;
                e = Expr::Attr(Box::new(e), key);
            } else if self.eat_punct("[") {
                let index = self.expr()?;
                self.expect_punct("]")?;
                e = Expr::Index(Box::new(e), Box::new(index));
            } else if self.is_punct("(") {
                return Err(format!("calls are not supported: `{}`", self.src));
            } else {
                return Ok(e);
            }
        }
    }
    fn primary(&mut self) -> Result<Expr, String> {
        let tok = self.toks.get(self.pos).cloned().ok_or_else(|| format!("incomplete expression `{}`", self.src))?;
        self.pos += 1;
        match tok {
            Tok::Str(s) => Ok(Expr::Lit(Lit::Str(s))),
            Tok::Int(i) => Ok(Expr::Lit(Lit::Int(i))),
            Tok::Punct("-") => match self.toks.get(self.pos) {
                Some(Tok::Int(i)) => {
                    let i = -*i;
                    self.pos += 1;
                    Ok(Expr::Lit(Lit::Int(i)))
                }
                _ => Err(format!("arithmetic is not supported: `{}`", self.src)),
            },
            Tok::Punct("(") => {
                let e = self.expr()?;
                self.expect_punct(")")?;
                Ok(e)
            }
            Tok::Name(n) => match n.as_str() {
                "true" | "True" => Ok(Expr::Lit(Lit::Bool(true))),
                "false" | "False" => Ok(Expr::Lit(Lit::Bool(false))),
                "none" | "None" => Ok(Expr::Lit(Lit::None)),
                _ if self.roots.contains(&n.as_str()) || self.known.contains(&n) => Ok(Expr::Var(n)),
                _ => Err(format!("unknown variable `{n}` (expected one of: {})", self.roots.join(", "))),
            },
            other => Err(format!("unexpected {} in `{}`", describe(&other), self.src)),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Name(n) => format!("`{n}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Int(i) => format!("`{i}`"),
        Tok::Punct(p) => format!("`{p}`"),
    }
}

fn parse_expr(src: &str, known: &HashSet<String>, roots: &[&str]) -> Result<Expr, String> {
    let mut p = Parser { toks: tokens(src)?, pos: 0, src, known, roots };
    let e = p.expr()?;
    p.done()?;
    Ok(e)
}

// ---------------------------------------------------------------------------------------------
// Blocks.

/// An open `{% if %}`: the finished branches, the condition and body being filled, and whether
/// `{% else %}` was seen (then the body being filled is the `else` body).
struct OpenIf {
    branches: Vec<(Expr, Vec<Node>)>,
    current: Option<Expr>,
    body: Vec<Node>,
}

impl Template {
    /// Parses `text`; `roots` are the variables the context provides.
    pub fn parse(text: &str, roots: &[&str]) -> Result<Self, String> {
        let mut known = HashSet::new();
        let mut top: Vec<Node> = Vec::new();
        let mut stack: Vec<OpenIf> = Vec::new();
        fn push(top: &mut Vec<Node>, stack: &mut [OpenIf], node: Node) {
            match stack.last_mut() {
                Some(open) => open.body.push(node),
                None => top.push(node),
            }
        }
        for piece in pieces(text)? {
            match piece {
                Piece::Text(t) => push(&mut top, &mut stack, Node::Text(t)),
                Piece::Output(src) => {
                    let e = parse_expr(src, &known, roots)?;
                    push(&mut top, &mut stack, Node::Output(e));
                }
                Piece::Tag(src) => {
                    let (word, rest) = src.split_once(char::is_whitespace).unwrap_or((src, ""));
                    match word {
                        "set" => {
                            let (name, value) = rest
                                .split_once('=')
                                .filter(|(_, v)| !v.starts_with('='))
                                .ok_or_else(|| format!("expected `{{% set name = value %}}`, got `{{% {src} %}}`"))?;
                            let name = name.trim();
                            if name.is_empty()
                                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                                || name.starts_with(|c: char| c.is_ascii_digit())
                            {
                                return Err(format!("`{name}` cannot be set"));
                            }
                            if roots.contains(&name) {
                                return Err(format!("`{name}` is a variable of the context and cannot be set"));
                            }
                            let e = parse_expr(value, &known, roots)?;
                            known.insert(name.to_string());
                            push(&mut top, &mut stack, Node::Set(name.to_string(), e));
                        }
                        "if" => {
                            let cond = parse_expr(rest, &known, roots)?;
                            stack.push(OpenIf { branches: Vec::new(), current: Some(cond), body: Vec::new() });
                        }
                        "elif" | "else" => {
                            let open =
                                stack.last_mut().ok_or_else(|| format!("`{{% {word} %}}` without `{{% if %}}`"))?;
                            let cond =
                                open.current.take().ok_or_else(|| format!("`{{% {word} %}}` after `{{% else %}}`"))?;
                            let body = std::mem::take(&mut open.body);
                            open.branches.push((cond, body));
                            if word == "elif" {
                                open.current = Some(parse_expr(rest, &known, roots)?);
                            } else if !rest.trim().is_empty() {
                                return Err(format!("unexpected `{rest}` after `else`"));
                            }
                        }
                        "endif" => {
                            let mut open = stack.pop().ok_or("`{% endif %}` without `{% if %}`")?;
                            let otherwise = match open.current.take() {
                                Some(cond) => {
                                    open.branches.push((cond, std::mem::take(&mut open.body)));
                                    Vec::new()
                                }
                                None => open.body,
                            };
                            push(&mut top, &mut stack, Node::If { branches: open.branches, otherwise });
                        }
                        _ => {
                            return Err(format!(
                                "unsupported tag `{{% {src} %}}` (supported: set, if, elif, else, endif)"
                            ));
                        }
                    }
                }
            }
        }
        if !stack.is_empty() {
            return Err("`{% if %}` without `{% endif %}`".into());
        }
        Ok(Self { nodes: top })
    }

    /// Renders against a JSON object whose top-level keys are the roots.
    pub fn render(&self, context: &Value) -> String {
        let mut out = String::new();
        let mut scope = Scope { context, vars: HashMap::new() };
        scope.render(&self.nodes, &mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation. `None` is "undefined".

struct Scope<'a> {
    context: &'a Value,
    vars: HashMap<String, Option<Value>>,
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

fn to_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn index(v: &Value, key: &Value) -> Option<Value> {
    match (v, key) {
        (Value::Object(o), Value::String(k)) => o.get(k).cloned(),
        (Value::Array(a), Value::Number(n)) => {
            let i = n.as_i64()?;
            let i = if i < 0 { a.len().checked_sub(i.unsigned_abs() as usize)? } else { i as usize };
            a.get(i).cloned()
        }
        (Value::String(s), Value::Number(n)) => {
            let chars: Vec<char> = s.chars().collect();
            let i = n.as_i64()?;
            let i = if i < 0 { chars.len().checked_sub(i.unsigned_abs() as usize)? } else { i as usize };
            chars.get(i).map(|c| Value::String(c.to_string()))
        }
        _ => None,
    }
}

impl Scope<'_> {
    fn render(&mut self, nodes: &[Node], out: &mut String) {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Output(e) => out.push_str(&to_text(self.eval(e).as_ref())),
                Node::Set(name, e) => {
                    let v = self.eval(e);
                    self.vars.insert(name.clone(), v);
                }
                Node::If { branches, otherwise } => {
                    let body = branches.iter().find(|(c, _)| truthy(self.eval(c).as_ref())).map(|(_, b)| b);
                    self.render(body.unwrap_or(otherwise), out);
                }
            }
        }
    }

    fn eval(&self, e: &Expr) -> Option<Value> {
        match e {
            Expr::Lit(Lit::Str(s)) => Some(Value::String(s.clone())),
            Expr::Lit(Lit::Int(i)) => Some(Value::from(*i)),
            Expr::Lit(Lit::Bool(b)) => Some(Value::Bool(*b)),
            Expr::Lit(Lit::None) => Some(Value::Null),
            Expr::Var(n) => match self.vars.get(n) {
                Some(v) => v.clone(),
                None => self.context.get(n).cloned(),
            },
            Expr::Attr(base, key) => {
                let base = self.eval(base)?;
                base.get(key).cloned().or_else(|| key.parse::<i64>().ok().and_then(|i| index(&base, &Value::from(i))))
            }
            Expr::Index(base, key) => index(&self.eval(base)?, &self.eval(key)?),
            Expr::Filter(base, f) => self.filter(self.eval(base), f),
            Expr::Concat(a, b) => Some(Value::String(to_text(self.eval(a).as_ref()) + &to_text(self.eval(b).as_ref()))),
            Expr::Eq(a, b, want) => Some(Value::Bool((self.eval(a) == self.eval(b)) == *want)),
            Expr::Is(a, test, negated) => {
                let v = self.eval(a);
                let holds = match test {
                    Test::Defined => v.is_some(),
                    Test::None => v == Some(Value::Null),
                };
                Some(Value::Bool(holds != *negated))
            }
            Expr::Not(a) => Some(Value::Bool(!truthy(self.eval(a).as_ref()))),
            Expr::And(a, b) => {
                let a = self.eval(a);
                if truthy(a.as_ref()) { self.eval(b) } else { a }
            }
            Expr::Or(a, b) => {
                let a = self.eval(a);
                if truthy(a.as_ref()) { a } else { self.eval(b) }
            }
        }
    }

    fn filter(&self, v: Option<Value>, f: &Filter) -> Option<Value> {
        let text = |v: &Option<Value>| to_text(v.as_ref());
        match f {
            // Also for an empty string: an empty claim is as good as none here.
            Filter::Default(d) => match &v {
                None | Some(Value::Null) => self.eval(d),
                Some(Value::String(s)) if s.is_empty() => self.eval(d),
                _ => v,
            },
            Filter::Lower => v.as_ref().map(|_| Value::String(text(&v).to_lowercase())),
            Filter::Trim => v.as_ref().map(|_| Value::String(text(&v).trim().to_string())),
            Filter::String => v.as_ref().map(|_| Value::String(text(&v))),
            Filter::FromJson => match v? {
                Value::String(s) => serde_json::from_str(&s).ok(),
                other => Some(other),
            },
            Filter::Split(sep) => {
                let s = text(&v);
                v?;
                let parts: Vec<Value> = match sep.as_ref().map(|e| to_text(self.eval(e).as_ref())) {
                    Some(sep) if !sep.is_empty() => s.split(sep.as_str()).map(|p| Value::String(p.into())).collect(),
                    _ => s.split_whitespace().map(|p| Value::String(p.into())).collect(),
                };
                Some(Value::Array(parts))
            }
            Filter::First => match v? {
                Value::Array(a) => a.first().cloned(),
                Value::String(s) => s.chars().next().map(|c| Value::String(c.to_string())),
                _ => None,
            },
            Filter::Last => match v? {
                Value::Array(a) => a.last().cloned(),
                Value::String(s) => s.chars().last().map(|c| Value::String(c.to_string())),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOTS: &[&str] =
        &["user", "id_token_claims", "userinfo_claims", "extra_callback_parameters", "params", "logged_out"];

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
            "{{ user.__class__.__init__() }}",
            "{% set user = 1 %}",
            "{{ later }}{% set later = 1 %}",
            "{% if user.a %}{% else %}{% else %}{% endif %}",
            "{{ user.a + 1 }}",
            "{{ 'x' | split('a', 'b') }}",
            "{% include 'x' %}",
        ] {
            assert!(Template::parse(bad, ROOTS).is_err(), "{bad}");
        }
    }

    /// MAS's documented Sign in with Apple templates (docs/setup/sso.md), verbatim as YAML block
    /// scalars give them, over Apple's `user` form field.
    #[test]
    fn mas_documented_apple_template_renders_the_name_from_the_user_field() {
        let template = "{%- set u = extra_callback_parameters[\"user\"] | from_json -%}\n{{- u.name.firstName }} {{ u.name.lastName -}}\n";
        let user = r#"{"name":{"firstName":"Ada","lastName":"Lovelace"},"email":"ada@privaterelay.appleid.com"}"#;
        let ctx = json!({"user": {}, "extra_callback_parameters": {"user": user}});
        let t = Template::parse(template, ROOTS).unwrap();
        assert_eq!(t.render(&ctx), "Ada Lovelace");
        // Later sign-ins: Apple sends no `user`; the template renders (almost) nothing, not an error.
        assert_eq!(t.render(&json!({"extra_callback_parameters": {}})).trim(), "");
    }

    #[test]
    fn mas_documented_azure_template_splits_and_subscripts() {
        let t = Template::parse("{{ (user.preferred_username | split('@'))[0] }}", ROOTS).unwrap();
        assert_eq!(t.render(&json!({"user": {"preferred_username": "ada@example.org"}})), "ada");
        assert_eq!(t.render(&json!({"user": {}})), "");
    }

    #[test]
    fn whitespace_control_trims_only_where_asked() {
        let ctx = json!({"user": {"a": "A"}});
        let t = |s| Template::parse(s, ROOTS).unwrap().render(&ctx);
        assert_eq!(t("  {{- user.a -}}  !"), "A!");
        assert_eq!(t("  {{ user.a }}  !"), "  A  !");
        assert_eq!(t("x\n  {%- if user.a -%}\n  y\n  {%- endif %} z"), "xy z");
        assert_eq!(t("{# a comment #}{{ user.a }}"), "A");
    }

    #[test]
    fn blocks_nest_and_branch() {
        let ctx = json!({"user": {"a": "A", "n": 2, "list": ["p", "q"]}});
        let t = |s| Template::parse(s, ROOTS).unwrap().render(&ctx);
        assert_eq!(t("{% if user.b %}b{% elif user.a == 'A' %}a{% else %}c{% endif %}"), "a");
        assert_eq!(t("{% if not user.b %}{% if user.a %}in{% endif %}{% endif %}"), "in");
        assert_eq!(t("{% if user.b is defined %}d{% else %}u{% endif %}"), "u");
        assert_eq!(t("{% set x = user.a ~ '-' ~ user.n %}{{ x }}"), "A-2");
        assert_eq!(t("{{ user.list[-1] }}{{ user.list | first }}{{ user['list'].1 }}"), "qpq");
        assert_eq!(t("{{ user.b or user.a }}{{ user.a and user.n }}"), "A2");
        assert_eq!(
            t("{{ '  x ' | trim }}{{ user.missing | from_json }}{{ '{\"k\":1}' | from_json | string }}"),
            "x{\"k\":1}"
        );
    }
}
