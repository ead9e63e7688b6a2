"""The API's request and response bodies, typed so /openapi.json says what each
endpoint takes and gives (clients are generated from it, schemathesis tests it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not ignored


class ParamInfo(BaseModel):
    type: str
    required: bool
    default: Any = None
    description: str = ""
    choices: list[Any] | None = None
    secret: bool = False


class RunbookSummary(BaseModel):
    name: str
    kind: str
    description: str
    schedule: str | None = None
    owner: str | None = None
    tags: list[str] = []
    path: str


class StepInfo(BaseModel):
    id: str
    name: str
    type: str


class RunbookDetail(RunbookSummary):
    hosts: str
    webhook: bool
    params: dict[str, ParamInfo]
    steps: list[StepInfo]


class StartRequest(_Body):
    runbook: str = Field(description="the runbook's name (its `runbook:` header)")
    params: dict[str, Any] = Field(default_factory=dict)
    limit: str | None = Field(None, description="a host pattern, as `-l`")
    incident: str | None = Field(None, description="an incident id, as `--incident`")
    dry_run: bool = False


class ResumeRequest(_Body):
    params: dict[str, Any] = Field(
        default_factory=dict, description="params given again (secret ones are not kept)"
    )


class RunStarted(BaseModel):
    run_id: str
    runbook: str
    operator: str
    url: str
    events_url: str


class RunSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    runbook: str
    state: str
    operator: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    incident: str | None = None
    dry_run: bool = False
    hosts: list[str] | None = None


class CancelResult(BaseModel):
    run_id: str
    cancelled: bool = Field(description="false when the run had ended already")
    state: str


class VoteRequest(_Body):
    approve: bool
    host: str = Field("*", description="one host's gate, or * for every host waiting there")
    comment: str = ""


class ManualRequest(_Body):
    done: bool = Field(description="true: the work is done; false: abort the run here")
    host: str = "*"
    comment: str = ""


class VoteInfo(BaseModel):
    user: str
    approved: bool
    host: str
    via: str
    comment: str
    at: str


class GateInfo(BaseModel):
    run_id: str
    host: str
    step_id: str
    kind: str = Field(description="confirm (POST .../gates/STEP) or manual (POST .../manual/STEP)")
    prompt: str
    requested_by: str
    approvers: list[str]
    min_approvals: int
    self_approval: bool
    requested_at: str
    deadline: str | None
    state: str
    decided_by: str | None
    decided_at: str | None
    decision: str = Field(
        description="what the votes decide now; `state` follows once the run reads them"
    )
    approvals: list[str] = Field(description="the users whose approvals count so far")
    votes: list[VoteInfo]


class VoteResult(BaseModel):
    run_id: str
    step_id: str
    gates: list[GateInfo]


class AuditRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    at: str | None
    user_name: str | None
    action: str
    run_id: str | None
    detail: dict[str, Any]


class Health(BaseModel):
    status: str
    history: str
    runs_running: int


class HookRun(BaseModel):
    rule: str
    group_key: str
    status: str = Field(description="started | already_running | resolved | error")
    run_id: str | None = None
    message: str = ""


class HookResult(BaseModel):
    status: str
    runs: list[HookRun]
