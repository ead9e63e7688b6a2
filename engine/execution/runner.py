"""Many hosts: forks, serial batches, strategy, max_fail, run_once, Ctrl-C.

The runner owns scheduling only. Each host's work is a HostExecutor generator
that yields after every top-level step; `linear` advances all hosts of a batch
one step at a time (every host finishes step N before N+1), `free` lets each
host run to the end on its own. Either way at most `forks` hosts work at once.
"""

from __future__ import annotations

import secrets as _random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ALL_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.connections.base import Connection, connection_types
from engine.connections.pool import ConnectionHolder, ConnectionLimit
from engine.errors import EngineBug, EngineError, RecordLost
from engine.events import (
    EventBus,
    HostFinished,
    LogMessage,
    Processor,
    RunAborted,
    RunFinished,
    RunStarted,
    now_iso,
)
from engine.format.model import Runbook
from engine.inventory.host import Host
from engine.redaction import Redactor
from engine.results import HostResult, RunResult, State
from engine.secrets import Secrets

from .approvals import Operator
from .batches import batches, parse_limit
from .context import RunContext, RunOptions
from .executor import HostExecutor, holding
from .lockstep import Lockstep

if TYPE_CHECKING:
    from engine.distributed.dispatch import Dispatch
    from engine.notify import Notifier


# Threads that wait on remote walks (one a host of the batch), at most; more
# zoned hosts in one batch wait their turn for a thread.
MAX_WAITING_THREADS = 2048


def new_run_id() -> str:
    """Sortable by time, unique without coordination: 20261122-230102-a1b2c3."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + _random.token_hex(3)


def _groups_of(hosts: list[Host]) -> dict[str, list[str]]:
    """Each group of the run's hosts, with its members in run order."""
    groups: dict[str, list[str]] = {}
    for host in hosts:
        for group in host.groups:
            groups.setdefault(group, []).append(host.name)
    return groups


@dataclass
class Run:
    """Everything one execution of a runbook needs, assembled by the caller."""

    runbook: Runbook
    hosts: list[Host]
    params: dict[str, Any]
    options: RunOptions = field(default_factory=RunOptions)
    operator: Operator = field(default_factory=lambda: Operator("unknown"))
    processors: list[Processor] = field(default_factory=list)
    redactor: Redactor = field(default_factory=Redactor)
    secrets: Secrets | None = None
    run_id: str = field(default_factory=new_run_id)
    inventory_name: str = "localhost"
    inventory_digest: str = ""
    resolve_host: Any = None  # name → Host, for ssh jump hosts
    resumed_from: str | None = None
    # --broker: hosts with a zone are walked by `runbook worker`s (engine/distributed/)
    broker: str | None = None


class Runner:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.secrets = run.secrets or Secrets(run.redactor)
        self.bus = EventBus(run.processors, run.redactor)
        self._connections: list[Any] = []
        # Reentrant: the SIGINT handler (interrupt) may run while the main thread holds it.
        self._lock = threading.RLock()
        self.ctx = RunContext(
            run_id=run.run_id,
            options=run.options,
            bus=self.bus,
            redactor=run.redactor,
            secrets=self.secrets,
            operator=run.operator,
            run_info={
                "id": run.run_id,
                "started_at": now_iso(),
                "operator": run.operator.name,
                "dry_run": run.options.dry_run,
                # The run's hosts in the order they run, and by group: what a
                # step on one host may know of the others (staging goes first).
                "hosts": [h.name for h in run.hosts],
                "groups": _groups_of(run.hosts),
                "incident": run.options.incident,
            },
            connect=self._connect,
            connection_limit=ConnectionLimit(max(run.options.max_connections, run.options.forks)),
        )
        self.result = RunResult(
            run_id=run.run_id,
            runbook=run.runbook.name,
            started_at=self.ctx.run_info["started_at"],
            dry_run=run.options.dry_run,
        )
        self._interrupts = 0
        self._timed_out = False
        # Gates answered by others poll until decided, or until the run stops.
        run.operator.run_id = run.run_id
        run.operator.should_stop = self.ctx.stop.is_set
        run.operator.redact = run.redactor.text
        self.notifier: Notifier | None = None  # set at the start when `notify:` is given
        self.remote: Dispatch | None = None  # zoned hosts' walks, with --broker

    # ------------------------------------------------------------ public

    def execute(self) -> RunResult:
        run = self.run
        started = time.monotonic()
        self.remote = self._dispatch()  # the broker unreachable, no key: said before the run
        self._start()
        previous = self._install_signals()
        timer = self._start_timer()
        bug: Exception | None = None
        bug_reason = ""
        try:
            max_fail = parse_limit(run.runbook.header.max_fail, len(run.hosts))
            for batch in batches(run.hosts, run.runbook.header.serial):
                if self.ctx.stop.is_set():
                    break
                self._run_batch(batch, max_fail)
        except EngineError:
            raise  # on purpose (a bad max_fail, the history unwritable): its own exit code
        except Exception as exc:  # a bug in the engine: record the run as cut short
            bug = exc
            bug_reason = run.redactor.text(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if timer is not None:
                timer.cancel()
            self._restore_signals(previous)
            self._close_connections()
            if self.remote is not None:
                self.remote.close()
        self._finish(started, bug_reason if bug is not None else None)
        if bug is not None:
            raise EngineBug(
                f"{bug_reason} (a bug in the engine: the run is recorded in state `error` "
                "and can be resumed; RUNBOOK_DEBUG=1 prints the traceback)"
            ) from bug
        return self.result

    def _start(self) -> None:
        run = self.run
        # Before anything records them: secret params, passwords in connection strings.
        run.redactor.learn_run_inputs(
            [name for name, param in run.runbook.params.items() if param.secret],
            run.params,
            run.options.extra_vars,
        )
        self._notifier_start()
        self.bus.emit(
            RunStarted(
                run.run_id,
                runbook=run.runbook.name,
                path=run.runbook.path,
                hosts=[h.name for h in run.hosts],
                params=run.params,
                operator=run.operator.name,
                dry_run=run.options.dry_run,
                inventory=run.inventory_name,
                inventory_digest=run.inventory_digest,
                runbook_digest=run.runbook.digest,
                resumed_from=run.resumed_from,
            )
        )

    def _finish(self, started: float, bug: str | None) -> None:
        """The run's end in the result and the events (reports, the history's final
        row: state `error`, exit 70, for a bug)."""
        if bug is not None:
            self.result.aborted = self.result.internal_error = bug
        elif self.ctx.stop.is_set():
            if self.ctx.stopped_by_failure and (self._timed_out or not self.ctx.interrupted):
                self.result.stopped = self.ctx.stop_reason
            else:
                self.result.aborted = self.ctx.stop_reason
            self._not_started()
        self.result.finished_at = now_iso()
        self.result.duration_ms = int((time.monotonic() - started) * 1000)
        if self.notifier is not None:
            try:
                self.notifier.run_finished(self.result)
            except Exception as exc:  # never the run's outcome: said and recorded
                self._notify_log("warning", f"notify failed: {type(exc).__name__}: {exc}")
        try:
            if self.result.aborted:
                self.bus.emit(RunAborted(self.run.run_id, reason=self.result.aborted))
            self.bus.emit(RunFinished(self.run.run_id, result=self.result))
        except RecordLost:
            pass  # the recorder said so on stderr; the run's result and exit code stand
        except Exception:
            if bug is None:
                raise
            # The bug may be in a processor itself: the run's end is best effort then.

    def _notifier_start(self) -> None:
        """The `notify:` targets, rendered now: a missing secret is said before
        any step runs. Approval notifications hook the operator's prompts."""
        from engine.notify import Notifier, render_targets

        run = self.run
        if not run.runbook.header.notify:
            return
        context = {
            "params": run.params,
            "env": self.secrets.environment(),
            "secret": self.secrets,
            "run": self.ctx.run_info,
        }
        targets = render_targets(run.runbook.header.notify, context)
        self.notifier = Notifier(targets, run.runbook.name, run.redactor, self._notify_log)
        if self.notifier.wants_approvals:
            notifier, run_id = self.notifier, run.run_id
            run.operator.on_wait = lambda host, step_id, prompt: notifier.approval_waiting(
                run_id, host, step_id, prompt
            )

    def _notify_log(self, level: str, message: str) -> None:
        """How a notification went: a log event, so console and history show it."""
        try:
            self.bus.emit(
                LogMessage(self.run.run_id, host="", step_id="notify", level=level, message=message)
            )
        except Exception:
            pass  # the history's own failure is said by the recorder; a notice is not worth more

    def _not_started(self) -> None:
        """Hosts of batches the stop came before: in the result, said so."""
        reason = f"not started: {self.ctx.stop_reason}"
        for host in self.run.hosts:
            if host.name in self.result.hosts:
                continue
            self.result.hosts[host.name] = HostResult(host.name, aborted=reason, not_started=True)
            try:
                self.bus.emit(
                    HostFinished(
                        self.run.run_id,
                        host=host.name,
                        state=State.ABORTED,
                        reason=reason,
                        not_started=True,
                    )
                )
            except RecordLost:
                return  # the recorder said so; the result still lists them

    def interrupt(self, reason: str = "interrupted by the operator (Ctrl-C)") -> None:
        """First call: stop scheduling. Second: kill what is running.

        This runs in the SIGINT handler. The kills go to threads of their own: one
        host's slow answer (a kill is a round trip, up to seconds on a struggling
        host) must hold up neither the other hosts' kills nor the handler.
        """
        self._interrupts += 1
        self.ctx.request_stop(reason, interrupt=True)
        if self._interrupts >= 2:
            self._kill_running()
        elif self.remote is not None:
            self.remote.stop_now(kill=False)

    def _kill_running(self) -> None:
        """Stop what running steps wait on: queries in their servers, commands on hosts."""
        self.ctx.cancellers.cancel_all()  # queries running in a database server
        if self.remote is not None:
            self.remote.stop_now(kill=True)  # and on the workers' hosts
        with self._lock:
            conns = list(self._connections)
        for holder in conns:
            threading.Thread(
                target=_interrupt, args=(holder,), name="interrupt", daemon=True
            ).start()

    # ------------------------------------------------------------ timeout

    def _start_timer(self) -> threading.Timer | None:
        """The run's budget (`--timeout`, else the runbook's `timeout:`), as a timer."""
        budget = self.run.options.timeout or self.run.runbook.header.timeout
        if not budget:
            return None
        timer = threading.Timer(budget, self._time_out, args=(budget,))
        timer.name, timer.daemon = "run-timeout", True
        timer.start()
        return timer

    def _time_out(self, budget: float) -> None:
        """The budget is spent: as Ctrl-C twice (nothing new starts, running steps
        are killed, `always:` is not run), but the run failed (exit 3) rather than
        being stopped by someone (exit 4): cron and CI read it as a failure."""
        self._timed_out = True
        self.ctx.request_stop(
            f"the run's timeout of {budget:g}s passed: running steps were killed",
            interrupt=True,
            failure=True,
        )
        self._kill_running()

    # ---------------------------------------------------------- batches

    def _run_batch(self, batch: list[Host], max_fail: int | None) -> None:
        walkers: dict[str, Iterator[Any]] = {}
        linear = self.run.runbook.header.strategy != "free"
        local = [h for h in batch if not self._is_remote(h)]
        forks = max(1, min(self.run.options.forks, len(local) or 1))
        # Remote walks wait on their workers, not on this machine: each needs a
        # thread that waits, and `forks` bounds only the hosts worked on here.
        remote = len(batch) - len(local)
        bound = threading.BoundedSemaphore(forks) if remote else None
        for host in batch:
            if self._is_remote(host):
                assert self.remote is not None
                result = HostResult(host.name)
                self.result.hosts[host.name] = result
                walkers[host.name] = self.remote.walker(host, result, linear)
                continue
            executor = HostExecutor(self.ctx, host, self.run.runbook, self.run.params)
            with self._lock:
                self._connections.append(executor.connection)
            self.result.hosts[host.name] = executor.result
            walker = holding(executor.walk(), executor.connection)
            walkers[host.name] = walker if bound is None else _bounded(walker, bound, linear)
        threads = min(forks + remote, MAX_WAITING_THREADS) if remote else forks
        if not linear:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="host") as pool:
                self._free(pool, walkers, max_fail)
        else:
            self._linear(walkers, threads, max_fail)

    def _is_remote(self, host: Host) -> bool:
        return self.remote is not None and bool(host.zone)

    def _dispatch(self) -> Dispatch | None:
        """With --broker and hosts in zones: the dispatch to their workers."""
        run = self.run
        if not run.broker or not any(h.zone for h in run.hosts):
            return None
        from engine.distributed.dispatch import Dispatch
        from engine.distributed.seal import Sealer, load_key

        return Dispatch(run.broker, self.ctx, run, Sealer(load_key()))

    def _linear(self, walkers: dict[str, Iterator[Any]], forks: int, max_fail: int | None) -> None:
        lockstep = Lockstep(walkers, after_round=lambda: self._check_max_fail(max_fail))
        threads = [
            threading.Thread(target=lockstep.work, name=f"host-{i}", daemon=True)
            for i in range(forks)
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # in slices, so the main thread stays responsive to Ctrl-C
        if lockstep.error is not None:
            raise lockstep.error  # a bug in the engine itself

    def _free(
        self, pool: ThreadPoolExecutor, walkers: dict[str, Iterator[Any]], max_fail: int | None
    ) -> None:
        futures = [pool.submit(self._drain, walker, max_fail) for walker in walkers.values()]
        self._wait_all(futures)

    def _drain(self, walker: Iterator[Any], max_fail: int | None) -> None:
        for _ in walker:
            self._check_max_fail(max_fail)

    def _wait_all(self, futures: list[Future[Any]]) -> None:
        # Wait in slices so the main thread stays responsive to Ctrl-C.
        pending = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=0.2, return_when=ALL_COMPLETED)
        for f in futures:
            f.result()  # re-raise a bug in the engine itself

    def _check_max_fail(self, max_fail: int | None) -> None:
        if max_fail is None:
            return
        # Hosts still walking may yet be rescued, or go on past a keep_going
        # failure: judged when their walk ends.
        failed = [n for n, h in self.result.hosts.items() if _host_failed(h) and not h.walking]
        if len(failed) > max_fail:
            self.ctx.request_stop(
                f"max_fail exceeded: {len(failed)} host(s) failed ({', '.join(failed)}), "
                f"at most {max_fail} allowed",
                failure=True,
            )

    # ------------------------------------------------------- connections

    def _connect(self, host: Host) -> Connection:
        factory = connection_types.get(host.connection)
        return factory(host, secrets=self.secrets, resolve_host=self.run.resolve_host)

    def _close_connections(self) -> None:
        with self._lock:
            conns, self._connections = self._connections, []
        for holder in conns:
            try:
                holder.close()
            except Exception:
                pass  # closing is best effort; the run's result is already decided

    # ------------------------------------------------------------ Ctrl-C

    def terminate(self, signame: str) -> None:
        """SIGTERM or SIGHUP (`timeout`, systemd, a CI cancel, a closed terminal):
        as Ctrl-C twice. The running steps are killed, here and on the hosts, and
        the run ends recorded as aborted (exit 4), not as a process that vanished
        while its steps ran on."""
        self._interrupts = max(self._interrupts, 1)
        self.interrupt(f"terminated by {signame}: the running steps were killed")

    def _install_signals(self) -> dict[int, Any]:
        """Ctrl-C and termination handlers for the run; the previous ones, to restore."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        handlers: dict[int, Callable[[int, Any], None]] = {
            signal.SIGINT: lambda _sig, _frame: self.interrupt(),
            signal.SIGTERM: lambda _sig, _frame: self.terminate("SIGTERM"),
            signal.SIGHUP: lambda _sig, _frame: self.terminate("SIGHUP"),
        }
        return {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bounded(
    walker: Iterator[Any], bound: threading.BoundedSemaphore, per_step: bool
) -> Iterator[Any]:
    """A local walk holding one of `forks` slots: for each step (linear), or
    for the whole walk (free), as when the forks were the threads."""
    if not per_step:
        with bound:
            yield from walker
        return
    while True:
        with bound:
            try:
                item = next(walker)
            except StopIteration:
                return
        yield item


def _interrupt(holder: ConnectionHolder) -> None:
    try:
        holder.interrupt()
    except Exception:
        pass  # best effort: the step then ends at its timeout, as after a first Ctrl-C


def _host_failed(h: HostResult) -> bool:
    state = h.state
    return state in (State.FAILED, State.UNREACHABLE) or (state is State.ABORTED and not h.aborted)


def run_runbook(run: Run) -> RunResult:
    """Execute `run` and return its result; events go to run.processors."""
    return Runner(run).execute()
