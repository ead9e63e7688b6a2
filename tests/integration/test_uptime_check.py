"""runbooks/uptime-check.yaml, run as cron would run it (one run after another)
against the lab app's real /health, with a real webhook receiver in a thread
and an alert command: one alert when the third failure in a row is reached,
none after, one "recovered" when the endpoint answers again."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.lab_app import LabApp
from tests.fixtures.receiver import Receiver
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "uptime-check.yaml"


def test_three_failures_in_a_row_alert_once_and_recovery_once(
    lab_app: LabApp, receiver: Receiver, tmp_path: Path
) -> None:
    mail = tmp_path / "mail.txt"
    args = (
        "-p", f"url={lab_app.url}/health", "-p", f"state_dir={tmp_path / 'state'}",
        "-p", f"alert_url={receiver.url}/hook", "-p", f"alert_cmd=cat >> {mail}",
    )  # fmt: skip
    lab_app.set_healthy(False)
    seen = []
    for _ in range(4):  # four checks, 5 minutes apart in production
        code, doc = run_json(RUNBOOK, *args)
        s = steps_of(doc)
        seen.append(
            (
                s["count"]["metrics"]["consecutive_failures"]["value"],
                len(receiver.bodies("/hook")),
                code,
            )
        )
    assert seen == [(1, 0, 1), (2, 0, 1), (3, 1, 2), (4, 1, 2)]  # one alert, at the third
    [down] = receiver.bodies("/hook")
    assert down["state"] == "down" and down["failures"] == 3
    assert down["text"].startswith(f"DOWN: {lab_app.url}/health failed 3 checks in a row")
    assert "503" in down["text"]  # the reason the check failed
    assert mail.read_text().startswith("DOWN: ")

    lab_app.set_healthy(True)
    code, doc = run_json(RUNBOOK, *args)
    assert code == 0, doc
    assert [p["state"] for p in receiver.bodies("/hook")] == ["down", "recovered"]
    assert receiver.bodies("/hook")[1]["failures"] == 4
    assert mail.read_text().count("RECOVERED: ") == 1
    code, doc = run_json(RUNBOOK, *args)  # still up: nothing more is sent
    assert len(receiver.bodies("/hook")) == 2 and code == 0


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
    assert receiver.bodies("/hook") == [] and code == 0


def test_no_url_is_an_error_before_anything_is_counted(tmp_path: Path) -> None:
    code, doc = run_json(RUNBOOK, "-p", f"state_dir={tmp_path}")
    assert steps_of(doc)["configured"]["state"] == "failed"
    assert list(tmp_path.iterdir()) == []
    assert code == 3
