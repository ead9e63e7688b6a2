"""The `runbook` command: one module per command group, registered on `main`.

    app.py        the group itself: errors to exit codes
    run.py        run, resume
    approve.py    approve
    serve.py      serve (the [serve] extra: FastAPI, uvicorn)
    worker.py     worker (the [celery] extra: a zone's Celery worker)
    testing.py    test
    history.py    history
    inventory.py  inventory
    catalog.py    check, list, show, schema, cron
    options.py    the options `run` and `resume` share

Each command imports what it needs inside its function, so `runbook --help`
imports none of the heavy modules (paramiko, psycopg, boto3, jinja2, pydantic).
"""

from __future__ import annotations

from .app import main
from .approve import approve_command
from .catalog import (
    check_command,
    cron_command,
    list_command,
    schema_command,
    show_command,
)
from .history import history_command
from .inventory import inventory_command
from .run import resume_command, run_command
from .serve import serve_command
from .testing import test_command
from .worker import worker_command

__all__ = ["main"]

for _command in (
    run_command,
    resume_command,
    approve_command,
    check_command,
    list_command,
    show_command,
    schema_command,
    cron_command,
    inventory_command,
    history_command,
    test_command,
    serve_command,
    worker_command,
):
    main.add_command(_command)
