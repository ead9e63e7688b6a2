"""How commands and files reach a host: `local` (subprocess) and `ssh` (paramiko).

Connections open lazily on first use and are reused for every step on their
host; see base.Connection for the protocol every connection type implements.
"""

from .base import Command, Connection, ExecResult, connection_for, connection_types

__all__ = ["Command", "Connection", "ExecResult", "connection_for", "connection_types"]
