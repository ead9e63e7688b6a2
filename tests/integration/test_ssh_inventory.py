"""The inventory's SSH fields end to end, through the CLI against the real sshd
of tests/fixtures/sshd.py: accept-new over a whole fleet at once, jump hosts
named in the inventory or found in ~/.ssh/config, a password from a secret, and
an Ansible INI inventory's connection vars."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from tests.fixtures.sshd import SSHServer
from tests.helpers import run_json, steps_of, write


def write_inventory(tmp_path: Path, doc: dict, name: str = "inventory.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def fleet(sshd: SSHServer, tmp_path: Path, **defaults: object) -> Path:
    """The five sshd addresses as node1..node5, root with the client key."""
    base = {
        "connection": "ssh",
        "user": "root",
        "port": sshd.port,
        "key_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
    }
    hosts = {f"node{i}": {"address": a} for i, a in enumerate(sshd.addresses, 1)}
    return write_inventory(tmp_path, {"defaults": {**base, **defaults}, "hosts": hosts})


def run(rb: Path, inv: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    return run_json(rb, "-i", str(inv), *args, env=env)


def where_runbook(tmp_path: Path, hosts: str) -> Path:
    """One step that prints $SSH_CONNECTION: client addr, port, server addr, port."""
    return write(
        tmp_path,
        f"""
runbook: where
hosts: {hosts}
steps:
  - {{name: Where, id: where, shell: 'echo "$SSH_CONNECTION"'}}
""",
    )


def server_end(doc: dict, host: str) -> list[str]:
    return steps_of(doc, host)["where"]["data"]["stdout"].split()[2:]


def test_accept_new_fleet_records_each_host_key_once(sshd: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "fresh_known_hosts"
    rb = write(tmp_path, "runbook: keys\nhosts: all\nsteps:\n  - {name: Up, shell: 'true'}\n")
    inv = fleet(sshd, tmp_path, known_hosts=str(known), host_key_policy="accept-new")
    code, doc = run(rb, inv)
    assert code == 0, doc
    # Five hosts wrote concurrently: five whole lines, one per host, no duplicates.
    entries = sorted(line.split()[0] for line in known.read_text().splitlines())
    assert entries == sorted(f"[{a}]:{sshd.port}" for a in sshd.addresses)
    # What was recorded is what strict checks against now.
    code, doc = run(rb, fleet(sshd, tmp_path, known_hosts=str(known)))
    assert code == 0, doc


def test_jump_hosts_from_the_inventory_and_from_ssh_config(
    sshd: SSHServer, sshd_jump: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `inner` names an inventory host as its jump; `hidden` has nothing but a name:
    # ssh config supplies HostName, Port, User, IdentityFile and ProxyJump.
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host hidden\n  HostName {sshd_jump.address}\n  Port {sshd_jump.port}\n"
        f"  User root\n  IdentityFile {sshd.client_key}\n"
        f"  ProxyJump root@{sshd.address}:{sshd.port}\n"
    )
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(config))
    bastion = {"address": sshd.address, "port": sshd.port}
    inner = {"address": sshd_jump.address, "port": sshd_jump.port, "jump": "bastion"}
    root = {"user": "root", "key_file": str(sshd.client_key)}
    inv = write_inventory(
        tmp_path,
        {
            "defaults": {"connection": "ssh", "known_hosts": str(sshd_jump.known_hosts)},
            "hosts": {"bastion": {**bastion, **root}, "inner": {**inner, **root}, "hidden": {}},
        },
    )
    tcpip = f"target {sshd_jump.address} port {sshd_jump.port}"
    before = sshd.log_text().count(tcpip)
    code, doc = run(where_runbook(tmp_path, "inner,hidden"), inv)
    assert code == 0, doc
    target = [sshd_jump.address, str(sshd_jump.port)]
    assert server_end(doc, "inner") == server_end(doc, "hidden") == target
    assert sshd.log_text().count(tcpip) - before == 2  # both went through the jump


def test_an_ad_hoc_jump_takes_its_host_block_from_the_runbook_ssh_config(
    sshd: SSHServer, sshd_jump: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `root@gw` is no inventory host: only $RUNBOOK_SSH_CONFIG knows where gw is.
    config = tmp_path / "ssh_config"
    config.write_text(f"Host gw\n  HostName {sshd.address}\n  Port {sshd.port}\n")
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(config))
    inner = {"address": sshd_jump.address, "port": sshd_jump.port, "jump": "root@gw"}
    root = {"user": "root", "key_file": str(sshd.client_key)}
    inv = write_inventory(
        tmp_path,
        {
            "defaults": {"connection": "ssh", "known_hosts": str(sshd_jump.known_hosts)},
            "hosts": {"inner": {**inner, **root}},
        },
    )
    tcpip = f"target {sshd_jump.address} port {sshd_jump.port}"
    before = sshd.log_text().count(tcpip)
    code, doc = run(where_runbook(tmp_path, "inner"), inv)
    assert code == 0, doc
    assert server_end(doc, "inner") == [sshd_jump.address, str(sshd_jump.port)]
    assert sshd.log_text().count(tcpip) - before == 1


def test_password_from_an_inventory_secret(sshd: SSHServer, tmp_path: Path) -> None:
    pw1 = {
        "connection": "ssh",
        "address": sshd.address,
        "port": sshd.port,
        "user": sshd.password_user,
        "password": "{{ secret('NODE_SSH_PASSWORD') }}",
        "known_hosts": str(sshd.known_hosts),
    }
    inv = write_inventory(tmp_path, {"hosts": {"pw1": pw1}})
    rb = write(
        tmp_path, "runbook: pw\nhosts: pw1\nsteps:\n  - {name: Who, id: who, shell: id -un}\n"
    )
    code, doc = run(rb, inv, env={"NODE_SSH_PASSWORD": sshd.password})
    assert code == 0, doc
    assert steps_of(doc, "pw1")["who"]["data"]["stdout"].strip() == sshd.password_user
    assert sshd.password not in str(doc)
    wrong = "wrong-" + uuid.uuid4().hex
    code, doc = run(rb, inv, env={"NODE_SSH_PASSWORD": wrong})
    assert code == 3, doc
    assert "authentication failed" in doc["hosts"]["pw1"]["unreachable"]
    assert wrong not in str(doc)


def test_ansible_ini_inventory_over_ssh(
    sshd: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ansible's connection vars become host fields; known_hosts is the default one.
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    shutil.copy(sshd.known_hosts, tmp_path / ".ssh" / "known_hosts")
    inv = tmp_path / "hosts.ini"
    lines = ["[web]", *(f"w{i} ansible_host={a}" for i, a in enumerate(sshd.addresses[:3]))]
    lines += ["", "[web:vars]", f"ansible_port={sshd.port}", "ansible_user=root"]
    lines += [f"ansible_ssh_private_key_file={sshd.client_key}"]
    inv.write_text("\n".join(lines) + "\n")
    code, doc = run(where_runbook(tmp_path, "web"), inv, "--limit", "w0,w2")
    assert code == 0, doc
    assert sorted(doc["hosts"]) == ["w0", "w2"]
    assert server_end(doc, "w0") == [sshd.addresses[0], str(sshd.port)]
    assert server_end(doc, "w2") == [sshd.addresses[2], str(sshd.port)]
