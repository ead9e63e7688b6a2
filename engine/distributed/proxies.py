"""The worker's stand-ins for what only the controller has.

A host walk on a worker runs the same HostExecutor as on the controller; what
it shares with the rest of the run (the operator at the terminal, run_once
results, secrets, the history that must record a step's start before it runs)
is reached through these, each a question to the controller (session.ask).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import RecordLost
from engine.events import Event, HostFinished, StepFinished, StepStarted
from engine.execution.approvals import Operator
from engine.execution.context import RunOnce
from engine.inventory.host import Host
from engine.redaction import Redactor, dsn_passwords, looks_secret
from engine.results import StepResult
from engine.secrets import Secrets

from .messages import OnceDone, ToController

if TYPE_CHECKING:
    from engine.history.gates import GatePolicy


class WalkSession(Protocol):
    """What the stand-ins need of a walk on a worker (session.py)."""

    run_id: str
    worker: str
    host: Host
    pending: list[Any]

    def ask(self, question: tuple[Any, ...]) -> Any: ...

    def send(self, message: ToController) -> None: ...

    def flush(self) -> None: ...


class Forwarder:
    """The worker bus's one processor: events go to the controller.

    A step's start waits for the controller to say it is recorded (as a local
    run waits for its history), so resume never reruns a step whose start it
    did not know of, and a controller gone silent stops the walk here. Results
    wait for the next message; log lines and approvals go at once (the console
    shows them live).
    """

    def __init__(self, session: WalkSession) -> None:
        self.session = session

    def handle(self, event: Event) -> None:
        session = self.session
        if isinstance(event, StepStarted):
            session.pending.append(event)
            answer = session.ask(("started",))
            if answer != "ok":  # lost by the history, or the run was interrupted
                raise RecordLost(str(answer))
        elif isinstance(event, StepFinished | HostFinished):
            session.pending.append(event)
        else:
            session.pending.append(event)
            session.flush()


class RemoteOperator(Operator):
    """Prompts are asked on the controller; the walk waits for the answer."""

    def __init__(self, session: WalkSession, name: str, step_mode: bool) -> None:
        super().__init__(name, step_mode=step_mode)
        self.session = session

    def confirm(
        self, host: str, step_id: str, prompt: str, policy: GatePolicy | None = None
    ) -> tuple[bool, str]:
        approved, by = self.session.ask(("confirm", step_id, prompt, policy))
        return bool(approved), str(by)

    def acknowledge(self, host: str, step_id: str, instructions: str) -> str:
        return str(self.session.ask(("manual", step_id, instructions)))

    def step_gate(self, host: str, step_id: str, name: str) -> str:
        if not self.step_mode:
            return "run"  # no --step: nothing to ask (a round trip per step saved)
        return str(self.session.ask(("step_gate", step_id, name)))


class RemoteRunOnce(RunOnce):
    """run_once across the whole run: the controller knows who reached it first."""

    def __init__(self, session: WalkSession) -> None:
        super().__init__()
        self.session = session

    def get_or_run(
        self,
        key: str,
        fn: Callable[[], StepResult],
        may_hand_over: Callable[[], bool] = lambda: False,
    ) -> tuple[StepResult, bool]:
        from engine.errors import HostUnreachable

        session = self.session
        answer = session.ask(("once", key))
        if answer[0] == "shared":
            result: StepResult = answer[1]
            return result, False
        try:
            result = fn()
        except HostUnreachable as exc:
            session.send(
                OnceDone(
                    session.run_id, session.worker, session.host.name,
                    key=key, unreachable=str(exc), hand_over=may_hand_over(),
                )
            )  # fmt: skip
            raise
        except BaseException:
            session.send(OnceDone(session.run_id, session.worker, session.host.name, key=key))
            raise
        session.send(
            OnceDone(session.run_id, session.worker, session.host.name, key=key, result=result)
        )
        return result, True


class RemoteSecrets(Secrets):
    """secret() and env read on the controller, one value when a template needs it.

    A value is learnt by this walk's redactor as it arrives, as secret() does
    locally; the controller's redactor learns it too, so its console and
    history mask it whatever the worker sends.
    """

    def __init__(self, redactor: Redactor, session: WalkSession) -> None:
        super().__init__(redactor, environ={})
        self.session = session
        self._env = _RemoteEnvironment(session, redactor)

    def environment(self) -> Mapping[str, str]:
        return self._env

    def get(self, name: str) -> str:
        value = str(self.session.ask(("secret", name)))
        self.redactor.add(value)
        return value

    def password_for(self, host: Host) -> str | None:
        if not host.password:
            return None
        password = self.session.ask(("password", host.name))
        if password is None:
            return None
        self.redactor.add(str(password))
        return str(password)


class _RemoteEnvironment(Mapping[str, str]):
    """`env` in templates: the controller's environment, asked for by name."""

    def __init__(self, session: WalkSession, redactor: Redactor) -> None:
        self._session = session
        self._redactor = redactor
        self._cache: dict[str, str | None] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._cache:
            self._cache[name] = self._session.ask(("env", name))
        value = self._cache[name]
        if value is None:
            raise KeyError(name)
        if looks_secret(name):
            self._redactor.add(value)
        for password in dsn_passwords(value):
            self._redactor.add(password)
        return value

    def __iter__(self) -> Iterator[str]:
        names: list[str] = self._session.ask(("env_names",))
        return iter(names)

    def __len__(self) -> int:
        return len(list(iter(self)))
