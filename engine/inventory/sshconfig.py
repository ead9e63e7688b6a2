"""~/.ssh/config for what the inventory leaves unset (docs/inventory.md).

Only HostName, User, Port, IdentityFile and ProxyJump are taken, and only for
fields not in `Host.explicit`: the inventory (its `defaults` included) always
wins, as `ssh -l ops -p 22` on the command line beats the config file.

The config is looked up by the address the engine will connect to, as
`ssh <address>` (and so Ansible) would: the inventory name when the inventory
gives no address (`Host db1` then supplies HostName), else the address itself.
One lookup, not two, so that a `Host *` fallback cannot shadow a `Host 10.0.*`
block. $RUNBOOK_SSH_CONFIG names another file (tests use it); a missing file
changes nothing.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from engine.errors import InventoryInvalid, Location, Problem

from .host import Host


def config_path() -> Path:
    override = os.environ.get("RUNBOOK_SSH_CONFIG")
    return Path(override).expanduser() if override else Path.home() / ".ssh" / "config"


def load_ssh_config(path: Path | None = None) -> Any:
    """The parsed config (a paramiko.SSHConfig), or None when there is no file.

    Parse once and pass it to apply_ssh_config(config=...) for many hosts. The
    parse is kept until the file changes (engine/filecache.py): ad-hoc jump
    hosts, looked up at each connection, share it.
    """
    path = path if path is not None else config_path()
    if path.is_dir():
        return None
    import paramiko

    from engine.filecache import parsed

    try:
        return parsed(path, paramiko.SSHConfig.from_path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError, paramiko.ConfigParseError) as exc:
        # Unreadable or broken: say so, rather than connect without it.
        raise _invalid(path, str(exc)) from None


def apply_ssh_config(host: Host, config_path: Path | None = None, *, config: Any = None) -> Host:
    """`host` with its unset fields filled from the ssh config (a copy; `host` is untouched)."""
    if config is None:
        config = load_ssh_config(config_path)
    if config is None:
        return host
    key = host.address if "address" in host.explicit else host.name
    try:
        entry = config.lookup(key)
    except Exception as exc:  # paramiko: bad Match, missing `invoke` for Match exec
        where = config_path or os.environ.get("RUNBOOK_SSH_CONFIG") or "~/.ssh/config"
        raise _invalid(where, f"cannot apply it to host {host.name!r}: {exc}") from None
    changes = {k: v for k, v in _options(key, entry).items() if k not in host.explicit}
    return dataclasses.replace(host, **changes) if changes else host


# The fields apply_ssh_config may fill, and their values when nothing set them.
FILLED: dict[str, Any] = {"address": "", "user": None, "port": None, "key_file": None, "jump": None}


def as_written(host: Host) -> Host:
    """`host` without what this machine's ssh config filled in: what a machine
    with its own ~/.ssh/config (a zone's worker) applies its config to."""
    changes = {k: v for k, v in FILLED.items() if k not in host.explicit}
    return dataclasses.replace(host, **changes) if changes else host


def options_for(name: str) -> dict[str, Any]:
    """What the ssh config says for `name` (address, user, port, key_file, jump).

    For a jump host given as `user@host:port` rather than an inventory name: it
    never went through the inventory, so its `Host` block is read here.
    """
    config = load_ssh_config()
    if config is None:
        return {}
    try:
        entry = config.lookup(name)
    except Exception as exc:  # paramiko: bad Match, missing `invoke` for Match exec
        raise _invalid(config_path(), f"cannot apply it to host {name!r}: {exc}") from None
    return _options(name, entry)


def _options(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hostname = entry.get("hostname")
    if hostname and hostname != key:
        out["address"] = hostname
    if entry.get("user"):
        out["user"] = entry["user"]
    if entry.get("port"):
        try:
            out["port"] = int(entry["port"])
        except ValueError:
            pass
    identities = entry.get("identityfile") or []
    # The first that exists, as ssh tries them in turn; a `Host *` default naming a
    # key this machine lacks must not hide the ssh-agent from the connection.
    existing = [k for k in identities if os.path.exists(os.path.expanduser(k))]
    if existing:
        out["key_file"] = existing[0]
    jump = entry.get("proxyjump")
    if jump and jump.lower() != "none":
        out["jump"] = jump
    return out


def _invalid(path: Path | str, reason: str) -> InventoryInvalid:
    return InventoryInvalid([Problem(f"ssh config: {reason}", Location(str(path)))])
