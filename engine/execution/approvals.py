"""The operator: who runs the runbook, and how they approve, acknowledge, or step.

Prompts are serialized with one lock: hosts run in parallel, but a person
answers one question at a time. Without a terminal nobody can answer, so a
gate is declined unless the operator pre-approved it (`--yes`, `--approve ID`;
a manual step only with `--approve ID`). Ctrl-D at a prompt is a decline.

A gate with `approvers:` is answered by others, not at this terminal: it is
written to the shared history and waits for their votes (engine/history/
gates.py). A run started by `runbook serve` has no terminal at all: there
every gate and manual step waits so (`remote`).
"""

from __future__ import annotations

import getpass
import os
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import Aborted

if TYPE_CHECKING:
    from engine.format.model import StepCommon
    from engine.history.gates import GatePolicy


def operator_name(explicit: str | None = None) -> str:
    """--operator, else $RUNBOOK_OPERATOR, else the login name."""
    if explicit:
        return explicit
    if os.environ.get("RUNBOOK_OPERATOR"):
        return os.environ["RUNBOOK_OPERATOR"]
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def gate_policy(common: StepCommon) -> GatePolicy | None:
    """A step's `approvers:` and friends, or None for a gate the runner answers."""
    c = common
    if not (c.approvers or c.min_approvals > 1 or c.approval_timeout or c.self_approval):
        return None
    from engine.history.gates import GatePolicy

    return GatePolicy(tuple(c.approvers), c.min_approvals, c.self_approval, c.approval_timeout)


Ask = Callable[[str, list[str]], str]  # (question, choices) → the chosen answer


class NoAnswer(Exception):
    """The terminal's input ended (Ctrl-D, closed stdin) at a prompt: nobody can
    answer, so the question counts as declined, never as a crash."""


def _terminal_ask(question: str, choices: list[str]) -> str:
    """Ask on stderr until the answer is one of `choices` or a unique start of
    one (`y`, `n`, `d`, `a`, `c`), in any case."""
    import click

    while True:
        try:
            raw: str = click.prompt(
                f"{question} [{'/'.join(choices)}]", default="", show_default=False, err=True
            )
        except click.exceptions.Abort:  # EOFError: Ctrl-C reaches the main thread, not here
            raise NoAnswer from None
        answer = match_answer(raw, choices)
        if answer is not None:
            return answer
        click.echo(f"Answer one of: {', '.join(choices)}.", err=True)


def match_answer(raw: str, choices: list[str]) -> str | None:
    """The choice `raw` names: the whole word or a start no other choice shares."""
    text = raw.strip().lower()
    if not text:
        return None
    if text in choices:
        return text
    found = [c for c in choices if c.startswith(text)]
    return found[0] if len(found) == 1 else None


@dataclass
class Operator:
    name: str
    interactive: bool = False
    yes: bool = False
    approve: frozenset[str] = frozenset()
    step_mode: bool = False
    ask: Ask = _terminal_ask
    show: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
    # Held around every prompt: the console takes its status line off the screen.
    screen: Callable[[], AbstractContextManager[None]] = nullcontext
    # Told (host, step id, prompt) as a prompt starts waiting at the terminal:
    # `notify: [{events: [approval], ...}]` sends "waiting for approval" from it.
    on_wait: Callable[[str, str, str], None] | None = None
    # Gates answered by others (engine/history/gates.py GateBoard): set where the
    # history is opened. `remote`: every gate and manual step waits on it.
    board: Any = None
    remote: bool = False
    run_id: str = ""
    should_stop: Callable[[], bool] = lambda: False
    # What the gates table may hold of a prompt: the run's redactor (set by the Runner).
    redact: Callable[[str], str] = lambda text: text
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _continue_all: bool = False
    _input_ended: bool = False  # once Ctrl-D was typed, later prompts get no answer either

    def _ask(self, question: str, choices: list[str]) -> str:
        """`ask`, called with the lock held; NoAnswer for good once input ended."""
        if self._input_ended:
            raise NoAnswer
        try:
            with self.screen():
                return self.ask(question, choices)
        except NoAnswer:
            self._input_ended = True
            raise

    def pre_approved(self, step_id: str) -> bool:
        return self.yes or step_id in self.approve

    def confirm(
        self, host: str, step_id: str, prompt: str, policy: GatePolicy | None = None
    ) -> tuple[bool, str]:
        """Ask for approval. Returns (approved, by whom and how)."""
        if policy is not None or self.remote:
            return self._by_others(host, step_id, prompt, "confirm", policy)
        if self.pre_approved(step_id):
            how = "--yes" if self.yes else f"--approve {step_id}"
            return True, f"{self.name} ({how})"
        if not self.interactive:
            return False, f"{self.name} (no terminal: pass --yes or --approve {step_id})"
        if self.on_wait is not None:
            self.on_wait(host, step_id, prompt)
        try:
            with self._lock:
                answer = self._ask(f"[{host}] {prompt}", ["yes", "no"])
        except NoAnswer:
            return False, f"{self.name} (no answer: the terminal's input ended)"
        return answer == "yes", self.name

    def acknowledge(self, host: str, step_id: str, instructions: str) -> str:
        """Show a manual step's instructions and wait until the operator is done.

        Only `--approve STEP_ID` acknowledges one ahead of time: `--yes` approves
        confirm: gates, but a manual step is work a person must have done, so it
        is named on its own. The instructions are shown either way."""
        if self.remote:
            done, by = self._by_others(host, step_id, instructions, "manual", None)
            if not done:
                raise Aborted(f"manual step {step_id} was not acknowledged: {by}")
            return by
        with self._lock, self.screen():
            self.show(f"\n[{host}] MANUAL STEP {step_id}\n{instructions.rstrip()}\n")
            if step_id in self.approve:
                self.show(f"[{host}] acknowledged ahead by {self.name} (--approve {step_id})")
                return f"{self.name} (--approve {step_id})"
            if not self.interactive:
                hint = " (--yes does not acknowledge manual steps)" if self.yes else ""
                raise Aborted(
                    f"manual step {step_id} needs an operator at a terminal, "
                    f"or --approve {step_id} once it is done{hint}"
                )
            if self.on_wait is not None:
                self.on_wait(host, step_id, f"manual step: {instructions.strip()[:200]}")
            try:
                answer = self._ask("Done?", ["done", "abort"])
            except NoAnswer:
                raise Aborted(
                    f"manual step {step_id} was not acknowledged: the terminal's input ended"
                ) from None
        if answer != "done":
            raise Aborted(f"operator aborted at manual step {step_id}")
        return self.name

    def _by_others(
        self, host: str, step_id: str, prompt: str, kind: str, policy: GatePolicy | None
    ) -> tuple[bool, str]:
        """The gate written to the history; wait for the votes. Without a
        policy (a plain gate of a served run) anyone allowed may answer, the
        runner too, as at a terminal."""
        from engine.history.gates import GatePolicy

        policy = policy or GatePolicy(self_approval=True)
        if self.board is None:
            return False, (
                f"{self.name} (nobody can answer: approvers vote through the run history, "
                "which is off: RUNBOOK_HISTORY)"
            )
        gate = self.board.open(
            self.run_id, host, step_id, kind=kind, prompt=self.redact(prompt),
            requested_by=self.name, policy=policy,
        )  # fmt: skip
        if self.pre_approved(step_id):
            # The runner's --yes/--approve is their vote, counted only where
            # they may answer (self_approval, and among the approvers).
            self.board.own_vote(gate, "--yes" if self.yes else f"--approve {step_id}")
        who = ", ".join(policy.approvers) or "anyone allowed"
        need = f"{policy.min_approvals} of {who}" if policy.min_approvals > 1 else who
        self.show(
            f"[{host}] {step_id} waits for approval by {need}: "
            f"runbook approve {self.run_id} {step_id} [--decline]"
        )
        if self.on_wait is not None:
            self.on_wait(host, step_id, prompt)
        approved, by = self.board.wait(gate, self.should_stop)
        return bool(approved), str(by)

    def step_gate(self, host: str, step_id: str, name: str) -> str:
        """--step: 'run', 'skip', or raises Aborted. 'continue' stops asking."""
        if not self.step_mode or self._continue_all:
            return "run"
        if not self.interactive:  # refused at start (launch.operator); kept safe here too
            raise Aborted("--step needs a terminal to ask on")
        with self._lock:
            if self._continue_all:
                return "run"
            try:
                answer = self._ask(
                    f"[{host}] run step {step_id!r} ({name})?", ["yes", "no", "continue", "abort"]
                )
            except NoAnswer:
                raise Aborted(
                    f"no answer before step {step_id}: the terminal's input ended"
                ) from None
        if answer == "abort":
            raise Aborted(f"operator aborted before step {step_id}")
        if answer == "continue":
            self._continue_all = True
            return "run"
        return "run" if answer == "yes" else "skip"
