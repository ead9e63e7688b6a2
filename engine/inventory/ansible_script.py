"""Ansible's dynamic inventories: an executable run with `--list`, and the same
JSON read from a file (what `ansible-inventory --list` prints).

The JSON, as Ansible's script plugin reads it: each top-level key but `_meta`
is a group, whose body is a list of hosts or a mapping of `hosts` (a list),
`vars` and `children` (a list); `_meta.hostvars` maps each host to its vars.
A script that prints no `_meta.hostvars` is asked `--host NAME` per host, as
Ansible does. A script that fails, hangs or prints no JSON is an invalid
inventory (exit 65): its stderr and exit code are in the error, since the
operator's next step is to run it by hand.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from engine.errors import Location
from engine.redaction import redact_dsn

from .model import RESERVED_GROUPS, Spec

DEFAULT_TIMEOUT = 60.0  # seconds; $RUNBOOK_INVENTORY_SCRIPT_TIMEOUT
_STDERR_SHOWN = 2000  # characters of a failed script's stderr (its end: where the error is)


class ScriptFailed(Exception):
    """The script could not give its JSON; the message says why."""


def is_script(path: Path) -> bool:
    """Executable and a program (`#!` or ELF): an executable YAML or INI file,
    which Ansible would try to run and then read, is just read here."""
    if not os.access(path, os.X_OK):
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head.startswith((b"#!", b"\x7fELF"))


def looks_like_list_json(data: Any) -> bool:
    """The --list shape (`_meta`, or groups whose hosts/children are lists), as
    opposed to Ansible's YAML inventory written as JSON (hosts a mapping)."""
    if not isinstance(data, dict) or not data:
        return False
    if "_meta" in data:
        return True
    for body in data.values():
        if isinstance(body, list):
            return True
        if isinstance(body, dict) and any(
            isinstance(body.get(k), list) for k in ("hosts", "children")
        ):
            return True
    return False


def script_timeout() -> float:
    try:
        return float(os.environ.get("RUNBOOK_INVENTORY_SCRIPT_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def run_script(path: Path, *args: str) -> bytes:
    """The script's stdout; ScriptFailed if it cannot start, fails or hangs."""
    command = [str(path), *args]
    shown = " ".join(command)
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a timeout kills what it started too
        )
    except OSError as exc:
        raise ScriptFailed(f"cannot run `{shown}`: {exc.strerror or exc}") from None
    timeout = script_timeout()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ScriptFailed(
            f"`{shown}` did not finish within {timeout:g} s "
            "(RUNBOOK_INVENTORY_SCRIPT_TIMEOUT sets the limit)"
        ) from None
    if proc.returncode != 0:
        text = _shown_stderr(err)
        raise ScriptFailed(
            f"`{shown}` failed with exit code {proc.returncode}"
            + (f"; its stderr:\n{text}" if text else " and wrote nothing to stderr")
        )
    return out


def _shown_stderr(err: bytes) -> str:
    """The end of stderr, with credentials in URLs masked (redaction.py)."""
    text = err.decode("utf-8", "replace").strip()[-_STDERR_SHOWN:]
    return re.sub(r"[a-zA-Z][\w+.-]*://[^\s)'\"<>]+", lambda m: redact_dsn(m.group(0)), text)


def decode_json(file: str, raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        first = raw.decode("utf-8", "replace").strip().splitlines()[:1]
        seen = f" (it began: {first[0][:80]!r})" if first else " (it printed nothing)"
        raise ScriptFailed(f"{what} is not JSON: {exc}{seen}") from None


def read_script(path: Path) -> tuple[Spec, bytes]:
    """`path --list` (and `--host NAME` where needed) as a Spec, with the output read."""
    file = str(path)
    spec = Spec(file, "", "ansible-script")
    try:
        raw = run_script(path, "--list")
        data = decode_json(file, raw, f"the output of `{file} --list`")
        if not isinstance(data, dict):
            raise ScriptFailed(f"`{file} --list` printed JSON that is not a mapping of groups")
        parse_list_json(spec, data, lambda host: _host_vars(path, host))
    except ScriptFailed as exc:
        spec.problem(
            Location(file), f"inventory script: {exc}", f"run `{file} --list` by hand to see why"
        )
        return spec, b""
    return spec, raw


def _host_vars(path: Path, host: str) -> dict[str, Any]:
    data = decode_json(str(path), run_script(path, "--host", host), f"`{path} --host {host}`")
    if not isinstance(data, dict):
        raise ScriptFailed(f"`{path} --host {host}` printed JSON that is not a mapping")
    return data


def parse_list_json(spec: Spec, data: dict[str, Any], ask: Any = None) -> None:
    """Groups, hosts and vars from --list JSON into `spec`. `ask(host)` gives a
    host's vars when there is no `_meta.hostvars` (a script); a file without it
    has none to give."""
    where = Location(spec.file)
    meta = data.get("_meta")
    hostvars = meta.get("hostvars") if isinstance(meta, dict) else None
    if hostvars is not None and not isinstance(hostvars, dict):
        spec.problem(where, "_meta.hostvars must map host names to their vars")
        return
    for name, body in data.items():
        if name != "_meta":
            _group(spec, str(name), body, where)
    for host, decl in spec.hosts.items():
        if hostvars is not None:
            got = hostvars.get(host) or {}
        else:
            got = ask(host) if ask is not None else {}
        if not isinstance(got, dict):
            spec.problem(where, f"the vars of host {host!r} must be a mapping")
            continue
        decl.vars.update({str(k): v for k, v in got.items()})


def _group(spec: Spec, name: str, body: Any, where: Location) -> None:
    decl = spec.group(name, where)
    if not isinstance(body, dict):
        body = {"hosts": body}
    elif not any(k in body for k in ("hosts", "vars", "children")):
        body = {"hosts": [name], "vars": body}  # Ansible's shorthand: a host with vars
    hosts, children = body.get("hosts") or [], body.get("children") or []
    variables = body.get("vars") or {}
    if not isinstance(hosts, list) or not isinstance(children, list):
        spec.problem(where, f"group {name!r}: hosts and children must be lists of names")
        return
    if not isinstance(variables, dict):
        spec.problem(where, f"group {name!r}: vars must be a mapping")
        return
    for host in hosts:
        spec.host(str(host), where)
        if str(host) not in decl.hosts:
            decl.hosts.append(str(host))
    for key, value in variables.items():
        if key == "ansible_group_priority" and isinstance(value, int | str):
            decl.priority = int(value) if str(value).lstrip("-").isdigit() else decl.priority
        else:
            decl.vars[str(key)] = value
    for child in map(str, children):
        if child in RESERVED_GROUPS and name == "all":
            continue  # `all: {children: [ungrouped, ...]}`: implicit here anyway
        spec.group(child, where)
        if child not in decl.children:
            decl.children.append(child)
