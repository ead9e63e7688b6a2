"""Durations, params, thresholds, states: pure logic of the format."""

from __future__ import annotations

import pytest

from engine.errors import UsageError
from engine.execution.batches import batches, parse_limit
from engine.format.model import Param, parse_duration, snake_case
from engine.format.params import coerce_param, resolve_params
from engine.inventory.host import Host
from engine.results import HostResult, State, StepResult, worst


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("2d", 172800),
        (12, 12),
        ("1.5s", 1.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1s", True, "5 minutes", -3])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_snake_case_ids() -> None:
    assert snake_case("Dead tuple ratio") == "dead_tuple_ratio"
    assert snake_case("  Check: Redis (hit-rate) ") == "check_redis_hit_rate"
    assert snake_case("3 retries") == "s_3_retries"


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("int", "3", 3),
        ("float", "0.5", 0.5),
        ("bool", "yes", True),
        ("bool", "false", False),
        ("list", "a, b", ["a", "b"]),
        ("list", '["a", 1]', ["a", 1]),
        ("dict", '{"a": 1}', {"a": 1}),
        ("str", 5, "5"),
    ],
)
def test_param_coercion(kind: str, given: object, expected: object) -> None:
    assert coerce_param("p", Param(type=kind), given) == expected  # type: ignore[arg-type]


def test_param_errors() -> None:
    with pytest.raises(UsageError, match="not a valid int"):
        coerce_param("p", Param(type="int"), "x")
    with pytest.raises(UsageError, match="not one of"):
        coerce_param("p", Param(type="str", choices=["a", "b"]), "c")
    with pytest.raises(UsageError, match="required"):
        resolve_params({"p": Param(type="str", required=True)}, {})


def test_worst_state_and_counted_state() -> None:
    assert worst([State.OK, State.WARN, State.SKIPPED]) is State.WARN
    assert worst([State.CRITICAL, State.FAILED]) is State.FAILED
    ignored = StepResult("a", "a", "h", State.FAILED, ignored=True)
    rescued = StepResult("b", "b", "h", State.FAILED, rescued=True)
    assert HostResult("h", [ignored, rescued]).state is State.OK
    assert HostResult("h", [], unreachable="x").state is State.UNREACHABLE


def test_serial_and_max_fail_limits() -> None:
    hosts = [Host(f"h{i}") for i in range(10)]
    assert [len(b) for b in batches(hosts, 3)] == [3, 3, 3, 1]
    assert [len(b) for b in batches(hosts, "50%")] == [5, 5]
    assert [len(b) for b in batches(hosts, None)] == [10]
    assert parse_limit("10%", 10) == 1
    assert parse_limit(2, 10) == 2
    # A percentage that rounds down to no host is one host per batch, as in
    # Ansible, never every host at once; max_fail's may be 0 (no failure allowed).
    five = hosts[:5]
    assert [len(b) for b in batches(five, "10%")] == [1, 1, 1, 1, 1]
    assert parse_limit("10%", 5) == 0


def test_a_bad_secret_param_value_is_not_quoted_in_the_error() -> None:
    import pytest

    from engine.errors import UsageError
    from engine.format.model import Param
    from engine.format.params import coerce_param

    secret = Param(type="int", secret=True)
    with pytest.raises(UsageError) as caught:
        coerce_param("pin", secret, "hunter2-xyz")
    assert "hunter2" not in str(caught.value) and "not a valid int" in str(caught.value)
    with pytest.raises(UsageError) as choice:
        coerce_param("mode", Param(type="str", secret=True, choices=["a", "b"]), "hunter2-xyz")
    assert "hunter2" not in str(choice.value) and "is not one of a, b" in str(choice.value)
