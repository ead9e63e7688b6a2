"""`list`, `show`, `schema`, `cron`, `--list-steps`, `--list-hosts`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from engine.format.catalog import find_runbooks
from tests.helpers import cli, write

ROOT = Path(__file__).resolve().parents[2]
# Runbook files only, as `runbook list` finds them (runbooks/coverage/ holds data),
# less `runbook test` cases files: their `runbook:` names the runbook they test.
EXAMPLES = sorted(
    path
    for path in [*find_runbooks(ROOT / "examples"), *find_runbooks(ROOT / "runbooks")]
    if "cases" not in (yaml.safe_load(path.read_text()) or {})
)


@pytest.fixture(scope="module")
def schema() -> jsonschema.Draft202012Validator:
    """`runbook schema`, checked against its metaschema once and compiled once."""
    result = cli("schema")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_schema_validates_every_shipped_runbook(
    schema: jsonschema.Draft202012Validator, path: Path
) -> None:
    data = yaml.safe_load(path.read_text())
    schema.validate(data)


def test_schema_rejects_what_the_loader_rejects(schema: jsonschema.Draft202012Validator) -> None:
    bad = {"runbook": "x", "steps": [{"name": "a", "shel": "ls"}]}
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(bad)
    bad_top = {"runbook": "x", "steps": [{"name": "a", "shell": "ls"}], "stepz": []}
    with pytest.raises(jsonschema.ValidationError):
        schema.validate(bad_top)


def _best_error(
    schema: jsonschema.Draft202012Validator, step: dict[str, object]
) -> jsonschema.ValidationError:
    """The error an editor or a CI check shows first for a runbook of this one step."""
    error = jsonschema.exceptions.best_match(schema.iter_errors({"runbook": "x", "steps": [step]}))
    assert error is not None, step
    return error


def test_schema_has_an_id_and_a_draft(schema: jsonschema.Draft202012Validator) -> None:
    assert schema.schema["$id"] == "https://runbook-engine.dev/schemas/runbook-v1.json"
    assert schema.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_a_misspelt_type_key_is_named_not_assert(schema: jsonschema.Draft202012Validator) -> None:
    """The issue: `shel:` came out as "Missing property assert"."""
    for step in ({"name": "a", "shel": "ls"}, {"name": "a", "shel": "ls", "timeout": 5}):
        errors = list(schema.iter_errors({"runbook": "x", "steps": [step]}))
        assert [e.message for e in errors] == [_best_error(schema, step).message]
        [error] = errors
        assert error.message.startswith("'shel' is not one of ['assert', 'block', ")
        assert "'shell'" in error.message and list(error.absolute_path) == ["steps", 0]
    nested = {"name": "b", "block": {"steps": [{"name": "a", "shel": "ls"}]}}
    error = _best_error(schema, nested)
    assert error.message.startswith("'shel' is not one of")
    assert list(error.absolute_path) == ["steps", 0, "block", "steps", 0]


def test_the_type_key_picks_the_variant(schema: jsonschema.Draft202012Validator) -> None:
    """A type key present selects its variant, so its errors are that variant's own."""
    cases = {
        "timout": {"name": "a", "shell": "ls", "timout": 5},  # a typo beside a type
        "shel": {"name": "a", "assert": "1 == 1", "shel": "ls"},  # `assert` as the type
        "sql": {"name": "a", "shell": "ls", "sql": {"query": "select 1"}},  # two types
    }
    for key, step in cases.items():
        error = _best_error(schema, step)
        assert error.message == f"Additional properties are not allowed ('{key}' was unexpected)"
        assert "assert" not in error.message
    body = _best_error(schema, {"name": "a", "shell": {"cmd": "ls", "bogus": 1}})
    assert list(body.absolute_path) == ["steps", 0, "shell"]
    assert "'bogus' was unexpected" in body.message


def test_a_step_without_a_type_needs_one(schema: jsonschema.Draft202012Validator) -> None:
    error = _best_error(schema, {"name": "a", "timeout": 5})
    assert error.validator == "anyOf"
    needed = {sub.message for sub in error.context}
    assert {"'shell' is a required property", "'sql' is a required property"} <= needed
    assert _best_error(schema, {"shell": "ls"}).message == "'name' is a required property"


def test_assert_is_a_type_alone_and_a_check_beside_another(
    schema: jsonschema.Draft202012Validator,
) -> None:
    ok = {
        "runbook": "x",
        "steps": [
            {"name": "a", "assert": "1 == 1"},
            {"name": "b", "shell": "ls", "assert": ["result.rc == 0"], "message": "rc"},
        ],
    }
    schema.validate(ok)


def test_schema_accepts_templates_for_typed_fields(schema: jsonschema.Draft202012Validator) -> None:
    ok = {
        "runbook": "x",
        "steps": [
            {"name": "a", "shell": {"cmd": "ls", "env": "{{ vars.env }}"}},
            {"name": "b", "block": {"steps": [{"name": "c", "log": "hi"}]}},
            {"name": "d", "log": "x", "retry": {"attempts": "{{ params.n }}"}},
            {"name": "e", "log": {"message": "x", "level": "{{ 'error' if 1 else 'info' }}"}},
        ],
    }
    schema.validate(ok)
    with pytest.raises(jsonschema.ValidationError):  # not a template, not a level
        schema.validate(
            {"runbook": "x", "steps": [{"name": "f", "log": {"message": "x", "level": "loud"}}]}
        )


def test_schema_refuses_templates_where_the_loader_does(
    schema: jsonschema.Draft202012Validator,
) -> None:
    # Read before the step is rendered: a literal is needed (see loader._validate_common).
    for field, value in (("ignore_errors", "{{ true }}"), ("timeout", "{{ params.t }}")):
        bad = {"runbook": "x", "steps": [{"name": "a", "log": "x", field: value}]}
        with pytest.raises(jsonschema.ValidationError):
            schema.validate(bad)


def test_list_orders_emergency_first(tmp_path: Path) -> None:
    write(tmp_path, "runbook: zeta\nkind: emergency\nsteps:\n  - name: a\n    log: x\n", "z.yaml")
    write(tmp_path, "runbook: alpha\nsteps:\n  - name: a\n    log: x\n", "a.yaml")
    write(
        tmp_path,
        "runbook: beta\nschedule: '0 3 * * 1'\nsteps:\n  - name: a\n    log: x\n",
        "b.yaml",
    )
    write(tmp_path, "not: a runbook\n", "other.yaml")
    result = cli("list", str(tmp_path), "--format", "json")
    names = [e["name"] for e in json.loads(result.stdout)]
    assert names == ["zeta", "alpha", "beta"]
    cron = cli("cron", str(tmp_path))
    assert re.match(r"0 3 \* \* 1 /\S+ run ", cron.stdout)  # runbook by its absolute path
    assert "# beta" in cron.stdout and "zeta" not in cron.stdout


def _scheduled_backup(tmp_path: Path) -> Path:
    """A nightly runbook on `databases` with a required param; its inventory."""
    write(
        tmp_path,
        """
        runbook: backup
        schedule: "30 2 * * *"
        hosts: databases
        params:
          bucket: {type: str, required: true}
        steps:
          - name: a
            log: "{{ params.bucket }}"
        """,
        "backup.yaml",
    )
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("hosts:\n  db1: {connection: local}\n")
    return inventory


def test_cron_never_prints_a_line_that_cannot_run(tmp_path: Path) -> None:
    """B9: a line without a required param (or an inventory for inventory
    hosts) exits 64 every night: it is printed commented, saying what it needs."""
    inventory = _scheduled_backup(tmp_path)
    (line,) = cli("cron", str(tmp_path)).stdout.splitlines()
    assert re.match(r"# 30 2 \* \* \* /\S+ run ", line)
    assert line.endswith(
        "# backup: add -p bucket=..., -i INVENTORY (hosts: databases), then uncomment"
    )
    (line,) = cli("cron", str(tmp_path), "-i", str(inventory)).stdout.splitlines()
    assert f"-i {inventory} --yes" in line
    assert line.endswith("# backup: add -p bucket=..., then uncomment")


def test_cron_writes_no_secret_value_into_a_schedule(tmp_path: Path) -> None:
    """A secret param given to `cron -p` would sit in crontab -l, the unit files
    and cron's mails: refused, pointing at --secrets, whose path (only) goes in."""
    write(
        tmp_path,
        """
        runbook: rotate
        schedule: "0 4 * * *"
        params:
          password: {type: str, secret: true, default: ""}
        steps:
          - name: Rotate
            shell: echo rotating
        """,
    )
    refused = cli("cron", str(tmp_path), "-p", "password=hunter2-cron")
    assert refused.exit_code == 64
    assert "secret param of rotate" in refused.output and "--secrets FILE" in refused.output
    assert "hunter2" not in refused.output
    units = tmp_path / "units"
    refused_units = cli("cron", str(tmp_path), "-p", "password=x", "--systemd", str(units))
    assert refused_units.exit_code == 64 and not units.exists()  # nothing half written
    secrets = tmp_path / "secrets.yaml"
    (line,) = cli("cron", str(tmp_path), "--secrets", str(secrets)).stdout.splitlines()
    assert f"--secrets {secrets} --yes" in line


def test_show_is_a_markdown_checklist() -> None:
    result = cli("show", str(ROOT / "examples/quickstart.yaml"))
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("# quickstart\n")
    assert "1. [ ] **Disk usage** (`disk`, shell)" in out
    assert "threshold **disk_used_pct**" in out
    assert "| `mount` | str | `/` |" in out


def test_show_prints_what_runs_as_written(tmp_path: Path) -> None:
    """A templated retry as its template (it printed the default), argv commands
    (omitted), every line of a script (only the first), and loops."""
    rb = write(
        tmp_path,
        """
        runbook: show-me
        params:
          n: {type: int, default: 4}
        steps:
          - name: templated retry
            shell: "true"
            retry: {attempts: "{{ params.n }}", delay: 2}
          - name: argv step
            shell: {argv: [df, -h, "{{ params.n }}"]}
          - name: script in argv
            shell: {argv: [sh, -c, 'test -d "$1" && ls "$1"', sh, "{{ params.n }}"]}
          - name: multi line
            shell: |
              set -e
              echo one
              echo two
          - name: looped
            loop: [a, b]
            shell: "echo {{ item }}"
        """,
    )
    shown = cli("show", rb).stdout
    assert "   - retry (attempts: {{ params.n }}, delay: 2)" in shown
    assert "retry 3×" not in shown
    assert "   - `$ df -h '{{ params.n }}'`" in shown
    assert """   - `$ sh -c 'test -d "$1" && ls "$1"' sh '{{ params.n }}'`""" in shown
    assert "   - runs:\n         $ set -e\n         echo one\n         echo two\n" in shown
    assert "   - for each of `a`, `b` as `item`" in shown


def test_list_steps_and_hosts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "runbook: x\nsteps:\n  - name: a\n    tags: [t]\n    log: x\n  - name: b\n    block:\n      steps:\n        - name: c\n          log: y\n",
    )
    steps = cli("run", str(path), "--list-steps")
    assert steps.stdout.splitlines() == ["a\tlog\ta  [tags: t]", "b\tblock\tb", "  c\tlog\tc"]
    hosts = cli("run", str(path), "--list-hosts")
    assert hosts.stdout.strip() == "localhost\tlocal\t127.0.0.1"


def test_show_keeps_a_pipe_inside_its_parameter_cell(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: piped
        params:
          probe: {type: str, default: "ps aux | grep x", description: "one | two"}
        steps:
          - name: run
            shell: "{{ params.probe }}"
        """,
    )
    out = cli("show", str(rb)).stdout
    [row] = [line for line in out.splitlines() if line.startswith("| `probe`")]
    assert row == "| `probe` | str | `ps aux \\| grep x` |  | one \\| two |"


def test_show_drops_the_raw_marks_that_keep_jinja_off_docker_templates(tmp_path: Path) -> None:
    """`{% raw %}` is for the engine; the person at the checklist types docker's own text."""
    rb = write(
        tmp_path,
        """
        runbook: raw
        steps:
          - name: restarts
            shell: "docker inspect web --format '{% raw %}{{.RestartCount}}{% endraw %}'"
          - name: look
            manual: "Run `docker ps --format '{%- raw -%}{{.Names}}{%- endraw -%}'`"
        """,
    )
    out = cli("show", str(rb)).stdout
    assert "docker inspect web --format '{{.RestartCount}}'`" in out
    assert "> Run `docker ps --format '{{.Names}}'`" in out
    assert "raw" not in out.split("## Steps")[1]


def test_cron_params_fill_the_runbooks_that_declare_them(tmp_path: Path) -> None:
    """Issue 18: the line carries the required params, so it can run as printed."""
    inventory = _scheduled_backup(tmp_path)
    args = ("-i", str(inventory), "-p", "bucket=nightly", "-p", "other=x")
    (line,) = cli("cron", str(tmp_path), *args).stdout.splitlines()
    assert not line.startswith("#") and line.endswith("--yes -p bucket=nightly  # backup")
    runbook_path = line.split()[5]
    assert Path(runbook_path).is_absolute() and Path(runbook_path).exists()
    assert cli("cron", str(tmp_path), "-p", "nonsense").exit_code == 64
