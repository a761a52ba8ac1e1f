//! What admin API requests carry besides the path: query parameters (filters, MAS's cursor
//! pagination `page[first|last|after|before]` and `count`), JSON bodies, RFC 3339 times.

use axum::body::Bytes;
use serde::de::DeserializeOwned;

use super::AdminError;
use crate::store::page::{Direction, MAX_PAGE_SIZE, PageRequest};

/// Rows per page when the request does not say.
pub const DEFAULT_PAGE_SIZE: usize = 10;

/// The query string, taken apart one known parameter at a time; `finish` refuses the rest.
/// Filters taken are remembered (in the order taken) for the pagination links.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
    filters: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Self, AdminError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(AdminError::bad_request(format!("query parameter {k} is given twice")));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self { pairs, filters: Vec::new() })
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(i).1)
    }

    /// A filter value as given (empty values are refused).
    pub fn filter(&mut self, key: &str) -> Result<Option<String>, AdminError> {
        let Some(v) = self.take(key) else { return Ok(None) };
        if v.is_empty() {
            return Err(AdminError::bad_request(format!("{key} must not be empty")));
        }
        self.filters.push((key.to_string(), v.clone()));
        Ok(Some(v))
    }

    /// A `true`/`false` filter.
    pub fn bool_filter(&mut self, key: &str) -> Result<Option<bool>, AdminError> {
        self.choice(key, &[("true", true), ("false", false)])
    }

    /// A filter whose value is one of `choices`.
    pub fn choice<T: Copy>(&mut self, key: &str, choices: &[(&str, T)]) -> Result<Option<T>, AdminError> {
        let Some(v) = self.filter(key)? else { return Ok(None) };
        match choices.iter().find(|(name, _)| *name == v) {
            Some((_, value)) => Ok(Some(*value)),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                Err(AdminError::bad_request(format!("{key} must be one of {}", names.join(", "))))
            }
        }
    }

    /// A filter naming a resource by its ULID (returned in canonical form).
    pub fn id_filter(&mut self, key: &str) -> Result<Option<String>, AdminError> {
        let Some(v) = self.filter(key)? else { return Ok(None) };
        let id = parse_ulid(&v).ok_or_else(|| AdminError::bad_request(format!("{key} must be a ULID")))?;
        if let Some(last) = self.filters.last_mut() {
            last.1 = id.clone();
        }
        Ok(Some(id))
    }

    /// `page[…]` and `count`.
    pub fn pagination(&mut self) -> Result<Pagination, AdminError> {
        let size = |key: &str, v: Option<String>| -> Result<Option<usize>, AdminError> {
            let Some(v) = v else { return Ok(None) };
            match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(Some(n)),
                _ => Err(AdminError::bad_request(format!("{key} must be a number from 1 to {MAX_PAGE_SIZE}"))),
            }
        };
        let cursor = |key: &str, v: Option<String>| -> Result<Option<String>, AdminError> {
            v.map(|v| parse_ulid(&v).ok_or_else(|| AdminError::bad_request(format!("{key} must be a ULID"))))
                .transpose()
        };
        let first = size("page[first]", self.take("page[first]"))?;
        let last = size("page[last]", self.take("page[last]"))?;
        let after = cursor("page[after]", self.take("page[after]"))?;
        let before = cursor("page[before]", self.take("page[before]"))?;
        let (direction, count) = match (first, last) {
            (Some(_), Some(_)) => {
                return Err(AdminError::bad_request("cannot give both page[first] and page[last]"));
            }
            (None, None) => (Direction::Forward, DEFAULT_PAGE_SIZE),
            (Some(n), None) => (Direction::Forward, n),
            (None, Some(n)) => (Direction::Backward, n),
        };
        let include_count = match self.take("count").as_deref() {
            None | Some("true") => IncludeCount::True,
            Some("false") => IncludeCount::False,
            Some("only") => IncludeCount::Only,
            Some(_) => return Err(AdminError::bad_request("count must be true, false or only")),
        };
        Ok(Pagination { request: PageRequest { after, before, direction, count }, include_count })
    }

    /// Refuses parameters nobody took; returns the filters taken, for the links.
    pub fn finish(self) -> Result<Vec<(String, String)>, AdminError> {
        match self.pairs.first() {
            Some((k, _)) => Err(AdminError::bad_request(format!("unknown query parameter {k}"))),
            None => Ok(self.filters),
        }
    }
}

/// MAS's `count` parameter: with the page, without it, or the count alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeCount {
    True,
    False,
    Only,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pagination {
    pub request: PageRequest,
    pub include_count: IncludeCount,
}

/// `path?filters&count&page…` (MAS's link shape; values are percent-encoded).
pub fn link(
    path: &str,
    filters: &[(String, String)],
    include_count: IncludeCount,
    page: Option<&PageRequest>,
) -> String {
    let mut parts: Vec<String> = filters.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    match include_count {
        IncludeCount::True => {}
        IncludeCount::False => parts.push("count=false".into()),
        IncludeCount::Only => parts.push("count=only".into()),
    }
    if let Some(p) = page {
        if let Some(b) = &p.before {
            parts.push(format!("page[before]={b}"));
        }
        if let Some(a) = &p.after {
            parts.push(format!("page[after]={a}"));
        }
        parts.push(match p.direction {
            Direction::Forward => format!("page[first]={}", p.count),
            Direction::Backward => format!("page[last]={}", p.count),
        });
    }
    if parts.is_empty() { path.to_string() } else { format!("{path}?{}", parts.join("&")) }
}

fn encode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// A ULID in its canonical (upper-case) form, if `s` is one.
pub fn parse_ulid(s: &str) -> Option<String> {
    ulid::Ulid::from_string(s).ok().map(|u| u.to_string())
}

/// The body of the actions that take none: empty, or `{}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// A JSON request body; unknown fields and malformed JSON are a 400 naming the problem.
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    // Only objects: serde would also read a struct from an array of its fields in order.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AdminError::bad_request("the request body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| AdminError::bad_request(format!("invalid request body: {e}")))
}

/// A JSON body that may be left out (an empty body reads as `T::default()`).
pub fn optional_json_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { json_body(body) }
}

/// `2024-02-29T12:34:56Z`.
pub fn rfc3339(t: i64) -> String {
    let (year, month, day) = crate::clock::civil_from_days(t.div_euclid(86_400));
    let secs = t.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Unix seconds of an RFC 3339 date-time (`2024-02-29T12:34:56Z`, `…56.789+02:00`); fractions of
/// a second are dropped.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = s.get(19..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let (h, m) = (num_of(rest.get(1..3)?)?, num_of(rest.get(4..6)?)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if rb[0] == b'-' { -o } else { o }
        }
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset)
}

fn num_of(s: &str) -> Option<i64> {
    if s.bytes().all(|c| c.is_ascii_digit()) { s.parse().ok() } else { None }
}

/// (year, month, day) → days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Query {
        Query::parse(Some(raw)).unwrap()
    }

    #[test]
    fn pagination_defaults_and_limits() {
        let p = q("").pagination().unwrap();
        assert_eq!(p.request, PageRequest::first(DEFAULT_PAGE_SIZE));
        assert_eq!(p.include_count, IncludeCount::True);
        let p = q("page[last]=5&count=only").pagination().unwrap();
        assert_eq!(p.request, PageRequest::last(5));
        assert_eq!(p.include_count, IncludeCount::Only);
        let p = q("page%5Bfirst%5D=1000&count=false").pagination().unwrap();
        assert_eq!((p.request.count, p.include_count), (1000, IncludeCount::False));
        for bad in ["page[first]=0", "page[first]=1001", "page[first]=x", "page[last]=-1", "count=maybe"] {
            assert!(q(bad).pagination().is_err(), "{bad}");
        }
        assert!(q("page[first]=1&page[last]=1").pagination().is_err(), "first and last");
        assert!(Query::parse(Some("page[first]=1&page[first]=2")).is_err(), "twice");
    }

    #[test]
    fn pagination_cursors_are_ulids() {
        let id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        let p = q(&format!("page[after]={}&page[before]={id}", id.to_lowercase())).pagination().unwrap();
        assert_eq!(p.request.after.as_deref(), Some(id), "canonical upper case");
        assert_eq!(p.request.before.as_deref(), Some(id));
        assert!(q("page[after]=nope").pagination().is_err());
        assert!(q("page[before]=' OR 1=1 --").pagination().is_err());
    }

    #[test]
    fn filters_and_leftovers() {
        let mut query = q("filter[admin]=true&filter[status]=locked&filter[search]=a%20b&page[first]=2");
        assert_eq!(query.bool_filter("filter[admin]").unwrap(), Some(true));
        assert_eq!(query.choice("filter[status]", &[("active", 0), ("locked", 1)]).unwrap(), Some(1));
        assert_eq!(query.filter("filter[search]").unwrap().as_deref(), Some("a b"));
        let p = query.pagination().unwrap();
        let filters = query.finish().unwrap();
        assert_eq!(
            link("/api/admin/v1/users", &filters, p.include_count, Some(&p.request)),
            "/api/admin/v1/users?filter[admin]=true&filter[status]=locked&filter[search]=a+b&page[first]=2"
        );
        assert!(q("filter[admin]=yes").bool_filter("filter[admin]").is_err());
        assert!(q("filter[admin]=").bool_filter("filter[admin]").is_err());
        assert!(q("filter[user]=x").id_filter("filter[user]").is_err());
        assert!(q("filter[bogus]=1").finish().is_err());
    }

    #[test]
    fn links() {
        let after = PageRequest { after: Some("A".into()), ..PageRequest::first(3) };
        assert_eq!(link("/x", &[], IncludeCount::False, Some(&after)), "/x?count=false&page[after]=A&page[first]=3");
        assert_eq!(link("/x", &[], IncludeCount::Only, None), "/x?count=only");
        assert_eq!(link("/x", &[], IncludeCount::True, None), "/x");
    }

    #[test]
    fn bodies() {
        #[derive(serde::Deserialize, Default, Debug)]
        #[serde(deny_unknown_fields)]
        struct B {
            #[serde(default)]
            a: bool,
        }
        assert!(json_body::<B>(&Bytes::from_static(b"{\"a\":true}")).unwrap().a);
        assert!(json_body::<B>(&Bytes::from_static(b"")).is_err());
        assert!(json_body::<B>(&Bytes::from_static(b"{\"b\":1}")).is_err());
        assert!(json_body::<B>(&Bytes::from_static(b"[1")).is_err());
        assert!(json_body::<B>(&Bytes::from_static(b"[true]")).is_err(), "a struct from an array");
        assert!(!optional_json_body::<B>(&Bytes::from_static(b" ")).unwrap().a);
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56Z"), Some(1_709_210_096));
        assert_eq!(parse_rfc3339("2024-02-29T14:34:56.123+02:00"), Some(1_709_210_096));
        assert_eq!(parse_rfc3339("2024-02-29t07:34:56-05:00"), Some(1_709_210_096));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for bad in ["", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z"]
        {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for bad in ["2024-01-01", "2024-01-01T00:00:00", "2024-01-01T00:00:00+0200", "2024-01-01T00:00:00.Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for t in [0, 1, 86_399, 951_782_400, 4_102_444_800, -86_400] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{t}");
        }
    }
}
