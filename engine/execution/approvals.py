"""The operator: who runs the runbook, and how they approve, acknowledge, or step.

Prompts are serialized with one lock: hosts run in parallel, but a person
answers one question at a time. Without a terminal nobody can answer, so a
gate is declined unless the operator pre-approved it (`--yes`, `--approve ID`).
"""

from __future__ import annotations

import getpass
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import Aborted


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


Ask = Callable[[str, list[str]], str]  # (question, choices) → the chosen answer


def _terminal_ask(question: str, choices: list[str]) -> str:
    import click

    answer: str = click.prompt(question, type=click.Choice(choices), show_choices=True, err=True)
    return answer


@dataclass
class Operator:
    name: str
    interactive: bool = False
    yes: bool = False
    approve: frozenset[str] = frozenset()
    step_mode: bool = False
    ask: Ask = _terminal_ask
    show: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _continue_all: bool = False

    def pre_approved(self, step_id: str) -> bool:
        return self.yes or step_id in self.approve

    def confirm(self, host: str, step_id: str, prompt: str) -> tuple[bool, str]:
        """Ask for approval. Returns (approved, by whom)."""
        if self.pre_approved(step_id):
            how = "--yes" if self.yes else f"--approve {step_id}"
            return True, f"{self.name} ({how})"
        if not self.interactive:
            return False, f"{self.name} (no terminal: pass --yes or --approve {step_id})"
        with self._lock:
            answer = self.ask(f"[{host}] {prompt} ", ["yes", "no"])
        return answer == "yes", self.name

    def acknowledge(self, host: str, step_id: str, instructions: str) -> str:
        """Show a manual step's instructions and wait until the operator is done."""
        if self.pre_approved(step_id):
            return f"{self.name} (pre-approved)"
        if not self.interactive:
            raise Aborted(
                f"manual step {step_id} needs an operator at a terminal "
                f"(or --approve {step_id} once it is done)"
            )
        with self._lock:
            self.show(f"\n[{host}] MANUAL STEP {step_id}\n{instructions.rstrip()}\n")
            answer = self.ask("Done?", ["done", "abort"])
        if answer != "done":
            raise Aborted(f"operator aborted at manual step {step_id}")
        return self.name

    def step_gate(self, host: str, step_id: str, name: str) -> str:
        """--step: 'run', 'skip', or raises Aborted. 'continue' stops asking."""
        if not self.step_mode or self._continue_all:
            return "run"
        if not self.interactive:
            return "run" if self.pre_approved(step_id) else "skip"
        with self._lock:
            if self._continue_all:
                return "run"
            answer = self.ask(
                f"[{host}] run step {step_id!r} ({name})?", ["yes", "no", "continue", "abort"]
            )
        if answer == "abort":
            raise Aborted(f"operator aborted before step {step_id}")
        if answer == "continue":
            self._continue_all = True
            return "run"
        return "run" if answer == "yes" else "skip"
