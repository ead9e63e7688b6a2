"""Ctrl-C on the controller, and a worker killed mid-walk, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.workers import StartWorker
from tests.helpers import cli, write


def _wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _sleeping(tag: str) -> bool:
    """Whether the step's `sleep` (named by its unique duration) still runs."""
    return subprocess.run(["pgrep", "-f", f"sleep {tag}"], capture_output=True).returncode == 0


def _stops_sleeping(tag: str, seconds: float = 5) -> bool:
    """Whether the step's `sleep` is gone within `seconds` (its kill travels)."""
    deadline = time.monotonic() + seconds
    while _sleeping(tag):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _runbook(tmp_path: Path, tag: str) -> Path:
    return write(
        tmp_path,
        f"""
        runbook: long
        description: A quick step, then a long one
        hosts: all
        steps:
          - id: count
            name: Count
            shell: echo x >> {tmp_path}/count-{{{{ host.name }}}}
          - id: long
            name: Long
            shell: touch {tmp_path}/started-{{{{ host.name }}}}; sleep {tag}; touch {tmp_path}/slept
          - id: after
            name: After
            shell: touch {tmp_path}/after-{{{{ host.name }}}}
        """,
    )


def _inventory(tmp_path: Path, zone: str) -> Path:
    return write(
        tmp_path,
        f"""
        defaults: {{connection: local}}
        hosts:
          a1: {{zone: {zone}}}
        """,
        "inv.yaml",
    )


def test_ctrl_c_twice_kills_the_step_on_the_worker(
    tmp_path: Path, broker: str, workers: StartWorker, zone_names: Callable[[str], str]
) -> None:
    za = zone_names("za")
    workers(za, "wa")
    tag = f"3{uuid.uuid4().int % 1000}.5"  # a duration no other process sleeps
    rb, inv = _runbook(tmp_path, tag), _inventory(tmp_path, za)
    controller = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), "-i", str(inv), "--broker", broker,
         "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    try:
        _wait_for(tmp_path / "started-a1")
        assert _sleeping(tag)
        controller.send_signal(signal.SIGINT)  # first: nothing new starts
        time.sleep(1.5)
        assert controller.poll() is None and _sleeping(tag)  # the step runs on
        controller.send_signal(signal.SIGINT)  # second: kill it, on the worker's host
        out, err = controller.communicate(timeout=20)
    finally:
        if controller.poll() is None:
            controller.kill()
    assert controller.returncode == 4, err.decode()
    assert _stops_sleeping(tag)
    assert not (tmp_path / "slept").exists() and not (tmp_path / "after-a1").exists()
    doc = json.loads(out)
    a1 = doc["hosts"]["a1"]
    # As in a local run: the killed step failed, nothing after it ran, the run aborted.
    assert a1["worker"] == "wa" and doc["state"] == "aborted"
    assert [(s["id"], s["state"]) for s in a1["steps"]] == [("count", "ok"), ("long", "failed")], a1


def test_a_killed_worker_leaves_its_host_unreachable_and_resume_reruns_nothing_done(
    tmp_path: Path,
    broker: str,
    workers: StartWorker,
    zone_names: Callable[[str], str],
) -> None:
    za = zone_names("za")
    first = workers(za, "wa")
    tag = f"4{uuid.uuid4().int % 1000}.5"
    rb, inv = _runbook(tmp_path, tag), _inventory(tmp_path, za)
    env = {**os.environ, "RUNBOOK_WORKER_DEAD_AFTER": "2"}
    controller = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), "-i", str(inv), "--broker", broker,
         "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        _wait_for(tmp_path / "started-a1")
        first.kill()  # SIGKILL, mid-step
        out, err = controller.communicate(timeout=30)
    finally:
        if controller.poll() is None:
            controller.kill()
        subprocess.run(["pkill", "-f", f"sleep {tag}"])  # the dead worker's orphan
    assert controller.returncode == 3, err.decode()
    doc = json.loads(out)
    a1 = doc["hosts"]["a1"]
    assert a1["state"] == "unreachable"
    assert "worker wa stopped answering during step long" in a1["unreachable"]
    assert [s["id"] for s in a1["steps"]] == ["count"]  # what it reported, kept

    # Resume with a new worker: `count` succeeded and is kept (not run again);
    # `long` may have run, so it is skipped unless --rerun-unknown.
    workers(za, "wa2")
    resumed = cli("resume", doc["run_id"], "--broker", broker, "--format", "json")
    assert (tmp_path / "count-a1").read_text() == "x\n"
    again = json.loads(resumed.stdout)
    steps = {s["id"]: s for s in again["hosts"]["a1"]["steps"]}
    assert steps["count"]["skip_reason"] == "resumed: already done"
    assert "may have run" in steps["long"]["skip_reason"]
    assert steps["after"]["state"] == "ok"
    assert again["hosts"]["a1"]["worker"] == "wa2"
    assert (tmp_path / "after-a1").exists()


def test_sigterm_on_the_controller_kills_the_step_on_the_worker(
    tmp_path: Path, broker: str, workers: StartWorker, zone_names: Callable[[str], str]
) -> None:
    """systemd, `timeout`, a CI cancel: one SIGTERM is Ctrl-C twice, on the workers too."""
    za = zone_names("za")
    workers(za, "wa")
    tag = f"5{uuid.uuid4().int % 1000}.5"
    rb, inv = _runbook(tmp_path, tag), _inventory(tmp_path, za)
    controller = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), "-i", str(inv), "--broker", broker],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for(tmp_path / "started-a1")
        controller.send_signal(signal.SIGTERM)
        _out, err = controller.communicate(timeout=20)
    finally:
        if controller.poll() is None:
            controller.kill()
    assert controller.returncode == 4, err.decode()
    assert _stops_sleeping(tag)
    assert not (tmp_path / "after-a1").exists()


def test_workers_stop_before_the_next_step_when_the_controller_dies(
    tmp_path: Path, broker: str, workers: StartWorker, zone_names: Callable[[str], str]
) -> None:
    za = zone_names("za")
    worker = workers(za, "wa", RUNBOOK_WORKER_DEAD_AFTER="2")
    rb, inv = _runbook(tmp_path, "1.5"), _inventory(tmp_path, za)
    controller = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), "-i", str(inv), "--broker", broker],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _wait_for(tmp_path / "started-a1")
    controller.kill()  # SIGKILL: no goodbye reaches the worker
    controller.wait(10)
    _wait_for(tmp_path / "slept")  # the running step was left to finish
    deadline = time.monotonic() + 15
    while "controller stopped answering" not in worker.output():
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.1)
    assert not (tmp_path / "after-a1").exists()  # the next step never started
