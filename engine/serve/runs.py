"""Runs the server started: each in a thread of its own, recorded in the history.

A run is built as `runbook run` builds one (engine/launch.py) and wrapped in
the same recording and host locks (engine/history/session.py), with an
operator who has no terminal (`remote`): every gate and manual step waits
for votes through the history, which the API writes. The Runner is kept, so
a cancel is its interrupt given twice, as Ctrl-C twice at a terminal. Each
run's events are also kept in memory as JSON lines (the `--format jsonl`
line, already redacted by the bus) for the event streams of the API and the
web page.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import UsageError
from engine.events import Event, RunFinished, now_iso
from engine.reports.jsonl import event_text

from .config import ServeConfig, runbook_index

if TYPE_CHECKING:
    from engine.execution.runner import Run, Runner
    from engine.results import RunResult

KEEP_FINISHED = 200  # finished runs whose events stay in memory; older ones: the history
START_WAIT = 30.0  # seconds a start request waits to see the run begin (or fail)


class NotFound(UsageError):
    """No such runbook or run: 404 in the API."""


class EventBuffer:
    """A Processor keeping a run's event lines, for any number of readers."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.finished = False
        self.begun = threading.Event()
        self._cond = threading.Condition()

    def handle(self, event: Event) -> None:
        with self._cond:
            self.lines.append(event_text(event))
            if isinstance(event, RunFinished):
                self.finished = True
            self._cond.notify_all()
        self.begun.set()

    def close(self) -> None:
        """The run's thread ended (a run that never started has no run_finished)."""
        with self._cond:
            self.finished = True
            self._cond.notify_all()
        self.begun.set()

    def since(self, index: int) -> tuple[list[str], bool]:
        """Lines from `index` on, and whether no more will come."""
        with self._cond:
            return self.lines[index:], self.finished

    def wait(self, index: int, timeout: float) -> None:
        """Block until there is a line past `index`, the end, or `timeout`."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.lines) > index or self.finished, timeout)

    async def stream(
        self,
        disconnected: Callable[[], Awaitable[bool]],
        *,
        start: int = 0,
        ids: bool = False,
        side: Callable[[], Awaitable[str | None]] | None = None,
        side_every: float = 0.5,
        keepalive: float = 15.0,
    ) -> AsyncIterator[str]:
        """Server-sent events: every line from `start` on, then the new ones until
        the run ends or the reader goes away. Polls the list (a thread each
        reader would cost more than a look every 100 ms); a comment line keeps
        proxies from closing a quiet stream.

        For the web page: `ids` numbers each frame (a reconnect's Last-Event-ID
        resumes there) and says the end as an `end` event; `side` is another
        source of frames (the waiting gates), asked every `side_every` s."""
        index, quiet, next_side = start, 0.0, 0.0
        while True:
            lines, finished = self.since(index)
            for line in lines:
                yield (f"id: {index}\n" if ids else "") + f"data: {line}\n\n"
                index += 1
            if side is not None and next_side <= 0:
                frame = await side()
                if frame:
                    yield frame
                next_side = side_every
            if finished and not lines:
                if ids:
                    yield "event: end\ndata: \n\n"
                return
            if lines:
                quiet = 0.0
                continue
            if await disconnected():
                return
            await asyncio.sleep(0.1)
            quiet += 0.1
            next_side -= 0.1
            if quiet >= keepalive:
                quiet = 0.0
                yield ": keep-alive\n\n"


@dataclass
class RunHandle:
    """One run of this server, while it runs and for a while after."""

    run_id: str
    runbook: str
    operator: str
    started_by: str
    events: EventBuffer
    runner: Runner | None = None
    result: RunResult | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None
    cancelled_by: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def cancel(self, user: str) -> bool:
        """As Ctrl-C twice: nothing new starts, running steps are killed, a
        waiting gate gives up. False when the run is over already."""
        with self._lock:
            if not self.alive:
                return False
            self.cancelled_by = user
            runner = self.runner
        if runner is not None:
            reason = f"cancelled by {user} through runbook serve"
            runner.interrupt(reason)
            runner.interrupt(reason)
        return True

    def _attach(self, runner: Runner) -> None:
        """The Runner exists: a cancel that came before it is given now."""
        with self._lock:
            self.runner, by = runner, self.cancelled_by
        if by is not None:
            reason = f"cancelled by {by} through runbook serve"
            runner.interrupt(reason)
            runner.interrupt(reason)


class RunManager:
    """Starts, resumes and cancels runs; keeps their handles and event buffers."""

    def __init__(self, config: ServeConfig, location: str | None = None) -> None:
        from engine.history.location import history_location, open_store

        self.config = config
        self.location = location or history_location()
        if self.location is None:
            raise UsageError(
                "runbook serve needs the run history (gates, votes and the audit live "
                "there): unset RUNBOOK_HISTORY=off, or point it at SQLite or PostgreSQL"
            )
        self.store = open_store(self.location)  # the API's reads and audit rows
        self.handles: dict[str, RunHandle] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------- starting

    def start(
        self,
        runbook: str,
        params: dict[str, Any],
        *,
        user: str,
        operator: str | None = None,
        limit: str | None = None,
        incident: str | None = None,
        dry_run: bool = False,
        trusted_params: bool = False,
        from_alert: bool = False,
    ) -> RunHandle:
        """Start `runbook` (its name) in the background; returns once it began.
        Errors before any step (params, hosts, a held lock) are raised.
        `trusted_params`: the params come from the config (a webhook rule), not a request.
        `from_alert`: the runbook must still say `webhook: true` (it may have
        been edited since the config was loaded)."""
        from engine import launch
        from engine.execution.context import RunOptions
        from engine.format.loader import load_runbook
        from engine.format.params import resolve_params

        path = runbook_index(self.config.runbooks).get(runbook)
        if path is None:
            raise NotFound(f"no runbook {runbook!r} under {self.config.runbooks}")
        rb = load_runbook(path)
        if from_alert and not rb.header.webhook:
            raise UsageError(
                f"{path}: {rb.name} no longer says `webhook: true`: alerts do not start it"
            )
        if not trusted_params:
            secret = [n for n, p in rb.params.items() if p.secret]
            self.check_secret_params(rb.name, secret, params)
        given = {**self.config.runbook_params.get(rb.name, {}), **params}
        resolved = resolve_params(rb.params, given)
        limit = self.narrowed(limit)
        inventory, hosts = launch.select_hosts(rb, self.config.inventory, limit)
        options = RunOptions(dry_run=dry_run, incident=incident)
        run = launch.build_run(
            rb, inventory, hosts, resolved, options,
            operator=self._operator(operator or user), processors=[],
        )  # fmt: skip
        return self._launch(run, launch.recorded_options(options, limit), user)

    def resume(self, run_id: str, params: dict[str, Any], *, user: str) -> RunHandle:
        """Run `run_id` again, skipping what it finished (as `runbook resume`)."""
        from engine import launch
        from engine.history.resume import prepare_resume

        row = self.run_row(run_id)
        # Only runbooks of this server, on its inventory within its limit: the
        # history is shared, and holds runs of any file a terminal ran.
        ours = runbook_index(self.config.runbooks).get(row["runbook"])
        if ours is None:
            raise NotFound(
                f"run {row['id']} is of {row['runbook']!r}, not a runbook of this server"
            )
        given = {**self.config.runbook_params.get(row["runbook"], {}), **params}
        plan = prepare_resume(self.store, row["id"], params=given, extra_vars={})
        rb = plan.runbook
        self.check_secret_params(rb.name, [n for n, p in rb.params.items() if p.secret], params)
        if Path(rb.path).resolve() != ours.resolve():
            raise UsageError(f"run {row['id']} ran {rb.path}, not this server's {rb.name}")
        inventory, hosts = launch.select_hosts(rb, self.config.inventory, self.narrowed(plan.limit))
        recorded = plan.recorded_options
        options = launch.options_from_record(
            recorded, extra_vars=plan.extra_vars, resume_results=plan.resume_results,
            resume_unknown=plan.unknown_steps,
        )  # fmt: skip
        run = launch.build_run(
            rb, inventory, hosts, plan.params, options,
            operator=self._operator(user), processors=[], resumed_from=plan.run["id"],
        )  # fmt: skip
        return self._launch(run, launch.recorded_options(options, recorded.get("limit")), user)

    def narrowed(self, limit: str | None) -> str | None:
        """A request's (or alert's) limit within the server's: their intersection."""
        if not limit:
            return self.config.limit
        if not self.config.limit:
            return limit
        return f"{self.config.limit}:&{limit}"

    def check_secret_params(self, runbook: str, secret: list[str], given: dict[str, Any]) -> None:
        """A secret param comes from the config or the server's secrets, never in
        clear in a request, unless the config lists it for this runbook."""
        allowed = self.config.secret_params_from_request.get(runbook, [])
        refused = [n for n in secret if n in given and n not in allowed]
        if refused:
            raise UsageError(
                f"param(s) {', '.join(refused)} of {runbook} are secret: they are not taken "
                "from a request unless the serve config lists them under "
                f"secret_params_from_request.{runbook}"
            )

    def _operator(self, name: str) -> Any:
        from engine.execution.approvals import Operator

        return Operator(name=name, remote=True)

    def _launch(self, run: Run, record: dict[str, Any], user: str) -> RunHandle:
        buffer = EventBuffer()
        run.processors.append(buffer)
        handle = RunHandle(run.run_id, run.runbook.name, run.operator.name, user, buffer)
        thread = threading.Thread(
            target=self._execute, args=(handle, run, record), name=f"run-{run.run_id}", daemon=True
        )
        handle.thread = thread
        with self._lock:
            self.handles[run.run_id] = handle
            self._forget_old()
        thread.start()
        buffer.begun.wait(START_WAIT)
        if handle.error is not None and not buffer.lines:
            with self._lock:
                self.handles.pop(run.run_id, None)
            raise handle.error
        return handle

    def _execute(self, handle: RunHandle, run: Run, record: dict[str, Any]) -> None:
        """The run's thread: its own store connection, its gates on the config's users."""
        from engine.execution.runner import Runner
        from engine.history.gates import GateBoard
        from engine.history.location import open_store
        from engine.history.session import recorded_run

        store = None
        try:
            store = open_store(self.location)
            run.operator.board = GateBoard(store, self.config.roles)
            with recorded_run(run, options=record, store=store) as recorded:
                runner = Runner(recorded)
                handle._attach(runner)
                handle.result = runner.execute()
        except BaseException as exc:  # said to the starter, or kept for GET /api/runs/{id}
            handle.error = exc
        finally:
            handle.events.close()
            if store is not None:
                store.close()

    def _forget_old(self) -> None:
        done = [h for h in self.handles.values() if h.thread is not None and not h.alive]
        for handle in done[: max(0, len(done) - KEEP_FINISHED)]:
            del self.handles[handle.run_id]

    # ------------------------------------------------------------ reading

    def handle(self, run_id: str) -> RunHandle | None:
        with self._lock:
            return self.handles.get(run_id)

    def run_row(self, run_id: str) -> dict[str, Any]:
        """The history row of `run_id` (the full id: no prefixes over HTTP)."""
        row = self.store.get_run(run_id)
        if row is None:
            raise NotFound(f"no run {run_id!r} in the history at {self.store.location}")
        return row

    def shutdown(self, wait: float = 10.0) -> None:
        """Cancel what still runs (recorded as aborted), then close the store."""
        with self._lock:
            live = [h for h in self.handles.values() if h.alive]
        for handle in live:
            handle.cancel("runbook serve (shutting down)")
        deadline = time.monotonic() + wait  # one budget for all, not `wait` each
        for handle in live:
            if handle.thread is not None:
                handle.thread.join(max(0.0, deadline - time.monotonic()))
        for handle in live:
            if handle.alive:  # a step that ignores its kill: say so in the history
                self.store.update_run(handle.run_id, state="aborted", finished_at=now_iso())
        self.store.close()
