"""The reader shell (engine/connections/base.hidden) under each POSIX shell a
host may have as /bin/sh: Debian's dash and RHEL's bash read the same text."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from engine.connections.base import Command, hidden, script
from engine.errors import StepError

SHELLS = [s for s in ("dash", "bash") if shutil.which(s)]


def through(shell: str, command: Command, one_line: bool) -> subprocess.CompletedProcess[bytes]:
    launch = hidden(command, one_line=one_line)
    words = [shutil.which(shell) or shell, *launch.words[1:]]
    return subprocess.run(words, input=launch.stdin, capture_output=True, timeout=10)


@pytest.mark.parametrize("one_line", [False, True])
@pytest.mark.parametrize("shell", SHELLS)
def test_text_and_stdin_arrive_exactly(shell: str, one_line: bool) -> None:
    text = "a='x  y'\nprintf '%s|' \"$a\"\ncat"
    done = through(shell, Command(cmd=text, stdin=b"rest\nof stdin"), one_line)
    assert (done.returncode, done.stdout) == (0, b"x  y|rest\nof stdin")
    assert "\n" not in hidden(Command(cmd=text), one_line=True).words[2]


@pytest.mark.parametrize("shell", SHELLS)
def test_text_starting_with_a_dash_is_a_command_not_an_option(shell: str) -> None:
    # bash's eval takes a leading "-x" as its own option and refuses it.
    done = through(shell, Command(cmd="-nosuch 2>/dev/null; echo ran"), one_line=False)
    assert done.stdout == b"ran\n", done.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_long_text_is_read_in_blocks(shell: str) -> None:
    text = "-x=1 2>/dev/null\n" + "true\n" * 3000 + "echo end"
    done = through(shell, Command(cmd=text), one_line=False)
    assert done.stdout == b"end\n", done.stderr


def test_a_nul_byte_is_refused_not_cut() -> None:
    with pytest.raises(StepError, match="NUL"):
        script(Command(cmd="echo a\0rm -rf /tmp/x"))
    with pytest.raises(StepError, match="NUL"):
        script(Command(cmd="true", env={"X": "a\0b"}))
    with pytest.raises(StepError, match="NUL"):
        script(Command(argv=["echo", "a\0b"]))
