"""The runbook lab's Celery application: a real worker and beat on Redis for
runbooks/emergency-celery-backlog.yaml to inspect, restart and purge.

    cd scripts/lab && celery -A celery_lab worker -Q QUEUE ...
    LAB_BROKER=redis://127.0.0.1:6379/15 LAB_QUEUE=lab celery -A celery_lab beat ...

The broker and the default queue come from the environment (LAB_BROKER,
LAB_QUEUE), so each test has queues of its own on a database nobody else uses.
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("lab", broker=os.environ.get("LAB_BROKER", "redis://127.0.0.1:6379/15"))
app.conf.task_default_queue = os.environ.get("LAB_QUEUE", "celery")
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False
# beat sends a tick this often (seconds): its schedule file's age shows it lives.
app.conf.beat_schedule = {
    "tick": {
        "task": "lab.add",
        "schedule": float(os.environ.get("LAB_BEAT_SECONDS", "5")),
        "args": (1, 1),
    }
}


@app.task(name="lab.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="lab.add")
def add(a: int, b: int) -> int:
    return a + b
