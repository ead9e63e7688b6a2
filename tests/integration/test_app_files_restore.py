"""runbooks/app-files-restore.yaml with real directories under tmp_path, real
archives made by tar (as app-files-backup makes them), the lab web app as the
service that is stopped and started, and the moto S3 server: the damaged paths
become exactly the archive's, the old ones are kept aside, a failed health
check puts them back, and a bad archive, a declined gate or a dry run change
nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures.lab_app import LabApp
from tests.fixtures.s3server import S3Server
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "app-files-restore.yaml"


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file under root by its relative path: a file's bytes, a link's target."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


def stamp(hours_ago: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)).strftime("%Y%m%dT%H%M%S")


def make_archive(backups: Path, paths: list[Path], hours_ago: float = 2) -> Path:
    """An archive as app-files-backup makes it: tar of the absolute paths, a .sha256 beside it."""
    backups.mkdir(exist_ok=True)
    archive = backups / f"web1_{stamp(hours_ago)}.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), *map(str, paths)], check=True, capture_output=True)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    Path(f"{archive}.sha256").write_text(f"{digest}  {archive.name}\n")
    return archive


class Site:
    """An app's uploads and config, archived, then damaged (the incident)."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "srv"
        self.uploads, self.config = self.root / "uploads", self.root / "config"
        (self.uploads / "2026" / "05").mkdir(parents=True)
        self.config.mkdir()
        (self.uploads / "2026" / "05" / "photo.jpg").write_bytes(os.urandom(3000))
        (self.uploads / "report.pdf").write_bytes(os.urandom(800))
        (self.uploads / "latest.pdf").symlink_to("report.pdf")
        (self.config / "app.env").write_text("MODE=prod\n")
        self.backups = tmp_path / "backups"
        self.archive = make_archive(self.backups, [self.uploads, self.config])
        self.good = {"uploads": tree(self.uploads), "config": tree(self.config)}
        # The damage: a file overwritten, one lost, one that was not there, a config edited.
        (self.uploads / "report.pdf").write_bytes(b"truncated")
        (self.uploads / "2026" / "05" / "photo.jpg").unlink()
        (self.uploads / "stray.tmp").write_text("junk")
        (self.config / "app.env").write_text("MODE=broken\n")
        self.damaged = {"uploads": tree(self.uploads), "config": tree(self.config)}

    @property
    def paths(self) -> list[str]:
        return [str(self.uploads), str(self.config)]

    def now(self) -> dict[str, dict[str, bytes | str]]:
        return {"uploads": tree(self.uploads), "config": tree(self.config)}

    def old_copies(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*.before-*"))


def run(site: Site, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    code, doc = run_json(
        RUNBOOK, "-p", "name=web1", "-p", f"backup_dir={site.backups}", *args, env=env
    )
    steps = {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}
    return code, {"run_id": doc["run_id"], "steps": steps}


def app_args(app: LabApp) -> tuple[str, ...]:
    return (
        "-p", f"stop_cmd={app.command('stop')}", "-p", f"start_cmd={app.command('start')}",
        "-p", f"health_url={app.url}/health",
    )  # fmt: skip


def health(app: LabApp) -> int:
    try:
        with urllib.request.urlopen(f"{app.url}/health", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def starts(app: LabApp) -> int:
    """How many times the app was started (each start logs one line)."""
    return app.app_log.read_text().count(" started on port ")


def test_the_paths_become_the_archive_and_the_old_ones_are_kept(
    tmp_path: Path, lab_app: LabApp
) -> None:
    site = Site(tmp_path)
    code, out = run(
        site, "-p", f"paths={json.dumps(site.paths)}", *app_args(lab_app),
        "--yes", "--approve", "handover",
    )  # fmt: skip
    steps = out["steps"]
    assert code == 0, {k: (v["state"], v.get("error")) for k, v in steps.items()}
    assert site.now() == site.good  # byte for byte; the stray file is gone
    suffix = f".before-{out['run_id']}"
    assert site.old_copies() == [f"config{suffix}", f"uploads{suffix}"]
    assert tree(site.root / f"uploads{suffix}") == site.damaged["uploads"]
    assert tree(site.root / f"config{suffix}") == site.damaged["config"]
    inspect = steps["inspect"]["json"]
    assert inspect["sha256_ok"] is True and inspect["source"] == str(site.archive)
    assert inspect["entries_selected"] == 4 and 1.9 < inspect["age_h"] < 2.1
    assert steps["verify"]["json"]["files"] == 4
    assert steps["verify"]["json"]["difference_count"] == 0
    # Stopped for the restore and started again: two starts, healthy now.
    assert steps["stop_app"]["state"] == "ok" and steps["start_app"]["state"] == "ok"
    assert lab_app.running() and starts(lab_app) == 2 and health(lab_app) == 200


def test_an_unhealthy_app_after_the_restore_is_rolled_back(tmp_path: Path, lab_app: LabApp) -> None:
    site = Site(tmp_path)
    lab_app.set_healthy(False)  # /health answers 503 whatever the files are
    code, out = run(
        site, "-p", f"paths={json.dumps(site.paths)}", *app_args(lab_app),
        "-p", "health_attempts=2", "-p", "health_interval=100ms", "--yes", "--approve", "handover",
    )  # fmt: skip
    steps = out["steps"]
    assert code == 3
    assert steps["verify"]["state"] == "ok" and steps["health"]["state"] == "failed"
    assert steps["put_back"]["state"] == "ok" and steps["stop_again"]["state"] == "ok"
    assert "rolled back" in steps["rolled_back"]["error"]
    assert "the app is started again" in steps["rolled_back"]["error"]
    assert site.now() == site.damaged  # the originals, as they were before the run
    assert site.old_copies() == []
    assert "handover" not in steps  # a failed host goes no further
    # Started on the restored files, stopped for the rollback, started again.
    assert lab_app.running() and starts(lab_app) == 3


def _uploads_from_s3(site: Site, s3_server: S3Server, s3_bucket: str) -> dict[str, Any]:
    """The uploads path restored from the newest archive in the bucket; the run's JSON."""
    code, out = run(
        site, "-p", f"paths={json.dumps([str(site.uploads)])}",
        "-p", f"bucket={s3_bucket}", "-p", f"endpoint={s3_server.endpoint}",
        "--yes", "--approve", "handover", env=s3_server.env(),
    )  # fmt: skip
    assert code == 0, {k: (v["state"], v.get("error")) for k, v in out["steps"].items()}
    return out


def test_the_host_lost_its_backups_the_checksum_comes_from_s3(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    site = Site(tmp_path)
    client = s3_server.client()
    for path in (site.archive, Path(f"{site.archive}.sha256")):
        client.put_object(Bucket=s3_bucket, Key=f"files/{path.name}", Body=path.read_bytes())
        path.unlink()  # nothing of the backup is left on the host
    out = _uploads_from_s3(site, s3_server, s3_bucket)
    steps = out["steps"]
    # The newest by name is the archive, not its checksum (which sorts after it).
    assert steps["inspect"]["json"]["source"] == f"s3://{s3_bucket}/files/{site.archive.name}"
    assert steps["inspect"]["json"]["sha256_ok"] is True
    assert steps["inspect"]["json"]["sha256_file"].endswith(
        f"restore-{out['run_id']}.tar.gz.sha256"
    )
    assert site.now() == {"uploads": site.good["uploads"], "config": site.damaged["config"]}
    assert list(site.backups.iterdir()) == []  # the downloads are removed


def test_a_sha256_mismatch_changes_nothing(tmp_path: Path, lab_app: LabApp) -> None:
    site = Site(tmp_path)
    # Another archive under the same name: not the one the .sha256 was made of.
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x")
    subprocess.run(["tar", "-czf", str(site.archive), str(other)], check=True, capture_output=True)
    code, out = run(
        site, "-p", f"paths={json.dumps(site.paths)}", *app_args(lab_app), "--yes",
        "--approve", "handover",
    )  # fmt: skip
    steps = out["steps"]
    assert code == 3
    assert steps["inspect"]["json"]["sha256_ok"] is False
    assert steps["gate"]["state"] == "failed" and "sha256" in steps["gate"]["error"]
    assert "restore" not in steps or steps["restore"]["state"] != "ok"
    assert "move_aside" not in steps and "stop_app" not in steps
    assert site.now() == site.damaged and site.old_copies() == []
    assert lab_app.running() and starts(lab_app) == 1  # never stopped


def test_without_yes_nothing_changes(tmp_path: Path, lab_app: LabApp) -> None:
    site = Site(tmp_path)
    code, out = run(site, "-p", f"paths={json.dumps(site.paths)}", *app_args(lab_app))
    steps = out["steps"]
    assert code == 4 and steps["restore"]["state"] == "aborted"
    assert steps["inspect"]["json"]["problems"] == [] and steps["gate"]["state"] == "ok"
    assert site.now() == site.damaged and site.old_copies() == []
    assert lab_app.running() and starts(lab_app) == 1


def test_a_dry_run_reads_the_archive_and_changes_nothing(tmp_path: Path, lab_app: LabApp) -> None:
    site = Site(tmp_path)
    before = sorted(p.name for p in site.backups.iterdir())
    code, out = run(site, "-p", f"paths={json.dumps(site.paths)}", *app_args(lab_app), "--dry-run")
    steps = out["steps"]
    assert code == 0, {k: (v["state"], v.get("error")) for k, v in steps.items()}
    assert steps["inspect"]["metrics"]["restore_archive_files"]["value"] == 4
    now = {n["path"]: n["files"] for n in steps["inspect"]["json"]["now"]}
    assert now == {str(site.uploads): 3, str(site.config): 1}  # photo.jpg lost, stray.tmp new
    assert steps["restore"]["state"] == "skipped"
    assert site.now() == site.damaged and site.old_copies() == []
    assert sorted(p.name for p in site.backups.iterdir()) == before
    assert lab_app.running() and starts(lab_app) == 1


def test_a_dry_run_without_an_archive_is_critical(tmp_path: Path) -> None:
    site = Site(tmp_path)
    code, out = run(
        site, "-p", f"paths={json.dumps([*site.paths, 'relative/dir'])}", "-p", "name=nobody",
        "--dry-run",
    )  # fmt: skip
    problems = out["steps"]["inspect"]["json"]["problems"]
    assert code == 2 and out["steps"]["inspect"]["state"] == "critical"
    assert any(p.startswith("no archive") for p in problems)
    assert any("'relative/dir'" in p for p in problems)
    assert site.now() == site.damaged


def test_one_path_from_the_newest_archive_in_s3(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    site = Site(tmp_path)
    client = s3_server.client()
    client.put_object(
        Bucket=s3_bucket, Key=f"files/{site.archive.name}", Body=site.archive.read_bytes()
    )
    older = make_archive(tmp_path / "older", [tmp_path / "backups"], hours_ago=30)
    client.put_object(Bucket=s3_bucket, Key=f"files/{older.name}", Body=older.read_bytes())
    site.archive.unlink()  # only its .sha256 is left on the host
    out = _uploads_from_s3(site, s3_server, s3_bucket)
    steps = out["steps"]
    assert steps["inspect"]["json"]["source"] == f"s3://{s3_bucket}/files/{site.archive.name}"
    assert steps["inspect"]["json"]["sha256_ok"] is True
    assert site.now() == {"uploads": site.good["uploads"], "config": site.damaged["config"]}
    assert site.old_copies() == [f"uploads.before-{out['run_id']}"]  # config was not touched
    # The download is removed; the local .sha256 stays.
    assert sorted(p.name for p in site.backups.iterdir()) == [f"{site.archive.name}.sha256"]
