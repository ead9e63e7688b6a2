"""The Celery side: the app both ends share, the walk task, the zone queues.

Celery carries one task per host walk to `runbook.zone.<zone>`; a worker
started with `runbook worker --zone ZONE` consumes only that queue. Tasks are
acknowledged when taken (Celery's default), so a worker killed mid-walk does
not hand the walk to another worker: its steps may have run, and the
controller reports the host unreachable instead of running them twice.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from engine.errors import UsageError

if TYPE_CHECKING:
    from celery import Celery

    from .hub import Hub

BROKER_ENV = "RUNBOOK_BROKER"
TASK = "runbook.walk"

_hub: Hub | None = None  # the worker process's hub, set by `runbook worker`


def zone_queue(zone: str) -> str:
    return f"runbook.zone.{zone}"


def broker_url(given: str | None) -> str:
    url = given or os.environ.get(BROKER_ENV, "")
    if not url:
        raise UsageError(
            f"no broker: pass --broker URL or set {BROKER_ENV} "
            "(redis://HOST:6379/0 or amqp://USER:PASSWORD@HOST:5672//)"
        )
    return url


def make_app(broker: str) -> Celery:
    """A Celery app on `broker` with the walk task registered."""
    try:
        from celery import Celery
    except ImportError:
        raise UsageError(
            "distributed runs need Celery: pip install 'runbook-engine[celery]'"
        ) from None

    app = Celery("runbook", broker=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",  # the body is one sealed string (seal.py)
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=False,  # taken = gone from the queue: never walked twice
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_default_queue="runbook.zone.default",
    )

    app.task(name=TASK)(_walk)
    return app


def _walk(token: str) -> None:
    """The task: one host's walk, in a pool thread of `runbook worker`."""
    if _hub is None:
        raise RuntimeError("this process is not a `runbook worker`")
    _hub.walk(token)


def set_hub(hub: Hub) -> None:
    global _hub
    _hub = hub


def send_walk(app: Any, zone: str, token: str, expires: float) -> None:
    app.send_task(TASK, args=[token], queue=zone_queue(zone), expires=expires)
