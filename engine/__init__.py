"""A declarative runbook engine for SREs.

The public API::

    from engine import load_runbook, run_runbook, Run, RunOptions

    rb = load_runbook("runbooks/postgres-weekly.yaml")        # RunbookInvalid on any problem
    result = run_runbook(Run(runbook=rb, hosts=[localhost()], params={}))
    result.exit_code

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
    "run_runbook",
]

if TYPE_CHECKING:
    from engine.execution.context import RunOptions
    from engine.execution.runner import Run, run_runbook
    from engine.format.loader import load_runbook
    from engine.inventory.host import Host, localhost
    from engine.inventory.loader import load_inventory

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
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import engine` (and `runbook --help`) stays cheap.
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
