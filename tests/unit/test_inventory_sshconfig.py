"""~/.ssh/config fills what the inventory leaves unset, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InventoryInvalid
from engine.inventory.host import Host
from engine.inventory.loader import load_inventory
from engine.inventory.sshconfig import apply_ssh_config

CONFIG = """\
Host db1
  HostName 10.9.9.9
  User sshuser
  Port 2200
  IdentityFile {keys}/missing_key
  IdentityFile {keys}/db1_key
  ProxyJump jumper@jump.example.com:22

Host 10.0.1.*
  User netuser
  ProxyJump none

Host *
  User fallback
  IdentityFile {keys}/default
"""

INVENTORY = """\
defaults: {connection: ssh}
hosts:
  db1: {}
  db2: {address: 10.0.1.11, port: 2222}
  db3: {address: 10.0.1.12, user: inventoryuser, key_file: /keys/mine}
  local1: {connection: local}
"""


def config_text(tmp_path: Path) -> str:
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    for name in ("db1_key", "default"):
        (keys / name).write_text("not really a key\n")
    return CONFIG.format(keys=keys)


@pytest.fixture
def ssh_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(config_text(tmp_path))
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(path))
    return path


def test_load_inventory_applies_the_config_to_unset_fields_only(
    tmp_path: Path, ssh_config: Path
) -> None:
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    inv = load_inventory(tmp_path / "inv.yaml")
    db1 = inv.get("db1")
    assert (db1.address, db1.user, db1.port) == ("10.9.9.9", "sshuser", 2200)
    assert db1.key_file == str(tmp_path / "keys" / "db1_key")  # the first that exists
    assert db1.jump == "jumper@jump.example.com:22"
    assert db1.explicit == {"connection"}  # what the config filled is not the inventory's
    # looked up by its address: `Host 10.0.1.*` first, `Host *` only for the rest
    db2 = inv.get("db2")
    assert (db2.address, db2.port, db2.user) == ("10.0.1.11", 2222, "netuser")
    assert db2.key_file == str(tmp_path / "keys" / "default")
    assert db2.jump is None  # ProxyJump none
    db3 = inv.get("db3")
    assert (db3.user, db3.key_file) == ("inventoryuser", "/keys/mine")
    # local hosts are not ssh hosts
    local1 = inv.get("local1")
    assert (local1.user, local1.key_file) == (None, None)


def test_inventory_defaults_win_over_the_config(tmp_path: Path, ssh_config: Path) -> None:
    (tmp_path / "inv.yaml").write_text("defaults: {user: ops, port: 22}\nhosts: {db1: {}}\n")
    db1 = load_inventory(tmp_path / "inv.yaml").get("db1")
    assert (db1.user, db1.port, db1.address) == ("ops", 22, "10.9.9.9")


def test_apply_with_an_explicit_path_returns_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "cfg"
    path.write_text(config_text(tmp_path))
    host = Host(name="db1", connection="ssh")
    filled = apply_ssh_config(host, path)
    assert (filled.address, filled.user) == ("10.9.9.9", "sshuser")
    assert (host.address, host.user) == ("db1", None)


def test_identity_files_that_do_not_exist_are_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "cfg"
    path.write_text(f"Host *\n  IdentityFile {tmp_path}/nope\n  User u\n")
    filled = apply_ssh_config(Host(name="web", connection="ssh"), path)
    assert (filled.key_file, filled.user) == (None, "u")


def test_a_missing_config_changes_nothing(tmp_path: Path) -> None:
    host = Host(name="db1", connection="ssh")
    assert apply_ssh_config(host, tmp_path / "nope") is host


def test_env_var_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "other"
    path.write_text("Host web\n  User envuser\n")
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(path))
    assert apply_ssh_config(Host(name="web", connection="ssh")).user == "envuser"


def test_a_broken_config_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cfg"
    path.write_text("Host x\n  Port\n")  # an option without a value
    with pytest.raises(InventoryInvalid, match="ssh config"):
        apply_ssh_config(Host(name="x", connection="ssh"), path)


def test_an_unreadable_config_is_an_error_not_an_empty_one(tmp_path: Path) -> None:
    from engine.inventory.sshconfig import load_ssh_config

    loop = tmp_path / "config"
    loop.symlink_to(loop)  # stat() fails with ELOOP (root reads anything, so no EACCES)
    with pytest.raises(InventoryInvalid) as err:
        load_ssh_config(loop)
    assert str(loop) in str(err.value) and "symbolic links" in str(err.value)
    assert load_ssh_config(tmp_path / "missing") is None  # absent: nothing to apply
