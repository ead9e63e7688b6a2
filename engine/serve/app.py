"""The FastAPI app of `runbook serve`: its routers, its state, its error mapping.

`create_app(config)` is the one way to build it (the CLI, the tests and the
web page's router use it). app.state holds the config (users, rules), the
RunManager (runs, the history store) and the alert groups. Engine errors
raised by any route become one HTTP status each here, with the engine's own
message, so no route turns a refusal into a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.errors import EngineError

from .config import ServeConfig
from .errors import status_of
from .runs import RunManager
from .webhooks import AlertGroups


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngineError)
    return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))


def create_app(config: ServeConfig, manager: RunManager | None = None) -> FastAPI:
    """The app; its RunManager opens the history now (UsageError when it is off)."""
    from importlib.metadata import PackageNotFoundError, version

    from . import api, ui, webhooks

    try:
        release = version("runbook-engine")
    except PackageNotFoundError:  # run from a checkout that was never installed
        release = "0"

    runs = manager or RunManager(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runs.shutdown()  # live runs are cancelled and recorded as aborted

    app = FastAPI(
        title="runbook serve",
        version=release,
        description="Start runbooks, follow their events, answer their gates, "
        "and let alerts start them. Authorization: Bearer TOKEN (docs/serve.md).",
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.manager = runs
    app.state.alert_groups = AlertGroups()
    app.add_exception_handler(EngineError, _engine_error)
    app.include_router(api.router)
    app.include_router(webhooks.router)
    app.include_router(ui.router)
    return app
