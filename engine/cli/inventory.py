"""`runbook inventory`: what the engine makes of an inventory, before any run.

Shows the group tree (vars from group_vars/ files marked as such), and per host
how it will be reached and the merged vars a runbook will see, so an operator
can check `--limit` and var precedence without connecting anywhere. A password
is never shown, only that one is set (`***`); vars whose name says they hold a
secret are masked the same way. Warnings (ssh options the engine ignores) go to
stderr.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from engine.errors import UsageError

if TYPE_CHECKING:
    from engine.inventory.host import Host
from engine.redaction import MASK, mask_secret_named

from . import helptext
from .options import inventory_option

# What engine.inventory.sshconfig may fill in for ssh hosts.
_FROM_SSH_CONFIG = ("address", "user", "port", "key_file", "jump")


@click.command("inventory", epilog=helptext.INVENTORY)
@inventory_option()
@click.option(
    "--host", "host_name", metavar="NAME", help="Show one host's resolved fields and vars."
)
@click.option("-l", "--limit", metavar="PATTERN", help="Only the hosts matching PATTERN.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def inventory_command(
    inventory_path: str | None,
    host_name: str | None,
    limit: str | None,
    fmt: str,
) -> None:
    """The inventory's groups, hosts, connections and merged vars."""
    from engine.inventory.loader import load_inventory

    inventory = load_inventory(inventory_path)
    for warning in inventory.warnings:  # names options, never their values
        click.echo(f"warning: {warning}", err=True)
    if host_name:
        host = inventory.get(host_name)
        if limit and host.name not in {h.name for h in inventory.select(limit)}:
            raise UsageError(f"host {host.name!r} is not matched by --limit {limit!r}")
        _show_host(host, fmt)
        return
    hosts = inventory.select(limit) if limit else list(inventory)
    if fmt == "json":
        click.echo(json.dumps(_as_json(inventory, hosts), indent=2, default=str))
        return
    _show_text(inventory, hosts)


def host_fields(host: Host) -> dict[str, Any]:
    """A host's connection fields as shown to people: password masked, unset left out."""
    out: dict[str, Any] = {}
    from engine.inventory.model import HOST_FIELDS  # not at import: keeps --help fast

    for name in HOST_FIELDS:
        value = getattr(host, name)
        if value is None:
            continue
        out[name] = MASK if name == "password" else value
    return out


def _origin(host: Host, name: str) -> str:
    """Where a field's value came from, when it is not the inventory's."""
    if name in host.explicit:
        return ""
    filled = getattr(host, name) is not None and (name != "address" or host.address != host.name)
    if name in _FROM_SSH_CONFIG and filled:
        return "ssh config"
    return "default"


def _show_host(host: Host, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(_host_json(host), indent=2, default=str))
        return
    click.echo(host.name)
    for name, value in host_fields(host).items():
        origin = _origin(host, name)
        click.echo(f"  {name}: {_scalar(value)}" + (f"  # {origin}" if origin else ""))
    click.echo(f"  groups: [{', '.join(host.groups)}]")
    _echo_vars(host.vars, indent="  ")


def _show_text(inventory: Any, hosts: list[Host]) -> None:
    selected = {h.name for h in hosts}
    digest = inventory.digest if inventory.digest == "localhost" else inventory.digest[:12]
    click.echo(
        f"inventory: {inventory.source} ({inventory.format}, {len(hosts)} of "
        f"{len(inventory)} hosts, sha256 {digest})"
    )
    click.echo("")
    for line in _tree(inventory, "all", selected, 0, set()):
        click.echo(line)
    for host in hosts:
        click.echo("")
        click.echo(f"{host.name}  {_reach(host)}")
        click.echo(f"  groups: [{', '.join(host.groups)}]")
        _echo_vars(host.vars, indent="  ")


def _tree(inventory: Any, name: str, selected: set[str], depth: int, seen: set[str]) -> list[str]:
    group = inventory.groups[name]
    if not selected.intersection(group.all_hosts) and name != "all":
        return []
    pad = "  " * depth
    zone = f" (zone {group.zone})" if group.zone else ""
    lines = [f"{pad}@{name}{zone}" + (":" if group.vars or group.file_vars else "")]
    for key, value in mask_secret_named(group.vars).items():
        lines.append(f"{pad}  {key} = {_scalar(value)}")
    for key, value in mask_secret_named(group.file_vars).items():
        lines.append(f"{pad}  {key} = {_scalar(value)}  # group_vars/{name}")
    if name in seen:  # a group under two parents: its members are shown once
        return lines
    seen.add(name)
    for child in group.children:
        lines.extend(_tree(inventory, child, selected, depth + 1, seen))
    lines.extend(f"{pad}  {h}" for h in group.hosts if h in selected)
    return lines


def _reach(host: Host) -> str:
    zone = f"  zone {host.zone}" if host.zone else ""
    if host.connection == "local":
        return "local" + zone
    who = f"{host.user}@" if host.user else ""
    port = f":{host.port}" if host.port else ""
    parts = [f"ssh {who}{host.address}{port}"]
    if host.jump:
        parts.append(f"via {host.jump}")
    if host.key_file:
        parts.append(f"key {host.key_file}")
    if host.password:
        parts.append("password ***")
    parts.append(f"host keys {host.host_key_policy}")
    return "  ".join(parts) + zone


def _echo_vars(values: dict[str, Any], indent: str) -> None:
    if not values:
        click.echo(f"{indent}vars: {{}}")
        return
    import yaml

    click.echo(f"{indent}vars:")
    text = yaml.safe_dump(mask_secret_named(values), default_flow_style=False, sort_keys=False)
    for line in text.rstrip("\n").splitlines():
        click.echo(f"{indent}  {line}")


def _scalar(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def _host_json(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        **host_fields(host),
        "groups": list(host.groups),
        "vars": mask_secret_named(host.vars),
    }


def _as_json(inventory: Any, hosts: list[Host]) -> dict[str, Any]:
    selected = {h.name for h in hosts}
    return {
        "source": inventory.source,
        "format": inventory.format,
        "digest": inventory.digest,
        "groups": {
            name: {
                "hosts": [h for h in g.hosts if h in selected],
                "children": list(g.children),
                "vars": mask_secret_named(g.vars),
                "group_vars_files": mask_secret_named(g.file_vars),
                **({"zone": g.zone} if g.zone else {}),
            }
            for name, g in inventory.groups.items()
            if name == "all" or selected.intersection(g.all_hosts)
        },
        "hosts": {h.name: _host_json(h) for h in hosts},
    }
