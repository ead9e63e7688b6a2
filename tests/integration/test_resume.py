"""Resume after `kill -9` and after Ctrl-C, with a side-effect counter file proving
that no step that succeeded runs twice and that the resumed run completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.history import open_store
from engine.history.store import RunQuery
from tests.fixtures.history import engine_env
from tests.fixtures.services import PgDatabase
from tests.helpers import cli, write

KILL_RUNBOOK = """
runbook: kill-resume
params:
  dir: {type: str}
steps:
  - name: one
    shell: "echo one >> {{ params.dir }}/counter"
  - name: two
    shell: "echo two >> {{ params.dir }}/counter; echo from-two"
  - name: three
    shell: >-
      echo three >> {{ params.dir }}/counter;
      while [ ! -f {{ params.dir }}/go ]; do sleep 0.05; done
  - name: four
    shell: "echo four {{ steps.two.stdout | trim }} >> {{ params.dir }}/counter"
"""


def _spawn(rb: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(rb), *args],
        cwd=rb.parent,
        env=engine_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(path: Path, line: str, proc: subprocess.Popen[str], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and line in path.read_text().splitlines():
            return
        if proc.poll() is not None:
            raise AssertionError(f"engine exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{line!r} never appeared in {path}")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _only_run() -> dict:
    runs = json.loads(cli("history", "--format", "json").stdout)
    assert len(runs) == 1
    return runs[0]


def test_kill_9_during_step_three_then_resume(tmp_path: Path) -> None:
    rb = write(tmp_path, KILL_RUNBOOK)
    counter = tmp_path / "counter"
    proc = _spawn(rb, "-p", f"dir={tmp_path}")
    _wait_for_line(counter, "three", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    run = _only_run()
    # Everything up to the kill is in the history; the engine never recorded an end.
    assert run["state"] == "died" and run["finished_at"] is None
    detail = json.loads(cli("history", run["id"], "--format", "events").stdout)
    finished = [s["id"] for s in detail["steps"]]
    assert finished == ["one", "two"]
    started = [e["step_id"] for e in detail["events"] if e["kind"] == "step_started"]
    assert started == ["one", "two", "three"]

    (tmp_path / "go").touch()
    res = cli("resume", run["id"])  # the dead engine's lock is taken over
    assert res.exit_code == 0, res.output
    assert "2 finished step result(s)" in res.stderr
    assert "may have run: three on localhost" in res.stderr
    # one and two ran once; three was running when the engine was killed: it may
    # have done its work, so it is not run again without --rerun-unknown.
    assert _lines(counter) == ["one", "two", "three", "four from-two"]

    runs = json.loads(cli("history", "--format", "json").stdout)
    new = runs[0]
    assert new["resumed_from"] == run["id"] and new["state"] == "ok"
    steps = {
        s["id"]: s
        for s in json.loads(cli("history", new["id"], "--format", "events").stdout)["steps"]
    }
    assert steps["one"]["skip_reason"] == "resumed: already done"
    assert steps["two"]["data"]["stdout"].strip() == "from-two"
    assert steps["three"]["skip_reason"].startswith("resumed: it may have run")
    assert steps["four"]["state"] == "ok"


INT_RUNBOOK = """
runbook: int-resume
params:
  dir: {type: str}
steps:
  - name: one
    shell: "echo one >> {{ params.dir }}/counter"
  - name: two
    timeout: 60s
    shell: >-
      echo two >> {{ params.dir }}/counter;
      while [ ! -f {{ params.dir }}/go ]; do sleep 0.05; done;
      echo two-done >> {{ params.dir }}/counter
  - name: three
    shell: "echo three >> {{ params.dir }}/counter"
"""


def test_first_ctrl_c_lets_the_running_step_finish_then_aborts_and_resumes(
    tmp_path: Path,
) -> None:
    rb = write(tmp_path, INT_RUNBOOK)
    counter = tmp_path / "counter"
    proc = _spawn(rb, "-p", f"dir={tmp_path}")
    _wait_for_line(counter, "two", proc)
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.3)  # not an assertion: give the engine a moment to see the signal
    assert proc.poll() is None, "the first Ctrl-C must not kill the running step"
    (tmp_path / "go").touch()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, (out, err)
    assert "aborted" in out
    assert _lines(counter) == ["one", "two", "two-done"]  # three was never scheduled

    run = _only_run()
    assert run["state"] == "aborted" and run["exit_code"] == 4
    res = cli("resume", run["id"])
    assert res.exit_code == 0, res.output
    assert _lines(counter) == ["one", "two", "two-done", "three"]


def test_second_ctrl_c_kills_the_running_step_and_it_reruns_on_resume(tmp_path: Path) -> None:
    rb = write(tmp_path, INT_RUNBOOK)
    counter = tmp_path / "counter"
    proc = _spawn(rb, "-p", f"dir={tmp_path}")
    _wait_for_line(counter, "two", proc)
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, (out, err)
    assert _lines(counter) == ["one", "two"]

    run = _only_run()
    assert run["state"] == "aborted"
    (tmp_path / "go").touch()
    res = cli("resume", run["id"])
    assert res.exit_code == 0, res.output
    assert _lines(counter) == ["one", "two", "two", "two-done", "three"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_kills_the_step_records_aborted_and_resumes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # What `timeout`, systemd, a CI cancel or a closed terminal send: as Ctrl-C
    # twice. Before, the engine died at once, its step ran on, the run was left
    # `died` with no exit code.
    rb = write(tmp_path, INT_RUNBOOK)
    counter = tmp_path / "counter"
    proc = _spawn(rb, "-p", f"dir={tmp_path}")
    _wait_for_line(counter, "two", proc)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, (out, err)
    loop = subprocess.run(["pgrep", "-f", f"{tmp_path}/go"], capture_output=True, text=True)
    assert loop.stdout.split() == [], "the running step outlived the engine"

    run = _only_run()
    assert run["state"] == "aborted" and run["exit_code"] == 4
    steps = json.loads(cli("history", run["id"], "--format", "events").stdout)["steps"]
    assert [s["id"] for s in steps] == ["one", "two"]
    assert sig.name in json.dumps(cli("history", run["id"], "--format", "json").stdout)

    (tmp_path / "go").touch()
    res = cli("resume", run["id"])
    assert res.exit_code == 0, res.output
    assert _lines(counter) == ["one", "two", "two", "two-done", "three"]


SLOW_QUERY = """
runbook: slow-query
params:
  dsn: {type: str}
  table: {type: str}
steps:
  - name: slow query
    id: slow
    sql:
      dsn: "{{ params.dsn }}"
      query: "INSERT INTO {{ params.table }} (v) VALUES ('half-done'); SELECT pg_sleep(600)"
  - name: after
    shell: echo after
"""


def test_second_ctrl_c_cancels_a_running_query_in_the_server(
    tmp_path: Path, pg_database: PgDatabase, pg_table: str
) -> None:
    rb = write(tmp_path, SLOW_QUERY)
    proc = _spawn(rb, "-p", f"dsn={pg_database.dsn}", "-p", f"table={pg_table}")
    active = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'runbook:slow' AND state = 'active'"
    )
    try:
        deadline = time.monotonic() + 30
        while pg_database.scalar(active) == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the query never showed up in pg_stat_activity"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.3)  # not an assertion: the first Ctrl-C lets the step run on
        assert pg_database.scalar(active) == 1
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        # On failure: a killed client does not stop pg_sleep, whose lock on the table
        # would hold up the fixture's DROP TABLE for ten minutes.
        stuck = pg_database.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'runbook:slow' AND state = 'active'"
        )
    assert not stuck, "the query was still running in the server"
    assert proc.returncode == 4, (out, err)
    assert pg_database.scalar(f"SELECT count(*) FROM {pg_table}") == 0  # rolled back

    run = _only_run()
    assert run["state"] == "aborted"
    steps = json.loads(cli("history", run["id"], "--format", "events").stdout)["steps"]
    slow = next(s for s in steps if s["id"] == "slow")
    assert slow["state"] == "failed" and "cancelled in the server" in slow["error"]
    assert [s["id"] for s in steps] == ["slow"]  # `after` was never scheduled


FAILING = """
runbook: fix-and-resume
params:
  dir: {type: str}
  token: {type: str, secret: true}
steps:
  - name: prepare
    shell: "echo prepare >> {{ params.dir }}/counter"
  - name: note
    set: {who: "{{ 'ops' }}"}
  - name: check
    when: "params.dir != ''"
    block:
      steps:
        - name: inner
          shell: "echo inner >> {{ params.dir }}/counter; echo in"
  - name: flaky
    shell: "echo flaky >> {{ params.dir }}/counter; test -f {{ params.dir }}/fixed"
  - name: finish
    shell: "echo finish {{ vars.who }} {{ steps.inner.stdout | trim }} >> {{ params.dir }}/counter"
"""


def test_resume_after_failure_keeps_vars_and_block_results(tmp_path: Path) -> None:
    rb = write(tmp_path, FAILING)
    counter = tmp_path / "counter"
    res = cli("run", rb, "-p", f"dir={tmp_path}", "-p", "token=tok-Secret-123")
    assert res.exit_code == 3
    run = _only_run()
    assert run["params"]["token"] == "***"

    # History never kept the secret param: the operator must give it again.
    res = cli("resume", run["id"])
    assert res.exit_code == 64 and "-p token=" in res.output

    (tmp_path / "fixed").touch()
    res = cli("resume", run["id"], "-p", "token=tok-Secret-123")
    assert res.exit_code == 0, res.output
    assert _lines(counter) == ["prepare", "inner", "flaky", "flaky", "finish ops in"]


def test_resume_refuses_when_step_ids_moved(tmp_path: Path) -> None:
    rb = write(tmp_path, FAILING)
    cli("run", rb, "-p", f"dir={tmp_path}", "-p", "token=tok-Secret-123")
    run = _only_run()
    rb.write_text(rb.read_text().replace("name: flaky", "name: flaky renamed"))
    res = cli("resume", run["id"], "-p", "token=tok-Secret-123")
    assert res.exit_code == 65
    assert "step ids changed" in res.output and "flaky" in res.output
    assert _lines(tmp_path / "counter") == ["prepare", "inner", "flaky"]  # nothing ran


def test_resume_accepts_an_edit_that_keeps_step_ids(tmp_path: Path) -> None:
    rb = write(tmp_path, FAILING)
    cli("run", rb, "-p", f"dir={tmp_path}", "-p", "token=tok-Secret-123")
    run = _only_run()
    rb.write_text(rb.read_text().replace("test -f {{ params.dir }}/fixed", "true"))
    res = cli("resume", run["id"], "-p", "token=tok-Secret-123")
    assert res.exit_code == 0, res.output
    assert "runbook file changed" in res.stderr


def test_a_run_still_alive_cannot_be_resumed(tmp_path: Path) -> None:
    rb = write(tmp_path, KILL_RUNBOOK)
    proc = _spawn(rb, "-p", f"dir={tmp_path}")
    try:
        _wait_for_line(tmp_path / "counter", "three", proc)
        run = _only_run()
        res = cli("resume", run["id"])
        assert res.exit_code == 4
        assert "still running" in res.output and str(proc.pid) in res.output
    finally:
        (tmp_path / "go").touch()
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_kill_9_and_resume_with_postgres_history(
    tmp_path: Path, pg_history_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_HISTORY", pg_history_dsn)
    rb = write(tmp_path, KILL_RUNBOOK)
    counter = tmp_path / "counter"
    proc = _spawn(rb, "-p", f"dir={tmp_path}")
    _wait_for_line(counter, "three", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    store = open_store()
    try:
        [row] = store.list_runs(RunQuery())
        assert [s.step_id for s in store.step_rows(row["id"])] == ["one", "two"]
        assert [lk["host"] for lk in store.dump()["locks"]] == ["localhost"]  # left by the kill
    finally:
        store.close()
    (tmp_path / "go").touch()
    res = cli("resume", row["id"], "--rerun-unknown")  # the operator knows three is undone
    assert res.exit_code == 0, res.output
    assert "they run again" in res.stderr
    assert _lines(counter) == ["one", "two", "three", "three", "four from-two"]


HUNG_HTTP = """
runbook: hung-http
params:
  url: {type: str}
steps:
  - name: health
    id: health
    http: {url: "{{ params.url }}", timeout: 10m}
  - name: after
    shell: echo after
"""


def test_second_ctrl_c_ends_an_http_request_the_server_never_answers(tmp_path: Path) -> None:
    import socket

    rb = write(tmp_path, HUNG_HTTP)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(30)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/health"
        proc = _spawn(rb, "-p", f"url={url}")
        try:
            conn, _ = listener.accept()  # the request is in flight; no answer will come
            with conn:
                os.kill(proc.pid, signal.SIGINT)
                time.sleep(0.3)  # the first Ctrl-C lets the step run on
                assert proc.poll() is None
                os.kill(proc.pid, signal.SIGINT)
                out, err = proc.communicate(timeout=15)  # not the step's 10 minutes
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 4, (out, err)
    run = _only_run()
    steps = json.loads(cli("history", run["id"], "--format", "events").stdout)["steps"]
    assert [s["id"] for s in steps] == ["health"]  # `after` was never scheduled
    assert steps[0]["state"] == "failed" and "interrupted (Ctrl-C)" in steps[0]["error"]


DSN_EXTRA_VAR = """
runbook: dsn-extra-var
params:
  dir: {type: str}
steps:
  - name: uses the dsn
    shell: "echo {{ vars.dsn | quote }} > /dev/null; echo ran >> {{ params.dir }}/counter"
  - name: flaky
    shell: "test -f {{ params.dir }}/fixed"
"""


def test_resume_asks_again_for_an_extra_var_whose_password_history_masked(
    tmp_path: Path,
) -> None:
    # A connection string given with -e is stored with its password masked; resume
    # must ask for it again (exit 64), not crash (it exited 70: a name rebound).
    rb = write(tmp_path, DSN_EXTRA_VAR)
    dsn = "postgresql://u:pw-Secret-77@db/x"
    res = cli("run", rb, "-p", f"dir={tmp_path}", "-e", f"dsn={dsn}")
    assert res.exit_code == 3
    run = _only_run()
    assert "pw-Secret-77" not in json.dumps(run)

    res = cli("resume", run["id"])
    assert res.exit_code == 64, res.output
    assert "dsn" in res.output and "-e" in res.output

    (tmp_path / "fixed").touch()
    res = cli("resume", run["id"], "-e", f"dsn={dsn}")
    assert res.exit_code == 0, res.output
    assert _lines(tmp_path / "counter") == ["ran"]  # the first step was not run again


def test_resume_when_a_secret_equals_part_of_a_path_host_or_step_id(tmp_path: Path) -> None:
    # A password that is also a directory, host or step name ("postgres") is
    # masked in what the run prints, never in what history keys rows by or what
    # resume reads back: the runbook path, the hosts, the step ids.
    secret = "sekret77"
    (tmp_path / f"deploy-{secret}").mkdir()
    rb = write(tmp_path / f"deploy-{secret}", DSN_EXTRA_VAR.replace("flaky", f"check_{secret}"))
    res = cli("run", rb, "-p", f"dir={tmp_path}", "-e", f"dsn=postgresql://u:{secret}@db/x")
    assert res.exit_code == 3
    run = _only_run()
    assert run["path"] == str(rb)
    steps = json.loads(cli("history", run["id"], "--format", "events").stdout)["steps"]
    assert all(s["started_at"] for s in steps)  # each start matched to its finish

    (tmp_path / "fixed").touch()
    res = cli("resume", run["id"], "-e", f"dsn=postgresql://u:{secret}@db/x")
    assert res.exit_code == 0, res.output
    assert _lines(tmp_path / "counter") == ["ran"]


def test_second_ctrl_c_ends_an_ssh_handshake_instead_of_its_timeout(tmp_path: Path) -> None:
    # A host that accepts TCP and never speaks SSH held Ctrl-C twice for the whole
    # connect_timeout (27.9 s seen). Now the handshake's socket is shut at once.
    import socket
    import threading

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        accepted = threading.Event()
        held: list[socket.socket] = []

        def accept() -> None:
            conn, _ = listener.accept()
            held.append(conn)
            accepted.set()

        threading.Thread(target=accept, daemon=True).start()
        inventory = write(
            tmp_path,
            f"hosts:\n  silent: {{address: 127.0.0.1, port: {port}, connect_timeout: 60s}}\n",
            "inventory.yaml",
        )
        rb = write(tmp_path, "runbook: hs\nsteps:\n  - name: a\n    shell: echo hi\n")
        proc = _spawn(rb, "-i", str(inventory))
        try:
            assert accepted.wait(30), "the engine never connected"
            os.kill(proc.pid, signal.SIGINT)
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=15)  # not the 60 s connect_timeout
        finally:
            if proc.poll() is None:
                proc.kill()
            for conn in held:
                conn.close()
    assert proc.returncode == 4, (out, err)
    assert "Traceback" not in err
    run = _only_run()
    assert run["state"] == "aborted"


def test_kept_results_read_as_kept_and_keep_their_metrics(tmp_path: Path) -> None:
    """A kept "restart" must not read as a second restart, and a kept threshold
    step keeps its measured values (they were dropped before)."""
    rb = write(
        tmp_path,
        f"""
        runbook: kept
        steps:
          - name: restart
            shell: "echo restarted >> {tmp_path}/restarts"
          - name: measure
            shell: "echo 20000"
            thresholds:
              keys: {{value: "result.stdout | int", warn: "> 10000"}}
          - name: flaky
            shell: "test -f {tmp_path}/ready"
        """,
    )
    first = cli("run", rb, "--format", "json")
    assert first.exit_code == 3
    (tmp_path / "ready").touch()
    resumed = cli("resume", json.loads(first.stdout)["run_id"])
    assert resumed.exit_code == 1, resumed.output  # the kept warn still counts
    lines = resumed.stdout.splitlines()
    assert any(
        ln.startswith("✓ kept") and "restart" in ln and "not run again" in ln for ln in lines
    ), lines
    assert any(ln.startswith("! kept") and "keys=20000 (warn > 10000)" in ln for ln in lines), lines
    assert "kept 2" in lines[-1]
    assert (tmp_path / "restarts").read_text() == "restarted\n"
    # The record of the resumed run keeps the metrics too.
    runs = json.loads(cli("history", "--format", "json", "--limit", "1").stdout)
    detail = json.loads(cli("history", runs[0]["id"], "--format", "events").stdout)
    measure = next(s for s in detail["steps"] if s["id"] == "measure")
    assert measure["metrics"]["keys"]["value"] == 20000
