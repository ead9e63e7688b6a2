"""The `redis` step type's parsing, classification and body checks (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from engine.steps.base import get_step_type
from engine.steps.redis import RedisStep, command_name, is_read_only, parse_info, split_command

STEP = get_step_type("redis")


def spec(body: dict[str, Any]) -> Any:
    return STEP.Spec.model_validate(body)


def test_registered_under_redis() -> None:
    assert isinstance(STEP, RedisStep)


def test_parse_info_unit() -> None:
    text = (
        "# Server\r\nredis_version:7.2.4\r\nredis_git_sha1:00000000\r\n"
        "# Stats\r\nkeyspace_hits:10\r\nratio:0.5\r\n"
        "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n"
    )
    assert parse_info(text) == {
        "redis_version": "7.2.4",
        "redis_git_sha1": "00000000",
        "keyspace_hits": 10,
        "ratio": 0.5,
        "db0": {"keys": 3, "expires": 1, "avg_ttl": 0},
    }


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("GET k", True),
        ("info memory", True),
        (["MEMORY", "USAGE", "k"], True),
        ("CONFIG GET maxmemory", True),
        ("SLOWLOG GET 10", True),
        ("CLIENT LIST", True),
        ("SCAN 0 MATCH x* COUNT 10", True),
        ("SET k v", False),
        ("DEL k", False),
        ("FLUSHALL", False),
        ("FLUSHDB ASYNC", False),
        ("CONFIG SET maxmemory 1", False),
        ("CLIENT KILL ID 1", False),
        ("SLOWLOG RESET", False),
        ("EVAL 'return 1' 0", False),
        ("SORT k STORE dst", False),
        ("SOMEFUTURECOMMAND", False),
    ],
)
def test_read_only_classification(command: str | list[str], expected: bool) -> None:
    assert is_read_only(split_command(command)) is expected


def test_command_name_of_subcommands() -> None:
    assert command_name(["config", "get", "x"]) == "CONFIG GET"
    assert command_name(["get", "config"]) == "GET"


@pytest.mark.parametrize(
    "body",
    [
        {"url": "redis://h", "command": "PING", "commands": ["PING"]},
        {"url": "redis://h"},
        {"url": "redis://h", "command": ""},
        {"url": "redis://h", "commands": []},
        {"url": "http://h", "command": "PING"},
        {"url": "redis://h", "command": "PING", "db": 1},
    ],
)
def test_invalid_bodies(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(body)


def test_describe() -> None:
    assert STEP.describe(spec({"url": "redis://h", "command": ["SET", "k", "two words"]})) == (
        "SET k 'two words'"
    )
    assert STEP.describe(spec({"url": "redis://h", "commands": ["GET a", "TTL a"]})) == (
        "pipeline: GET a; TTL a"
    )
