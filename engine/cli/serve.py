"""`runbook serve`: the HTTP API and alert webhooks (engine/serve/, docs/serve.md).

FastAPI and uvicorn are the `[serve]` extra: imported here, inside the
command, so the rest of `runbook` never needs them.
"""

from __future__ import annotations

import os

import click

from . import helptext


@click.command("serve", epilog=helptext.SERVE)
@click.option(
    "--config",
    "config_path",
    default="runbook-serve.yaml",
    show_default=True,
    envvar="RUNBOOK_SERVE_CONFIG",
    type=click.Path(dir_okay=False),
    help="The serve config: listen, runbooks, inventory, users, webhooks. "
    "Default: $RUNBOOK_SERVE_CONFIG.",
)
@click.option("--host", help="Listen on this address (default: the config's, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen on this port.")
def serve_command(config_path: str, host: str | None, port: int | None) -> None:
    """Serve the API: start runs, follow them, answer their gates, take alerts."""
    from engine.errors import UsageError

    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise UsageError(
            f"runbook serve needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'runbook-engine[serve]'"
        ) from None
    from engine.serve.app import create_app
    from engine.serve.config import load_config

    config = load_config(config_path)
    app = create_app(config)
    # Runs started here (and their children) learn roles from the same users.
    os.environ["RUNBOOK_SERVE_CONFIG"] = str(config.path)
    bind, listen_port = host or config.host, port or config.port
    click.echo(f"runbook serve: http://{bind}:{listen_port}/api (OpenAPI: /openapi.json)", err=True)
    # Open event streams (a browser on a waiting run) would hold uvicorn's graceful
    # wait forever, and the runs would never be recorded aborted: 5 s, then on.
    uvicorn.run(app, host=bind, port=listen_port, log_level="info", timeout_graceful_shutdown=5)
