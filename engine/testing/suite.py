"""Which cases files to run, and for which runbook.

`runbook test RUNBOOK` finds `tests/NAME.yaml` beside it; `runbook test
RUNBOOK CASES...` takes the files given. A first argument that is itself a
cases file is one more cases file (`runbook test runbooks/tests/*.yaml`), each
testing the runbook it names in `runbook:` or the one its place names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UsageError

from .cases import CasesFile, default_cases_path, is_cases_file, load_cases, runbook_of

if TYPE_CHECKING:
    from engine.format.model import Runbook


@dataclass
class Suite:
    runbook: Runbook
    cases: CasesFile


def plan(runbook: str, cases: tuple[str, ...] | list[str]) -> list[Suite]:
    """Every (runbook, cases file) pair to run, each read and checked now:
    one invalid file means nothing runs (exit 65)."""
    from engine.format.loader import load_runbook

    for path in (runbook, *cases):
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
    if is_cases_file(runbook):
        pairs = [(runbook_of(p), p) for p in (runbook, *cases)]
    else:
        files = list(cases) or [str(default_cases_path(runbook))]
        if not cases and not Path(files[0]).is_file():
            raise UsageError(
                f"{runbook}: no cases at {files[0]}; write them there or name the file "
                "(docs/testing.md)"
            )
        pairs = [(runbook, p) for p in files]
    loaded: dict[str, Runbook] = {}
    suites = []
    for rb_path, cases_path in pairs:
        if not Path(rb_path).is_file():
            raise UsageError(
                f"{cases_path}: tests {rb_path}, which does not exist; "
                "name it with `runbook:` (relative to the cases file)"
            )
        rb = loaded.get(rb_path) or loaded.setdefault(rb_path, load_runbook(rb_path))
        suites.append(Suite(rb, load_cases(cases_path, rb)))
    return suites
