"""`runbook worker` refuses to start without what it needs, and says what."""

from __future__ import annotations

import pytest

from tests.helpers import cli


def test_new_key_prints_a_usable_key() -> None:
    from engine.distributed.seal import Sealer

    result = cli("worker", "--new-key")
    key = result.stdout.strip()
    assert result.exit_code == 0 and len(key) >= 32
    assert Sealer(key).open(Sealer(key).seal("x")) == "x"


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        ([], {}, "--zone ZONE is required"),
        (["--zone", "bad zone"], {}, "--zone: "),
        (
            ["--zone", "eu-dc1"],
            {"RUNBOOK_BROKER": ""},
            "no broker: pass --broker URL or set RUNBOOK_BROKER",
        ),
        (
            ["--zone", "eu-dc1", "--broker", "redis://127.0.0.1:6379/9"],
            {"RUNBOOK_WORKER_KEY": ""},
            "runbook worker --new-key",
        ),
    ],
)
def test_usage_errors_exit_64_and_say_why(
    args: list[str], env: dict[str, str], said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNBOOK_WORKER_KEY_FILE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli("worker", *args)
    assert result.exit_code == 64, result.output
    assert said in result.output
