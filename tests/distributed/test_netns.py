"""A zone the controller cannot reach: its host lives in a network namespace.

The zone's host is a real sshd on an address that exists only inside a
network namespace (tests/distributed/netns.py); the root namespace, where
the controller runs, has no way to it. Only the broker, on the veth between
the two, is reachable from both sides. So a run without --broker cannot reach
the host, and a run through a `runbook worker` started inside the namespace
does, as it would in a datacenter behind its own firewall.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.distributed.seal import new_key
from tests.distributed.netns import (
    Broker,
    InsideSSHD,
    Namespace,
    redis_on,
    sshd_inside,
    zone_namespace,
)
from tests.fixtures.workers import Worker
from tests.helpers import cli, write

pytestmark = [pytest.mark.distributed, pytest.mark.ssh]

RUNBOOK = """
runbook: where-am-i
description: Says which network namespace and addresses it ran in
hosts: all
steps:
  - id: where
    name: Where it ran
    shell: "ip netns identify $$; ip -4 -o addr show; echo reached"
"""


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    with zone_namespace() as ns:
        yield ns


@pytest.fixture
def ns_broker(namespace: Namespace, tmp_path: Path) -> Iterator[Broker]:
    with redis_on(namespace.outside, tmp_path) as broker:
        yield broker


@pytest.fixture
def ns_sshd(namespace: Namespace, tmp_path: Path) -> Iterator[InsideSSHD]:
    with sshd_inside(namespace, tmp_path / "sshd") as server:
        yield server


def start_worker(ns: Namespace, zone: str, broker: str, key: str, log: Path) -> Worker:
    """`runbook worker` inside the namespace; back once Celery says it is ready."""
    env = {**os.environ, "RUNBOOK_WORKER_KEY": key, "RUNBOOK_HISTORY": "off"}
    argv = ns.command(
        sys.executable, "-m", "engine", "worker", "--zone", zone, "--broker", broker,
        "--name", "inside", "-v",
    )  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    worker = Worker("inside", zone, proc, log)
    deadline = time.monotonic() + 30
    while "ready." not in worker.output():
        if proc.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise AssertionError(f"worker in {ns.name} did not start:\n{worker.output()}")
        time.sleep(0.1)
    return worker


def test_a_worker_inside_the_zone_reaches_what_the_controller_cannot(
    tmp_path: Path,
    namespace: Namespace,
    ns_broker: Broker,
    ns_sshd: InsideSSHD,
    runbook_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zone = f"zn-{uuid.uuid4().hex[:6]}"
    key = new_key()
    monkeypatch.setenv("RUNBOOK_WORKER_KEY", key)
    monkeypatch.setenv("RUNBOOK_WORKER_PICKUP", "20")  # a lost walk fails the test in time
    rb = write(tmp_path, RUNBOOK)
    inv = write(
        tmp_path,
        f"""
        hosts:
          inner1:
            address: {ns_sshd.address}
            connection: ssh
            zone: {zone}
            user: root
            port: {ns_sshd.port}
            key_file: {ns_sshd.client_key}
            known_hosts: {ns_sshd.known_hosts}
            host_key_policy: strict
            connect_timeout: 2
          here:
            connection: local
        """,
        "inv.yaml",
    )

    # (1) From the controller's namespace the sshd's address cannot be reached
    # (sshd_inside already read its banner from inside the namespace).
    started = time.monotonic()
    with pytest.raises(OSError):
        socket.create_connection((ns_sshd.address, ns_sshd.port), timeout=2).close()
    assert time.monotonic() - started < 2.5

    # (2) Without a broker the controller walks inner1 itself, and cannot.
    alone = cli("run", str(rb), "-i", str(inv), "--format", "json")
    assert alone.exit_code != 0, alone.output
    doc = json.loads(alone.stdout)
    assert doc["hosts"]["inner1"]["state"] == "unreachable", doc["hosts"]["inner1"]
    assert "cannot connect" in doc["hosts"]["inner1"]["unreachable"]  # not a key or login problem
    assert doc["hosts"]["here"]["steps"][0]["state"] == "ok"
    assert "have a zone" in alone.stderr

    # (3) Through a worker inside the namespace, inner1 is reached.
    worker = start_worker(namespace, zone, ns_broker.url, key, tmp_path / "worker.log")
    try:
        result = cli("run", str(rb), "-i", str(inv), "--broker", ns_broker.url, "--format", "json")
    finally:
        worker.stop()
    assert result.exit_code == 0, f"{result.output}\n--- worker:\n{worker.output()}"
    doc = json.loads(result.stdout)
    inner, here = doc["hosts"]["inner1"], doc["hosts"]["here"]
    assert inner.get("worker") == "inside" and "worker" not in here
    said = inner["steps"][0]["data"]["stdout"]
    assert said.splitlines()[0] == namespace.name  # the step's shell ran in the namespace
    assert f"inet {namespace.hidden}/32" in said and said.rstrip().endswith("reached")
    # `here` ran on the controller, in the root namespace: no namespace, no hidden address.
    local = here["steps"][0]["data"]["stdout"]
    assert namespace.name not in local and namespace.hidden not in local
    assert local.rstrip().endswith("reached")
    # And the walk went in over SSH: the inside sshd accepted the client key.
    assert "Accepted publickey for root" in ns_sshd.log.read_text()
