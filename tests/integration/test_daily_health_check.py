"""runbooks/daily-health-check.yaml's extra endpoints and backup formats:
BigShot's /health/detailed wants a bearer token (from the secrets, masked in
every output), and a pg_dump -Fc archive counts as a backup. The database
log is one a real PostgreSQL server of the test's own wrote, and the network
counters are checked against what Python reads from /proc."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fixtures.own_postgres import OwnPostgres
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


# The database log and the network counters. -----------------------------------

SEVERITY = re.compile(
    r"(?<![A-Za-z_])(DEBUG[1-5]|INFO|NOTICE|WARNING|ERROR|LOG|FATAL|PANIC"
    r"|DETAIL|HINT|QUERY|CONTEXT|LOCATION|STATEMENT):  "
)


def severities(lines: list[str]) -> Counter[str]:
    """What Python reads as each line's PostgreSQL severity: its first label."""
    found = (SEVERITY.search(line) for line in lines)
    return Counter(m.group(1) for m in found if m)


def checklist(tmp_path: Path, web: WebServers, *args: str) -> dict[str, dict[str, Any]]:
    """Run the checklist at a web server of the test's own; the steps by id."""
    app_log = tmp_path / "app.log"
    app_log.write_text("INFO fine\n")
    result = cli(
        "run", str(RUNBOOK), "--format", "json", "-p", f"health_url={web.http_url}/json",
        "-p", f"app_log={app_log}", "-p", f"backup_dir={tmp_path}", *args,
    )  # fmt: skip
    return steps_of(json.loads(result.stdout))


def test_the_database_log_written_by_a_real_server_is_counted_by_severity(
    tmp_path: Path, web_servers: WebServers, own_postgres: OwnPostgres
) -> None:
    with psycopg.connect(own_postgres.dsn, autocommit=True) as conn:
        # Every statement logged: one that quotes "ERROR:" is not an error.
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10  # the reload reaches this session asynchronously
        while conn.execute("SHOW log_statement").fetchone() != ("all",):
            assert time.monotonic() < deadline, "log_statement was not reloaded"
            time.sleep(0.05)
        conn.execute("SELECT 'ERROR:  not a failure'")
        for _ in range(3):
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(own_postgres.dsn.rsplit("/", 1)[0] + "/no_such_db").close()
    log = own_postgres.data / "log"
    lines = log.read_text().splitlines()
    assert "ERROR:  not a failure" in log.read_text()  # the decoy is in the log

    step = checklist(tmp_path, web_servers, "-p", f"db_log={log}")["db_log_errors"]
    counted = step["data"]["json"]
    assert (counted["error"], counted["fatal"], counted["panic"]) == (3, 1, 0)
    expected = severities(lines[-200:])
    assert (expected["ERROR"], expected["FATAL"]) == (3, 1)
    assert counted["lines"] == len(lines[-200:])
    assert step["metrics"]["db_log_errors"]["value"] == 3
    assert step["metrics"]["db_log_errors"]["state"] == "ok"  # under db_log_errors_max
    fatal = step["metrics"]["db_log_fatal"]
    assert (fatal["value"], fatal["state"]) == (1, "warn")
    assert step["state"] == "warn"
    assert any('database "no_such_db" does not exist' in line for line in counted["latest"])

    # docker-compose style: a command printing the log with a service prefix,
    # and only its last N lines reviewed.
    cmd = f"sed 's/^/database_1  | /' {log}"
    step = checklist(tmp_path, web_servers, "-p", f"db_log_cmd={cmd}", "-p", "db_log_lines=6")
    counted = step["db_log_errors"]["data"]["json"]
    expected = severities(lines[-6:])
    assert expected["ERROR"] < 3  # the window leaves the first errors out
    assert counted["lines"] == 6
    assert (counted["error"], counted["fatal"]) == (expected["ERROR"], expected["FATAL"])
    assert all(line.startswith("database_1  | ") for line in counted["latest"])


def test_an_unreadable_database_log_is_a_failed_check_never_zero(
    tmp_path: Path, web_servers: WebServers
) -> None:
    steps = checklist(tmp_path, web_servers)
    assert steps["db_log_errors"]["state"] == "skipped"  # nothing configured
    assert steps["backup"]["state"] != "skipped"  # the checklist went on

    missing = tmp_path / "no-such-postgresql.log"
    step = checklist(tmp_path, web_servers, "-p", f"db_log={missing}")["db_log_errors"]
    assert step["state"] == "failed" and f"cannot read {missing}" in step["error"]
    assert step["metrics"] == {}  # no count at all

    cmd = "echo 'no such service: database' >&2; exit 1"
    step = checklist(tmp_path, web_servers, "-p", f"db_log_cmd={cmd}")["db_log_errors"]
    assert step["state"] == "failed" and "no such service: database" in step["error"]


def proc_net() -> tuple[dict[str, list[int]], tuple[int, int]]:
    """/proc/net/dev's rx errs, rx drop, tx errs, tx drop per interface (not lo),
    and /proc/net/snmp's Tcp (OutSegs, RetransSegs)."""
    dev: dict[str, list[int]] = {}
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, counters = line.split(":", 1)
        fields = [int(x) for x in counters.split()]
        if name.strip() != "lo":
            dev[name.strip()] = [fields[2], fields[3], fields[10], fields[11]]
    header, values = (
        line.split()[1:] for line in Path("/proc/net/snmp").read_text().splitlines()
        if line.startswith("Tcp:")
    )  # fmt: skip
    tcp = dict(zip(header, (int(v) for v in values), strict=True))
    return dev, (tcp["OutSegs"], tcp["RetransSegs"])


def test_network_counters_are_what_proc_says(tmp_path: Path, web_servers: WebServers) -> None:
    dev_before, (out_before, retrans_before) = proc_net()
    step = checklist(tmp_path, web_servers)["network"]
    dev_after, (out_after, retrans_after) = proc_net()

    data = step["data"]["json"]
    got = {
        i["name"]: [i["rx_errors"], i["rx_dropped"], i["tx_errors"], i["tx_dropped"]]
        for i in data["interfaces"]
    }
    assert set(got) == set(dev_before) and "lo" not in got
    # Counters only grow: the step's reading lies between Python's two.
    for name, counters in got.items():
        assert all(
            b <= c <= a for b, c, a in zip(dev_before[name], counters, dev_after[name], strict=True)
        )
    assert out_before <= data["tcp_out_segs"] <= out_after
    assert retrans_before <= data["tcp_retrans_segs"] <= retrans_after

    ratio = step["metrics"]["net_tcp_retrans_ratio"]
    assert ratio["value"] == pytest.approx(data["tcp_retrans_segs"] / max(data["tcp_out_segs"], 1))
    assert (ratio["warn"], ratio["critical"]) == ("> 0.02", "> 0.1")
    expected_state = (
        "critical" if ratio["value"] > 0.1 else "warn" if ratio["value"] > 0.02 else "ok"
    )
    assert ratio["state"] == step["state"] == expected_state
    assert step["metrics"]["net_errors"]["value"] == sum(c[0] + c[2] for c in got.values())
    assert step["metrics"]["net_drops"]["value"] == sum(c[1] + c[3] for c in got.values())
