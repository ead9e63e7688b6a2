"""Which host a `jump:` names: an inventory host, or an ad-hoc `user@addr:port`.

An inventory name brings that host's own settings (user, key, its own jump).
Anything else is an address, completed field by field:

- address: the `HostName` of its `Host` block in ~/.ssh/config, else as given;
- user: the spec's `user@`, else the block's `User`, else the target's user;
- port: the spec's `:port`, else the block's `Port` (else 22);
- key: the target's key file, else the block's `IdentityFile`;
- its own jump: the block's `ProxyJump`;
- host key policy, known_hosts and connect timeout: always the target's.

(`ssh -J` would not try the target's key on the jump: here one key file
usually opens both, and an inventory jump host can name its own.)
"""

from __future__ import annotations

from collections.abc import Callable

from engine.errors import EngineError
from engine.inventory.host import Host


class JumpSpecError(Exception):
    """The jump spec cannot be used; the message names it."""


def jump_host(
    spec: str,
    target: Host,
    target_user: str,
    resolve_host: Callable[[str], Host] | None,
) -> Host:
    if resolve_host is not None and "@" not in spec and ":" not in spec:
        try:
            return resolve_host(spec)
        except (KeyError, LookupError, EngineError):
            pass  # not an inventory name: an address
    user, _, rest = spec.rpartition("@")
    address, port = rest, None
    if rest.startswith("["):  # [v6addr]:port
        address, _, tail = rest[1:].partition("]")
        port = tail.lstrip(":") or None
    elif rest.count(":") == 1:
        address, port = rest.split(":")
    try:
        port_number = int(port) if port else None
    except ValueError:
        raise JumpSpecError(f"jump {spec!r}: port {port!r} is not a number") from None
    from engine.inventory.sshconfig import options_for

    try:
        found = options_for(address)  # its `Host` block: it is no inventory host
    except EngineError as exc:
        raise JumpSpecError(f"jump {spec!r}: {exc}") from None
    return Host(
        name=spec,
        address=found.get("address", address),
        connection="ssh",
        user=user or found.get("user") or target_user,
        port=port_number or found.get("port"),
        key_file=target.key_file or found.get("key_file"),
        jump=found.get("jump"),
        host_key_policy=target.host_key_policy,
        known_hosts=target.known_hosts,
        connect_timeout=target.connect_timeout,
    )
