"""`runbook serve`'s web page as people use it: headless Chromium against the
real server. An operator logs in and starts a gated runbook on local hosts,
watches the grid change as steps finish, cannot approve her own gate; an
approver in another browser approves it; the run ends ok on her page. Plus,
over plain HTTP: the login redirect, a viewer's page without a Start button,
and a cross-site form post refused."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.serve import Served, token_of

RUNBOOK = """
runbook: web-gated
description: Warm up, restart behind an approval, then check.
params:
  note: {{type: str, default: hello, description: said by the last step}}
  rounds: {{type: int, default: 2}}
  token: {{type: str, secret: true, default: s3cr3t-value}}
steps:
  - name: Warm up
    id: warm
    shell: "for i in $(seq 300); do [ -e {go} ] && break; sleep 0.1; done; echo warm"
  - name: Restart
    id: restart
    confirm: Restart the app?
    approvers: ['@approver']
    shell: echo restarted
  - name: After
    id: after
    shell: echo "after {{{{ params.note }}}}"
"""

HOSTS = ["web1", "web2", "web3"]


def _serve(serve_factory: Callable[..., Served], tmp_path: Path) -> tuple[Served, Path]:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        "hosts:\n" + "".join(f"  {h}: {{connection: local, address: 127.0.0.1}}\n" for h in HOSTS)
    )
    go = tmp_path / "go"
    runbooks = {"web-gated": RUNBOOK.format(go=go)}
    return serve_factory(runbooks, inventory=str(inventory)), go


def _log_in(page: Any, served: Served, user: str) -> None:
    page.goto(f"{served.url}/ui/login")
    page.fill("#token", token_of(user))
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/ui/")


def _watch(page: Any, errors: list[str]) -> None:
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))


def _shoot(page: Any, directory: Path, name: str) -> Path:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} is suspiciously small"
    if os.environ.get("RUNBOOK_TEST_ARTIFACTS"):
        target = Path(os.environ["RUNBOOK_TEST_ARTIFACTS"]) / "serve-ui"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    return path


def _cell(host: str, step: str) -> str:
    return f'td.c[data-host="{host}"][data-step="{step}"]'


def test_start_watch_and_approve_in_two_browsers(
    serve_factory: Callable[..., Served], tmp_path: Path, chromium: str
) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    expect = sync_api.expect
    served, go = _serve(serve_factory, tmp_path)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        alice = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        _watch(alice, errors)
        _log_in(alice, served, "alice")
        alice.goto(f"{served.url}/ui/runbooks/web-gated")
        assert alice.input_value('[name="p.note"]') == "hello"
        assert alice.get_attribute('[name="p.rounds"]', "type") == "number"
        assert alice.locator('[name="p.token"]').count() == 0  # secret: not from a form
        alice.fill('[name="p.note"]', "from the web <b>page</b>")
        alice.click("#start")
        alice.wait_for_url(f"{served.url}/ui/runs/*")
        run_id = alice.url.rsplit("/", 1)[1]

        # The grid follows the run without a reload: a marker set on this
        # document survives until the first step's cells say ok.
        expect(alice.locator(_cell("web1", "warm"))).to_contain_text("running")
        alice.evaluate("window.__sameDocument = true")
        go.touch()
        alice.wait_for_function(
            """() => window.__sameDocument === true &&
               document.querySelector('td.c[data-host="web1"][data-step="warm"]')
                 .textContent.includes("ok")""",
            timeout=30_000,
        )
        gate = alice.locator('[data-gate="restart"]')
        expect(gate).to_be_visible(timeout=30_000)  # the gate opening reloaded the page
        expect(gate).to_contain_text("Restart the app?")
        assert alice.locator("button[value=approve]").count() == 0
        expect(gate).to_contain_text("may not approve")
        _shoot(alice, shots, "1-alice-waiting")

        bob = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        _watch(bob, errors)
        _log_in(bob, served, "bob")
        bob.goto(f"{served.url}/ui/runs/{run_id}")
        expect(bob.locator("button[value=approve]")).to_be_visible()
        assert bob.locator("#cancel").count() == 0  # an approver may not cancel
        _shoot(bob, shots, "2-bob-gate")
        bob.click("button[value=approve]")
        bob.wait_for_url(f"{served.url}/ui/runs/{run_id}")

        expect(alice.locator("#state")).to_have_text("ok", timeout=60_000)
        for host in HOSTS:
            expect(alice.locator(_cell(host, "after"))).to_contain_text("ok")
        expect(alice.locator("#gates")).not_to_contain_text("Restart the app?")
        _shoot(alice, shots, "3-alice-finished")
        alice.goto(f"{served.url}/ui/")
        expect(alice.locator("#runs")).to_contain_text(run_id)
        browser.close()
    assert errors == []

    gates = served.as_user("vera").get(f"/api/runs/{run_id}/gates").json()
    votes = [v for g in gates for v in g["votes"]]
    assert {(v["user"], v["via"]) for v in votes} == {("bob", "web")}
    audit = served.as_user("vera").get("/api/audit", params={"run_id": run_id}).json()
    start = next(r for r in audit if r["action"] == "start")
    assert start["user_name"] == "alice" and start["detail"]["via"] == "web"


def _log_in_http(client: Any, served: Served, user: str) -> None:
    """`client` gets `user`'s cookie, as the login form leaves it."""
    reply = client.post("/ui/login", data={"token": token_of(user)}, headers={"Origin": served.url})
    assert reply.status_code == 303 and reply.headers["location"] == "/ui/"
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_login_rights_and_cross_site_posts(
    serve_factory: Callable[..., Served], tmp_path: Path
) -> None:
    served, _ = _serve(serve_factory, tmp_path)
    with served.anonymous() as anonymous:
        reply = anonymous.get("/ui/")
        assert reply.status_code == 303 and reply.headers["location"] == "/ui/login"
        assert anonymous.get("/ui/login").status_code == 200
        wrong = anonymous.post("/ui/login", data={"token": "nope"}, headers={"Origin": served.url})
        assert wrong.status_code == 401 and "Unknown token" in wrong.text

    with served.anonymous() as dora:  # a token, but no role that may read
        _log_in_http(dora, served, "dora")
        assert dora.get("/ui/").status_code == 403

    with served.anonymous() as vera:
        _log_in_http(vera, served, "vera")
        page = vera.get("/ui/runbooks/web-gated")
        assert page.status_code == 200 and "Warm up" in page.text
        assert 'id="start"' not in page.text and "may not start" in page.text
        refused = vera.post("/ui/runbooks/web-gated/start", headers={"Origin": served.url})
        assert refused.status_code == 403

    with served.anonymous() as alice:
        _log_in_http(alice, served, "alice")
        page = alice.get("/ui/runbooks/web-gated")
        assert 'id="start"' in page.text
        for origin in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/x"}, {}):
            forged = alice.post("/ui/runbooks/web-gated/start", headers=origin)
            assert forged.status_code == 403, origin
            assert "cross-site" in forged.text
        assert served.as_user("vera").get("/api/runs").json() == []  # nothing forged started

        # A start and a cancel through the forms; what the page shows is escaped.
        form = {"p.note": "x", "incident": "<i>INC-1</i>"}
        started = alice.post("/ui/runbooks/web-gated/start", data=form,
                             headers={"Origin": served.url})  # fmt: skip
        assert started.status_code == 303, started.text
        run_page = started.headers["location"]
        assert "&lt;i&gt;INC-1&lt;/i&gt;" in alice.get("/ui/").text
        page = alice.get(run_page).text
        assert 'http-equiv="refresh" content="3"' in page and "new EventSource" in page
        cancelled = alice.post(f"{run_page}/cancel", headers={"Referer": served.url + run_page})
        assert cancelled.status_code == 303
        doc = served.wait_run(run_page.rsplit("/", 1)[1])
        assert doc["exit_code"] == 4
