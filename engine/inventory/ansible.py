"""Ansible inventories (YAML with `all:`, and INI), read as Ansible reads them.

Faithful where it matters for an operator moving over from Ansible:
- INI values (host lines and `[group:vars]` lines alike) go through
  `ast.literal_eval`, as Ansible's ini plugin does: `port=22` is the number 22,
  `flag=True` is a boolean, `name=FALSE` stays the text "FALSE". Host lines are
  split with shlex first, so quotes there are consumed by shlex.
- `host:2222` sets the port; `web[01:03]` and `db-[a:c]` are host ranges.
- `[g:vars]` for a group never declared, and `[g:children]` naming a group never
  declared, are errors, as in Ansible.
- Connection vars (`ansible_host`, `ansible_port`, ...) become Host fields after
  the vars are merged (ansible_ssh.py), so a `[prod:vars] ansible_user=ops`
  reaches every prod host.

Stricter than Ansible, which only warns: an unknown key in a YAML group is an
error, as everywhere else in the engine.
"""

from __future__ import annotations

import ast
import re
import shlex
import string
import warnings
from typing import Any

from engine.errors import Location
from engine.format.source import PathKey, YamlDoc, format_path

from .model import Spec, unknown_key_hint

GROUP_KEYS = ("vars", "hosts", "children")

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


# --- host patterns: ports and ranges ---------------------------------------


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """'web[01:03]:2222' → (['web01', 'web02', 'web03'], 2222). ValueError if bad."""
    pattern = pattern.strip()
    port: int | None = None
    ipv6 = re.match(r"^\[([0-9a-fA-F:.%\w]+)\](?::(\d+))?$", pattern)
    if ipv6 and ":" in ipv6.group(1):
        return [ipv6.group(1)], int(ipv6.group(2)) if ipv6.group(2) else None
    bare = re.sub(r"\[[^\]]*\]", "", pattern)
    if bare.count(":") == 1:
        cut = _last_colon_outside_brackets(pattern)
        head, tail = pattern[:cut], pattern[cut + 1 :]
        if not tail:
            raise ValueError(f"host {pattern!r} ends in ':', which is reserved for a port")
        if not tail.isdigit():
            raise ValueError(f"host {pattern!r}: the port {tail!r} is not a number")
        pattern, port = head, int(tail)
    if "[" in pattern:
        return _expand_range(pattern), port
    return [pattern], port


def _last_colon_outside_brackets(text: str) -> int:
    depth, last = 0, -1
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == ":" and depth == 0:
            last = i
    return last


def _expand_range(name: str) -> list[str]:
    """Ansible's expand_hostname_range: [01:10], [a:f], [1:9:2]; nested left to right."""
    if "]" not in name[name.index("[") :]:
        raise ValueError(f"host range in {name!r} is not closed")
    head, rest = name.split("[", 1)
    body, tail = rest.split("]", 1)
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range [{body}] must be begin:end or begin:end:step")
    beg, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError(f"host range [{body}] must specify an end")
    width = len(beg) if beg[0] == "0" and len(beg) > 1 else 0
    if width and width != len(end):
        raise ValueError(f"host range [{body}]: begin and end must have the same width")
    try:
        stride = int(step)
    except ValueError:
        raise ValueError(f"host range [{body}]: step {step!r} is not a number") from None
    if stride < 1:
        raise ValueError(f"host range [{body}]: step must be 1 or more")
    letters = string.ascii_letters
    seq: list[str]
    if beg in letters and end in letters and len(beg) == len(end) == 1:
        if letters.index(beg) > letters.index(end):
            raise ValueError(f"host range [{body}] must have begin <= end")
        seq = list(letters[letters.index(beg) : letters.index(end) + 1 : stride])
    else:
        try:
            numbers = range(int(beg), int(end) + 1, stride)
        except ValueError:
            raise ValueError(f"host range [{body}] is neither numbers nor letters") from None
        seq = [str(n).zfill(width) if width else str(n) for n in numbers]
    out: list[str] = []
    for item in seq:
        expanded = f"{head}{item}{tail}"
        out.extend(_expand_range(expanded) if "[" in expanded else [expanded])
    return out


# --- INI -------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """An INI value as Ansible's ini plugin types it (ast.literal_eval, else text)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value: Any = ast.literal_eval(text)
    except Exception:  # ValueError / SyntaxError: not a literal, keep the text
        value = text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _coerce(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    return value


def parse_ini(file: str, text: str) -> Spec:
    spec = Spec(file, text, "ansible-ini")
    declared = {"all", "ungrouped"}
    vars_only: dict[str, Location] = {}
    child_refs: list[tuple[str, str, Location]] = []
    group, state = "ungrouped", "hosts"
    spec.group("ungrouped", Location(file, 1, 1))
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = Location(file, number, raw.index(line[0]) + 1)
        section = _SECTION.match(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "vars", "children"):
                spec.problem(
                    where,
                    f"section [{group}:{state}] has an unknown type {state!r}",
                    unknown_key_hint(state, ("vars", "children")),
                )
                state = "skip"
                continue
            spec.group(group, where)
            if state == "vars":
                vars_only.setdefault(group, where)
            else:
                declared.add(group)
            continue
        if line.startswith("[") and line.endswith("]"):
            spec.problem(where, f"invalid section {line}", "no spaces, at most one ':' inside [ ]")
            state = "skip"
            continue
        if state == "hosts":
            _ini_host_line(spec, group, line, where)
        elif state == "vars":
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                spec.problem(where, f"expected key=value in [{group}:vars], got {line!r}")
                continue
            _set_group_var(spec, group, name.strip(), parse_value(value.strip()), where)
        elif state == "children":
            match = _GROUP_NAME.match(line)
            if not match:
                spec.problem(where, f"expected a group name in [{group}:children], got {line!r}")
                continue
            child_refs.append((group, match.group(1), where))
    for name, where in vars_only.items():
        if name not in declared:
            spec.problem(where, f"section [{name}:vars] is for a group that is never declared", "")
            spec.groups.pop(name, None)
    for parent, child, where in child_refs:
        if child not in declared:
            spec.problem(where, f"[{parent}:children] includes undeclared group {child!r}")
            continue
        decl = spec.groups[parent]
        if child not in decl.children:
            decl.children.append(child)
            decl.child_where[child] = where
    return spec


def _ini_host_line(spec: Spec, group: str, line: str, where: Location) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        spec.problem(where, f"cannot parse host line: {exc}")
        return
    if not tokens:
        return
    try:
        names, port = expand_host_pattern(tokens[0])
    except ValueError as exc:
        spec.problem(where, str(exc))
        return
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            col = where.column + line.find(token)
            spec.problem(
                Location(where.file, where.line, col),
                f"expected key=value after the host name, got {token!r}",
            )
            continue
        variables[key] = parse_value(value)
    _add_hosts(spec, group, names, port, variables, where)


def _add_hosts(
    spec: Spec,
    group: str,
    names: list[str],
    port: int | None,
    variables: dict[str, Any],
    where: Location,
) -> None:
    decl = spec.groups[group]
    for name in names:
        host = spec.host(name, where)
        if port is not None:
            host.vars["ansible_port"] = port
        host.vars.update(variables)
        if name not in decl.hosts:
            decl.hosts.append(name)


def _set_group_var(spec: Spec, group: str, name: str, value: Any, where: Location) -> None:
    decl = spec.groups[group]
    if name == "ansible_group_priority":
        try:
            decl.priority = int(value)
        except (TypeError, ValueError):
            spec.problem(where, f"ansible_group_priority must be a number, not {value!r}")
        return
    decl.vars[name] = value


# --- YAML ------------------------------------------------------------------


def looks_like_ansible_yaml(data: dict[Any, Any], native_keys: tuple[str, ...]) -> bool:
    """`all:` at the top, or only groups made of hosts/vars/children."""
    if "all" in data:
        return True
    if not data or any(k in native_keys for k in data):
        return False
    return all(
        body is None or (isinstance(body, dict) and set(body) <= set(GROUP_KEYS) and body)
        for body in data.values()
    )


def parse_ansible_yaml(doc: YamlDoc) -> Spec:
    spec = Spec(doc.file, doc.text, "ansible-yaml")
    for name, body in doc.data.items():
        _yaml_group(doc, spec, str(name), body, (name,))
    return spec


def _yaml_group(doc: YamlDoc, spec: Spec, name: str, body: Any, path: PathKey) -> None:
    decl = spec.group(name, doc.key_location(path))
    if body is None:
        return
    if not isinstance(body, dict):
        _problem(doc, spec, path, f"group {name!r} must be a mapping of hosts/vars/children")
        return
    for key in body:
        if key not in GROUP_KEYS:
            hint = unknown_key_hint(key, GROUP_KEYS)
            _problem(doc, spec, (*path, key), f"unknown key {key!r} in group {name!r}", hint, True)
    for section in GROUP_KEYS:
        value = body.get(section)
        if isinstance(value, str):  # Ansible accepts `hosts: web1` for one host
            value = {value: None}
        if value is None:
            continue
        if not isinstance(value, dict):
            _problem(doc, spec, (*path, section), f"{section} of group {name!r} must be a mapping")
            continue
        for key, item in value.items():
            here = (*path, section, key)
            if section == "vars":
                _set_group_var(spec, name, str(key), item, doc.location(here))
            elif section == "children":
                child = str(key)
                if child not in decl.children:
                    decl.children.append(child)
                    decl.child_where[child] = doc.key_location(here)
                _yaml_group(doc, spec, child, item, here)
            else:
                _yaml_host(doc, spec, name, str(key), item, here)


def _yaml_host(
    doc: YamlDoc, spec: Spec, group: str, pattern: str, body: Any, path: PathKey
) -> None:
    try:
        names, port = expand_host_pattern(pattern)
    except ValueError as exc:
        _problem(doc, spec, path, str(exc), key=True)
        return
    if body is not None and not isinstance(body, dict):
        _problem(doc, spec, path, f"host {pattern!r} must map to its vars (or be empty)")
        body = None
    _add_hosts(
        spec,
        group,
        names,
        port,
        {str(k): v for k, v in (body or {}).items()},
        doc.key_location(path),
    )


def _problem(
    doc: YamlDoc, spec: Spec, path: PathKey, message: str, hint: str = "", key: bool = False
) -> None:
    where = doc.key_location(path) if key else doc.location(path)
    spec.problem(where, message, hint, format_path(path))
