"""The step type CONTRIBUTING.md shows how to write works as the page says:
registered, validated at load, run for real against a listening port."""

from __future__ import annotations

import re
import socket
import types
from pathlib import Path
from typing import Any

import pytest

from engine.errors import RunbookInvalid
from engine.format.loader import load_runbook
from engine.registry import RegistryError
from engine.steps.base import step_types
from tests.helpers import run_json, steps_of, write

PAGE = Path(__file__).resolve().parents[2] / "CONTRIBUTING.md"


def _example() -> types.ModuleType:
    [code] = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    module = types.ModuleType("contributing_example")
    exec(compile(code, str(PAGE), "exec"), module.__dict__)
    return module


@pytest.fixture
def tcp(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example registered for one test only: other tests see the built-ins alone."""
    from engine.steps import base

    cls = _example().TcpStep
    monkeypatch.setitem(step_types._items, "tcp", cls)
    monkeypatch.setitem(base._instances, "tcp", cls())
    return cls


def test_the_example_step_type_runs_in_a_runbook(tmp_path: Path, tcp: Any) -> None:
    with socket.socket() as listener, socket.socket() as closed:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: refused
        rb = write(
            tmp_path,
            f"""
            runbook: tcp-check
            steps:
              - name: listening
                timeout: 5s
                tcp: "127.0.0.1:{listener.getsockname()[1]}"
              - name: refused
                ignore_errors: true
                tcp: {{host: 127.0.0.1, port: {closed.getsockname()[1]}}}
            """,
        )
        code, doc = run_json(rb)
    steps = steps_of(doc)
    assert code == 0
    assert steps["listening"]["state"] == "ok" and steps["listening"]["data"]["connect_ms"] >= 0
    assert steps["refused"]["state"] == "failed" and "tcp error" in steps["refused"]["error"]


def test_the_example_body_is_checked_before_anything_runs(tmp_path: Path, tcp: Any) -> None:
    rb = write(tmp_path, "runbook: bad\nsteps:\n  - name: x\n    tcp: {host: h, port: 70000}\n")
    with pytest.raises(RunbookInvalid, match=r"steps\[0\]\.tcp\.port"):
        load_runbook(rb)


def test_a_name_registered_twice_is_refused(tcp: Any) -> None:
    with pytest.raises(RegistryError, match="registered twice"):
        step_types.register("tcp", tcp)
