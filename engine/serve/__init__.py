"""`runbook serve`: an HTTP API, alert webhooks and (later) a web page over the engine.

    config.py    the serve config file: listen, runbooks, inventory, users, webhooks
    auth.py      bearer tokens → users; the right each route needs; audit rows
    runs.py      RunManager: runs in threads, their event buffers, cancel, resume
    models.py    request and response bodies (the OpenAPI spec is drawn from them)
    api.py       the /api routes
    webhooks.py  /hooks/alertmanager and /hooks/grafana: alerts that start runbooks
    app.py       create_app(config): the FastAPI app, its state, errors to statuses

FastAPI and uvicorn are the `[serve]` extra: only this package imports them.
"""
