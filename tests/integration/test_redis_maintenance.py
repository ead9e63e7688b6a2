"""runbooks/redis-cache-health.yaml's maintenance part against a Redis of the
test's own (never the shared one: it empties databases): biggest keys,
clients, persistence, a confirmed AOF rewrite, a confirmed FLUSHDB and a
confirmed run of the application's own cache clearing command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
import yaml

from tests.fixtures.own_redis import OwnRedis
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "redis-cache-health.yaml"


def inventory(tmp_path: Path, server: OwnRedis, **host_vars: str) -> Path:
    path = tmp_path / "cache.yaml"
    cache = {
        "address": "127.0.0.1",
        "vars": {"redis_port": server.port, "redis_db": 3, **host_vars},
    }
    doc = {"defaults": {"connection": "local"}, "groups": {"caches": {"hosts": {"cache1": cache}}}}
    path.write_text(yaml.safe_dump(doc))
    return path


def run(
    tmp_path: Path, server: OwnRedis, *args: str, **host_vars: str
) -> tuple[int, dict[str, dict[str, Any]]]:
    code, doc = run_json(RUNBOOK, "-i", str(inventory(tmp_path, server, **host_vars)), *args)
    steps = {k: {**v.get("data", {}), **v} for k, v in steps_of(doc, "cache1").items()}
    return code, steps


def fill(server: OwnRedis) -> redis.Redis:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{server.port}/3")
    client.set("big:blob", b"x" * 200_000)
    for i in range(50):
        client.set(f"small:{i}", i)
    return client


def test_it_reports_big_keys_clients_and_persistence(tmp_path: Path, own_redis: OwnRedis) -> None:
    fill(own_redis)
    code, steps = run(tmp_path, own_redis)
    assert code == 0, steps
    assert '"big:blob"' in steps["bigkeys"]["stdout"]  # redis-cli names the biggest string
    assert steps["clients"]["metrics"]["redis_connected_clients"]["value"] >= 1
    assert steps["clients"]["metrics"]["redis_clients_ratio"]["state"] == "ok"
    assert "redis_ops_per_sec" in steps["stats"]["metrics"]
    assert steps["persistence"]["metrics"]["redis_bgsave_failed"]["value"] == 0
    assert steps["persistence"]["metrics"]["redis_aof_size"]["value"] is None  # AOF is off
    assert steps["rewrite_aof"]["state"] == steps["flush"]["state"] == "skipped"


def test_a_confirmed_aof_rewrite_runs_to_its_end(tmp_path: Path, own_redis: OwnRedis) -> None:
    client = fill(own_redis)
    client.config_set("appendonly", "yes")  # Redis writes the first AOF itself
    deadline = time.monotonic() + 30
    while client.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.05)
    rewrites = client.info("persistence")["aof_rewrites"]
    for _ in range(200):  # history the rewrite compacts away
        client.incr("counter")
    code, steps = run(tmp_path, own_redis, "-p", "rewrite_aof=true", "--yes")
    assert code == 0, {k: (v["state"], v.get("error")) for k, v in steps.items()}
    assert steps["rewrite_aof"]["state"] == "ok"
    assert steps["aof_after"]["state"] == "ok"
    assert steps["aof_after"]["metrics"]["redis_aof_size_after"]["value"] > 0
    assert client.info("persistence")["aof_rewrites"] == rewrites + 1


def test_flushdb_needs_its_confirmation_and_then_empties_the_database(
    tmp_path: Path, own_redis: OwnRedis
) -> None:
    client = fill(own_redis)
    code, steps = run(tmp_path, own_redis, "-p", "flush_db=true")
    assert code == 4 and steps["flush"]["state"] == "aborted"
    assert client.dbsize() == 51  # declined: nothing lost
    code, steps = run(tmp_path, own_redis, "-p", "flush_db=true", "--dry-run")
    assert code in (0, 1, 2) and steps["flush"]["state"] == "skipped"
    assert client.dbsize() == 51
    code, steps = run(tmp_path, own_redis, "-p", "flush_db=true", "--yes")
    assert code == 0, steps
    assert steps["flushed"]["state"] == "ok"
    assert client.dbsize() == 0


def clear_cache_cmd(server: OwnRedis, prefix: str) -> str:
    """What Django's `manage.py clear_cache` does to Redis, as a real command:
    delete the keys of the cache's prefix in database 3, nothing else."""
    cli = f"redis-cli -p {server.port} -n 3"
    return f"{cli} --scan --pattern '{prefix}*' | xargs -r {cli} DEL"


def test_the_cache_clearing_command_needs_its_confirmation_and_shows_its_effect(
    tmp_path: Path, own_redis: OwnRedis
) -> None:
    client = fill(own_redis)  # 51 keys that are not the cache's
    for i in range(30):
        client.set(f"django:cache:{i}", i)
    cmd = clear_cache_cmd(own_redis, "django:cache:")

    # The command from the host's vars; declined without --yes: nothing deleted.
    code, steps = run(tmp_path, own_redis, "-p", "clear_cache=true", clear_cache_cmd=cmd)
    assert code == 4 and steps["clear_cache"]["state"] == "aborted"
    assert steps["clear_cache_before"]["value"] == 81
    # The question names the command and the key count it starts from.
    assert f"Run `{cmd}` on cache1?" in steps["clear_cache"]["error"]
    assert "holds 81 keys now" in steps["clear_cache"]["error"]
    assert client.dbsize() == 81
    code, steps = run(
        tmp_path, own_redis, "-p", "clear_cache=true", "--dry-run", clear_cache_cmd=cmd
    )
    assert code in (0, 1, 2) and steps["clear_cache"]["state"] == "skipped"
    assert client.dbsize() == 81

    # Confirmed: the cache's keys are gone, the others stay, and the counts say so.
    code, steps = run(
        tmp_path, own_redis, "-p", "clear_cache=true", "-p", f"clear_cache_cmd={cmd}", "--yes"
    )
    assert code == 0, {k: (v["state"], v.get("error")) for k, v in steps.items()}
    assert steps["clear_cache"]["state"] == "ok"
    assert list(client.scan_iter(match="django:cache:*")) == []
    assert client.dbsize() == 51 and client.exists("big:blob", "small:0") == 2
    assert steps["clear_cache_before"]["metrics"]["redis_keys_before_clear"]["value"] == 81
    after = steps["clear_cache_after"]["metrics"]
    assert after["redis_keys_after_clear"]["value"] == 51
    assert after["redis_keys_cleared"]["value"] == 30
    assert "cache cleared: 81 keys before, 51 after" in steps["summary"]["message"]


def test_the_cache_is_cleared_only_when_asked_even_with_the_command_in_the_inventory(
    tmp_path: Path, own_redis: OwnRedis
) -> None:
    """The runbook runs every 30 minutes with --yes from cron: the host var
    alone must not empty the cache each time."""
    client = fill(own_redis)
    for i in range(5):
        client.set(f"django:cache:{i}", i)
    cmd = clear_cache_cmd(own_redis, "django:cache:")
    code, steps = run(tmp_path, own_redis, "--yes", clear_cache_cmd=cmd)
    assert code == 0
    assert steps["clear_cache_before"]["state"] == steps["clear_cache"]["state"] == "skipped"
    assert steps["clear_cache_after"]["state"] == "skipped"
    assert client.dbsize() == 56
    # Asked for with no command anywhere: a clear error, nothing run.
    code, steps = run(tmp_path, own_redis, "-p", "clear_cache=true", "--yes")
    assert steps["clear_cache_cmd"]["state"] == "failed"
    assert "needs the command" in steps["clear_cache_cmd"]["error"]
    assert client.dbsize() == 56 and code == 3
