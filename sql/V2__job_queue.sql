-- Durable job queue: homeserver provisioning retries, device reconciliation.
CREATE TABLE queue_jobs (
    job_id        TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_run_at   INTEGER NOT NULL,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    completed_at  INTEGER,
    failed_at     INTEGER
);
CREATE INDEX queue_jobs_due ON queue_jobs (next_run_at) WHERE completed_at IS NULL AND failed_at IS NULL;
CREATE INDEX queue_jobs_kind_payload ON queue_jobs (kind, payload) WHERE completed_at IS NULL AND failed_at IS NULL;
