"""No secret in any process list while steps run, locally and over SSH.

argv is world-readable (`ps`, /proc/PID/cmdline), so a shell command's text,
and the env values a step sets, must reach the shell some other way. The sshd
of the tests runs on this machine: /proc shows the "remote" processes too.

Every way a command can start is covered: a local subprocess, the SSH
session's subshell, a shell of its own (`$$`), sudo (`become`), and an exec
channel (a step with stdin). A unique `sleep` per step proves the scan saw
each step while it ran: a scan that saw nothing would pass vacuously.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.fixtures.sshd import SSHServer
from tests.helpers import cli, write
from tests.integration.test_secret_shapes import QUOTES, URLISH, leaks

KINDS = {
    "plain": {},
    "own_pid": {"cmd_prefix": "echo $$ >/dev/null; "},
    "become": {"become": "rbssh-become"},
    "with_stdin": {"stdin": "some input\n"},
}


def steps(host_index: int) -> list[dict[str, object]]:
    """One step per way of starting a command, each with its own sleep marker."""
    out: list[dict[str, object]] = []
    for n, (kind, extra) in enumerate(KINDS.items()):
        # Over a second: a scan of /proc on a loaded machine must not miss it.
        marker = f"1.1{host_index}{n}"
        cmd = (
            f"{extra.get('cmd_prefix', '')}: {{{{ secret('Q') | quote }}}} \"$TOKEN_VALUE\"; "
            f"sleep {marker}"
        )
        shell: dict[str, object] = {"cmd": cmd, "env": {"TOKEN_VALUE": "{{ secret('U') }}"}}
        for key in ("become", "stdin"):
            if key in extra:
                shell[key] = extra[key]
        out.append({"name": f"{kind} {host_index}", "shell": shell})
    return out


# Every process's argv, read over and over until the stop file exists, each
# distinct one printed once. Its own process: no GIL shared with the engine
# under test, so it never starves while the steps run.
_SCANNER = """
import os, sys
seen = set()
while not os.path.exists(sys.argv[1]):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\\0", b" ")
        except OSError:
            continue  # the process ended while we looked
        if line not in seen:
            seen.add(line)
            sys.stdout.buffer.write(line + b"\\n")
sys.stdout.flush()
"""


class ProcessScan:
    """What `ps` would have shown, collected while the block runs."""

    def __init__(self, workdir: Path) -> None:
        self.stop_file = workdir / "stop-scan"
        self.seen = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ProcessScan:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SCANNER, str(self.stop_file)], stdout=subprocess.PIPE
        )
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._proc is not None
        self.stop_file.touch()
        out, _ = self._proc.communicate(timeout=60)
        self.seen = out.decode("utf-8", "replace")


def test_no_secret_in_any_process_list(tmp_path: Path, sshd: SSHServer) -> None:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"Q": QUOTES, "U": URLISH}))
    secrets_file.chmod(0o600)
    inventory = tmp_path / "inventory.yaml"
    ssh = sshd.host()
    inventory.write_text(
        yaml.safe_dump(
            {
                "hosts": {
                    "localhost": {"connection": "local"},
                    "remote": {
                        "connection": "ssh",
                        "address": ssh.address,
                        "port": ssh.port,
                        "user": "root",
                        "key_file": str(sshd.client_key),
                        "known_hosts": str(sshd.known_hosts),
                        "host_key_policy": "strict",
                    },
                }
            }
        )
    )
    # Each host runs its own steps (when: on the host's name), in parallel.
    runbook = {
        "runbook": "ps-scan",
        "steps": [
            *({**s, "when": "host.name == 'localhost'"} for s in steps(1)),
            *({**s, "when": "host.name == 'remote'"} for s in steps(2)),
        ],
    }
    rb = write(tmp_path, yaml.safe_dump(runbook, sort_keys=False))

    with ProcessScan(tmp_path) as scan:
        result = cli("run", rb, "-i", inventory, "--secrets", secrets_file, "--format", "json")
    assert result.exit_code == 0, result.output

    listing = scan.seen
    assert leaks(listing, [QUOTES, URLISH]) == []
    # Not vacuous: every step's own process was seen while it ran.
    for host_index in (1, 2):
        for n in range(len(KINDS)):
            assert f"sleep 1.1{host_index}{n}" in listing, (host_index, n)
