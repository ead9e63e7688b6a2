"""`--format json`: one machine-readable document of the whole run on stdout."""

from __future__ import annotations

import json
from typing import IO, Any

from engine.events import Event, LogMessage, RunFinished


class JsonReport:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.logs: list[dict[str, Any]] = []

    def handle(self, event: Event) -> None:
        if isinstance(event, LogMessage):
            self.logs.append(
                {
                    "host": event.host,
                    "step": event.step_id,
                    "level": event.level,
                    "message": event.message,
                }
            )
        elif isinstance(event, RunFinished):
            doc = event.result.to_dict()
            doc["logs"] = self.logs
            json.dump(doc, self.stream, indent=2, default=str)
            self.stream.write("\n")
            self.stream.flush()
