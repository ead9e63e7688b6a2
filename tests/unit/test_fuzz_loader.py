"""Fuzzing the loader with a fixed seed: whatever the bytes, `runbook check` ends
in "valid" or "invalid, here is where" (exit 0 or 65), never in a crash, and an
invalid runbook runs no step.

Cases are mutations of a real runbook: characters cut, doubled and swapped,
tokens YAML and Jinja2 care about dropped in, lines shuffled, values replaced
by other types. Deterministic: a failure names its case number to replay.
"""

from __future__ import annotations

import random
import resource
from pathlib import Path

import pytest

from engine.errors import RunbookInvalid
from engine.format.lint import lint
from engine.format.loader import load_runbook
from tests.helpers import cli

SEED = 20261203
CASES = 5_000
EVERY_RUN = 50  # one case in so many also goes through `runbook run`

BASE = """\
runbook: fuzz
kind: emergency
params:
  db: {type: str, default: app}
  n: {type: int, default: 3, choices: [1, 3]}
vars:
  dsn: "postgresql://u@h/{{ params.db }}"
steps:
  - name: marker
    id: marker
    timeout: 5s
    shell: "touch {{ vars.marker_file | quote }}"
  - name: check
    when: steps.marker.rc == 0
    retry: {attempts: 2, delay: 1ms}
    until: result.rc == 0
    shell: {argv: [echo, "{{ params.n }}"]}
    thresholds:
      n: {value: result.stdout | int, warn: "> 5", critical: ">= {{ params.n * 3 }}"}
  - name: block
    block:
      steps:
        - {name: inner, log: "hi {{ params.db }}"}
      rescue:
        - {name: fix, assert: ["1 == 1"]}
rescue:
  - name: after
    log: done
"""

TOKENS = [
    "{{",
    "}}",
    "{%",
    "%}",
    "&a ",
    "*a",
    "<<: *a",
    "!!int ",
    "!!float ",
    "!!binary ",
    "? ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "\\",
    "\t",
    "\n",
    "  ",
    "#",
    "|",
    ">",
    "---",
    "...",
    "%YAML 1.1",
    "~",
    "null",
    "9" * 50,
    "1e999",
    "-0",
    "0x1F",
    "Ω",
    "\x00",
    "steps",
    "when",
    "retry",
    "shell",
    "sql",
    "block",
    "include",
    "params.",
    "result.",
    "{{ params.nope }}",
    "{{ steps.none.rc }}",
    "{{ 1/0 }}",
    "{{ 'a' * 10**9 }}",
]


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        at = rng.randrange(len(text) + 1)
        if kind == 0:  # cut
            text = text[:at] + text[at + rng.randint(1, 12) :]
        elif kind == 1:  # a token
            text = text[:at] + rng.choice(TOKENS) + text[at:]
        elif kind == 2:  # double a stretch
            text = text[:at] + text[at : at + rng.randint(1, 40)] * 2 + text[at:]
        elif kind == 3:  # swap two lines
            lines = text.split("\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind == 4:  # a value of another type
            text = text.replace(rng.choice(["app", "3", "5s", "1ms", "2", "echo", "hi"]),
                                rng.choice(["[]", "{}", "null", "true", "-1", "'x'"]), 1)  # fmt: skip
        else:  # a random byte
            text = text[:at] + chr(rng.randrange(0x20, 0x2FF)) + text[at:]
    return text


def test_mutated_runbooks_are_valid_or_invalid_never_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a mutated command writes nowhere but here
    rng = random.Random(SEED)
    marker = tmp_path / "ran"
    path = tmp_path / "fuzz.yaml"
    outcomes = {"valid": 0, "invalid": 0}
    for case in range(CASES):
        path.write_text(mutate(rng, BASE), encoding="utf-8", errors="surrogateescape")
        try:
            runbook = load_runbook(path)
            lint(runbook)
            outcomes["valid"] += 1
            valid = True
        except RunbookInvalid as exc:
            assert exc.problems, f"case {case}: invalid without a problem"
            outcomes["invalid"] += 1
            valid = False
        except Exception as exc:  # anything else is the bug this test looks for
            raise AssertionError(f"case {case}: {type(exc).__name__}: {exc}") from exc
        if case % EVERY_RUN == 0:
            result = cli("run", path, "-e", f"marker_file={marker}", "--yes")
            assert result.exit_code != 70, f"case {case}: {result.output}"
            if not valid:
                assert result.exit_code == 65, f"case {case}: {result.output}"
                assert not marker.exists(), f"case {case}: an invalid runbook ran a step"
            marker.unlink(missing_ok=True)
    # Not vacuous: both kinds of case were made, in numbers.
    assert outcomes["valid"] > CASES // 20 and outcomes["invalid"] > CASES // 4, outcomes
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mib < 1024, f"peak memory {peak_mib:.0f} MiB"
