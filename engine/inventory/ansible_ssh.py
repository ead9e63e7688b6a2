"""Ansible's connection vars, the engine's `runbook_*` vars, and the OpenSSH
arguments in ansible_ssh_*_args, as Host fields.

The engine's SSH is paramiko, not the ssh binary, so arguments cannot be passed
through: each option that says where or how to connect is mapped onto a field
(jump host, port, key, user, known_hosts and its policy, connect timeout), and
every other one is reported back as ignored, so the operator sees it rather
than finding out at the first connection.

Which value wins follows what Ansible's ssh command line ends up doing: a named
var (`ansible_port`) beats `-p`, since Ansible puts its own `-o Port=` first and
OpenSSH keeps the first value it is given; for the same reason the first of
several occurrences wins, and common args beat extra args.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from .model import check_field

# Later entries win over earlier ones mapping to the same field, as the later
# names in the `vars:` lists of Ansible's ssh plugin options do.
CONNECTION_VARS: dict[str, str] = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_connection": "connection",
    "ansible_private_key_file": "key_file",
    "ansible_ssh_private_key_file": "key_file",
    "ansible_password": "password",
    "ansible_ssh_pass": "password",
    "ansible_ssh_password": "password",
    "ansible_timeout": "connect_timeout",
    "ansible_ssh_timeout": "connect_timeout",
    "ansible_host_key_checking": "host_key_policy",
    "ansible_ssh_host_key_checking": "host_key_policy",
}
# The engine's own host fields, set as vars since Ansible's formats have no other
# place for them; like connection vars they follow var precedence and then leave
# the vars.
ENGINE_VARS: dict[str, str] = {"runbook_zone": "zone"}
FIELD_VARS = {**CONNECTION_VARS, **ENGINE_VARS}
SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
_SSH_CONNECTIONS = (
    "ssh",
    "paramiko",
    "smart",
    "ansible.builtin.ssh",
    "ansible.builtin.paramiko_ssh",
)
_LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")

# `-o Name=value` options the engine honours, and the field each sets.
_OPTION_FIELDS = {
    "proxyjump": "jump",
    "userknownhostsfile": "known_hosts",
    "stricthostkeychecking": "host_key_policy",
    "identityfile": "key_file",
    "port": "port",
    "user": "user",
    "hostname": "address",
    "connecttimeout": "connect_timeout",
}
_FLAG_FIELDS = {"-J": "jump", "-i": "key_file", "-p": "port", "-l": "user"}
# ssh(1) flags that take an argument: an ignored one must skip its argument too.
_WITH_ARGUMENT = frozenset("BbcDEeFIiJLlmOopQRSWw")
_STRICT = {
    "yes": "strict",
    "ask": "strict",
    "no": "ignore",
    "off": "ignore",
    "accept-new": "accept-new",
}
# `ssh [opts] -W %h:%p [user@]gateway`: a jump host written the old way.
_NETCAT_MODE = re.compile(r"^%h:%p$")


class SshArgs:
    """What one host's ssh args gave: fields, errors, and the options ignored."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields  # set by name already: they win
        self.errors: list[str] = []
        self.ignored: list[tuple[str, str]] = []  # (var, option as written, without value)
        self.given: set[str] = set()  # fields set by these args (first one wins)

    def set(self, key: str, field: str, value: Any, shown: str) -> None:
        if field in self.fields or field in self.given:
            return
        checked, error = check_field(field, value)
        if error:
            self.errors.append(f"{key}: {shown}: {error}")
            return
        self.fields[field] = checked
        self.given.add(field)


def connection_fields(
    merged: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], list[str], list[tuple[str, str]]]:
    """Split merged vars into (Host fields, remaining vars, errors, ignored ssh options)."""
    fields: dict[str, Any] = {}
    rest = {k: v for k, v in merged.items() if k not in FIELD_VARS}
    errors: list[str] = []
    for key, name in FIELD_VARS.items():
        if key not in merged:
            continue
        value = merged[key]
        if name == "connection":
            value = _connection(value, errors)
        elif name == "host_key_policy":
            value = "strict" if _truthy(value) else "ignore"
        if value is None:
            continue
        checked, error = check_field(name, value)
        if error:
            errors.append(f"{key}: {error}")
        else:
            fields[name] = checked
    args = SshArgs(fields)
    for key in SSH_ARG_VARS:
        value = merged.get(key)
        if isinstance(value, str) and value.strip():
            map_ssh_args(key, value, args)
    return fields, rest, errors + args.errors, args.ignored


def map_ssh_args(key: str, text: str, out: SshArgs) -> None:
    """OpenSSH command-line arguments onto Host fields (see the module docstring)."""
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        out.errors.append(f"{key}: cannot split {text!r}: {exc}")
        return
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-") or len(token) < 2:
            out.ignored.append((key, token))
            continue
        flag, value = token[:2], token[2:]
        if flag[1] in _WITH_ARGUMENT and not value:
            if i >= len(tokens):
                out.errors.append(f"{key}: {flag} needs a value")
                return
            value, i = tokens[i], i + 1
        if flag == "-o":
            _option(key, value, out)
        elif flag in _FLAG_FIELDS:
            out.set(key, _FLAG_FIELDS[flag], value, f"{flag} {value}")
        else:
            # Flags without an argument may be bundled (-qC): name them as written.
            out.ignored.append((key, flag if flag[1] in _WITH_ARGUMENT else token))


def _option(key: str, text: str, out: SshArgs) -> None:
    name, value = _split_option(text)
    option = name.lower()
    shown = f"-o {name}={value}"
    if option == "proxycommand":
        jump = proxy_command_jump(value)
        if jump is None:
            out.ignored.append((key, "-o ProxyCommand (only `ssh -W %h:%p GATEWAY` is understood)"))
        else:
            out.set(key, "jump", jump, shown)
        return
    field = _OPTION_FIELDS.get(option)
    if field is None:
        out.ignored.append((key, f"-o {name}"))
        return
    if field == "host_key_policy":
        value = _STRICT.get(value.lower(), value)
    elif field == "known_hosts":
        value = value.split()[0] if value.split() else value  # ssh takes the first to write to
    elif field == "jump" and value.lower() == "none":
        return
    out.set(key, field, value, shown)


def _split_option(text: str) -> tuple[str, str]:
    """`Name=value`, `Name value` or `Name = value` (ssh_config syntax)."""
    match = re.match(r"^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*)$", text)
    if not match:
        return text.strip(), ""
    return match.group(1), match.group(2).strip()


def proxy_command_jump(command: str) -> str | None:
    """`ssh -W %h:%p [-p port] [-l user] [user@]gw` as the jump spec `user@gw:port`;
    None for any other ProxyCommand (nc, a script...), which the engine cannot run."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        return None
    if not tokens or tokens[0].rsplit("/", 1)[-1] != "ssh":
        return None
    port = user = dest = forward = None
    i = 1
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token.startswith("-") and len(token) >= 2:
            flag, value = token[:2], token[2:]
            if flag[1] in _WITH_ARGUMENT and not value and i < len(tokens):
                value, i = tokens[i], i + 1
            if flag == "-W":
                forward = value
            elif flag == "-p":
                port = value
            elif flag == "-l":
                user = value
            continue
        if dest is not None:
            return None  # a remote command: not a plain forward
        dest = token
    if dest is None or forward is None or not _NETCAT_MODE.match(forward):
        return None
    if user and "@" not in dest:
        dest = f"{user}@{dest}"
    return f"{dest}:{port}" if port else dest


def _connection(value: Any, errors: list[str]) -> str | None:
    if value in _SSH_CONNECTIONS:
        return "ssh"
    if value in _LOCAL_CONNECTIONS:
        return "local"
    errors.append(f"ansible_connection {value!r} is not supported (use ssh or local)")
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "true", "1", "y", "t")
    return bool(value)


def ignored_warnings(ignored: dict[tuple[str, str], list[str]]) -> list[str]:
    """One line per (var, option), naming the hosts: a group-wide option ignored on
    500 hosts is one warning, not 500."""
    lines = []
    for (key, option), hosts in ignored.items():
        named = ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more" if len(hosts) > 5 else "")
        noun = "host" if len(hosts) == 1 else "hosts"
        lines.append(f"{noun} {named}: {key}: {option} is ignored (the engine's SSH is paramiko)")
    return lines
