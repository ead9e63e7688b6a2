"""Host patterns (runbook `hosts:` and `--limit`), evaluated as Ansible does.

A pattern is split into terms (`,`, or Ansible's legacy `:` when no comma is
present); plain terms are unioned first, then `&term`s intersect, then `!term`s
exclude, whatever order they were written in, so `!db2,all` still means "all but
db2". A term is a host or group name, `all`/`*`, a glob, or `~regex`; a term that
names groups may take a subscript (`webservers[0]`, `webservers[1:]`).

Where we are stricter than Ansible (which only warns): a literal name that is
neither a host nor a group is an error, because a typo in `all:!db-2` would
otherwise run on the very host the operator meant to spare; and a pattern that
selects no host at all is an error. A glob or regex that matches nothing is fine.

The result keeps inventory order (first appearance in the file), not the order
of the terms, so a batch (`serial`) is the same whichever way the pattern is spelt.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from engine.errors import UsageError, did_you_mean

_GLOB_CHARS = ("*", "?", "[")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?\d+)|(\d+):(\d*))\]$")
# A term of a ':'-separated legacy pattern: anything but whitespace, ':' and
# brackets, or one whole bracketed expression (a range or a glob class).
_COLON_TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_IPV6 = re.compile(r"^[0-9a-fA-F:]+(?:%\w+)?$")


class PatternError(UsageError):
    """A host pattern is malformed or selects nothing (exit 64)."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.reason = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class HostUniverse(Protocol):
    """What pattern evaluation needs to know about an inventory."""

    @property
    def host_names(self) -> Sequence[str]: ...

    @property
    def group_members(self) -> Mapping[str, Sequence[str]]: ...


def split_pattern(pattern: str | Sequence[str]) -> list[str]:
    """'a,b:&c' → terms, as Ansible's split_host_pattern.

    With a comma, commas separate. Without, a lone host (`db1`, `10.0.0.1`, an
    IPv6 address, `web[01:03]`) is one term, otherwise `:` separates terms.
    """
    if not isinstance(pattern, str):
        return [t for p in pattern for t in split_pattern(p)]
    pattern = pattern.strip()
    if "," in pattern:
        terms = pattern.split(",")
    elif _is_single_address(pattern):
        terms = [pattern]
    else:
        terms = _COLON_TERM.findall(pattern)
    return [t.strip() for t in terms if t.strip()]


def _is_single_address(pattern: str) -> bool:
    """True when `:` in the pattern belongs to an address or a range, not a separator."""
    if ":" not in pattern:
        return True
    if pattern[0] in "&!~":
        return False
    bare = re.sub(r"\[[^\]]*\]", "", pattern)  # ranges and subscripts hold ':' too
    if ":" not in bare:
        return True
    # An IPv6 address has several colons and nothing but hex digits.
    return bare.count(":") >= 2 and bool(_IPV6.match(pattern))


def order_terms(terms: list[str]) -> list[str]:
    """Plain terms first, then intersections, then exclusions; `all` if no plain term."""
    plain = [t for t in terms if t[0] not in "&!"]
    inter = [t for t in terms if t[0] == "&"]
    exclude = [t for t in terms if t[0] == "!"]
    return (plain or ["all"]) + inter + exclude


def evaluate(pattern: str | Sequence[str], universe: HostUniverse) -> list[str]:
    """The host names `pattern` selects, in inventory order. Raises PatternError."""
    terms = split_pattern(pattern)
    if not terms:
        raise PatternError("empty host pattern", "use `all`, a group, a host or a glob")
    selected: set[str] = set()
    for term in order_terms(terms):
        op, body = (term[0], term[1:]) if term[0] in "&!" else ("", term)
        if not body:
            raise PatternError(f"host pattern {_show(pattern)}: `{term}` names nothing")
        if not op and body in universe.host_names:
            matched = {body}  # as Ansible: a plain term naming a host is that host
        else:
            matched = set(_match_term(body, universe))
        if op == "&":
            selected &= matched
        elif op == "!":
            selected -= matched
        else:
            selected |= matched
    result = [name for name in universe.host_names if name in selected]
    if not result:
        raise PatternError(
            f"host pattern {_show(pattern)} matches no host",
            _groups_hint(universe),
        )
    return result


def _match_term(term: str, universe: HostUniverse) -> list[str]:
    """Hosts of one term (no & or !), in inventory order, subscript applied."""
    expr, subscript = _split_subscript(term)
    hosts = _enumerate(expr, universe)
    if subscript is None:
        return hosts
    start, end = subscript
    if not hosts:
        return hosts
    try:
        if end is None:
            return [hosts[start]]
        return hosts[start : (len(hosts) if end == -1 else end + 1)]
    except IndexError:
        raise PatternError(
            f"host pattern `{term}`: index {start} is out of range",
            f"`{expr}` has {len(hosts)} host(s), indexed from 0",
        ) from None


def _split_subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    if term.startswith("~"):
        return term, None
    match = _SUBSCRIPT.match(term)
    if not match:
        return term, None
    expr, index, start, end = match.groups()
    if index is not None:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


def _enumerate(expr: str, universe: HostUniverse) -> list[str]:
    members = universe.group_members
    if expr in ("all", "*"):
        return list(universe.host_names)
    is_regex = expr.startswith("~")
    is_glob = any(c in expr for c in _GLOB_CHARS)
    if not is_regex and not is_glob:
        if expr in members:
            return list(members[expr])
        if expr in set(universe.host_names):
            return [expr]
        raise PatternError(
            f"`{expr}` is neither a host nor a group of the inventory",
            _close_hint(expr, universe),
        )
    try:
        rx = re.compile(expr[1:] if is_regex else fnmatch.translate(expr))
    except re.error as exc:
        raise PatternError(f"host pattern `{expr}` is not a valid regex: {exc}") from None
    found: set[str] = set()
    for group, hosts in members.items():
        if rx.match(group):
            found.update(hosts)
    found.update(h for h in universe.host_names if rx.match(h))
    return [h for h in universe.host_names if h in found]


def _show(pattern: str | Sequence[str]) -> str:
    return f"`{pattern if isinstance(pattern, str) else ','.join(pattern)}`"


def _close_hint(name: str, universe: HostUniverse) -> str:
    groups = [g for g in universe.group_members if g not in ("all", "ungrouped")]
    candidates = [*groups, *universe.host_names]
    return did_you_mean(name, candidates, n=3) or _groups_hint(universe)


def _groups_hint(universe: HostUniverse) -> str:
    groups = [g for g in universe.group_members if g not in ("all", "ungrouped")]
    shown = ", ".join(groups[:10]) + (", ..." if len(groups) > 10 else "")
    return f"groups: {shown}" if groups else "the inventory has no groups; use `all` or a host"
