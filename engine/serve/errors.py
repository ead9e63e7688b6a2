"""What an error means to an HTTP client: one mapping for the API and the page,
so a refusal is the same status wherever it is met, and never a 500."""

from __future__ import annotations

from fastapi import HTTPException

from engine.errors import Aborted, InvalidError, TemplateError

from .runs import NotFound


def status_of(exc: Exception) -> int:
    """The HTTP status of an engine error (or an HTTPException's own)."""
    from engine.history.gates import GateNotWaiting, VoteRefused
    from engine.history.store import HistoryError

    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, VoteRefused):
        return 403
    if isinstance(exc, GateNotWaiting):
        return 409
    if isinstance(exc, Aborted):  # a held lock, a run still running
        return 409
    if isinstance(exc, InvalidError | TemplateError):
        return 422
    if isinstance(exc, HistoryError):
        return 503
    return 400  # UsageError and the rest: the request was wrong
