"""Distributed runs with real `runbook worker` processes, on Redis and RabbitMQ.

Every host here has `connection: local`: on a worker, "local" is the worker's
own process, so each step prints $WHERE, set differently in each worker's
environment, to show which process ran it. The controller has no $WHERE.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.workers import StartWorker, ZonePair
from tests.helpers import cli, write

RUNBOOK = """
runbook: where-it-runs
description: Each host says which process ran its steps
hosts: all
steps:
  - id: where
    name: Where it ran
    shell: echo "${WHERE:-controller}"
  - id: add
    name: Add two numbers
    shell: echo $((20 + 22))
    thresholds:
      answer: {value: "result.stdout | int", warn: "> 100"}
"""


def inventory(tmp_path: Path, za: str, zb: str) -> Path:
    return write(
        tmp_path,
        f"""
        defaults: {{connection: local}}
        groups:
          east:
            zone: {za}
            hosts: {{a1: {{}}, a2: {{}}}}
          west:
            hosts: {{b1: {{zone: {zb}}}}}
        hosts:
          here: {{}}
        """,
        "inv.yaml",
    )


def test_each_host_runs_in_its_zone_worker(
    tmp_path: Path,
    broker: str,
    zone_workers: ZonePair,
    runbook_home: Path,
) -> None:
    za, zb = zone_workers.za, zone_workers.zb
    rb = write(tmp_path, RUNBOOK)
    inv = inventory(tmp_path, za, zb)

    result = cli("run", str(rb), "-i", str(inv), "--broker", broker, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    said = {h: r["steps"][0]["data"]["stdout"].strip() for h, r in doc["hosts"].items()}
    assert said == {"a1": "worker-a", "a2": "worker-a", "b1": "worker-b", "here": "controller"}
    workers_of = {h: r.get("worker") for h, r in doc["hosts"].items()}
    assert workers_of == {"a1": "wa", "a2": "wa", "b1": "wb", "here": None}
    assert doc["hosts"]["a1"]["steps"][1]["metrics"]["answer"]["value"] == 42

    # The same document shape as a run without workers, the worker's name aside.
    local = cli("run", str(rb), "-i", str(inv), "--format", "json")
    assert local.exit_code == 0, local.output
    assert "have a zone" in local.stderr  # said: without a broker they run from here
    local_doc = json.loads(local.stdout)
    assert _shape(doc) == _shape(local_doc)

    # The history holds the worker of each host.
    con = sqlite3.connect(runbook_home / "history.db")
    rows = con.execute(
        "SELECT host, payload FROM events WHERE run_id = ? AND kind = 'host_finished'",
        (doc["run_id"],),
    ).fetchall()
    assert {h: json.loads(p)["worker"] for h, p in rows} == {
        "a1": "wa", "a2": "wa", "b1": "wb", "here": "",
    }  # fmt: skip
    shown = cli("history", doc["run_id"], "--format", "json")
    assert json.loads(shown.stdout)["hosts"]["b1"]["worker"] == "wb"


def test_console_reads_as_a_local_run(tmp_path: Path, broker: str, zone_workers: ZonePair) -> None:
    za, zb = zone_workers.za, zone_workers.zb
    rb = write(tmp_path, RUNBOOK)
    inv = inventory(tmp_path, za, zb)
    remote = cli("run", str(rb), "-i", str(inv), "--broker", broker, "--no-color")
    local = cli("run", str(rb), "-i", str(inv), "--no-color")
    assert remote.exit_code == local.exit_code == 0
    assert "have a zone" not in remote.output
    local_lines = [x for x in _console_lines(local.output) if not x.startswith("note: ")]
    assert _console_lines(remote.output) == local_lines


def _shape(doc: dict[str, object]) -> object:
    """Keys and types, recursively, without the worker's name and the values."""
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in sorted(doc.items()) if k not in ("worker",)}
    if isinstance(doc, list):
        return [_shape(v) for v in doc]
    return type(doc).__name__


def _console_lines(text: str) -> list[str]:
    """The console output with run ids, durations and timestamps masked."""
    text = re.sub(r"\d{8}-\d{6}-[0-9a-f]{6}", "RUN", text)
    text = re.sub(r"\d+(\.\d+)?(ms|s)\b", "T", text)
    text = re.sub(r"worker-[ab]|controller", "WHERE", text)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return sorted(lines)


@pytest.mark.parametrize("strategy", ["linear"])
def test_linear_rounds_hold_across_zones(
    tmp_path: Path,
    broker: str,
    zone_workers: ZonePair,
    strategy: str,
) -> None:
    """Every host ends step 1 before any starts step 2, wherever it runs."""
    za, zb = zone_workers.za, zone_workers.zb
    log = tmp_path / "times.log"
    rb = write(
        tmp_path,
        f"""
        runbook: rounds
        description: Timestamps around two steps
        hosts: all
        strategy: {strategy}
        steps:
          - id: one
            name: One, slow on some hosts
            shell: |
              case "{{{{ host.name }}}}" in a1) sleep 1.5;; b1) sleep 0.7;; esac
              echo "one-end {{{{ host.name }}}} $(date +%s.%N)" >> {log}
          - id: two
            name: Two
            shell: echo "two-start {{{{ host.name }}}} $(date +%s.%N)" >> {log}
        """,
    )
    inv = inventory(tmp_path, za, zb)
    result = cli("run", str(rb), "-i", str(inv), "--broker", broker)
    assert result.exit_code == 0, result.output
    marks = [line.split() for line in log.read_text().splitlines()]
    ends = [float(t) for kind, _h, t in marks if kind == "one-end"]
    starts = [float(t) for kind, _h, t in marks if kind == "two-start"]
    assert len(ends) == len(starts) == 4
    assert max(ends) <= min(starts), marks


def test_worker_with_another_key_is_refused(
    tmp_path: Path,
    broker: str,
    workers: StartWorker,
    zone_workers: ZonePair,
    zone_names: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that cannot open the task refuses it; the host waits, then is
    unreachable, and nothing ran there."""
    za, zb = zone_names("za"), zone_workers.zb
    wrong = workers(za, "wrong", key="x" * 40)
    monkeypatch.setenv("RUNBOOK_WORKER_PICKUP", "3")
    marker = tmp_path / "ran"
    rb = write(
        tmp_path,
        f"""
        runbook: refused
        description: Touches a file where it runs
        hosts: all
        steps:
          - id: touch
            name: Touch
            shell: touch {marker}-{{{{ host.name }}}}
        """,
    )
    inv = inventory(tmp_path, za, zb)
    result = cli("run", str(rb), "-i", str(inv), "--broker", broker, "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 3
    for host in ("a1", "a2"):
        assert doc["hosts"][host]["state"] == "unreachable"
        assert (
            f"no worker of zone {za} took the host within 3s" in doc["hosts"][host]["unreachable"]
        )
        assert not Path(f"{marker}-{host}").exists()
    assert doc["hosts"]["b1"]["state"] == "ok"
    assert "refused a walk task" in wrong.output()


def test_no_key_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOK_WORKER_KEY", raising=False)
    monkeypatch.delenv("RUNBOOK_WORKER_KEY_FILE", raising=False)
    rb = write(tmp_path, RUNBOOK)
    inv = inventory(tmp_path, "za", "zb")
    result = cli("run", str(rb), "-i", str(inv), "--broker", "redis://127.0.0.1:6379/9")
    assert result.exit_code == 64
    assert "RUNBOOK_WORKER_KEY" in result.output
    assert "runbook worker --new-key" in result.output
    history = Path(os.environ["RUNBOOK_HOME"]) / "history.db"
    if history.exists():  # said before the run: nothing recorded
        assert sqlite3.connect(history).execute("SELECT count(*) FROM runs").fetchone() == (0,)


def test_serial_and_max_fail_hold_across_zones(
    tmp_path: Path, broker: str, zone_workers: ZonePair
) -> None:
    """serial: 1 walks one host at a time wherever it runs; a host failing on a
    worker stops the run before the next batch, as a local failure would."""
    rb = write(
        tmp_path,
        f"""
        runbook: canary
        description: One host at a time, stop at the first failure
        hosts: all
        serial: 1
        max_fail: 0
        steps:
          - id: mark
            name: Mark
            shell: echo {{{{ host.name }}}} >> {tmp_path}/order; test {{{{ host.name }}}} != a2
        """,
    )
    inv = inventory(tmp_path, zone_workers.za, zone_workers.zb)
    result = cli("run", str(rb), "-i", str(inv), "--broker", broker, "--format", "json")
    assert result.exit_code == 3, result.output
    assert (tmp_path / "order").read_text().split() == ["a1", "a2"]
    doc = json.loads(result.stdout)
    assert doc["hosts"]["a2"]["state"] == "failed" and doc["hosts"]["a2"]["worker"] == "wa"
    assert doc["hosts"]["b1"].get("not_started") and doc["hosts"]["here"].get("not_started")
