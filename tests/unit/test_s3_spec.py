"""The `s3` step type's prune rules, sizes and body checks (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from engine.steps.base import get_step_type
from engine.steps.s3 import S3Spec, parse_size, select_prune


def test_select_prune_rules() -> None:

    now = datetime(2024, 1, 10, tzinfo=UTC)
    objects = [
        {"key": f"k{day}", "size": 1, "last_modified": f"2024-01-0{day}T00:00:00.000Z"}
        for day in range(1, 10)
    ]
    older = {o["key"] for o in select_prune(objects, None, 5 * 86400, now)}
    assert older == {"k1", "k2", "k3", "k4"}  # 9..6 days old; k5 is exactly 5 days: kept
    both = {o["key"] for o in select_prune(objects, 7, 5 * 86400, now)}
    assert both == {"k1", "k2"}
    assert select_prune(objects, 20, None, now) == []


def test_dry_run_safety_and_validation() -> None:
    step = get_step_type("s3")

    def spec(**body: Any) -> S3Spec:
        return S3Spec.model_validate({"bucket": "b", **body})

    assert step.dry_run_safe(spec(action="list"))
    assert step.dry_run_safe(spec(action="head", key="k"))
    for body in (
        {"action": "put", "key": "k", "file": "/f"},
        {"action": "get", "key": "k", "to_host": "/f"},
        {"action": "delete", "key": "k"},
        {"action": "prune", "keep_last": 3},
    ):
        assert not step.dry_run_safe(spec(**body)), body
    assert "keeping the newest 3" in step.describe(spec(action="prune", prefix="p/", keep_last=3))
    bad = [
        ({"action": "put", "key": "k"}, "exactly one of `file`"),
        ({"action": "put", "key": "k", "file": "a", "from_host": "b"}, "exactly one"),
        ({"action": "get", "file": "a"}, "needs `key`"),
        ({"action": "prune", "prefix": "p/"}, "needs `older_than`, `keep_last`"),
        ({"action": "list", "older_than": "1d"}, "does not apply to action list"),
        ({"action": "list", "access_key": "a"}, "both `access_key` and `secret_key`"),
        ({"action": "prune", "keep_last": -1}, "greater than or equal"),
        ({"action": "put", "key": "k", "file": "f", "part_size": "1MiB"}, "at least 5MiB"),
        ({"action": "copy"}, "Input should be"),
        ({"action": "list", "colour": "red"}, "Extra inputs"),
    ]
    for body, message in bad:
        with pytest.raises(ValidationError, match=message):
            spec(**body)
    assert spec(action="prune", older_than="30d", keep_last=1).older_than == 30 * 86400
    assert parse_size("64MiB") == 64 << 20 and parse_size(123) == 123
    # What --dry-run shows of a skipped step is a dump: the secret key is never in it.
    shown = spec(action="put", key="k", file="f", access_key="AKID", secret_key="SK-123")
    assert "SK-123" not in str(shown.model_dump()) and shown.secret_key == "SK-123"
