"""`runbook worker`: a Celery worker that walks the hosts of one network zone.

Needs the [celery] extra. See docs/distributed.md for the topology.
"""

from __future__ import annotations

import logging
import uuid

import click

from . import helptext


@click.command("worker", epilog=helptext.WORKER)
@click.option("--zone", metavar="ZONE", help="The zone whose hosts this worker walks.")
@click.option(
    "--broker",
    metavar="URL",
    envvar="RUNBOOK_BROKER",
    help="The Celery broker: redis://HOST:6379/0 or amqp://USER:PASSWORD@HOST:5672//.",
)
@click.option(
    "-c",
    "--concurrency",
    default=10,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Hosts working at once (as --forks); hosts waiting for the controller do not count.",
)
@click.option(
    "--max-walks",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Host walks taken at once, waiting ones included (one thread each).",
)
@click.option("--name", metavar="NAME", help="Shown in results and history [default: ZONE@HOST].")
@click.option("--new-key", is_flag=True, help="Print a fresh deployment key and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Log each walk taken and done.")
def worker_command(
    zone: str | None,
    broker: str | None,
    concurrency: int,
    max_walks: int,
    name: str | None,
    new_key: bool,
    verbose: bool,
) -> None:
    """Walk the hosts of ZONE for runs started with --broker."""
    from engine.distributed import seal

    if new_key:
        click.echo(seal.new_key())
        return
    if not zone:
        raise click.UsageError("--zone ZONE is required (the zone's hosts are walked here)")
    from engine.inventory.model import check_zone

    zone, error = check_zone(zone)
    if error or zone is None:
        raise click.UsageError(f"--zone: {error}")
    from engine.distributed.app import broker_url, make_app, set_hub, zone_queue
    from engine.distributed.hub import Hub, default_name
    from engine.redaction import redact_dsn

    url = broker_url(broker)
    sealer = seal.Sealer(seal.load_key())
    app = make_app(url)
    worker_name = name or default_name(zone)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    hub = Hub(url, worker_name, zone, concurrency, sealer)
    set_hub(hub)
    click.echo(
        f"runbook worker {worker_name}: zone {zone}, queue {zone_queue(zone)} on "
        f"{redact_dsn(url)}, {concurrency} host(s) at once",
        err=True,
    )
    try:
        app.worker_main(
            [
                "worker",
                "--queues", zone_queue(zone),
                "--pool", "threads",
                "--concurrency", str(max_walks),
                # Unique among Celery nodes (two workers may share a --name).
                "--hostname", f"runbook-{worker_name}-{uuid.uuid4().hex[:6]}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel", "INFO" if verbose else "WARNING",
            ]
        )  # fmt: skip
    finally:
        hub.close()
