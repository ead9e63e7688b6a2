"""What the operator sees during and after a run: why a host is unreachable
(at once, in the recap, in history), a recap per host worst first, numbers
as people write them, colours as asked, and one inventory per run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.fixtures.history import engine_env
from tests.fixtures.sshd import free_port
from tests.helpers import cli, write

FLEET = """
runbook: fleet
steps:
  - name: check
    shell: "test {{ host.name }} != web2"
  - name: after
    shell: echo fine
"""


def fleet_inventory(tmp_path: Path, local: list[str], dead: list[str] = ()) -> Path:  # type: ignore[assignment]
    hosts: dict[str, dict[str, object]] = {name: {"connection": "local"} for name in local}
    for name in dead:
        hosts[name] = {
            "connection": "ssh", "address": "127.0.0.1", "port": free_port("127.0.0.1"),
            "connect_timeout": 3,
        }  # fmt: skip
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return path


def test_why_a_host_failed_is_said_at_once_in_the_recap_and_in_history(tmp_path: Path) -> None:
    inv = fleet_inventory(tmp_path, ["web1", "web2"], dead=["dead"])
    result = cli("run", write(tmp_path, FLEET), "-i", inv)
    assert result.exit_code == 3, result.output
    lines = result.stdout.splitlines()
    # The unreachable host's reason, when it happens (it used to need --format json).
    assert any(
        re.fullmatch(r"dead +\? unreachable +connection refused by 127\.0\.0\.1:\d+ .*", ln)
        for ln in lines
    ), result.stdout
    # The recap: a line per host that is not ok, worst first, with the reason.
    start = lines.index("RECAP  3 host(s): ok 1 · failed 1 · unreachable 1")
    recap = lines[start + 1 : start + 4]
    assert re.fullmatch(r"  web2 +failed +check: command exited with rc 1", recap[0]), recap
    assert re.fullmatch(r"  dead +unreachable +connection refused by 127\.0\.0\.1:\d+.*", recap[1])
    assert recap[2] == "  ok: web1"
    assert lines[-1].startswith("■ run ") and "(exit 3)" in lines[-1]
    # The same reason in the history of the run.
    run_id = lines[0].split(" run ")[1].split()[0]
    shown = cli("history", run_id).stdout
    assert re.search(r"host finished: unreachable — connection refused by 127\.0\.0\.1:\d+", shown)
    assert "host finished: failed — check: command exited with rc 1" in shown


def test_the_recap_folds_ok_hosts_and_one_ok_host_needs_none(tmp_path: Path) -> None:
    names = [f"h{i:02d}" for i in range(1, 16)]
    rb = write(tmp_path, "runbook: ok\nsteps:\n  - name: fine\n    shell: 'true'\n")
    many = cli("run", rb, "-i", fleet_inventory(tmp_path, names)).stdout
    assert "RECAP  15 host(s): ok 15" in many
    assert "  ok: h01, h02, h03, h04, h05, h06, h07, h08, h09, h10 … (+5)" in many
    assert "RECAP" not in cli("run", rb).stdout  # one host, ok: the summary says it all


def test_metric_values_print_as_people_write_them(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: counts
        steps:
          - name: keys
            shell: "echo 20000"
            thresholds:
              keys: {value: "result.stdout | int", warn: "> 10000"}
        """,
    )
    result = cli("run", rb)
    assert result.exit_code == 1
    assert "keys=20000 (warn > 10000)" in result.stdout
    assert "2e+04" not in result.stdout


def test_colours_follow_no_color_and_the_flags(tmp_path: Path) -> None:
    rb = write(tmp_path, "runbook: c\nsteps:\n  - name: fine\n    shell: 'true'\n")
    # Off a terminal: plain, unless --color.
    assert "\x1b[" not in cli("run", rb).stdout
    assert "\x1b[" in cli("run", rb, "--color").stdout

    def on_a_terminal(*args: str, **env: str) -> str:
        """The engine with stdout on a real pty (`script`), as an operator sees it."""
        command = " ".join([sys.executable, "-m", "engine", "run", str(rb), *args])
        done = subprocess.run(
            ["script", "-qec", command, "/dev/null"],
            env=engine_env(**env), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "\x1b[" in on_a_terminal(TERM="xterm")
    assert "\x1b[" not in on_a_terminal(TERM="xterm", NO_COLOR="1")
    assert "\x1b[" not in on_a_terminal("--no-color", TERM="xterm")


def test_a_second_inventory_is_refused_not_silently_swapped(tmp_path: Path) -> None:
    one = fleet_inventory(tmp_path, ["web1"])
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"hosts": {"db1": {"connection": "local"}}}))
    result = cli("run", write(tmp_path, FLEET), "-i", one, "-i", other)
    # Ansible inventories merge (tests/integration/test_ansible_layouts.py); native ones do not
    assert result.exit_code == 65
    assert "native format cannot be merged" in result.output
    assert os.path.basename(other) in result.output


def test_names_and_bounds_are_shown_rendered(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: rendered
        params:
          db: {type: str, default: orders}
          critical_seconds: {type: int, default: 300}
          token: {type: str, secret: true, default: "tok-Zq81-secret"}
        steps:
          - name: "Long-running queries in {{ params.db }}"
            id: longest
            shell: "echo 450"
            thresholds:
              seconds: {value: "result.stdout | int", critical: "> {{ params.critical_seconds }}"}
          - name: "Rotate {{ params.token }}"
            id: rotate
            shell: "true"
          - name: "Waits on {{ steps.later.stdout }}"
            id: early
            shell: "true"
          - name: later
            shell: "echo x"
        """,
    )
    result = cli("run", rb, "--format", "json")
    doc = json.loads(result.stdout)
    steps = {s["id"]: s for s in doc["hosts"]["localhost"]["steps"]}
    assert steps["longest"]["name"] == "Long-running queries in orders"
    assert steps["longest"]["metrics"]["seconds"]["critical"] == "> 300"
    assert steps["rotate"]["name"] == "Rotate ***"  # a rendered name is masked too
    assert steps["early"]["name"] == "Waits on {{ steps.later.stdout }}"  # cannot render yet
    text = cli("run", rb).stdout
    assert "Long-running queries in orders" in text
    assert "seconds=450 (critical > 300)" in text
    assert "tok-Zq81-secret" not in text
    run_id = json.loads(cli("history", "--format", "json", "--limit", "1").stdout)[0]["id"]
    shown = cli("history", run_id).stdout
    assert "Long-running queries in orders" in shown and "tok-Zq81-secret" not in shown


SLOW = """
runbook: slow
steps:
  - name: quick
    shell: "true"
  - name: slow
    shell: "if [ {{ host.name }} = web2 ]; then sleep 1.6; fi"
"""


def test_a_log_says_what_still_runs_and_headers_group_the_hosts(tmp_path: Path) -> None:
    inv = fleet_inventory(tmp_path, ["web1", "web2", "web3"])
    result = cli("run", write(tmp_path, SLOW), "-i", inv, env={"RUNBOOK_PROGRESS_EVERY": "0.5"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "▸ quick" and "▸ slow" in lines
    ticks = [ln for ln in lines if ln.startswith("… still running:")]
    assert ticks and re.fullmatch(r"… still running: web2 slow \ds · 0/3 hosts done", ticks[0])
    # Said while it ran: before web2's own line.
    assert lines.index(ticks[0]) < next(
        i for i, ln in enumerate(lines) if "web2" in ln and "slow" in ln and "✓" in ln
    )


def _on_a_terminal(rb: Path, *args: str, answer: tuple[str, str] | None = None) -> str:
    """The engine with stdin, stdout and stderr on one pseudo-terminal, as an
    operator runs it; `answer` = (prompt text, reply) typed when it shows."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), *args],
        cwd=rb.parent, env=engine_env(TERM="xterm", RUNBOOK_OPERATOR="erin"),
        stdin=slave, stdout=slave, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if answer and answer[0].encode() in seen:
            time.sleep(1.0)  # long enough for several redraws, were they not paused
            os.write(master, answer[1].encode() + b"\n")
            answer = None
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=30)
    os.close(master)
    return seen.decode(errors="replace")


def test_a_terminal_shows_a_status_line_that_leaves_with_the_run(tmp_path: Path) -> None:
    inv = fleet_inventory(tmp_path, ["web1", "web2", "web3"])
    screen = _on_a_terminal(write(tmp_path, SLOW), "-i", str(inv))
    assert re.search(r"slow · 0/3 hosts done · running: web2 \ds", screen), screen
    assert re.search(r"finished: .*ok.* \(exit 0\)", screen)


def test_a_prompt_is_not_drawn_over_by_the_status_line(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: gated
        steps:
          - name: slow
            shell: "sleep 0.8"
          - name: drop
            confirm: "Drop the cache?"
            shell: "echo dropped > dropped"
        """,
    )
    screen = _on_a_terminal(rb, answer=("Drop the cache? [yes/no]", "y"))
    assert "running: localhost" in screen  # the status line was there
    assert (tmp_path / "dropped").read_text() == "dropped\n", screen
    # Once the prompt is up, the status line is not redrawn until it is answered.
    after_prompt = screen.split("Drop the cache? [yes/no]", 1)[1]
    before_answer = after_prompt.split("y\r\n", 1)[0]
    assert "hosts done" not in before_answer


def test_a_dry_run_says_once_what_each_step_would_run(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: preview
        steps:
          - name: Restart
            shell: {cmd: "systemctl restart app", env: {MODE: fast}}
        """,
    )
    lines = [line.strip() for line in cli("run", rb, "--dry-run", "--no-color").stdout.splitlines()]
    assert "would run: $ systemctl restart app" in lines
    assert "would run env: {'MODE': 'fast'}" in lines  # what the description leaves out
    assert not [line for line in lines if line.startswith("would run cmd")]
