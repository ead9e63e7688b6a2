"""Secrets of awkward shapes, shown in the forms output encodes them in, are masked
in every channel: console, JSON, JUnit, HTML, history (text, JSON, redrawn
reports), the history database's bytes and the --keep-output files.

The forms are made here, independently of engine/redaction.py, so the test
does not grade the engine with its own answers.
"""

from __future__ import annotations

import base64
import json
import shlex
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.helpers import cli, write

QUOTES = "fs-Sp\"ec'ial\\x-Q7"  # a double quote, a single quote, a backslash
UNICODE = "pässwörd-Ω-Zz81"
URLISH = "a&b=c/d?e#f %g+h-K3"
PEM = (
    "-----BEGIN TEST KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END TEST KEY-----"
)
PEM_LINE = PEM.splitlines()[1]
FILE_ONLY = "never-read-by-secret()-Jx4"  # in the --secrets file, never asked for
ENV_PASSWORD = "env-pw-Lm92-Qx"  # read as env.DEPLOY_PASSWORD, not secret()


def forms(secret: str) -> set[str]:
    """The secret as JSON, a shell, a URL or base64 would carry it."""
    out = {secret}
    variants = [secret, secret.replace("\n", "\r\n")] if "\n" in secret else [secret]
    for text in variants:
        out |= {
            text,
            json.dumps(text)[1:-1],
            json.dumps(text, ensure_ascii=False)[1:-1],
            shlex.quote(text),
            quote(text),  # Jinja's urlencode keeps "/"
            quote(text, safe=""),
            quote_plus(text),
            base64.b64encode(text.encode()).decode(),
        }
    if "\n" in secret:
        out |= {line for line in secret.splitlines() if len(line) >= 3}
    return out


def leaks(text: str, secrets: list[str]) -> list[str]:
    """The forms of `secrets` found in `text` (the leak scan)."""
    return sorted({f for s in secrets for f in forms(s) if f in text})


RUNBOOK = """
runbook: secret-shapes
params:
  quotes: {type: str, secret: true}
  unicode: {type: str, secret: true}
  urlish: {type: str, secret: true}
steps:
  - name: plain
    shell: "printf '%s\\n' {{ params.quotes | quote }} {{ params.unicode | quote }}"
  - name: as json
    log: "{{ {'q': params.quotes, 'u': params.unicode, 'x': params.urlish} | to_json }}"
  - name: url encoded
    log: "{{ params.urlish | urlencode }} {{ params.quotes | urlencode }}"
  - name: base64
    shell: "printf %s {{ params.quotes | quote }} | base64"
  - name: the pem whole and one line alone
    shell: "printf '%s\\n' {{ secret('PEM') | quote }}; printf '%s\\n' {{ secret('PEM') | quote }} | sed -n 2p"
  - name: the pem with crlf
    shell: "printf '%s' {{ secret('PEM') | quote }} | sed 's/$/\\\\r/'"
  - name: the secrets file printed without secret()
    shell: "cat {{ vars.secrets_file | quote }}"
  - name: env by a secret name
    shell: "echo {{ env.DEPLOY_PASSWORD | quote }} {{ env.RUNBOOK_TEST_PLAIN | quote }}"
  - name: dry run text
    shell: "mysql -p{{ params.quotes | quote }} -e 'select 1'"
    when: false
  - name: a failure that quotes them
    assert:
      that: ["false"]
      message: "refused {{ params.quotes | to_json }} {{ params.urlish | urlencode }}"
    ignore_errors: true
"""

ALL = [QUOTES, UNICODE, URLISH, PEM, FILE_ONLY, ENV_PASSWORD]


@pytest.fixture
def shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The arguments of a run holding every awkward secret."""
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text(json.dumps({"PEM": PEM, "UNUSED": FILE_ONLY}))
    secrets_file.chmod(0o600)
    monkeypatch.setenv("DEPLOY_PASSWORD", ENV_PASSWORD)
    monkeypatch.setenv("RUNBOOK_TEST_PLAIN", "plain-env-value")
    return [
        "-p", f"quotes={QUOTES}", "-p", f"unicode={UNICODE}", "-p", f"urlish={URLISH}",
        "--secrets", str(secrets_file), "-e", f"secrets_file={secrets_file}",
    ]  # fmt: skip


def test_every_shape_and_form_is_masked_in_every_channel(
    tmp_path: Path, shapes: list[str], runbook_home: Path
) -> None:
    rb = write(tmp_path, RUNBOOK)
    junit, html = tmp_path / "out.xml", tmp_path / "out.html"
    console = cli("run", rb, *shapes, "-vv", "--junit", junit, "--report", html, "--keep-output")
    assert console.exit_code == 0, console.output
    as_json = cli("run", rb, *shapes, "--format", "json")
    dry = cli("run", rb, *shapes, "--dry-run", "-vv")
    assert as_json.exit_code == 0 and dry.exit_code == 0

    channels = {
        "console -vv": console.output,
        "--format json": as_json.output,
        "--dry-run -vv": dry.output,
        "JUnit": junit.read_text(),
        "HTML": html.read_text(),
    }
    for run in json.loads(cli("history", "--format", "json").stdout):
        channels[f"history {run['id']}"] = cli("history", run["id"], "-v").output
        channels[f"history {run['id']} json"] = cli("history", run["id"], "--format", "json").output
        again = tmp_path / f"{run['id']}.html"
        cli("history", run["id"], "--report", again)
        channels[f"redrawn {run['id']}"] = again.read_text()
    for path in runbook_home.iterdir():  # the database, its WAL: raw bytes
        if path.is_file():
            channels[f"bytes of {path.name}"] = path.read_bytes().decode("utf-8", "replace")
    kept = sorted((runbook_home / "output").rglob("*.std*"))  # --keep-output files
    assert len(kept) >= 10
    for path in kept:
        channels[f"kept {path.name}"] = path.read_bytes().decode("utf-8", "replace")

    found = {where: leaks(text, ALL) for where, text in channels.items()}
    assert {where: f for where, f in found.items() if f} == {}

    # Not vacuous: the steps ran, printed, and were masked where they printed.
    doc = json.loads(as_json.stdout)
    steps = {s["id"]: s for s in doc["hosts"]["localhost"]["steps"]}
    assert steps["plain"]["data"]["stdout"].count("***") == 2
    assert steps["env_by_a_secret_name"]["data"]["stdout"].strip() == "*** plain-env-value"
    assert "***" in steps["the_secrets_file_printed_without_secret"]["data"]["stdout"]
    assert steps["the_pem_whole_and_one_line_alone"]["data"]["stdout"].count("***") >= 2


def test_the_scan_finds_what_it_looks_for() -> None:
    # The scanner itself: each encoded form of each shape is recognised.
    for secret in ALL:
        for form in forms(secret):
            assert leaks(f"x {form} y", [secret]), (secret, form)
    assert leaks("nothing here", ALL) == []
