"""The `redis` step type against the machine's real Redis, under a key prefix of its own."""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.connections.local import LocalConnection
from engine.errors import ServiceError
from engine.execution.cancel import Cancellers
from engine.inventory.host import localhost
from engine.redaction import Redactor
from engine.steps.base import StepContext, get_step_type
from tests.fixtures.own_redis import OwnRedis
from tests.fixtures.services import RedisUser
from tests.helpers import in_thread, run_json, step_context, steps_of, write

STEP = get_step_type("redis")


def make_ctx(timeout: float | None = 10, dry_run: bool = False, **kw: Any) -> StepContext:
    return step_context("cache", timeout, dry_run, **kw)


def spec(body: dict[str, Any]) -> Any:
    return STEP.Spec.model_validate(body)


def run(body: dict[str, Any], **ctx: Any) -> dict[str, Any]:
    return STEP.run(spec(body), make_ctx(**ctx))


def test_set_then_get(redis_url: str, redis_prefix: str) -> None:
    key = f"{redis_prefix}greeting"
    assert run({"url": redis_url, "command": ["SET", key, "hello world"]}) == {"value": "OK"}
    assert run({"url": redis_url, "command": f"GET {key}"}) == {"value": "hello world"}
    assert run({"url": redis_url, "command": f"STRLEN {key}"}) == {"value": 11}
    assert run({"url": redis_url, "command": f"GET {redis_prefix}missing"}) == {"value": None}


def test_string_command_is_split_like_a_shell(redis_url: str, redis_prefix: str) -> None:
    key = f"{redis_prefix}spaced"
    run({"url": redis_url, "command": f"SET {key} 'two words'"})
    assert run({"url": redis_url, "command": ["GET", key]})["value"] == "two words"


def test_binary_values_decode_with_replacement(redis_url: str, redis_prefix: str) -> None:
    import redis

    key = f"{redis_prefix}bin"
    redis.Redis.from_url(redis_url).set(key, b"ok\xff")
    assert run({"url": redis_url, "command": ["GET", key]})["value"] == "ok\ufffd"


def test_info_is_parsed_with_numbers(redis_url: str, redis_prefix: str) -> None:
    run({"url": redis_url, "command": ["SET", f"{redis_prefix}k", "v"]})
    run({"url": redis_url, "command": ["GET", f"{redis_prefix}k"]})
    info = run({"url": redis_url, "command": "INFO"})["value"]
    assert isinstance(info["keyspace_hits"], int) and info["keyspace_hits"] >= 1
    assert isinstance(info["keyspace_misses"], int)
    assert isinstance(info["used_memory"], int)
    assert isinstance(info["mem_fragmentation_ratio"], float | int)
    assert isinstance(info["redis_version"], str)
    assert info["db0"]["keys"] >= 1  # keyspace lines become dicts

    memory = run({"url": redis_url, "command": "INFO memory"})["value"]
    assert "used_memory" in memory and "keyspace_hits" not in memory


def test_pipeline_replies(redis_url: str, redis_prefix: str) -> None:
    key = f"{redis_prefix}counter"
    hkey = f"{redis_prefix}hash"
    data = run(
        {
            "url": redis_url,
            "commands": [
                ["SET", key, 5],
                f"INCRBY {key} 3",
                ["HSET", hkey, "a", "1", "b", "x"],
                f"HGETALL {hkey}",
                "PING",
                "CONFIG GET maxmemory",
            ],
        }
    )
    assert data["replies"][:5] == ["OK", 8, 2, {"a": "1", "b": "x"}, "PONG"]
    assert isinstance(data["replies"][5]["maxmemory"], int)


def test_pipeline_error_names_the_command_and_keeps_replies(
    redis_url: str, redis_prefix: str
) -> None:
    key = f"{redis_prefix}str"
    with pytest.raises(ServiceError) as err:
        run({"url": redis_url, "commands": [["SET", key, "x"], ["LPUSH", key, "y"], "PING"]})
    assert err.value.code == "WRONGTYPE"
    assert "pipeline command 2 (LPUSH)" in str(err.value)
    replies = err.value.data["replies"]
    assert replies[0] == "OK" and replies[2] == "PONG" and "error" in replies[1]


def test_response_error_is_service_error(redis_url: str) -> None:
    with pytest.raises(ServiceError) as err:
        run({"url": redis_url, "command": "NOSUCHCOMMAND a"})
    assert err.value.service == "redis"
    assert "unknown command" in str(err.value)


def test_dry_run_safe_needs_every_pipeline_command_read_only(redis_url: str) -> None:
    assert STEP.dry_run_safe(spec({"url": redis_url, "command": "INFO"}))
    assert STEP.dry_run_safe(spec({"url": redis_url, "commands": ["GET a", "TTL a", "DBSIZE"]}))
    assert not STEP.dry_run_safe(spec({"url": redis_url, "command": ["SET", "a", "1"]}))
    assert not STEP.dry_run_safe(spec({"url": redis_url, "command": "DEL a"}))
    assert not STEP.dry_run_safe(spec({"url": redis_url, "command": "FLUSHALL"}))
    assert not STEP.dry_run_safe(spec({"url": redis_url, "commands": ["GET a", "DEL a"]}))


def test_wrong_password_is_redacted(redis_url: str, redis_user: RedisUser) -> None:
    wrong = "Wr0ng-Passw0rd-xyz"
    url = f"redis://{redis_user.name}:{wrong}@127.0.0.1:6379/0"
    redactor = Redactor()
    with pytest.raises(ServiceError) as err:
        run({"url": url, "command": "PING"}, redactor=redactor)
    message = str(err.value)
    assert wrong not in message
    assert f"redis://{redis_user.name}:***@127.0.0.1:6379/0" in message
    assert "authentication failed" in message
    assert redactor.text(wrong) == "***"
    # The right password works (the user exists, so the failure above was the password).
    good = f"redis://{redis_user.name}:{redis_user.password}@127.0.0.1:6379/0"
    assert run({"url": good, "command": "PING"}) == {"value": "PONG"}


def test_connection_refused_on_closed_port() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    with pytest.raises(ServiceError) as err:
        run({"url": url, "command": "PING"}, timeout=2)
    message = str(err.value)
    assert "cannot connect" in message and "refused" in message.lower()
    assert "hunter2-secret" not in message and f"redis://:***@127.0.0.1:{port}/0" in message


class RecordingConnection(LocalConnection):
    def __init__(self) -> None:
        super().__init__(localhost())
        self.tunnels: list[tuple[str, int]] = []

    @contextmanager
    def tunnel(self, remote_host: str, remote_port: int):  # type: ignore[override]
        self.tunnels.append((remote_host, remote_port))
        with super().tunnel(remote_host, remote_port) as local:
            yield local


def test_tunnel_goes_through_the_host_connection(redis_user: RedisUser, redis_prefix: str) -> None:
    conn = RecordingConnection()
    # Credentials and db survive the address rewrite.
    url = f"redis://{redis_user.name}:{redis_user.password}@localhost:6379/0"
    key = f"{redis_prefix}tunnelled"
    run({"url": url, "command": ["SET", key, "1"], "tunnel": True}, get_connection=lambda: conn)
    data = run({"url": url, "command": ["GET", key], "tunnel": True}, get_connection=lambda: conn)
    assert conn.tunnels == [("localhost", 6379), ("localhost", 6379)]
    assert data == {"value": "1"}


def test_slow_reply_becomes_step_timeout(redis_url: str, redis_prefix: str) -> None:
    from engine.errors import StepTimeout

    # BLPOP on an empty list waits 5s server-side; the step allows 0.5s.
    with pytest.raises(StepTimeout) as err:
        run({"url": redis_url, "command": f"BLPOP {redis_prefix}empty 5"}, timeout=0.5)
    assert "did not answer within the step timeout of 0.5s" in str(err.value)


def test_cancel_all_ends_a_blocking_command_in_the_server_too(
    redis_url: str, redis_prefix: str
) -> None:
    import redis

    admin = redis.Redis.from_url(redis_url)
    blocked = lambda: admin.info("clients")["blocked_clients"]  # noqa: E731
    baseline = blocked()
    cancellers = Cancellers()
    # Longer than the join below: without the cancel, the join gives up first.
    ctx = step_context("wait-job", 60, cancellable=cancellers.scope)
    body = spec({"url": redis_url, "command": ["BLPOP", f"{redis_prefix}:jobs", "0"]})
    running, errors = in_thread(lambda: STEP.run(body, ctx))
    deadline = time.monotonic() + 30
    while blocked() == baseline:
        assert running.is_alive() and time.monotonic() < deadline, errors
        time.sleep(0.05)
    cancellers.cancel_all()
    running.join(15)
    assert not running.is_alive(), "BLPOP kept waiting after cancel_all()"
    [err] = errors
    assert isinstance(err, ServiceError) and "interrupted (Ctrl-C)" in str(err), err
    deadline = time.monotonic() + 10
    while blocked() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert blocked() == baseline  # the server let go of it too
    admin.close()


def test_a_step_that_starts_after_the_kill_sends_nothing(redis_url: str, redis_prefix: str) -> None:
    import redis

    cancellers = Cancellers()
    cancellers.cancel_all()  # the second Ctrl-C came before this step
    ctx = step_context("late", 10, cancellable=cancellers.scope)
    key = f"{redis_prefix}:late"
    with pytest.raises(ServiceError) as err:
        STEP.run(spec({"url": redis_url, "command": ["SET", key, "written"]}), ctx)
    assert "interrupted (Ctrl-C)" in str(err.value)
    admin = redis.Redis.from_url(redis_url)
    assert admin.get(key) is None  # never sent
    admin.close()


def test_a_server_that_went_away_fails_fast_and_a_retry_reconnects(
    tmp_path: Path, own_redis: OwnRedis
) -> None:
    """Its own server (never the shared one), stopped and started by the
    runbook: the step while it is away fails at once with a clear error; a
    retried step after it is back reconnects instead of reusing a dead socket."""
    rb = write(
        tmp_path,
        f"""
        runbook: redis-goes-away
        steps:
          - name: before
            redis: {{url: "{own_redis.url}", command: [SET, k, v]}}
          - name: stop it
            shell: "redis-cli -p {own_redis.port} shutdown nosave || true"
          - name: while away
            redis: {{url: "{own_redis.url}", command: [GET, k]}}
            timeout: 5
            ignore_errors: true
          - name: start it
            shell: {own_redis.start_line()!r}
          - name: back
            redis: {{url: "{own_redis.url}", command: [SET, k, v2]}}
            retry: {{attempts: 40, delay: 0.25}}
        """,
    )
    code, doc = run_json(rb)
    assert code == 0, doc
    steps = steps_of(doc)
    away = steps["while_away"]
    assert away["state"] == "failed" and away["ignored"]
    assert f"cannot connect to {own_redis.url}" in away["error"]
    assert away["duration_ms"] < 5000  # failed at once, not at its timeout
    assert steps["back"]["state"] == "ok"
