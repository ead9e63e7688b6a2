"""A runbook's test cases file: read, checked against the runbook, as data.

Every mistake is reported with file:line and the field path before any case
runs (exit 65), as a runbook's own are: a misspelt step id in `results:` or
`expect:` would otherwise pass silently, testing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidError, Problem, UsageError, did_you_mean
from engine.format.source import PathKey, YamlDoc, load_yaml_file
from engine.results import State

if TYPE_CHECKING:
    from engine.format.model import Runbook

# What `expect.steps` may say of a step: a state, or that it never ran.
NOT_RUN = "not_run"
EXPECTED_STATES = frozenset({*(s.value for s in State), NOT_RUN})
DEFAULT_HOST = "testhost"

_FILE_KEYS = frozenset({"runbook", "cases"})
_CASE_KEYS = frozenset({"name", "params", "vars", "hosts", "results", "approve", "expect"})
_EXPECT_KEYS = frozenset({"exit", "steps"})
_STEP_EXPECT_KEYS = frozenset({"state", "error"})


@dataclass
class Expected:
    """What one step should have done: its state, and words its error holds."""

    state: str
    error: str | None = None


@dataclass
class Case:
    name: str
    line: int
    params: dict[str, Any] = field(default_factory=dict)  # resolved, defaults filled in
    extra_vars: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → host vars
    results: dict[str, Any] = field(default_factory=dict)  # step id → stand-in(s)
    approve: frozenset[str] = frozenset()
    approve_all: bool = False
    exit: int | None = None
    steps: dict[str, Expected] = field(default_factory=dict)


@dataclass
class CasesFile:
    path: str
    runbook: str  # the runbook's path, as the file names it or found by place
    cases: list[Case]


def is_cases_file(path: str) -> bool:
    """A file holding `cases:` at its top (not a runbook)."""
    doc = load_yaml_file(path)
    return isinstance(doc.data, dict) and "cases" in doc.data


def default_cases_path(runbook: str) -> Path:
    """`runbooks/NAME.yaml` → `runbooks/tests/NAME.yaml`."""
    path = Path(runbook)
    return path.parent / "tests" / path.name


def runbook_of(cases_path: str) -> str:
    """The runbook a cases file tests: its `runbook:` (relative to the file),
    else by place (`tests/NAME.yaml` is for `../NAME.yaml`)."""
    doc = load_yaml_file(cases_path)
    named = doc.data.get("runbook") if isinstance(doc.data, dict) else None
    if isinstance(named, str) and named:
        return str(Path(cases_path).parent / named)
    return str(Path(cases_path).parent.parent / Path(cases_path).name)


def load_cases(path: str, runbook: Runbook) -> CasesFile:
    """Read and check `path` against `runbook`. Raises InvalidError (exit 65)."""
    try:
        doc = load_yaml_file(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the cases file: {exc.strerror or exc}") from None
    checker = _Checker(doc, runbook)
    cases = checker.file()
    if doc.problems or checker.problems:
        raise InvalidError([*doc.problems, *checker.problems], "cases file")
    return CasesFile(path, runbook.path, cases)


class _Checker:
    """Walks the file's data, collecting every problem rather than the first."""

    def __init__(self, doc: YamlDoc, runbook: Runbook) -> None:
        self.doc, self.runbook = doc, runbook
        self.ids = runbook.recorded_step_ids()
        self.problems: list[Problem] = []

    def problem(self, path: PathKey, message: str, hint: str = "", key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, hint, key=key))

    def mapping(
        self, value: Any, path: PathKey, allowed: frozenset[str] | None = None
    ) -> dict[str, Any]:
        """`value` as a mapping (a problem when it is not); keys checked when `allowed`."""
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        if allowed is None:
            return value
        for key in value:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or "known: " + ", ".join(sorted(allowed))
                self.problem((*path, key), f"unknown field {key!r}", hint, key=True)
        return value

    def file(self) -> list[Case]:
        if self.doc.problems:
            return []
        data = self.mapping(self.doc.data, (), _FILE_KEYS)
        self._runbook_field(data)
        raw = data.get("cases")
        if not isinstance(raw, list) or not raw:
            self.problem(("cases",), "`cases:` must be a list of at least one case")
            return []
        cases = [self.case(c, ("cases", i)) for i, c in enumerate(raw)]
        seen: set[str] = set()
        for i, case in enumerate(cases):
            if case.name in seen:
                self.problem(("cases", i, "name"), f"a second case named {case.name!r}")
            seen.add(case.name)
        return cases

    def _runbook_field(self, data: dict[str, Any]) -> None:
        named = data.get("runbook")
        if named is None:
            return
        target = Path(self.doc.file).parent / str(named)
        if not target.exists() or target.resolve() != Path(self.runbook.path).resolve():
            self.problem(
                ("runbook",),
                f"names {named!r}, but the runbook tested is {self.runbook.path}",
                "give the path relative to this file",
            )

    def case(self, raw: Any, path: PathKey) -> Case:
        data = self.mapping(raw, path, _CASE_KEYS)
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            self.problem((*path, "name"), "every case needs a `name:` (a non-empty string)")
            name = f"case {path[-1]}"
        case = Case(name=name, line=self.doc.location(path).line)
        case.params = self.params(data.get("params", {}), (*path, "params"))
        case.extra_vars = self.mapping(data.get("vars", {}), (*path, "vars"))
        case.hosts = self.hosts(data.get("hosts"), (*path, "hosts"))
        case.results = self.results(data.get("results", {}), (*path, "results"))
        case.approve, case.approve_all = self.approve(data.get("approve", []), (*path, "approve"))
        self.expect(data.get("expect"), (*path, "expect"), case)
        return case

    def params(self, raw: Any, path: PathKey) -> dict[str, Any]:
        from engine.format.params import resolve_params

        given = self.mapping(raw, path)
        try:
            return resolve_params(self.runbook.params, given)
        except UsageError as exc:
            self.problem(path, str(exc))
            return {}

    def hosts(self, raw: Any, path: PathKey) -> dict[str, dict[str, Any]]:
        if raw is None:
            return {DEFAULT_HOST: {}}
        if isinstance(raw, list) and raw and all(isinstance(h, str) and h for h in raw):
            return {h: {} for h in raw}
        if isinstance(raw, dict) and raw:
            out: dict[str, dict[str, Any]] = {}
            for name, hvars in raw.items():
                if hvars is not None and not isinstance(hvars, dict):
                    self.problem((*path, name), "a host's value is a mapping of its vars")
                    continue
                out[str(name)] = hvars or {}
            return out
        self.problem(path, "`hosts:` is a list of names, or a mapping of names to their vars")
        return {DEFAULT_HOST: {}}

    def step_id(self, step_id: Any, path: PathKey, key: bool = True) -> bool:
        if step_id in self.ids:
            return True
        hint = did_you_mean(step_id, self.ids)
        self.problem(path, f"no step {step_id!r} in {self.runbook.name}", hint, key=key)
        return False

    def results(self, raw: Any, path: PathKey) -> dict[str, Any]:
        data = self.mapping(raw, path)
        for step_id, value in data.items():
            self.step_id(step_id, (*path, step_id))
            entries = value if isinstance(value, list) else [value]
            for i, entry in enumerate(entries):
                where = (*path, step_id, i) if isinstance(value, list) else (*path, step_id)
                if isinstance(entry, list):  # one loop item's attempts
                    if not all(isinstance(e, dict) for e in entry):
                        self.problem(where, "an item's attempts are a list of mappings")
                elif not isinstance(entry, dict):
                    self.problem(where, "a stand-in result is a mapping (stdout, rc, ...)")
        return data

    def approve(self, raw: Any, path: PathKey) -> tuple[frozenset[str], bool]:
        if raw == "all":
            return frozenset(self.ids), True
        if not isinstance(raw, list):
            self.problem(path, "`approve:` is a list of step ids, or `all`")
            return frozenset(), False
        for i, step_id in enumerate(raw):
            self.step_id(step_id, (*path, i), key=False)
        return frozenset(str(s) for s in raw), False

    def expect(self, raw: Any, path: PathKey, case: Case) -> None:
        if raw is None:
            self.problem(
                path, "every case needs `expect:` (exit and/or steps): it must test something"
            )
            return
        data = self.mapping(raw, path, _EXPECT_KEYS)
        code = data.get("exit")
        if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
            self.problem((*path, "exit"), "`exit:` is the run's exit code, a number (0-4)")
        else:
            case.exit = code
        steps = self.mapping(data.get("steps", {}), (*path, "steps"))
        for step_id, want in steps.items():
            where = (*path, "steps", step_id)
            known = self.step_id(step_id, where)
            expected = self.expected(want, where)  # checked either way: every problem at once
            if known and expected is not None:
                case.steps[step_id] = expected
        if "exit" not in data and "steps" not in data:
            self.problem(path, "`expect:` names neither `exit` nor `steps`: it tests nothing")

    def expected(self, want: Any, path: PathKey) -> Expected | None:
        if isinstance(want, dict):
            data = self.mapping(want, path, _STEP_EXPECT_KEYS)
            state, error = data.get("state"), data.get("error")
            if error is not None and not isinstance(error, str):
                self.problem((*path, "error"), "`error:` is text the step's error contains")
                error = None
            if state is None:
                state = "failed" if error is not None else None
            path = (*path, "state")
        else:
            state, error = want, None
        if state not in EXPECTED_STATES:
            hint = did_you_mean(state, EXPECTED_STATES) or "one of " + ", ".join(
                sorted(EXPECTED_STATES)
            )
            self.problem(path, f"{state!r} is not a step state", hint)
            return None
        return Expected(str(state), error)
