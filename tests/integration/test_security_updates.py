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


# ---------------------------------------------------------------- npm (frontend)

OLD_MINIMIST = "1.2.0"  # minimist 1.x went on to 1.2.8: "^1.2.0" lets npm update move it


def npm(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def frontend(tmp_path: Path) -> Path:
    """A frontend whose package.json asks for minimist ^1.2.0, installed at 1.2.0
    exactly, with its package-lock.json: behind its range, as after months."""
    if not shutil.which("npm"):
        pytest.skip("npm is not installed")
    root = tmp_path / "frontend"
    root.mkdir()
    (root / "package.json").write_text(
        json.dumps({"name": "front", "version": "1.0.0", "private": True})
    )
    done = npm(root, "install", "--no-audit", "--no-fund", f"minimist@{OLD_MINIMIST}")
    if done.returncode != 0:
        pytest.skip(f"no npm registry reachable: {done.stderr.strip()[-200:]}")
    package = json.loads((root / "package.json").read_text())
    package["dependencies"] = {"minimist": "^1.2.0"}  # the range, whatever npm saved
    (root / "package.json").write_text(json.dumps(package, indent=2))
    assert minimist_version(root) == OLD_MINIMIST
    return root


def minimist_version(root: Path) -> str:
    return json.loads((root / "node_modules" / "minimist" / "package.json").read_text())["version"]


def audit_refusal(root: Path) -> str | None:
    """Why this machine's registry does not answer `npm audit` (None: it answers)."""
    done = npm(root, "audit", "--json")
    if "audit endpoint returned an error" not in done.stderr:
        return None
    return str(json.loads(done.stdout).get("message", ""))


def run_npm(root: Path, *args: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
    code, doc = run_json(
        RUNBOOK, "-p", f"python={sys.executable}", "-p", f"frontend_dir={root}",
        # The frontend alone: the OS and Python parts are the other tests'.
        "--skip-tags", "os,python,scan", "--approve", "handover", *args,
    )  # fmt: skip
    return code, doc, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}


def copies(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if ".before-" in p.name)


def test_npm_outdated_finds_it_and_nothing_changes_unless_confirmed(frontend: Path) -> None:
    lock = (frontend / "package-lock.json").read_bytes()
    code, _, steps = run_npm(frontend)
    assert code in (1, 2), steps["npm_outdated"]
    outdated = steps["npm_outdated"]
    assert outdated["state"] == "warn" and outdated["metrics"]["npm_outdated"]["value"] == 1
    # --skip-tags os,python,scan: only the frontend was looked at.
    assert steps["os_updates"]["state"] == steps["pip_outdated"]["state"] == "skipped"
    [entry] = outdated["json"]
    assert entry["name"] == "minimist" and entry["current"] == OLD_MINIMIST
    assert (
        entry["update"] is True
        and entry["wanted"].startswith("1.")
        and entry["wanted"] != OLD_MINIMIST
    )
    assert steps["npm_apply"]["state"] == "skipped"  # apply_npm not asked

    code, _, steps = run_npm(frontend, "-p", "apply_npm=true")  # not confirmed
    assert code == 4 and steps["npm_apply"]["state"] == "aborted"
    assert "npm_update" not in steps

    code, _, steps = run_npm(frontend, "-p", "apply_npm=true", "--dry-run")
    assert code in (0, 1, 2) and steps["npm_outdated"]["state"] == "warn"
    assert steps["npm_apply"]["state"] == "skipped"

    assert minimist_version(frontend) == OLD_MINIMIST
    assert (frontend / "package-lock.json").read_bytes() == lock and copies(frontend) == []


def test_a_confirmed_npm_update_keeps_the_lock_and_says_the_audit_was_not_done(
    frontend: Path, tmp_path: Path
) -> None:
    lock = (frontend / "package-lock.json").read_bytes()
    refused = audit_refusal(frontend)
    marker = tmp_path / "tests-ran"
    code, doc, steps = run_npm(
        frontend, "-p", "apply_npm=true", "-p", f"test_cmd=touch {marker}", "--yes"
    )
    assert code in (1, 2), steps  # warn: what was outdated, and the audit not done
    run_id = doc["run_id"]
    assert steps["npm_update"]["state"] == "ok", steps["npm_update"]
    wanted = steps["npm_outdated"]["json"][0]["wanted"]
    assert minimist_version(frontend) == wanted != OLD_MINIMIST  # the newest 1.x
    after = steps["npm_outdated_after"]
    assert (
        after["state"] == "ok"
        and after["json"] == []
        and after["metrics"]["npm_outdated_after"]["value"] == 0
    )

    # The lock as it was, next to the new one: the way back.
    kept = frontend / f"package-lock.json.before-{run_id}"
    assert kept.read_bytes() == lock and steps["npm_update"]["json"]["lock_copy"] == str(kept)
    assert (frontend / f"package.json.before-{run_id}").exists()

    audit = steps["npm_audit_fix"]
    if refused is not None:  # this machine's proxy refuses the audit POST
        assert audit["state"] == "warn" and audit["json"]["done"] is False
        assert audit["json"]["reason"].startswith("not done: audit endpoint returned an error")
        assert (
            refused in audit["json"]["reason"]
            and audit["metrics"]["npm_audit_fix_done"]["value"] == 0
        )
    else:
        assert audit["json"]["done"] is True and isinstance(
            audit["json"]["vulnerabilities_after"], int
        )
    assert marker.exists()  # the app's tests ran after npm's update

    handover = steps["handover"]["instructions"]
    assert f"cp package-lock.json.before-{run_id} package-lock.json" in handover
    if refused is not None:
        assert (
            "npm audit fix in" in handover
            and "not done: audit endpoint returned an error" in handover
        )

    # What the hand-over says brings the old version back.
    shutil.copy(kept, frontend / "package-lock.json")
    shutil.copy(frontend / f"package.json.before-{run_id}", frontend / "package.json")
    assert npm(frontend, "ci", "--no-audit", "--no-fund").returncode == 0
    assert minimist_version(frontend) == OLD_MINIMIST


def test_a_frontend_dir_without_package_json_is_a_finding(tmp_path: Path) -> None:
    code, _, steps = run_npm(tmp_path)
    assert code == 3 and steps["npm_outdated"]["state"] == "failed"
    assert "no package.json in" in steps["npm_outdated"]["error"] + steps["npm_outdated"].get(
        "stderr", ""
    )
    assert steps["npm_apply"]["state"] == "skipped"
