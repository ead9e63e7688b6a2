"""The per-application inventories written from the maintenance guides in shared/seeds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.inventory.loader import Inventory, load_inventory
from engine.redaction import looks_secret

ROOT = Path(__file__).resolve().parents[2]

APP_INVENTORIES = [
    "fastapi.yaml",
    "bigshot.yaml",
    "trailblaze.yaml",
    "promptforge.yaml",
    "django-site.yaml",
]

# A secret-named var may only be a template that fetches the secret at run time.
SECRET_TEMPLATE = re.compile(r"^\{\{\s*secret\(.*\)\s*\}\}$")


@pytest.fixture(autouse=True)
def _no_ssh_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNBOOK_SSH_CONFIG", str(tmp_path / "no-such-ssh-config"))


@pytest.fixture(params=APP_INVENTORIES)
def inventory(request: pytest.FixtureRequest) -> Inventory:
    return load_inventory(ROOT / "inventories" / request.param)


def test_it_loads_with_hosts(inventory: Inventory) -> None:
    assert inventory.hosts


@pytest.mark.parametrize("group", ["databases", "web"])
def test_the_library_groups_have_hosts(inventory: Inventory, group: str) -> None:
    assert group in inventory.groups
    assert inventory.groups[group].all_hosts


def test_every_host_is_reached_over_ssh(inventory: Inventory) -> None:
    for host in inventory.hosts.values():
        assert host.connection == "ssh", host.name


def test_no_secret_value_is_written(inventory: Inventory) -> None:
    for host in inventory.hosts.values():
        for name, value in host.vars.items():
            if looks_secret(name):
                assert isinstance(value, str), (host.name, name)
                assert SECRET_TEMPLATE.match(value), (host.name, name)


def test_database_hosts_have_the_vars_the_runbooks_read(inventory: Inventory) -> None:
    for name in inventory.groups["databases"].all_hosts:
        host = inventory.get(name)
        assert isinstance(host.vars.get("pg_user"), str), name
        assert host.vars["pg_user"]
        assert isinstance(host.vars.get("pg_port"), int), name
