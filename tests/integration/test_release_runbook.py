"""runbooks/app-release-rollback.yaml: a rolling release behind a `current`
symlink, against a real HTTP health endpoint, on the lab inventory."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from tests.fixtures.web import WebServers
from tests.helpers import run_json, steps_of

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "runbooks" / "app-release-rollback.yaml"
LAB = REPO / "inventories" / "lab.yaml"


def artifact(tmp_path: Path, version: str) -> Path:
    src = tmp_path / f"src-{version}"
    src.mkdir()
    (src / "VERSION").write_text(version)
    path = tmp_path / f"app-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / "VERSION", arcname="VERSION")
    return path


def release(app: Path, art: Path, health_url: str, *extra: str) -> tuple[int, dict]:
    return run_json(
        RUNBOOK, "-i", str(LAB), "--yes",
        "-p", f"app_dir={app}", "-p", f"artifact={art}", "-p", f"health_url={health_url}",
        "-p", "health_attempts=2", "-p", "health_interval=100ms",
        "-p", f"restart_cmd=echo restarted >> {app}/restarts",
        *extra,
    )  # fmt: skip


def current_version(app: Path) -> str:
    return (app / "current" / "VERSION").read_text()


def test_healthy_releases_switch_and_old_ones_are_pruned(
    tmp_path: Path, web_servers: WebServers
) -> None:
    app = tmp_path / "app"
    healthy = f"{web_servers.http_url}/json"
    for version in ("v1", "v2", "v3"):
        code, doc = release(app, artifact(tmp_path, version), healthy, "-p", "keep_releases=2")
        assert code == 0, doc
        assert current_version(app) == version
    assert len(list((app / "releases").iterdir())) == 2
    steps = steps_of(doc, "lab-web")
    assert steps["prune"]["data"]["stdout_lines"] and steps["switch"]["state"] == "ok"
    assert (app / "restarts").read_text().count("restarted") == 3


def test_failed_health_check_rolls_back_and_stops(tmp_path: Path, web_servers: WebServers) -> None:
    app = tmp_path / "app"
    code, _ = release(app, artifact(tmp_path, "v1"), f"{web_servers.http_url}/json")
    assert code == 0
    good = (app / "current").resolve()
    code, doc = release(app, artifact(tmp_path, "v2"), f"{web_servers.http_url}/status/503")
    steps = steps_of(doc, "lab-web")
    assert code == 3, doc  # a failed rollout; max_fail: 0 stops it
    assert (app / "current").resolve() == good and current_version(app) == "v1"
    assert steps["health"]["state"] == "failed" and steps["health"]["attempts"] == 2
    assert steps["link_back"]["state"] == "ok"
    assert "rolled back to" in steps["release_failed"]["error"]
    assert str(good) in steps["release_failed"]["error"]
    assert list((app / "releases").iterdir()) == [good]  # the failed release is gone
    assert (app / "restarts").read_text().count("restarted") == 3  # v1, v2, v1 again


def test_failed_first_release_leaves_no_current(tmp_path: Path, web_servers: WebServers) -> None:
    app = tmp_path / "app"
    code, doc = release(app, artifact(tmp_path, "v1"), f"{web_servers.http_url}/status/500")
    assert code == 3, doc
    assert not (app / "current").exists() and not (app / "current").is_symlink()
    assert steps_of(doc, "lab-web")["unlink_new"]["state"] == "ok"


def dot_artifact(tmp_path: Path, version: str) -> Path:
    """`tar -czf X -C src .`: a `./` entry whose old mtime each unpacked release
    directory takes (B2: the prune ordered releases by it)."""
    src = tmp_path / f"dot-src-{version}"
    src.mkdir()
    (src / "VERSION").write_text(version)
    for path in (src, src / "VERSION"):
        os.utime(path, (1767225600, 1767225600))  # 2026-01-01, the same for all
    out = tmp_path / f"dot-{version}.tar.gz"
    subprocess.run(["tar", "-czf", str(out), "-C", str(src), "."], check=True)
    return out


def test_the_prune_never_deletes_the_live_release(tmp_path: Path, web_servers: WebServers) -> None:
    app = tmp_path / "app"
    healthy = f"{web_servers.http_url}/json"
    for version in ("v1", "v2", "v3"):
        code, doc = release(app, dot_artifact(tmp_path, version), healthy, "-p", "keep_releases=2")
        assert code == 0, doc
        assert current_version(app) == version  # `current` never dangles
    # Redeploying an older build, and keeping a single release, keep it live too.
    code, doc = release(app, dot_artifact(tmp_path, "v1b"), healthy, "-p", "keep_releases=1")
    assert code == 0, doc
    assert current_version(app) == "v1b"
    assert len(list((app / "releases").iterdir())) == 1


def test_a_failed_unpack_leaves_no_half_release(tmp_path: Path, web_servers: WebServers) -> None:
    app = tmp_path / "app"
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a tarball")
    code, doc = release(app, broken, f"{web_servers.http_url}/json")
    assert code == 3, doc
    assert not any((app / "releases").iterdir())
