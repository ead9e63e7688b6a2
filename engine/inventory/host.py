"""A host as the executor sees it: where it is, how to reach it, its vars.

Kept apart from inventory.py so that connections and steps depend on this small
record and not on inventory parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Host:
    name: str
    address: str = ""
    connection: str = "local"  # local | ssh
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    password: str | None = None  # a template, rendered when the connection opens
    jump: str | None = None  # another inventory host, or user@addr:port
    host_key_policy: str = "strict"  # strict | accept-new | ignore
    known_hosts: str | None = None
    connect_timeout: float = 10.0
    zone: str | None = None  # the network zone whose `runbook worker` walks it; None: here
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    # The fields the inventory set (defaults included); ~/.ssh/config fills only the rest.
    explicit: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.address:
            self.address = self.name

    def template_value(self) -> dict[str, Any]:
        """What templates see as `host` (never the password)."""
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "connection": self.connection,
            "zone": self.zone,
            "groups": list(self.groups),
            "vars": self.vars,
        }


def localhost() -> Host:
    return Host(name="localhost", address="127.0.0.1", connection="local", groups=["all"])
