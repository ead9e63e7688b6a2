"""The native inventory format: hosts, groups, var precedence and validation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.errors import InventoryInvalid, Problem
from engine.inventory.loader import Inventory, load_inventory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_ssh_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(tmp_path / "no-such-ssh-config"))


def load(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Inventory:
    path = tmp_path / name
    path.write_text(text)
    return load_inventory(path)


def problems(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(InventoryInvalid) as info:
        load(tmp_path, text)
    assert info.value.exit_code == 65
    return info.value.problems


def where(p: Problem) -> tuple[int, int]:
    return p.location.line, p.location.column


# --- the default and the example ------------------------------------------


def test_no_inventory_is_localhost_over_a_local_connection() -> None:
    inv = load_inventory(None)
    assert list(inv.hosts) == ["localhost"]
    host = inv.get("localhost")
    assert (host.connection, host.address, host.groups) == ("local", "127.0.0.1", ["all"])
    assert inv.digest == "localhost"
    assert [h.name for h in inv.select("all")] == ["localhost"]
    assert inv.groups["all"].all_hosts == ["localhost"]


def test_the_spec_example() -> None:
    path = ROOT / "inventories" / "example.yaml"
    inv = load_inventory(path)
    assert list(inv.hosts) == ["db1", "db2", "cache1", "bastion"]
    assert inv.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    db2 = inv.get("db2")
    assert (db2.address, db2.port, db2.user, db2.connection) == ("10.0.1.11", 2222, "ops", "ssh")
    assert db2.key_file == "~/.ssh/id_ed25519"
    assert db2.host_key_policy == "strict"
    assert db2.vars == {"s3_bucket": "backups", "pg_user": "postgres", "replica": True}
    assert db2.groups == ["all", "prod", "databases"]
    assert inv.get("db1").port == 22
    bastion = inv.get("bastion")
    assert bastion.groups == ["all", "ungrouped"]
    assert bastion.vars == {"s3_bucket": "backups"}
    assert inv.groups["prod"].children == ["databases", "caches"]
    assert inv.groups["prod"].all_hosts == ["db1", "db2", "cache1"]
    assert inv.groups["databases"].depth == 2
    assert inv.groups["all"].children == ["prod", "ungrouped"]
    # defaults count as set by the inventory: ~/.ssh/config may not override them
    assert {"user", "port", "key_file", "connection", "address"} <= db2.explicit


def test_the_local_example() -> None:
    inv = load_inventory(ROOT / "inventories" / "local.yaml")
    host = inv.get("localhost")
    assert (host.connection, host.address) == ("local", "127.0.0.1")


def test_fields_are_kept_as_written(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
hosts:
  db1:
    address: db1.example.com
    password: "{{ secret('DB1_SSH_PASSWORD') }}"
    connect_timeout: 5s
    known_hosts: /etc/ssh/ssh_known_hosts
    host_key_policy: accept-new
  db2: {}
""",
    )
    db1, db2 = inv.get("db1"), inv.get("db2")
    assert db1.password == "{{ secret('DB1_SSH_PASSWORD') }}"  # rendered later, by the connection
    assert db1.connect_timeout == 5.0
    assert (db1.known_hosts, db1.host_key_policy) == ("/etc/ssh/ssh_known_hosts", "accept-new")
    # an inventory host without a connection is reached over ssh, at its name
    assert (db2.connection, db2.address, db2.explicit) == ("ssh", "db2", frozenset())


# --- var precedence ---------------------------------------------------------


PRECEDENCE = """
vars: {level: inventory, a: inventory, b: inventory, c: inventory, d: inventory, x: inventory}
groups:
  zparent:
    vars: {level: parent, b: parent, c: parent, d: parent}
    children: [achild]
  achild:
    vars: {level: child, c: child, d: child, x: achild}
    hosts:
      h1: {vars: {level: host, d: host}}
  beta:
    vars: {same: beta, x: beta}
    hosts: {h1: null}
  alpha:
    vars: {same: alpha, x: alpha}
    hosts: {h1: null}
hosts:
  loner: {vars: {d: host}}
"""


def test_var_precedence_inventory_parent_child_host(tmp_path: Path) -> None:
    inv = load(tmp_path, PRECEDENCE)
    h1 = inv.get("h1")
    assert h1.vars["a"] == "inventory"
    assert h1.vars["b"] == "parent"
    assert h1.vars["c"] == "child"
    assert h1.vars["d"] == "host"
    assert h1.vars["level"] == "host"
    # at one depth, the alphabetically later group wins (Ansible's sort_groups)
    assert h1.vars["same"] == "beta"
    # a deeper group wins over shallower ones, whatever their names
    assert h1.vars["x"] == "achild"
    # groups in merge order: (depth, name), parents of a member group included
    assert h1.groups == ["all", "alpha", "beta", "zparent", "achild"]
    loner = inv.get("loner")
    assert loner.vars == {**dict.fromkeys("abcdx", "inventory"), "level": "inventory", "d": "host"}
    assert loner.groups == ["all", "ungrouped"]


def test_depth_is_the_longest_path_from_all(tmp_path: Path) -> None:
    # c hangs under a directly and under b (itself under a): depth 3, so it beats b.
    inv = load(
        tmp_path,
        """
groups:
  a: {children: [b, c], vars: {v: a}}
  b: {children: [c], vars: {v: b}}
  c: {hosts: {h: null}, vars: {v: c}}
""",
    )
    assert [inv.groups[g].depth for g in "abc"] == [1, 2, 3]
    assert inv.get("h").vars["v"] == "c"
    assert inv.groups["c"].parents == ["a", "b"]


def test_a_host_in_several_groups_merges_its_mentions(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """
groups:
  databases:
    hosts: {db1: {address: 10.0.0.1, vars: {role: primary, zone: a}}}
  backups:
    hosts: {db1: {port: 2222, vars: {zone: b}}}
""",
    )
    db1 = inv.get("db1")
    assert (db1.address, db1.port) == ("10.0.0.1", 2222)
    assert db1.vars == {"role": "primary", "zone": "b"}
    assert list(inv.hosts) == ["db1"]


# --- validation -------------------------------------------------------------


def test_unknown_keys_everywhere_with_line_column_and_suggestion(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """defaults:
  conection: ssh
groups:
  databases:
    hots: {}
    hosts:
      db1: {adress: 10.0.1.10}
grups: {}
""",
    )
    got = [(where(p), p.message, p.hint) for p in found]
    assert got == [
        ((2, 3), "unknown key 'conection'", "did you mean `connection`?"),
        ((5, 5), "unknown key 'hots'", "did you mean `hosts`?"),
        ((7, 13), "unknown key 'adress'", "did you mean `address`?"),
        ((8, 1), "unknown key 'grups'", "did you mean `groups`?"),
    ]
    assert found[2].path == "groups.databases.hosts.db1.adress"
    assert "^" in found[2].snippet and "adress" in found[2].snippet


def test_bad_values(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """hosts:
  a: {port: 70000}
  b: {port: "ssh"}
  c: {port: true}
  d: {host_key_policy: sloppy}
  e: {connection: winrm}
  f: {connect_timeout: soon}
  g: {vars: [1, 2]}
  h: {address: ""}
""",
    )
    messages = {p.location.line: p.message for p in found}
    assert "out of range" in messages[2]
    assert "port must be a number" in messages[3]
    assert "port must be a number" in messages[4]
    assert "strict, accept-new, ignore" in messages[5]
    assert "ssh, local" in messages[6]
    assert "not a duration" in messages[7]
    assert "vars must be a mapping" in messages[8]
    assert "must not be empty" in messages[9]
    assert len(found) == 8


def test_children_unknown_cycles_and_reserved(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """groups:
  prod:
    children: [databses, web]
  web:
    children: [edge]
  edge:
    children: [web]
  loop:
    children: [loop]
  top:
    children: [all]
hosts: {h: null}
""",
    )
    got = [(where(p), p.message, p.hint) for p in found]
    assert got == [
        ((3, 16), "group 'prod' has unknown child group 'databses'", "declare it under `groups:`"),
        ((7, 16), "groups form a cycle: web → edge → web", ""),
        ((9, 16), "groups form a cycle: loop → loop", ""),
        ((11, 16), "group 'all' cannot be the child of another group", ""),
    ]


def test_unknown_child_suggests_a_close_group(tmp_path: Path) -> None:
    found = problems(
        tmp_path, "groups:\n  databases: {hosts: {db1: null}}\n  prod: {children: [databses]}\n"
    )
    assert found[0].hint == "did you mean `databases`?"


def test_jump_hosts(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """defaults: {jump: bastion}
hosts:
  bastion: {address: 203.0.113.5}
  db1: {}
  db2: {jump: ops@10.0.0.9:2222}
  db3: {jump: jump.example.com}
""",
    )
    assert inv.get("bastion").jump is None  # the default does not make bastion jump via itself
    assert inv.get("db1").jump == "bastion"
    assert inv.get("db2").jump == "ops@10.0.0.9:2222"
    assert inv.get("db3").jump == "jump.example.com"
    found = problems(
        tmp_path,
        """hosts:
  bastion: {}
  a: {jump: bastoin}
  b: {jump: b}
  c: {jump: d}
  d: {jump: c}
""",
    )
    got = [(p.location.line, p.message, p.hint) for p in found]
    assert got == [
        (3, "host 'a': jump host 'bastoin' is not in the inventory", "did you mean `bastion`?"),
        (4, "host 'b' cannot jump through itself", ""),
        (5, "jump hosts form a loop: c → d → c", ""),
    ]


def test_a_field_set_twice_differently(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """groups:
  a: {hosts: {db1: {address: 10.0.0.1, password: one}}}
  b: {hosts: {db1: {address: 10.0.0.2, password: two}}}
""",
    )
    assert [where(p) for p in found] == [(3, 30), (3, 50)]
    assert "address is set twice" in found[0].message and "10.0.0.1" in found[0].hint
    assert "one" not in found[1].hint and "***" in found[1].hint  # never a password


def test_structure_problems(tmp_path: Path) -> None:
    assert "reserved" in problems(tmp_path, "groups:\n  all: {vars: {a: 1}}\n")[0].message
    assert "empty" in problems(tmp_path, "# nothing\n")[0].message
    assert "no host" in problems(tmp_path, "groups:\n  g: {}\n")[0].message
    assert "must be a mapping" in problems(tmp_path, "hosts: [a, b]\n")[0].message
    found = problems(tmp_path, "hosts:\n  a: {}\n  a: {}\n")
    assert "duplicate key" in found[0].message and where(found[0]) == (3, 3)
    found = problems(tmp_path, "hosts:\n  a: {port: [\n")
    assert "YAML syntax error" in found[0].message and found[0].location.line >= 2


def test_unreadable_inventory(tmp_path: Path) -> None:
    with pytest.raises(InventoryInvalid, match="cannot read inventory"):
        load_inventory(tmp_path / "missing.yaml")
    with pytest.raises(InventoryInvalid, match="directory"):
        load_inventory(tmp_path)
