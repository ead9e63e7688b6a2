"""runbooks/daily-health-check.yaml's extra endpoints and backup formats:
BigShot's /health/detailed wants a bearer token (from the secrets, masked in
every output), and a pg_dump -Fc archive counts as a backup."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fixtures.services import PgDatabase
from tests.fixtures.web import WebServers
from tests.helpers import cli, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "daily-health-check.yaml"
TOKEN = "tok-3f9a1c77e2b4"


def test_detailed_endpoints_get_the_token_and_never_show_it(
    tmp_path: Path, web_servers: WebServers
) -> None:
    log = tmp_path / "app.log"
    log.write_text("INFO fine\n")
    urls = [f"{web_servers.http_url}/echo", f"{web_servers.http_url}/status/503"]
    result = cli(
        "run", str(RUNBOOK), "--format", "json", "-p", f"health_url={web_servers.http_url}/json",
        "-p", f"health_urls={json.dumps(urls)}", "-p", "token_secret=HEALTH_TOKEN",
        "-p", f"app_log={log}", "-p", f"backup_dir={tmp_path}",
        env={"HEALTH_TOKEN": TOKEN},
    )  # fmt: skip
    assert TOKEN not in result.output
    more = steps_of(json.loads(result.stdout))["health_more"]
    echoed, failed = more["data"]["results"]
    assert echoed["state"] == "ok" and echoed["json"]["headers"]["authorization"] == "Bearer ***"
    assert failed["state"] == "failed" and "503" in failed["error"]
    assert more["state"] == "failed"  # one endpoint down fails the check
    assert steps_of(json.loads(result.stdout))["disk"]["state"] in ("ok", "warn", "critical")


def test_a_custom_format_dump_counts_as_the_latest_backup(
    tmp_path: Path, pg_database: PgDatabase, web_servers: WebServers
) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    subprocess.run(
        ["pg_dump", "-Fc", "-h", pg_database.host, "-U", pg_database.user,
         "-f", str(backups / "app_20261204.backup"), pg_database.name],
        check=True,
    )  # fmt: skip
    (backups / "broken.dump").write_bytes(b"not an archive")
    result = cli(
        "run", str(RUNBOOK), "--format", "json", "-p", f"health_url={web_servers.http_url}/json",
        "-p", f"app_log={__file__}", "-p", f"backup_dir={backups}",
    )  # fmt: skip
    backup = steps_of(json.loads(result.stdout))["backup"]
    # The newest is the broken one: found, and judged unreadable.
    assert backup["data"]["json"]["file"].endswith("broken.dump")
    assert backup["state"] == "failed"
    (backups / "broken.dump").unlink()
    result = cli(
        "run", str(RUNBOOK), "--format", "json", "-p", f"health_url={web_servers.http_url}/json",
        "-p", f"app_log={__file__}", "-p", f"backup_dir={backups}",
    )  # fmt: skip
    backup = steps_of(json.loads(result.stdout))["backup"]
    assert backup["data"]["json"]["ok"] is True and backup["state"] == "ok"


def test_a_log_command_replaces_the_file_and_its_failure_is_a_failure(
    tmp_path: Path, web_servers: WebServers
) -> None:
    common = ("run", str(RUNBOOK), "--format", "json", "-p", f"health_url={web_servers.http_url}/json",
              "-p", f"backup_dir={tmp_path}")  # fmt: skip
    # journalctl/docker stand-in: a real command printing log lines.
    lines = "printf 'INFO a\\nERROR b\\nerror c\\nINFO d\\n'"
    result = cli(*common, "-p", f"log_cmd={lines}")
    step = steps_of(json.loads(result.stdout))["log_errors"]
    assert step["metrics"]["log_errors"]["value"] == 2
    result = cli(*common, "-p", "log_cmd=echo 'no such container' >&2; exit 1")
    step = steps_of(json.loads(result.stdout))["log_errors"]
    assert step["state"] == "failed" and "no such container" in step["error"]
