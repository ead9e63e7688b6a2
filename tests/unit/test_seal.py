"""Sealing what crosses the broker: only the deployment key opens it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.distributed.seal import Sealer, Unauthenticated, load_key, new_key
from engine.errors import UsageError


def test_a_sealed_object_opens_with_the_same_key_only() -> None:
    key = new_key()
    token = Sealer(key).seal({"secret": "hunter2-very-secret", "n": 1})
    assert "hunter2" not in token  # encrypted, not only signed
    assert Sealer(key).open(token) == {"secret": "hunter2-very-secret", "n": 1}
    with pytest.raises(Unauthenticated, match="RUNBOOK_WORKER_KEY differs"):
        Sealer(new_key()).open(token)


def test_a_tampered_token_is_refused_before_it_is_unpickled() -> None:
    sealer = Sealer(new_key())
    token = sealer.seal(["a", "b"])
    flipped = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    with pytest.raises(Unauthenticated):
        sealer.open(flipped)
    with pytest.raises(Unauthenticated):
        sealer.open("not a token at all")


def test_an_old_token_is_refused_when_a_ttl_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.distributed.seal as seal

    sealer = Sealer(new_key())
    real = time.time()
    monkeypatch.setattr(seal.time, "time", lambda: real - 3600)  # sealed an hour ago
    old = sealer.seal("walk")
    monkeypatch.setattr(seal.time, "time", lambda: real)
    with pytest.raises(Unauthenticated, match="expired"):
        sealer.open(old, ttl=60)
    assert sealer.open(old, ttl=7200) == "walk"
    assert sealer.open(sealer.seal("walk"), ttl=60) == "walk"


def test_the_sealing_time_cannot_be_changed() -> None:
    """The time is authenticated with the body: making a token look fresh breaks it."""
    import base64

    sealer = Sealer(new_key())
    raw = bytearray(base64.urlsafe_b64decode(sealer.seal("walk")))
    raw[8] ^= 1  # the time's last byte
    with pytest.raises(Unauthenticated):
        sealer.open(base64.urlsafe_b64encode(bytes(raw)).decode())


def test_the_key_comes_from_the_environment_or_its_file(tmp_path: Path) -> None:
    key = new_key()
    assert load_key({"RUNBOOK_WORKER_KEY": key}) == key
    path = tmp_path / "worker.key"
    path.write_text(key + "\n")
    assert load_key({"RUNBOOK_WORKER_KEY_FILE": str(path)}) == key


@pytest.mark.parametrize(
    ("environ", "said"),
    [
        ({}, "set RUNBOOK_WORKER_KEY (or RUNBOOK_WORKER_KEY_FILE)"),
        ({"RUNBOOK_WORKER_KEY": "short"}, "too short (5 characters, at least 32)"),
        ({"RUNBOOK_WORKER_KEY_FILE": "/nonexistent/worker.key"}, "cannot read"),
    ],
)
def test_no_usable_key_is_a_usage_error_saying_how(environ: dict[str, str], said: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_key(environ)
    assert said in str(caught.value)


def test_a_bug_in_a_distributed_log_is_redacted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller's and workers' logs are outputs: no secret, no traceback
    unless RUNBOOK_DEBUG asks for it."""
    import logging

    from engine.distributed.logs import log_bug
    from engine.redaction import Redactor

    redactor = Redactor()
    redactor.add("s3cr3t-value-91")
    monkeypatch.delenv("RUNBOOK_DEBUG", raising=False)
    with caplog.at_level(logging.ERROR):
        log_bug(logging.getLogger("t"), redactor, ValueError("bad s3cr3t-value-91"), "walking h1")
    assert "walking h1: internal error: ValueError: bad ***" in caplog.text
    assert "s3cr3t-value-91" not in caplog.text
    assert caplog.records[0].exc_info is None
