"""`engine.run(...)`: a run from Python prepared as `runbook run` prepares one."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

import engine
from engine.errors import UsageError
from engine.history.location import open_store
from engine.history.lock import LockHeld, LockHolder
from tests.helpers import cli, write

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart.yaml"


def test_the_docstring_example_runs_quickstart_with_defaults_filled() -> None:
    # The params it does not name (mount, disk_crit_pct, ...) come from the runbook.
    result = engine.run(QUICKSTART, params={"disk_warn_pct": "99"})
    assert result.exit_code in (0, 1, 2), result.to_dict()  # this machine's disk decides
    steps = {s.step_id: s for s in result.hosts["localhost"].steps}
    assert steps["disk"].state.value != "failed"
    (row,) = json.loads(cli("history", "--format", "json").stdout)
    assert row["id"] == result.run_id and row["exit_code"] == result.exit_code


def test_typed_params_are_checked_as_the_cli_checks_them() -> None:
    with pytest.raises(UsageError, match="unknown param"):
        engine.run(QUICKSTART, params={"disk_warm_pct": 70})
    with pytest.raises(UsageError, match="disk_warn_pct"):
        engine.run(QUICKSTART, params={"disk_warn_pct": "lots"})


def test_a_run_holding_the_hosts_keeps_an_embedded_run_out(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rb = write(
        tmp_path,
        f"""
        runbook: locked-out
        steps:
          - name: change
            shell: touch {marker}
        """,
    )
    store = open_store()
    try:
        holder = LockHolder(
            "locked-out", "localhost", "20261204-000000-abcdef", os.getpid(),
            socket.gethostname(), "2026-12-04T00:00:00+00:00",
        )  # fmt: skip
        assert store.try_lock(holder) is None
        with pytest.raises(LockHeld, match="already running on localhost"):
            engine.run(rb)
        assert not marker.exists()
        # Unrecorded, nothing is locked: it runs (as RUNBOOK_HISTORY=off does).
        result = engine.run(rb, record=False)
        assert result.exit_code == 0 and marker.exists()
    finally:
        store.close()


def test_gates_are_declined_unless_approved_and_reports_are_written(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        f"""
        runbook: gated
        steps:
          - name: restart
            id: restart
            confirm: Restart it?
            shell: touch {tmp_path}/restarted
        """,
    )
    declined = engine.run(rb)
    assert declined.exit_code == 4 and not (tmp_path / "restarted").exists()
    report = tmp_path / "run.html"
    approved = engine.run(rb, approve=["restart"], report=report, operator="alice")
    assert approved.exit_code == 0 and (tmp_path / "restarted").exists()
    assert "alice" in report.read_text()
    with pytest.raises(UsageError, match="restat"):
        engine.run(rb, approve=["restat"])
