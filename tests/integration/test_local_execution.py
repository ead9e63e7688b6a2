"""The executor on localhost: retries, timeouts, rescue/always, when, native types."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.helpers import cli, run_json, steps_of, write


def test_retry_until_succeeds_after_attempts(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    path = write(
        tmp_path,
        f"""
        runbook: retry-until
        steps:
          - name: flaky
            shell: "echo x >> {counter}; wc -l < {counter}"
            retry: {{attempts: 5, delay: 10ms}}
            until: result.stdout | int >= 3
        """,
    )
    code, doc = run_json(path)
    assert code == 0
    step = steps_of(doc)["flaky"]
    assert step["attempts"] == 3
    assert step["data"]["stdout"].strip() == "3"
    assert len(counter.read_text().splitlines()) == 3


def test_until_never_met_fails_with_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        runbook: until-never
        steps:
          - name: never
            shell: echo 1
            retry: {attempts: 3, delay: 0}
            until: result.stdout | int > 5
        """,
    )
    code, doc = run_json(path)
    assert code == 3
    step = steps_of(doc)["never"]
    assert step["attempts"] == 3
    assert "until not met after 3 attempts" in step["error"]


def test_retry_on_failure_without_until(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    path = write(
        tmp_path,
        f"""
        runbook: retry-fail
        steps:
          - name: fails twice
            shell: "echo x >> {counter}; test $(wc -l < {counter}) -ge 2"
            retry: {{attempts: 4, delay: 0}}
        """,
    )
    code, doc = run_json(path)
    assert code == 0
    assert steps_of(doc)["fails_twice"]["attempts"] == 2


def test_timeout_kills_the_sleeping_child(tmp_path: Path) -> None:
    marker = f"rb-timeout-{os.getpid()}-{time.time_ns()}"
    path = write(
        tmp_path,
        f"""
        runbook: timeout
        steps:
          - name: sleepy
            timeout: 200ms
            shell: "sh -c 'sleep 30; echo {marker}' & sleep 30"
        """,
    )
    started = time.monotonic()
    code, doc = run_json(path)
    elapsed = time.monotonic() - started
    assert code == 3
    step = steps_of(doc)["sleepy"]
    assert "timed out after 0.2s" in step["error"]
    assert elapsed < 20, "the runbook waited for the child instead of killing it"
    # Neither the shell nor its background child survived.
    found = subprocess.run(
        ["pgrep", "-f", f"sleep 30; echo {marker}"], capture_output=True, text=True
    )
    assert found.stdout.split() == []


def test_rescue_and_always_run_in_order(tmp_path: Path) -> None:
    log = tmp_path / "order"
    path = write(
        tmp_path,
        f"""
        runbook: rescue-order
        steps:
          - name: one
            shell: "echo one >> {log}"
          - name: guarded
            block:
              steps:
                - name: two
                  shell: "echo two >> {log}; exit 1"
                - name: skipped by failure
                  shell: "echo never >> {log}"
              rescue:
                - name: fix
                  shell: "echo rescue >> {log}"
              always:
                - name: cleanup
                  shell: "echo always >> {log}"
          - name: three
            shell: "echo three >> {log}"
        always:
          - name: final
            shell: "echo final >> {log}"
        """,
    )
    code, doc = run_json(path)
    assert log.read_text().split() == ["one", "two", "rescue", "always", "three", "final"]
    assert code == 0, "a block whose rescue succeeded counts as ok"
    steps = steps_of(doc)
    assert steps["two"]["state"] == "failed" and steps["two"]["rescued"] is True
    assert steps["guarded"]["rescued"] is True


def test_runbook_rescue_after_failure_and_always_after_failed_rescue(tmp_path: Path) -> None:
    log = tmp_path / "order"
    path = write(
        tmp_path,
        f"""
        runbook: top-rescue
        steps:
          - name: boom
            shell: "echo boom >> {log}; exit 2"
          - name: unreached
            shell: "echo unreached >> {log}"
        rescue:
          - name: rescue fails too
            shell: "echo rescue >> {log}; exit 1"
          - name: unreached rescue
            shell: "echo unreached-rescue >> {log}"
        always:
          - name: final
            shell: "echo final >> {log}"
        """,
    )
    code, _doc = run_json(path)
    assert log.read_text().split() == ["boom", "rescue", "final"]
    assert code == 3


def test_when_on_earlier_results(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        runbook: when-results
        steps:
          - name: probe
            shell: "echo 42; exit 1"
            failed_when: result.rc not in [0, 1]
          - name: on rc 1
            when: steps.probe.rc == 1 and steps.probe.stdout | trim == '42'
            shell: echo yes
          - name: on rc 0
            when: steps.probe.rc == 0
            shell: echo no
          - name: on state
            when: steps.probe.state == 'ok'
            log: probe was ok
        """,
    )
    code, doc = run_json(path)
    assert code == 0
    steps = steps_of(doc)
    assert steps["probe"]["state"] == "ok"
    assert steps["on_rc_1"]["state"] == "ok"
    assert steps["on_rc_0"]["state"] == "skipped"
    assert steps["on_rc_0"]["skip_reason"] == "when: steps.probe.rc == 0"
    assert steps["on_state"]["state"] == "ok"


def test_native_types_through_templates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        runbook: native
        params:
          count: {type: int, default: 3}
          names: {type: list, default: [a, b]}
        vars:
          total: "{{ params.count * 2 }}"
          words: "{{ params.names + ['c'] }}"
          text: "n={{ params.count }}"
          cfg: "{{ {'port': 5432, 'ssl': true} }}"
        steps:
          - name: types
            set:
              is_int: "{{ vars.total is integer }}"
              length: "{{ vars.words | length }}"
            assert:
              - result.is_int == true
              - result.length == 3
          - name: check
            assert:
              - vars.total == 6
              - vars.words == ['a', 'b', 'c']
              - vars.text == 'n=3'
              - vars.cfg.port == 5432 and vars.cfg.ssl is sameas true
          - name: json out
            shell:
              cmd: "echo '{\\"a\\": [1, 2]}'"
              parse: json
          - name: use json
            assert: ["steps.json_out.json.a[1] == 2"]
        """,
    )
    code, doc = run_json(path)
    assert code == 0, doc
    assert steps_of(doc)["types"]["data"] == {"is_int": True, "length": 3}


def test_outputs_are_never_rendered_again(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        runbook: no-rerender
        steps:
          - name: emit template text
            shell: "printf '%s' '{{ \\"{{\\" }} 7 * 7 {{ \\"}}\\" }}'"
          - name: echo it back
            shell: "printf '%s' {{ steps.emit_template_text.stdout | quote }}"
        """,
    )
    code, doc = run_json(path)
    assert code == 0
    assert steps_of(doc)["echo_it_back"]["data"]["stdout"] == "{{ 7 * 7 }}"


def test_failed_when_assert_and_on_critical(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        runbook: criteria
        steps:
          - name: grep finds nothing
            shell: "echo hello | grep -c nope"
            failed_when: result.rc > 1
          - name: asserted
            shell: echo 3
            assert: ["result.stdout | int == 3"]
          - name: critical fails
            shell: echo 99
            on_critical: fail
            ignore_errors: true
            thresholds:
              v: {value: result.stdout | int, critical: ">= 90"}
          - name: assertion message
            shell: echo 1
            assert: ["result.stdout | int == 2"]
            message: "expected two, got {{ 1 }}"
        """,
    )
    code, doc = run_json(path)
    steps = steps_of(doc)
    assert steps["grep_finds_nothing"]["state"] == "ok"
    assert steps["asserted"]["state"] == "ok"
    assert steps["critical_fails"]["state"] == "failed"
    assert "critical threshold: v=99" in steps["critical_fails"]["error"]
    assert steps["assertion_message"]["state"] == "failed"
    assert code == 3


def test_shell_argv_stdin_env_cwd(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        runbook: shell-fields
        steps:
          - name: argv has no shell
            shell: {{argv: [echo, "$HOME;", "a b"]}}
          - name: stdin
            shell: {{cmd: "tr a-z A-Z", stdin: "quiet"}}
          - name: env and cwd
            shell: {{cmd: 'echo "$GREETING $(pwd)"', env: {{GREETING: hi}}, cwd: "{tmp_path}"}}
          - name: env does not leak
            shell: 'echo "[$GREETING]"'
        """,
    )
    code, doc = run_json(path)
    assert code == 0
    s = steps_of(doc)
    assert s["argv_has_no_shell"]["data"]["stdout"] == "$HOME; a b\n"
    assert s["stdin"]["data"]["stdout"] == "QUIET"
    assert s["env_and_cwd"]["data"]["stdout"].strip() == f"hi {tmp_path}"
    assert s["env_does_not_leak"]["data"]["stdout"].strip() == "[]"


def test_include_with_params_and_results(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        runbook: child
        params:
          word: {type: str, required: true}
        steps:
          - name: say
            shell: "echo {{ params.word | quote }}"
        """,
        name="child.yaml",
    )
    path = write(
        tmp_path,
        """
        runbook: parent
        vars:
          w: included
        steps:
          - name: inc
            include: {runbook: child.yaml, params: {word: "{{ vars.w }}"}}
          - name: after
            assert: ["steps.inc.steps.say.stdout | trim == 'included'"]
        """,
    )
    code, doc = run_json(path)
    assert code == 0, doc
    ids = [s["id"] for s in doc["hosts"]["localhost"]["steps"]]
    assert ids == ["inc.say", "inc", "after"]


def test_tags_skip_tags_and_start_at(tmp_path: Path) -> None:
    text = """
    runbook: selection
    steps:
      - name: a
        tags: [check]
        shell: echo a
      - name: b
        tags: [fix]
        shell: echo b
      - name: c
        tags: [check]
        shell: echo c
    """
    path = write(tmp_path, text)
    _, doc = run_json(path, "--tags", "check")
    assert {k: v["state"] for k, v in steps_of(doc).items()} == {
        "a": "ok",
        "b": "skipped",
        "c": "ok",
    }
    _, doc = run_json(path, "--skip-tags", "check")
    assert {k: v["state"] for k, v in steps_of(doc).items()} == {
        "a": "skipped",
        "b": "ok",
        "c": "skipped",
    }
    _, doc = run_json(path, "--start-at", "b")
    assert {k: v["state"] for k, v in steps_of(doc).items()} == {
        "a": "skipped",
        "b": "ok",
        "c": "ok",
    }


def test_dry_run_changes_nothing_and_shows_rendered(tmp_path: Path) -> None:
    target = tmp_path / "created"
    path = write(
        tmp_path,
        f"""
        runbook: dry
        params:
          name: {{type: str, default: created}}
        steps:
          - name: create
            shell: "touch {tmp_path}/{{{{ params.name }}}}"
          - name: safe read
            safe: true
            shell: echo 5
          - name: uses created
            when: steps.create.rc == 0
            shell: "echo should-not-run"
          - name: uses safe
            assert: ["steps.safe_read.stdout | int == 5"]
        """,
    )
    code, doc = run_json(path, "--dry-run")
    assert not target.exists()
    s = steps_of(doc)
    assert s["create"]["state"] == "skipped" and s["create"]["dry_run"] is True
    assert s["create"]["rendered"]["cmd"] == f"touch {target}"
    assert s["safe_read"]["state"] == "ok"
    assert s["uses_created"]["state"] == "skipped"
    assert s["uses_safe"]["state"] == "ok"
    assert code == 0
    assert doc["dry_run"] is True


def test_extra_vars_override_runbook_vars(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        runbook: extra
        vars:
          level: low
          derived: "{{ vars.level }}-x"
        steps:
          - name: show
            assert: ["vars.level == 'high'", "vars.derived == 'high-x'", "vars.n == 3"]
        """,
    )
    code, doc = run_json(path, "-e", "level=high", "-e", "n=3")
    assert code == 0, doc


def test_wait_check_polls_another_step(tmp_path: Path) -> None:
    counter = tmp_path / "c"
    path = write(
        tmp_path,
        f"""
        runbook: waiting
        steps:
          - name: lag
            shell: "echo x >> {counter}; wc -l < {counter}"
          - name: wait for lag
            wait: {{check: lag}}
            retry: {{attempts: 10, delay: 10ms}}
            until: result.stdout | int >= 4
          - name: pause
            wait: {{seconds: 50ms}}
        """,
    )
    code, doc = run_json(path)
    assert code == 0, doc
    s = steps_of(doc)
    assert s["wait_for_lag"]["attempts"] == 3
    assert len(counter.read_text().splitlines()) == 4


def test_render_error_names_step_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        runbook: render-error
        steps:
          - name: first
            shell: echo x
          - name: bad field
            shell: "echo {{ steps.first.nothing_here }}"
        """,
    )
    code, doc = run_json(path)
    assert code == 3
    err = steps_of(doc)["bad_field"]["error"]
    assert "shell.cmd" in err and "nothing_here" in err


def test_summary_counts_rescued_and_ignored_failures_apart(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
runbook: handled
steps:
  - name: guarded
    block:
      steps:
        - {name: breaks, shell: "exit 3"}
      rescue:
        - {name: fix, log: fixed}
  - {name: tolerated, shell: "exit 1", ignore_errors: true}
""",
    )
    result = cli("run", str(path))
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert "finished: ok (exit 0)" in summary
    assert "rescued 1" in summary and "ignored 1" in summary
    assert "failed" not in summary


def test_retry_values_may_come_from_params(tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    path = write(
        tmp_path,
        f"""
runbook: templated-retry
params:
  tries: {{type: int, default: 4}}
steps:
  - name: flaky
    id: flaky
    shell: "echo x >> {counter}; exit 1"
    retry: {{attempts: "{{{{ params.tries }}}}", delay: 0}}
""",
    )
    code, doc = run_json(path, "-p", "tries=3")
    assert code == 3
    assert steps_of(doc)["flaky"]["attempts"] == 3
    assert len(counter.read_text().splitlines()) == 3
    code, doc = run_json(path, "-p", "tries=0")
    assert code == 3
    assert "retry.attempts" in steps_of(doc)["flaky"]["error"]
    assert len(counter.read_text().splitlines()) == 3  # nothing ran with a bad policy


def test_a_shell_command_reads_its_text_from_stdin_like_sh_c() -> None:
    """The text travels on stdin (out of `ps`): the command must not notice."""
    from engine.connections.base import Command
    from engine.connections.local import LocalConnection
    from engine.inventory.host import Host

    conn = LocalConnection(Host(name="localhost"))
    binary = bytes(range(256)) * 3  # stdin after the text reaches the command exactly
    got = conn.run(Command(cmd='echo "$0"; exit 7', env={"A": "it's"}))
    assert (got.rc, got.stdout) == (7, b"sh\n")
    got = conn.run(Command(cmd="cat", stdin=binary))
    assert (got.rc, got.stdout) == (0, binary)
    got = conn.run(Command(cmd='printf %s "$A"; read x; echo " $x"', env={"A": "it's"}))
    assert got.stdout == b"it's \n"  # no stdin given: reads end at once, as from /dev/null
    # A long text (read by `cat` instead of byte by byte), heredoc included.
    long = "\n".join(f"v{i}='{'x' * 60}'" for i in range(400))
    got = conn.run(Command(cmd=long + "\ncat <<EOF\n$v399\nEOF\ncat"))
    assert (got.rc, got.stdout) == (0, b"x" * 60 + b"\n")
    # sudo resets the environment: env reaches the command through the text.
    if os.geteuid() == 0:
        got = conn.run(Command(cmd='echo "$(id -un) $A"', env={"A": "kept"}, become="nobody"))
        assert got.stdout == b"nobody kept\n", got


def test_runbook_dir_finds_files_beside_the_runbook_and_an_include_sees_its_own(
    tmp_path: Path,
) -> None:
    sub = tmp_path / "lib"
    sub.mkdir()
    (tmp_path / "helper.sh").write_text("#!/bin/sh\necho main helper\n")
    (sub / "helper.sh").write_text("#!/bin/sh\necho lib helper\n")
    for script in (tmp_path / "helper.sh", sub / "helper.sh"):
        script.chmod(0o755)
    write(
        sub,
        """
        runbook: inner
        steps:
          - name: its own helper
            id: helper
            shell: "{{ runbook.dir | quote }}/helper.sh"
        """,
        "inner.yaml",
    )
    rb = write(
        tmp_path,
        """
        runbook: outer
        steps:
          - name: main helper
            id: helper
            shell: "{{ runbook.dir | quote }}/helper.sh"
          - name: inner
            include: {runbook: lib/inner.yaml}
          - name: where
            log: "{{ runbook.name }} {{ runbook.path }} {{ run.dry_run }}"
        """,
    )
    code, doc = run_json(rb)
    assert code == 0, doc
    s = steps_of(doc)
    assert s["helper"]["data"]["stdout"] == "main helper\n"
    assert s["inner.helper"]["data"]["stdout"] == "lib helper\n"
    assert s["where"]["data"] == {"message": f"outer {rb} False", "level": "info"}


def test_keep_going_counts_the_failure_and_runs_the_next_steps(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: checklist
        steps:
          - name: first check
            id: first
            shell: "exit 1"
            keep_going: true
          - name: second check
            id: second
            shell: "echo measured"
          - name: a hard stop
            id: stop
            shell: "exit 2"
          - name: never
            shell: "echo never"
          - name: in a block
            block:
              steps:
                - name: inner fails
                  id: inner
                  shell: "exit 1"
        """,
    )
    code, doc = run_json(rb)
    assert code == 3  # the failure still counts
    s = steps_of(doc)
    assert s["first"]["state"] == "failed" and not s["first"].get("ignored")
    assert s["second"]["data"]["stdout"] == "measured\n"
    assert s["stop"]["state"] == "failed"
    assert "never" not in s and "inner" not in s  # a step without keep_going stops the host


def test_keep_going_inside_a_block_then_rescue(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: block-checklist
        steps:
          - name: checks
            id: checks
            block:
              steps:
                - name: inner fails
                  id: inner
                  shell: "exit 1"
                  keep_going: true
                - name: inner goes on
                  id: inner_next
                  shell: "true"
              rescue:
                - name: fix
                  shell: "true"
        """,
    )
    code, doc = run_json(rb)
    s = steps_of(doc)
    assert s["inner_next"]["state"] == "ok"
    assert s["inner"]["rescued"] is True
    assert code == 0, doc


def test_a_failed_command_asked_for_json_says_why_it_failed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        runbook: json-of-a-failure
        steps:
          - name: probe
            keep_going: true
            shell: {cmd: "echo 'cannot read /var/log/x' >&2; exit 3", parse: json}
          - name: not json
            shell: {cmd: "echo plain", parse: json}
        """,
    )
    code, doc = run_json(path)
    steps = steps_of(doc)
    assert code == 3
    # The command's own failure, not a JSON error about the empty stdout it left.
    assert steps["probe"]["error"] == "command exited with rc 3: cannot read /var/log/x"
    assert steps["not_json"]["error"] == "stdout is not JSON (Expecting value at char 0)"
