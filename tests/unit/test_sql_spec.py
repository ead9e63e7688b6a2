"""The `sql` step type's values, description and body checks (no server)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.steps.base import get_step_type
from engine.steps.sql import SqlStep, json_value

STEP = get_step_type("sql")


def test_registered_under_sql() -> None:
    assert isinstance(STEP, SqlStep)


def test_json_value_unit() -> None:
    from decimal import Decimal

    assert json_value(Decimal("3.000")) == 3
    assert json_value(Decimal("-0.25")) == -0.25
    assert json_value(Decimal("Infinity")) == "Infinity"
    assert json_value(memoryview(b"\x00\x01")) == "0001"
    assert json_value((Decimal("1"), [Decimal("1.5")])) == [1, [1.5]]


def test_describe_first_line() -> None:
    spec = STEP.Spec.model_validate({"dsn": "x", "query": "\n  SELECT a\n  FROM t\n"})
    assert STEP.describe(spec) == "SELECT a ..."


def test_unknown_field_is_rejected() -> None:

    with pytest.raises(ValidationError):
        STEP.Spec.model_validate({"dsn": "x", "query": "SELECT 1", "paramz": []})
