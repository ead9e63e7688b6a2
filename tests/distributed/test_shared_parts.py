"""What a zoned host's walk asks of the controller: approvals, run_once, secrets.

Runs go through engine.execution.runner in this process (the controller), so
the operator's prompt function is this test's: an answer given here reaches
the step on the worker, which shows it was asked on the controller.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from engine.execution.approvals import Operator
from engine.execution.runner import Run, Runner
from engine.format.loader import load_runbook
from engine.inventory.host import Host
from engine.redaction import Redactor
from engine.results import RunResult
from engine.secrets import Secrets
from tests.fixtures.workers import REDIS_BROKER, ZonePair
from tests.helpers import write


def run(
    rb: Path,
    hosts: list[Host],
    broker: str,
    operator: Operator | None = None,
    params: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> RunResult:
    redactor = Redactor()
    return Runner(
        Run(
            runbook=load_runbook(rb),
            hosts=hosts,
            params=params or {},
            operator=operator or Operator("tester"),
            redactor=redactor,
            secrets=Secrets(redactor, environ=environ or {}),
            broker=broker,
        )
    ).execute()


def test_an_approval_for_a_worker_step_is_asked_on_the_controller(
    tmp_path: Path, broker: str, zone_workers: ZonePair
) -> None:
    za = zone_workers.za
    rb = write(
        tmp_path,
        f"""
        runbook: gated
        description: A confirm gate before a change
        hosts: all
        steps:
          - id: change
            name: Change
            confirm: "Restart on {{{{ host.name }}}}?"
            shell: echo "changed by $WHERE" > {tmp_path}/{{{{ host.name }}}}.done
        """,
    )
    asked: list[str] = []

    def ask(question: str, choices: list[str]) -> str:
        asked.append(question)
        return "yes" if "a1" in question else "no"

    operator = Operator("alice", interactive=True, ask=ask)
    hosts = [Host(n, connection="local", zone=za) for n in ("a1", "a2")]
    result = run(rb, hosts, broker, operator)
    assert sorted(asked) == ["[a1] Restart on a1?", "[a2] Restart on a2?"]
    assert (tmp_path / "a1.done").read_text() == "changed by worker-a\n"
    assert not (tmp_path / "a2.done").exists()  # declined: never ran on the worker
    a1, a2 = result.hosts["a1"], result.hosts["a2"]
    assert a1.worker == a2.worker == "wa"
    assert a1.state.value == "ok" and a1.steps[0].approved_by == "alice"
    assert a2.state.value == "aborted" and "not approved" in (a2.aborted or "")


def test_run_once_runs_once_across_zones_and_the_controller(
    tmp_path: Path, broker: str, zone_workers: ZonePair
) -> None:
    za, zb = zone_workers.za, zone_workers.zb
    count = tmp_path / "count"
    rb = write(
        tmp_path,
        f"""
        runbook: once
        description: One migration for the whole fleet
        hosts: all
        steps:
          - id: migrate
            name: Migrate once
            run_once: true
            shell: echo "${{WHERE:-controller}}" >> {count}; echo migrated
          - id: use
            name: Use its result
            shell: echo "{{{{ steps.migrate.stdout | trim }}}}"
        """,
    )
    hosts = [
        Host("a1", connection="local", zone=za),
        Host("b1", connection="local", zone=zb),
        Host("here", connection="local"),
    ]
    result = run(rb, hosts, broker)
    assert len(count.read_text().splitlines()) == 1
    for host in ("a1", "b1", "here"):
        steps = result.hosts[host].steps
        assert steps[1].data["stdout"] == "migrated\n", host


def test_secrets_cross_the_broker_sealed_and_are_masked(
    tmp_path: Path, zone_workers: ZonePair, broker: str
) -> None:
    """secret() is read on the controller when the worker's template needs it;
    on Redis, every command the broker saw during the run is watched: neither
    the secret nor the secret param appears in clear."""
    za = zone_workers.za
    token = "tok-7f3a9c2e51"
    param = "pw-51c0ffee77"
    rb = write(
        tmp_path,
        """
        runbook: secrets
        description: Uses a secret on a worker
        hosts: all
        params:
          password: {type: str, secret: true}
        steps:
          - id: use
            name: Use the token
            shell:
              cmd: echo "token={{ secret('API_TOKEN') }} pw={{ params.password }}"; printf 'len=%s' "$(printf %s "$X" | wc -c)"
              env: {X: "{{ secret('API_TOKEN') }}"}
        """,
    )
    seen: list[str] = []
    monitor = None
    if broker == REDIS_BROKER:
        monitor = _watch_redis(seen)
    hosts = [Host("a1", connection="local", zone=za)]
    result = run(rb, hosts, broker, params={"password": param}, environ={"API_TOKEN": token})
    if monitor is not None:
        monitor()
        assert any("runbook:mailbox" in line for line in seen)  # it did watch the run
        joined = "\n".join(seen)
        assert token not in joined and param not in joined
    step = result.hosts["a1"].steps[0]
    assert step.state.value == "ok", step.error
    assert "len=14" in step.data["stdout"]  # the worker had the value
    assert token not in step.data["stdout"] and param not in step.data["stdout"]


def _watch_redis(seen: list[str]) -> Callable[[], None]:
    """Collect `redis-cli monitor` lines until the returned stop() is called."""
    proc = subprocess.Popen(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "monitor"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout
    out.readline()  # "OK": watching

    def read() -> None:
        for line in out:
            seen.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()

    def stop() -> None:
        redis.Redis.from_url(REDIS_BROKER).ping()  # one more line, then stop
        proc.terminate()
        proc.wait(5)
        thread.join(5)

    return stop
