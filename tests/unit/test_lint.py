"""`runbook check`'s warnings: valid runbooks that are risky in an outage."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.format.lint import lint
from engine.format.loader import load_runbook
from tests.helpers import cli, write

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*ROOT.glob("runbooks/*.yaml"), *ROOT.glob("examples/*.yaml")])

RISKY = """
runbook: risky
kind: emergency
params:
  table: {type: str, default: t}
  n: {type: int, default: 3}
  restart_cmd: {type: str, default: "true"}
steps:
  - name: drop it
    timeout: 1m
    sql: {dsn: "postgresql://x@h/db", query: "DROP TABLE old_events"}
  - name: pasted into a shell
    timeout: 1m
    shell: "psql -c 'select count(*) from {{ params.table }}'"
  - name: quoted, counted, literal
    timeout: 1m
    shell: "echo {{ params.table | quote }} {{ params.n | int }} {{ 'fixed' }} {{ host.name }}"
  - name: the whole command
    timeout: 1m
    shell: "{{ params.restart_cmd }}"
  - name: pasted into sql
    timeout: 1m
    sql:
      dsn: "postgresql://x@h/db"
      query: "SELECT * FROM t WHERE name = '{{ params.table }}' LIMIT {{ params.n | int }}"
  - name: bound
    timeout: 1m
    sql: {dsn: "postgresql://x@h/db", query: "SELECT * FROM t WHERE name = %s", params: ["{{ params.table }}"]}
  - name: no timeout
    retry: {attempts: 3}
    shell: "true"
  - name: tell a human
    manual: "If the restore is bad, DROP DATABASE the new one and rename the old back."
"""


def _warnings(tmp_path: Path, text: str) -> list[str]:
    return lint(load_runbook(write(tmp_path, text)))


def test_each_rule_warns_where_it_should_and_nowhere_else(tmp_path: Path) -> None:
    found = _warnings(tmp_path, RISKY)
    by_step = {w.split(" step ")[1].split(":")[0]: w for w in found}
    assert "looks destructive but has no `confirm:`" in by_step["drop_it"]
    assert "`{{ params.table }}` is pasted into the text unquoted" in by_step["pasted_into_a_shell"]
    assert "`| quote`" in by_step["pasted_into_a_shell"]
    assert "`{{ params.table }}`" in by_step["pasted_into_sql"]
    assert "bound parameter" in by_step["pasted_into_sql"]
    assert "params.n" not in by_step["pasted_into_sql"]  # `| int` cannot inject
    no_timeout = [w for w in found if "step no_timeout" in w]
    assert any("emergency runbook must not hang" in w for w in no_timeout)
    assert any("retried without a `timeout:`" in w for w in no_timeout)
    quiet = {"quoted_counted_literal", "the_whole_command", "bound", "tell_a_human"}
    assert quiet.isdisjoint(by_step), found


def test_a_confirm_gate_silences_the_destructive_warning(tmp_path: Path) -> None:
    gated = RISKY.replace(
        "    timeout: 1m\n    sql: {dsn", "    confirm: Drop?\n    timeout: 1m\n    sql: {dsn", 1
    )
    assert not any("step drop_it" in w for w in _warnings(tmp_path, gated))


def test_check_prints_the_warnings_and_still_exits_0(tmp_path: Path) -> None:
    result = cli("check", write(tmp_path, RISKY))
    assert result.exit_code == 0
    assert "warning:" in result.stdout and "pasted into the text unquoted" in result.stdout


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_the_shipped_runbooks_have_no_warnings(path: Path) -> None:
    assert lint(load_runbook(path)) == []
