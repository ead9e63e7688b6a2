"""The live console: one line per finished step, readable when hosts interleave.

Lines, not a redrawn screen: a run's output is pasted into incident channels and
CI logs, and must read the same there as on a terminal. Each line names its
host (when there are several), so parallel hosts never blur together. The one
thing redrawn is a status line at the bottom of a terminal saying what still
runs (progress.py); it is gone from the screen once the run ends, and a log
gets a "still running" line every 30 s instead.

A line is a list of (text, style) segments. On a terminal rich draws the
styles; anywhere else (a CI log, a file, a pipe) the texts are joined as they
are, and rich is never imported: that costs nothing per line and keeps ~25 ms
of imports off every non-interactive run.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import IO, Any

from engine.events import (
    Approval,
    Event,
    HostFinished,
    LogMessage,
    RunAborted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from engine.results import KEPT, RunResult, State, StepResult, shown_duration, shown_number

from . import recap
from .progress import LiveStatus, Progress, Ticker

# Seconds a step runs before the log (off a terminal) says it is still running.
PROGRESS_EVERY = 30.0

Segment = tuple[str, str]  # (text, rich style; "" for none)
Line = list[Segment]

STYLE = {
    State.OK: "green",
    State.SKIPPED: "dim",
    State.WARN: "yellow",
    State.CRITICAL: "bold red",
    State.FAILED: "red",
    State.UNREACHABLE: "magenta",
    State.ABORTED: "bold magenta",
}
ICON = {
    State.OK: "✓",
    State.SKIPPED: "·",
    State.WARN: "!",
    State.CRITICAL: "✗",
    State.FAILED: "✗",
    State.UNREACHABLE: "?",
    State.ABORTED: "■",
}


_LOUD = (State.WARN, State.CRITICAL)  # what -q still shows, beside failures
_QUIET_SKIPS = ("before --start-at", "not tagged", "tag skipped")


class ConsoleReport:
    def __init__(
        self,
        stream: IO[str] | None = None,
        verbosity: int = 0,
        color: bool | None = None,
        progress_every: float = PROGRESS_EVERY,
    ) -> None:
        import sys

        self.stream = stream if stream is not None else sys.stdout
        self.verbosity = verbosity
        self.multi_host = False
        self.width = 8
        self.console: Any = None  # a rich Console, only when styles are drawn
        self._pending: list[str] | None = None  # lines of a batch, written together
        # What is still running: a status line on a terminal, a line every
        # `progress_every` seconds elsewhere (progress.py).
        self.progress = Progress()
        self.progress_every = progress_every
        self._live: LiveStatus | None = None
        self._ticker: Ticker | None = None
        self._headed: set[str] = set()  # steps whose header was printed
        self._lock = threading.RLock()  # lines from the events and the ticker
        self._closed = False  # the run ended: the ticker says nothing more
        if _styled(self.stream, color):
            from rich.console import Console

            self.console = Console(
                file=self.stream,
                highlight=False,
                soft_wrap=True,
                force_terminal=color,
                no_color=color is False,
            )

    def handle(self, event: Event) -> None:
        method = getattr(self, "_" + event.kind, None)
        if method is not None:
            method(event)

    def handle_batch(self, events: list[Event]) -> None:
        """Events of several hosts at once: their lines in one write."""
        if self.console is not None:
            for event in events:
                self.handle(event)
            return
        # The lock is held for the whole batch: the ticker's line waits for
        # it instead of finding (and losing) a half-filled batch.
        with self._lock:
            self._pending = []
            try:
                for event in events:
                    self.handle(event)
            finally:
                lines, self._pending = self._pending, None
                if lines:
                    self.stream.write("".join(lines))
                    self.stream.flush()

    def _print(self, line: Line) -> None:
        with self._lock:
            if self.console is None:
                text = "".join(text for text, _ in line) + "\n"
                if self._pending is not None:
                    self._pending.append(text)
                    return
                self.stream.write(text)
                self.stream.flush()
                return
            from rich.text import Text

            self.console.print(Text.assemble(*line), highlight=False)

    def _say(self, text: str) -> None:
        """A line from the ticker thread. Under the lock no batch is open (a
        batch holds the lock), and after close() nothing more is said: a
        late "still running" must not follow the recap."""
        with self._lock:
            if self._closed:
                return
            self._print([(text, "dim")])

    def paused(self) -> AbstractContextManager[None]:
        """No status line while the block runs: the operator is being asked."""
        return self._live.paused() if self._live is not None else nullcontext()

    def _host(self, name: str) -> Line:
        return [(f"{name:<{self.width}} ", "cyan")] if self.multi_host else []

    def _run_started(self, e: RunStarted) -> None:
        self.multi_host = len(e.hosts) > 1
        self.width = max((len(h) for h in e.hosts), default=8)
        hosts = ", ".join(e.hosts[:5]) + (f" … (+{len(e.hosts) - 5})" if len(e.hosts) > 5 else "")
        line: Line = [
            (f"▶ {e.runbook}", "bold"),
            ("  run ", ""),
            (e.run_id, "bold"),
            (f" on {len(e.hosts)} host(s): {hosts}  by {e.operator}", ""),
        ]
        if e.dry_run:
            line.append((" (dry run: nothing will be changed)", "yellow"))
        self._print(line)
        self.progress.run_started(len(e.hosts))
        if self.console is not None and _is_terminal(self.stream):
            self._live = LiveStatus(self.console, self.progress, self._lock)
            self._live.start()
        elif self.progress_every > 0:
            self._ticker = Ticker(self.progress, self.progress_every, self._say)
            self._ticker.start()

    def _step_started(self, e: StepStarted) -> None:
        self.progress.step_started(e.host, e.step_id, e.name)
        # Hosts' lines interleave: a header says which step they now run.
        if self.verbosity < 0:
            return  # -q: a step is said only when it fails or crosses a threshold
        if self.multi_host and e.depth == 0 and e.step_id not in self._headed:
            self._headed.add(e.step_id)
            self._print([("▸ ", "dim"), (e.name, "bold")])

    def _step_finished(self, e: StepFinished) -> None:
        r = e.result
        self.progress.step_finished(e.host, r.step_id)
        if self.verbosity < 0 and not (r.state.is_failure or r.state in _LOUD):
            return  # -q: failures and thresholds crossed only
        quiet = r.state is State.SKIPPED and self.verbosity < 1 and not r.dry_run
        if quiet and (r.skip_reason or "").startswith(_QUIET_SKIPS):
            return  # steps the operator deselected: noise unless -v
        kept = r.skip_reason == KEPT
        label = (
            ("kept" if kept else r.state.value)
            + (" (ignored)" if r.ignored else "")
            + (" (rescued)" if r.rescued else "")
        )
        indent = "  " * e.depth
        took = shown_duration(r.duration_ms) + (f" ×{r.attempts}" if r.attempts > 1 else "")
        if kept:  # not run now: a kept "Restart app" must not read as a second restart
            took = f"{r.state.value} in the resumed run, not run again"
        line = [
            *self._host(e.host),
            (f"{ICON[r.state]} {label:<9}", STYLE[r.state]),
            (f" {indent}{r.name}  ", ""),
            (took, "dim"),
        ]
        for name, m in r.metrics.items():
            value = "n/a" if m.value is None else shown_number(m.value)
            unit = f" {m.unit}" if m.unit else ""
            bound = ""
            if m.state is State.CRITICAL:
                bound = f" (critical {m.critical})"
            elif m.state is State.WARN:
                bound = f" (warn {m.warn})"
            line += [("  ", ""), (f"{name}={value}{unit}{bound}", STYLE[m.state])]
        self._print(line)
        for detail in self._details(r):
            self._print([*self._host(e.host), (f"    {indent}", ""), (detail, "dim")])

    def _details(self, r: StepResult) -> list[str]:
        out: list[str] = []
        if r.error:
            out.append(r.error)
        if r.skip_reason and (self.verbosity >= 1 or r.dry_run):
            out.append(r.skip_reason)
        if r.rendered is not None:
            rendered = dict(r.rendered)
            described = rendered.pop("describe", None)
            if described is not None:
                out.append(f"would run: {_short(described)}")
            for key, value in rendered.items():
                # What the one-line description already says is not said twice.
                if not (isinstance(value, str) and described and value in described):
                    out.append(f"would run {key}: {_short(value)}")
        out.extend(_loop_lines(r, self.verbosity))
        stream_lines = 20 if r.state.is_failure else (200 if self.verbosity >= 2 else 0)
        if r.state.is_failure or self.verbosity >= 1:
            for name in ("stdout", "stderr"):
                text = r.data.get(name)
                if (
                    isinstance(text, str)
                    and text.strip()
                    and (r.state.is_failure or self.verbosity >= 1)
                ):
                    lines = text.rstrip("\n").splitlines()
                    limit = stream_lines or 5
                    shown = lines[-limit:]
                    if len(lines) > limit:
                        out.append(f"{name}: … {len(lines) - limit} more lines")
                    out.extend(f"{name}| {ln}" for ln in shown)
        return out

    def _log(self, e: LogMessage) -> None:
        if self.verbosity < 0 and e.level not in ("warning", "error"):
            return
        style = {"error": "red", "warning": "yellow", "debug": "dim"}.get(e.level, "")
        self._print([*self._host(e.host), ("  ", ""), (f"{e.level}: {e.message}", style)])

    def _approval(self, e: Approval) -> None:
        verdict = ("approved", "green") if e.approved else ("declined", "red")
        self._print([*self._host(e.host), ("  ", ""), verdict, (f" {e.step_id} by {e.by}", "")])

    def _host_finished(self, e: HostFinished) -> None:
        self.progress.host_finished(e.host)
        if e.not_started:
            return  # the recap counts them; a line each would bury the rest
        state = State(e.state)
        # Unreachable and aborted hosts are said at once, with why (as Ansible's
        # UNREACHABLE!); a failed step already printed its own error.
        if state in (State.UNREACHABLE, State.ABORTED) and e.reason:
            self._print(
                [*self._host(e.host), (f"{ICON[state]} {state.value:<9}", STYLE[state]),
                 (f" {e.reason}", "")]
            )  # fmt: skip
        elif self.verbosity >= 1:
            self._print([*self._host(e.host), (f"  host finished: {e.state}", "")])

    def _run_aborted(self, e: RunAborted) -> None:
        self._print([("■ aborted:", "bold magenta"), (f" {e.reason}", "")])

    def _run_finished(self, e: RunFinished) -> None:
        self.close()
        result = e.result
        if result.stopped:
            self._print([("■ stopped:", "bold red"), (f" {result.stopped}", "")])
        if recap.needed(result):
            self._recap(result)
        self._print(summary_line(result))

    def _recap(self, result: RunResult) -> None:
        header, shown, not_started, ok = recap.recap_rows(result)
        self._print([(header, "bold")])
        width = max((len(h.host) for h, _ in shown), default=0)
        for host, reason in shown[: recap.MAX_HOST_LINES]:
            state = host.state
            self._print(
                [("  ", ""), (f"{host.host:<{width}}  ", "cyan"),
                 (f"{recap.label(host):<11}", STYLE[state]), (f"  {_short(reason, 200)}", "")]
            )  # fmt: skip
        if len(shown) > recap.MAX_HOST_LINES:
            more = len(shown) - recap.MAX_HOST_LINES
            self._print([(f"  … {more} more: runbook history {result.run_id}", "dim")])
        if not_started:
            self._print([("  ", ""), (recap.names_line("not started", not_started), "dim")])
        if ok:
            self._print([("  ", ""), (recap.names_line("ok", ok), "green")])

    def close(self) -> None:
        """Stop the status line or the ticker (at the run's end)."""
        with self._lock:
            self._closed = True
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None


def _loop_lines(r: StepResult, verbosity: int) -> list[str]:
    """A looped step's items: the failed ones always (up to 10), all with -v."""
    results = r.data.get("results")
    var = r.data.get("loop_var")
    if not isinstance(results, list) or not isinstance(var, str):
        return []
    out = []
    for entry in results:
        if not isinstance(entry, dict):
            continue
        failed = bool(entry.get("failed"))
        if not (failed or verbosity >= 1):
            continue
        error = f": {entry.get('error')}" if entry.get("error") else ""
        out.append(f"{var}={_short(entry.get(var), 60)}  {entry.get('state')}{error}")
    if verbosity < 1 and len(out) > 10:
        out = [*out[:10], f"… {len(out) - 10} more failed items"]
    return out


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _styled(stream: IO[str], color: bool | None) -> bool:
    """Whether to draw styles: --color/--no-color, else NO_COLOR (no-color.org:
    set and not empty means none), FORCE_COLOR, then whether it is a terminal."""
    if color is not None:
        return color
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _is_terminal(stream)


def summary_line(result: RunResult) -> Line:
    # A failure that was rescued or ignored is shown on its own line but does not
    # count as "failed" here: the summary must agree with the run's state.
    counts: dict[str, int] = {}
    for host in result.hosts.values():
        for step in host.steps:
            key = step.state.value
            if step.skip_reason == KEPT:
                key = "kept"
            elif step.state.is_failure and step.rescued:
                key = "rescued"
            elif step.state.is_failure and step.ignored:
                key = "ignored"
            elif "would_fail" in step.data:
                key = "not judged"  # a dry run's failure it could not judge: said apart
            counts[key] = counts.get(key, 0) + 1
    unreachable = sum(1 for h in result.hosts.values() if h.unreachable)
    state = result.state
    order = (
        "ok", "warn", "critical", "failed", "rescued", "ignored", "not judged", "skipped",
        "aborted", "kept",
    )  # fmt: skip
    parts = [f"{k} {counts[k]}" for k in order if counts.get(k)]
    if unreachable:
        parts.append(f"unreachable hosts {unreachable}")
    return [
        (f"■ run {result.run_id}", "bold"),
        (" finished: ", ""),
        (state.value, STYLE[state]),
        (
            f" (exit {result.exit_code}) in {shown_duration(result.duration_ms)}  "
            + " · ".join(parts),
            "",
        ),
    ]


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.strip().replace("\n", "⏎ ")
    return text if len(text) <= limit else text[:limit] + "…"
