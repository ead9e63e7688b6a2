"""What a step keeps of its output: head and tail within --output-limit, the
middle counted, memory and history bounded however much a command prints,
and the whole output on disk (redacted) with --keep-output.

Every way a command runs is covered: a local subprocess, the SSH session
shell, and an SSH exec channel (a step with stdin takes that path).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from engine.connections.base import Command, Connection
from engine.connections.local import LocalConnection
from engine.connections.output import OutputSpec
from engine.connections.ssh.connection import SSHConnection
from engine.inventory.host import Host
from tests.fixtures.sshd import SSHServer
from tests.helpers import cli, run_json, steps_of, write

LINES = 200_000  # "line 000001" ... : 2.4 MB on stdout
CMD = (
    f"seq -f 'line %06g' 1 {LINES}; "
    f"seq -f 'err %06g' 1 {LINES // 2} >&2"  # 1.1 MB on stderr
)
MARKER = re.compile(rb"\n\[\.\.\. (\d+) bytes of output omitted \.\.\.\]\n")


def whole(prefix: str, count: int) -> bytes:
    return "".join(f"{prefix} {i:06d}\n" for i in range(1, count + 1)).encode()


def check_cut(kept: bytes, omitted: int, full: bytes, limit: int) -> None:
    """Kept = the full stream's head and tail, whole lines, the middle counted."""
    match = MARKER.search(kept)
    assert match, kept[:200]
    head, tail = kept[: match.start()], kept[match.end() :]
    assert full.startswith(head) and full.endswith(tail)
    assert head.endswith(b"\n") and len(head) + len(tail) <= limit
    assert len(head) > limit // 4 and len(tail) > limit // 4  # both ends kept
    assert int(match.group(1)) == omitted == len(full) - len(head) - len(tail)


@pytest.fixture(params=["local", "ssh-session", "ssh-exec"])
def connection(request: pytest.FixtureRequest) -> tuple[Connection, dict[str, bytes]]:
    """A connection, and extra Command fields that choose its path."""
    if request.param == "local":
        return LocalConnection(Host(name="localhost")), {}
    sshd: SSHServer = request.getfixturevalue("sshd")
    conn = SSHConnection(sshd.host())
    request.addfinalizer(conn.close)
    # A step with stdin cannot use the session shell: it takes an exec channel.
    return conn, ({"stdin": b"x"} if request.param == "ssh-exec" else {})


def test_each_stream_keeps_its_head_and_tail(
    connection: tuple[Connection, dict[str, bytes]],
) -> None:
    conn, extra = connection
    limit = 64 * 1024
    result = conn.run(Command(cmd=CMD, output=OutputSpec(limit=limit), **extra), timeout=60)
    assert result.rc == 0
    check_cut(result.stdout, result.stdout_omitted, whole("line", LINES), limit)
    check_cut(result.stderr, result.stderr_omitted, whole("err", LINES // 2), limit)
    # Within the limit, nothing is cut and nothing is added.
    small = conn.run(Command(cmd="seq 1 3", output=OutputSpec(limit=limit), **extra))
    assert (small.stdout, small.stdout_omitted) == (b"1\n2\n3\n", 0)


def test_a_step_result_says_what_was_left_out(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        f"""
        runbook: loud
        steps:
          - name: loud
            shell: "{CMD}"
          - name: json cut in the middle
            shell:
              cmd: "python3 -c 'import json; print(json.dumps(list(range(100000))))'"
              parse: json
            ignore_errors: true
          - name: the next step sees the kept lines
            assert:
              that:
                - "steps.loud.stdout_lines[0] == 'line 000001'"
                - "steps.loud.stdout_lines[-1] == 'line {LINES:06d}'"
                - "steps.loud.omitted.stdout > 2000000"
        """,
    )
    code, doc = run_json(rb, "--output-limit", "64KiB")
    assert code == 0, doc
    steps = steps_of(doc)
    loud = steps["loud"]["data"]
    assert set(loud["omitted"]) == {"stdout", "stderr"}
    assert len(loud["stdout"]) < 64 * 1024 + 100
    cut = steps["json_cut_in_the_middle"]
    assert cut["state"] == "failed" and "cut to the output limit" in cut["error"]


def test_bad_sizes_are_usage_errors(tmp_path: Path) -> None:
    rb = write(tmp_path, "runbook: x\nsteps:\n  - name: hi\n    log: hi\n")
    for bad in ("12", "lots", "1.5MiB", "-4k"):
        result = cli("run", rb, "--output-limit", bad)
        assert result.exit_code == 64, (bad, result.output)
        assert "--output-limit" in result.output
    assert cli("run", rb, "--output-limit", "4MiB").exit_code == 0


def test_memory_and_history_stay_bounded_for_200_mb_of_output(tmp_path: Path) -> None:
    """The engine in its own process, so its peak RSS is its own (ru_maxrss of a child)."""
    rb = write(
        tmp_path,
        """
        runbook: flood
        steps:
          - name: flood
            shell: "head -c 100000000 /dev/zero | tr '\\\\0' 'x' | fold -w 100; head -c 100000000 /dev/urandom"
        """,
    )
    home = tmp_path / "home"
    env = {**os.environ, "RUNBOOK_HOME": str(home)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(
        [sys.executable, "-m", "engine", "run", str(rb), "--format", "json"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)["hosts"]["localhost"]["steps"][0]["data"]
    assert data["omitted"]["stdout"] > 199_000_000
    # Measured before this limit existed: 1.8 GB of RSS and +387 MB of history.
    if before < peak_mib * 1024:  # an earlier, bigger child would hide ours
        assert peak_mib < 300, f"peak RSS {peak_mib:.0f} MiB"
    history_bytes = sum(p.stat().st_size for p in home.iterdir())
    assert history_bytes < 8 << 20, history_bytes
    # The history keeps stdout once; `stdout_lines` comes back when read.
    shown = json.loads(cli("history", "--format", "json", env={"RUNBOOK_HOME": str(home)}).stdout)
    run = json.loads(
        cli("history", shown[0]["id"], "--format", "events", env={"RUNBOOK_HOME": str(home)}).stdout
    )
    (step,) = run["steps"]
    assert step["data"]["stdout_lines"] == step["data"]["stdout"].splitlines()
    assert "derived" not in step


def test_keep_output_writes_the_whole_output_redacted(tmp_path: Path, runbook_home: Path) -> None:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"TOKEN": "tok-Hh71-secret"}))
    secrets_file.chmod(0o600)
    rb = write(
        tmp_path,
        f"""
        runbook: kept
        steps:
          - name: loud
            shell: "{CMD}; echo {{{{ secret('TOKEN') }}}}; printf 'no newline at the end'"
        """,
    )
    result = cli(
        "run", rb, "--format", "json", "--output-limit", "16k", "--keep-output",
        "--secrets", secrets_file,
    )  # fmt: skip
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    where = runbook_home / "output" / doc["run_id"]
    assert f"whole output of each command: {where}/HOST/" in result.stderr
    data = steps_of(doc)["loud"]["data"]
    stdout_file = Path(data["output_files"]["stdout"])
    assert stdout_file.is_relative_to(runbook_home / "output" / doc["run_id"] / "localhost")
    assert stdout_file.stat().st_mode & 0o777 == 0o600
    kept = stdout_file.read_bytes()
    assert kept == whole("line", LINES) + b"***\nno newline at the end"
    assert Path(data["output_files"]["stderr"]).read_bytes() == whole("err", LINES // 2)


def test_a_secret_cut_by_the_limit_leaves_no_piece(tmp_path: Path, runbook_home: Path) -> None:
    """One long line, the secret where the kept head ends: the piece of it
    that would be kept cannot be masked (masking needs the whole value), so
    it goes with the part left out; likewise at the tail's start."""
    token = "Zq93-tok-LongSecret-Q7wK"
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"TOKEN": token}))
    secrets_file.chmod(0o600)
    line = "printf '%0{n}d' 0; printf '%s' {{{{ secret('TOKEN') }}}}; printf '%0{m}d' 0"
    rb = write(
        tmp_path,
        f"""
        runbook: cut-secret
        steps:
          - name: head
            shell: "{line.format(n=8182, m=100_000)}"
          - name: tail
            shell: "{line.format(n=100_000, m=8182)}"
        """,
    )
    result = cli(
        "run", rb, "--format", "json", "--output-limit", "16k", "--secrets", secrets_file,
        env={"RUNBOOK_HOME": str(runbook_home)},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    steps = steps_of(json.loads(result.stdout))
    assert steps["head"]["data"]["stdout"].startswith("0" * 8182)
    assert steps["tail"]["data"]["stdout"].endswith("0" * 8182)
    stored = b"".join(p.read_bytes() for p in runbook_home.rglob("*") if p.is_file())
    for text in (result.stdout, result.stderr, stored.decode("utf-8", "replace")):
        assert token[:4] not in text and token[-4:] not in text
