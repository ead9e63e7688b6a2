"""The HTML report as people look at it: hosts worst first with their reasons,
a step × host grid whose cells link to the host sections, drawn by headless
Chromium for a real run over many local hosts."""

from __future__ import annotations

import json
import re
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.helpers import cli, write

# Named hosts each end one way; fillers make the grid wider than the window.
NAMED = {
    "db1": 2,  # fails: its disk check exits 2 with a clear message
    "web2": 7,  # warn
    "app<7>": 20,  # critical; a name that must be escaped and slugged for its id
    "web1": 1,
    "cache1": 1,
}
FILLERS = [f"node{n:02d}" for n in range(1, 49)]

RUNBOOK = """
runbook: grid-demo
params:
  token: {type: str, secret: true, default: hunter2-secret-value}
steps:
  - name: Load average
    id: load
    shell: "echo {{ host.vars.load }}"
    thresholds:
      load: {value: "result.stdout | int", warn: "> 5", critical: "> 10"}
  - name: Checks
    id: checks
    block:
      steps:
        - name: Disk space
          id: disk
          shell: >-
            if [ "{{ host.name }}" = db1 ];
            then echo "df: checking /var" >&2; echo "disk /var is 97% full (token {{ params.token }})" >&2; exit 2; fi;
            echo fine
        - name: Web only
          id: webonly
          when: "host.name.startswith('web')"
          shell: "echo web"
  - name: Final word
    id: final
    log: done
"""


def _inventory() -> str:
    lines = ["hosts:"]
    for name, load in [*NAMED.items(), *((f, 1) for f in FILLERS)]:
        lines.append(
            f'  "{name}": {{connection: local, address: 127.0.0.1, vars: {{load: {load}}}}}'
        )
    return "\n".join(lines) + "\n"


class Page(HTMLParser):
    """What the checks need of the page: ids, links, the hosts table's rows and
    the grid's header and cells."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.host_rows: list[list[str]] = []  # per row: the text of each cell
        self.grid_hosts: list[str] = []
        self.grid: list[tuple[str, list[tuple[str, str, str]]]] = []  # step, cells
        self.scripts = 0
        self._table = ""
        self._cell: list[str] | None = None
        self._cell_title = ""
        self._cell_href = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "script":
            self.scripts += 1
        if tag == "table":
            self._table = a.get("class", "")
        elif tag == "tr" and self._table == "hosts":
            self.host_rows.append([])
        elif tag == "tr" and self._table == "grid":
            self.grid.append(("", []))
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a" and self._table == "grid" and self._cell is not None:
            self._cell_title, self._cell_href = a.get("title", ""), a["href"]

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = ""
        if tag not in ("td", "th") or self._cell is None:
            return
        text, self._cell = "".join(self._cell).strip(), None
        if self._table == "hosts":
            self.host_rows[-1].append(text)
        elif self._table == "grid" and len(self.grid) == 1:
            self.grid_hosts.append(text)
        elif self._table == "grid" and tag == "th":
            self.grid[-1] = (text, [])
        elif self._table == "grid":
            self.grid[-1][1].append((text, self._cell_title, self._cell_href))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report-browser")
    inv = write(tmp, _inventory(), "inventory.yaml")
    rb = write(tmp, RUNBOOK)
    out = tmp / "run.html"
    # Module-scoped, so before the autouse per-test $RUNBOOK_HOME: its own here.
    home = {"RUNBOOK_HOME": str(tmp / "home")}
    res = cli("run", rb, "-i", inv, "--forks", "20", "--report", out, env=home)
    assert res.exit_code == 3, res.output  # db1's disk check failed
    return out


@pytest.fixture(scope="module")
def page(report: Path) -> Page:
    parsed = Page()
    parsed.feed(report.read_text())
    return parsed


def test_hosts_are_listed_worst_first_with_their_reasons(page: Page) -> None:
    rows = page.host_rows[1:]  # the header row
    names = [r[0] for r in rows]
    assert names[:3] == ["db1", "app<7>", "web2"]  # failed, critical, warn
    assert names[3:] == sorted(["web1", "cache1", *FILLERS])  # ok hosts by name
    notes = {r[0]: r[3] for r in rows}
    assert notes["db1"].startswith("disk command exited with rc 2")
    assert "disk /var is 97% full" in notes["db1"]
    assert notes["db1"].endswith("stderr: df: checking /var ⏎ disk /var is 97% full (token ***)")
    assert "hunter2" not in notes["db1"] and "***" in notes["db1"]  # redacted
    assert notes["app<7>"] == "load load = 20 (critical > 10)"
    assert notes["web2"] == "load load = 7 (warn > 5)"
    assert notes["web1"] == "" and notes["node01"] == ""


def test_every_link_lands_on_an_id(page: Page, report: Path) -> None:
    ids = set(page.ids)
    assert len(ids) == len(page.ids), "duplicate ids"
    internal = [h for h in page.hrefs if h.startswith("#")]
    assert internal and internal == page.hrefs  # no link leaves the page
    missing = {h for h in internal if h[1:] not in ids}
    assert not missing, sorted(missing)[:5]
    # The odd host name is escaped in text and slugged in its id.
    html = report.read_text()
    assert "app&lt;7&gt;" in html and "app<7>" not in html
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", i) for i in ids)
    lowered = html.lower()
    assert page.scripts == 0
    for external in ("<link", " src=", "url(", "@import", "http://", "https://"):
        assert external not in lowered, external


def test_the_grid_has_a_cell_per_step_and_host(page: Page) -> None:
    assert page.grid_hosts[0] == "step"
    hosts = page.grid_hosts[1:]
    assert hosts == [r[0] for r in page.host_rows[1:]]  # the same worst-first order
    steps = [row[0] for row in page.grid[1:]]
    # Runbook order, the block before its nested steps.
    assert [s.split()[-1] for s in steps] == ["load", "checks", "disk", "webonly", "final"]
    cells = {row[0].split()[-1]: dict(zip(hosts, row[1], strict=True)) for row in page.grid[1:]}
    text, title, href = cells["disk"]["db1"]
    assert text == "✗ fail" and "97% full" in title and href == "#host-db1--disk"
    assert cells["load"]["web2"][0] == "! warn" and "warn > 5" in cells["load"]["web2"][1]
    assert cells["load"]["app<7>"][0] == "‼ crit"
    assert cells["webonly"]["node01"][0] == "– skip"
    assert cells["webonly"]["web1"][0] == "✓ ok"
    final_db1 = cells["final"]["db1"]  # db1 stopped before it
    assert final_db1[0] == "·" and final_db1[1] == "db1: not run"


def test_history_redraws_the_same_picture(report: Path, page: Page) -> None:
    home = {"RUNBOOK_HOME": str(report.parent / "home")}
    run_id = json.loads(cli("history", "--format", "json", env=home).stdout)[0]["id"]
    again = report.parent / "again.html"
    assert cli("history", run_id, "--report", again, env=home).exit_code == 0
    replayed = Page()
    replayed.feed(again.read_text())
    assert replayed.host_rows == page.host_rows
    assert replayed.grid_hosts == page.grid_hosts and replayed.grid == page.grid


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --enable-logging=stderr --v=0 writes the page's console to stderr as
    # "INFO:CONSOLE(...)" lines: how the test sees errors without a debugger.
    return subprocess.run(
        [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={profile}", *args,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_console_capture_sees_errors(chromium: str, tmp_path: Path) -> None:
    """The control for the check below: a page that logs an error is caught."""
    probe = write(tmp_path, "<!DOCTYPE html><script>console.error('probe-7')</script>", "p.html")
    done = _chromium(chromium, tmp_path / "profile", "--dump-dom", f"file://{probe}")
    assert any("probe-7" in line for line in _console(done.stderr)), done.stderr[-2000:]


def test_the_report_renders_in_headless_chromium(report: Path, chromium: str) -> None:
    d = report.parent
    shot = d / "report.png"
    done = _chromium(
        chromium, d / "profile", f"--screenshot={shot}", "--window-size=1280,1400",
        f"file://{report}",
    )  # fmt: skip
    assert shot.exists(), done.stderr[-2000:]
    assert _png_size(shot) == (1280, 1400)
    assert shot.stat().st_size > 30_000  # a drawn page, not a blank one
    assert _console(done.stderr) == []

    dom = _chromium(chromium, d / "profile2", "--dump-dom", f"file://{report}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == []
    # The failed host's reason is in the browser's DOM, in the hosts table.
    hosts_table = dom.stdout.split('<table class="hosts">', 1)[1].split("</table>", 1)[0]
    assert "disk /var is 97% full" in hosts_table
    assert dom.stdout.count('<td class="c">') == len(
        ["load", "checks", "disk", "webonly", "final"]
    ) * (len(NAMED) + len(FILLERS))
