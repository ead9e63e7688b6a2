"""One run of a runbook per host at a time: a live holder refuses, a dead one is taken over."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.history import open_store
from engine.history.lock import LockHeld, acquire_locks
from engine.history.store import LockHolder
from tests.fixtures.history import engine_env
from tests.helpers import cli, write

SLOW = """
runbook: locked
steps:
  - name: hold
    shell: "echo started >> counter; while [ ! -f go ]; do sleep 0.05; done"
  - name: after
    shell: "echo after >> counter"
"""


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first run never started"
        time.sleep(0.05)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgres":
        monkeypatch.setenv("RUNBOOK_HISTORY", request.getfixturevalue("pg_history_dsn"))
    return request.param


def test_second_concurrent_run_is_refused_naming_the_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.chdir(tmp_path)
    rb = write(tmp_path, SLOW)
    first = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb)],
        cwd=tmp_path,
        env=engine_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(tmp_path / "counter", first)
        holder = json.loads(cli("history", "--format", "json").stdout)[0]
        res = cli("run", rb)
        assert res.exit_code == 4
        assert "already running on localhost" in res.output
        assert holder["id"] in res.output and f"pid {first.pid}" in res.output
        # The refused run executed nothing.
        assert (tmp_path / "counter").read_text().split() == ["started"]
        # A dry run changes nothing, so it does not need the lock.
        assert cli("run", rb, "--dry-run").exit_code == 0
    finally:
        (tmp_path / "go").touch()
        out, err = first.communicate(timeout=30)
    assert first.returncode == 0, (out, err)
    # Released at the end: the next run goes ahead.
    assert cli("run", rb).exit_code == 0
    assert (tmp_path / "counter").read_text().split() == ["started", "after", "started", "after"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_lock_of_a_dead_process_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.chdir(tmp_path)  # the runbook writes ./counter
    store = open_store()
    try:
        stale = LockHolder(
            "locked",
            "localhost",
            "19990101-000000-dead00",
            _dead_pid(),
            socket.gethostname(),
            "1999-01-01T00:00:00+00:00",
        )
        assert store.try_lock(stale) is None
    finally:
        store.close()
    rb = write(tmp_path, SLOW.replace("while [ ! -f go ]; do sleep 0.05; done", "true"))
    res = cli("run", rb)
    assert res.exit_code == 0, res.output
    store = open_store()
    try:
        assert store.dump()["locks"] == []
    finally:
        store.close()


def test_lock_of_another_control_node_is_honoured(backend: str) -> None:
    store = open_store()
    try:
        other = LockHolder(
            "locked",
            "db1",
            "20260101-000000-abcdef",
            1,
            "some-other-bastion",
            "2026-01-01T00:00:00+00:00",
        )
        assert store.try_lock(other) is None
        with pytest.raises(LockHeld) as info:
            acquire_locks(store, "locked", ["db0", "db1"], "20260101-000001-ffffff")
        assert "some-other-bastion" in str(info.value)
        # All or nothing: db0 was released again when db1 refused.
        assert {lk["host"] for lk in store.dump()["locks"]} == {"db1"}
        # The same runbook on other hosts, or another runbook, is not blocked.
        assert acquire_locks(store, "locked", ["db2"], "r2") == ["db2"]
        assert acquire_locks(store, "other-runbook", ["db1"], "r3") == ["db1"]
    finally:
        store.close()


def test_lock_released_when_the_engine_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.execution import runner

    def boom(run):  # an engine bug, after the lock was taken
        raise RuntimeError("engine bug")

    monkeypatch.setattr(runner, "run_runbook", boom)
    monkeypatch.chdir(tmp_path)
    rb = write(tmp_path, SLOW)
    res = cli("run", rb)
    assert res.exit_code == 70 and "internal error: RuntimeError" in res.stderr, res.output
    store = open_store()
    try:
        assert store.dump()["locks"] == []
    finally:
        store.close()
