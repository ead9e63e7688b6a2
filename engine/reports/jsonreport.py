"""`--format json`: one machine-readable document of the whole run on stdout.

The document is a contract (`schema_version`, and the schema that `runbook
schema --output run` prints: reports/run_schema.py). It is drawn from a
RunDocument, which the live run collects from the event bus and `runbook
history RUN_ID --format json` rebuilds from the store, so both print the same
document for the same run.
"""

from __future__ import annotations

import json
from typing import IO, Any

from engine.events import Event, RunFinished

from .document import DocumentCollector, RunDocument
from .run_schema import SCHEMA_VERSION


def run_document(doc: RunDocument) -> dict[str, Any]:
    """The run as `--format json` prints it. State and exit code are the
    document's: a recorded run still running has no exit code yet."""
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **doc.result.to_dict()}
    out["state"] = doc.state or out["state"]
    out["exit_code"] = doc.exit_code
    out["started_at"], out["finished_at"] = doc.started_at, doc.finished_at
    for name, host in out["hosts"].items():
        for step in host["steps"]:
            timing = doc.timings.get((name, step["id"]))
            step["started_at"] = timing.started_at if timing else None
            step["finished_at"] = timing.finished_at if timing else None
    out["logs"] = doc.logs
    out["approvals"] = doc.approvals
    return out


def write_document(doc: dict[str, Any], stream: IO[str]) -> None:
    """Non-ASCII text as itself, as the console shows it (and as the leak tests
    scan it), not as \\u escapes."""
    json.dump(doc, stream, indent=2, default=str, ensure_ascii=False)
    stream.write("\n")
    stream.flush()


class JsonReport(DocumentCollector):
    """Prints the run document when the run ends (events arrive redacted)."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(self._print)
        self.stream = stream
        self._finished_at = ""

    def handle(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            self._finished_at = event.at
        super().handle(event)

    def _print(self, doc: RunDocument) -> None:
        # The run's start and end as the history records them (its first and
        # last events), so `history RUN_ID --format json` prints the same times.
        doc.started_at = self._start.at if self._start else doc.started_at
        doc.finished_at = self._finished_at or doc.finished_at
        write_document(run_document(doc), self.stream)
