"""The step-type registry and the redactor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import SecretError
from engine.redaction import Redactor
from engine.registry import Registry, RegistryError
from engine.secrets import Secrets
from engine.steps.base import step_types


def test_registry_refuses_duplicates_and_suggests() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("shell", 1)
    with pytest.raises(RegistryError, match="twice"):
        reg.register("shell", 2)
    with pytest.raises(RegistryError, match="did you mean `shell`"):
        reg.get("shel")


def test_builtin_step_types_are_registered() -> None:
    names = set(step_types.names())
    assert {
        "shell",
        "sql",
        "redis",
        "http",
        "s3",
        "assert",
        "set",
        "log",
        "wait",
        "manual",
        "include",
        "block",
    } <= names


def test_redactor_masks_nested_and_longest_first() -> None:
    r = Redactor()
    r.add("hunter2")
    r.add("hunter2-extended")
    data = {"a": ["x hunter2-extended y", b"hunter2"], "b": 3}
    assert r(data) == {"a": ["x *** y", "***"], "b": 3}


def test_secrets_from_env_and_file(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("DB_PASS: from-file\n")
    os.chmod(f, 0o600)
    r = Redactor()
    s = Secrets(r, f, environ={"TOKEN": "from-env", "DB_PASS": "env-loses"})
    assert s("DB_PASS") == "from-file"
    assert s("TOKEN") == "from-env"
    assert r("from-file from-env") == "*** ***"
    with pytest.raises(SecretError, match="NOPE"):
        s("NOPE")


def test_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("A: b\n")
    os.chmod(f, 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        Secrets(Redactor(), f)


def test_lazy_entry_loaded_once_when_threads_race() -> None:
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from engine.registry import Registry

    calls: list[int] = []
    start = threading.Barrier(8)

    def slow_loader() -> object:
        calls.append(1)
        time.sleep(0.05)  # wide window: every other thread asks meanwhile
        return object()

    reg: Registry[object] = Registry("thing")
    reg.register_lazy("local", slow_loader)

    def get(_: int) -> object:
        start.wait()
        return reg.get("local")

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(get, range(8)))
    assert len(calls) == 1
    assert all(item is got[0] for item in got)
