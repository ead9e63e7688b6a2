"""Ansible inventory layouts, read by the engine and by Ansible itself.

Each test builds a layout as Ansible users keep them (an INI file with
group_vars/ and host_vars/ beside it, an inventory directory, an executable
script, `ansible-inventory --list` JSON, several -i) and checks that the
engine's hosts, groups and merged vars are what the real `ansible-inventory`
says for the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine.inventory.loader import Inventory, load_inventory
from tests.fixtures.sshd import SSHServer
from tests.helpers import cli

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-inventory") is None, reason="ansible-core is not installed"
)

# Connection vars the engine turns into Host fields, and the field each lands in.
FIELDS = {"ansible_host": "address", "ansible_port": "port", "ansible_user": "user"}


@pytest.fixture(autouse=True)
def _no_ssh_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(tmp_path / "no-such-ssh-config"))


def put(path: Path, text: str, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def ansible(tmp_path: Path, *args: str) -> Any:
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(tmp_path / ".ansible-home"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
    }
    done = subprocess.run(
        ["ansible-inventory", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ansible_list(tmp_path: Path, *sources: Path) -> dict[str, Any]:
    args = [a for s in sources for a in ("-i", str(s))]
    listing: dict[str, Any] = ansible(tmp_path, *args, "--list")
    return listing


def ours(host_vars: dict[str, Any], host: Any) -> dict[str, Any]:
    """A host as Ansible's hostvars would show it: its vars and connection fields."""
    out = dict(host_vars)
    for var, name in FIELDS.items():
        value = getattr(host, name)
        if value is not None and (var != "ansible_host" or value != host.name):
            out[var] = value
    return out


def assert_same(inventory: Inventory, listing: dict[str, Any]) -> None:
    hostvars = listing["_meta"]["hostvars"]
    assert list(inventory.hosts) == sorted(inventory.hosts, key=list(inventory.hosts).index)
    assert set(inventory.hosts) == set(hostvars)
    for name, expected in hostvars.items():
        assert ours(inventory.get(name).vars, inventory.get(name)) == expected, name
    for group, body in listing.items():
        if group in ("_meta", "all"):
            continue
        ours_group = inventory.groups[group]
        assert sorted(ours_group.hosts) == sorted(body.get("hosts", [])), group
        assert sorted(ours_group.children) == sorted(body.get("children", [])), group
    for name in hostvars:  # every group a host is in, parents included
        theirs = {g for g, b in listing.items() if name in _all_hosts(listing, g)}
        assert set(inventory.get(name).groups) - {"all"} == theirs - {"all"}, name


def _all_hosts(listing: dict[str, Any], group: str) -> set[str]:
    body = listing.get(group) or {}
    found = set(body.get("hosts", [])) if isinstance(body, dict) else set()
    for child in body.get("children", []) if isinstance(body, dict) else []:
        found |= _all_hosts(listing, child)
    return found


def ini_layout(root: Path) -> Path:
    """INI inventory + group_vars/all.yml + group_vars/web/ + host_vars/h1.yml, child groups."""
    inventory = put(
        root / "hosts.ini",
        """
        [web]
        h1 ansible_host=10.0.0.1 color=red
        h2 ansible_port=2222

        [db]
        h3 ansible_user=dbadmin

        [lb]
        h4

        [prod:children]
        web
        db

        [prod:vars]
        env=prod
        tier=prod-ini
        color=green

        [web:vars]
        tier=web-ini

        [all:vars]
        ansible_user=ops
        region=eu
        """,
    )
    put(root / "group_vars/all.yml", "region: us\ntier: all-file\nntp: pool.ntp.org\n")
    put(root / "group_vars/web/10-base.yml", "http_port: 80\ncolor: blue\n")
    put(root / "group_vars/web/20-more.yaml", "http_port: 8080\npackages: [nginx, certbot]\n")
    put(root / "group_vars/web/.hidden.yml", "http_port: 1\n")
    put(root / "group_vars/prod.yml", "tier: prod-file\n")
    put(root / "host_vars/h1.yml", "color: purple\nansible_port: 2200\n")
    put(root / "host_vars/h4/main.yml", "lb_algo: roundrobin\n")
    return inventory


def test_ini_with_group_vars_and_host_vars_is_what_ansible_reads(tmp_path: Path) -> None:
    inventory_file = ini_layout(tmp_path / "site")
    listing = ansible_list(tmp_path, inventory_file)
    inventory = load_inventory(inventory_file)
    assert_same(inventory, listing)
    h1 = inventory.get("h1")
    # the precedence the layout exercises, spelled out: a parent's group_vars file
    # beats the child's inventory var; host_vars beat the host line
    assert (h1.port, h1.vars["color"], h1.vars["tier"]) == (2200, "purple", "prod-file")
    assert ours(h1.vars, h1) == ansible(tmp_path, "-i", str(inventory_file), "--host", "h1")


def test_an_inventory_directory_is_what_ansible_reads(tmp_path: Path) -> None:
    root = tmp_path / "inventory"
    put(root / "01-static.ini", "[web]\nw1 ansible_host=192.0.2.1\n\n[web:vars]\nrole=web\n")
    put(
        root / "02-more.yml",
        """
        all:
          children:
            db:
              hosts:
                d1: {ansible_port: 5432}
              vars: {role: db}
            prod:
              children: {web: {}, db: {}}
        """,
    )
    put(
        root / "03-dynamic",
        f"""
        #!{sys.executable}
        import json, sys
        if sys.argv[1] == "--list":
            print(json.dumps({{"cache": {{"hosts": ["c1"], "vars": {{"role": "cache"}}}},
                              "_meta": {{"hostvars": {{"c1": {{"maxmemory": "1gb"}}}}}}}}))
        else:
            print("{{}}")
        """,
        executable=True,
    )
    for ignored in ("notes.txt", "old.ini~", "hosts.retry", "site.orig", ".hidden.ini"):
        put(root / ignored, "[web]\nnot-a-host\n")
    put(root / "group_vars/prod.yml", "env: prod\nrole: overridden-by-children\n")
    put(root / "group_vars/web.yml", "role: web-file\n")
    put(root / "host_vars/d1.yaml", "pg_version: 16\n")
    listing = ansible_list(tmp_path, root)
    inventory = load_inventory(root)
    assert_same(inventory, listing)
    assert set(inventory.hosts) == {"w1", "d1", "c1"}
    assert inventory.get("w1").vars["role"] == "web-file"


def script(path: Path, hostvars_in_meta: bool, fail: bool = False) -> Path:
    """A dynamic inventory: --list, and --host NAME when there is no _meta."""
    return put(
        path,
        f"""
        #!{sys.executable}
        import json, sys
        if {fail!r}:
            sys.stderr.write("cmdb: connection refused (https://ops:hunter22@cmdb.example)\\n")
            sys.exit(1)
        HOSTS = {{"app1": {{"ansible_host": "10.1.0.1", "tier": 1}},
                  "app2": {{"ansible_port": 2201, "tier": 2}}}}
        if sys.argv[1] == "--list":
            out = {{"app": {{"hosts": ["app1", "app2"], "vars": {{"svc": "api"}}}},
                   "eu": {{"children": ["app"], "vars": {{"region": "eu"}}}},
                   "canary": ["app2"]}}
            if {hostvars_in_meta!r}:
                out["_meta"] = {{"hostvars": HOSTS}}
            print(json.dumps(out))
        else:
            print(json.dumps(HOSTS.get(sys.argv[2], {{}})))
        """,
        executable=True,
    )


@pytest.mark.parametrize("meta", [True, False], ids=["meta-hostvars", "host-per-host"])
def test_an_executable_script_is_what_ansible_reads(tmp_path: Path, meta: bool) -> None:
    inventory_file = script(tmp_path / "dyn" / "cmdb.py", meta)
    put(tmp_path / "dyn/group_vars/app.yml", "svc: api-file\n")
    listing = ansible_list(tmp_path, inventory_file)
    inventory = load_inventory(inventory_file)
    assert_same(inventory, listing)
    assert inventory.get("app2").port == 2201
    assert inventory.format == "ansible-script"


def test_the_list_json_as_an_inventory_gives_the_same_hosts(tmp_path: Path) -> None:
    listing = ansible_list(tmp_path, ini_layout(tmp_path / "site"))
    saved = tmp_path / "elsewhere" / "inventory.json"
    put(saved, json.dumps(listing, indent=2))
    inventory = load_inventory(saved)
    assert inventory.format == "ansible-json"
    assert_same(inventory, listing)  # (Ansible itself refuses this file: it is no YAML inventory)


def test_several_sources_merge_in_order_as_in_ansible(tmp_path: Path) -> None:
    first = ini_layout(tmp_path / "site")
    second = put(
        tmp_path / "overlay" / "extra.yml",
        """
        all:
          vars: {region: ap}
          children:
            web:
              hosts:
                h2: {color: orange}
                h9: {}
        """,
    )
    put(tmp_path / "overlay/group_vars/web.yml", "http_port: 9090\n")
    listing = ansible_list(tmp_path, first, second)
    assert_same(load_inventory([str(first), str(second)]), listing)
    result = cli("inventory", "-i", str(first), "-i", str(second), "--format", "json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["hosts"]["h9"]["vars"]["http_port"] == 9090
    assert shown["hosts"]["h2"]["vars"]["color"] == listing["_meta"]["hostvars"]["h2"]["color"]
    by_env = cli("inventory", "--format", "json", env={"RUNBOOK_INVENTORY": f"{first},{second}"})
    assert json.loads(by_env.stdout)["hosts"] == shown["hosts"]


def test_a_failing_script_is_an_invalid_inventory_with_its_stderr(tmp_path: Path) -> None:
    broken = script(tmp_path / "broken.py", True, fail=True)
    result = cli("inventory", "-i", str(broken))
    assert result.exit_code == 65
    assert "failed with exit code 1" in result.output
    assert "cmdb: connection refused" in result.output
    assert "hunter22" not in result.output  # a credential in a URL is masked
    assert f"run `{broken} --list` by hand" in result.output


def test_ssh_common_args_in_group_vars_reach_the_host(
    sshd: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UserKnownHostsFile, -i, -p and -l from ansible_ssh_common_args are what the
    connection uses (HOME's known_hosts is empty: strict checking passes only
    through the named file); an option the engine ignores is a warning."""
    monkeypatch.setenv("HOME", str(tmp_path))
    inventory_file = put(tmp_path / "site" / "hosts", f"[web]\nw1 ansible_host={sshd.address}\n")
    args = (
        f"-o UserKnownHostsFile={sshd.known_hosts} -o StrictHostKeyChecking=yes "
        f"-i {sshd.client_key} -p {sshd.port} -l root -o ControlMaster=auto"
    )
    put(tmp_path / "site/group_vars/web.yml", f"ansible_ssh_common_args: '{args}'\n")
    runbook = put(
        tmp_path / "rb.yaml",
        """
        runbook: where
        hosts: web
        steps:
          - {name: Where, id: where, shell: 'echo "$(id -un) $SSH_CONNECTION"'}
        """,
    )
    result = cli("run", str(runbook), "-i", str(inventory_file), "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    user, *connection = doc["hosts"]["w1"]["steps"][0]["data"]["stdout"].split()
    assert (user, connection[2:]) == ("root", [sshd.address, str(sshd.port)])
    assert "host w1: ansible_ssh_common_args: -o ControlMaster is ignored" in result.stderr
