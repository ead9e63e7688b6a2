"""runbooks/uptime-check.yaml, run as cron would run it (one run after another)
against the lab app's real /health, with a real webhook receiver in a thread
and an alert command: one alert when the third failure in a row is reached,
none after, one "recovered" when the endpoint answers again."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.lab_app import LabApp
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "uptime-check.yaml"


class Receiver:
    """A webhook endpoint that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()


def test_three_failures_in_a_row_alert_once_and_recovery_once(
    lab_app: LabApp, receiver: Receiver, tmp_path: Path
) -> None:
    mail = tmp_path / "mail.txt"
    args = (
        "-p", f"url={lab_app.url}/health", "-p", f"state_dir={tmp_path / 'state'}",
        "-p", f"alert_url={receiver.url}", "-p", f"alert_cmd=cat >> {mail}",
    )  # fmt: skip
    lab_app.set_healthy(False)
    seen = []
    for _ in range(4):  # four checks, 5 minutes apart in production
        code, doc = run_json(RUNBOOK, *args)
        s = steps_of(doc)
        seen.append(
            (s["count"]["metrics"]["consecutive_failures"]["value"], len(receiver.posts), code)
        )
    assert seen == [(1, 0, 1), (2, 0, 1), (3, 1, 2), (4, 1, 2)]  # one alert, at the third
    [down] = receiver.posts
    assert down["state"] == "down" and down["failures"] == 3
    assert down["text"].startswith(f"DOWN: {lab_app.url}/health failed 3 checks in a row")
    assert "503" in down["text"]  # the reason the check failed
    assert mail.read_text().startswith("DOWN: ")

    lab_app.set_healthy(True)
    code, doc = run_json(RUNBOOK, *args)
    assert code == 0, doc
    assert [p["state"] for p in receiver.posts] == ["down", "recovered"]
    assert receiver.posts[1]["failures"] == 4
    assert mail.read_text().count("RECOVERED: ") == 1
    code, doc = run_json(RUNBOOK, *args)  # still up: nothing more is sent
    assert len(receiver.posts) == 2 and code == 0


def test_a_failure_that_does_not_reach_the_count_never_alerts(
    lab_app: LabApp, receiver: Receiver, tmp_path: Path
) -> None:
    args = (
        "-p",
        f"url={lab_app.url}/health",
        "-p",
        f"state_dir={tmp_path}",
        "-p",
        f"alert_url={receiver.url}",
    )
    lab_app.set_healthy(False)
    run_json(RUNBOOK, *args)
    lab_app.set_healthy(True)
    code, doc = run_json(RUNBOOK, *args)
    assert steps_of(doc)["count"]["data"]["json"] == {"before": 1, "now": 0}
    assert receiver.posts == [] and code == 0


def test_no_url_is_an_error_before_anything_is_counted(tmp_path: Path) -> None:
    code, doc = run_json(RUNBOOK, "-p", f"state_dir={tmp_path}")
    assert steps_of(doc)["configured"]["state"] == "failed"
    assert list(tmp_path.iterdir()) == []
    assert code == 3
