"""Hosts, groups and their vars, from an inventory file (docs/inventory.md).

    inventory = load_inventory("inventories/example.yaml")   # InventoryInvalid on any problem
    hosts = inventory.select_hosts("databases", limit="db*")  # PatternError if nothing matches

Formats: the native YAML format, and Ansible's YAML (`all:`) and INI formats,
told apart by content. Each is parsed into a `Spec` (model.py); the
builder below gives every format the same meaning, which is Ansible's:

- every group without a parent is a child of `all`; a host in no group but `all`
  is also in `ungrouped`;
- vars merge as Ansible's get_group_vars does: groups sorted by (depth, priority,
  name), depth being the longest path from `all`, so a child's vars beat its
  parent's and, at one depth, the alphabetically later group wins; host vars win
  over every group. group_vars/ and host_vars/ files interleave as in Ansible's
  variable precedence (`_merged_vars`). The runbook's vars and -e come later,
  in the executor;
- a native group's `zone:` merges the same way, between `defaults` and the
  host's own `zone:` (`_group_zone`); Ansible's `runbook_zone` is a var.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import InventoryInvalid, Location, Problem, did_you_mean

from .host import Host, localhost
from .model import RESERVED_GROUPS, GroupDecl, Spec
from .patterns import PatternError, evaluate

if TYPE_CHECKING:
    from .sources import Sources

__all__ = ["Group", "Inventory", "InventoryInvalid", "PatternError", "load_inventory"]


@dataclass
class Group:
    name: str
    hosts: list[str] = field(default_factory=list)  # direct members
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    depth: int = 0  # longest path from `all`
    priority: int = 100
    all_hosts: list[str] = field(default_factory=list)  # with the children's, inventory order
    file_vars: dict[str, Any] = field(default_factory=dict)  # from group_vars/, shown apart
    zone: str | None = None  # native `zone:`; Ansible's runbook_zone stays a var


class Inventory:
    """A resolved inventory. Hosts keep the order of their first appearance."""

    def __init__(
        self,
        hosts: dict[str, Host],
        groups: dict[str, Group],
        *,
        source: str = "localhost",
        digest: str = "localhost",
        format: str = "default",
    ) -> None:
        self.hosts = hosts
        self.groups = groups
        self.source = source
        self.digest = digest
        self.format = format
        # Said to the operator, not fatal: e.g. ssh options the engine ignores.
        self.warnings: list[str] = []

    # HostUniverse, for patterns.evaluate
    @property
    def host_names(self) -> list[str]:
        return list(self.hosts)

    @property
    def group_members(self) -> dict[str, list[str]]:
        return {name: g.all_hosts for name, g in self.groups.items()}

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts.values())

    def __len__(self) -> int:
        return len(self.hosts)

    def __contains__(self, name: object) -> bool:
        return name in self.hosts

    def get(self, name: str) -> Host:
        """The host called `name`; PatternError (exit 64) with a suggestion if none."""
        try:
            return self.hosts[name]
        except KeyError:
            hint = (
                did_you_mean(name, list(self.hosts)) or f"hosts: {', '.join(list(self.hosts)[:10])}"
            )
            raise PatternError(f"no host named {name!r} in the inventory", hint) from None

    def select(self, pattern: str) -> list[Host]:
        """Hosts matching an Ansible-style pattern, in inventory order."""
        return [self.hosts[name] for name in evaluate(pattern, self)]

    def select_hosts(self, pattern: str | None, limit: str | None = None) -> list[Host]:
        """`hosts:` narrowed by `--limit`, as ansible-playbook -l does."""
        hosts = self.select(pattern or "all")
        if not limit:
            return hosts
        allowed = {h.name for h in self.select(limit)}
        narrowed = [h for h in hosts if h.name in allowed]
        if not narrowed:
            raise PatternError(
                f"--limit {limit!r} leaves none of the hosts of {pattern or 'all'!r}",
                "selected: " + ", ".join(h.name for h in hosts[:10]),
            )
        return narrowed


def load_inventory(path: Sources | None) -> Inventory:
    """Read an inventory (a file, a directory, a script, or several: sources.py),
    or the localhost-only default when `path` is None."""
    if path is None:
        host = localhost()
        group = Group("all", hosts=[host.name], all_hosts=[host.name])
        return Inventory({host.name: host}, {"all": group})
    from .sources import read_sources, split_sources

    spec, digest = read_sources(split_sources(path))
    inventory = build(spec)
    inventory.digest = digest
    return inventory


# --- the builder -----------------------------------------------------------


def build(spec: Spec) -> Inventory:
    """Membership, depth, merged vars and Host records; InventoryInvalid if inconsistent."""
    decls = _with_implicit_groups(spec)
    parse_problems = len(spec.problems)
    _check_children(spec, decls)
    if len(spec.problems) > parse_problems:  # no sound group graph to go on with
        _fail(spec)
    groups = _resolve_groups(spec, decls)
    direct: dict[str, list[str]] = {h: [] for h in spec.hosts}
    for group in groups.values():
        for member in group.hosts:
            direct[member].append(group.name)
    hosts: dict[str, Host] = {}
    for decl in spec.hosts.values():
        host = _make_host(spec, decl.name, groups, direct[decl.name])
        if host is not None:
            hosts[host.name] = host
    _check_jumps(spec, hosts)
    if spec.problems:
        _fail(spec)
    for files in spec.var_files:
        for name, values in files.groups.items():
            if name in groups:
                groups[name].file_vars.update(values)
    from .sshconfig import apply_ssh_config, load_ssh_config

    if any(h.connection == "ssh" for h in hosts.values()):
        config = load_ssh_config()  # parsed once for every host
        hosts = {
            n: apply_ssh_config(h, config=config) if h.connection == "ssh" else h
            for n, h in hosts.items()
        }
    inventory = Inventory(hosts, groups, source=spec.file, format=spec.format)
    from .ansible_ssh import ignored_warnings

    inventory.warnings = ignored_warnings(spec.ignored)
    return inventory


def _fail(spec: Spec) -> None:
    """Every problem at once: sources in order, each in file order."""
    rank = {name: i for i, name in enumerate(spec.texts)}

    def key(p: Problem) -> tuple[int, int, int]:
        return (rank.get(p.location.file, len(rank)), p.location.line, p.location.column)

    raise InventoryInvalid(sorted(spec.problems, key=key))


def _with_implicit_groups(spec: Spec) -> dict[str, GroupDecl]:
    """`all` first, the declared groups in file order, `ungrouped` last."""
    where = Location(spec.file, 1, 1)
    everyone = spec.groups.get("all") or GroupDecl("all", where)
    everyone.vars = {**spec.vars, **everyone.vars}
    decls = {"all": everyone}
    decls.update((n, g) for n, g in spec.groups.items() if n not in RESERVED_GROUPS)
    decls["ungrouped"] = spec.groups.get("ungrouped") or GroupDecl("ungrouped", where)
    return decls


def _check_children(spec: Spec, decls: dict[str, GroupDecl]) -> None:
    for decl in decls.values():
        for child in decl.children:
            where = decl.child_where.get(child, decl.where)
            if child in RESERVED_GROUPS:
                spec.problem(where, f"group {child!r} cannot be the child of another group")
            elif child not in decls:
                known = [g for g in decls if g not in RESERVED_GROUPS]
                hint = did_you_mean(child, known) or "declare it under `groups:`"
                spec.problem(where, f"group {decl.name!r} has unknown child group {child!r}", hint)
    _check_cycles(spec, decls)


def _check_cycles(spec: Spec, decls: dict[str, GroupDecl]) -> None:
    """Report each children cycle once, at the edge that closes it."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    reported: set[frozenset[str]] = set()

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for child in decls[name].children:
            if child not in decls or child in RESERVED_GROUPS:
                continue
            if state.get(child) == 1:
                cycle = (
                    [*trail[trail.index(child) :], name, child] if child in trail else [name, child]
                )
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    where = decls[name].child_where.get(child, decls[name].where)
                    spec.problem(where, "groups form a cycle: " + " → ".join(cycle))
            elif child not in state:
                visit(child, [*trail, name])
        state[name] = 2

    for name in decls:
        if name not in state:
            visit(name, [])


def _resolve_groups(spec: Spec, decls: dict[str, GroupDecl]) -> dict[str, Group]:
    groups = {
        name: Group(
            name,
            list(d.hosts),
            list(d.children),
            vars=dict(d.vars),
            priority=d.priority,
            zone=d.zone,
        )
        for name, d in decls.items()
    }
    for group in groups.values():
        for child in group.children:
            groups[child].parents.append(group.name)
    everyone = groups["all"]
    for name, group in groups.items():
        if name != "all" and not group.parents:
            group.parents.append("all")
            everyone.children.append(name)
    # Ansible's reconcile: a host in no group but all/ungrouped is ungrouped; no other is.
    member_of: dict[str, set[str]] = {h: set() for h in spec.hosts}
    for group in groups.values():
        for host in group.hosts:
            member_of[host].add(group.name)
    ungrouped = groups["ungrouped"]
    ungrouped.hosts = [h for h in spec.hosts if not member_of[h] - {"all", "ungrouped"}]
    everyone.hosts = []  # every host is in `all`; direct membership would say nothing
    depth: dict[str, int] = {"all": 0}

    def depth_of(name: str) -> int:
        if name not in depth:
            depth[name] = max(depth_of(p) + 1 for p in groups[name].parents)
        return depth[name]

    order = list(spec.hosts)
    below: dict[str, set[str]] = {}

    def hosts_below(name: str) -> set[str]:
        if name not in below:
            found = set(groups[name].hosts)
            for child in groups[name].children:
                found |= hosts_below(child)
            below[name] = found
        return below[name]

    for name, group in groups.items():
        group.depth = depth_of(name)
        members = hosts_below(name) if name != "all" else set(order)
        group.all_hosts = [h for h in order if h in members]
    return groups


def _host_groups(direct: list[str], groups: dict[str, Group]) -> list[str]:
    """Every group of a host in the `direct` groups, parents included, in var-merge order."""
    found: set[str] = set()
    stack = [*direct, "all"]
    while stack:
        group = stack.pop()
        if group not in found:
            found.add(group)
            stack.extend(groups[group].parents)
    return sorted(found, key=lambda g: (groups[g].depth, groups[g].priority, g))


def _make_host(spec: Spec, name: str, groups: dict[str, Group], direct: list[str]) -> Host | None:
    decl = spec.hosts[name]
    member_of = _host_groups(direct, groups)
    merged = _merged_vars(spec, name, member_of, groups)
    if spec.format == "native":
        fields = {**spec.defaults, **_group_zone(member_of, groups), **decl.fields}
        host_vars = merged
        if fields.get("jump") == name and "jump" not in decl.fields:
            del fields["jump"]  # `defaults: {jump: bastion}` does not apply to bastion itself
    else:
        from .ansible_ssh import connection_fields

        fields, host_vars, errors, ignored = connection_fields(merged)
        for error in errors:
            spec.problem(decl.where, f"host {name!r}: {error}", path=name)
        for option in ignored:
            spec.ignored.setdefault(option, []).append(name)
        if errors:
            return None
    explicit = frozenset(fields)
    fields.setdefault("connection", "ssh")
    return Host(name=name, groups=member_of, vars=host_vars, explicit=explicit, **fields)


def _group_zone(member_of: list[str], groups: dict[str, Group]) -> dict[str, str]:
    """The zone the host's groups give it, as group vars merge: a child beats its
    parent and, at one depth, the later group in merge order wins."""
    zones = [zone for g in member_of if (zone := groups[g].zone)]
    return {"zone": zones[-1]} if zones else {}


def _merged_vars(
    spec: Spec, name: str, member_of: list[str], groups: dict[str, Group]
) -> dict[str, Any]:
    """Ansible's variable precedence, lowest first: `all` in the inventory <
    group_vars/all < the other groups in the inventory < their group_vars files <
    the host in the inventory < host_vars. Each files tier goes source by source,
    each source's groups in merge order."""
    merged: dict[str, Any] = dict(groups["all"].vars)
    others = [g for g in member_of if g != "all"]
    for files in spec.var_files:
        merged.update(files.groups.get("all", {}))
    for group in others:
        merged.update(groups[group].vars)
    for files in spec.var_files:
        for group in others:
            merged.update(files.groups.get(group, {}))
    merged.update(spec.hosts[name].vars)
    for files in spec.var_files:
        merged.update(files.hosts.get(name, {}))
    return merged


def _jump_where(spec: Spec, name: str) -> Location:
    decl = spec.hosts[name]
    return decl.field_where.get("jump") or spec.defaults_where.get("jump") or decl.where


def _check_jumps(spec: Spec, hosts: dict[str, Host]) -> None:
    """A jump names an inventory host, or is an address (user@addr:port, a FQDN, an IP)."""
    for host in hosts.values():
        jump = host.jump
        if not jump:
            continue
        where = _jump_where(spec, host.name)
        if jump == host.name:
            spec.problem(where, f"host {host.name!r} cannot jump through itself")
        elif jump not in hosts and not any(c in jump for c in "@:.") and jump != "localhost":
            hint = did_you_mean(jump, list(hosts)) or "or write an address: user@host:port"
            spec.problem(
                where, f"host {host.name!r}: jump host {jump!r} is not in the inventory", hint
            )
    loops: set[frozenset[str]] = set()
    for host in hosts.values():
        seen = [host.name]
        current = host
        while current.jump and current.jump in hosts and current.jump != current.name:
            if current.jump in seen:
                loop = seen[seen.index(current.jump) :]
                if frozenset(loop) not in loops:
                    loops.add(frozenset(loop))
                    chain = " → ".join([*loop, current.jump])
                    spec.problem(_jump_where(spec, loop[0]), f"jump hosts form a loop: {chain}")
                break
            seen.append(current.jump)
            current = hosts[current.jump]
