"""Host patterns: every form, and Ansible's order (unions, then &, then !)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import UsageError
from engine.inventory.loader import Inventory, load_inventory
from engine.inventory.patterns import PatternError, split_pattern

INVENTORY = """
defaults: {connection: local}
groups:
  web:
    hosts: {web1: null, web2: null, web3: null}
  databases:
    hosts: {db1: null, db2: null}
  dbreplicas:
    hosts: {db2: null}
  prod:
    children: [web, databases]
  staging:
    hosts: {stage-web1: null, stage-db1: null}
hosts:
  bastion: null
  "fe80::1": null
"""
ORDER = ["web1", "web2", "web3", "db1", "db2", "stage-web1", "stage-db1", "bastion", "fe80::1"]


@pytest.fixture(autouse=True)
def _no_ssh_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(tmp_path / "no-such-ssh-config"))


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    return load_inventory(path)


def names(inv: Inventory, pattern: str) -> list[str]:
    return [h.name for h in inv.select(pattern)]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # names, groups, all
        ("db1", ["db1"]),
        ("bastion", ["bastion"]),
        ("databases", ["db1", "db2"]),
        ("prod", ["web1", "web2", "web3", "db1", "db2"]),
        ("all", ORDER),
        ("*", ORDER),
        ("ungrouped", ["bastion", "fe80::1"]),
        # globs match host names and group names
        ("web*", ["web1", "web2", "web3"]),
        ("db?", ["db1", "db2"]),
        ("stage-*", ["stage-web1", "stage-db1"]),
        ("data*", ["db1", "db2"]),
        ("*web1", ["web1", "stage-web1"]),
        # regexes are anchored at the start, as re.match
        ("~web", ["web1", "web2", "web3"]),
        ("~(web|db)[12]$", ["web1", "web2", "db1", "db2"]),
        # unions keep inventory order, not pattern order
        ("db1,web2", ["web2", "db1"]),
        ("bastion, db2 ,web1", ["web1", "db2", "bastion"]),
        ("web:databases", ["web1", "web2", "web3", "db1", "db2"]),  # legacy ':' union
        # intersections and exclusions
        ("prod:&databases", ["db1", "db2"]),
        ("prod,&dbreplicas", ["db2"]),
        ("all:!db2", [n for n in ORDER if n != "db2"]),
        ("prod:!web", ["db1", "db2"]),
        ("all:!prod:!staging", ["bastion", "fe80::1"]),
        # a lone IPv6 address is one name, not a ':' list
        ("fe80::1", ["fe80::1"]),
        # subscripts on groups
        ("web[0]", ["web1"]),
        ("web[-1]", ["web3"]),
        ("web[1:]", ["web2", "web3"]),
        ("prod[0:1]", ["web1", "web2"]),
        # a glob that matches nothing is fine beside terms that do
        ("web1,canary*", ["web1"]),
    ],
)
def test_each_pattern_form(inv: Inventory, pattern: str, expected: list[str]) -> None:
    assert names(inv, pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # exclusions apply after every union, wherever they are written
        ("!db1,databases", ["db2"]),
        ("!web,prod,staging", ["db1", "db2", "stage-web1", "stage-db1"]),
        # intersections apply after every union too
        ("&databases,all", ["db1", "db2"]),
        ("&prod,web1,db1,bastion", ["web1", "db1"]),
        # then exclusions after intersections: ((web ∪ databases) ∩ prod) \ {web1}
        ("!web1,&prod,web,databases", ["web2", "web3", "db1", "db2"]),
        # an exclusion of what an intersection kept
        ("all:&databases:!dbreplicas", ["db1"]),
        # only & / ! terms: Ansible starts from all
        ("!prod", ["stage-web1", "stage-db1", "bastion", "fe80::1"]),
        ("&databases", ["db1", "db2"]),
    ],
)
def test_combination_order_is_unions_then_intersections_then_exclusions(
    inv: Inventory, pattern: str, expected: list[str]
) -> None:
    assert names(inv, pattern) == expected


def test_a_plain_term_naming_a_host_selects_that_host(inv: Inventory) -> None:
    assert names(inv, "db2:&dbreplicas") == ["db2"]


def test_unknown_name_is_an_error_with_a_suggestion(inv: Inventory) -> None:
    with pytest.raises(PatternError) as info:
        inv.select("databses")
    assert "did you mean `databases`?" in str(info.value)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == 64


def test_a_typo_in_an_exclusion_is_an_error_not_a_silent_no_op(inv: Inventory) -> None:
    # `all:!db-2` would otherwise run on db2, the host the operator meant to spare.
    with pytest.raises(PatternError, match="db-2"):
        inv.select("all:!db-2")


def test_a_pattern_that_selects_nothing_is_an_error_listing_groups(inv: Inventory) -> None:
    with pytest.raises(PatternError) as info:
        inv.select("web:&databases")
    assert "matches no host" in str(info.value)
    assert "groups: web, databases, dbreplicas, prod, staging" in info.value.hint


def test_regex_and_glob_matching_nothing_alone_is_an_error(inv: Inventory) -> None:
    with pytest.raises(PatternError):
        inv.select("~nothing")
    with pytest.raises(PatternError):
        inv.select("canary*")


def test_invalid_regex_and_out_of_range_subscript(inv: Inventory) -> None:
    with pytest.raises(PatternError, match="not a valid regex"):
        inv.select("~[")
    with pytest.raises(PatternError, match="out of range"):
        inv.select("web[5]")


def test_empty_terms(inv: Inventory) -> None:
    with pytest.raises(PatternError, match="empty"):
        inv.select(" , ")
    with pytest.raises(PatternError, match="names nothing"):
        inv.select("web,!")


def test_limit_narrows_hosts_and_must_leave_some(inv: Inventory) -> None:
    assert [h.name for h in inv.select_hosts("prod", limit="db*")] == ["db1", "db2"]
    assert [h.name for h in inv.select_hosts(None)] == ORDER
    with pytest.raises(PatternError, match="leaves none"):
        inv.select_hosts("web", limit="databases")


def test_get_names_a_host_or_suggests_one(inv: Inventory) -> None:
    assert inv.get("db1").name == "db1"
    with pytest.raises(PatternError, match="did you mean `bastion`"):
        inv.get("bastoin")


@pytest.mark.parametrize(
    ("pattern", "terms"),
    [
        ("a,b[1], c[2:3] , d", ["a", "b[1]", "c[2:3]", "d"]),
        ("web[01:03]", ["web[01:03]"]),
        ("a:b:&c:!d", ["a", "b", "&c", "!d"]),
        ("prod:&databases", ["prod", "&databases"]),
        ("fe80::1", ["fe80::1"]),
        ("10.0.0.5", ["10.0.0.5"]),
        ("web[0:1]:db1", ["web[0:1]", "db1"]),
        (["a,b", "c"], ["a", "b", "c"]),
    ],
)
def test_split_pattern(pattern: str, terms: list[str]) -> None:
    assert split_pattern(pattern) == terms
