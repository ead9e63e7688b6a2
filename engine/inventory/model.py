"""What every inventory format is parsed into, and the host-field rules they share.

The native YAML, Ansible YAML and Ansible INI readers each turn a file into a
`Spec` (declared groups and hosts, with where each came from); one builder in
loader.py then applies group membership, var precedence and the checks that
span the file (unknown children, cycles, jump hosts). Keeping the formats apart
from the semantics is what makes "an INI and a YAML inventory describing the
same hosts give the same Inventory" true by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Location, Problem, did_you_mean
from engine.format.source import snippet
from engine.redaction import MASK

HOST_FIELDS = (
    "address",
    "connection",
    "user",
    "port",
    "key_file",
    "password",
    "jump",
    "host_key_policy",
    "known_hosts",
    "connect_timeout",
    "zone",
)
CONNECTIONS = ("ssh", "local")
POLICIES = ("strict", "accept-new", "ignore")
RESERVED_GROUPS = ("all", "ungrouped")
# A zone becomes a queue name (runbook.zone.<zone>), so it stays a plain word.
ZONE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class HostDecl:
    """A host as written: its explicit fields and vars, merged over its mentions."""

    name: str
    where: Location
    fields: dict[str, Any] = field(default_factory=dict)
    field_where: dict[str, Location] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroupDecl:
    name: str
    where: Location
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)  # direct members, in file order
    children: list[str] = field(default_factory=list)
    child_where: dict[str, Location] = field(default_factory=dict)
    priority: int = 100  # Ansible's ansible_group_priority: lower merges first
    zone: str | None = None  # native `zone:`, for the hosts below it


@dataclass
class VarFiles:
    """What one inventory source's group_vars/ and host_vars/ hold (ansible_vars.py)."""

    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Spec:
    """One inventory source (or several, merged), parsed but not yet resolved."""

    file: str
    text: str
    format: str  # native | ansible-yaml | ansible-ini | ansible-json | ansible-script
    defaults: dict[str, Any] = field(default_factory=dict)
    defaults_where: dict[str, Location] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)  # the `all` level
    groups: dict[str, GroupDecl] = field(default_factory=dict)
    hosts: dict[str, HostDecl] = field(default_factory=dict)  # first appearance order
    problems: list[Problem] = field(default_factory=list)
    # Per source, in source order: a later source's files win (Ansible's order).
    var_files: list[VarFiles] = field(default_factory=list)
    # Each file's text by name, for snippets once several sources are merged.
    texts: dict[str, str] = field(default_factory=dict)
    # (var, ssh option) the engine ignores → the hosts it was set for
    ignored: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def problem(self, where: Location, message: str, hint: str = "", path: str = "") -> None:
        self.problems.append(
            Problem(
                message=message,
                location=where,
                path=path,
                hint=hint,
                snippet=snippet(self.texts.get(where.file, self.text), where.line, where.column),
            )
        )

    def group(self, name: str, where: Location) -> GroupDecl:
        if name not in self.groups:
            self.groups[name] = GroupDecl(name, where)
        return self.groups[name]

    def host(self, name: str, where: Location) -> HostDecl:
        if name not in self.hosts:
            self.hosts[name] = HostDecl(name, where)
        return self.hosts[name]


def unknown_key_hint(name: object, candidates: list[str] | tuple[str, ...]) -> str:
    return did_you_mean(name, candidates) or "valid: " + ", ".join(candidates)


def check_field(name: str, value: Any) -> tuple[Any, str]:
    """(normalised value, "") or (None, why it is wrong) for one host field."""
    if name == "port":
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"port must be a number from 1 to 65535, not {value!r}"
        if not 1 <= value <= 65535:
            return None, f"port {value} is out of range (1-65535)"
        return value, ""
    if name == "connection":
        if value not in CONNECTIONS:
            return None, f"connection must be one of {', '.join(CONNECTIONS)}, not {value!r}"
        return value, ""
    if name == "host_key_policy":
        if value not in POLICIES:
            return None, f"host_key_policy must be one of {', '.join(POLICIES)}, not {value!r}"
        return value, ""
    if name == "connect_timeout":
        from engine.format.model import parse_duration

        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            return None, f"connect_timeout: {exc}"
        if seconds <= 0:
            return None, "connect_timeout must be more than 0 seconds"
        return seconds, ""
    if name == "zone":
        return check_zone(value)
    # address, user, key_file, password, jump, known_hosts: text
    if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
        return None, f"{name} must be text, not {type(value).__name__}"
    text = str(value)
    if not text.strip():
        return None, f"{name} must not be empty"
    return text, ""


def check_zone(value: Any) -> tuple[str | None, str]:
    """A zone is a word, as it names a worker's queue. A whole number is read as
    text (`zone: 7` in YAML), a fraction is not: `1.10` would become `1.1`."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, f"zone must be text, not {type(value).__name__}"
    text = str(value)
    if not text:
        return None, "zone must not be empty"
    if not ZONE.fullmatch(text):
        return None, (
            f"zone {text!r} is not a valid zone name: use letters, digits, `.`, `_` and `-`, "
            "starting with a letter or digit"
        )
    return text, ""


def set_field(
    spec: Spec, decl: HostDecl, name: str, value: Any, where: Location, path: str = ""
) -> None:
    """Record an explicit field, refusing two different values for one host."""
    path = path or f"{decl.name}.{name}"
    value, error = check_field(name, value)
    if error:
        spec.problem(where, error, path=path)
        return
    if name in decl.fields and decl.fields[name] != value:
        first = decl.field_where[name]
        shown = MASK if name == "password" else repr(decl.fields[name])
        spec.problem(
            where,
            f"host {decl.name!r}: {name} is set twice with different values",
            f"first set to {shown} at line {first.line}",
            path=path,
        )
        return
    decl.fields[name] = value
    decl.field_where.setdefault(name, where)
