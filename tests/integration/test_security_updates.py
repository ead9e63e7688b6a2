"""runbooks/security-updates.yaml on this machine: apt's simulated upgrade,
a virtualenv of the test's own with an old package that the confirmed
upgrade brings up to date, and scanners that are not installed said so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "security-updates.yaml"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv holding six 1.15.0 (newer ones exist on the package index)."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "six==1.15.0"],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"no package index reachable for pip: {done.stderr.strip()[-200:]}")
    yield python


def six_version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import six; print(six.__version__)"], capture_output=True, text=True
    )
    return out.stdout.strip()


def run(python: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code, doc = run_json(RUNBOOK, "-p", f"python={python}", "-p", 'python_packages=["six"]', *args)
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}


def test_it_reports_and_leaves_everything_unless_asked(venv: Path, tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text("{}")
    args = ("-p", f"app_dir={tmp_path}", "-p", "image=example/app:1", "--approve", "handover")
    code, steps = run(venv, *args)
    assert code in (1, 2), steps
    six = [p for p in steps["pip_outdated"]["json"] if p["name"] == "six"]
    assert six and six[0]["version"] == "1.15.0" and six[0]["latest_version"] != "1.15.0"
    assert steps["pip_outdated"]["state"] == "warn"
    scanners = steps["scanners"]["stdout"]
    assert "python: not installed: pip install pip-audit" in scanners
    if not shutil.which("npm"):
        assert "npm: not installed (package.json found in" in scanners
    if not shutil.which("trivy"):
        assert "trivy: not installed" in scanners and "example/app:1 not scanned" in scanners
    updates = steps["os_updates"]["json"]
    if shutil.which("apt-get"):
        assert updates["manager"] == "apt" and isinstance(updates["security"], int)
    assert steps["pip_apply"]["state"] == "skipped" and six_version(venv) == "1.15.0"


def test_a_confirmed_upgrade_then_tests_and_the_count_again(venv: Path, tmp_path: Path) -> None:
    marker = tmp_path / "tests-ran"
    args = ("-p", "apply_python=true", "-p", f"test_cmd=touch {marker}", "--approve", "handover")
    code, steps = run(venv, *args)
    assert code == 4 and steps["pip_apply"]["state"] == "aborted"  # not confirmed
    assert six_version(venv) == "1.15.0"
    code, steps = run(venv, *args, "--dry-run")
    assert code in (0, 1, 2) and six_version(venv) == "1.15.0"
    code, steps = run(venv, *args, "--yes")
    assert steps["pip_apply"]["state"] == "ok", steps["pip_apply"]
    assert six_version(venv) != "1.15.0"
    assert marker.exists()
    assert "six" not in {p["name"] for p in steps["pip_outdated_after"]["json"]}
    assert json.dumps(steps["os_apply"]["state"]) == '"skipped"'  # apply_os not asked
