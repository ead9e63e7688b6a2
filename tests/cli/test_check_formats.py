"""`runbook check --format json|github`: every problem placed, for tools and CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers import cli, write

TYPO = "runbook: typo\nsteps:\n  - name: a\n    log: x\n  - name: b\n    shel: ls\n"
RISKY = 'runbook: risky\nsteps:\n  - name: wipe\n    shell: "rm -rf /tmp/x"\n'
FINE = "runbook: fine\nsteps:\n  - name: a\n    log: x\n"


def _check_json(*args: str | Path) -> tuple[int, dict[str, Any]]:
    result = cli("check", "--format", "json", *map(str, args))
    return result.exit_code, json.loads(result.stdout)


def test_json_places_every_error_and_warning(tmp_path: Path) -> None:
    typo, risky = write(tmp_path, TYPO, "typo.yaml"), write(tmp_path, RISKY, "risky.yaml")
    code, doc = _check_json(typo, risky, tmp_path / "missing.yaml")
    assert code == 65
    assert doc["schema_version"] == 1 and doc["ok"] is False
    by_path = {f["path"]: f for f in doc["files"]}
    assert list(by_path) == [str(typo), str(risky), str(tmp_path / "missing.yaml")]
    bad = by_path[str(typo)]
    assert (bad["ok"], bad["steps"], bad["warnings"]) == (False, None, [])
    assert bad["errors"] == [
        {
            "file": str(typo),
            "line": 6,
            "column": 5,
            "field": "steps[1].shel",
            "message": "unknown key `shel`",
            "hint": "did you mean `shell`?",
            "severity": "error",
        }
    ]
    warned = by_path[str(risky)]
    assert (warned["ok"], warned["steps"], warned["errors"]) == (True, 1, [])
    [warning] = warned["warnings"]
    assert warning["severity"] == "warning" and warning["file"] == str(risky)
    assert (warning["line"], warning["field"]) == (3, "steps[0]")
    assert "no `confirm:` gate" in warning["message"]
    [missing] = by_path[str(tmp_path / "missing.yaml")]["errors"]
    assert missing["line"] is None and "cannot read file" in missing["message"]


def test_json_warnings_alone_exit_0(tmp_path: Path) -> None:
    code, doc = _check_json(write(tmp_path, RISKY), write(tmp_path, FINE, "fine.yaml"))
    assert code == 0 and doc["ok"] is True
    assert [len(f["warnings"]) for f in doc["files"]] == [1, 0]


def test_json_names_the_included_file_and_the_inventory(tmp_path: Path) -> None:
    write(tmp_path, "runbook: child\nsteps:\n  - name: x\n    shel: ls\n", "child.yaml")
    parent = write(
        tmp_path, "runbook: p\nsteps:\n  - name: i\n    include: {runbook: child.yaml}\n"
    )
    inventory = write(tmp_path, "hosts:\n  db1: {connection: local, portt: 1}\n", "inv.yaml")
    code, doc = _check_json("-i", inventory, parent)
    assert code == 65
    inv, rb = doc["files"]
    assert (inv["kind"], inv["path"], inv["ok"]) == ("inventory", str(inventory), False)
    assert inv["errors"] and all(e["file"] == str(inventory) for e in inv["errors"])
    assert rb["kind"] == "runbook" and rb["path"] == str(parent)
    [error] = rb["errors"]
    assert (error["file"], error["line"], error["field"]) == (
        str(tmp_path / "child.yaml"),
        4,
        "steps[0].shel",
    )


def test_github_annotations_one_per_problem(tmp_path: Path) -> None:
    typo, risky = write(tmp_path, TYPO, "typo.yaml"), write(tmp_path, RISKY, "risky.yaml")
    result = cli("check", "--format", "github", str(typo), str(risky))
    assert result.exit_code == 65
    lines = result.stdout.splitlines()
    assert (
        f"::error file={typo},line=6,col=5,title=runbook check::"
        "steps[1].shel: unknown key `shel` (did you mean `shell`?)"
    ) in lines
    [warning] = [line for line in lines if line.startswith("::warning ")]
    assert warning.startswith(f"::warning file={risky},line=3,title=runbook check::steps[0]: ")
    assert f"ok       {risky}  (1 steps)" in lines
    assert not any(line.startswith("::") for line in result.stderr.splitlines())


def test_github_escapes_what_would_break_a_workflow_command(tmp_path: Path) -> None:
    """A newline ends a command early; `,` and `:` end a property's value."""
    path = write(
        tmp_path, 'runbook: x\nsteps:\n  - name: a\n    "50%\\nx": 1\n    shell: ls\n', "a,b:c.yaml"
    )
    result = cli("check", "--format", "github", str(path))
    assert result.exit_code == 65
    [line] = result.stdout.splitlines()
    escaped_path = str(path).replace(":", "%3A").replace(",", "%2C")
    assert line == (
        f"::error file={escaped_path},line=4,col=5,title=runbook check::"
        "steps[0].50%25%0Ax: unknown key `50%25%0Ax`"
    )


def test_text_is_the_default_and_unchanged(tmp_path: Path) -> None:
    result = cli("check", str(write(tmp_path, TYPO)), str(write(tmp_path, RISKY, "risky.yaml")))
    assert result.exit_code == 65
    assert "runbook is invalid (1 error)" in result.stderr and "unknown key `shel`" in result.stderr
    assert "  warning: " in result.stdout and "step wipe: looks destructive" in result.stdout
    assert cli("check", "--format", "xml", str(tmp_path / "rb.yaml")).exit_code == 64
