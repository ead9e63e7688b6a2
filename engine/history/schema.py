"""The history tables, spelt once for both back-ends.

Types differ only in name (JSON as text in SQLite, jsonb in PostgreSQL so a team
can query payloads; timestamps as ISO text in SQLite, timestamptz in PostgreSQL).
"""

from __future__ import annotations

_TEMPLATE = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    runbook TEXT NOT NULL,
    path TEXT,
    runbook_digest TEXT,
    step_ids {json},
    params {json},
    options {json},
    hosts {json},
    inventory TEXT,
    inventory_digest TEXT,
    operator TEXT,
    dry_run {bool},
    state TEXT NOT NULL,
    exit_code INTEGER,
    started_at {ts} NOT NULL,
    finished_at {ts},
    resumed_from TEXT,
    pid INTEGER,
    control_node TEXT,
    incident TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_runbook ON runs (runbook, started_at);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at {ts} NOT NULL,
    kind TEXT NOT NULL,
    host TEXT,
    step_id TEXT,
    payload {json},
    PRIMARY KEY (run_id, seq)
){clustered};
CREATE TABLE IF NOT EXISTS step_results (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    step_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT,
    state TEXT NOT NULL,
    started_at {ts},
    finished_at {ts},
    duration_ms INTEGER,
    error TEXT,
    result {json},
    PRIMARY KEY (run_id, seq)
){clustered};
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    step_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value {float},
    state TEXT NOT NULL,
    unit TEXT,
    at {ts} NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics (name, at);
CREATE INDEX IF NOT EXISTS runs_by_incident ON runs (incident, started_at);
CREATE TABLE IF NOT EXISTS gates (
    run_id TEXT NOT NULL,
    host TEXT NOT NULL,
    step_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    prompt TEXT,
    requested_by TEXT,
    approvers {json},
    min_approvals INTEGER NOT NULL,
    self_approval {bool} NOT NULL,
    requested_at {ts} NOT NULL,
    deadline {ts},
    state TEXT NOT NULL,
    decided_by TEXT,
    decided_at {ts},
    PRIMARY KEY (run_id, host, step_id)
);
CREATE TABLE IF NOT EXISTS votes (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    host TEXT NOT NULL,
    user_name TEXT NOT NULL,
    approved {bool} NOT NULL,
    via TEXT,
    comment TEXT,
    at {ts} NOT NULL,
    PRIMARY KEY (run_id, step_id, host, user_name)
);
CREATE TABLE IF NOT EXISTS audit (
    at {ts} NOT NULL,
    user_name TEXT NOT NULL,
    action TEXT NOT NULL,
    run_id TEXT,
    detail {json}
);
CREATE INDEX IF NOT EXISTS audit_by_run ON audit (run_id, at);
CREATE TABLE IF NOT EXISTS locks (
    runbook TEXT NOT NULL,
    host TEXT NOT NULL,
    run_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    control_node TEXT NOT NULL,
    started_at {ts} NOT NULL,
    PRIMARY KEY (runbook, host)
);
"""

# WITHOUT ROWID: events and results are stored in (run_id, seq) order, one b-tree
# per table instead of two, which is a third less to write per committed event.
SQLITE = _TEMPLATE.format(
    json="TEXT", bool="INTEGER", ts="TEXT", float="REAL", clustered=" WITHOUT ROWID"
)
POSTGRES = _TEMPLATE.format(
    json="JSONB", bool="BOOLEAN", ts="TIMESTAMPTZ", float="DOUBLE PRECISION", clustered=""
)


# Columns added after a table was first shipped: an older history gains them
# when opened (CREATE TABLE IF NOT EXISTS leaves an existing table as it was).
ADDED_COLUMNS = (("runs", "incident", "TEXT"),)


def statements(ddl: str) -> list[str]:
    return [s.strip() for s in ddl.split(";") if s.strip()]
