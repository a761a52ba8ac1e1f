//! `oauth2_clients`.

use rusqlite::{Connection, Row, params};

use super::page::{self, Filter, Page, PageRequest, Table};
use super::{StoreError, StoreResult, opt};
use crate::model::Client;
use crate::model::client::ClientMetadata;

fn client_from_row(r: &Row) -> rusqlite::Result<(String, String, Option<String>, bool, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_client(row: (String, String, Option<String>, bool, i64)) -> StoreResult<Client> {
    let (id, metadata, encrypted_secret, is_static, created_at) = row;
    let metadata: ClientMetadata =
        serde_json::from_str(&metadata).map_err(|e| StoreError::Corrupt(format!("client {id} metadata: {e}")))?;
    Ok(Client { id, metadata, encrypted_secret, is_static, created_at })
}

const COLUMNS: &str = "client_id, metadata, encrypted_client_secret, is_static, created_at";

pub fn by_id(conn: &Connection, id: &str) -> StoreResult<Option<Client>> {
    let sql = format!("SELECT {COLUMNS} FROM oauth2_clients WHERE client_id = ?1");
    opt(conn.query_row(&sql, [id], client_from_row))?.map(to_client).transpose()
}

pub fn by_digest(conn: &Connection, digest: &str) -> StoreResult<Option<Client>> {
    let sql = format!("SELECT {COLUMNS} FROM oauth2_clients WHERE metadata_digest = ?1");
    opt(conn.query_row(&sql, [digest], client_from_row))?.map(to_client).transpose()
}

pub fn list(conn: &Connection, static_only: bool) -> StoreResult<Vec<Client>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM oauth2_clients {} ORDER BY client_id",
        if static_only { "WHERE is_static = 1" } else { "" }
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], client_from_row)?;
    rows.map(|r| to_client(r?)).collect()
}

/// Inserts or replaces a client (config sync and registration).
pub fn upsert(conn: &Connection, client: &Client, digest: Option<&str>) -> StoreResult<()> {
    let metadata = serde_json::to_string(&client.metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.execute(
        "INSERT INTO oauth2_clients (client_id, metadata, encrypted_client_secret, is_static, metadata_digest, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (client_id) DO UPDATE SET metadata = excluded.metadata,
             encrypted_client_secret = excluded.encrypted_client_secret, is_static = excluded.is_static,
             metadata_digest = excluded.metadata_digest",
        params![client.id, metadata, client.encrypted_secret, client.is_static, digest, client.created_at],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> StoreResult<()> {
    conn.execute("DELETE FROM oauth2_clients WHERE client_id = ?1", [id])?;
    Ok(())
}

/// Deletes dynamically registered clients created before `created_before` that never completed a
/// grant (no OAuth session and no personal token was ever issued to them); their pending grants
/// go with them. Config clients are never deleted here.
pub fn delete_unused_dynamic(conn: &Connection, created_before: i64) -> StoreResult<usize> {
    Ok(conn.execute(
        "DELETE FROM oauth2_clients WHERE is_static = 0 AND created_at < ?1
           AND NOT EXISTS (SELECT 1 FROM oauth2_sessions s WHERE s.client_id = oauth2_clients.client_id)
           AND NOT EXISTS (SELECT 1 FROM personal_sessions p WHERE p.owner_oauth2_client_id = oauth2_clients.client_id)",
        [created_before],
    )?)
}

const CLIENTS: Table = Table { name: "oauth2_clients", key: "client_id", columns: COLUMNS };

fn static_filter(is_static: Option<bool>) -> Filter {
    let mut filter = Filter::new();
    filter.and_flag(is_static, "is_static = 1", "is_static = 0");
    filter
}

/// Clients for the admin API; `is_static`: only config (`true`) or only registered (`false`) ones.
pub fn page(conn: &Connection, is_static: Option<bool>, request: &PageRequest) -> StoreResult<Page<Client>> {
    let rows = page::fetch(conn, &CLIENTS, &static_filter(is_static), request, client_from_row, |r| &r.0)?;
    let Page { items, has_previous, has_next } = rows;
    Ok(Page { items: items.into_iter().map(to_client).collect::<StoreResult<_>>()?, has_previous, has_next })
}

pub fn count(conn: &Connection, is_static: Option<bool>) -> StoreResult<usize> {
    page::count(conn, &CLIENTS, &static_filter(is_static))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sessions::{OAuthSession, insert_oauth};
    use crate::store::test_support::memory_db;

    fn client(conn: &Connection, id: &str, is_static: bool, created_at: i64) {
        let c = Client {
            id: id.into(),
            metadata: ClientMetadata::default(),
            encrypted_secret: None,
            is_static,
            created_at,
        };
        upsert(conn, &c, None).unwrap();
    }

    #[test]
    fn only_old_dynamic_clients_without_a_grant_are_deleted() {
        let conn = memory_db();
        client(&conn, "old-unused", false, 100);
        client(&conn, "old-used", false, 100);
        client(&conn, "new-unused", false, 5000);
        client(&conn, "config", true, 100);
        let session = OAuthSession {
            id: "s1".into(),
            user_id: None,
            user_session_id: None,
            client_id: "old-used".into(),
            scope: String::new(),
            created_at: 200,
            finished_at: Some(300),
        };
        insert_oauth(&conn, &session, None).unwrap();
        assert_eq!(delete_unused_dynamic(&conn, 1000).unwrap(), 1);
        let left: Vec<String> = list(&conn, false).unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(left, ["config", "new-unused", "old-used"]);
    }
}
