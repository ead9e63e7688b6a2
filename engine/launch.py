"""From what an operator asked for to a Run: the one builder for `run` and `resume`.

`runbook run` and `runbook resume` (and anyone driving the engine from Python)
select hosts, read `-e`, check step ids and set up secrets and the operator
here, so a run and its resume cannot drift apart, and the history package never
needs the CLI. Recording, locking and file reports wrap the Run afterwards
(engine/history/session.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from .events import Processor
    from .execution.approvals import Operator
    from .execution.context import RunOptions
    from .execution.runner import Run
    from .format.model import Runbook
    from .inventory.host import Host
    from .inventory.loader import Inventory

# `-l` values that the default inventory (this machine alone) satisfies.
_LOCALHOST_LIMITS = ("all", "*", "localhost", "127.0.0.1")


def select_hosts(
    runbook: Runbook, inventory_path: str | None, limit: str | None
) -> tuple[Inventory | None, list[Host]]:
    """The hosts to run on. Without an inventory: this machine, whatever the
    runbook's `hosts:` says (a runbook written for `databases` runs here, as an
    SRE on the box would expect)."""
    if inventory_path is None:
        from .inventory.host import localhost

        if limit and limit not in _LOCALHOST_LIMITS:
            raise UsageError(
                f"--limit {limit!r} matches no host of the default inventory (localhost)"
            )
        return None, [localhost()]
    from .inventory.loader import load_inventory

    inventory = load_inventory(inventory_path)
    for warning in inventory.warnings:  # names options, never their values
        print(f"warning: inventory: {warning}", file=sys.stderr)
    hosts = inventory.select_hosts(runbook.header.hosts, limit)
    if not hosts:
        raise UsageError(f"no hosts matched: hosts={runbook.header.hosts!r} limit={limit!r}")
    return inventory, hosts


def parse_extra_vars(pairs: Iterable[str]) -> dict[str, Any]:
    """`-e name=value` (the value read as YAML, so `-e n=3` is the int 3) and `-e @file.yaml`."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        if pair.startswith("@"):
            try:
                data = yaml.safe_load(Path(pair[1:]).read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise UsageError(f"-e {pair}: cannot read: {exc}") from None
            if not isinstance(data, dict):
                raise UsageError(f"-e {pair}: the file must hold a mapping")
            out.update(data)
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"-e expects NAME=VALUE or @file.yaml, got {pair!r}")
        try:
            out[name] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[name] = value
    return out


def split_tags(values: Iterable[str]) -> frozenset[str]:
    """`-t a,b -t c` → {a, b, c}."""
    return frozenset(t.strip() for v in values for t in v.split(",") if t.strip())


def check_named_steps(
    runbook: Runbook, *, start_at: str | None = None, approve: Iterable[str] = ()
) -> None:
    """Step ids named on the command line exist (a typo must not skip a gate silently)."""
    ids = runbook.step_ids()
    if start_at and start_at not in ids:
        hint = did_you_mean(start_at, ids)
        raise UsageError(f"--start-at {start_at}: no such step id" + (f" ({hint})" if hint else ""))
    recorded = runbook.recorded_step_ids()  # an included runbook's gates too
    for step_id in approve:
        if step_id not in recorded:
            hint = did_you_mean(step_id, recorded)
            raise UsageError(
                f"--approve {step_id}: no such step id in {runbook.name}"
                + (f" ({hint})" if hint else "")
            )


def operator(
    name: str | None, *, yes: bool, approve: Iterable[str], step_mode: bool = False
) -> Operator:
    """Who runs it and what they pre-approved; prompts only with a terminal on both ends."""
    from .execution.approvals import Operator, operator_name

    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if step_mode and not interactive:
        # Without a terminal --step would skip every step nobody was asked about.
        raise UsageError(
            "--step asks before every step: it needs a terminal on stdin and stderr "
            "(`2>&1 | tee` makes stderr a pipe; `script -c 'runbook run ...' LOG` keeps a log)"
        )
    return Operator(operator_name(name), interactive, yes, frozenset(approve), step_mode)


def recorded_options(options: RunOptions, limit: str | None) -> dict[str, Any]:
    """The choices a resume must repeat, as stored in the run's history row."""
    return {
        "tags": sorted(options.tags),
        "skip_tags": sorted(options.skip_tags),
        "start_at": options.start_at,
        "extra_vars": options.extra_vars,
        "forks": options.forks,
        "limit": limit,
        "output_limit": options.output_limit,
        "keep_output": options.keep_output is not None,
        "incident": options.incident,
    }


def kept_output_dir(keep: bool | None = True) -> Path | None:
    """Where `--keep-output` writes whole outputs; None when not asked (or
    when `keep` is None, i.e. left to a recorded run's own choice)."""
    if not keep:
        return None
    from .history.location import runbook_home

    return runbook_home() / "output"


def options_from_record(recorded: dict[str, Any], **given: Any) -> RunOptions:
    """RunOptions as a recorded run had them (recorded_options), with the `given`
    values that are not None over them."""
    from .execution.context import RunOptions

    options = RunOptions(
        tags=frozenset(recorded.get("tags") or ()),
        skip_tags=frozenset(recorded.get("skip_tags") or ()),
        start_at=recorded.get("start_at"),
        extra_vars=dict(recorded.get("extra_vars") or {}),
        forks=int(recorded.get("forks") or RunOptions.forks),
        output_limit=int(recorded.get("output_limit") or RunOptions.output_limit),
        keep_output=kept_output_dir(True) if recorded.get("keep_output") else None,
        incident=recorded.get("incident"),
    )
    for name, value in given.items():
        if value is not None:
            setattr(options, name, value)
    return options


def build_run(
    runbook: Runbook,
    inventory: Inventory | None,
    hosts: list[Host],
    params: dict[str, Any],
    options: RunOptions,
    *,
    operator: Operator,
    processors: list[Processor],
    secrets_file: str | None = None,
    resumed_from: str | None = None,
    broker: str | None = None,
) -> Run:
    """The Run, with its own redactor and secrets (`--secrets FILE` is read now,
    so a bad file fails before anything runs)."""
    from .execution.runner import Run
    from .redaction import Redactor
    from .secrets import Secrets

    redactor = Redactor()
    if broker:
        from .redaction import dsn_passwords

        for password in dsn_passwords(broker):  # amqp://user:PASSWORD@host//
            redactor.add(password)
        if not any(h.zone for h in hosts):
            broker = None  # no host has a zone: nothing goes through it
    name, digest, resolve_host = "localhost", "", None
    if inventory is not None:
        # Absolute, so a resume started from another directory finds the same file.
        name, digest = str(Path(inventory.source).resolve()), inventory.digest
        resolve_host = inventory.get
    return Run(
        runbook=runbook,
        hosts=hosts,
        params=params,
        options=options,
        operator=operator,
        processors=processors,
        redactor=redactor,
        secrets=Secrets(redactor, secrets_file),
        inventory_name=name,
        inventory_digest=digest,
        resolve_host=resolve_host,
        resumed_from=resumed_from,
        broker=broker,
    )


def zone_notice(hosts: list[Host], broker: str | None) -> str | None:
    """Hosts in zones, but no broker: said once, since they then run from here."""
    zoned = [h for h in hosts if h.zone]
    if broker or not zoned:
        return None
    zones = ", ".join(sorted({str(h.zone) for h in zoned}))
    return (
        f"note: {len(zoned)} host(s) have a zone ({zones}) but no --broker or RUNBOOK_BROKER "
        "was given: they run from this machine"
    )
