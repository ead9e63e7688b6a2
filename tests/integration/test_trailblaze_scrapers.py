"""runbooks/trailblaze-scrapers.yaml on a cache directory of the test's own
and a stand-in scraper (a Python script that writes NAME.html and NAME.json
and honours SCRAPER_REFRESH), the sources served by the web fixture."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.fixtures.sshd import free_port
from tests.fixtures.web import WebServers
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "trailblaze-scrapers.yaml"

SCRAPER = """
import json, os, pathlib, sys
cache = pathlib.Path(sys.argv[1])
if os.environ.get("SCRAPER_DEBUG") == "true":  # cache metrics, one line per request
    for name in sorted(p.stem for p in cache.glob("*.json")):
        print(f"DEBUG cache hit {name}")
    print("DEBUG Cache MISS aerc_calendar_d", file=sys.stderr)
    sys.exit(0)
if os.environ.get("SCRAPER_REFRESH") != "true":
    sys.exit(0)
for name, n in (("aerc_calendar_a", 2), ("aerc_calendar_b", 3), ("aerc_calendar_c", 1)):
    rows = "".join(f"<tr><td>event {i}</td></tr>" for i in range(n))
    (cache / f"{name}.html").write_text(f"<table>{rows}</table>")
    (cache / f"{name}.json").write_text(json.dumps({"events": [{"i": i} for i in range(n)]}))
print("scraped 3 pages")
"""


def entry(cache: Path, name: str, rows: int, events: Any) -> None:
    (cache / f"{name}.html").write_text(
        "<table>" + "".join(f"<tr><td>{i}</td></tr>" for i in range(rows)) + "</table>"
    )
    (cache / f"{name}.json").write_text(events if isinstance(events, str) else json.dumps(events))


def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    cache, log, scraper = tmp_path / "cache", tmp_path / "scraper.log", tmp_path / "scraper.py"
    cache.mkdir()
    entry(cache, "aerc_calendar_a", 2, [{"e": 1}, {"e": 2}])
    entry(cache, "aerc_calendar_b", 3, {"events": []})  # the site changed: rows, no events
    entry(cache, "aerc_calendar_c", 1, "{not json")
    day_old = time.time() - 26 * 3600
    os.utime(cache / "aerc_calendar_a.html", (day_old, day_old))
    log.write_text("INFO run\nERROR aerc: timeout\nTraceback (most recent call last):\nINFO done\n")
    scraper.write_text(SCRAPER)
    return cache, log, scraper


def run(
    cache: Path, log: Path, scraper: Path, web: WebServers, *args: str
) -> tuple[int, dict[str, Any]]:
    sources = [f"{web.http_url}/json", f"http://127.0.0.1:{free_port('127.0.0.1')}/"]
    code, doc = run_json(
        RUNBOOK, "-p", f"cache_dir={cache}", "-p", f"scraper_log={log}",
        "-p", f"sources={json.dumps(sources)}",
        "-p", f"scraper_cmd={sys.executable} {scraper} {cache}", *args,
    )  # fmt: skip
    return code, {k: {**v.get("data", {}), **v} for k, v in steps_of(doc).items()}


def test_the_checks_find_errors_dead_sources_stale_and_invalid_entries(
    tmp_path: Path, web_servers: WebServers
) -> None:
    code, steps = run(*setup(tmp_path), web_servers, "--approve", "handover")
    assert steps["log_errors"]["metrics"]["scraper_log_errors"]["value"] == 2
    assert [r["state"] for r in steps["sources"]["results"]] == ["ok", "failed"]
    assert steps["cache"]["json"]["stale_html"] == 1 and steps["cache"]["json"]["stale_json"] == 0
    report = steps["validate"]["json"]
    assert (report["entries"], report["valid"]) == (3, 1)
    assert report["problems"][0] == "aerc_calendar_b.json: 0 events, the page has 3 rows"
    assert report["problems"][1].startswith("aerc_calendar_c.json: not JSON")
    assert steps["validate"]["state"] == "critical"
    assert "0 events, the page has 3 rows" in steps["handover"]["instructions"]
    assert code == 3  # a source does not answer


def test_clear_and_refresh_then_the_cache_validates(
    tmp_path: Path, web_servers: WebServers
) -> None:
    cache, log, scraper = setup(tmp_path)
    args = ("-p", "clear=aerc_calendar_c*", "-p", "run=true", "--yes")
    code, steps = run(cache, log, scraper, web_servers, *args)
    assert steps["clear"]["stdout"].strip() == "2"  # its .html and .json
    assert steps["run"]["stdout"].strip() == "scraped 3 pages"
    assert steps["validate_after"]["json"] == {"entries": 3, "valid": 3, "problems": []}
    assert steps["validate_after"]["state"] == "ok"
    assert steps["handover"]["state"] == "skipped"
    assert code == 3  # the dead source stays a finding


def test_nothing_is_cleared_or_run_without_confirmation(
    tmp_path: Path, web_servers: WebServers
) -> None:
    cache, log, scraper = setup(tmp_path)
    before = sorted(p.name for p in cache.iterdir())
    code, steps = run(cache, log, scraper, web_servers, "-p", "clear=*", "-p", "run=true")
    assert code == 4 and steps["clear"]["state"] == "aborted"
    assert sorted(p.name for p in cache.iterdir()) == before
    code, steps = run(
        cache, log, scraper, web_servers, "-p", "clear=*", "-p", "run=true", "--dry-run"
    )
    assert code in (0, 1, 2, 3)  # the dead source is a real finding in a dry run too
    assert steps["validate"]["json"]["valid"] == 1
    assert steps["clear"]["state"] == steps["run"]["state"] == "skipped"
    assert sorted(p.name for p in cache.iterdir()) == before


def test_a_debug_run_gives_the_cache_hit_rate(tmp_path: Path, web_servers: WebServers) -> None:
    """TrailBlaze "Verifying Cache Efficiency" 1: the share of requests served
    from the cache, read from the scraper's debug output (stdout and stderr)."""
    cache, log, scraper = setup(tmp_path)
    args = ("-p", "run=true", "-p", "mode=debug", "-p", "min_hit_rate=0.8", "--yes")
    code, steps = run(cache, log, scraper, web_servers, *args, "--approve", "handover")
    assert steps["hit_rate"]["json"] == {"hits": 3, "misses": 1}
    rate = steps["hit_rate"]["metrics"]["scraper_cache_hit_rate"]
    assert rate["value"] == 0.75 and rate["state"] == "warn"
    assert code == 3  # the dead source stays a finding
    code, steps = run(cache, log, scraper, web_servers, "-p", "run=true", "--yes")
    assert steps["hit_rate"]["state"] == "skipped"  # only a debug run prints the metrics
    assert code == 3
