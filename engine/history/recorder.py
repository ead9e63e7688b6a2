"""The history recorder: an event processor that appends each event to the store.

Events arrive already redacted by the EventBus. Each one is committed before
`handle()` returns (events that queued up together: in one transaction, before
`handle_batch()` returns), so whatever the console has shown is also in the
history.
A store that fails fails the run closed: the event's emitter gets RecordLost,
and the run starts no step after it (a step whose start is not recorded could
run twice on resume). The operator is told once, on stderr, what failed.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import IO, Any, NoReturn

from engine.errors import RecordLost
from engine.events import (
    Approval,
    Event,
    HostFinished,
    LogMessage,
    RunAborted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from engine.redaction import Redactor
from engine.results import KEPT, StepResult

from .store import CRASHED, RUNNING, EventRow, HistoryStore, MetricRow, StepRow


def step_payload(result: StepResult) -> dict[str, Any]:
    """The result as stored: to_dict() plus what it needs to be rebuilt.

    A shell step's `stdout_lines` is its `stdout` again, split: it is left out
    and rebuilt on reading (replay.step_from_dict), which halves what a step
    that prints much costs the history."""
    payload = {**result.to_dict(), "host": result.host, "sensitive": result.sensitive}
    data = payload.get("data")
    if isinstance(data, dict) and _lines_derived(data):
        payload["data"] = {k: v for k, v in data.items() if k != "stdout_lines"}
        payload["derived"] = ["stdout_lines"]
    return payload


def _lines_derived(data: dict[str, Any]) -> bool:
    stdout, lines = data.get("stdout"), data.get("stdout_lines")
    return isinstance(stdout, str) and isinstance(lines, list) and lines == stdout.splitlines()


class HistoryRecorder:
    def __init__(
        self,
        store: HistoryStore,
        *,
        redactor: Redactor | None = None,
        extra: dict[str, Any] | None = None,
        warn: IO[str] | None = None,
    ) -> None:
        self.store = store
        # `is not None`: an empty Redactor is falsy, yet it learns secrets during the run.
        self.redactor = redactor if redactor is not None else Redactor()
        self.extra = extra or {}  # step_ids, options: what the events do not carry
        self.warn = warn or sys.stderr
        self.seq = 0
        self.run_id: str | None = None
        self.failed: str | None = None
        self._started: dict[tuple[str, str], str] = {}
        self._params: dict[str, Any] = {}

    def handle(self, event: Event) -> None:
        self.seq += 1
        try:
            if isinstance(event, RunStarted):
                self._run_started(event)
            self.store.record(*self._rows(event))
            if isinstance(event, RunFinished):
                self._run_finished(event)
        except Exception as exc:  # any store failure: the emitter is told
            self._failed(exc)

    def handle_batch(self, events: list[Event]) -> None:
        """Events that queued up together: one transaction for all their rows.

        Every event is tried even after one is lost; then RecordLost reaches every
        emitter of the batch (the bus hands it to each), so none starts a step."""
        rows: list[tuple[EventRow, StepRow | None, list[MetricRow]]] = []
        lost: RecordLost | None = None
        for event in events:
            if isinstance(event, RunStarted | RunFinished):  # statements of their own
                lost = _kept(self._commit, rows) or lost
                rows = []
                lost = _kept(self.handle, event) or lost
                continue
            self.seq += 1
            rows.append(self._rows(event))
        lost = _kept(self._commit, rows) or lost
        if lost is not None:
            raise lost

    def _commit(self, rows: list[tuple[EventRow, StepRow | None, list[MetricRow]]]) -> None:
        if not rows:
            return
        try:
            self.store.record_many(rows)
        except Exception:
            # One bad row must not cost the others: the same rows one by one.
            lost: Exception | None = None
            for row in rows:
                try:
                    self.store.record(*row)
                except Exception as exc:
                    lost = lost or exc
            if lost is not None:
                self._failed(lost)

    def _failed(self, exc: Exception) -> NoReturn:
        reason = f"{type(exc).__name__}: {self.redactor.text(str(exc))}"
        if self.failed is None:
            self.failed = reason
            self.warn.write(
                f"error: run history {self.store.location}: cannot record events "
                f"({reason}); no step starts after this, so none can run twice; "
                "fix the history, then `runbook resume`\n"
            )
        raise RecordLost(f"run history {self.store.location}: {reason}")

    # ----------------------------------------------------------------- kinds

    def _rows(self, event: Event) -> tuple[EventRow, StepRow | None, list[MetricRow]]:
        host = getattr(event, "host", None)
        step_id = getattr(event, "step_id", None)
        step: StepRow | None = None
        metrics: list[MetricRow] = []
        if isinstance(event, StepStarted):
            self._started[(event.host, event.step_id)] = event.at
            payload: dict[str, Any] = {"name": event.name, "depth": event.depth}
        elif isinstance(event, StepFinished):
            step_id = event.result.step_id
            payload = _step_finished_payload(event)
            step, metrics = self._step_rows(event)
        elif isinstance(event, RunFinished):
            payload = _run_finished_payload(event)
        elif isinstance(event, LogMessage | Approval | HostFinished | RunAborted):
            payload = {k: v for k, v in _plain(event).items() if k not in ("host", "step_id")}
        else:  # RunStarted, and any event type without a rule here
            payload = _plain(event)
        row = EventRow(event.run_id, self.seq, event.at, event.kind, host, step_id, payload)
        return row, step, metrics

    def _step_rows(self, event: StepFinished) -> tuple[StepRow, list[MetricRow]]:
        """The step's result row, and a row per threshold it measured."""
        r = event.result
        step = StepRow(
            event.run_id,
            event.host,
            r.step_id,
            self.seq,
            r.name,
            r.state.value,
            self._started.pop((event.host, r.step_id), None),
            event.at,
            r.duration_ms,
            r.error,
            step_payload(r),
        )
        if r.skip_reason == KEPT:  # a kept value was measured by the resumed run, not now
            return step, []
        metrics = [
            MetricRow(
                event.run_id, event.host, r.step_id, name, m.value, m.state.value, event.at, m.unit
            )
            for name, m in r.metrics.items()
        ]
        return step, metrics

    def _run_finished(self, event: RunFinished) -> None:
        res = event.result
        self.store.update_run(
            event.run_id,
            # A run a bug cut short stays resumable, as one whose engine raised.
            state=CRASHED if res.internal_error else res.state.value,
            exit_code=res.exit_code,
            finished_at=event.at,
            # Secrets first read during the run are known only now.
            params=self.redactor(self._params),
            options=self.redactor(self.extra.get("options", {})),
        )

    def _run_started(self, e: RunStarted) -> None:
        self.run_id = e.run_id
        self._params = e.params
        self.store.insert_run(
            {
                "id": e.run_id,
                "runbook": e.runbook,
                "path": str(Path(e.path).resolve()) if e.path else e.path,
                "runbook_digest": e.runbook_digest,
                "step_ids": self.extra.get("step_ids", []),
                "params": e.params,
                "options": self.redactor(self.extra.get("options", {})),
                "hosts": e.hosts,
                "inventory": e.inventory,
                "inventory_digest": e.inventory_digest,
                "operator": e.operator,
                "dry_run": e.dry_run,
                "state": RUNNING,
                "started_at": e.at,
                "resumed_from": e.resumed_from,
                "pid": os.getpid(),
                "control_node": socket.gethostname(),
                "incident": (self.extra.get("options") or {}).get("incident"),
            }
        )


def _plain(event: Event) -> dict[str, Any]:
    skip = {"run_id", "at"}
    return {f.name: _jsonable(getattr(event, f.name)) for f in fields(event) if f.name not in skip}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return value


def _step_finished_payload(event: StepFinished) -> dict[str, Any]:
    r = event.result
    return {
        "name": r.name,
        "state": r.state.value,
        "depth": event.depth,
        "duration_ms": r.duration_ms,
        "attempts": r.attempts,
        "error": r.error,
        "skip_reason": r.skip_reason,
        "ignored": r.ignored,
        "rescued": r.rescued,
        "approved_by": r.approved_by,
        "metrics": {k: m.to_dict() for k, m in r.metrics.items()},
    }


def _run_finished_payload(event: RunFinished) -> dict[str, Any]:
    res = event.result
    return {
        "state": res.state.value,
        "exit_code": res.exit_code,
        "aborted": res.aborted,
        "duration_ms": res.duration_ms,
        "hosts": {
            name: {"state": h.state.value, "unreachable": h.unreachable, "aborted": h.aborted}
            for name, h in res.hosts.items()
        },
    }


def _kept(record: Callable[[Any], None], what: Any) -> RecordLost | None:
    """`record(what)`; the RecordLost it raised, if it did."""
    try:
        record(what)
    except RecordLost as exc:
        return exc
    return None
