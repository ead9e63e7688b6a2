"""Invalid runbooks: rejected whole, with file:line:column and field path, nothing run.

Every case starts with a step that would create a marker file; the marker must
not exist afterwards, proving that validation happened before any execution.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cli, write

HEAD = """runbook: broken
params:
  db: {type: str, default: app}
steps:
  - name: Side effect
    shell: "touch {marker}"
"""
# HEAD is 6 lines; a case's own lines start at line 7.

CASES: list[tuple[str, str, int, str, str]] = [
    # (id, text appended after HEAD, line, field path, message fragment)
    ("misspelt type", "  - name: x\n    shel: ls\n", 8, "steps[1].shel", "did you mean `shell`?"),
    (
        "misspelt common key",
        "  - name: x\n    shell: ls\n    tiemout: 5s\n",
        9,
        "steps[1].tiemout",
        "did you mean `timeout`?",
    ),
    ("no type", "  - name: x\n    timeout: 5s\n", 7, "steps[1]", "step has no type"),
    ("two types", "  - name: x\n    shell: ls\n    log: hi\n", 7, "steps[1]", "exactly one type"),
    ("missing name", "  - shell: ls\n", 7, "steps[1]", "missing required key `name`"),
    (
        "duplicate id",
        "  - name: Side effect\n    shell: ls\n",
        7,
        "steps[1].name",
        "duplicate step id `side_effect`",
    ),
    (
        "bad duration",
        "  - name: x\n    shell: ls\n    timeout: soon\n",
        9,
        "steps[1].timeout",
        "not a duration",
    ),
    (
        "retry attempts 0",
        "  - name: x\n    shell: ls\n    retry: {attempts: 0}\n",
        9,
        "steps[1].retry.attempts",
        "greater than or equal to 1",
    ),
    (
        "templated timeout",
        '  - name: x\n    shell: ls\n    timeout: "{{ params.db }}"\n',
        9,
        "steps[1].timeout",
        "cannot be a template",
    ),
    (
        "bad name in templated retry",
        '  - name: x\n    shell: ls\n    retry: {attempts: "{{ parms.n }}"}\n',
        9,
        "steps[1].retry.attempts",
        "unknown name `parms`",
    ),
    (
        "until without retry",
        "  - name: x\n    shell: ls\n    until: result.rc == 0\n",
        9,
        "steps[1].until",
        "`until` needs `retry`",
    ),
    (
        "unknown step ref",
        '  - name: x\n    shell: "echo {{ steps.nope.rc }}"\n',
        8,
        "steps[1].shell.cmd",
        "unknown step id `nope`",
    ),
    (
        "misspelt step ref",
        "  - name: x\n    when: steps.side_efect.rc == 0\n    shell: ls\n",
        8,
        "steps[1].when",
        "did you mean `side_effect`?",
    ),
    (
        "undeclared param",
        '  - name: x\n    shell: "echo {{ params.dbb }}"\n',
        8,
        "steps[1].shell.cmd",
        "undeclared param `dbb`",
    ),
    (
        "unknown name",
        '  - name: x\n    shell: "echo {{ hostname }}"\n',
        8,
        "steps[1].shell.cmd",
        "unknown name `hostname`",
    ),
    (
        "unparsable template",
        '  - name: x\n    shell: "echo {{ params.db "\n',
        8,
        "steps[1].shell.cmd",
        "cannot parse template",
    ),
    (
        "unparsable expression",
        '  - name: x\n    shell: ls\n    when: "params.db =="\n',
        9,
        "steps[1].when",
        "cannot parse expression",
    ),
    (
        "braces in condition",
        '  - name: x\n    shell: ls\n    when: "{{ params.db }}"\n',
        9,
        "steps[1].when",
        "without {{ }}",
    ),
    (
        "result in when",
        "  - name: x\n    shell: ls\n    when: result.rc == 0\n",
        9,
        "steps[1].when",
        "`result` is only available",
    ),
    (
        "threshold without operator",
        "  - name: x\n    shell: ls\n    thresholds:\n      t: {value: '1', warn: '0.9'}\n",
        10,
        "steps[1].thresholds.t.warn",
        "not a comparison",
    ),
    (
        "bad on_critical",
        "  - name: x\n    shell: ls\n    on_critical: explode\n",
        9,
        "steps[1].on_critical",
        "'continue' or 'fail'",
    ),
    (
        "shell without cmd",
        "  - name: x\n    shell: {cwd: /tmp}\n",
        8,
        "steps[1].shell",
        "exactly one of `cmd`",
    ),
    (
        "unknown shell field",
        "  - name: x\n    shell: {cmd: ls, sudo: root}\n",
        8,
        "steps[1].shell.sudo",
        "unknown key `sudo`",
    ),
    (
        "bad step id",
        "  - name: x\n    id: Bad-Id\n    shell: ls\n",
        8,
        "steps[1].id",
        "should match pattern",
    ),
    (
        "wait check unknown",
        "  - name: x\n    wait: {check: nope}\n    retry: {attempts: 2}\n    until: result.rc == 0\n",
        8,
        "steps[1].wait.check",
        "unknown step id `nope`",
    ),
    (
        "block child error",
        "  - name: b\n    block:\n      steps:\n        - name: y\n          shel: ls\n",
        11,
        "steps[1].block.steps[0].shel",
        "did you mean `shell`?",
    ),
    (
        "include missing",
        "  - name: inc\n    include: {runbook: nowhere.yaml}\n",
        8,
        "steps[1].include.runbook",
        "not found",
    ),
    (
        "duplicate yaml key",
        "  - name: x\n    shell: ls\n    shell: pwd\n",
        9,
        "steps[1].shell",
        "duplicate key",
    ),
    ("yaml syntax", "  - name: x\n    shell: [ls\n", 8, "", "YAML syntax error"),
    ("set reserved name", "  - name: x\n    set: {state: 1}\n", 8, "steps[1].set", "reserved"),
]


@pytest.mark.parametrize(
    ("text", "line", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_runbook_rejected_before_anything_runs(
    tmp_path: Path, text: str, line: int, path: str, fragment: str
) -> None:
    marker = tmp_path / "marker"
    rb = tmp_path / "broken.yaml"
    rb.write_text(HEAD.replace("{marker}", str(marker)) + text)
    result = cli("run", rb)
    assert result.exit_code == 65, result.output
    assert not marker.exists(), "a step ran although the runbook is invalid"
    err = result.stderr
    assert f"{rb}:{line}:" in err, err
    if path:
        assert f":{line}:" in err and f" {path}: " in err, err
    assert fragment in err, err
    # the offending line is shown with a caret under it
    assert "^" in err


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    rb = tmp_path / "many.yaml"
    rb.write_text(
        "runbook: Many\nkind: urgent\nsteps:\n"
        "  - name: a\n    shel: ls\n"
        '  - name: b\n    shell: "{{ params.x }}"\n'
        "  - name: c\n    shell: ls\n    tiemout: 1s\n"
    )
    result = cli("check", rb)
    assert result.exit_code == 65
    err = result.stderr
    assert "(5 errors)" in err
    for fragment in ("runbook:", "kind:", "`shel`", "undeclared param `x`", "`tiemout`"):
        assert fragment in err
    # sorted by line
    lines = [int(x.split(":")[1]) for x in err.splitlines() if x.startswith(str(rb))]
    assert lines == sorted(lines)


def test_include_errors_name_the_included_file(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text("runbook: child\nsteps:\n  - name: x\n    shel: ls\n")
    rb = tmp_path / "parent.yaml"
    rb.write_text("runbook: parent\nsteps:\n  - name: inc\n    include: {runbook: child.yaml}\n")
    result = cli("check", rb)
    assert result.exit_code == 65
    assert f"{tmp_path / 'child.yaml'}:4:5: steps[0].shel" in result.stderr


def test_include_param_mismatch(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(
        "runbook: child\nparams:\n  table: {type: str, required: true}\nsteps:\n  - name: x\n    shell: ls\n"
    )
    rb = tmp_path / "parent.yaml"
    rb.write_text(
        "runbook: parent\nsteps:\n  - name: inc\n    include: {runbook: child.yaml, params: {tabel: t}}\n"
    )
    result = cli("check", rb)
    assert result.exit_code == 65
    assert "has no param `tabel`" in result.stderr and "did you mean `table`?" in result.stderr
    assert "requires param `table`" in result.stderr


def test_check_passes_valid_runbook(tmp_path: Path) -> None:
    rb = tmp_path / "ok.yaml"
    rb.write_text("runbook: fine\nsteps:\n  - name: x\n    shell: ls\n")
    result = cli("check", rb)
    assert result.exit_code == 0
    assert "ok" in result.stdout


def test_result_in_a_threshold_bound_says_where_result_is_allowed(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: x
        steps:
          - name: a
            shell: echo 1
            thresholds:
              v: {value: result.stdout | float, warn: "> {{ result.rc }}"}
        """,
    )
    result = cli("check", rb)
    assert result.exit_code == 65
    assert "steps[0].thresholds.v.warn" in result.stderr
    assert "a threshold's value" in result.stderr


_BOMB = "".join(
    f"{name}: &{name} [{', '.join([prev] * 9)}]\n"
    for name, prev in zip("abcdefg", ['"lol"', "*a", "*b", "*c", "*d", "*e", "*f"], strict=True)
)
HOSTILE_YAML = [
    ("not utf-8", b"runbook: x\nsteps:\n  - name: \xff\xfe\n    log: hi\n", "3:11", "not UTF-8"),
    (
        "nested 600 deep",
        b"runbook: x\nsteps:\n  - name: a\n    log: " + b"[" * 600 + b"]" * 600 + b"\n",
        "4:",
        "nested more than",
    ),
    ("a recursive alias", b"runbook: x\nvars:\n  x: &x {a: *x}\nsteps: []\n", "3:6", "contains it"),
    ("!!int x", b"runbook: x\nvars: {n: !!int x}\nsteps: []\n", "2:11", "cannot read this value"),
    ("!!float abc", b"runbook: x\nvars: {n: !!float abc}\nsteps: []\n", "2:11", "cannot read"),
    ("5,000 digits", b"runbook: x\nvars: {n: " + b"9" * 5000 + b"}\nsteps: []\n", "2:11", "digits"),
    ("an alias bomb", (_BOMB + "runbook: x\nsteps: []\n").encode(), "1:", "expands to more than"),
    ("a complex key", b"runbook: x\nvars: {? [a, b] : 1}\nsteps: []\n", "2:", "plain value"),
]


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [case[1:] for case in HOSTILE_YAML],
    ids=[case[0] for case in HOSTILE_YAML],
)
def test_hostile_yaml_is_an_invalid_runbook_not_a_crash(
    tmp_path: Path, data: bytes, where: str, message: str
) -> None:
    # Each of these used to end in exit 70 (a traceback's type and place), the
    # alias bomb after minutes and gigabytes: now exit 65 with file:line:column.
    path = tmp_path / "hostile.yaml"
    path.write_bytes(data)
    for command in ("check", "run"):
        result = cli(command, path)
        assert result.exit_code == 65, result.output
        assert f"{path}:{where}" in result.stderr and message in result.stderr
        assert "nothing was executed" in result.stderr


def test_a_broken_file_included_twice_is_one_problem(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("runbook: broken\nsteps:\n  - name: x\n    shell: [a\n")
    rb = write(
        tmp_path,
        """
        runbook: main
        steps:
          - name: first
            include: {runbook: broken.yaml}
          - name: again, in short
            include: broken.yaml
        """,
    )
    result = cli("check", rb)
    assert result.exit_code == 65
    assert "runbook is invalid (1 error)" in result.stderr
    assert result.stderr.count("broken.yaml:4:") == 1
