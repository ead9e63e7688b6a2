"""A host's network zone: which `runbook worker --zone` walks it (None: the controller).

Native inventories set it as a field (`defaults` < groups, parents first < the
host); Ansible ones through the var `runbook_zone`, with var precedence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.errors import InventoryInvalid, Problem
from engine.inventory.loader import Inventory, load_inventory
from engine.templating import render_value


@pytest.fixture(autouse=True)
def _no_ssh_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(tmp_path / "no-such-ssh-config"))


def load(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Inventory:
    path = tmp_path / name
    path.write_text(text)
    return load_inventory(path)


def problems(tmp_path: Path, text: str, name: str = "inventory.yaml") -> list[Problem]:
    with pytest.raises(InventoryInvalid) as info:
        load(tmp_path, text, name)
    assert info.value.exit_code == 65
    return info.value.problems


def zones(inv: Inventory) -> dict[str, str | None]:
    return {h.name: h.zone for h in inv}


# --- native -----------------------------------------------------------------

PRECEDENCE = """\
defaults: {zone: hq}
groups:
  dmz:
    zone: dmz-1
    hosts:
      web1: {}
      web2: {zone: dmz-2}
  office:
    hosts: {printer: {}}
hosts:
  laptop: {}
"""


def test_defaults_then_group_then_host(tmp_path: Path) -> None:
    inv = load(tmp_path, PRECEDENCE)
    assert zones(inv) == {"web1": "dmz-1", "web2": "dmz-2", "printer": "hq", "laptop": "hq"}
    assert "zone" in inv.get("web1").explicit  # ~/.ssh/config never fills it in
    assert inv.groups["dmz"].zone == "dmz-1" and inv.groups["office"].zone is None


def test_no_zone_anywhere_is_none(tmp_path: Path) -> None:
    inv = load(tmp_path, "hosts:\n  a: {}\n")
    assert inv.get("a").zone is None
    assert load_inventory(None).get("localhost").zone is None


def test_a_child_group_beats_its_parent(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """\
groups:
  # declared before its parent: depth decides, not file order
  rack7: {zone: eu-rack7, hosts: {db1: {}}}
  eu:
    zone: eu
    children: [rack7]
    hosts: {db2: {}}
""",
    )
    assert zones(inv) == {"db1": "eu-rack7", "db2": "eu"}


def test_a_grandchild_without_zone_inherits_the_nearest(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """\
groups:
  eu: {zone: eu, children: [paris]}
  paris: {zone: eu-paris, children: [rack1]}
  rack1: {hosts: {db1: {}}}
""",
    )
    assert inv.get("db1").zone == "eu-paris"


def test_two_groups_at_one_depth_the_later_in_merge_order_wins(tmp_path: Path) -> None:
    """As with vars: same depth and priority, the alphabetically later name wins."""
    inv = load(
        tmp_path,
        """\
groups:
  zulu: {zone: z, hosts: {h1: {}}}
  alpha: {zone: a, hosts: {h1: {}, h2: {}}}
""",
    )
    assert zones(inv) == {"h1": "z", "h2": "a"}
    assert inv.get("h1").groups == ["all", "alpha", "zulu"]


def test_a_number_is_read_as_text(tmp_path: Path) -> None:
    assert load(tmp_path, "hosts:\n  a: {zone: 7}\n").get("a").zone == "7"


@pytest.mark.parametrize(
    ("text", "line", "column", "path", "message"),
    [
        ("hosts:\n  a: {zone: 'eu west'}\n", 2, 13, "hosts.a.zone", "not a valid zone name"),
        ("hosts:\n  a:\n    zone: ''\n", 3, 11, "hosts.a.zone", "must not be empty"),
        ("hosts:\n  a: {zone: -eu}\n", 2, 13, "hosts.a.zone", "not a valid zone name"),
        ("hosts:\n  a: {zone: 1.5}\n", 2, 13, "hosts.a.zone", "zone must be text"),
        ("hosts:\n  a: {zone: [eu]}\n", 2, 13, "hosts.a.zone", "zone must be text"),
        ("defaults:\n  zone: eu/west\nhosts: {a: {}}\n", 2, 9, "defaults.zone", "eu/west"),
        (
            "groups:\n  g:\n    zone: 'a*'\n    hosts: {a: {}}\n",
            3,
            11,
            "groups.g.zone",
            "not a valid zone name",
        ),
    ],
)
def test_a_bad_zone_is_a_located_problem(
    tmp_path: Path, text: str, line: int, column: int, path: str, message: str
) -> None:
    [found] = problems(tmp_path, text)
    assert (found.location.line, found.location.column) == (line, column)
    assert found.location.file.endswith("inventory.yaml")
    assert found.path == path
    assert message in found.message
    assert "^" in found.snippet


def test_unknown_group_key_suggests_zone(tmp_path: Path) -> None:
    [found] = problems(tmp_path, "groups:\n  g:\n    zome: eu\n    hosts: {a: {}}\n")
    assert found.message == "unknown key 'zome'"
    assert found.hint == "did you mean `zone`?"
    [found] = problems(tmp_path, "groups:\n  g:\n    region: eu\n    hosts: {a: {}}\n")
    assert "zone" in found.hint.split("valid: ")[1].split(", ")


# --- Ansible ----------------------------------------------------------------


def test_ini_runbook_zone_in_group_and_host_vars(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """\
[dmz]
web1
web2 runbook_zone=dmz-2

[eu:children]
dmz

[eu:vars]
runbook_zone=eu

[dmz:vars]
runbook_zone=dmz-1
keep=yes

[office]
printer
""",
        "hosts",
    )
    assert zones(inv) == {"web1": "dmz-1", "web2": "dmz-2", "printer": None}
    assert inv.get("web1").vars == {"keep": "yes"}  # the zone left the vars
    assert "runbook_zone" not in inv.get("web2").vars


def test_yaml_runbook_zone_in_group_and_host_vars(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """\
all:
  vars: {runbook_zone: hq}
  children:
    dmz:
      vars: {runbook_zone: dmz-1}
      hosts:
        web1:
        web2: {runbook_zone: dmz-2, role: web}
  hosts:
    laptop:
""",
        "hosts.yml",
    )
    assert zones(inv) == {"web1": "dmz-1", "web2": "dmz-2", "laptop": "hq"}
    assert inv.get("web2").vars == {"role": "web"}


def test_group_vars_and_host_vars_files_set_the_zone(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("runbook_zone: hq\n")
    (tmp_path / "group_vars" / "dmz.yml").write_text("runbook_zone: dmz-files\n")
    (tmp_path / "host_vars" / "web2.yml").write_text("runbook_zone: web2-file\n")
    inv = load(
        tmp_path,
        # group_vars/dmz beats the inventory's [dmz:vars]; host_vars beats the host line
        "[dmz]\nweb1\nweb2 runbook_zone=line\n[dmz:vars]\nrunbook_zone=dmz-line\n[lab]\nl1\n",
        "hosts",
    )
    assert zones(inv) == {"web1": "dmz-files", "web2": "web2-file", "l1": "hq"}
    assert all("runbook_zone" not in h.vars for h in inv)


def test_ansible_list_json_runbook_zone(tmp_path: Path) -> None:
    listing = {
        "_meta": {"hostvars": {"w1": {"runbook_zone": "dmz"}, "w2": {}}},
        "all": {"children": ["web"]},
        "web": {"hosts": ["w1", "w2"], "vars": {"runbook_zone": "web"}},
    }
    inv = load(tmp_path, json.dumps(listing), "inventory.json")
    assert zones(inv) == {"w1": "dmz", "w2": "web"}


def test_a_bad_runbook_zone_is_an_error_at_the_host(tmp_path: Path) -> None:
    found = problems(tmp_path, "[web]\nw1\nw2\n[web:vars]\nrunbook_zone='eu west'\n", "hosts")
    assert [(p.location.line, p.path) for p in found] == [(2, "w1"), (3, "w2")]
    assert all("runbook_zone: zone 'eu west' is not a valid zone name" in p.message for p in found)


# --- templates and the CLI --------------------------------------------------


def test_templates_see_host_zone(tmp_path: Path) -> None:
    inv = load(tmp_path, PRECEDENCE)
    context = {"host": inv.get("web2").template_value()}
    assert render_value("queue runbook.zone.{{ host.zone }}", context) == "queue runbook.zone.dmz-2"
    assert load_inventory(None).get("localhost").template_value()["zone"] is None


def inventory_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["inventory", *args])
    return result.exit_code, result.output


def test_cli_text_shows_group_and_host_zones(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(PRECEDENCE.replace("laptop: {}", "laptop: {connection: local, zone: home}"))
    code, out = inventory_cli("-i", str(path))
    assert code == 0, out
    assert "  @dmz (zone dmz-1)\n" in out
    assert "\nweb1  ssh web1  host keys strict  zone dmz-1\n" in out
    assert "\nweb2  ssh web2  host keys strict  zone dmz-2\n" in out
    assert "\nlaptop  local  zone home\n" in out
    code, out = inventory_cli("-i", str(path), "--host", "web2")
    assert code == 0, out
    assert "  zone: dmz-2\n" in out


def test_cli_json_shows_zones(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(PRECEDENCE)
    code, out = inventory_cli("-i", str(path), "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert {n: h.get("zone") for n, h in data["hosts"].items()} == {
        "web1": "dmz-1",
        "web2": "dmz-2",
        "printer": "hq",
        "laptop": "hq",
    }
    assert data["groups"]["dmz"]["zone"] == "dmz-1"
    assert "zone" not in data["groups"]["office"]
    code, out = inventory_cli("-i", str(path), "--host", "web1", "--format", "json")
    assert code == 0, out
    assert json.loads(out)["zone"] == "dmz-1"


def test_cli_rejects_a_bad_zone_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("groups:\n  g:\n    zone: 'a b'\n    hosts: {a: {}}\n")
    code, out = inventory_cli("-i", str(path))
    assert code == 65
    assert f"{path}:3:11" in out and "not a valid zone name" in out


def test_a_zoned_host_reaches_its_worker_as_the_inventory_wrote_it(tmp_path: Path) -> None:
    """The controller's ~/.ssh/config must not pick the worker's keys and jump
    hosts: what it filled is taken out again (the worker applies its own)."""
    from engine.inventory.host import Host
    from engine.inventory.sshconfig import apply_ssh_config, as_written

    config = tmp_path / "ssh_config"
    config.write_text(
        "Host db1\n  HostName 10.0.0.5\n  User ops\n  Port 2200\n  ProxyJump bastion\n"
    )
    written = Host("db1", connection="ssh", zone="dc1", user="admin", explicit=frozenset({"user"}))
    filled = apply_ssh_config(written, config)
    assert (filled.address, filled.user, filled.port, filled.jump) == (
        "10.0.0.5", "admin", 2200, "bastion",
    )  # fmt: skip
    back = as_written(filled)
    assert (back.address, back.user, back.port, back.jump) == ("db1", "admin", None, None)
    assert back.zone == "dc1"
