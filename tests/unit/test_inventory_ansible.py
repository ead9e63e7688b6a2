"""Ansible inventories (INI and YAML), read as Ansible reads them.

The expectations are derived from Ansible's documented behaviour and its
inventory code (tests/integration/test_ansible_layouts.py compares with the real
ansible-inventory): groups without a parent are
children of `all`; hosts in no other group are `ungrouped`; vars merge by
(depth, priority, name) of the groups, then host vars; INI values are typed
with ast.literal_eval; `ansible_*` connection vars set the connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.errors import InventoryInvalid, Problem
from engine.inventory.ansible import expand_host_pattern, parse_value
from engine.inventory.ansible_ssh import SshArgs, map_ssh_args, proxy_command_jump
from engine.inventory.loader import Inventory, load_inventory


@pytest.fixture(autouse=True)
def _no_ssh_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(tmp_path / "no-such-ssh-config"))


def load(tmp_path: Path, text: str, name: str) -> Inventory:
    path = tmp_path / name
    path.write_text(text)
    return load_inventory(path)


def problems(tmp_path: Path, text: str, name: str = "hosts") -> list[Problem]:
    with pytest.raises(InventoryInvalid) as info:
        load(tmp_path, text, name)
    return info.value.problems


INI = """\
# the same estate as YAML below
bastion ansible_host=203.0.113.5 ansible_user=admin

[databases]
db[1:2] ansible_user=ops
db3 ansible_host=10.0.1.13 ansible_port=2222 replica=True pg_version=16 note="primary site"

[databases:vars]
pg_user=postgres
max_conn=200

[caches]
cache1 ansible_host=10.0.2.10 ansible_connection=paramiko

[prod:children]
databases
caches

[prod:vars]
env=prod
max_conn=100
ansible_user=deploy

[all:vars]
s3_bucket=backups
env=unknown
"""

YAML = """\
all:
  vars:
    s3_bucket: backups
    env: unknown
  hosts:
    bastion:
      ansible_host: 203.0.113.5
      ansible_user: admin
  children:
    prod:
      vars: {env: prod, max_conn: 100, ansible_user: deploy}
      children:
        databases:
          vars: {pg_user: postgres, max_conn: 200}
          hosts:
            db[1:2]:
              ansible_user: ops
            db3: {ansible_host: 10.0.1.13, ansible_port: 2222, replica: true, pg_version: 16, note: primary site}
        caches:
          hosts:
            cache1: {ansible_host: 10.0.2.10, ansible_connection: paramiko}
"""

DB_VARS = {"s3_bucket": "backups", "env": "prod", "max_conn": 200, "pg_user": "postgres"}
EXPECTED: dict[str, dict[str, Any]] = {
    "bastion": {
        "address": "203.0.113.5",
        "user": "admin",
        "port": None,
        "connection": "ssh",
        "groups": ["all", "ungrouped"],
        "vars": {"s3_bucket": "backups", "env": "unknown"},
    },
    "db1": {
        "address": "db1",
        "user": "ops",  # the host line beats [prod:vars] ansible_user=deploy
        "port": None,
        "connection": "ssh",
        "groups": ["all", "prod", "databases"],
        "vars": DB_VARS,  # env: prod beats all; max_conn: databases (deeper) beats prod
    },
    "db2": {
        "address": "db2",
        "user": "ops",
        "port": None,
        "connection": "ssh",
        "groups": ["all", "prod", "databases"],
        "vars": DB_VARS,
    },
    "db3": {
        "address": "10.0.1.13",
        "user": "deploy",  # from the grandparent group prod
        "port": 2222,
        "connection": "ssh",
        "groups": ["all", "prod", "databases"],
        "vars": {**DB_VARS, "replica": True, "pg_version": 16, "note": "primary site"},
    },
    "cache1": {
        "address": "10.0.2.10",
        "user": "deploy",
        "port": None,
        "connection": "ssh",  # paramiko is ssh to us
        "groups": ["all", "prod", "caches"],
        "vars": {"s3_bucket": "backups", "env": "prod", "max_conn": 100},
    },
}


def summary(inv: Inventory) -> dict[str, dict[str, Any]]:
    return {
        h.name: {
            "address": h.address,
            "user": h.user,
            "port": h.port,
            "connection": h.connection,
            "groups": h.groups,
            "vars": h.vars,
        }
        for h in inv
    }


def groups(inv: Inventory) -> dict[str, tuple[list[str], list[str]]]:
    return {n: (g.all_hosts, g.children) for n, g in inv.groups.items()}


@pytest.mark.parametrize(("text", "name"), [(INI, "hosts"), (YAML, "hosts.yml")])
def test_ini_and_yaml_give_what_ansible_would(tmp_path: Path, text: str, name: str) -> None:
    inv = load(tmp_path, text, name)
    assert summary(inv) == EXPECTED
    assert list(inv.hosts) == ["bastion", "db1", "db2", "db3", "cache1"]
    assert groups(inv)["prod"] == (["db1", "db2", "db3", "cache1"], ["databases", "caches"])
    assert groups(inv)["ungrouped"] == (["bastion"], [])
    assert sorted(inv.groups) == ["all", "caches", "databases", "prod", "ungrouped"]
    assert sorted(inv.groups["all"].children) == ["prod", "ungrouped"]
    assert (inv.groups["prod"].depth, inv.groups["databases"].depth) == (1, 2)
    # connection vars became fields, and left the vars
    assert inv.get("db3").explicit == {"address", "port", "user"}
    assert [h.name for h in inv.select("prod:!databases")] == ["cache1"]


def test_ini_and_yaml_are_the_same_inventory(tmp_path: Path) -> None:
    ini = load(tmp_path, INI, "hosts.ini")
    yml = load(tmp_path, YAML, "hosts.yaml")
    assert (ini.format, yml.format) == ("ansible-ini", "ansible-yaml")
    assert summary(ini) == summary(yml)
    assert groups(ini) == groups(yml)


def test_ini_value_types(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """h1 a=True b=FALSE c=007 d=[1,2] e="x y" f='"1"' g=1.5 h=None i="{'k':1}" i2={'k':1} j=(1,2) k=yes

[all:vars]
s1="1"
s2=1
s3 = hello # not a comment here
s4 = 42 # a Python comment, gone
""",
        "hosts",
    )
    v = inv.get("h1").vars
    assert v["a"] is True
    assert v["b"] == "FALSE"  # not a Python literal: text
    assert v["c"] == "007"
    assert v["d"] == [1, 2]
    assert v["e"] == "x y"  # shlex took the quotes
    assert v["f"] == "1"  # shlex kept the inner quotes, literal_eval made text
    assert v["g"] == 1.5
    assert v["h"] is None
    assert v["i"] == {"k": 1}
    assert v["i2"] == "{k:1}"  # shlex ate the quotes the dict needed, as in Ansible
    assert v["j"] == [1, 2]  # tuples become lists
    assert v["k"] == "yes"
    assert (v["s1"], v["s2"]) == ("1", 1)
    assert v["s3"] == "hello # not a comment here"  # as Ansible's [vars] lines
    assert v["s4"] == 42


def test_ini_ranges_ports_and_comments(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """; a comment
[web]
web[01:03]
db-[a:c]:2222  # trailing comment
h[1:5:2] ansible_port=2200
[::1]:2022
""",
        "hosts",
    )
    assert list(inv.hosts) == [
        *("web01", "web02", "web03"),
        *("db-a", "db-b", "db-c"),
        *("h1", "h3", "h5"),
        "::1",
    ]
    assert inv.get("db-b").port == 2222
    assert inv.get("h3").port == 2200
    assert inv.get("::1").port == 2022
    assert inv.get("web02").port is None


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web[01:03]", (["web01", "web02", "web03"], None)),
        ("web[8:10]:22", (["web8", "web9", "web10"], 22)),
        ("r[1:2]-[a:b]", (["r1-a", "r1-b", "r2-a", "r2-b"], None)),
        ("10.0.0.[1:2]", (["10.0.0.1", "10.0.0.2"], None)),
        ("fe80::1", (["fe80::1"], None)),
        ("host", (["host"], None)),
    ],
)
def test_expand_host_pattern(pattern: str, expected: tuple[list[str], int | None]) -> None:
    assert expand_host_pattern(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("web[01:3]", "same width"),
        ("web[3:1:0]", "step must be 1 or more"),
        ("web[1]", "begin:end"),
        ("web:", "reserved for a port"),
        ("web:ssh", "not a number"),
    ],
)
def test_bad_host_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand_host_pattern(pattern)


def test_parse_value_is_literal_eval_or_text() -> None:
    assert parse_value("0x10") == 16
    assert parse_value("{1, 2}") == [1, 2]
    assert parse_value("b'x'") == "x"
    assert parse_value("1+2j") == "(1+2j)"
    assert parse_value("...") == "..."
    assert parse_value("some text") == "some text"


def test_ini_errors_with_lines(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """[web]
web1 oops
[web:stuff]
[ bad section ]
[ghost:vars]
x=1
[prod:children]
web
nowhere
[web:vars]
novalue
""",
    )
    got = [(p.location.line, p.message) for p in found]
    assert got == [
        (2, "expected key=value after the host name, got 'oops'"),
        (3, "section [web:stuff] has an unknown type 'stuff'"),
        (4, "invalid section [ bad section ]"),
        (5, "section [ghost:vars] is for a group that is never declared"),
        (9, "[prod:children] includes undeclared group 'nowhere'"),
        (11, "expected key=value in [web:vars], got 'novalue'"),
    ]
    assert found[0].location.column == 6


def test_connection_vars(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
local1 ansible_connection=local
ssh1 ansible_ssh_host=10.0.0.1 ansible_ssh_port=2200 ansible_ssh_user=u ansible_ssh_private_key_file=~/.ssh/k
pw1 ansible_password="{{ secret('PW') }}" ansible_host_key_checking=False ansible_timeout=7
jump1 ansible_ssh_common_args='-o ProxyJump=ops@bastion.example.com'
both ansible_host=1.1.1.1 ansible_ssh_host=2.2.2.2
""",
        "hosts",
    )
    assert inv.get("local1").connection == "local"
    ssh1 = inv.get("ssh1")
    assert (ssh1.address, ssh1.port, ssh1.user, ssh1.key_file) == (
        "10.0.0.1",
        2200,
        "u",
        "~/.ssh/k",
    )
    pw1 = inv.get("pw1")
    assert pw1.password == "{{ secret('PW') }}"
    assert "ansible_password" not in pw1.vars
    assert (pw1.host_key_policy, pw1.connect_timeout) == ("ignore", 7.0)
    assert inv.get("jump1").jump == "ops@bastion.example.com"
    assert inv.get("both").address == "2.2.2.2"  # ansible_ssh_host is later in Ansible's list
    found = problems(tmp_path, "w1 ansible_connection=winrm\nw2 ansible_port=http\n")
    assert [p.message for p in found] == [
        "host 'w1': ansible_connection 'winrm' is not supported (use ssh or local)",
        "host 'w2': ansible_port: port must be a number from 1 to 65535, not 'http'",
    ]


def test_ssh_args_set_known_hosts_and_the_host_key_policy(tmp_path: Path) -> None:
    """Ansible inventories say where host keys live through OpenSSH options;
    they were kept as a plain var, so such hosts failed strict checking."""
    inv = load(
        tmp_path,
        """
[db]
db1 ansible_ssh_common_args='-o UserKnownHostsFile=/etc/ops/known_hosts -o StrictHostKeyChecking=accept-new'
db2 ansible_ssh_common_args="-oStrictHostKeyChecking=no -J jump@bastion"
db3 ansible_ssh_extra_args='-o StrictHostKeyChecking=no' ansible_host_key_checking=True
""",
        "hosts",
    )
    db1, db2, db3 = inv.get("db1"), inv.get("db2"), inv.get("db3")
    assert (db1.known_hosts, db1.host_key_policy) == ("/etc/ops/known_hosts", "accept-new")
    assert (db2.host_key_policy, db2.jump) == ("ignore", "jump@bastion")
    assert db3.host_key_policy == "strict"  # the named var wins over the raw option
    found = problems(tmp_path, "h1 ansible_ssh_common_args='-o StrictHostKeyChecking=maybe'\n")
    assert [p.message for p in found] == [
        "host 'h1': ansible_ssh_common_args: -o StrictHostKeyChecking=maybe: "
        "host_key_policy must be one of strict, accept-new, ignore, not 'maybe'"
    ]


def test_group_priority_reorders_groups_of_one_depth(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """[a]
h
[b]
h
[a:vars]
v=a
ansible_group_priority=200
[b:vars]
v=b
""",
        "hosts",
    )
    assert inv.get("h").vars == {"v": "a"}
    assert "ansible_group_priority" not in inv.groups["a"].vars


def test_ini_without_sections_is_all_ungrouped(tmp_path: Path) -> None:
    inv = load(tmp_path, "alpha\nbeta ansible_port=2222\n", "inventory")
    assert inv.format == "ansible-ini"
    assert list(inv.hosts) == ["alpha", "beta"]
    assert inv.get("beta").groups == ["all", "ungrouped"]


def test_yaml_top_level_groups_without_all(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """web:
  hosts:
    web1:
    web2: {http_port: 8080}
  vars: {http_port: 80}
db:
  hosts: db1
""",
        "hosts.yaml",
    )
    assert inv.format == "ansible-yaml"
    assert [h.vars["http_port"] for h in inv.select("web")] == [80, 8080]
    assert inv.get("db1").groups == ["all", "db"]
    assert inv.groups["all"].children == ["web", "db", "ungrouped"]


def test_yaml_host_in_two_places_and_ungrouped_reconciled(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """all:
  hosts:
    h1: {a: 1}
    solo:
  children:
    g:
      hosts:
        h1: {b: 2}
""",
        "hosts.yaml",
    )
    # h1 is listed under all.hosts, but a member of g: not ungrouped (Ansible's reconcile)
    assert inv.get("h1").groups == ["all", "g"]
    assert inv.get("h1").vars == {"a": 1, "b": 2}
    assert inv.groups["ungrouped"].hosts == ["solo"]


def test_yaml_unknown_group_key(tmp_path: Path) -> None:
    found = problems(tmp_path, "all:\n  children:\n    web:\n      hots:\n        web1:\n", "h.yml")
    assert [(p.location.line, p.location.column) for p in found] == [(4, 7)]
    assert found[0].hint == "did you mean `hosts`?"
    assert found[0].path == "all.children.web.hots"


def test_the_example_ansible_inventories_agree() -> None:
    root = Path(__file__).resolve().parents[2] / "inventories"
    ini = load_inventory(root / "ansible-hosts.ini")
    yml = load_inventory(root / "ansible-hosts.yaml")
    assert (ini.format, yml.format) == ("ansible-ini", "ansible-yaml")
    assert summary(ini) == summary(yml)
    assert groups(ini) == groups(yml)
    assert ini.get("db3").vars == {**DB_VARS, "replica": True, "pg_version": 16}


def ssh_args(text: str, **named: Any) -> SshArgs:
    out = SshArgs(dict(named))
    map_ssh_args("ansible_ssh_common_args", text, out)
    return out


def test_ssh_args_map_onto_host_fields() -> None:
    args = ssh_args(
        "-o UserKnownHostsFile=/etc/kh -o 'StrictHostKeyChecking accept-new' "
        "-i ~/.ssh/deploy -p2222 -l deploy -o ConnectTimeout=5"
    )
    assert args.fields == {
        "known_hosts": "/etc/kh",
        "host_key_policy": "accept-new",
        "key_file": "~/.ssh/deploy",
        "port": 2222,
        "user": "deploy",
        "connect_timeout": 5.0,
    }
    assert (args.errors, args.ignored) == ([], [])
    # OpenSSH keeps the first value; a named var (here port) wins over any
    assert ssh_args("-p 1 -o Port=2 -J a -o ProxyJump=b", port=22).fields == {
        "port": 22,
        "jump": "a",
    }
    assert ssh_args("-o StrictHostKeyChecking=no").fields == {"host_key_policy": "ignore"}


def test_proxy_command_through_ssh_is_a_jump_host_and_others_are_ignored() -> None:
    assert proxy_command_jump("ssh -W %h:%p -q ops@bastion") == "ops@bastion"
    assert proxy_command_jump("/usr/bin/ssh -l ops -p 2200 -W %h:%p gw.example") == (
        "ops@gw.example:2200"
    )
    assert proxy_command_jump("nc -X connect -x proxy:3128 %h %p") is None
    assert proxy_command_jump("ssh bastion nc %h %p") is None
    args = ssh_args('-o ProxyCommand="ssh -W %h:%p -q jump@gw"')
    assert args.fields == {"jump": "jump@gw"}
    args = ssh_args("-o ProxyCommand='nc %h %p' -o ControlMaster=auto -C -F /etc/ssh/alt")
    assert args.fields == {}
    assert [option for _, option in args.ignored] == [
        "-o ProxyCommand (only `ssh -W %h:%p GATEWAY` is understood)",
        "-o ControlMaster",
        "-C",
        "-F",
    ]


def test_ignored_ssh_options_are_warnings_naming_hosts_not_errors(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
[web]
w[1:7]

[web:vars]
ansible_ssh_common_args='-o ControlPersist=60s -o StrictHostKeyChecking=no'
ansible_ssh_extra_args='-o ServerAliveInterval=30'
""",
        "hosts",
    )
    assert inv.get("w1").host_key_policy == "ignore"
    assert inv.warnings == [
        "hosts w1, w2, w3, w4, w5 and 2 more: ansible_ssh_common_args: -o ControlPersist "
        "is ignored (the engine's SSH is paramiko)",
        "hosts w1, w2, w3, w4, w5 and 2 more: ansible_ssh_extra_args: -o ServerAliveInterval "
        "is ignored (the engine's SSH is paramiko)",
    ]
    found = problems(
        tmp_path, "h1 ansible_ssh_common_args='-p'\nh2 ansible_ssh_common_args='-o \"x'\n"
    )
    assert [p.message for p in found] == [
        "host 'h1': ansible_ssh_common_args: -p needs a value",
        "host 'h2': ansible_ssh_common_args: cannot split '-o \"x': No closing quotation",
    ]


def test_group_vars_files_rank_as_in_ansible(tmp_path: Path) -> None:
    """all (file) < group_vars/all < groups (file) < group_vars/GROUP < host < host_vars."""
    (tmp_path / "group_vars" / "db").mkdir(parents=True)
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "group_vars" / "all").write_text("a: all-file\nb: all-file\n")  # no extension
    (tmp_path / "group_vars" / "all.yml").write_text("a: never: the bare name is found first\n")
    (tmp_path / "group_vars" / "db" / "1.yml").write_text("c: db-file-1\nd: db-file\n")
    (tmp_path / "group_vars" / "db" / "2.json").write_text('{"c": "db-file-2"}')
    (tmp_path / "group_vars" / "db" / "notes.txt").write_text("c: not read\n")
    (tmp_path / "host_vars" / "db1.yaml").write_text("d: host-file\n")
    inv = load(
        tmp_path,
        "[db]\ndb1 d=host-line e=host-line\n[db:vars]\nb=db-line\nc=db-line\n"
        "[all:vars]\na=all-line\n",
        "hosts",
    )
    assert inv.get("db1").vars == {
        "a": "all-file",
        "b": "db-line",
        "c": "db-file-2",
        "d": "host-file",
        "e": "host-line",
    }
    assert inv.groups["db"].file_vars == {"c": "db-file-2", "d": "db-file"}


def test_bad_vars_files_are_errors_with_their_file(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("- a list\n")
    (tmp_path / "group_vars" / "all.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    found = problems(tmp_path, "[web]\nw1\n")
    assert [(Path(p.location.file).name, p.message.split(",")[0]) for p in found] == [
        ("all.yml", "this vars file is ansible-vault encrypted"),
        ("web.yml", "a vars file must hold a mapping of names to values"),
    ]
