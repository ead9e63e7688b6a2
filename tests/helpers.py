"""Small helpers shared by tests: write a runbook, run the CLI in-process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from engine.cli import main


def write(tmp_path: Path, text: str, name: str = "rb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(
        main, [str(a) for a in args], env=env, input=input, catch_exceptions=False
    )


def run_json(
    path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Run a runbook with --format json; return (exit code, the JSON document)."""
    result = cli("run", str(path), "--format", "json", *args, env=env)
    return result.exit_code, json.loads(result.stdout)


def steps_of(doc: dict[str, Any], host: str = "localhost") -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in doc["hosts"][host]["steps"]}


def step_context(
    step_id: str = "t", timeout: float | None = None, dry_run: bool = False, **kw: Any
) -> Any:
    """A StepContext on localhost (local connection), for calling a step type directly."""
    from engine.connections.local import LocalConnection
    from engine.inventory.host import localhost
    from engine.redaction import Redactor
    from engine.steps.base import StepContext

    host = localhost()
    redactor = kw.pop("redactor", None)  # an empty Redactor is falsy: test for None
    return StepContext(
        host=host,
        step_id=step_id,
        timeout=timeout,
        dry_run=dry_run,
        redactor=Redactor() if redactor is None else redactor,
        get_connection=kw.pop("get_connection", lambda: LocalConnection(host)),
        **kw,
    )


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Start `work` in a daemon thread (a step the test cancels from outside);
    what it raises is collected in the list, for the test to check."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # checked by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@contextmanager
def named_python(
    directory: Path, prefix: str, code: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Python process under a name of its own (/proc/PID/comm is the
    executable's name: a copy of the interpreter), started once `code` printed
    "ready"; killed afterwards. What the process runbooks look for by name."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    exe = directory / name
    shutil.copy(sys.executable, exe)
    proc = subprocess.Popen([str(exe), "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    try:
        yield name, proc
    finally:
        proc.kill()
        proc.wait()


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """A server the tests started: asked to stop, killed if it will not in `timeout` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
