"""runbooks/log-rotation.yaml's forced rotation with the real logrotate (its
postrotate reload included) and the compression of logs nobody writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "log-rotation.yaml"


def test_a_forced_rotation_runs_logrotate_and_its_reload(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("line\n" * 100)
    reloaded = tmp_path / "reloaded"
    config = tmp_path / "app.logrotate"
    config.write_text(
        f"{logs}/*.log {{\n  rotate 30\n  compress\n  missingok\n"
        f"  postrotate\n    touch {reloaded}\n  endscript\n}}\n"
    )
    config.chmod(0o644)
    args = ("-p", f"log_dir={logs}", "-p", f"logrotate_config={config}")
    code, doc = run_json(RUNBOOK, *args, "-p", f"logrotate_state={tmp_path / 'state'}")
    assert code == 0, doc
    assert steps_of(doc)["logrotate"]["state"] == "ok"
    assert sorted(p.name for p in logs.iterdir()) == ["app.log.1.gz"]
    assert reloaded.exists()  # the config's postrotate (an nginx reload in the guides)


def test_stale_logs_are_compressed_and_live_ones_left(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "old.log").write_text("old\n")
    (logs / "live.log").write_text("live\n")
    ten_days = time.time() - 10 * 86400
    os.utime(logs / "old.log", (ten_days, ten_days))
    code, doc = run_json(RUNBOOK, "-p", f"log_dir={logs}", "-p", "stale_days=7")
    assert code == 0, doc
    assert steps_of(doc)["compress_stale"]["data"]["stdout_lines"] == [str(logs / "old.log")]
    assert sorted(p.name for p in logs.iterdir()) == ["live.log", "old.log.gz"]
    assert steps_of(doc)["logrotate"]["state"] == "skipped"  # no config given
