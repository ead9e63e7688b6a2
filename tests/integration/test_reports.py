"""JUnit and HTML reports, from a live run and re-rendered from history; the HTML page
opened in headless Chromium."""

from __future__ import annotations

import json
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import cli, write

INVENTORY = """
hosts:
  web1: {connection: local, address: 127.0.0.1, vars: {depth: 7}}
  web2: {connection: local, address: 127.0.0.1, vars: {depth: 12}}
"""

RUNBOOK = """
runbook: report-demo
description: Queue health
params:
  region: {type: str, default: eu-west-1}
steps:
  - name: Queue depth
    id: depth
    shell: "echo {{ host.vars.depth }}"
    thresholds:
      queue_depth: {value: "result.stdout | int", warn: "> 5", critical: "> 10", unit: jobs}
  - name: Only on web1
    id: only_web1
    when: "host.name == 'web1'"
    shell: "echo hello-from-web1"
  - name: Flaky check
    id: flaky
    shell: "echo broken on {{ host.name }} >&2; test {{ host.name }} = web1"
  - name: Restart
    id: restart
    confirm: "Restart the queue on {{ host.name }}?"
    log: "restarting"
"""


@pytest.fixture
def report_run(tmp_path: Path) -> dict[str, Path | str]:
    inv = write(tmp_path, INVENTORY, "inventory.yaml")
    rb = write(tmp_path, RUNBOOK)
    junit, html = tmp_path / "live.xml", tmp_path / "live.html"
    res = cli(
        "run", rb, "-i", inv, "--approve", "restart", "--operator", "frank",
        "--junit", junit, "--report", html,
    )  # fmt: skip
    assert res.exit_code == 3, res.output  # web2's flaky check failed
    run_id = json.loads(cli("history", "--format", "json").stdout)[0]["id"]
    return {"junit": junit, "html": html, "run_id": run_id, "dir": tmp_path}


def _cases(xml_text: str) -> dict[tuple[str, str], ET.Element]:
    root = ET.fromstring(xml_text)
    return {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}


def _outcome(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def test_junit_one_case_per_host_and_step(report_run: dict) -> None:
    text = Path(report_run["junit"]).read_text()
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    assert [s.get("hostname") for s in root.iter("testsuite")] == ["web1", "web2"]
    cases = _cases(text)
    outcomes = {k: _outcome(c) for k, c in cases.items()}
    assert outcomes == {
        ("web1", "depth"): "passed",  # warn passes, with its threshold as properties
        ("web1", "only_web1"): "passed",
        ("web1", "flaky"): "passed",
        ("web1", "restart"): "passed",
        ("web2", "depth"): "failure",  # critical
        ("web2", "only_web1"): "skipped",
        ("web2", "flaky"): "failure",
    }
    assert root.get("tests") == "7" and root.get("failures") == "2" and root.get("skipped") == "1"
    props = {p.get("name"): p.get("value") for p in cases[("web1", "depth")].iter("property")}
    assert props["threshold.queue_depth"] == "7"
    assert props["threshold.queue_depth.state"] == "warn"
    assert props["threshold.queue_depth.unit"] == "jobs"
    crit = cases[("web2", "depth")].find("failure")
    assert crit is not None and crit.get("type") == "critical" and "12" in crit.get("message")
    assert "broken on web2" in (cases[("web2", "flaky")].find("failure").text or "")
    restart = {p.get("name"): p.get("value") for p in cases[("web1", "restart")].iter("property")}
    assert restart["approved_by"] == "frank (--approve restart)"
    suite_props = {p.get("name"): p.get("value") for p in root.find("testsuite").find("properties")}
    assert suite_props["run_id"] == report_run["run_id"]
    assert suite_props["operator"] == "frank" and suite_props["param.region"] == "eu-west-1"


def test_junit_aborted_host_is_an_error(tmp_path: Path) -> None:
    rb = write(tmp_path, "runbook: gate\nsteps:\n  - {name: restart, confirm: 'Go?', log: x}\n")
    junit = tmp_path / "j.xml"
    assert cli("run", rb, "--junit", junit).exit_code == 4  # restart declined: no terminal
    case = _cases(junit.read_text())[("localhost", "restart")]
    err = case.find("error")
    assert err is not None and err.get("type") == "aborted"


def test_history_rerenders_the_same_reports(report_run: dict) -> None:
    d: Path = report_run["dir"]  # type: ignore[assignment]
    res = cli("history", report_run["run_id"], "--junit", d / "again.xml",
              "--report", d / "again.html")  # fmt: skip
    assert res.exit_code == 0, res.output
    live = _cases(Path(report_run["junit"]).read_text())
    again = _cases((d / "again.xml").read_text())
    assert {k: _outcome(c) for k, c in again.items()} == {k: _outcome(c) for k, c in live.items()}
    html = (d / "again.html").read_text()
    for needle in ("report-demo", report_run["run_id"], "frank", "queue_depth", "eu-west-1"):
        assert needle in html
    assert cli("history", "--junit", d / "x.xml").exit_code == 64  # needs a RUN_ID


def test_html_is_self_contained(report_run: dict) -> None:
    html = Path(report_run["html"]).read_text()
    assert html.startswith("<!DOCTYPE html>")
    for needle in ("report-demo", report_run["run_id"], "frank", "eu-west-1", "queue_depth",
                   "hello-from-web1", "broken on web2", "critical", "warn"):  # fmt: skip
        assert needle in html, needle
    lowered = html.lower()
    for external in ("<script", "<link", " src=", "url(", "@import", "http://", "https://"):
        assert external not in lowered, external


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_html_report_renders_in_headless_chromium(report_run: dict, chromium: str) -> None:
    d: Path = report_run["dir"]  # type: ignore[assignment]
    html = Path(report_run["html"]).resolve()
    shot = d / "report.png"
    proc = _chromium(
        chromium, d / "profile", f"--screenshot={shot}", "--window-size=1200,1600",
        f"file://{html}",
    )  # fmt: skip
    assert shot.exists(), proc.stderr
    assert _png_size(shot) == (1200, 1600)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank image

    dom = _chromium(chromium, d / "profile2", "--dump-dom", f"file://{html}")
    assert dom.returncode == 0, dom.stderr
    text = dom.stdout
    assert '<h1 id="runbook">report-demo' in text
    assert report_run["run_id"] in text
    for state in ("failed", "critical", "warn", "skipped", "ok"):
        assert f">{state}</span>" in text, state
