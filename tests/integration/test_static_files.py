"""runbooks/static-files.yaml: assets served by a real HTTP server from a
static root, the static bucket on the moto S3 server; a confirmed
collectstatic (here: a copy into the static root) makes them load again."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.s3server import S3Server
from tests.fixtures.sshd import free_port
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "static-files.yaml"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """(app's static sources, the served static root, its URL)."""
    sources, root = tmp_path / "app" / "static", tmp_path / "staticroot"
    (sources / "css").mkdir(parents=True)
    (sources / "css" / "site.css").write_text("body {}")
    (sources / "app.js").write_text("void 0;")
    root.mkdir()
    port = free_port("127.0.0.1")
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/staticroot"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield sources, root, url
    finally:
        server.kill()
        server.wait()


def run(
    site: tuple[Path, Path, str], *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    sources, root, url = site
    collect = f"cp -r {shlex.quote(str(sources))}/. {shlex.quote(str(root))}/"
    code, doc = run_json(
        RUNBOOK, "-p", f"static_urls={json.dumps([f'{url}/css/site.css', f'{url}/app.js'])}",
        "-p", f"collectstatic_cmd={collect}", "-p", "distribution_id=E2EXAMPLE", *args, env=env,
    )  # fmt: skip
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}


def test_missing_assets_are_collected_then_load(site: tuple[Path, Path, str]) -> None:
    code, steps = run(site, "--yes", "--approve", "invalidate")
    assert [r["state"] for r in steps["assets"]["results"]] == ["failed", "failed"]
    assert "404" in steps["assets"]["results"][0]["error"]
    assert steps["collect"]["state"] == "ok"
    assert [r["status"] for r in steps["assets_now"]["results"]] == [200, 200]
    assert "--distribution-id E2EXAMPLE --paths '/static/*'" in steps["invalidate"]["instructions"]
    assert code == 0, steps


def test_loaded_assets_need_nothing_and_the_bucket_is_counted(
    site: tuple[Path, Path, str], s3_server: S3Server, s3_bucket: str
) -> None:
    sources, root, _ = site
    subprocess.run(["cp", "-r", f"{sources}/.", f"{root}/"], check=True)
    s3_server.client().put_object(Bucket=s3_bucket, Key="static/css/site.css", Body=b"body {}")
    env = s3_server.env()
    code, steps = run(
        site, "-p", f"bucket={s3_bucket}", "-p", f"endpoint={s3_server.endpoint}", env=env
    )
    assert code == 0, steps
    assert steps["bucket"]["metrics"]["static_objects"]["value"] == 1
    assert steps["collect"]["state"] == steps["invalidate"]["state"] == "skipped"


def test_without_approval_nothing_is_collected(site: tuple[Path, Path, str]) -> None:
    code, steps = run(site)
    assert code == 4 and steps["collect"]["state"] == "aborted"
    assert not any(site[1].iterdir())
    code, steps = run(site, "--dry-run")
    assert code in (0, 1, 2) and steps["collect"]["state"] == "skipped"
    assert not any(site[1].iterdir())
