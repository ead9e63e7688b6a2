"""Distributed runs against the controller alone: wall time and CPU per host-step.

    python bench/distributed.py                          # 1000 hosts x 3 steps, SSH, redis
    python bench/distributed.py --hosts 1000 --transport local --broker both

Modes, each with the same runbook (K `shell: echo step-k` steps) and hosts:
- controller: no broker, `runbook run` walks every host itself.
- 1-worker: every host in zone z1, walked by one `runbook worker --zone z1`.
- 2-workers: hosts split between z1 and z2, one worker each.

Transport `ssh` uses bench/fanout.py's loopback sshd fleet; `local` gives every
host `connection: local`, which leaves the engine and the broker alone.

Workers start once per mode and broker (their start-up is not a run's cost),
with `-c` equal to the controller's --forks and `--max-walks` at least the host
count, so a linear round never waits on a walk that could not start. Each mode
makes one untimed 1-step pass first (imports, a fresh sshd's first logins).

CPU: the controller's is user+sys from wait4 (it and the children it waited
for, as fanout.py counts); a worker's is the change in its /proc stat times
(its own and its reaped children's) across the run, so step shells count on
whichever side ran them. The broker server's (redis-server or beam.smp on this
machine) is shown apart and left out of the broker cost: it is shared.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import fanout  # noqa: E402

MODES = ("controller", "1-worker", "2-workers")
ZONES = {"controller": [], "1-worker": ["z1"], "2-workers": ["z1", "z2"]}
BROKERS = {"redis": "redis://127.0.0.1:6379/9", "amqp": "amqp://guest:guest@127.0.0.1:5672//"}
SERVERS = {"redis": ("redis-server",), "amqp": ("beam.smp",)}  # for their CPU
READY_SECONDS = 60.0  # a worker's start: Celery, the broker connection, the engine's imports
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    wall: float
    ctl_cpu: float
    worker_cpu: float  # all the workers: their own and their step processes'
    worker_steps: float  # of which step processes (local shells) they reaped
    server_cpu: float  # the broker server's, when it runs on this machine
    rc: int


@dataclass
class Setup:
    """What every run of one bench shares: its files, environment and sizes."""

    work: Path
    env: dict[str, str]
    hosts: int
    steps: int
    forks: int
    runbook: Path
    warmup: Path
    inventories: dict[str, Path] = field(default_factory=dict)  # mode → its inventory


# ---------------------------------------------------------------- files


def host_records(
    transport: str, n: int, work: Path
) -> tuple[dict[str, Any], dict[str, Any], fanout.Fleet | None]:
    """(defaults, hosts by name, the fleet to stop or None) for N hosts."""
    names = [f"h{i:04d}" for i in range(n)]
    if transport == "local":
        return {"connection": "local"}, {h: {"address": "127.0.0.1"} for h in names}, None
    fleet = fanout.start_fleet(n, work)
    defaults = {
        "connection": "ssh",
        "user": fanout.USER,
        "key_file": str(fleet.key),
        "known_hosts": str(fleet.known_hosts),
    }
    hosts = {
        h: {"address": a, "port": fleet.ports[a]}
        for h, a in zip(names, fleet.addresses, strict=True)
    }
    return defaults, hosts, fleet


def write_inventory(
    path: Path, defaults: dict[str, Any], hosts: dict[str, Any], zones: list[str]
) -> None:
    """The hosts with no zone, all in one zone, or split evenly between zones."""
    if not zones:
        body: dict[str, Any] = {"defaults": defaults, "hosts": hosts}
    elif len(zones) == 1:
        body = {"defaults": {**defaults, "zone": zones[0]}, "hosts": hosts}
    else:
        names = list(hosts)
        groups = {}
        for i, zone in enumerate(zones):
            part = names[i :: len(zones)]
            groups[zone] = {"zone": zone, "hosts": {h: hosts[h] for h in part}}
        body = {"defaults": defaults, "groups": groups}
    path.write_text(yaml.safe_dump(body))


def write_runbook(path: Path, steps: int, strategy: str) -> None:
    body = [{"name": f"step {j}", "shell": f"echo step-{j}"} for j in range(steps)]
    path.write_text(yaml.safe_dump({"runbook": "bench", "strategy": strategy, "steps": body}))


# ---------------------------------------------------------------- broker and workers


def check_broker(name: str, url: str) -> None:
    """Exit with a clear message now, not after minutes of fleet start-up."""
    try:
        kombu: Any = importlib.import_module("kombu")  # untyped: Any keeps mypy --strict quiet
    except ImportError:
        sys.exit("distributed runs need Celery: pip install -e '.[celery]'")
    try:
        with kombu.Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
    except Exception as exc:  # whatever failed, the broker cannot be used
        sys.exit(f"broker {name} at {url} is not reachable ({type(exc).__name__}: {exc}); "
                 f"start it, or point --{name}-url elsewhere")  # fmt: skip


def process_times(pid: int) -> tuple[float, float]:
    """(own, reaped children's) user+sys seconds of a live process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces: skip past it
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def server_cpu(broker: str | None) -> float:
    """CPU seconds so far of the broker's server processes on this machine (0 if none).

    Informative only: the server is shared, so anything else using it counts too.
    """
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if broker and comm.read_text().strip() in SERVERS[broker]:
                total += sum(process_times(int(comm.parent.name)))
        except (OSError, ValueError):
            continue  # gone in between
    return total


class Workers:
    """The `runbook worker` processes of one mode and broker."""

    def __init__(self, zones: list[str], url: str, setup: Setup, label: str) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        for zone in zones:
            log = setup.work / f"worker-{label}-{zone}.log"
            argv = [sys.executable, "-m", "engine", "worker", "--zone", zone, "--broker", url,
                    "-c", str(setup.forks), "--max-walks", str(max(setup.hosts, 1)),
                    "--name", f"bench-{zone}", "-v"]  # fmt: skip
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=setup.env)
                )
            self.logs.append(log)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        for proc, log in zip(self.procs, self.logs, strict=True):
            while "ready." not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    state = (
                        f"exited {proc.returncode}" if proc.returncode is not None else "not ready"
                    )
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"worker {log.name} {state} after start:\n{tail}")
                time.sleep(0.05)

    def cpu(self) -> tuple[float, float]:
        """(own, step processes') CPU seconds of all the workers so far."""
        own = steps = 0.0
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"worker {log.name} exited {proc.returncode}: see {log}")
            mine, children = process_times(proc.pid)
            own, steps = own + mine, steps + children
        return own, steps

    def stop(self) -> None:
        """SIGTERM (Celery's warm shutdown), SIGKILL what is left after 10 s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- runs


def run_controller(setup: Setup, runbook: Path, mode: str, broker: str | None, url: str | None,
                   workers: Workers | None, log: Path) -> Run:  # fmt: skip
    argv = [sys.executable, "-m", "engine", "run", str(runbook), "-i", str(setup.inventories[mode]),
            "--forks", str(setup.forks)] + (["--broker", url] if url else [])  # fmt: skip
    before, server_before = workers.cpu() if workers else (0.0, 0.0), server_cpu(broker)
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=setup.env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C or SIGTERM on the bench: no run left behind
            proc.terminate()
            proc.wait()
            raise
    wall = time.monotonic() - started
    after, server_after = workers.cpu() if workers else (0.0, 0.0), server_cpu(broker)
    rc = os.waitstatus_to_exitcode(status)
    steps = after[1] - before[1]
    worker = after[0] - before[0] + steps
    ctl = usage.ru_utime + usage.ru_stime
    return Run(wall, ctl, worker, steps, server_after - server_before, rc)


def bench_mode(setup: Setup, mode: str, broker: str | None, url: str | None, repeat: int) -> Run:
    label = mode if broker is None else f"{mode}/{broker}"
    workers = Workers(ZONES[mode], url, setup, label.replace("/", "-")) if url else None
    try:
        if workers:
            workers.wait_ready()
        log = setup.work / f"run-{label.replace('/', '-')}.log"
        warm = run_controller(setup, setup.warmup, mode, broker, url, workers, log)
        if warm.rc != 0:
            raise RuntimeError(f"{label}: the warm-up run exited {warm.rc}: see {log}")
        runs = []
        for _ in range(repeat):
            run = run_controller(setup, setup.runbook, mode, broker, url, workers, log)
            status = "" if run.rc == 0 else f"  (exit {run.rc}: see {log})"
            print(f"{label:<18} {run.wall:7.2f}s wall {run.ctl_cpu:7.2f}s ctl cpu "
                  f"{run.worker_cpu:7.2f}s worker cpu {run.server_cpu:6.2f}s broker server cpu"
                  f"{status}", flush=True)  # fmt: skip
            runs.append(run)
    finally:
        if workers:
            workers.stop()
    return sorted(runs, key=lambda r: r.wall)[(len(runs) - 1) // 2]  # the median run, whole


def print_report(results: dict[str, Run], setup: Setup, args: argparse.Namespace) -> None:
    host_steps = setup.hosts * setup.steps
    base = results["controller"]
    print(f"\n{setup.hosts} hosts × {setup.steps} steps ({host_steps} host-steps), transport "
          f"{args.transport}, strategy {args.strategy}, --forks {setup.forks} / worker -c "
          f"{setup.forks}, median of {args.repeat}")  # fmt: skip
    print("\n| mode | wall s | ctl CPU s | ctl µs/host-step | worker CPU s (step processes)"
          " | broker server CPU s | ratio |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for label, run in results.items():
        failed = "" if run.rc == 0 else f" (exit {run.rc})"
        print(f"| {label}{failed} | {run.wall:.2f} | {run.ctl_cpu:.2f} | "
              f"{run.ctl_cpu / host_steps * 1e6:.0f} | {run.worker_cpu:.2f} "
              f"({run.worker_steps:.2f}) | {run.server_cpu:.2f} | "
              f"{run.wall / base.wall:.2f}× |")  # fmt: skip
    print(
        "\nCPU: user+sys, step processes included (the controller's, from wait4, cannot be "
        "split); ratio: wall time over the controller alone's."
    )
    for label, run in results.items():
        if label == "controller":
            continue
        extra = run.ctl_cpu + run.worker_cpu - base.ctl_cpu
        us = 1e6 / host_steps
        print(f"Broker cost per step, {label}, {args.transport}: ({run.ctl_cpu:.2f} s controller "
              f"+ {run.worker_cpu:.2f} s workers − {base.ctl_cpu:.2f} s controller alone) / "
              f"{host_steps} host-steps = {extra * us:.0f} µs of CPU per host-step "
              f"(+ {run.server_cpu * us:.0f} µs in the broker server); the controller's own "
              f"{run.ctl_cpu * us:.0f} µs per host-step against {base.ctl_cpu * us:.0f} µs "
              "walking every host itself.")  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per mode; median shown")
    parser.add_argument("--forks", type=int, default=50, help="controller --forks and worker -c")
    parser.add_argument("--transport", choices=("ssh", "local"), default="ssh")
    parser.add_argument("--broker", choices=("redis", "amqp", "both"), default="redis")
    parser.add_argument("--strategy", choices=("linear", "free"), default="linear")
    parser.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    parser.add_argument("--redis-url", default=BROKERS["redis"])
    parser.add_argument("--amqp-url", default=BROKERS["amqp"])
    args = parser.parse_args()
    modes = args.modes.split(",")
    if "controller" not in modes or set(modes) - set(MODES):
        parser.error(f"--modes: of {', '.join(MODES)}, controller included (the baseline)")
    if args.hosts < 2 or args.steps < 1 or args.repeat < 1 or args.forks < 1:
        parser.error("--hosts ≥ 2, --steps, --repeat and --forks ≥ 1")
    return args


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: workers, fleet, temp dir


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    brokers = ["redis", "amqp"] if args.broker == "both" else [args.broker]
    urls = {name: getattr(args, f"{name}_url") for name in brokers}
    for name, url in urls.items():
        check_broker(name, url)
    fanout.compile_engine()  # as an installed package is (PYTHONDONTWRITEBYTECODE here)
    work = Path(tempfile.mkdtemp(prefix="rbdist-"))
    os.chmod(work, 0o755)  # the fleet's sshd reads its config and keys under it
    fleet = None
    failed = False  # a failed run or worker keeps the temp dir: its logs say why
    try:
        # No broker, history location or key file from the caller's shell: the
        # controller mode must not find a broker, and every mode records alike.
        unset = ("RUNBOOK_BROKER", "RUNBOOK_HISTORY", "RUNBOOK_WORKER_KEY_FILE")
        env = {k: v for k, v in os.environ.items() if k not in unset}
        key = subprocess.run([sys.executable, "-m", "engine", "worker", "--new-key"],
                             check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
        env.update(RUNBOOK_HOME=str(work / "home"), RUNBOOK_WORKER_KEY=key)
        setup = Setup(work, env, args.hosts, args.steps, args.forks,
                      work / "runbook.yaml", work / "warmup.yaml")  # fmt: skip
        write_runbook(setup.runbook, args.steps, args.strategy)
        write_runbook(setup.warmup, 1, args.strategy)
        defaults, hosts, fleet = host_records(args.transport, args.hosts, work)
        modes = args.modes.split(",")
        for mode in modes:
            setup.inventories[mode] = work / f"inventory-{mode}.yaml"
            write_inventory(setup.inventories[mode], defaults, hosts, ZONES[mode])
        results = {"controller": bench_mode(setup, "controller", None, None, args.repeat)}
        for broker in brokers:
            for mode in (m for m in MODES if m in modes and m != "controller"):
                run = bench_mode(setup, mode, broker, urls[broker], args.repeat)
                results[f"{mode} ({broker})"] = run
        print_report(results, setup, args)
        failed = any(run.rc != 0 for run in results.values())
    except RuntimeError:
        failed = True
        raise
    finally:
        if fleet is not None:
            fleet.stop()
        if failed:
            print(f"kept {work} for its logs (a run failed)", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
