"""The `http` step type's status rules, description and body checks (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from engine.steps.base import get_step_type
from engine.steps.http import HttpSpec, status_ok


def test_json_and_body_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="at most one of `json` and `body`"):
        HttpSpec.model_validate({"url": "http://x/", "json": {"a": 1}, "body": "b"})


def test_status_matching_rules() -> None:
    assert status_ok(204, "2xx")
    assert not status_ok(301, "2xx")
    assert status_ok(301, "2xx,3xx")
    assert status_ok(404, [200, 404])
    assert status_ok(418, 418)
    with pytest.raises(ValidationError):
        HttpSpec.model_validate({"url": "http://x/", "expect_status": "2xxx"})
    with pytest.raises(ValidationError):
        HttpSpec.model_validate({"url": "http://x/", "expect_status": 700})


def test_dry_run_safety_and_describe() -> None:
    step = get_step_type("http")

    def spec(**kw: Any) -> HttpSpec:
        return HttpSpec.model_validate({"url": "https://u:pw@example.org/x", **kw})

    assert step.dry_run_safe(spec())
    assert step.dry_run_safe(spec(method="head"))
    assert step.dry_run_safe(spec(method="OPTIONS"))
    assert not step.dry_run_safe(spec(method="POST"))
    assert not step.dry_run_safe(spec(method="DELETE"))
    assert step.describe(spec(method="post")) == "POST https://u:***@example.org/x"
    assert step.normalize("https://example.org") == {"url": "https://example.org"}
    # What --dry-run shows of a skipped step is a dump: the auth password is never in it.
    shown = spec(method="POST", auth={"username": "ops", "password": "pw-123"})
    assert "pw-123" not in str(shown.model_dump(by_alias=True)) and shown.auth.password == "pw-123"
