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


def _staged(tmp_path: Path, health: str, staging_first: bool = True) -> Path:
    """A staging host and two production hosts, each with its own app directory."""
    hosts = {
        "stg1": f"{{connection: local, address: 127.0.0.1, vars: {{app_dir: {tmp_path / 'stg1'}}}}}",
        "prod1": f"{{connection: local, address: 127.0.0.1, vars: {{app_dir: {tmp_path / 'prod1'}}}}}",
        "prod2": f"{{connection: local, address: 127.0.0.1, vars: {{app_dir: {tmp_path / 'prod2'}}}}}",
    }
    order = ["stg1", "prod1", "prod2"] if staging_first else ["prod1", "stg1", "prod2"]
    inv = tmp_path / "staged.yaml"
    inv.write_text(
        f"vars: {{health_url: '{health}'}}\n"
        "hosts:\n"
        + "".join(f"  {h}: {hosts[h]}\n" for h in order)
        + "groups:\n  web:\n    hosts: {"
        + ", ".join(f"{h}: {{}}" for h in order)
        + "}\n"
        "  staging:\n    hosts: {stg1: {}}\n  production:\n    hosts: {prod1: {}, prod2: {}}\n"
    )
    return inv


def _staged_release(inv: Path, art: Path, *extra: str) -> tuple[int, dict]:
    return run_json(
        RUNBOOK, "-i", str(inv), "-p", f"artifact={art}", "-p", "staging_group=staging",
        "-p", "health_attempts=2", "-p", "health_interval=100ms", *extra,
    )  # fmt: skip


def test_staging_then_production_with_one_promotion(
    tmp_path: Path, web_servers: WebServers
) -> None:
    """TrailBlaze: deploy to staging, then production. The promotion is asked once,
    at the first production host, after staging took the release."""
    inv = _staged(tmp_path, f"{web_servers.http_url}/json")
    art = artifact(tmp_path, "v1")
    code, doc = _staged_release(inv, art, "--approve", "unpack")  # promotion not approved
    assert code == 4, doc
    assert current_version(tmp_path / "stg1") == "v1"
    assert not (tmp_path / "prod1" / "current").exists()
    assert steps_of(doc, "prod1")["promote"]["state"] == "aborted"
    code, doc = _staged_release(inv, art, "--approve", "unpack", "--approve", "promote")
    assert code == 0, doc
    assert [current_version(tmp_path / h) for h in ("stg1", "prod1", "prod2")] == ["v1"] * 3
    assert steps_of(doc, "prod1")["promote"]["state"] == "ok"
    assert steps_of(doc, "prod2")["promote"]["state"] == "skipped"  # asked once


def test_a_release_failing_on_staging_never_reaches_production(
    tmp_path: Path, web_servers: WebServers
) -> None:
    inv = _staged(tmp_path, f"{web_servers.http_url}/status/503")
    code, doc = _staged_release(inv, artifact(tmp_path, "v1"), "--yes")
    assert code == 3, doc
    assert steps_of(doc, "stg1")["health"]["state"] == "failed"
    for host in ("prod1", "prod2"):
        assert not (tmp_path / host).exists()
        assert doc["hosts"][host]["not_started"] is True


def test_staging_listed_after_production_releases_nothing(
    tmp_path: Path, web_servers: WebServers
) -> None:
    inv = _staged(tmp_path, f"{web_servers.http_url}/json", staging_first=False)
    code, doc = _staged_release(inv, artifact(tmp_path, "v1"), "--yes")
    assert code == 3, doc
    error = steps_of(doc, "prod1")["staging_first"]["error"]
    assert "must be the first of the run, which goes prod1, stg1, prod2" in error
    assert not any((tmp_path / h).exists() for h in ("stg1", "prod1", "prod2"))
