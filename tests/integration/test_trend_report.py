"""`runbook history --metric NAME --report trend.html`: a threshold's values over
real runs drawn as an inline-SVG chart, one line per host, the warn and
critical bounds across it, opened in headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import cli, write

INVENTORY = """
hosts:
  web1: {connection: local, address: 127.0.0.1}
  web2: {connection: local, address: 127.0.0.1}
"""

RUNBOOK = """
runbook: queue-trend
params:
  depth: {type: int, default: 0}
steps:
  - name: Queue depth
    id: depth
    shell: "echo {{ params.depth + (5 if host.name == 'web2' else 0) }}"
    thresholds:
      queue_depth: {value: result.stdout | int, warn: "> 20", critical: "> 40", unit: jobs}
"""


@pytest.fixture
def trend(tmp_path: Path) -> Path:
    """Five runs on two hosts: web1 at 10, 15, 25, 35, 45; web2 five more."""
    inv = write(tmp_path, INVENTORY, "inventory.yaml")
    rb = write(tmp_path, RUNBOOK)
    for depth in (10, 15, 25, 35, 45):
        res = cli("run", rb, "-i", inv, "-p", f"depth={depth}")
        assert res.exit_code in (0, 1, 2), res.output
    out = tmp_path / "trend.html"
    res = cli("history", "--metric", "queue_depth", "--report", out)
    assert res.exit_code == 0, res.output
    assert "10 values of queue_depth" in res.output
    return out


def test_the_trend_page_draws_each_host_and_the_bounds(trend: Path) -> None:
    html = trend.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "queue_depth (jobs)" in html and "bounds: warn &gt; 20 · critical &gt; 40" in html
    lines = re.findall(r'<polyline class="series" points="([^"]+)"', html)
    assert len(lines) == 2  # web1 and web2
    assert all(len(points.split()) == 5 for points in lines)
    assert 'class="bound-warn"' in html and 'class="bound-critical"' in html
    # Each point says what it is when pointed at (an SVG <title>, no script).
    assert "web2 · " in html and " · 50 · critical · run " in html
    # The table lists every value, newest first.
    values = re.findall(r"<td class=num>([^<]+)</td>", html)
    assert sorted(map(float, values)) == sorted([10, 15, 25, 35, 45, 15, 20, 30, 40, 50])
    lowered = html.lower()
    for external in ("<script", "<link", " src=", "url(", "@import", "https://"):
        assert external not in lowered, external


def test_a_metric_never_recorded_says_so(tmp_path: Path) -> None:
    out = tmp_path / "none.html"
    res = cli("history", "--metric", "nothing_here", "--report", out)
    assert res.exit_code == 0
    assert "No values recorded for this metric." in out.read_text()


def test_report_flags_that_cannot_go_together_are_usage_errors(tmp_path: Path) -> None:
    assert cli("history", "--report", tmp_path / "x.html").exit_code == 64
    assert cli("history", "--junit", tmp_path / "x.xml").exit_code == 64
    runs = cli("history", "--metric", "x", "some-run-id").exit_code
    assert runs == 64


def test_the_trend_renders_in_headless_chromium(trend: Path, chromium: str) -> None:
    profile = trend.parent / "profile"
    shot = trend.parent / "trend.png"
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}"]  # fmt: skip
    done = subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1000,800", f"file://{trend}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 10_000, done.stderr
    dom = subprocess.run(
        [*base, "--dump-dom", f"file://{trend}"], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr
    # The browser parsed the SVG: both series and both bounds are in its DOM.
    assert dom.stdout.count('<polyline class="series"') == 2
    assert 'class="bound-critical"' in dom.stdout
    assert json.dumps("queue_depth")[1:-1] in dom.stdout
