"""Fan-out over SSH, side by side: this engine, Ansible, pyinfra and two raw
paramiko floors, on a fleet of loopback sshd hosts started here.

    python bench/fanout.py                      # 50x10 and 10x100, all tools
    python bench/fanout.py --rows 10x20 --tools engine,session-floor

What runs (all against the same hosts, user and command):
- engine: `runbook run` of K `shell: echo step-k` steps, default settings
  (history recorded, console report to a file, the linear strategy), --forks N.
- engine-free: the same runbook with `strategy: free` (each host runs its
  steps without waiting for the others, as the floors do).
- ansible: ansible-playbook, K `ansible.builtin.shell` tasks, forks=N,
  pipelining, ControlPersist, no fact gathering.
- pyinfra: K `server.shell` operations, --parallel N.
- exec-floor: paramiko, one exec channel per command, TCP_NODELAY, N threads.
- session-floor: paramiko, one persistent `sh` per host fed the commands,
  N threads: the least any tool over SSH can do.
- subshell-floor: the same with each command in its own subshell, the
  isolation the engine gives every step: the least a tool can do that keeps
  one step's `cd`/`export`/`exit` out of the next.
- recorded-floor: the subshell floor, plus stdout and stderr apart (an end
  marker on each stream) and each step's start and result committed to SQLite:
  the least an engine that keeps issue 6's step isolation and an audit trail
  can do per step.

The fleet: N loopback addresses from 127.1.0.1, at most 16 ListenAddress per sshd, a
dedicated user `rbbench` whose shell rc files are empty. Ansible and pyinfra
live in bench/.venv (made here on first use), not in the project's deps.

Prints wall time, CPU (user+sys of the tool's process and the children it
waited for) and peak RSS of one process of the tool, with ratios to the
session floor of the same row. The sshd side's CPU is shared and not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.sshd import SSHD, ensure_binaries, free_port, keygen  # noqa: E402

USER = "rbbench"
VENV = REPO / "bench" / ".venv"
TOOLS = [
    "session-floor",
    "subshell-floor",
    "recorded-floor",
    "exec-floor",
    "engine",
    "engine-free",
    "pyinfra",
    "ansible",
]
# Floors that take the recorded floor apart (see floors.py); not in the default run.
EXTRA = ["prefork-floor", "separated-floor", "prefork-separated-floor", "prefork-recorded-floor"]
PER_SSHD = 16


@dataclass
class Fleet:
    addresses: list[str]
    ports: dict[str, int]
    key: Path
    known_hosts: Path
    procs: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)


def ensure_user() -> Path:
    try:
        home = Path(pwd.getpwnam(USER).pw_dir)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
        home = Path(pwd.getpwnam(USER).pw_dir)
    # A locked account ("!") is refused by sshd without PAM; "*" only rules out passwords.
    subprocess.run(["usermod", "-p", "*", USER], check=True)
    for rc in (".bashrc", ".profile", ".bash_profile", ".bash_logout"):
        (home / rc).write_text("")  # empty rc files: no tool pays for a slow login shell
    return home


def start_fleet(n: int, work: Path) -> Fleet:
    ensure_binaries()  # sshd and ssh-keygen, installed as for the tests on a new machine
    home = ensure_user()
    key = work / "client_key"
    public = keygen(key, "bench")
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public + "\n")
    uid = pwd.getpwnam(USER)
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, uid.pw_uid, uid.pw_gid)
    host_key = work / "host_key"
    host_public = keygen(host_key, "bench-host")
    # 127.0.0.0/8 is all loopback: 250 hosts per third octet, from 127.1.0.1 on.
    addresses = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(n)]
    ports: dict[str, int] = {}
    procs = []
    for start in range(0, n, PER_SSHD):
        group = addresses[start : start + PER_SSHD]
        port = free_port(group[0])
        config = work / f"sshd_{start}.conf"
        listen = "\n".join(f"ListenAddress {a}:{port}" for a in group)
        config.write_text(
            f"{listen}\nHostKey {host_key}\nPidFile {work}/sshd_{start}.pid\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nPubkeyAuthentication yes\n"
            "MaxSessions 200\nMaxStartups 400:30:800\nAllowTcpForwarding yes\n"
            "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        procs.append(subprocess.Popen([SSHD, "-D", "-f", str(config)]))
        ports.update({a: port for a in group})
    known = work / "known_hosts"
    known.write_text("".join(f"[{a}]:{ports[a]} {host_public}\n" for a in addresses))
    _wait_listening(addresses, ports)
    return Fleet(addresses, ports, key, known, procs)


def _wait_listening(addresses: list[str], ports: dict[str, int]) -> None:
    import socket

    deadline = time.monotonic() + 20
    for address in addresses:
        while True:
            try:
                with socket.create_connection((address, ports[address]), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd does not listen on {address}") from None
                time.sleep(0.05)


# ---------------------------------------------------------------- the workloads


def write_engine(fleet: Fleet, k: int, work: Path, strategy: str = "linear") -> list[str]:
    import yaml

    hosts = {f"h{i}": {"address": a, "port": fleet.ports[a]} for i, a in enumerate(fleet.addresses)}
    inventory = {
        "defaults": {
            "connection": "ssh",
            "user": USER,
            "key_file": str(fleet.key),
            "known_hosts": str(fleet.known_hosts),
        },
        "groups": {"fleet": {"hosts": hosts}},
    }
    (work / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    steps = [{"name": f"step {j}", "shell": f"echo step-{j}"} for j in range(k)]
    path = work / f"runbook-{strategy}.yaml"
    path.write_text(yaml.safe_dump({"runbook": "bench", "strategy": strategy, "steps": steps}))
    runbook = shutil.which("runbook") or "runbook"
    n = len(fleet.addresses)
    return [runbook, "run", str(path), "-i", str(work / "inventory.yaml"),
            "--forks", str(n)]  # fmt: skip


def write_ansible(fleet: Fleet, k: int, work: Path) -> list[str]:
    lines = ["[fleet]"]
    for i, a in enumerate(fleet.addresses):
        lines.append(f"h{i} ansible_host={a} ansible_port={fleet.ports[a]}")
    lines += ["[fleet:vars]", f"ansible_user={USER}",
              f"ansible_ssh_private_key_file={fleet.key}",
              "ansible_python_interpreter=/usr/bin/python3"]  # fmt: skip
    (work / "ansible.ini").write_text("\n".join(lines) + "\n")
    tasks = "".join(
        f"    - name: step {j}\n      ansible.builtin.shell: echo step-{j}\n" for j in range(k)
    )
    (work / "playbook.yml").write_text(f"- hosts: fleet\n  gather_facts: false\n  tasks:\n{tasks}")
    (work / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = False\nforks = "
        f"{len(fleet.addresses)}\nstdout_callback = default\n"
        "[ssh_connection]\npipelining = True\n"
        "ssh_args = -o ControlMaster=auto -o ControlPersist=60s"
        f" -o UserKnownHostsFile={fleet.known_hosts}\n"
        f"control_path_dir = {work}/cp\n"
    )
    return [str(VENV / "bin" / "ansible-playbook"), "-i", str(work / "ansible.ini"),
            str(work / "playbook.yml")]  # fmt: skip


def write_pyinfra(fleet: Fleet, k: int, work: Path) -> list[str]:
    hosts = ",\n".join(f'    ("{a}", {{"ssh_port": {fleet.ports[a]}}})' for a in fleet.addresses)
    (work / "pyinfra_inventory.py").write_text(
        f"fleet = ([\n{hosts}\n], {{\n"
        f'    "ssh_user": "{USER}", "ssh_key": "{fleet.key}",\n'
        f'    "ssh_known_hosts_file": "{fleet.known_hosts}",\n'
        '    "ssh_strict_host_key_checking": "no",\n'
        "})\n"
    )
    ops = "".join(f'server.shell(name="step {j}", commands=["echo step-{j}"])\n' for j in range(k))
    (work / "deploy.py").write_text(f"from pyinfra.operations import server\n\n{ops}")
    return [str(VENV / "bin" / "pyinfra"), str(work / "pyinfra_inventory.py"),
            str(work / "deploy.py"), "-y", "--parallel", str(len(fleet.addresses))]  # fmt: skip


def floor_command(kind: str, fleet: Fleet, k: int, work: Path) -> list[str]:
    spec = {"addresses": fleet.addresses, "ports": fleet.ports, "key": str(fleet.key), "k": k}
    (work / "floor.json").write_text(json.dumps(spec))
    return [sys.executable, str(REPO / "bench" / "floors.py"), kind, str(work / "floor.json")]


def command_for(tool: str, fleet: Fleet, k: int, work: Path) -> list[str]:
    if tool == "engine":
        return write_engine(fleet, k, work)
    if tool == "engine-free":
        return write_engine(fleet, k, work, strategy="free")
    if tool == "ansible":
        return write_ansible(fleet, k, work)
    if tool == "pyinfra":
        return write_pyinfra(fleet, k, work)
    return floor_command(tool.removesuffix("-floor"), fleet, k, work)


# ---------------------------------------------------------------- measuring


@dataclass
class Measure:
    wall: float
    cpu: float
    rss_mib: float
    rc: int


def measure(argv: list[str], cwd: Path, log: Path) -> Measure:
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "ANSIBLE_CONFIG": str(cwd / "ansible.cfg"),
                                     "RUNBOOK_HOME": str(cwd / "home")})  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    rc = os.waitstatus_to_exitcode(status)
    return Measure(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, rc)


def ensure_venv() -> None:
    if (VENV / "bin" / "ansible-playbook").exists() and (VENV / "bin" / "pyinfra").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "ansible-core<2.20",
                    "pyinfra==3.10.0"], check=True)  # fmt: skip


def compile_engine() -> None:
    """Byte-compile the engine, as installing a package does (pip compiles at install).

    This checkout is an editable install: with PYTHONDONTWRITEBYTECODE set (as on
    these machines) every run would compile ~60 modules from source again, ~50 ms
    that no installed tool pays, Ansible and pyinfra included.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "engine")], check=True)


def version(tool: str) -> str:
    if tool not in ("ansible", "pyinfra"):
        return tool
    argv = [str(VENV / "bin" / tool), "--version"]
    text = subprocess.run(argv, capture_output=True, text=True).stdout
    if tool == "ansible":
        return text.split("\n")[0].replace("ansible [core ", "Ansible ").rstrip("]")
    return text.strip().replace("pyinfra: v", "pyinfra ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="50x10,10x100", help="HOSTSxSTEPS,...")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"of {', '.join(TOOLS + EXTRA)}")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per tool, interleaved; the median is shown"
    )
    args = parser.parse_args()
    tools = args.tools.split(",")
    unknown = sorted(set(tools) - set(TOOLS + EXTRA))
    if unknown:
        parser.error(f"unknown tool(s): {', '.join(unknown)}")
    if {"ansible", "pyinfra"} & set(tools):
        ensure_venv()
    compile_engine()
    results: dict[str, dict[str, Measure]] = {}
    for row in args.rows.split(","):
        n, k = map(int, row.split("x"))
        work = Path(tempfile.mkdtemp(prefix=f"rbbench-{row}-"))
        os.chmod(work, 0o755)
        fleet = start_fleet(n, work)
        try:
            commands = {tool: command_for(tool, fleet, k, work) for tool in tools}
            # One untimed pass first: a fresh sshd's first logins are slower, and
            # whichever tool ran first would pay for that.
            measure(command_for("session-floor", fleet, k, work), work, work / "warm-up.log")
            runs: dict[str, list[Measure]] = {tool: [] for tool in tools}
            for i in range(args.repeat):
                for tool in tools:
                    if tool == "ansible" and i > 0:
                        continue  # minutes a run: once is enough to see where it stands
                    m = measure(commands[tool], work, work / f"{tool}.log")
                    runs[tool].append(m)
                    status = "" if m.rc == 0 else f"  (exit {m.rc}: see {work / (tool + '.log')})"
                    print(f"{row:>7} {tool:<14} {m.wall:7.2f}s wall {m.cpu:7.2f}s cpu "
                          f"{m.rss_mib:6.0f} MiB{status}", flush=True)  # fmt: skip
            results[row] = {tool: median(ms) for tool, ms in runs.items()}
        finally:
            fleet.stop()
    print_table(results, tools, args.repeat)


def median(runs: list[Measure]) -> Measure:
    """The run with the median wall time (its own CPU and memory with it)."""
    ordered = sorted(runs, key=lambda m: m.wall)
    return ordered[(len(ordered) - 1) // 2]


def print_table(results: dict[str, dict[str, Measure]], tools: list[str], repeat: int) -> None:
    names = {t: version(t) for t in tools}
    print("\n| work | " + " | ".join(names[t] for t in tools) + " |")
    print("|---|" + "---|" * len(tools))
    for row, by_tool in results.items():
        n, k = row.split("x")
        base = by_tool.get("session-floor")
        cells = []
        for t in tools:
            m = by_tool[t]
            ratio = f" ({m.wall / base.wall:.2f}×)" if base else ""
            cells.append(f"{m.wall:.2f} s{ratio}, {m.cpu:.1f} s CPU, {m.rss_mib:.0f} MiB")
        print(f"| {n} hosts × {k} steps | " + " | ".join(cells) + " |")
    print(
        f"\nmedian of {repeat} interleaved runs (Ansible: 1); ratios: wall time over the "
        "session floor's, same row, same run"
    )
    for row, by_tool in results.items():
        for floor in ("subshell-floor", "recorded-floor"):
            for engine in ("engine", "engine-free"):
                if engine in by_tool and floor in by_tool:
                    ratio = by_tool[engine].wall / by_tool[floor].wall
                    print(f"{row}: {engine} over the {floor}: {ratio:.2f}×")


if __name__ == "__main__":
    main()
