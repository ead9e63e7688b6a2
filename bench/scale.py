"""Scale checks: 1,000 local no-op steps, and 1,000 hosts fanned out.

    python bench/scale.py [--hosts 1000] [--steps 1000]

- steps: `runbook run` of STEPS `set` steps on localhost, wall time of the
  whole command (interpreter start included), history on and off.
- hosts: an inventory of HOSTS hosts on the `local` connection, 3 shell steps
  each, default forks (10): wall time, peak RSS and the most threads the engine
  process had at once (sampled from /proc every 10 ms).
- ssh-hosts (with --ssh-hosts N): the same over SSH, against a fleet of N
  loopback sshd addresses started by bench/fanout.py's helpers.
- `runbook --help` start-up time, for the lazy-import budget.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

RUNBOOK = shutil.which("runbook") or "runbook"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, int]:
    """(wall s, peak RSS MiB, peak threads, exit code) of one command."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_threads = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_threads
        status = Path(f"/proc/{proc.pid}/status")
        while not done.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("Threads:"):
                        peak_threads = max(peak_threads, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    wall = time.monotonic() - started
    return wall, usage.ru_maxrss / 1024, peak_threads, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--ssh-hosts", type=int, default=0, help="also N hosts over SSH")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rbscale-"))
    os.chmod(work, 0o755)  # the fleet's sshd reads its config and keys under it
    env = {**os.environ, "RUNBOOK_HOME": str(work / "home")}
    _fanout().compile_engine()  # as an installed package is

    wall, _, _, rc = timed([RUNBOOK, "--help"], env)
    print(f"runbook --help: {wall:.2f} s")

    steps = work / "steps.yaml"
    body = [{"name": f"noop {i}", "set": {"i": i}} for i in range(args.steps)]
    steps.write_text(yaml.safe_dump({"runbook": "noop", "steps": body}))
    for label, extra in (("history on", {}), ("history off", {"RUNBOOK_HISTORY": "off"})):
        wall, rss, threads, rc = timed([RUNBOOK, "run", str(steps)], {**env, **extra})
        print(f"{args.steps} local no-op steps ({label}): {wall:.2f} s, {rss:.0f} MiB, exit {rc}")

    hosts = {f"h{i:04d}": {"address": "127.0.0.1"} for i in range(args.hosts)}
    inventory = work / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"defaults": {"connection": "local"}, "hosts": hosts}))
    fan = work / "fan.yaml"
    body = [{"name": f"step {i}", "shell": f"echo {i}"} for i in range(3)]
    fan.write_text(yaml.safe_dump({"runbook": "fan", "steps": body}))
    wall, rss, threads, rc = timed([RUNBOOK, "run", str(fan), "-i", str(inventory)], env)
    print(
        f"{args.hosts} hosts x 3 shell steps (local, forks 10): {wall:.2f} s, "
        f"peak RSS {rss:.0f} MiB, peak threads {threads}, exit {rc}"
    )
    if args.ssh_hosts:
        ssh_fan_out(args.ssh_hosts, work, env)


def _fanout() -> Any:
    """The SSH benchmark's module: its fleet, workloads and compile step."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fanout

    return fanout


def ssh_fan_out(n: int, work: Path, env: dict[str, str]) -> None:
    fanout = _fanout()
    (work / "fleet").mkdir(mode=0o755)
    fleet = fanout.start_fleet(n, work / "fleet")
    try:
        argv = fanout.write_engine(fleet, 2, work / "fleet")[:-2]  # default --forks
        wall, rss, threads, rc = timed(argv, env)
    finally:
        fleet.stop()
    print(
        f"{n} hosts x 2 shell steps (ssh, forks 10): {wall:.2f} s, "
        f"peak RSS {rss:.0f} MiB, peak threads {threads}, exit {rc}"
    )


if __name__ == "__main__":
    main()
