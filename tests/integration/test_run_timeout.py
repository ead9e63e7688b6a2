"""A run's own budget: `timeout:` in the runbook, `--timeout` on the command line.

When it passes, nothing new starts and what runs is killed, here and in the
database server, and the run ends failed (exit 3): cron and CI read a run
that overran as a failure, not as someone's decision to stop it (exit 4).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.services import PgDatabase
from tests.helpers import cli, write

SLOW = """
runbook: overrunning
timeout: {budget}
steps:
  - name: first
    shell: echo first
  - name: slow
    shell: sleep 120
  - name: after
    shell: touch {dir}/after
always:
  - name: cleanup
    shell: touch {dir}/cleanup
"""


def _history() -> list[dict]:
    return json.loads(cli("history", "--format", "json").stdout)


def test_the_runbook_timeout_kills_the_running_step_and_fails_the_run(tmp_path: Path) -> None:
    rb = write(tmp_path, SLOW.format(budget="1s", dir=tmp_path))
    result = cli("run", str(rb), "--format", "json")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["state"] == "failed"
    assert "timeout of 1s passed" in doc["stopped"]
    steps = {s["id"]: s for s in doc["hosts"]["localhost"]["steps"]}
    assert steps["first"]["state"] == "ok"
    assert steps["slow"]["state"] == "failed"
    assert "timeout of 1s passed" in steps["slow"]["error"]
    assert "after" not in steps  # never started
    # As after Ctrl-C twice, cleanup does not run: it could overrun the budget too.
    assert not (tmp_path / "after").exists() and not (tmp_path / "cleanup").exists()
    (run,) = _history()
    assert run["state"] == "failed" and run["exit_code"] == 3


def test_the_command_line_timeout_wins_over_the_runbook(tmp_path: Path) -> None:
    rb = write(tmp_path, SLOW.format(budget="1h", dir=tmp_path))
    result = cli("run", str(rb), "--timeout", "1s")
    assert result.exit_code == 3, result.output
    assert "■ stopped: the run's timeout of 1s passed" in result.output


def test_a_run_within_its_budget_is_untouched(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: quick
        timeout: 1h
        steps:
          - name: one
            shell: echo one
        """,
    )
    result = cli("run", str(rb), "--format", "json")
    assert result.exit_code == 0, result.output
    assert "stopped" not in json.loads(result.stdout)


def test_a_bad_timeout_is_refused_before_anything_runs(tmp_path: Path) -> None:
    rb = write(tmp_path, SLOW.format(budget="1h", dir=tmp_path))
    bad_flag = cli("run", str(rb), "--timeout", "soon")
    assert bad_flag.exit_code == 64
    assert "is not a duration" in bad_flag.output
    zero = write(tmp_path, SLOW.format(budget="0s", dir=tmp_path), name="zero.yaml")
    bad_field = cli("run", str(zero))
    assert bad_field.exit_code == 65
    assert "timeout" in bad_field.output and "zero.yaml:2" in bad_field.output
    assert _history() == []


SLOW_QUERY = """
runbook: overrunning-query
timeout: 2s
params:
  dsn: {type: str}
  table: {type: str}
steps:
  - name: slow query
    id: slow
    sql:
      dsn: "{{ params.dsn }}"
      query: "INSERT INTO {{ params.table }} (v) VALUES ('half-done'); SELECT pg_sleep(600)"
"""


def test_the_timeout_cancels_a_query_in_the_server(
    tmp_path: Path, pg_database: PgDatabase, pg_table: str
) -> None:
    rb = write(tmp_path, SLOW_QUERY)
    try:
        result = cli("run", str(rb), "-p", f"dsn={pg_database.dsn}", "-p", f"table={pg_table}")
    finally:
        # Were the cancel lost, pg_sleep's lock would hold the fixture's DROP TABLE.
        stuck = pg_database.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'runbook:slow' AND state = 'active'"
        )
    assert result.exit_code == 3, result.output
    assert not stuck, "the query was still running in the server"
    assert pg_database.scalar(f"SELECT count(*) FROM {pg_table}") == 0  # rolled back
