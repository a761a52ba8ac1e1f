//! `queue_jobs`: the durable job queue.

use rusqlite::{Connection, params};

use super::StoreResult;

#[derive(Debug, Clone)]
pub struct StoredJob {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub attempts: u32,
    pub next_run_at: i64,
    pub last_error: Option<String>,
}

/// Queues a job as `id` unless the same job is already pending (then it is made due no later than
/// `run_at`).
pub fn enqueue(conn: &Connection, id: &str, kind: &str, payload: &str, run_at: i64, now: i64) -> StoreResult<()> {
    let pending = conn.execute(
        "UPDATE queue_jobs SET next_run_at = MIN(next_run_at, ?3)
         WHERE kind = ?1 AND payload = ?2 AND completed_at IS NULL AND failed_at IS NULL",
        params![kind, payload, run_at],
    )?;
    if pending == 0 {
        conn.execute(
            "INSERT INTO queue_jobs (job_id, kind, payload, next_run_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, kind, payload, run_at, now],
        )?;
    }
    Ok(())
}

fn job_from_row(r: &rusqlite::Row) -> rusqlite::Result<StoredJob> {
    Ok(StoredJob {
        id: r.get(0)?,
        kind: r.get(1)?,
        payload: r.get(2)?,
        attempts: r.get(3)?,
        next_run_at: r.get(4)?,
        last_error: r.get(5)?,
    })
}

pub fn due(conn: &Connection, now: i64, limit: u32) -> StoreResult<Vec<StoredJob>> {
    let mut stmt = conn.prepare(
        "SELECT job_id, kind, payload, attempts, next_run_at, last_error FROM queue_jobs
         WHERE completed_at IS NULL AND failed_at IS NULL AND next_run_at <= ?1 ORDER BY next_run_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit], job_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn pending(conn: &Connection) -> StoreResult<Vec<StoredJob>> {
    let mut stmt = conn.prepare(
        "SELECT job_id, kind, payload, attempts, next_run_at, last_error FROM queue_jobs
         WHERE completed_at IS NULL AND failed_at IS NULL ORDER BY next_run_at",
    )?;
    let rows = stmt.query_map([], job_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn complete(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    conn.execute("UPDATE queue_jobs SET completed_at = ?2 WHERE job_id = ?1", params![id, now])?;
    Ok(())
}

pub fn retry_later(conn: &Connection, id: &str, error: &str, next_run_at: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE queue_jobs SET attempts = attempts + 1, last_error = ?2, next_run_at = ?3 WHERE job_id = ?1",
        params![id, error, next_run_at],
    )?;
    Ok(())
}

pub fn give_up(conn: &Connection, id: &str, error: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE queue_jobs SET attempts = attempts + 1, last_error = ?2, failed_at = ?3 WHERE job_id = ?1",
        params![id, error, now],
    )?;
    Ok(())
}

pub fn cleanup(conn: &Connection, now: i64) -> StoreResult<usize> {
    Ok(conn.execute(
        "DELETE FROM queue_jobs WHERE (completed_at IS NOT NULL AND completed_at < ?1) OR (failed_at IS NOT NULL AND failed_at < ?1)",
        [now - 30 * 86400],
    )?)
}
