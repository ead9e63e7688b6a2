"""What the controller's and the workers' logs may say of a bug.

A log is an output like any other: an exception's message may hold what it
was working on, secrets too, so it goes through the run's redactor."""

from __future__ import annotations

import logging
import os

from engine.redaction import Redactor


def log_bug(log: logging.Logger, redactor: Redactor, exc: BaseException, doing: str) -> None:
    """A bug on either side, in its log: the error's type and redacted message;
    the traceback (unredacted, for the engine's developer) only with
    RUNBOOK_DEBUG=1, as the CLI does. A log is an output: no secret in it."""
    log.error(
        "%s: internal error: %s",
        doing,
        redactor.text(f"{type(exc).__name__}: {exc}"),
        exc_info=exc if os.environ.get("RUNBOOK_DEBUG") else None,
    )
