"""A secret planted in every channel never reaches any output, report or history row."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from engine.history import open_store
from tests.fixtures.receiver import Receiver
from tests.helpers import cli, write

ENV_SECRET = "tok-S3cr3t-env-9f2"
FILE_SECRET = "file-pw-Zq81xLm"
PARAM_SECRET = "param-pw-Kx93Tb"
SENSITIVE = "sensitive-out-7Hq4"
ALL = (ENV_SECRET, FILE_SECRET, PARAM_SECRET, SENSITIVE)

RUNBOOK = """
runbook: secret-demo
notify:
  - {events: [always], webhook: "{{ env.NOTIFY_URL }}/hook"}
  - {events: [always], slack: "{{ env.NOTIFY_URL }}/slack"}
params:
  password: {type: str, secret: true}
steps:
  - name: both streams
    shell: >-
      echo out {{ secret('API_TOKEN') }}; echo err {{ secret('API_TOKEN') }} >&2;
      echo p {{ params.password }}; echo f {{ secret('FILE_PW') }}
  - name: log it
    log: "token={{ secret('API_TOKEN') }} pw={{ params.password }} f={{ secret('FILE_PW') }}"
  - name: error message
    assert:
      that: ["1 == 2"]
      message: "bad token {{ secret('API_TOKEN') }} / {{ params.password }}"
    ignore_errors: true
  - name: url in error
    http:
      url: "http://127.0.0.1:1/x?token={{ secret('API_TOKEN') }}"
      timeout: 2s
    ignore_errors: true
  - name: failing output
    shell: "echo f {{ secret('FILE_PW') }}; echo e {{ params.password }} >&2; exit 1"
    ignore_errors: true
  - name: sensitive result
    sensitive: true
    shell: "echo sensitive-out-7Hq4"
  - name: keep a copy
    set: {duplicate: "{{ secret('API_TOKEN') }}-{{ params.password }}"}
  - name: gated
    confirm: "Rotate {{ secret('API_TOKEN') }}?"
    log: "rotating {{ vars.duplicate }}"
  - name: measured
    shell: "echo 3"
    thresholds:
      tokens: {value: "result.stdout | int", warn: "> 5"}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgres":
        dsn = request.getfixturevalue("pg_history_dsn")
        monkeypatch.setenv("RUNBOOK_HISTORY", dsn)
        return dsn
    return "sqlite"


def _assert_clean(where: str, text: str) -> None:
    for secret in ALL:
        assert secret not in text, f"{secret!r} leaked into {where}"


def _every_history_row(backend: str, home: Path) -> str:
    """Every row of every table, and for SQLite the raw database and WAL bytes too."""
    parts: list[str] = []
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(home / "history.db")
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            parts.extend(repr(row) for row in conn.execute(f'SELECT * FROM "{t}"'))
        conn.close()
        for f in home.iterdir():
            parts.append(f.read_bytes().decode("latin-1"))
    else:
        import psycopg

        with psycopg.connect(backend) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            ]
            for t in tables:
                parts.extend(repr(row) for row in conn.execute(f'SELECT * FROM "{t}"'))
    assert len(parts) > 10
    return "\n".join(parts)


def test_secret_in_every_channel_is_redacted_everywhere(
    tmp_path: Path,
    backend: str,
    runbook_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: Receiver,
    pushgateway: str,
) -> None:
    monkeypatch.setenv("API_TOKEN", ENV_SECRET)
    monkeypatch.setenv("NOTIFY_URL", receiver.url)
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text(f"FILE_PW: {FILE_SECRET}\n")
    secrets_file.chmod(0o600)
    rb = write(tmp_path, RUNBOOK)
    common = ["-p", f"password={PARAM_SECRET}", "--secrets", secrets_file, "--yes"]
    junit, html = tmp_path / "out.xml", tmp_path / "out.html"
    textfile = tmp_path / "metrics.prom"

    text = cli(
        "run", rb, *common, "-vv", "--junit", junit, "--report", html,
        "--metrics-textfile", textfile, "--pushgateway", pushgateway,
    )  # fmt: skip
    assert text.exit_code == 0, text.output
    _assert_clean("console output", text.output)
    # Not vacuous: the steps did print, with the secret masked.
    assert "out ***" in text.output and "token=*** pw=*** f=***" in text.output
    assert "failed (ignored)" in text.output

    as_json = cli("run", rb, *common, "--format", "json")
    assert as_json.exit_code == 0
    _assert_clean("--format json output", as_json.output)
    doc = json.loads(as_json.stdout)
    steps = {s["id"]: s for s in doc["hosts"]["localhost"]["steps"]}
    assert steps["both_streams"]["data"]["stderr"].strip() == "err ***"
    assert steps["sensitive_result"]["data"]["stdout"] == "***"
    assert "***" in steps["error_message"]["error"]
    assert "***" in steps["url_in_error"]["error"]

    as_lines = cli("run", rb, *common, "--format", "jsonl")
    assert as_lines.exit_code == 0
    _assert_clean("--format jsonl output", as_lines.output)
    assert '"message": "token=*** pw=*** f=***"' in as_lines.stdout  # the line was there

    _assert_clean("Prometheus textfile", textfile.read_text())
    assert 'metric="tokens"' in textfile.read_text()
    pushed = httpx.get(f"{pushgateway}/metrics").text
    _assert_clean("Pushgateway", pushed)
    assert 'metric="tokens"' in pushed
    _assert_clean("JUnit report", junit.read_text())
    _assert_clean("HTML report", html.read_text())
    assert "***" in junit.read_text() and "***" in html.read_text()

    runs = json.loads(cli("history", "--format", "json").stdout)
    assert len(runs) == 3 and runs[0]["params"] == {"password": "***"}
    for run in runs:
        for args in ((run["id"],), (run["id"], "--format", "json")):
            out = cli("history", *args)
            assert out.exit_code == 0
            _assert_clean(f"history {' '.join(args)}", out.output)
        again = tmp_path / f"{run['id']}.html"
        again_xml = tmp_path / f"{run['id']}.xml"
        cli("history", run["id"], "--report", again, "--junit", again_xml)
        _assert_clean("re-rendered HTML", again.read_text())
        _assert_clean("re-rendered JUnit", again_xml.read_text())
    _assert_clean("history list", cli("history").output)
    _assert_clean("metric trend", cli("history", "--metric", "tokens").output)
    trend = tmp_path / "trend.html"
    assert cli("history", "--metric", "tokens", "--report", trend).exit_code == 0
    _assert_clean("metric trend page", trend.read_text())
    assert "<polyline" in trend.read_text()  # drawn, not an empty page

    # Notifications: what left for the webhook and Slack, three runs' worth.
    sent = json.dumps(receiver.posts)
    _assert_clean("notifications", sent)
    assert len(receiver.bodies("/hook")) == 3 and len(receiver.bodies("/slack")) == 3

    rows = _every_history_row(backend, runbook_home)
    _assert_clean("the history database", rows)
    assert "***" in rows and "both_streams" in rows

    store = open_store()
    try:
        approvals = [e for e in store.events(runs[0]["id"]) if e.kind == "approval"]
        assert approvals and approvals[0].payload["prompt"] == "Rotate ***?"
    finally:
        store.close()


DSN_PASSWORD = "dsn-pw-Rt55wq"
DSN_RUNBOOK = """
runbook: dsn-param
params:
  url: {type: str}
steps:
  - name: show
    log: "using {{ params.url }}"
  - name: ping
    redis: {url: "{{ params.url }}", command: PING}
    ignore_errors: true
"""


def test_a_password_in_an_ordinary_param_is_redacted_from_the_start(
    tmp_path: Path, backend: str, runbook_home: Path
) -> None:
    # No param is declared secret: the run's redactor starts empty (and is falsy).
    url = f"redis://:{DSN_PASSWORD}@127.0.0.1:1/0"
    res = cli("run", write(tmp_path, DSN_RUNBOOK), "-p", f"url={url}", "-v")
    assert res.exit_code == 0, res.output
    assert "using redis://:***@127.0.0.1:1/0" in res.output
    assert DSN_PASSWORD not in res.output
    rows = _every_history_row(backend, runbook_home)
    assert "redis://:***@127.0.0.1:1/0" in rows
    assert DSN_PASSWORD not in rows, "the password reached the history"
