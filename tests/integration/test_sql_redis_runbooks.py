"""sql and redis steps end to end: YAML runbooks run by the CLI against real servers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.services import PgDatabase
from tests.helpers import cli, run_json, steps_of, write

DEAD_TUPLES = """
runbook: pg-dead-tuples
params:
  dsn: {type: str}
  table: {type: str}
  dead_pct_max: {type: float, default: 20}
steps:
  - name: Dead tuple ratio
    id: dead
    timeout: 30s
    sql:
      dsn: "{{ params.dsn }}"
      query: >-
        select relname, n_live_tup, n_dead_tup,
               round(100.0 * n_dead_tup / greatest(n_live_tup + n_dead_tup, 1), 2) as dead_pct
        from pg_stat_user_tables where relname = %s
      params: ["{{ params.table }}"]
    thresholds:
      dead_pct:
        value: result.rows[0].dead_pct
        warn: "> {{ params.dead_pct_max / 2 }}"
        critical: "> {{ params.dead_pct_max }}"
        unit: "%"
  - name: Vacuum
    id: vacuum
    when: steps.dead.state != 'ok'
    timeout: 5m
    sql:
      dsn: "{{ params.dsn }}"
      query: "VACUUM (ANALYZE) {{ params.table }}"
      autocommit: true
"""


def _home(tmp_path: Path) -> dict[str, str]:
    return {"RUNBOOK_HOME": str(tmp_path / "home")}


def _with_dead_tuples(db: PgDatabase, table: str) -> None:
    """Half the table's rows deleted, and the statistics showing it."""
    db.query(f"INSERT INTO {table} (v) SELECT 'x' FROM generate_series(1, 100)")
    db.query(f"DELETE FROM {table} WHERE id % 2 = 0")
    # Statistics reach pg_stat_user_tables asynchronously: wait (bounded) for them.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        dead = db.scalar("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", [table])
        if dead == 50:
            return
        time.sleep(0.1)
    pytest.fail(f"pg_stat_user_tables never showed the 50 dead tuples of {table}")


@pytest.mark.parametrize(
    ("dead_pct_max", "exit_code", "state"), [("20", 2, "critical"), ("120", 0, "ok")]
)
def test_dead_tuple_threshold_and_vacuum(
    pg_database: PgDatabase,
    pg_table: str,
    tmp_path: Path,
    dead_pct_max: str,
    exit_code: int,
    state: str,
) -> None:
    _with_dead_tuples(pg_database, pg_table)
    path = write(tmp_path, DEAD_TUPLES)
    code, doc = run_json(
        path,
        "-p", f"dsn={pg_database.dsn}",
        "-p", f"table={pg_table}",
        "-p", f"dead_pct_max={dead_pct_max}",
        env=_home(tmp_path),
    )  # fmt: skip
    assert code == exit_code, doc
    steps = steps_of(doc)
    dead = steps["dead"]
    assert dead["state"] == state
    assert dead["metrics"]["dead_pct"]["value"] == 50.0
    assert dead["data"]["rows"][0]["n_dead_tup"] == 50
    if state == "ok":
        assert steps["vacuum"]["state"] == "skipped"
    else:
        assert steps["vacuum"]["state"] == "ok"
        assert steps["vacuum"]["data"]["status"] == "VACUUM"


DRY = """
runbook: pg-dry
params:
  dsn: {type: str}
  table: {type: str}
steps:
  - name: Count rows
    id: count
    sql: {dsn: "{{ params.dsn }}", query: "select count(*) as n from {{ params.table }}"}
  - name: Vacuum
    id: vacuum
    sql: {dsn: "{{ params.dsn }}", query: "VACUUM {{ params.table }}", autocommit: true}
  - name: Insert a row
    id: insert
    sql:
      dsn: "{{ params.dsn }}"
      query: "insert into {{ params.table }} (v) values (%s)"
      params: [new]
"""


def test_dry_run_reads_and_refuses_writes(
    pg_database: PgDatabase, pg_table: str, tmp_path: Path
) -> None:
    pg_database.query(f"INSERT INTO {pg_table} (v) VALUES ('a'), ('b')")
    path = write(tmp_path, DRY)
    code, doc = run_json(
        path, "-p", f"dsn={pg_database.dsn}", "-p", f"table={pg_table}", "--dry-run",
        env=_home(tmp_path),
    )  # fmt: skip
    steps = steps_of(doc)
    assert steps["count"]["state"] == "ok"
    assert steps["count"]["data"]["rows"] == [{"n": 2}]
    # Tried in a read-only transaction, refused by the server: reported as a change
    # the dry run did not make (skipped, with what would have run), not a failure.
    assert steps["insert"]["state"] == "skipped"
    assert steps["insert"]["data"]["would_write"] is True
    assert "would write: skipped in dry run" in steps["insert"]["skip_reason"]
    assert steps["insert"]["rendered"]["query"].startswith("insert into")
    assert steps["vacuum"]["state"] == "skipped"  # autocommit: never run by a dry run
    assert code == 0
    assert pg_database.scalar(f"SELECT count(*) FROM {pg_table}") == 2


WRITE_THEN_VERIFY = """
runbook: pg-write-verify
params:
  dsn: {type: str}
  table: {type: str}
steps:
  - name: Check the table first
    id: before
    sql: {dsn: "{{ params.dsn }}", query: "select count(*) as n from {{ params.table }}"}
    assert: ["result.rows[0].n == 2"]
  - name: Insert a row
    id: insert
    sql:
      dsn: "{{ params.dsn }}"
      query: "insert into {{ params.table }} (v) values (%s)"
      params: [new]
  - name: Verify it is there
    id: verify
    sql: {dsn: "{{ params.dsn }}", query: "select count(*) as n from {{ params.table }}"}
    assert: ["result.rows[0].n == 3"]
    retry: {attempts: 5, delay: 2s}
  - name: Say how many
    id: say
    log: "inserted {{ steps.insert.rowcount }} row(s)"
"""


def test_a_dry_run_of_write_then_verify_does_not_fail_the_verification(
    pg_database: PgDatabase, pg_table: str, tmp_path: Path
) -> None:
    """The verification fails only because the dry run skipped the write: it is
    reported skipped with what it found, at once (no retries), and the run is ok.
    A check before any skipped step is judged as usual."""
    pg_database.query(f"INSERT INTO {pg_table} (v) VALUES ('a'), ('b')")
    path = write(tmp_path, WRITE_THEN_VERIFY)
    args = ("-p", f"dsn={pg_database.dsn}", "-p", f"table={pg_table}", "--dry-run")
    code, doc = run_json(path, *args, env=_home(tmp_path))
    steps = steps_of(doc)
    assert code == 0, doc
    assert steps["before"]["state"] == "ok"
    assert steps["insert"]["state"] == "skipped" and steps["insert"]["data"]["would_write"]
    verify = steps["verify"]
    assert verify["state"] == "skipped" and verify["attempts"] == 1
    assert (
        "may check the effect of steps this dry run did not execute (insert)"
        in (verify["skip_reason"])
    )
    assert "assertion failed" in verify["data"]["would_fail"]
    assert steps["say"]["state"] == "skipped"  # reads the skipped insert's result
    # The console's last line counts it apart: a reader of the summary alone
    # must not take an unjudged failure for a plain skip.
    text = cli("run", str(path), *args, "--no-color", env=_home(tmp_path)).stdout
    assert text.splitlines()[-1].endswith("ok 1 · not judged 1 · skipped 2")
    # Before any skipped step, a failing check is a failure, dry run or not.
    pg_database.query(f"INSERT INTO {pg_table} (v) VALUES ('c')")
    code, doc = run_json(path, *args, env=_home(tmp_path))
    assert code == 3 and steps_of(doc)["before"]["state"] == "failed"


HIT_RATE = """
runbook: redis-hit-rate
params:
  url: {type: str}
  prefix: {type: str}
  misses: {type: int, default: 0}
steps:
  - name: Seed a key
    id: seed
    redis: {url: "{{ params.url }}", command: ["SET", "{{ params.prefix }}k", "v"]}
  - name: Stats before
    id: before
    redis: {url: "{{ params.url }}", command: INFO stats}
  - name: Traffic
    id: traffic
    redis:
      url: "{{ params.url }}"
      commands: "{{ [['GET', params.prefix ~ 'k']] * 3 + [['GET', params.prefix ~ 'nope']] * params.misses }}"
  - name: Hit rate
    id: stats
    redis: {url: "{{ params.url }}", command: INFO stats}
    thresholds:
      redis_hit_rate:
        value: >-
          (result.value.keyspace_hits - steps.before.value.keyspace_hits)
          / [result.value.keyspace_hits - steps.before.value.keyspace_hits
             + result.value.keyspace_misses - steps.before.value.keyspace_misses, 1] | max
        warn: "< 0.9"
        critical: "< 0.8"
        unit: ratio
"""


@pytest.mark.parametrize(
    ("misses", "exit_code", "state", "rate"), [(0, 0, "ok", 1.0), (1, 2, "critical", 0.75)]
)
def test_redis_hit_rate_threshold(
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    misses: int,
    exit_code: int,
    state: str,
    rate: float,
) -> None:
    path = write(tmp_path, HIT_RATE)
    code, doc = run_json(
        path, "-p", f"url={redis_url}", "-p", f"prefix={redis_prefix}", "-p", f"misses={misses}",
        env=_home(tmp_path),
    )  # fmt: skip
    assert code == exit_code, doc
    steps = steps_of(doc)
    assert steps["traffic"]["data"]["replies"] == ["v"] * 3 + [None] * misses
    assert steps["stats"]["state"] == state
    assert steps["stats"]["metrics"]["redis_hit_rate"]["value"] == pytest.approx(rate)


def test_redis_dry_run_skips_writes(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    import redis

    path = write(tmp_path, HIT_RATE)
    code, doc = run_json(
        path, "-p", f"url={redis_url}", "-p", f"prefix={redis_prefix}", "--dry-run",
        env=_home(tmp_path),
    )  # fmt: skip
    steps = steps_of(doc)
    assert steps["seed"]["state"] == "skipped"
    assert steps["before"]["state"] in ("ok", "warn", "critical")
    assert isinstance(steps["before"]["data"]["value"]["keyspace_hits"], int)
    assert steps["traffic"]["data"]["replies"] == [None, None, None]  # the SET never ran
    assert redis.Redis.from_url(redis_url).exists(f"{redis_prefix}k") == 0
    assert code in (0, 1, 2)


def test_a_skipped_manual_step_does_not_excuse_later_failures(tmp_path: Path) -> None:
    """A manual step changes nothing: a dry run skipping it leaves every later
    check judged, where a skipped write would not."""
    path = write(
        tmp_path,
        """
        runbook: declare-then-check
        steps:
          - name: Declare
            id: declare
            manual: Tell the channel.
          - name: A check that fails
            id: check
            safe: true
            shell: "exit 1"
        """,
    )
    code, doc = run_json(path, "--dry-run", env=_home(tmp_path))
    steps = steps_of(doc)
    assert steps["declare"]["state"] == "skipped"
    assert steps["check"]["state"] == "failed" and code == 3
