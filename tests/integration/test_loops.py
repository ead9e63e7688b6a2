"""`loop:` — a step per item (with its own when, thresholds and failure), and
paging until a condition holds, against real services: a batched SCAN+UNLINK
on Redis, the job that used to need a step re-running itself through `wait`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli, run_json, steps_of, write


def test_each_item_runs_judged_on_its_own_and_the_step_gathers_them(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: items
        params:
          tables: {type: list, default: [orders, users, "bad table", audit]}
        steps:
          - name: "Vacuum {{ item }}"
            id: vacuum
            loop: "{{ params.tables }}"
            when: "item != 'audit'"
            shell: "test {{ item | quote }} != 'bad table' && echo {{ loop_index }} {{ item | quote }}"
            thresholds:
              chars: {value: "result.stdout | length", warn: "> 8"}
            ignore_errors: true
          - name: after
            log: "{{ steps.vacuum.results | map(attribute='state') | join(',') }}"
        """,
    )
    code, doc = run_json(rb)
    assert code == 0, doc  # the failed item fails the step, which is ignored
    vacuum = steps_of(doc)["vacuum"]
    assert vacuum["state"] == "failed" and vacuum["ignored"]
    assert vacuum["error"] == ("1 of 4 items failed; first bad table: command exited with rc 1")
    results = vacuum["data"]["results"]
    assert [(r["item"], r["loop_index"], r["state"]) for r in results] == [
        ("orders", 0, "warn"),  # "0 orders\n": 9 chars, over its own threshold
        ("users", 1, "ok"),
        ("bad table", 2, "failed"),  # the items after a failure still run
        ("audit", 3, "skipped"),  # when: per item
    ]
    assert results[0]["stdout"] == "0 orders\n"
    # Thresholds per item, named after it, in the result and in history.
    assert set(vacuum["metrics"]) == {"chars[orders]", "chars[users]"}
    assert vacuum["metrics"]["chars[orders]"]["state"] == "warn"
    assert steps_of(doc)["after"]["data"]["message"] == "warn,ok,failed,skipped"
    trend = json.loads(cli("history", "--metric", "chars[users]", "--format", "json").stdout)
    assert [row["value"] for row in trend["values"]] == [8.0]


def test_previous_and_paging_until_a_condition(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: pages
        steps:
          - name: Count up
            id: pages
            loop: {until: "result.stdout | int >= 4", max: 10}
            shell: "echo {{ (previous.stdout | int + 1) if previous else 1 }}"
          - name: Never done
            id: capped
            loop: {until: "false", max: 3}
            shell: "echo {{ item }}"
            ignore_errors: true
        """,
    )
    code, doc = run_json(rb)
    assert code == 0, doc
    s = steps_of(doc)
    assert [r["stdout"] for r in s["pages"]["data"]["results"]] == ["1\n", "2\n", "3\n", "4\n"]
    assert s["capped"]["data"]["items"] == 3
    assert s["capped"]["error"] == "loop until not met after 3 iterations: false"


def test_batched_scan_and_unlink_on_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.mset({f"{redis_prefix}:sess:{i}": "v" for i in range(730)})
    client.set(f"{redis_prefix}:keep", "v")
    rb = write(
        tmp_path,
        f"""
        runbook: scan-unlink
        steps:
          - name: Scan the sessions
            id: scan
            loop: {{until: "result.value[0] | int == 0", max: 1000}}
            redis:
              url: {redis_url}
              command: [SCAN, "{{{{ previous.value[0] if previous else 0 }}}}",
                        MATCH, "{redis_prefix}:sess:*", COUNT, 100]
          - name: Unlink each page
            id: unlink
            loop: "{{{{ steps.scan.results | map(attribute='value') | map(attribute=1) | list }}}}"
            loop_var: page
            when: "page | length > 0"
            redis:
              url: {redis_url}
              command: "{{{{ ['UNLINK'] + page }}}}"
        """,
    )
    code, doc = run_json(rb)
    assert code == 0, doc
    s = steps_of(doc)
    assert s["scan"]["data"]["items"] > 1  # it did page
    unlinked = sum(r["value"] for r in s["unlink"]["data"]["results"] if r["state"] == "ok")
    assert unlinked == 730
    assert client.keys(f"{redis_prefix}:sess:*") == []
    assert client.get(f"{redis_prefix}:keep") == b"v"


def test_a_dry_run_shows_each_item_it_would_run(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: dry-items
        steps:
          - name: Restart
            id: restart
            loop: [api, worker]
            loop_var: service
            shell: "systemctl restart {{ service }}"
        """,
    )
    code, doc = run_json(rb, "--dry-run")
    assert code == 0
    restart = steps_of(doc)["restart"]
    assert restart["state"] == "skipped"
    assert [r["cmd"] for r in restart["rendered"]["loop"]] == [
        "systemctl restart api",
        "systemctl restart worker",
    ]


def test_a_loop_that_is_not_a_list_fails_the_step_clearly(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: not-a-list
        params:
          n: {type: int, default: 3}
        steps:
          - name: Loop over a number
            id: bad
            loop: "{{ params.n }}"
            shell: "echo {{ item }}"
        """,
    )
    code, doc = run_json(rb)
    assert code == 3
    assert steps_of(doc)["bad"]["error"] == "loop: gave int 3, not a list"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("    loop: orders\n    shell: 'true'", "a loop is a list, a template giving one"),
        ("    loop: [a]\n    loop_var: params\n    shell: 'true'", "`params` is already a name"),
        ("    shell: 'echo {{ item }}'", "unknown name `item`"),
        ("    loop: [a]\n    block:\n      - name: in\n        shell: 'true'", "cannot loop"),
        (
            "    loop: {until: 'previous.rc == 0', max: 0}\n    shell: 'true'",
            "greater than or equal to 1",
        ),
    ],
)
def test_loop_mistakes_are_invalid_runbooks(tmp_path: Path, body: str, message: str) -> None:
    rb = tmp_path / "rb.yaml"
    rb.write_text(f"runbook: bad-loop\nsteps:\n  - name: looped\n{body}\n")
    result = cli("check", rb)
    assert result.exit_code == 65, result.output
    assert message in result.stderr, result.stderr


def test_a_template_error_on_a_later_item_keeps_the_earlier_results(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    rb = write(
        tmp_path,
        f"""
        runbook: later-error
        params:
          rows: {{type: list, default: [{{n: 1}}, {{n: 2}}, {{}}, {{n: 4}}]}}
        steps:
          - name: Each row
            id: rows
            loop: "{{{{ params.rows }}}}"
            when: "item.n > 0"
            shell: "echo {{{{ item.n }}}} >> {out}"
            ignore_errors: true
          - name: Pages
            id: pages
            loop: {{until: "result.stdout | int > previous.missing.field", max: 5}}
            shell: "echo {{{{ item }}}}"
            ignore_errors: true
        """,
    )
    code, doc = run_json(rb)
    assert code == 0, doc  # both steps failed, and are ignored
    rows = steps_of(doc)["rows"]
    assert [(r["item"], r["state"]) for r in rows["data"]["results"]] == [
        ({"n": 1}, "ok"),
        ({"n": 2}, "ok"),
        ({}, "failed"),  # its `when` cannot be judged: this item fails
        ({"n": 4}, "ok"),  # and the items after it still run
    ]
    assert rows["error"].startswith("1 of 4 items failed; first {}: when: ")
    assert out.read_text().split() == ["1", "2", "4"]
    pages = steps_of(doc)["pages"]
    assert pages["data"]["items"] == 1  # the page fetched is kept
    assert pages["error"].startswith("loop until:")


def test_a_confirm_on_a_loop_with_no_items_is_not_asked(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: nothing-to-restart
        params:
          down: {type: list, default: []}
          only: {type: str, default: ""}
        steps:
          - name: Restart what is down
            id: restart
            loop: "{{ params.down }}"
            when: "params.only == '' or item == params.only"
            confirm: "Restart {{ params.down | join(', ') }}?"
            shell: "echo {{ item }}"
          - name: after
            log: "went on"
        """,
    )
    code, doc = run_json(rb)  # no terminal, no --yes: a question would be declined
    assert code == 0, doc
    assert steps_of(doc)["restart"]["state"] == "skipped"
    assert steps_of(doc)["restart"]["skip_reason"] == "loop: no items to run"
    code, doc = run_json(rb, "-p", "down=web")
    assert code == 4 and steps_of(doc)["restart"]["state"] == "aborted"
    # A `when` no item passes is no work either (it is asked per item).
    code, doc = run_json(rb, "-p", "down=web,db", "-p", "only=cache")
    assert code == 0 and steps_of(doc)["restart"]["skip_reason"] == "loop: no items to run"


def test_paging_whose_when_is_false_is_skipped(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: paged-when
        steps:
          - name: paged
            id: paged
            when: "false"
            loop: {until: "result.stdout | int == 0", max: 5}
            shell: "echo 0"
        """,
    )
    code, doc = run_json(rb)
    assert code == 0, doc
    assert steps_of(doc)["paged"]["state"] == "skipped"


def test_max_fail_lets_a_keep_going_host_finish_its_checklist(tmp_path: Path) -> None:
    rb = write(
        tmp_path,
        """
        runbook: checklist
        max_fail: 0
        steps:
          - {name: first, keep_going: true, shell: "false"}
          - {name: second, shell: "echo second ran"}
        """,
    )
    code, doc = run_json(rb)
    assert code == 3  # the host failed: max_fail still counts it, at its end
    assert steps_of(doc)["second"]["state"] == "ok"
