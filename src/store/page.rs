//! Cursor pagination over tables keyed by ULIDs (which sort by creation time), with filters.
//!
//! SQL is assembled only from `&'static str` fragments written in this crate (table and column
//! names, filter clauses); every value a caller supplies (cursors, filter values, the page size)
//! is a bound parameter.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

use super::StoreResult;

/// A read listing one page of rows (admin API), for callers that do not name the connection.
pub trait PageRead<R>: FnOnce(&Connection, &PageRequest) -> StoreResult<Page<R>> + Send + 'static {}
impl<R, F: FnOnce(&Connection, &PageRequest) -> StoreResult<Page<R>> + Send + 'static> PageRead<R> for F {}

/// A read counting rows, as `PageRead`.
pub trait CountRead: FnOnce(&Connection) -> StoreResult<usize> + Send + 'static {}
impl<F: FnOnce(&Connection) -> StoreResult<usize> + Send + 'static> CountRead for F {}

/// A table's page of rows matching a filter `F` (`users::page`, …), as a plain function.
pub type PageFn<F, R> = fn(&Connection, &F, &PageRequest) -> StoreResult<Page<R>>;
/// A table's count of rows matching a filter `F` (`users::count`, …).
pub type CountFn<F> = fn(&Connection, &F) -> StoreResult<usize>;
/// A table's row by id (`users::email_by_id`, …).
pub type ByIdFn<R> = fn(&Connection, &str) -> StoreResult<Option<R>>;

/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The first `count` rows (after `after`), oldest first.
    Forward,
    /// The last `count` rows (before `before`), still returned oldest first.
    Backward,
}

/// Which page: rows strictly between the cursors (ids), `count` of them from one end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub before: Option<String>,
    pub direction: Direction,
    pub count: usize,
}

impl PageRequest {
    pub fn first(count: usize) -> Self {
        Self { after: None, before: None, direction: Direction::Forward, count }
    }

    pub fn last(count: usize) -> Self {
        Self { after: None, before: None, direction: Direction::Backward, count }
    }
}

/// One page of rows, oldest first, and whether rows matching the filter exist beyond each end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_previous: bool,
    pub has_next: bool,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_previous: self.has_previous,
            has_next: self.has_next,
        }
    }
}

/// A conjunction of conditions, each a fixed SQL fragment with `?` placeholders and its values.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    clauses: Vec<&'static str>,
    values: Vec<Value>,
}

impl Filter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `clause` (one `?` per value, in order).
    pub fn and(&mut self, clause: &'static str, values: impl IntoIterator<Item = Value>) -> &mut Self {
        self.clauses.push(clause);
        self.values.extend(values);
        self
    }

    /// Adds `clause` with one value when `value` is given.
    pub fn and_eq(&mut self, clause: &'static str, value: Option<impl Into<Value>>) -> &mut Self {
        if let Some(v) = value {
            self.and(clause, [v.into()]);
        }
        self
    }

    /// `if_true` or `if_false` (neither takes a value) when `flag` is given.
    pub fn and_flag(&mut self, flag: Option<bool>, if_true: &'static str, if_false: &'static str) -> &mut Self {
        match flag {
            Some(true) => self.and(if_true, []),
            Some(false) => self.and(if_false, []),
            None => self,
        }
    }

    /// ` WHERE (…) AND (…)` over the clauses and `extra` (empty when there are none).
    fn where_sql(&self, extra: &[String]) -> String {
        let all: Vec<&str> = self.clauses.iter().copied().chain(extra.iter().map(String::as_str)).collect();
        if all.is_empty() { String::new() } else { format!(" WHERE ({})", all.join(") AND (")) }
    }
}

/// A table that can be paged: its name, its ULID key column and the columns a row is read from.
pub struct Table {
    pub name: &'static str,
    pub key: &'static str,
    pub columns: &'static str,
}

/// How many rows match `filter`.
pub fn count(conn: &Connection, table: &Table, filter: &Filter) -> StoreResult<usize> {
    let sql = format!("SELECT COUNT(*) FROM {}{}", table.name, filter.where_sql(&[]));
    let n: i64 = conn.query_row(&sql, params_from_iter(filter.values.iter()), |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// The page `request` of the rows matching `filter`, ordered by key; `key_of` gives a row's key.
pub fn fetch<T>(
    conn: &Connection,
    table: &Table,
    filter: &Filter,
    request: &PageRequest,
    read: impl Fn(&Row) -> rusqlite::Result<T>,
    key_of: impl Fn(&T) -> &str,
) -> StoreResult<Page<T>> {
    let count = request.count.clamp(1, MAX_PAGE_SIZE);
    let key = table.key;
    let (after, before) = (request.after.clone(), request.before.clone());
    let mut extra = Vec::new();
    let mut values = filter.values.clone();
    if let Some(a) = &after {
        extra.push(format!("{key} > ?"));
        values.push(Value::Text(a.clone()));
    }
    if let Some(b) = &before {
        extra.push(format!("{key} < ?"));
        values.push(Value::Text(b.clone()));
    }
    let order = if request.direction == Direction::Forward { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {} FROM {}{} ORDER BY {key} {order} LIMIT ?",
        table.columns,
        table.name,
        filter.where_sql(&extra)
    );
    values.push(Value::Integer(count as i64 + 1));
    let mut stmt = conn.prepare(&sql)?;
    let mut items = stmt.query_map(params_from_iter(values.iter()), |r| read(r))?.collect::<Result<Vec<T>, _>>()?;
    let more = items.len() > count;
    items.truncate(count);
    let page = match request.direction {
        Direction::Forward => {
            let has_previous = match &after {
                Some(a) => exists(conn, table, filter, "<=", a)?,
                None => false,
            };
            Page { items, has_previous, has_next: more }
        }
        Direction::Backward => {
            items.reverse();
            let has_next = match &before {
                Some(b) => exists(conn, table, filter, ">=", b)?,
                None => false,
            };
            Page { items, has_previous: more, has_next }
        }
    };
    // Keys must come back in order: a reader that maps the wrong column would break the cursors.
    debug_assert!(page.items.windows(2).all(|w| key_of(&w[0]) < key_of(&w[1])));
    Ok(page)
}

fn exists(conn: &Connection, table: &Table, filter: &Filter, op: &'static str, cursor: &str) -> StoreResult<bool> {
    let cursor_clause = format!("{} {op} ?", table.key);
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {}{})", table.name, filter.where_sql(&[cursor_clause]));
    let mut values = filter.values.clone();
    values.push(Value::Text(cursor.to_string()));
    Ok(conn.query_row(&sql, params_from_iter(values.iter()), |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table { name: "t", key: "id", columns: "id, n" };

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL)").unwrap();
        for n in 0..25 {
            c.execute("INSERT INTO t (id, n) VALUES (?1, ?2)", rusqlite::params![format!("K{n:02}"), n]).unwrap();
        }
        c
    }

    fn page(c: &Connection, f: &Filter, r: &PageRequest) -> (Vec<i64>, bool, bool) {
        let p = fetch(c, &T, f, r, |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)), |x| x.0.as_str()).unwrap();
        (p.items.iter().map(|x| x.1).collect(), p.has_previous, p.has_next)
    }

    #[test]
    fn forward_and_backward_with_cursors() {
        let c = db();
        let none = Filter::new();
        assert_eq!(page(&c, &none, &PageRequest::first(10)), ((0..10).collect(), false, true));
        let after = PageRequest { after: Some("K09".into()), ..PageRequest::first(10) };
        assert_eq!(page(&c, &none, &after), ((10..20).collect(), true, true));
        let after = PageRequest { after: Some("K19".into()), ..PageRequest::first(10) };
        assert_eq!(page(&c, &none, &after), ((20..25).collect(), true, false));
        assert_eq!(page(&c, &none, &PageRequest::last(10)), ((15..25).collect(), true, false));
        let before = PageRequest { before: Some("K15".into()), ..PageRequest::last(10) };
        assert_eq!(page(&c, &none, &before), ((5..15).collect(), true, true));
        let before = PageRequest { before: Some("K05".into()), ..PageRequest::last(10) };
        assert_eq!(page(&c, &none, &before), ((0..5).collect(), false, true));
        let window = PageRequest { after: Some("K02".into()), before: Some("K06".into()), ..PageRequest::first(10) };
        assert_eq!(page(&c, &none, &window), ((3..6).collect(), true, false));
        assert_eq!(count(&c, &T, &none).unwrap(), 25);
    }

    #[test]
    fn filters_bind_their_values() {
        let c = db();
        let mut f = Filter::new();
        f.and("n % 2 = ?", [Value::Integer(0)]).and_eq("n >= ?", Some(10)).and_eq("n = ?", None::<i64>);
        assert_eq!(count(&c, &T, &f).unwrap(), 8);
        assert_eq!(page(&c, &f, &PageRequest::first(3)), (vec![10, 12, 14], false, true));
        let after = PageRequest { after: Some("K14".into()), ..PageRequest::first(3) };
        assert_eq!(page(&c, &f, &after), (vec![16, 18, 20], true, true));
        // A hostile value is data, not SQL.
        let mut g = Filter::new();
        g.and("id = ?", [Value::Text("K01' OR '1'='1".into())]);
        assert_eq!(count(&c, &T, &g).unwrap(), 0);
        let mut h = Filter::new();
        h.and_flag(Some(false), "n < 5", "n >= 5");
        assert_eq!(count(&c, &T, &h).unwrap(), 20);
    }
}
