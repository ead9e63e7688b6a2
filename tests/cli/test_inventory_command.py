"""`runbook inventory`, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "inventories" / "example.yaml")

SECRETIVE = """\
defaults: {user: ops}
vars: {db_password: hunter2, region: eu}
hosts:
  db1:
    address: 10.0.1.10
    password: "{{ secret('DB1_SSH_PASSWORD') }}"
    vars: {api_token: t0ps3cret, backup_key_file: /etc/ops/backup.key}
"""


@pytest.fixture(autouse=True)
def _no_ssh_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(tmp_path / "no-such-ssh-config"))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["inventory", *args])


def test_text_shows_the_tree_connections_and_merged_vars() -> None:
    result = invoke("-i", EXAMPLE)
    assert result.exit_code == 0, result.output
    out = result.output
    tree = out[out.index("@all") : out.index("\n\ndb1")]
    assert tree.splitlines() == [
        "@all:",
        "  s3_bucket = backups",
        "  @prod",
        "    @databases:",
        "      pg_user = postgres",
        "      db1",
        "      db2",
        "    @caches",
        "      cache1",
        "  @ungrouped",
        "    bastion",
    ]
    assert "db2  ssh ops@10.0.1.11:2222  key ~/.ssh/id_ed25519  host keys strict" in out
    section = out[out.index("\ndb2  ") :].split("\n\n")[0]
    assert "    replica: true" in section and "    pg_user: postgres" in section


def test_limit_narrows_tree_and_hosts() -> None:
    result = invoke("-i", EXAMPLE, "--limit", "prod:!databases")
    assert result.exit_code == 0, result.output
    assert "cache1" in result.output
    assert "db1" not in result.output and "bastion" not in result.output
    assert "@databases" not in result.output
    assert "(native, 1 of 4 hosts" in result.output


def test_json_output() -> None:
    result = invoke("-i", EXAMPLE, "--format", "json", "-l", "databases")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data["hosts"]) == ["db1", "db2"]
    assert data["hosts"]["db2"]["port"] == 2222
    assert data["hosts"]["db2"]["vars"]["replica"] is True
    assert set(data["groups"]) == {"all", "prod", "databases"}
    assert len(data["digest"]) == 64


def test_host_shows_resolved_fields_and_never_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(SECRETIVE)
    result = invoke("-i", str(path), "--host", "db1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "db1"
    assert "  address: 10.0.1.10" in lines
    assert "  user: ops" in lines
    assert "  password: ***" in lines
    assert "  connection: ssh  # default" in lines
    assert "    region: eu" in lines
    assert "    backup_key_file: /etc/ops/backup.key" in lines  # a path, not a secret
    for secret in ("DB1_SSH_PASSWORD", "hunter2", "t0ps3cret"):
        assert secret not in result.output
    data = json.loads(invoke("-i", str(path), "--host", "db1", "--format", "json").output)
    assert data["password"] == "***" and data["vars"]["db_password"] == "***"
    full = invoke("-i", str(path)).output + invoke("-i", str(path), "--format", "json").output
    for secret in ("DB1_SSH_PASSWORD", "hunter2", "t0ps3cret"):
        assert secret not in full


def test_default_inventory_is_localhost() -> None:
    result = invoke("--host", "localhost")
    assert result.exit_code == 0
    assert "  connection: local" in result.output and "  address: 127.0.0.1" in result.output


def test_invalid_inventory_exits_65_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("hosts:\n  db1: {prot: 22}\ngroups:\n  g: {children: [nope]}\n")
    result = invoke("-i", str(path))
    assert result.exit_code == 65
    assert f"{path}:2:9: hosts.db1.prot: unknown key 'prot' (did you mean `port`?)" in result.stderr
    assert f"{path}:4:18: group 'g' has unknown child group 'nope'" in result.stderr
    assert result.stdout == ""


def test_a_pattern_matching_nothing_exits_64() -> None:
    result = invoke("-i", EXAMPLE, "--limit", "databses")
    assert result.exit_code == 64
    assert "did you mean `databases`?" in result.stderr
    result = invoke("-i", EXAMPLE, "--host", "db9")
    assert result.exit_code == 64
    assert "no host named 'db9'" in result.stderr
    result = invoke("-i", EXAMPLE, "--host", "db1", "--limit", "caches")
    assert result.exit_code == 64
