"""Runbooks over SSH through the CLI: an inventory of five real sshd hosts
(tests/fixtures/sshd.py, 127.0.0.11-15), fan-out, unreachable hosts, max_fail,
serial batches, strategies, run_once, --limit, become, tunnels and s3 from_host.
The inventory's SSH fields end to end are in test_ssh_inventory.py.

Order is proven with an append-only file the hosts write to (sshd runs on this
machine, so the file is shared), never with timings.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.s3server import S3Server
from tests.fixtures.services import PgDatabase
from tests.fixtures.sshd import SSHServer
from tests.helpers import cli, run_json, steps_of, write

NAMES = [f"node{i}" for i in range(1, 6)]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def inventory(
    sshd: SSHServer, tmp_path: Path, *, dead: tuple[str, ...] = (), **defaults: Any
) -> Path:
    """A native inventory of the five sshd addresses; `dead` hosts get a closed port."""
    hosts: dict[str, Any] = {}
    for name, address in zip(NAMES, sshd.addresses, strict=True):
        hosts[name] = {"address": address, "vars": {"rank": int(name[-1])}}
        if name in dead:
            hosts[name]["port"] = _closed_port()
    doc = {
        "defaults": {
            "connection": "ssh",
            "user": "root",
            "port": sshd.port,
            "key_file": str(sshd.client_key),
            "known_hosts": str(sshd.known_hosts),
            "host_key_policy": "strict",
            "connect_timeout": 3,
            **defaults,
        },
        "groups": {
            "fleet": {"hosts": hosts},
            "odd": {"hosts": {n: {} for n in NAMES if int(n[-1]) % 2}},
        },
    }
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def logins(sshd: SSHServer) -> dict[str, int]:
    """TCP connections sshd accepted so far, per listening address (its VERBOSE log)."""
    text = sshd.log_text()
    return {
        a: len(re.findall(rf"Connection from \S+ port \d+ on {re.escape(a)} port ", text))
        for a in sshd.addresses
    }


def log_lines(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in path.read_text().splitlines()]  # type: ignore[misc]


def run(rb: Path, inv: Path, *args: str) -> tuple[int, dict]:
    return run_json(rb, "-i", str(inv), *args)


def test_five_hosts_each_run_on_their_own_address(sshd: SSHServer, tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
runbook: fleet-check
hosts: fleet
steps:
  - name: Where am I
    id: where
    shell: 'echo "$SSH_CONNECTION" | cut -d" " -f3'
  - name: Same address as the inventory
    assert: ["steps.where.stdout | trim == host.address"]
  - name: Rank as a metric
    id: rank
    shell: "echo {{ host.vars.rank }}"
    thresholds:
      rank: {value: result.stdout | int, warn: "> 3", critical: "> 4"}
""",
    )
    before = logins(sshd)
    code, doc = run(rb, inventory(sshd, tmp_path))
    assert code == 2, doc  # node5's rank is critical: the run is the worst of its hosts
    # Three steps, one SSH connection per host: the transport is reused.
    after = logins(sshd)
    assert {a: after[a] - before[a] for a in after} == dict.fromkeys(sshd.addresses, 1)
    assert sorted(doc["hosts"]) == NAMES
    for name, address in zip(NAMES, sshd.addresses, strict=True):
        steps = steps_of(doc, name)
        assert steps["where"]["data"]["stdout"].strip() == address
        assert steps["same_address_as_the_inventory"]["state"] == "ok"
    assert steps_of(doc, "node4")["rank"]["state"] == "warn"
    assert steps_of(doc, "node5")["rank"]["state"] == "critical"


def test_an_unreachable_host_among_reachable_ones(sshd: SSHServer, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    rb = write(
        tmp_path,
        f"""
runbook: partial
hosts: fleet
steps:
  - name: Touch
    shell: "echo {{{{ host.name }}}} >> {out}"
  - name: Second
    shell: "true"
""",
    )
    code, doc = run(rb, inventory(sshd, tmp_path, dead=("node3",)))
    assert code == 3, doc
    assert doc["hosts"]["node3"]["state"] == "unreachable"
    reason = doc["hosts"]["node3"]["unreachable"]
    assert "node3" in reason and "connection refused" in reason
    assert sorted(out.read_text().split()) == ["node1", "node2", "node4", "node5"]
    for name in ("node1", "node2", "node4", "node5"):
        assert doc["hosts"][name]["state"] == "ok"


MAX_FAIL = """
runbook: max-fail
hosts: fleet
serial: 1
max_fail: {max_fail}
steps:
  - name: Fail on even ranks
    shell: "test $(( {{{{ host.vars.rank }}}} % 2 )) -eq 1"
  - name: Record
    shell: "echo {{{{ host.name }}}} >> {out}"
"""


@pytest.mark.parametrize(
    ("max_fail", "ran"), [(0, ["node1"]), (1, ["node1", "node3"]), ("'25%'", ["node1", "node3"])]
)
def test_max_fail_stops_scheduling_and_exits_3(
    sshd: SSHServer, tmp_path: Path, max_fail: object, ran: list[str]
) -> None:
    # Hosts failed: a failed rollout (3), not an operator's decision (4), which
    # CI and cron read as "not now".
    out = tmp_path / "ran"
    out.touch()
    rb = write(tmp_path, MAX_FAIL.format(max_fail=max_fail, out=out))
    code, doc = run(rb, inventory(sshd, tmp_path))
    assert code == 3, doc
    assert doc["state"] == "failed" and "max_fail exceeded" in doc["stopped"]
    assert out.read_text().split() == ran
    # Hosts after the stop never started, and say so.
    started = [h for h in NAMES if doc["hosts"][h]["steps"]]
    assert started == NAMES[: len(ran) * 2]
    for name in NAMES[len(ran) * 2 :]:
        assert doc["hosts"][name]["not_started"] is True
        assert doc["hosts"][name]["aborted"].startswith("not started: max_fail exceeded")


@pytest.mark.parametrize(
    ("serial", "batches"),
    [
        ("2", [["node1", "node2"], ["node3", "node4"], ["node5"]]),
        # Canaries: one host, then two, then the last size again for the rest.
        ("[1, 2]", [["node1"], ["node2", "node3"], ["node4", "node5"]]),
        ("[1, '60%']", [["node1"], ["node2", "node3", "node4"], ["node5"]]),
    ],
)
def test_serial_batches_finish_before_the_next_starts(
    sshd: SSHServer, tmp_path: Path, serial: str, batches: list[list[str]]
) -> None:
    out = tmp_path / "order"
    rb = write(
        tmp_path,
        f"""
runbook: rolling
hosts: fleet
serial: {serial}
steps:
  - name: Begin
    shell: "echo begin {{{{ host.name }}}} >> {out}"
  - name: End
    shell: "echo end {{{{ host.name }}}} >> {out}"
""",
    )
    code, doc = run(rb, inventory(sshd, tmp_path))
    assert code == 0, doc
    events = log_lines(out)
    position = {e: i for i, e in enumerate(events)}
    for earlier, later in pairwise(batches):
        last_end = max(position[("end", h)] for h in earlier)
        first_begin = min(position[("begin", h)] for h in later)
        assert last_end < first_begin, events
    for batch in batches:  # linear rounds: a batch's hosts all begin before any ends
        assert max(position[("begin", h)] for h in batch) < min(
            position[("end", h)] for h in batch
        ), events
    assert len(events) == 10


def test_serial_percentage(sshd: SSHServer, tmp_path: Path) -> None:
    out = tmp_path / "order"
    rb = write(
        tmp_path,
        f"""
runbook: rolling-pct
hosts: fleet
serial: "40%"
steps:
  - name: Begin
    shell: "echo begin {{{{ host.name }}}} >> {out}"
  - name: End
    shell: "echo end {{{{ host.name }}}} >> {out}"
""",
    )
    code, _ = run(rb, inventory(sshd, tmp_path))
    assert code == 0
    events = log_lines(out)
    # 40% of 5 = 2 hosts per batch: node3 begins only after node1 and node2 ended.
    assert events.index(("begin", "node3")) > max(
        events.index(("end", "node1")), events.index(("end", "node2"))
    )


STRATEGY = """
runbook: strategy
hosts: fleet
strategy: {strategy}
steps:
  - name: One
    shell: "sleep 0.0{{{{ 6 - host.vars.rank }}}}; echo one {{{{ host.name }}}} >> {out}"
  - name: Two
    shell: "echo two {{{{ host.name }}}} >> {out}"
"""


def test_linear_strategy_finishes_each_step_everywhere_first(
    sshd: SSHServer, tmp_path: Path
) -> None:
    out = tmp_path / "order"
    code, _ = run(
        write(tmp_path, STRATEGY.format(strategy="linear", out=out)), inventory(sshd, tmp_path)
    )
    assert code == 0
    kinds = [kind for kind, _ in log_lines(out)]
    assert kinds == ["one"] * 5 + ["two"] * 5


FREE = """
runbook: free
hosts: fleet
strategy: free
steps:
  - name: One
    timeout: 30s
    # node1 cannot finish its first step before node5 finished its second:
    # only the free strategy lets node5 run ahead (linear would time out here).
    shell: >-
      if [ {{{{ host.name }}}} = node1 ]; then
      while [ ! -f {done} ]; do sleep 0.05; done; fi;
      echo one {{{{ host.name }}}} >> {out}
  - name: Two
    shell: "echo two {{{{ host.name }}}} >> {out}; if [ {{{{ host.name }}}} = node5 ]; then touch {done}; fi"
"""


def test_free_strategy_lets_hosts_run_ahead(sshd: SSHServer, tmp_path: Path) -> None:
    out, done = tmp_path / "order", tmp_path / "node5-done"
    code, doc = run(write(tmp_path, FREE.format(out=out, done=done)), inventory(sshd, tmp_path))
    assert code == 0, doc
    events = log_lines(out)
    assert events.index(("two", "node5")) < events.index(("one", "node1"))
    assert len(events) == 10


def test_run_once_runs_on_one_host_and_shares_its_result(sshd: SSHServer, tmp_path: Path) -> None:
    out = tmp_path / "once"
    rb = write(
        tmp_path,
        f"""
runbook: once
hosts: fleet
steps:
  - name: Take a ticket
    id: ticket
    run_once: true
    shell: "echo {{{{ host.name }}}} >> {out}; echo ticket-$(cat /proc/sys/kernel/random/uuid)"
  - name: Everyone sees it
    shell: "echo {{{{ steps.ticket.stdout | trim }}}}"
""",
    )
    code, doc = run(rb, inventory(sshd, tmp_path))
    assert code == 0, doc
    assert out.read_text().split() == ["node1"]
    tickets = {steps_of(doc, h)["everyone_sees_it"]["data"]["stdout"].strip() for h in NAMES}
    assert len(tickets) == 1 and tickets.pop().startswith("ticket-")


def test_limit_and_forks(sshd: SSHServer, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    rb = write(
        tmp_path,
        f"""
runbook: limited
hosts: fleet
steps:
  - name: Begin
    shell: "echo begin {{{{ host.name }}}} >> {out}; sleep 0.05"
  - name: End
    shell: "echo end {{{{ host.name }}}} >> {out}"
""",
    )
    code, doc = run(rb, inventory(sshd, tmp_path), "--limit", "odd:!node5", "--forks", "1")
    assert code == 0, doc
    assert sorted(doc["hosts"]) == ["node1", "node3"]
    # One fork, linear: each step runs host after host, never two at once.
    assert log_lines(out) == [
        ("begin", "node1"),
        ("begin", "node3"),
        ("end", "node1"),
        ("end", "node3"),
    ]


def test_become_runs_the_step_as_another_user(sshd: SSHServer, tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        f"""
runbook: become
hosts: node1
steps:
  - name: Who
    id: who
    shell: {{cmd: "id -un", become: {sshd.become_user}}}
""",
    )
    code, doc = run(rb, inventory(sshd, tmp_path))
    assert code == 0, doc
    assert steps_of(doc, "node1")["who"]["data"]["stdout"].strip() == sshd.become_user


def test_sql_and_redis_steps_through_ssh_tunnels(
    sshd: SSHServer, tmp_path: Path, pg_database: PgDatabase, redis_prefix: str
) -> None:
    rb = write(
        tmp_path,
        f"""
runbook: tunnels
hosts: node2
steps:
  - name: Database through the host
    id: db
    sql:
      dsn: "postgresql://postgres@127.0.0.1:5432/{pg_database.name}"
      query: select inet_client_addr()::text as client, current_database() as db
      tunnel: true
  - name: Cache through the host
    id: cache
    redis:
      url: redis://127.0.0.1:6379/0
      commands: [[SET, "{redis_prefix}t", via-ssh], [GET, "{redis_prefix}t"]]
      tunnel: true
""",
    )
    code, doc = run(rb, inventory(sshd, tmp_path))
    assert code == 0, doc
    steps = steps_of(doc, "node2")
    assert steps["db"]["data"]["rows"][0]["db"] == pg_database.name
    # The connection reached PostgreSQL from the SSH host's side (sshd connects from
    # 127.0.0.1), not from the engine's own socket.
    assert steps["db"]["data"]["rows"][0]["client"].startswith("127.0.0.1")
    assert steps["cache"]["data"]["replies"] == ["OK", "via-ssh"]


def test_s3_upload_from_an_ssh_host_and_back(
    sshd: SSHServer, tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    payload = tmp_path / "dump.bin"
    payload.write_bytes(uuid.uuid4().bytes * 40_000)
    restored = tmp_path / "restored.bin"
    rb = write(
        tmp_path,
        f"""
runbook: s3-ssh
hosts: node4
steps:
  - name: Upload from the host
    id: up
    s3: {{action: put, bucket: {s3_bucket}, key: dumps/dump.bin, from_host: "{payload}",
         endpoint: "{s3_server.endpoint}", access_key: "{{{{ secret('S3_KEY') }}}}",
         secret_key: "{{{{ secret('S3_SECRET') }}}}"}}
  - name: Download to the host
    id: down
    s3: {{action: get, bucket: {s3_bucket}, key: dumps/dump.bin, to_host: "{restored}",
         endpoint: "{s3_server.endpoint}", access_key: "{{{{ secret('S3_KEY') }}}}",
         secret_key: "{{{{ secret('S3_SECRET') }}}}"}}
""",
    )
    env = {"S3_KEY": s3_server.access_key, "S3_SECRET": s3_server.secret_key}
    code, doc = run_json(rb, "-i", str(inventory(sshd, tmp_path)), env=env)
    assert code == 0, doc
    assert restored.read_bytes() == payload.read_bytes()
    assert steps_of(doc, "node4")["up"]["data"]["size"] == payload.stat().st_size
    assert s3_server.secret_key not in str(doc)


def test_run_once_moves_on_when_its_first_host_is_unreachable(
    sshd: SSHServer, tmp_path: Path
) -> None:
    # One fork: node1 (dead) reaches the step first. The next reachable host takes
    # it over instead of every other host being aborted.
    out = tmp_path / "once"
    rb = write(
        tmp_path,
        f"""
runbook: once-dead-first
hosts: fleet
steps:
  - name: Take a ticket
    id: ticket
    run_once: true
    shell: "echo {{{{ host.name }}}} >> {out}; echo ticket-{{{{ host.name }}}}"
  - name: Everyone sees it
    id: seen
    shell: "echo {{{{ steps.ticket.stdout | trim }}}}"
""",
    )
    code, doc = run(rb, inventory(sshd, tmp_path, dead=("node1",)), "--forks", "1")
    assert code == 3, doc
    assert doc["hosts"]["node1"]["state"] == "unreachable"
    assert out.read_text().split() == ["node2"]
    for name in NAMES[1:]:
        assert doc["hosts"][name]["state"] == "ok", doc["hosts"][name]
        assert steps_of(doc, name)["seen"]["data"]["stdout"].strip() == "ticket-node2"


def test_max_fail_counts_an_unreachable_host(sshd: SSHServer, tmp_path: Path) -> None:
    out = tmp_path / "second"
    out.touch()
    rb = write(
        tmp_path,
        f"""
runbook: max-fail-dead
hosts: fleet
max_fail: 0
steps:
  - name: First
    shell: "true"
  - name: Second
    shell: "echo {{{{ host.name }}}} >> {out}"
""",
    )
    code, doc = run(rb, inventory(sshd, tmp_path, dead=("node2",)))
    assert code == 3, doc
    assert out.read_text() == ""  # linear: the stop came before anyone's second step
    assert doc["hosts"]["node2"]["state"] == "unreachable"
    for name in ("node1", "node3", "node4", "node5"):
        assert [s["id"] for s in doc["hosts"][name]["steps"]] == ["first"]
        assert "max_fail" in doc["hosts"][name]["aborted"]


def test_max_connections_bounds_the_open_connections(sshd_own: SSHServer, tmp_path: Path) -> None:
    sshd = sshd_own  # its own: sockets other tests left to the shared sshd do not count
    out = tmp_path / "open"
    # The engine's established sockets to sshd's port (their remote end), read on the host
    # itself (it is this machine). Not sshd's own ends: a closed connection's server
    # socket stays ESTABLISHED until sshd reads the close, which lags on a busy machine.
    count = (
        f"awk -v p=\"$(printf ':%04X$' {sshd.port})\" '$3 ~ p && $4 == \"01\"' "
        f"/proc/net/tcp | wc -l >> {out}"
    )
    steps = "".join(f"  - name: Count {k}\n    shell: {json.dumps(count)}\n" for k in range(3))
    rb = write(tmp_path, f"runbook: bounded\nhosts: fleet\nsteps:\n{steps}")
    before = sum(logins(sshd).values())
    code, doc = run(rb, inventory(sshd, tmp_path), "--forks", "1", "--max-connections", "2")
    assert code == 0, doc
    counts = [int(n) for n in out.read_text().split()]
    assert len(counts) == 15
    assert min(counts) >= 1 and max(counts) <= 2
    # Five hosts through two connections: hosts reconnected in turn, each step still ran.
    assert sum(logins(sshd).values()) - before > 5
    assert all(s["state"] == "ok" for h in NAMES for s in steps_of(doc, h).values())


def test_hosts_within_the_limit_connect_once(sshd: SSHServer, tmp_path: Path) -> None:
    steps = "".join(f"  - name: Step {k}\n    shell: echo {k}\n" for k in range(3))
    rb = write(tmp_path, f"runbook: once-each\nhosts: fleet\nsteps:\n{steps}")
    before = logins(sshd)
    code, doc = run(rb, inventory(sshd, tmp_path), "--forks", "2")
    assert code == 0, doc
    after = logins(sshd)
    assert {a: after[a] - before[a] for a in after} == {a: 1 for a in sshd.addresses}


def test_hosts_never_started_are_counted_not_listed_one_by_one(
    sshd: SSHServer, tmp_path: Path
) -> None:
    out = tmp_path / "ran"
    rb = write(tmp_path, MAX_FAIL.format(max_fail=0, out=out))
    result = cli("run", str(rb), "-i", str(inventory(sshd, tmp_path)), "--no-color")
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    # The stop is said once; the hosts it came before are named on one line.
    assert sum("max_fail exceeded" in line for line in lines) == 1, result.stdout
    assert "  not started: node3, node4, node5" in lines
    assert not [line for line in lines if line.startswith(("node3", "node4", "node5"))]
    assert "RECAP  5 host(s): ok 1 · failed 1 · not started 3" in lines
