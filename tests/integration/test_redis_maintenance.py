"""runbooks/redis-cache-health.yaml's maintenance part against a Redis of the
test's own (never the shared one: it empties databases): biggest keys,
clients, persistence, a confirmed AOF rewrite and a confirmed FLUSHDB."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
import yaml

from tests.fixtures.own_redis import OwnRedis
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "redis-cache-health.yaml"


def inventory(tmp_path: Path, server: OwnRedis) -> Path:
    path = tmp_path / "cache.yaml"
    cache = {"address": "127.0.0.1", "vars": {"redis_port": server.port, "redis_db": 3}}
    doc = {"defaults": {"connection": "local"}, "groups": {"caches": {"hosts": {"cache1": cache}}}}
    path.write_text(yaml.safe_dump(doc))
    return path


def run(tmp_path: Path, server: OwnRedis, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    code, doc = run_json(RUNBOOK, "-i", str(inventory(tmp_path, server)), *args)
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
