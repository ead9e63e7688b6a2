"""The live console: one line per finished step, readable when hosts interleave.

Lines, not a redrawn screen: a run's output is pasted into incident channels and
CI logs, and must read the same there as on a terminal. Each line names its
host (when there are several), so parallel hosts never blur together.
"""

from __future__ import annotations

from typing import IO, Any

from rich.console import Console
from rich.markup import escape, render

from ..events import (
    Approval,
    Event,
    HostFinished,
    LogMessage,
    RunAborted,
    RunFinished,
    RunStarted,
    StepFinished,
)
from ..results import RunResult, State, StepResult

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


_QUIET_SKIPS = ("before --start-at", "not tagged", "tag skipped")


class ConsoleReport:
    def __init__(
        self, stream: IO[str] | None = None, verbosity: int = 0, color: bool | None = None
    ) -> None:
        self.console = Console(
            file=stream,
            highlight=False,
            soft_wrap=True,
            force_terminal=color,
            no_color=color is False,
        )
        self.verbosity = verbosity
        self.multi_host = False
        self.width = 8
        # Not a terminal (a CI log, a file, a pipe): no styles to draw, so the
        # markup is only parsed away, at a quarter of a full render's cost.
        self._plain = None if self.console.is_terminal else self.console.file

    def handle(self, event: Event) -> None:
        method = getattr(self, "_" + event.kind, None)
        if method is not None:
            method(event)

    def _print(self, text: str) -> None:
        if self._plain is not None:
            self._plain.write(render(text).plain + "\n")
            self._plain.flush()
            return
        self.console.print(text, highlight=False)

    def _host(self, name: str) -> str:
        return f"[cyan]{escape(name):<{self.width}}[/] " if self.multi_host else ""

    def _run_started(self, e: RunStarted) -> None:
        self.multi_host = len(e.hosts) > 1
        self.width = max((len(h) for h in e.hosts), default=8)
        mode = " [yellow](dry run: nothing will be changed)[/]" if e.dry_run else ""
        hosts = ", ".join(e.hosts[:5]) + (f" … (+{len(e.hosts) - 5})" if len(e.hosts) > 5 else "")
        self._print(
            f"[bold]▶ {escape(e.runbook)}[/]  run [bold]{e.run_id}[/] on {len(e.hosts)} host(s): "
            f"{escape(hosts)}  by {escape(e.operator)}{mode}"
        )

    def _step_finished(self, e: StepFinished) -> None:
        r = e.result
        quiet = r.state is State.SKIPPED and self.verbosity < 1 and not r.dry_run
        if quiet and (r.skip_reason or "").startswith(_QUIET_SKIPS):
            return  # steps the operator deselected: noise unless -v
        style = STYLE[r.state]
        label = (
            r.state.value
            + (" (ignored)" if r.ignored else "")
            + (" (rescued)" if r.rescued else "")
        )
        indent = "  " * e.depth
        line = (
            f"{self._host(e.host)}[{style}]{ICON[r.state]} {label:<9}[/] "
            f"{indent}{escape(r.name)}  [dim]{_ms(r.duration_ms)}"
            + (f" ×{r.attempts}" if r.attempts > 1 else "")
            + "[/]"
        )
        if r.metrics:
            parts = []
            for name, m in r.metrics.items():
                value = "n/a" if m.value is None else f"{m.value:.4g}"
                unit = f" {m.unit}" if m.unit else ""
                bound = ""
                if m.state is State.CRITICAL:
                    bound = f" (critical {m.critical})"
                elif m.state is State.WARN:
                    bound = f" (warn {m.warn})"
                parts.append(
                    f"[{STYLE[m.state]}]{escape(name)}={value}{escape(unit)}{escape(bound)}[/]"
                )
            line += "  " + "  ".join(parts)
        self._print(line)
        for detail in self._details(r):
            self._print(f"{self._host(e.host)}    {indent}[dim]{escape(detail)}[/]")

    def _details(self, r: StepResult) -> list[str]:
        out: list[str] = []
        if r.error:
            out.append(r.error)
        if r.skip_reason and (self.verbosity >= 1 or r.dry_run):
            out.append(r.skip_reason)
        if r.rendered is not None:
            for key, value in r.rendered.items():
                out.append(f"would run {key}: {_short(value)}")
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
        style = {"error": "red", "warning": "yellow", "debug": "dim"}.get(e.level, "")
        text = f"{self._host(e.host)}  [{style or 'default'}]{e.level}: {escape(e.message)}[/]"
        self._print(text)

    def _approval(self, e: Approval) -> None:
        verdict = "[green]approved[/]" if e.approved else "[red]declined[/]"
        self._print(f"{self._host(e.host)}  {verdict} {escape(e.step_id)} by {escape(e.by)}")

    def _host_finished(self, e: HostFinished) -> None:
        if self.verbosity >= 1:
            self._print(f"{self._host(e.host)}  host finished: {e.state}")

    def _run_aborted(self, e: RunAborted) -> None:
        self._print(f"[bold magenta]■ aborted:[/] {escape(e.reason)}")

    def _run_finished(self, e: RunFinished) -> None:
        self._print(summary_line(e.result))


def summary_line(result: RunResult) -> str:
    # A failure that was rescued or ignored is shown on its own line but does not
    # count as "failed" here: the summary must agree with the run's state.
    counts: dict[str, int] = {}
    for host in result.hosts.values():
        for step in host.steps:
            key = step.state.value
            if step.state.is_failure and step.rescued:
                key = "rescued"
            elif step.state.is_failure and step.ignored:
                key = "ignored"
            counts[key] = counts.get(key, 0) + 1
    unreachable = sum(1 for h in result.hosts.values() if h.unreachable)
    state = result.state
    order = ("ok", "warn", "critical", "failed", "rescued", "ignored", "skipped", "aborted")
    parts = [f"{k} {counts[k]}" for k in order if counts.get(k)]
    if unreachable:
        parts.append(f"unreachable hosts {unreachable}")
    return (
        f"[bold]■ run {result.run_id}[/] finished: [{STYLE[state]}]{state.value}[/] "
        f"(exit {result.exit_code}) in {_ms(result.duration_ms)}  " + " · ".join(parts)
    )


def _ms(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms // 60_000}m{(ms // 1000) % 60:02d}s"


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.strip().replace("\n", "⏎ ")
    return text if len(text) <= limit else text[:limit] + "…"
