"""`--metrics-textfile PATH`: the run's thresholds and outcome in Prometheus's
text format, for node_exporter's textfile collector.

A scheduled runbook then feeds the dashboards and alert rules the guides
describe (disk > 80 %, cache hit rate, queue depth) without a second agent.
The file is written whole at the run's end (a temporary file renamed over it),
so the collector never reads half of it. A directory gets one file per
runbook (`runbook_NAME.prom`), as the collector expects one file per job. A dry
run writes nothing: a rehearsal must not feed alerts.

`--pushgateway URL` sends the same text to a Prometheus Pushgateway, for runs
on machines no Prometheus scrapes (a CI job, a laptop during an incident).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from engine.events import Event, RunFinished
from engine.results import RunResult, State

STATE_NUMBER = {"ok": 0, "warn": 1, "critical": 2, "failed": 3, "unreachable": 3, "aborted": 4}


def _label(value: str) -> str:
    """A label value as the text format escapes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def render_textfile(result: RunResult) -> str:
    """The exposition text for one run."""
    rb = result.runbook
    lines = [
        "# HELP runbook_threshold_value A threshold's value at the run's end.",
        "# TYPE runbook_threshold_value gauge",
    ]
    states = [
        "# HELP runbook_threshold_state A threshold's state: 0 ok, 1 warn, 2 critical.",
        "# TYPE runbook_threshold_state gauge",
    ]
    for host, hr in sorted(result.hosts.items()):
        for step in hr.steps:
            for name, m in sorted(step.metrics.items()):
                labels = _labels(
                    runbook=rb, host=host, step=step.step_id, metric=name, unit=m.unit or ""
                )
                if m.value is not None:
                    lines.append(f"runbook_threshold_value{labels} {m.value:.17g}")
                if m.state.value in STATE_NUMBER:
                    states.append(f"runbook_threshold_state{labels} {STATE_NUMBER[m.state.value]}")
    lines += states
    lines += [
        "# HELP runbook_host_state A host's state at the run's end: 0 ok, 1 warn, 2 critical, "
        "3 failed or unreachable, 4 aborted.",
        "# TYPE runbook_host_state gauge",
    ]
    for host, hr in sorted(result.hosts.items()):
        if hr.state is not State.SKIPPED:
            lines.append(
                f"runbook_host_state{_labels(runbook=rb, host=host)} "
                f"{STATE_NUMBER.get(hr.state.value, 3)}"
            )
    run = _labels(runbook=rb)
    lines += [
        "# HELP runbook_run_exit_code The run's exit code (0 ok, 1 warn, 2 critical, 3 failed, "
        "4 aborted).",
        "# TYPE runbook_run_exit_code gauge",
        f"runbook_run_exit_code{run} {result.exit_code}",
        "# HELP runbook_run_duration_seconds How long the run took.",
        "# TYPE runbook_run_duration_seconds gauge",
        f"runbook_run_duration_seconds{run} {result.duration_ms / 1000:.3f}",
        "# HELP runbook_run_finished_timestamp_seconds When the run ended (Unix time).",
        "# TYPE runbook_run_finished_timestamp_seconds gauge",
        f"runbook_run_finished_timestamp_seconds{run} {_epoch(result.finished_at):.3f}",
    ]
    return "\n".join(lines) + "\n"


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() if iso else 0.0


class MetricsTextfile:
    """A processor: writes the file when the run finishes."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def target(self, runbook: str) -> Path:
        if self.path.is_dir():
            return self.path / f"runbook_{runbook}.prom"
        return self.path

    def handle(self, event: Event) -> None:
        if not isinstance(event, RunFinished) or event.result.dry_run:
            return
        target = self.target(event.result.runbook)
        text = render_textfile(event.result)
        # The collector reads *.prom: the temporary file is named otherwise.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".runbook-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class Pushgateway:
    """A processor: at the run's end, PUT the run's metrics to a Pushgateway.

    The grouping key is job="runbook", runbook=NAME: PUT replaces the group, so
    hosts of an earlier run that this one no longer covers do not linger. A
    push that fails is said on stderr and never changes the run's outcome: the
    run did its work; its metrics are a report of it.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.error: str | None = None  # why the last push failed, for the caller

    def group_url(self, runbook: str) -> str:
        return f"{self.url}/metrics/job/runbook/runbook/{quote(runbook, safe='')}"

    def handle(self, event: Event) -> None:
        if not isinstance(event, RunFinished) or event.result.dry_run:
            return
        import httpx

        text = render_textfile(event.result)
        try:
            response = httpx.put(
                self.group_url(event.result.runbook),
                content=text.encode(),
                headers={"Content-Type": "text/plain; version=0.0.4"},
                timeout=self.timeout,
            )
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            body = exc.response.text.strip()[:300]
            self._failed(f"HTTP {exc.response.status_code}: {body}")
        except httpx.HTTPError as exc:
            self._failed(f"{type(exc).__name__}: {exc}")

    def _failed(self, why: str) -> None:
        from engine.redaction import redact_dsn, scrub

        url = redact_dsn(self.url)  # a password in the URL is not shown
        self.error = scrub(why, self.url)
        sys.stderr.write(f"warning: --pushgateway {url}: push failed ({self.error})\n")
