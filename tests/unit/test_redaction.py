"""engine.redaction: passwords out of DSNs and URLs, and events as processors see them."""

from __future__ import annotations

import pytest

from engine.redaction import dsn_passwords, redact_dsn, scrub
from engine.steps.base import get_step_type


@pytest.mark.parametrize(
    ("dsn", "shown", "secrets"),
    [
        ("postgresql://app:s3cret@db1:5432/app", "postgresql://app:***@db1:5432/app", ["s3cret"]),
        ("postgres://app:p%40ss@db1/app", "postgres://app:***@db1/app", ["p%40ss", "p@ss"]),
        (
            "postgresql://app@db1/app?sslmode=require&password=qwerty",
            "postgresql://app@db1/app?sslmode=require&password=***",
            ["qwerty"],
        ),
        ("postgresql://app@db1/app", "postgresql://app@db1/app", []),
        (
            "host=db1 user=app password=s3cret dbname=x",
            "host=db1 user=app password=*** dbname=x",
            ["s3cret"],
        ),
        ("host=db1 password = 'a b\\'c' dbname=x", "host=db1 password=*** dbname=x", ["a b'c"]),
        ("host=db1 dbname=x", "host=db1 dbname=x", []),
        ("redis://:hunter22@cache:6379/0", "redis://:***@cache:6379/0", ["hunter22"]),
        ("rediss://default:hunter22@cache", "rediss://default:***@cache", ["hunter22"]),
        ("redis://cache:6379/1", "redis://cache:6379/1", []),
        ("", "", []),
    ],
)
def test_redact_and_passwords(dsn: str, shown: str, secrets: list[str]) -> None:
    assert redact_dsn(dsn) == shown
    assert sorted(dsn_passwords(dsn)) == sorted(secrets)
    for secret in secrets:
        assert secret not in redact_dsn(dsn)


def test_scrub_masks_the_password_anywhere() -> None:
    dsn = "postgresql://u:Zx9-pw@h/db"
    assert scrub("failed for Zx9-pw at h", dsn) == "failed for *** at h"


def test_dumped_specs_never_show_passwords() -> None:
    sql = get_step_type("sql").Spec.model_validate(
        {"dsn": "postgresql://u:Zx9-pw@h/db", "query": "select 1"}
    )
    redis = get_step_type("redis").Spec.model_validate(
        {"url": "redis://:Zx9-pw@h:6379/0", "command": "PING"}
    )
    assert "Zx9-pw" not in str(sql.model_dump()) and "Zx9-pw" not in str(redis.model_dump())
    assert sql.dsn == "postgresql://u:Zx9-pw@h/db"  # the real value is still there to connect


def test_an_event_type_without_rules_of_its_own_is_redacted_whole() -> None:
    from dataclasses import dataclass

    from engine.events import Event
    from engine.redaction import Redactor

    @dataclass
    class Note(Event):
        text: str
        tags: list[str]
        count: int = 0
        kind = "note"

    redactor = Redactor()
    redactor.add("s3cr3t-value")
    note = Note("run-1", text="uses s3cr3t-value", tags=["s3cr3t-value", "ok"], count=2)
    shown = note.redacted(redactor)
    assert (shown.text, shown.tags, shown.count, shown.run_id) == (
        "uses ***",
        ["***", "ok"],
        2,
        "run-1",
    )
    assert note.redacted(Redactor()) is note  # nothing to hide: the event as it is


def test_identifiers_are_never_masked() -> None:
    # A secret that merely equals a host, step or directory name must not break
    # what history keys by (host, step id) or what resume reads back (path, hosts).
    from engine.events import RunStarted, StepStarted
    from engine.redaction import Redactor

    redactor = Redactor()
    redactor.add("postgres")
    started = RunStarted(
        "r", runbook="pg", path="/srv/postgres/rb.yaml", hosts=["postgres1"],
        params={"pw": "postgres"}, operator="ops", dry_run=False,
        inventory="/etc/postgres.yaml",
    )  # fmt: skip
    shown = started.redacted(redactor)
    assert (shown.path, shown.hosts, shown.inventory) == (
        "/srv/postgres/rb.yaml",
        ["postgres1"],
        "/etc/postgres.yaml",
    )
    assert shown.params == {"pw": "***"}
    step = StepStarted("r", host="postgres1", step_id="postgres_check", name="check postgres")
    shown_step = step.redacted(redactor)
    assert (shown_step.host, shown_step.step_id) == ("postgres1", "postgres_check")
    # A name is rendered from templates, so it is text like any other: masked.
    assert shown_step.name == "check ***"


def test_url_passwords_and_credential_query_params_are_masked() -> None:
    from engine.redaction import redact_dsn

    assert redact_dsn("http://admin:pw@127.0.0.1:8080/x") == "http://admin:***@127.0.0.1:8080/x"
    assert redact_dsn("https://example.org/a?b=1") == "https://example.org/a?b=1"
    assert redact_dsn("https://h/a?token=t0k&b=1") == "https://h/a?token=***&b=1"


def test_scrub_masks_a_dsn_too_odd_to_parse_where_it_is_quoted_whole() -> None:
    from engine.redaction import scrub

    dsn = "postgresql://u:pw-odd-99@[not-an-ipv6/x"
    shown = scrub(f"cannot connect to {dsn}: invalid", dsn)
    assert "pw-odd-99" not in shown and "postgresql://u:***@" in shown


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DEPLOY_PASSWORD", True),
        ("GITHUB_TOKEN", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("db_pass", True),
        ("api_key", True),
        ("KEYBOARD", False),
        ("AUTHOR", False),
        # Where a secret lives is not the secret: paths are shown.
        ("backup_key_file", False),
        ("TLS_KEY_PATH", False),
        ("password_file", False),
        ("ssh_private_key_file", False),
    ],
)
def test_which_names_hold_secrets(name: str, secret: bool) -> None:
    from engine.redaction import looks_secret

    assert looks_secret(name) is secret
