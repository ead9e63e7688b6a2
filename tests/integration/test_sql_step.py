"""The `sql` step type against the machine's real PostgreSQL, in a database of its own."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any

import pytest

from engine.connections.local import LocalConnection
from engine.errors import ServiceError, StepTimeout
from engine.execution.cancel import Cancellers
from engine.inventory.host import localhost
from engine.redaction import Redactor
from engine.steps.base import StepContext, get_step_type
from tests.fixtures.services import PgDatabase
from tests.helpers import step_context

STEP = get_step_type("sql")


def make_ctx(timeout: float | None = 10, dry_run: bool = False, **kw: Any) -> StepContext:
    return step_context("check", timeout, dry_run, **kw)


def run(body: dict[str, Any], **ctx: Any) -> dict[str, Any]:
    return STEP.run(STEP.Spec.model_validate(body), make_ctx(**ctx))


def test_select_with_positional_and_named_params(pg_database: PgDatabase) -> None:
    data = run(
        {
            "dsn": pg_database.dsn,
            "query": "SELECT n, n * %s AS doubled FROM generate_series(1, %s) AS n ORDER BY n",
            "params": [2, 3],
        }
    )
    assert data["columns"] == ["n", "doubled"]
    assert data["rows"] == [{"n": 1, "doubled": 2}, {"n": 2, "doubled": 4}, {"n": 3, "doubled": 6}]
    assert data["rowcount"] == 3
    assert data["status"] == "SELECT 3"
    assert data["statuses"] == ["SELECT 3"]
    assert data["truncated"] is False

    named = run(
        {
            "dsn": pg_database.dsn,
            "query": "SELECT %(a)s::int + %(b)s::int AS s",
            "params": {"a": 40, "b": 2},
        }
    )
    assert named["rows"] == [{"s": 42}]


def test_list_params_are_arrays_and_mappings_jsonb(pg_database: PgDatabase) -> None:
    data = run(
        {
            "dsn": pg_database.dsn,
            "query": "SELECT n FROM generate_series(1, 5) n WHERE n = ANY(%s) ORDER BY n; ",
            "params": [[2, 4]],
        }
    )
    assert [r["n"] for r in data["rows"]] == [2, 4]
    doc = run({"dsn": pg_database.dsn, "query": "SELECT %s->>'a' AS a", "params": [{"a": "b"}]})
    assert doc["rows"] == [{"a": "b"}]


def test_values_become_json_friendly(pg_database: PgDatabase) -> None:
    data = run(
        {
            "dsn": pg_database.dsn,
            "query": """
                SELECT 12.50::numeric AS dec, 7::numeric AS whole, 'NaN'::numeric AS nan,
                       timestamptz '2024-03-01 12:30:00+00' AS ts, date '2024-03-01' AS d,
                       time '04:05:06' AS t, interval '1 day 2 hours 0.5 seconds' AS iv,
                       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id,
                       '\\xdeadbeef'::bytea AS raw, int4range(1, 5) AS r,
                       '{"k": [1, 2.5]}'::jsonb AS doc, ARRAY[1, 2] AS arr,
                       '10.0.0.1'::inet AS ip, NULL::text AS nothing, true AS yes
            """,
        }
    )
    row = data["rows"][0]
    assert row["dec"] == 12.5 and isinstance(row["dec"], float)
    assert row["whole"] == 7 and isinstance(row["whole"], int)
    assert row["nan"] == "NaN"
    assert row["ts"].startswith("2024-03-01T") and row["ts"].endswith("+00:00")
    assert row["d"] == "2024-03-01"
    assert row["t"] == "04:05:06"
    assert row["iv"] == 86400 + 7200 + 0.5
    assert row["id"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert row["raw"] == "deadbeef"
    assert row["r"] == "[1, 5)"
    assert row["doc"] == {"k": [1, 2.5]}
    assert row["arr"] == [1, 2]
    assert row["ip"] == "10.0.0.1"
    assert row["nothing"] is None and row["yes"] is True
    import json

    json.dumps(data)  # every value is plain JSON data


def test_duplicate_column_names_are_kept(pg_database: PgDatabase) -> None:
    data = run({"dsn": pg_database.dsn, "query": "SELECT 1 AS n, 2 AS n"})
    assert data["columns"] == ["n", "n_2"]
    assert data["rows"] == [{"n": 1, "n_2": 2}]


def test_several_statements_return_last_rows_and_every_status(
    pg_database: PgDatabase, pg_table: str
) -> None:
    data = run(
        {
            "dsn": pg_database.dsn,
            "query": f"""
                SET LOCAL work_mem = '8MB';
                INSERT INTO {pg_table} (v) VALUES ('a'), ('b');
                SELECT v FROM {pg_table} ORDER BY v;
                UPDATE {pg_table} SET v = v || '!' WHERE v = 'a'
            """,
        }
    )
    assert data["statuses"] == ["SET", "INSERT 0 2", "SELECT 2", "UPDATE 1"]
    assert data["status"] == "UPDATE 1"
    assert data["rows"] == [{"v": "a"}, {"v": "b"}]  # the last statement that returned rows
    # Committed: the changes are visible from another session.
    assert pg_database.query(f"SELECT v FROM {pg_table} ORDER BY v") == [("a!",), ("b",)]


def test_params_with_several_statements_is_explained(pg_database: PgDatabase) -> None:
    with pytest.raises(ServiceError) as err:
        run({"dsn": pg_database.dsn, "query": "SELECT %s; SELECT 2", "params": [1]})
    assert "single statement" in str(err.value) and "params" in str(err.value)


def test_injection_through_params_stays_data(pg_database: PgDatabase, pg_table: str) -> None:
    evil = f"x'); DROP TABLE {pg_table}; --"
    data = run(
        {
            "dsn": pg_database.dsn,
            "query": f"INSERT INTO {pg_table} (v) VALUES (%s) RETURNING v",
            "params": [evil],
        }
    )
    assert data["rows"] == [{"v": evil}]
    assert pg_database.scalar(f"SELECT count(*) FROM {pg_table}") == 1
    assert pg_database.scalar(f"SELECT v FROM {pg_table}") == evil


def test_percent_sign_without_params_is_literal(pg_database: PgDatabase) -> None:
    data = run({"dsn": pg_database.dsn, "query": "SELECT '100%' AS pct, 'a%sb' AS s"})
    assert data["rows"] == [{"pct": "100%", "s": "a%sb"}]


def test_vacuum_needs_autocommit(pg_database: PgDatabase, pg_table: str) -> None:
    data = run(
        {"dsn": pg_database.dsn, "query": f"VACUUM (ANALYZE) {pg_table}", "autocommit": True}
    )
    assert data["status"] == "VACUUM"
    with pytest.raises(ServiceError) as err:
        run({"dsn": pg_database.dsn, "query": f"VACUUM {pg_table}"})
    assert err.value.code == "25001"
    assert "autocommit: true" in str(err.value)


def test_statement_timeout_becomes_step_timeout(pg_database: PgDatabase) -> None:
    with pytest.raises(StepTimeout) as err:
        run({"dsn": pg_database.dsn, "query": "SELECT pg_sleep(5)"}, timeout=0.5)
    assert "57014" in str(err.value)
    assert "statement_timeout" in str(err.value)


def test_sql_error_carries_sqlstate_and_position(pg_database: PgDatabase) -> None:
    with pytest.raises(ServiceError) as err:
        run({"dsn": pg_database.dsn, "query": "SELECT 1;\nSELECT * FROM no_such_table"})
    assert err.value.code == "42P01"
    message = str(err.value)
    assert "[42P01]" in message and 'relation "no_such_table" does not exist' in message
    assert "at line 2, column 15" in message
    assert err.value.data["sqlstate"] == "42P01"


def test_unknown_database_names_dsn_without_password(pg_database: PgDatabase) -> None:
    password = "Sup3r-Secret-Pw"
    dsn = f"postgresql://postgres:{password}@127.0.0.1:5432/rb_no_such_db_x"
    redactor = Redactor()
    with pytest.raises(ServiceError) as err:
        run({"dsn": dsn, "query": "SELECT 1"}, redactor=redactor)
    message = str(err.value)
    assert password not in message
    assert "postgresql://postgres:***@127.0.0.1:5432/rb_no_such_db_x" in message
    assert "does not exist" in message
    # The password is also hidden from every other output of the run.
    assert redactor.text(f"echo {password}") == "echo ***"


def test_keyword_dsn_and_connection_refused_redacted() -> None:
    dsn = "host=127.0.0.1 port=1 user=postgres password='pa ss-word' dbname=x"
    with pytest.raises(ServiceError) as err:
        run({"dsn": dsn, "query": "SELECT 1"})
    message = str(err.value)
    assert "pa ss-word" not in message and "password=***" in message
    assert "Connection refused" in message


def test_dry_run_select_returns_rows(pg_database: PgDatabase, pg_table: str) -> None:
    pg_database.query(f"INSERT INTO {pg_table} (v) VALUES ('x')")
    spec = STEP.Spec.model_validate({"dsn": pg_database.dsn, "query": f"SELECT v FROM {pg_table}"})
    assert STEP.dry_run_safe(spec)
    data = STEP.run(spec, make_ctx(dry_run=True))
    assert data["rows"] == [{"v": "x"}]


def test_dry_run_write_is_refused_and_rolled_back(pg_database: PgDatabase, pg_table: str) -> None:
    query = f"INSERT INTO {pg_table} (v) VALUES ('new')"
    spec = STEP.Spec.model_validate({"dsn": pg_database.dsn, "query": query})
    assert STEP.dry_run_safe(spec)
    with pytest.raises(ServiceError) as err:
        STEP.run(spec, make_ctx(dry_run=True))
    assert "would write: skipped in dry run" in str(err.value)
    assert err.value.code == "25006"
    assert err.value.data["would_write"] is True
    assert pg_database.scalar(f"SELECT count(*) FROM {pg_table}") == 0


def test_dry_run_commit_inside_query_cannot_escape(pg_database: PgDatabase, pg_table: str) -> None:
    with pytest.raises(ServiceError) as err:
        run(
            {"dsn": pg_database.dsn, "query": f"COMMIT; INSERT INTO {pg_table} (v) VALUES ('z')"},
            dry_run=True,
        )
    assert err.value.data.get("would_write") is True
    assert pg_database.scalar(f"SELECT count(*) FROM {pg_table}") == 0


def test_autocommit_is_not_dry_run_safe(pg_database: PgDatabase) -> None:
    spec = STEP.Spec.model_validate({"dsn": pg_database.dsn, "query": "VACUUM", "autocommit": True})
    assert not STEP.dry_run_safe(spec)
    assert STEP.describe(spec) == "VACUUM  (autocommit)"


def test_max_rows_truncates(pg_database: PgDatabase) -> None:
    data = run(
        {"dsn": pg_database.dsn, "query": "SELECT generate_series(1, 50) AS n", "max_rows": 10}
    )
    assert len(data["rows"]) == 10 and data["truncated"] is True
    assert data["rowcount"] == 50


class RecordingConnection(LocalConnection):
    """A local connection that records the tunnels asked of it."""

    def __init__(self) -> None:
        super().__init__(localhost())
        self.tunnels: list[tuple[str, int]] = []

    @contextmanager
    def tunnel(self, remote_host: str, remote_port: int):  # type: ignore[override]
        self.tunnels.append((remote_host, remote_port))
        with super().tunnel(remote_host, remote_port) as local:
            yield local


def test_tunnel_goes_through_the_host_connection(pg_database: PgDatabase) -> None:
    conn = RecordingConnection()
    # Key=value DSN with hostaddr: the tunnel target and the rewritten address both apply.
    dsn = f"host=db.internal hostaddr=127.0.0.1 port=5432 user=postgres dbname={pg_database.name}"
    data = run(
        {"dsn": dsn, "query": "SELECT current_database() AS db", "tunnel": True},
        get_connection=lambda: conn,
    )
    assert conn.tunnels == [("127.0.0.1", 5432)]
    assert data["rows"] == [{"db": pg_database.name}]

    url_data = run(
        {"dsn": pg_database.dsn, "query": "SELECT 1 AS one", "tunnel": True},
        get_connection=lambda: conn,
    )
    assert conn.tunnels[-1] == ("127.0.0.1", 5432)
    assert url_data["rows"] == [{"one": 1}]


def test_application_name_names_the_step(pg_database: PgDatabase) -> None:
    data = run({"dsn": pg_database.dsn, "query": "SELECT current_setting('application_name') AS a"})
    assert data["rows"] == [{"a": "runbook:check"}]


class _Running:
    """A sql step run in a thread, started and seen active in pg_stat_activity."""

    def __init__(self, db: PgDatabase, ctx: StepContext, query: str) -> None:
        self.errors: list[BaseException] = []
        spec = STEP.Spec.model_validate({"dsn": db.dsn, "query": query})
        self.thread = threading.Thread(target=self._run, args=(spec, ctx))
        self.thread.start()
        app = f"runbook:{ctx.step_id}"
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'"
        )
        deadline = time.monotonic() + 30
        while db.scalar(sql, [app]) == 0:
            assert self.thread.is_alive(), "the step ended before its query showed up"
            assert time.monotonic() < deadline, f"no active query of {app} in pg_stat_activity"
            time.sleep(0.05)

    def _run(self, spec: Any, ctx: StepContext) -> None:
        try:
            STEP.run(spec, ctx)
        except BaseException as exc:  # checked by the test
            self.errors.append(exc)

    def error(self) -> BaseException:
        self.thread.join(30)
        assert not self.thread.is_alive(), "the query kept running"
        [err] = self.errors
        return err


def test_cancel_all_stops_the_query_in_the_server_and_rolls_back(
    pg_database: PgDatabase, pg_table: str
) -> None:
    cancellers = Cancellers()
    # The timeout only bounds a failing test (statement_timeout is another message).
    ctx = step_context("cancel-me", 20, cancellable=cancellers.scope)
    query = f"INSERT INTO {pg_table} (v) VALUES ('half-done'); SELECT pg_sleep(600)"
    running = _Running(pg_database, ctx, query)
    cancellers.cancel_all()
    err = running.error()
    assert isinstance(err, ServiceError) and err.code == "57014", err
    assert "cancelled in the server" in str(err) and "rolled back" in str(err)
    assert isinstance(err, ServiceError) and not isinstance(err, StepTimeout)
    # Nothing of it is left in the server: no session (the step closed it), no half-done insert.
    left = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runbook:cancel-me'"
    deadline = time.monotonic() + 10  # a closed session's backend exits a moment later
    while pg_database.scalar(left) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pg_database.scalar(left) == 0
    assert pg_database.scalar(f"SELECT count(*) FROM {pg_table}") == 0


def test_a_step_registering_after_the_kill_is_cancelled_at_once(pg_database: PgDatabase) -> None:
    cancellers = Cancellers()
    cancellers.cancel_all()  # the second Ctrl-C came before this step's query started
    ctx = step_context("late", 20, cancellable=cancellers.scope)
    spec = STEP.Spec.model_validate({"dsn": pg_database.dsn, "query": "SELECT pg_sleep(600)"})
    with pytest.raises(ServiceError) as err:
        STEP.run(spec, ctx)  # the first cancel may beat the query to the server: it is resent
    assert err.value.code == "57014" and "cancelled in the server" in str(err.value)


def test_a_cancel_from_elsewhere_is_not_blamed_on_ctrl_c(pg_database: PgDatabase) -> None:
    ctx = step_context("dba-cancel", 20, cancellable=Cancellers().scope)
    running = _Running(pg_database, ctx, "SELECT pg_sleep(600)")
    pg_database.query(  # a DBA's pg_cancel_backend, not the operator's Ctrl-C
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'runbook:dba-cancel'"
    )
    err = running.error()
    assert isinstance(err, ServiceError) and err.code == "57014"
    assert "user request" in str(err) and "Ctrl-C" not in str(err)
