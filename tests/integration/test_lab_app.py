"""The lab's stand-in web app (scripts/lab/app.py), which the outage and
error-rate runbooks are tested against: it must serve, count, log and obey
its start/stop commands like a real service."""

from __future__ import annotations

import urllib.error
import urllib.request

from tests.fixtures.lab_app import LabApp


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_it_serves_counts_and_logs_like_a_service(lab_app: LabApp) -> None:
    assert [get(f"{lab_app.url}/api/items") for _ in range(20)] == [200] * 20
    lab_app.set_error_ratio(1)
    assert get(f"{lab_app.url}/api/items") == 500
    lab_app.set_healthy(False)
    assert get(f"{lab_app.url}/health") == 503
    with urllib.request.urlopen(f"{lab_app.url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'http_requests_total{status="200"} 20\n' in metrics
    assert 'http_requests_total{status="500"} 1\n' in metrics
    assert 'http_requests_total{status="503"} 1\n' in metrics
    lines = lab_app.access_log.read_text().splitlines()
    assert '"GET /api/items HTTP/1.1" 500 ' in lines[-3]
    assert lines[-1].startswith("127.0.0.1 - - [") and '"GET /metrics HTTP/1.1" 200' in lines[-1]


def test_start_stop_restart_and_status(lab_app: LabApp) -> None:
    assert lab_app.running()
    assert lab_app.run("stop").returncode == 0
    assert not lab_app.running() and lab_app.run("status").returncode == 3
    try:
        urllib.request.urlopen(f"{lab_app.url}/health", timeout=5)
        raise AssertionError("the stopped app still answers")
    except urllib.error.URLError as exc:
        assert isinstance(exc.reason, ConnectionRefusedError)
    restarted = lab_app.run("restart")
    assert restarted.returncode == 0, restarted.stdout
    assert lab_app.running() and get(f"{lab_app.url}/health") == 200
