"""A finished (or interrupted) run as the file reports see it.

JUnit and HTML render a RunDocument; it is assembled either live, by
DocumentCollector listening to the event bus, or afterwards from the history
store (engine.history.replay), so `runbook history RUN_ID --report` draws the
same page the run drew. Everything in it has passed the bus's redaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.events import (
    Approval,
    Event,
    LogMessage,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from engine.results import RunResult


@dataclass
class StepTiming:
    started_at: str | None
    finished_at: str
    depth: int = 0


@dataclass
class RunDocument:
    run_id: str
    runbook: str
    result: RunResult
    path: str = ""
    operator: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    inventory: str = ""
    dry_run: bool = False
    started_at: str = ""
    finished_at: str = ""
    resumed_from: str | None = None
    state: str = ""  # the run's state; "running" when the engine died mid-run
    exit_code: int | None = None
    timings: dict[tuple[str, str], StepTiming] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)


class DocumentCollector:
    """Builds a RunDocument from events; calls `write(document)` when the run ends."""

    def __init__(self, write: Callable[[RunDocument], None]) -> None:
        self._write = write
        self._start: RunStarted | None = None
        self._started: dict[tuple[str, str], str] = {}
        self.timings: dict[tuple[str, str], StepTiming] = {}
        self.logs: list[dict[str, Any]] = []
        self.approvals: list[dict[str, Any]] = []

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start = event
        elif isinstance(event, StepStarted):
            self._started[(event.host, event.step_id)] = event.at
        elif isinstance(event, StepFinished):
            key = (event.host, event.result.step_id)
            self.timings[key] = StepTiming(self._started.pop(key, None), event.at, event.depth)
        elif isinstance(event, LogMessage):
            self.logs.append(
                {
                    "at": event.at,
                    "host": event.host,
                    "step": event.step_id,
                    "level": event.level,
                    "message": event.message,
                }
            )
        elif isinstance(event, Approval):
            self.approvals.append(
                {
                    "at": event.at,
                    "host": event.host,
                    "step": event.step_id,
                    "approved": event.approved,
                    "by": event.by,
                    "prompt": event.prompt,
                }
            )
        elif isinstance(event, RunFinished):
            self._write(self.document(event.result))

    def document(self, result: RunResult) -> RunDocument:
        s = self._start
        return RunDocument(
            run_id=result.run_id,
            runbook=result.runbook,
            result=result,
            path=s.path if s else "",
            operator=s.operator if s else "",
            params=dict(s.params) if s else {},
            hosts=list(s.hosts) if s else list(result.hosts),
            inventory=s.inventory if s else "",
            dry_run=result.dry_run,
            started_at=result.started_at,
            finished_at=result.finished_at,
            resumed_from=s.resumed_from if s else None,
            state=result.state.value,
            exit_code=result.exit_code,
            timings=self.timings,
            logs=self.logs,
            approvals=self.approvals,
        )


def file_report(path: str | Path, render: Callable[[RunDocument], str]) -> DocumentCollector:
    """A processor that writes `render(document)` to `path` when the run ends."""

    def write(doc: RunDocument) -> None:
        target = Path(path)
        if target.parent != Path():
            target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(render(doc), encoding="utf-8")
        tmp.replace(target)

    return DocumentCollector(write)
