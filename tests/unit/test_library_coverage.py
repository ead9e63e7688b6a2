"""The coverage table of runbooks/README.md (scripts/coverage.py): every
procedure of the guides is listed once, every runbook step it names exists,
and the table in the README is the one the list draws."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def coverage() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "coverage_script", ROOT / "scripts" / "coverage.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_list_holds_every_procedure_and_names_real_steps() -> None:
    cov = coverage()
    data = yaml.safe_load(cov.DATA.read_text())
    sizes = {seed: len(guide["procedures"]) for seed, guide in data["seeds"].items()}
    assert sizes == {"000": 32, "001": 41, "002": 32, "003": 35, "004": 36}  # the audit's 176
    assert cov.problems(data, cov.library()) == []


def test_the_readme_table_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "coverage.py")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_a_step_that_is_not_there_is_named_with_its_row() -> None:
    cov = coverage()
    books: dict[str, dict[str, dict[str, Any]]] = {
        "weekly": {"vacuum": {"sql": {}}, "handover": {"manual": "do it"}}
    }
    row = {"n": 1, "what": "x", "section": "s"}
    data = {
        "seeds": {
            "000": {
                "title": "t",
                "procedures": [
                    {**row, "status": "full", "by": ["weekly:vacuum", "weekly:nope", "gone"]},
                    {**row, "n": 2, "status": "manual", "by": ["weekly:vacuum"]},
                    {**row, "n": 3, "status": "manual", "by": ["weekly:handover"]},
                    {**row, "n": 4, "status": "partial", "by": ["weekly"]},
                    {**row, "n": 6, "status": "soon"},
                ],
            }
        }
    }
    assert cov.problems(data, books) == [
        "000: rows are not numbered 1..5",
        "000 #1: runbook weekly has no step 'nope'",
        "000 #1: no runbook 'gone' in runbooks/",
        "000 #2: manual, but none of its steps is a `manual:` step",
        "000 #4: partial needs a note saying what is missing or why",
        "000 #6: status 'soon' is not one of full, manual, partial, planning, none",
    ]
