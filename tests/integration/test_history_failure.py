"""A run whose history cannot be written fails closed: no step starts once an
event is lost, the operator is told, and resume runs only what cannot have run.

The history lives on a small filesystem of the test's own (tmpfs, mounted as
root), which a step fills up mid-run: the way a real history disk fills.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.history import engine_env
from tests.helpers import cli, write

FILL = """
runbook: fill-disk
params:
  dir: {type: str}
  disk: {type: str}
steps:
  - name: one
    shell: "echo one >> {{ params.dir }}/counter"
  - name: two
    shell: "echo two >> {{ params.dir }}/counter"
  - name: fill the history's disk
    id: fill
    shell: "echo fill >> {{ params.dir }}/counter; cat /dev/zero > {{ params.disk }}/filler || true"
  - name: four
    shell: "echo four >> {{ params.dir }}/counter"
  - name: five
    shell: "echo five >> {{ params.dir }}/counter"
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB filesystem of this test's own, for $RUNBOOK_HOME."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_history_disk_stops_the_run_and_resume_runs_nothing_twice(
    tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_HOME", str(small_disk))
    rb = write(tmp_path, FILL)
    counter = tmp_path / "counter"
    # A process of its own: the run must be over (its pid gone) to be resumed.
    first = subprocess.run(
        [sys.executable, "-m", "engine", "run", str(rb), "-p", f"dir={tmp_path}",
         "-p", f"disk={small_disk}"],
        capture_output=True, text=True, env=engine_env(), timeout=120,
    )  # fmt: skip
    assert first.returncode == 4, (first.stdout, first.stderr)
    assert "cannot record events" in first.stderr and "no step starts after this" in first.stderr
    assert "Traceback" not in first.stderr
    assert counter.read_text().split() == ["one", "two", "fill"]  # four, five never started

    (small_disk / "filler").unlink()
    [run] = json.loads(cli("history", "--format", "json").stdout)
    assert run["state"] == "died"  # its end could not be recorded
    res = cli("resume", run["id"])
    assert res.exit_code == 0, res.output
    assert "may have run: fill on localhost" in res.stderr
    # Nothing ran twice: one and two were recorded done, fill may have run (its end
    # was lost), four and five never started.
    assert counter.read_text().split() == ["one", "two", "fill", "four", "five"]


def test_a_history_that_cannot_be_written_at_start_runs_nothing(
    tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_HOME", str(small_disk))
    rb = write(tmp_path, "runbook: x\nsteps:\n  - name: a\n    shell: echo ran >> counter\n")
    assert cli("run", rb, "--dry-run").exit_code == 0  # the history exists, then the disk fills
    with open(small_disk / "filler", "wb") as filler:
        try:
            while filler.write(b"\0" * 65536):
                pass
        except OSError:
            pass
    res = cli("run", rb)
    assert res.exit_code == 64, res.output  # fix the environment; not a crash (70)
    assert "run history" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "counter").exists()  # nothing ran
