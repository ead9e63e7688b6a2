"""Run history in SQLite (default) and in a real PostgreSQL: rows, commands, trend."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from engine.history import open_store
from engine.history.store import RunQuery
from tests.helpers import cli, write

RUNBOOK = """
runbook: hist-demo
params:
  level: {type: int, default: 7}
steps:
  - name: measure
    shell: "echo {{ params.level }}"
    thresholds:
      queue_depth: {value: "result.stdout | int", warn: "> 5", critical: "> 10", unit: jobs}
  - name: say
    log: "depth is {{ steps.measure.stdout | trim }}"
  - name: broken
    shell: "exit 2"
    ignore_errors: true
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgres":
        dsn = request.getfixturevalue("pg_history_dsn")
        monkeypatch.setenv("RUNBOOK_HISTORY", dsn)
        return dsn
    return "sqlite"


def _runs(fmt: str = "json", *args: str) -> list[dict]:
    res = cli("history", "--format", fmt, *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_every_event_and_result_is_recorded(tmp_path: Path, backend: str) -> None:
    rb = write(tmp_path, RUNBOOK)
    res = cli("run", rb, "-p", "level=7", "--operator", "alice")
    assert res.exit_code == 1, res.output  # worst counted state is warn
    runs = _runs()
    assert len(runs) == 1
    run = runs[0]
    assert run["runbook"] == "hist-demo"
    assert run["state"] == "warn" and run["exit_code"] == 1
    assert run["operator"] == "alice"
    assert run["params"] == {"level": 7}
    assert run["hosts"] == ["localhost"]
    assert run["step_ids"] == ["measure", "say", "broken"]
    assert run["path"] == str(rb.resolve())
    assert run["finished_at"] and run["runbook_digest"]

    detail = json.loads(cli("history", run["id"], "--format", "events").stdout)
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("step_started") == 3 and kinds.count("step_finished") == 3
    assert "log" in kinds and "host_finished" in kinds
    assert [e["seq"] for e in detail["events"]] == sorted(e["seq"] for e in detail["events"])
    steps = {s["id"]: s for s in detail["steps"]}
    assert steps["measure"]["state"] == "warn"
    assert steps["measure"]["metrics"]["queue_depth"]["value"] == 7
    assert steps["broken"]["state"] == "failed" and steps["broken"]["ignored"] is True
    assert steps["measure"]["started_at"] <= steps["measure"]["finished_at"]

    text = cli("history", run["id"]).stdout
    assert "hist-demo" in text and "── localhost" in text
    assert "▶ measure" in text and "queue_depth=7" in text and "depth is 7" in text


def test_runs_table_filters_and_metric_trend(tmp_path: Path, backend: str) -> None:
    rb = write(tmp_path, RUNBOOK)
    for level in (1, 7, 12, 3):
        cli("run", rb, "-p", f"level={level}")
    other = write(tmp_path, "runbook: other\nsteps:\n  - name: x\n    log: hi\n", "o.yaml")
    assert cli("run", other).exit_code == 0

    assert len(_runs()) == 5
    assert {r["runbook"] for r in _runs("json", "--runbook", "other")} == {"other"}
    assert len(_runs("json", "--limit", "2")) == 2
    crit = _runs("json", "--state", "critical")
    assert len(crit) == 1 and crit[0]["params"] == {"level": 12}

    table = cli("history").stdout
    assert "hist-demo" in table and "other" in table and "critical" in table

    trend = json.loads(cli("history", "--metric", "queue_depth", "--format", "json").stdout)
    assert [v["value"] for v in trend["values"]] == [1, 7, 12, 3]  # oldest first
    assert [v["state"] for v in trend["values"]] == ["ok", "warn", "critical", "ok"]
    text = cli("history", "--metric", "queue_depth").stdout
    assert "▁▅█▂" in text  # 1, 7, 12, 3 scaled onto ▁..█
    assert "jobs" in text and "max 12" in text


def test_run_id_prefix_and_unknown_run(tmp_path: Path) -> None:
    rb = write(tmp_path, "runbook: p\nsteps:\n  - name: x\n    log: hi\n")
    cli("run", rb)
    run_id = _runs()[0]["id"]
    res = cli("history", run_id[:15])
    assert res.exit_code == 0 and run_id in res.stdout
    res = cli("history", "19990101-nope")
    assert res.exit_code == 64 and "no run" in res.output


def test_sqlite_file_is_private_and_in_runbook_home(tmp_path: Path, runbook_home: Path) -> None:
    rb = write(tmp_path, "runbook: p\nsteps:\n  - name: x\n    log: hi\n")
    cli("run", rb)
    db = runbook_home / "history.db"
    assert db.exists()
    assert db.stat().st_mode & 0o077 == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def test_history_can_be_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runbook_home: Path
) -> None:
    monkeypatch.setenv("RUNBOOK_HISTORY", "off")
    rb = write(tmp_path, "runbook: p\nsteps:\n  - name: x\n    log: hi\n")
    assert cli("run", rb).exit_code == 0
    assert not (runbook_home / "history.db").exists()
    res = cli("history")
    assert res.exit_code == 64 and "disabled" in res.output


def test_unreachable_postgres_history_refuses_to_run_without_leaking_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_HISTORY", "postgresql://ops:hunter2-pw@127.0.0.1:1/history")
    rb = write(tmp_path, "runbook: p\nsteps:\n  - name: x\n    shell: 'touch ran'\n")
    res = cli("run", rb)
    assert res.exit_code == 64
    assert "cannot connect to the run history" in res.output
    assert "hunter2-pw" not in res.output and "ops:***@" in res.output
    assert not (tmp_path / "ran").exists()


def test_store_api_lists_and_dumps(tmp_path: Path, backend: str) -> None:
    rb = write(tmp_path, RUNBOOK)
    cli("run", rb)
    store = open_store()
    try:
        [row] = store.list_runs(RunQuery(runbook="hist-demo"))
        dump = store.dump()
        assert {t for t, rows in dump.items() if rows} >= {
            "runs",
            "events",
            "step_results",
            "metrics",
        }
        assert dump["locks"] == []  # released at the end of the run
        assert [m["name"] for m in dump["metrics"]] == ["queue_depth"]
        assert len(store.step_rows(row["id"])) == 3
    finally:
        store.close()


def test_many_hosts_at_once_record_every_event_in_order(tmp_path: Path, backend: str) -> None:
    """Hosts finishing together share history transactions; nothing is lost or reordered."""
    hosts = {f"h{i}": {"address": "127.0.0.1"} for i in range(12)}
    inv = tmp_path / "inv.yaml"
    inv.write_text(json.dumps({"defaults": {"connection": "local"}, "hosts": hosts}))
    steps = "".join(f"  - name: step {k}\n    shell: echo {k}\n" for k in range(4))
    rb = write(tmp_path, f"runbook: together\nsteps:\n{steps}")
    res = cli("run", rb, "-i", str(inv), "--forks", "12")
    assert res.exit_code == 0, res.output
    store = open_store()
    run_id = store.list_runs(RunQuery())[0]["id"]
    events = store.events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == "run_started" and events[-1].kind == "run_finished"
    for host in hosts:
        mine = [(e.kind, e.payload["name"]) for e in events if e.host == host and e.step_id]
        assert mine == [
            (kind, f"step {k}") for k in range(4) for kind in ("step_started", "step_finished")
        ]
    rows = store.step_rows(run_id)
    assert sorted((r.host, r.name) for r in rows) == sorted(
        (h, f"step {k}") for h in hosts for k in range(4)
    )
    assert all(r.state == "ok" and r.started_at for r in rows)
    store.close()


def test_one_bad_row_does_not_cost_the_rest_of_its_batch(tmp_path: Path) -> None:
    import io

    from engine.errors import RecordLost
    from engine.events import RunStarted, StepFinished, StepStarted
    from engine.history.recorder import HistoryRecorder
    from engine.results import State, StepResult

    store = open_store(str(tmp_path / "h.db"))
    warn = io.StringIO()
    rec = HistoryRecorder(store, extra={"step_ids": ["s"]}, warn=warn)
    rec.handle(RunStarted("r", runbook="b", path="", hosts=["h1", "h2"], params={},
                          operator="o", dry_run=False))  # fmt: skip
    # seq 3 is taken already (as by a second writer gone wrong): that row alone fails.
    store.conn.execute(
        "INSERT INTO events (run_id, seq, at, kind, payload) VALUES ('r', 3, 'x', 'x', '{}')"
    )
    batch = [
        StepStarted("r", host="h1", step_id="s", name="n"),
        StepStarted("r", host="h2", step_id="s", name="n"),
        StepFinished("r", host="h1", result=StepResult("s", "n", "h1", State.OK)),
    ]
    with pytest.raises(RecordLost, match="UNIQUE"):  # the emitters are told: fail closed
        rec.handle_batch(batch)  # type: ignore[arg-type]
    kinds = [(e.seq, e.kind, e.host) for e in store.events("r")]
    assert kinds == [
        (1, "run_started", None),
        (2, "step_started", "h1"),
        (3, "x", None),
        (4, "step_finished", "h1"),
    ]
    assert [r.host for r in store.step_rows("r")] == ["h1"]
    assert "cannot record events" in warn.getvalue()  # and the operator, on stderr
    store.close()
