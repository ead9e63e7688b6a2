"""Habits people bring from Ansible and other CLIs: -C, -q, --list-tags, help
with examples and exit codes, shell completion, `list` whole when piped."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from engine.cli import helptext, main
from tests.helpers import cli, write

REPO = Path(__file__).resolve().parents[2]

TAGGED = """
runbook: tagged
steps:
  - name: look
    shell: echo looked
    tags: [check]
  - name: change
    shell: touch {marker}
    tags: [fix, slow]
  - name: fine
    shell: echo fine
  - name: disk
    shell: echo 95
    thresholds:
      used: {{value: result.stdout | float, warn: "> 80", critical: "> 99"}}
"""


def _commands() -> dict[str, click.Command]:
    assert isinstance(main, click.Group)
    return dict(main.commands)


def test_every_command_help_has_examples_and_exit_codes() -> None:
    for name in _commands():
        result = cli(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert "Examples:" in result.output, name
        assert "Exit codes" in result.output, name


def test_the_help_examples_name_files_options_and_steps_that_exist() -> None:
    """An example that fails when pasted teaches the wrong thing."""
    commands = _commands()
    texts = [v for k, v in vars(helptext).items() if k.isupper() and isinstance(v, str)]
    examples = [
        line.split("#")[0].strip()
        for text in texts
        for line in text.splitlines()
        if line.strip().startswith(("runbook ", "RUNBOOK_")) and "COMMAND" not in line
    ]
    assert len(examples) > 15
    for example in examples:
        words = shlex.split(example.split("|")[0])
        words = words[words.index("runbook") + 1 :]  # past an VAR=value
        command = commands[words[0]]
        known = {o for p in command.params for o in getattr(p, "opts", [])}
        for word in words[1:]:
            if word.startswith("-"):
                assert word in known, f"{example}: {word} is not an option of {words[0]}"
            elif word.startswith(("runbooks/", "examples/", "inventories/")):
                assert (REPO / word.replace("*.yaml", "")).exists(), f"{example}: {word}"
        if "--approve" in words:
            runbook = REPO / next(w for w in words if w.endswith(".yaml"))
            step = words[words.index("--approve") + 1]
            assert re.search(rf"id: {step}\b", runbook.read_text()), example


def test_dash_capital_c_is_a_dry_run(tmp_path: Path) -> None:
    marker = tmp_path / "changed"
    rb = write(tmp_path, TAGGED.format(marker=marker))
    result = cli("run", str(rb), "-C")
    assert "dry run: nothing will be changed" in result.output
    assert not marker.exists()


def test_list_tags_names_each_tag_with_its_steps(tmp_path: Path) -> None:
    rb = write(tmp_path, TAGGED.format(marker=tmp_path / "m"))
    result = cli("run", str(rb), "--list-tags")
    assert result.exit_code == 0
    assert result.output.splitlines() == ["check\tlook", "fix\tchange", "slow\tchange"]
    assert not (tmp_path / "m").exists()


def test_quiet_shows_only_what_needs_a_look(tmp_path: Path) -> None:
    rb = write(tmp_path, TAGGED.format(marker=tmp_path / "m"))
    loud = cli("run", str(rb))
    quiet = cli("run", str(rb), "-q")
    assert loud.exit_code == quiet.exit_code == 1  # warn
    assert "fine" in loud.output and "fine" not in quiet.output
    assert "disk" in quiet.output and "warn" in quiet.output  # the threshold crossed
    assert "finished: warn (exit 1)" in quiet.output
    both = cli("run", str(rb), "-q", "-v")
    assert both.exit_code == 64


def test_list_piped_keeps_whole_names_and_paths(tmp_path: Path) -> None:
    long_name = "a-runbook-with-a-name-much-longer-than-any-terminal-column-would-show"
    write(
        tmp_path,
        f"""
        runbook: {long_name}
        description: {"a description that goes on " * 6}
        steps:
          - name: one
            shell: echo one
        """,
        name="long.yaml",
    )
    result = subprocess.run(
        [sys.executable, "-m", "engine", "list", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "40"},
    )
    header, row = result.stdout.splitlines()
    assert header.split("\t") == ["kind", "runbook", "schedule", "description", "path"]
    fields = row.split("\t")
    assert fields[1] == long_name and fields[4] == str(tmp_path / "long.yaml")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_scripts_and_answers(shell: str) -> None:
    env = {**os.environ, "_RUNBOOK_COMPLETE": f"{shell}_source"}
    source = subprocess.run(
        [sys.executable, "-m", "engine"], env=env, capture_output=True, text=True, check=True
    )
    assert "_RUNBOOK_COMPLETE" in source.stdout
    if shell != "bash":
        return
    env = {
        **os.environ,
        "_RUNBOOK_COMPLETE": "bash_complete",
        "COMP_WORDS": "runbook run --ti",
        "COMP_CWORD": "2",
    }
    answer = subprocess.run(
        [sys.executable, "-m", "engine"], env=env, capture_output=True, text=True, check=True
    )
    assert answer.stdout.splitlines() == ["plain,--timeout"]
