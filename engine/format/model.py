"""The runbook format as pydantic models (docs/format.md says what each field means).

A step is a discriminated union keyed by its one type key (`shell:`, `sql:`,
...). The union is open: third-party step types register through entry points,
so the loader picks the body model from the step-type registry instead of a
closed `Union[...]` here. `Step` holds both the validated common fields and the
raw body: the body is validated again after rendering, because a templated
field (`port: "{{ host.vars.pg_port }}"`) only gets its real type per host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .source import PathKey

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """ "500ms", "30s", "5m", "1h", "2d" or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match[1]) * _UNIT_SECONDS[match[2]]
    raise ValueError(f"{value!r} is not a duration: use 500ms, 30s, 5m, 1h or 2d")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
            ],
            "description": "seconds, or 500ms / 30s / 5m / 1h / 2d",
        }
    ),
]

Expression = Annotated[
    str,
    WithJsonSchema({"type": "string", "description": "a Jinja2 expression, without braces"}),
]

# A condition may be a literal true/false as well as an expression.
Condition = str | bool

COUNT_OR_PERCENT = re.compile(r"^\s*\d+(\.\d+)?\s*%\s*$")


def _one_or_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _count_or_percent(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number of hosts or a percentage like '25%'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("cannot be negative")
        return value
    if isinstance(value, str) and COUNT_OR_PERCENT.match(value):
        return value.strip()
    raise ValueError("expected a number of hosts or a percentage like '25%'")


CountOrPercent = Annotated[
    int | str,
    BeforeValidator(_count_or_percent),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"},
            ]
        }
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Param(_Strict):
    type: Literal["str", "int", "float", "bool", "list", "dict"] = "str"
    default: Any = None
    required: bool = False
    description: str = ""
    choices: list[Any] | None = None
    secret: bool = Field(False, description="redact the value from every output")


class Retry(_Strict):
    attempts: int = Field(3, ge=1, le=1000)
    delay: Duration = 1.0
    backoff: float = Field(1.0, ge=1.0, description="delay multiplier after each attempt")
    max_delay: Duration | None = None


THRESHOLD_OP = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$", re.DOTALL)


class Threshold(_Strict):
    value: Expression
    warn: str | None = None
    critical: str | None = None
    unit: str | None = None

    # Before type validation, so a bare number gets the advice, not "not a string".
    @field_validator("warn", "critical", mode="before")
    @classmethod
    def _operator(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError(f"write an operator before the number, e.g. '> {v}'")
        if not THRESHOLD_OP.match(str(v)):
            raise ValueError(
                f"{v!r} is not a comparison: write an operator (<, <=, >, >=, ==, !=) "
                "and a number or template, e.g. '< 0.9'"
            )
        return str(v)


class LoopUntil(_Strict):
    """`loop: {until: EXPR}`: run the step again, seeing its `previous` result,
    until EXPR holds on the latest `result` (paging: SCAN cursors, batches)."""

    until: Expression
    max: int = Field(1000, ge=1, le=100_000, description="most iterations before failing")


# Names a looped step's templates see besides the usual ones.
LOOP_NAMES = frozenset({"loop_index", "previous"})
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


class StepCommon(_Strict):
    """The fields every step has, whatever its type."""

    name: str
    id: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_]*$")
    description: str = ""
    when: Condition | None = None
    tags: list[str] = []
    timeout: Duration | None = None
    retry: Retry | None = None
    until: Expression | None = None
    failed_when: Condition | None = None
    ignore_errors: bool = False
    # A failure still counts (host and run fail), but the next steps run: a
    # checklist collects every finding, not only the first.
    keep_going: bool = False
    run_once: bool = False
    confirm: str | None = None
    # Who may answer the confirm: gate besides (or instead of) the runner: user
    # names and `@role`s of the `runbook serve` config. With any of these, the
    # gate waits for others' votes (the API, the web page, `runbook approve`).
    approvers: list[str] = []
    min_approvals: int = Field(1, ge=1, le=20)
    approval_timeout: Duration | None = Field(None, gt=0)
    self_approval: bool = False  # the runner's own vote counts too
    sensitive: bool = False
    thresholds: dict[str, Threshold] = {}
    on_critical: Literal["continue", "fail"] = "continue"
    safe: bool = False
    # `assert: "expr"` is one condition, as the `assert` step's shorthand.
    assert_: Annotated[list[Expression], BeforeValidator(_one_or_list)] = Field([], alias="assert")
    message: str | None = Field(None, description="message of a failed `assert`")
    # Run the step once per item (a list, or a template giving one), or, as
    # {until: EXPR}, again and again until EXPR holds (section 7.5a).
    loop: list[Any] | str | LoopUntil | None = None
    loop_var: str = Field("item", pattern=IDENTIFIER)

    @model_validator(mode="after")
    def _approvals_need_a_gate(self) -> StepCommon:
        named = [
            key
            for key, given in (
                ("approvers", bool(self.approvers)),
                ("min_approvals", self.min_approvals != 1),
                ("approval_timeout", self.approval_timeout is not None),
                ("self_approval", self.self_approval),
            )
            if given
        ]
        if named and self.confirm is None:
            raise ValueError(f"{', '.join(named)}: only for a step with `confirm:` (the gate)")
        names = [a for a in self.approvers if not a.startswith("@")]
        if self.approvers and len(names) == len(self.approvers) < self.min_approvals:
            raise ValueError(
                f"min_approvals: {self.min_approvals} from {len(names)} named approver(s) "
                f"({', '.join(names)}) can never be met"
            )
        return self

    @field_validator("loop")
    @classmethod
    def _loop_source(cls, v: Any) -> Any:
        if isinstance(v, str) and "{{" not in v:
            raise ValueError(
                "a loop is a list, a template giving one (`{{ params.tables }}`), or {until: EXPR}"
            )
        return v

    @field_validator("loop_var")
    @classmethod
    def _loop_var_free(cls, v: str) -> str:
        from engine.templating import NAMESPACES

        if v in NAMESPACES or v in LOOP_NAMES:
            raise ValueError(f"`{v}` is already a name templates use; choose another loop_var")
        return v


COMMON_FIELDS = frozenset((f.alias or name) for name, f in StepCommon.model_fields.items())


@dataclass
class Step:
    """One step as loaded: common fields, type, raw body, and where it came from."""

    common: StepCommon
    type: str
    body: Any  # the raw (normalized, unrendered) body
    id: str
    path: PathKey  # e.g. ("steps", 3)
    file: str
    line: int
    spec: Any = None  # the validated body, when it contains no template
    children: dict[str, list[Step]] = field(default_factory=dict)  # block: steps/rescue/always
    included: Runbook | None = None  # include: the loaded runbook
    # `retry:` with templated values (`attempts: "{{ params.n }}"`), rendered per
    # host when the step runs; `common.retry` then holds the defaults.
    retry_template: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.common.name

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def walk(self) -> list[Step]:
        """This step and every step nested in it (not into included runbooks)."""
        out = [self]
        for group in self.children.values():
            for child in group:
                out.extend(child.walk())
        return out


NotifyOn = Literal["ok", "warn", "critical", "failed", "aborted", "approval", "always"]


class PagerDutyTarget(_Strict):
    """PagerDuty's Events API v2: an integration's routing key (a secret)."""

    routing_key: str
    url: str = "https://events.pagerduty.com/v2/enqueue"


class NotifyTarget(_Strict):
    """One entry of `notify:`: where to say it, and on which outcomes. The
    field is `events`, not `on`: YAML 1.1 reads a bare `on` as true."""

    events: list[NotifyOn] = ["critical", "failed", "aborted"]
    webhook: str | None = None
    slack: str | None = None
    pagerduty: PagerDutyTarget | None = None
    timeout: float = Field(default=10, gt=0, le=120)

    @property
    def kind(self) -> str:
        """webhook, slack or pagerduty: the one given (the validator sees to it)."""
        return self._given()[0]

    def _given(self) -> list[str]:
        return [k for k in ("webhook", "slack", "pagerduty") if getattr(self, k) is not None]

    @model_validator(mode="after")
    def _one_target(self) -> NotifyTarget:
        given = self._given()
        if len(given) != 1:
            raise ValueError(
                "give exactly one of webhook, slack or pagerduty per entry"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class RunbookHeader(_Strict):
    """The top-level fields of a runbook file; steps are parsed separately."""

    runbook: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    kind: Literal["routine", "emergency"] = "routine"
    schedule: str | None = None
    owner: str | None = None
    tags: list[str] = []
    hosts: str = "all"
    # One size for every batch, or a list for canaries: [1, 5, "25%"], the last
    # size repeating for the hosts left (as Ansible's serial list).
    serial: CountOrPercent | list[CountOrPercent] | None = None
    max_fail: CountOrPercent | None = None
    # `runbook serve` starts it from an alert webhook only when this says so.
    webhook: bool = False
    # The whole run's budget; `--timeout` overrides it. Steps keep their own.
    timeout: Duration | None = Field(default=None, gt=0)
    strategy: Literal["linear", "free"] = "linear"
    params: dict[str, Param] = {}
    vars: dict[str, Any] = {}
    steps: list[Any] = Field(min_length=1)
    rescue: list[Any] = []
    always: list[Any] = []
    notify: list[NotifyTarget] = []

    @field_validator("serial")
    @classmethod
    def _serial_list(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("a serial list needs at least one batch size, e.g. [1, 5, '25%']")
        return v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if len(v.split()) != 5:
            raise ValueError(f"{v!r} is not a 5-field cron expression (min hour dom mon dow)")
        from croniter import croniter

        if not croniter.is_valid(v):
            raise ValueError(f"{v!r} is not a valid cron expression")
        return v

    @field_validator("params")
    @classmethod
    def _param_names(cls, v: dict[str, Param]) -> dict[str, Param]:
        for name in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"param name {name!r} must be an identifier")
        return v


@dataclass
class Runbook:
    header: RunbookHeader
    path: str
    text: str
    steps: list[Step]
    rescue: list[Step]
    always: list[Step]
    digest: str = ""

    @property
    def name(self) -> str:
        return self.header.runbook

    @property
    def params(self) -> dict[str, Param]:
        return self.header.params

    def all_steps(self) -> list[Step]:
        out: list[Step] = []
        for step in (*self.steps, *self.rescue, *self.always):
            out.extend(step.walk())
        return out

    def step_ids(self) -> list[str]:
        return [s.id for s in self.all_steps()]

    def recorded_step_ids(self, prefix: str = "") -> list[str]:
        """Every step id as runs record it: an included runbook's steps as
        `<include id>.<step id>`, so `--approve` can name a gate inside one."""
        out: list[str] = []
        for step in self.all_steps():
            out.append(prefix + step.id)
            if step.included is not None:  # include cycles never load
                out.extend(step.included.recorded_step_ids(f"{prefix}{step.id}."))
        return out


def snake_case(name: str) -> str:
    """The default step id: "Dead tuple ratio" → "dead_tuple_ratio"."""
    text = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    if not text:
        return "step"
    if text[0].isdigit():
        text = "s_" + text
    return text
