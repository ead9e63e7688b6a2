"""Distributed runs: hosts with a `zone:` walked by `runbook worker` processes.

    app.py       the Celery app both ends share, the walk task, zone queues
    seal.py      what crosses the broker, sealed with the deployment key
    mailbox.py   the run's and each worker's own queue (Redis lists, kombu)
    messages.py  what the controller and the workers say to each other
    dispatch.py  the controller's side: stand-in walks, answers, heartbeats
    hub.py       a worker process's side: its mailbox, walks, heartbeats
    session.py   one host's walk on a worker
    proxies.py   the worker's stand-ins for the operator, run_once, secrets
    logs.py      a bug in either side's log, redacted

Celery and kombu are imported only here (the [celery] extra). See
docs/distributed.md.
"""
