"""A declarative runbook engine for SREs.

The public API::

    import engine

    result = engine.run("examples/quickstart.yaml", params={"disk_warn_pct": 70})
    result.exit_code            # as `runbook run`'s: 0 ok, 1 warn, 2 critical, 3 failed, 4 aborted

`engine.run` prepares a run as the CLI does (param defaults, inventory, the
history and host locks; RunbookInvalid or UsageError before any step runs).
`run_runbook(Run(...))` is the bare executor beneath it, for callers that
assemble hosts and params themselves.

Everything else is importable from its module; only these names are promised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "EngineError",
    "Host",
    "Run",
    "RunOptions",
    "RunResult",
    "RunbookInvalid",
    "State",
    "load_inventory",
    "load_runbook",
    "localhost",
    "run",
    "run_runbook",
]

if TYPE_CHECKING:
    from engine.execution.context import RunOptions
    from engine.execution.runner import Run, run_runbook
    from engine.format.loader import load_runbook
    from engine.inventory.host import Host, localhost
    from engine.inventory.loader import load_inventory

    from .api import run
    from .errors import EngineError, RunbookInvalid
    from .results import RunResult, State

_WHERE = {
    "EngineError": "engine.errors",
    "RunbookInvalid": "engine.errors",
    "RunOptions": "engine.execution.context",
    "Host": "engine.inventory.host",
    "localhost": "engine.inventory.host",
    "load_inventory": "engine.inventory.loader",
    "load_runbook": "engine.format.loader",
    "RunResult": "engine.results",
    "State": "engine.results",
    "Run": "engine.execution.runner",
    "run_runbook": "engine.execution.runner",
    "run": "engine.api",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import engine` (and `runbook --help`) stays cheap.
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
