"""Secret backend references: how `secret('vault:...')` & co. are read, how a key
picks a value, and the per-run cache (one fetch per document, across threads).

The cache tests give Backends a reader of their own: pure logic, no server. The
backends themselves meet real servers in tests/integration/test_secret_backends.py.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from engine.errors import SecretError
from engine.redaction import Redactor
from engine.secret_backends import Backends, SecretRef, parse_ref
from engine.secret_backends.refs import FetchError, as_text, pick
from engine.secrets import Secrets


@pytest.mark.parametrize(
    ("text", "backend", "mount", "location", "key"),
    [
        ("vault:app/db#password", "vault", "secret", "app/db", "password"),
        ("vault:kv-prod:app/db#password", "vault", "kv-prod", "app/db", "password"),
        ("vault:/app/db/#db.password", "vault", "secret", "app/db", "db.password"),
        ("aws:prod/db", "aws", "", "prod/db", ""),
        ("aws:prod/db#password", "aws", "", "prod/db", "password"),
        (
            "aws:arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf#pw",
            "aws",
            "",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
            "pw",
        ),
        (
            "sops:secrets/prod.enc.yaml#db.password",
            "sops",
            "",
            "secrets/prod.enc.yaml",
            "db.password",
        ),
    ],
)
def test_references_are_read_into_their_parts(
    text: str, backend: str, mount: str, location: str, key: str
) -> None:
    assert parse_ref(text) == SecretRef(text, backend, location, key, mount)


@pytest.mark.parametrize("name", ["API_TOKEN", "db_password", "gcp:thing", "VAULT"])
def test_plain_names_are_no_reference(name: str) -> None:
    assert parse_ref(name) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("vault:app/db", "no key: name the value with #KEY"),
        ("sops:prod.yaml", "no key"),
        ("aws:db#", "nothing after '#'"),
        ("aws:#pw", "no path or name"),
        ("sops:#pw", "no file"),
        ("vault::app#k", "an empty mount"),
        ("vault:kv:#k", "no path or name"),
    ],
)
def test_malformed_references_say_what_is_wrong_and_the_syntax(text: str, says: str) -> None:
    with pytest.raises(SecretError) as caught:
        parse_ref(text)
    message = str(caught.value)
    assert repr(text) in message and says in message
    assert text.partition(":")[0] + ":" in message.rpartition("write ")[2]  # the syntax


DOC = {
    "db": {"password": "pw-1", "port": 5432, "replicas": [{"host": "r1"}, {"host": "r2"}]},
    "tls.crt": "CERT",
    "tls": {"key": "KEY"},
    "on": True,
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("db.password", "pw-1"),
        ("db.port", "5432"),
        ("db.replicas.1.host", "r2"),
        ("tls.crt", "CERT"),  # a key holding a dot, matched whole
        ("tls.key", "KEY"),
        ("on", "true"),
    ],
)
def test_a_key_path_picks_one_value(path: str, value: str) -> None:
    assert as_text(pick(DOC, path), path) == value


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("db.nope", "no key 'nope' under 'db' (keys there: password, port, replicas)"),
        ("nope", "no key 'nope' (keys there: db, on, tls, tls.crt)"),
        ("db.replicas.7", "no item '7'"),
        ("db.password.x", "'db.password' is a single value"),
    ],
)
def test_a_missing_key_names_what_is_there_never_a_value(path: str, says: str) -> None:
    with pytest.raises(FetchError) as caught:
        pick(DOC, path)
    assert says in str(caught.value)
    assert "pw-1" not in str(caught.value)


def test_a_mapping_or_null_is_not_a_value() -> None:
    with pytest.raises(FetchError, match="'db' is a mapping, not a value: name a key below it"):
        as_text(pick(DOC, "db"), "db")
    with pytest.raises(FetchError, match="is empty"):
        as_text(None, "x")


class CountingReader:
    """Counts its reads; `all_asked` lets the test's threads ask together."""

    def __init__(self, documents: dict[str, Any], callers: int) -> None:
        self.documents = documents
        self.reads: list[str] = []
        self.all_asked = threading.Barrier(callers, timeout=10)
        self._lock = threading.Lock()

    def read(self, ref: SecretRef) -> Any:
        with self._lock:
            self.reads.append(ref.location)
        if ref.location not in self.documents:
            raise FetchError(f"no secret at {ref.location}")
        return self.documents[ref.location]


def test_each_document_is_fetched_once_while_many_hosts_ask_at_once() -> None:
    reader = CountingReader({"app/db": {"user": "app-user", "password": "pw-Kq81"}}, callers=8)
    redactor = Redactor()
    backends = Backends(redactor, {}, readers={"vault": reader})
    ref = parse_ref("vault:app/db#password")
    assert ref is not None
    results: list[str] = []

    def host() -> None:
        reader.all_asked.wait()  # all eight ask together
        results.append(backends.get(ref))

    threads = [threading.Thread(target=host) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other = parse_ref("vault:app/db#user")
    assert other is not None and backends.get(other) == "app-user"  # same document
    assert results == ["pw-Kq81"] * 8
    assert reader.reads == ["app/db"]
    assert redactor.text("pw-Kq81 app-user") == "*** ***"


def test_a_failure_is_kept_and_names_the_reference_never_a_value() -> None:
    reader = CountingReader({}, callers=1)
    backends = Backends(Redactor(), {}, readers={"aws": reader})
    ref = parse_ref("aws:prod/missing#pw")
    assert ref is not None
    for _ in range(3):
        with pytest.raises(SecretError, match=r"secret 'aws:prod/missing#pw': no secret at"):
            backends.get(ref)
    assert reader.reads == ["prod/missing"]  # asked once, not once per host


def test_a_whole_json_secret_masks_each_of_its_fields() -> None:
    # A template holding the whole secret may pick and print one field itself.
    reader = CountingReader({"db": '{"username": "svc-Lx2", "password": "pw-Zz9"}'}, callers=1)
    redactor = Redactor()
    ref = parse_ref("aws:db")
    assert ref is not None
    value = Backends(redactor, {}, readers={"aws": reader}).get(ref)
    assert value == '{"username": "svc-Lx2", "password": "pw-Zz9"}'
    assert redactor.text("svc-Lx2 / pw-Zz9") == "*** / ***"


def test_a_key_of_a_plain_text_secret_says_to_drop_it() -> None:
    reader = CountingReader({"token": "plain-token-Q1"}, callers=1)
    ref = parse_ref("aws:token#x")
    assert ref is not None
    with pytest.raises(SecretError, match="not JSON, so it has no keys") as caught:
        Backends(Redactor(), {}, readers={"aws": reader}).get(ref)
    assert "plain-token-Q1" not in str(caught.value)


def test_plain_names_still_come_from_the_environment_with_a_hint_for_prefixes() -> None:
    secrets = Secrets(Redactor(), environ={"API_TOKEN": "tok-123"})
    assert secrets("API_TOKEN") == "tok-123"
    with pytest.raises(SecretError, match="vault:, aws: or sops:"):
        secrets("gcp:thing")


def test_vault_without_an_address_or_credentials_says_what_to_export() -> None:
    secrets = Secrets(Redactor(), environ={})
    with pytest.raises(SecretError, match="secret 'vault:app#k': VAULT_ADDR is not set"):
        secrets("vault:app#k")


def test_vault_unreachable_names_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # A closed port on this machine: a real refusal, no server needed.
    environ = {"VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "root-tok-Xp4"}
    with pytest.raises(SecretError) as caught:
        Secrets(Redactor(), environ=environ)("vault:app/db#password")
    message = str(caught.value)
    assert message.startswith("secret 'vault:app/db#password': Vault at http://127.0.0.1:9: ")
    assert "cannot connect" in message and "root-tok-Xp4" not in message


def test_vault_without_hvac_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)  # what `import hvac` meets when not installed
    environ = {"VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "root-tok-Xp4"}
    with pytest.raises(SecretError, match=r"needs hvac: pip install 'runbook-engine\[vault\]'"):
        Secrets(Redactor(), environ=environ)("vault:app/db#password")
