"""runbooks/image-updates.yaml with real images: a base image in a real
registry gets a new version, the app's image is rebuilt on it (podman build),
tested, rolled out as a container, and put back when its health fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.containers import ContainerLab, image_from_files
from tests.helpers import run_json, steps_of

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "image-updates.yaml"


def _app(lab: ContainerLab, registry: str, tmp_path: Path) -> dict[str, str]:
    """The app as deployed: built on base v1, running; then base v2 is published."""
    cli = str(lab.cli)
    base = f"{registry}/{lab.project}/base:stable"
    image_from_files(lab.cli, f"{lab.project}/base-v1", {"/etc/base-version": "1\n"}, tmp_path)
    lab.docker("push", f"{lab.project}/base-v1", base)
    lab.docker("pull", "-q", base)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "Containerfile").write_text(
        f'FROM {base}\nRUN cp /etc/base-version /app-base\nCMD ["sleep", "600"]\n'
    )
    app_image = f"{lab.project}/app:latest"
    name = f"{lab.project}-web"
    up = f"{cli} rm -f -t 0 {name} >/dev/null 2>&1; {cli} run -d --name {name} --label com.docker.compose.project={lab.project} {app_image}"
    lab.docker("build", "-q", "-t", app_image, str(app_dir), timeout=120)
    lab.docker(
        "run",
        "-d",
        "--name",
        name,
        "--label",
        f"com.docker.compose.project={lab.project}",
        app_image,
    )
    image_from_files(lab.cli, f"{lab.project}/base-v2", {"/etc/base-version": "2\n"}, tmp_path)
    lab.docker("push", f"{lab.project}/base-v2", base)  # the registry's tag moves on
    return {"base": base, "app_dir": str(app_dir), "app_image": app_image, "name": name, "up": up}


def _args(lab: ContainerLab, app: dict[str, str], health: str) -> list[str]:
    cli = str(lab.cli)
    return [
        "-p", f"container_cli={cli}", "-p", f"images=[\"{app['base']}\"]",
        "-p", f"app_image={app['app_image']}", "-p", f"app_dir={app['app_dir']}",
        "-p", f"build_cmd={cli} build -q -t {app['app_image']} .",
        "-p", f"test_cmd={cli} run --rm {app['app_image']} sh -c 'test \"$(cat /app-base)\" = 2'",
        "-p", f"up_cmd={app['up']}",
        "-p", f"health_cmd={cli} exec {app['name']} sh -c {health}",
        "-p", "health_attempts=2",
    ]  # fmt: skip


@pytest.mark.timeout(300)
def test_a_new_base_is_pulled_built_on_tested_and_rolled_out(
    containers: ContainerLab, registry: str, tmp_path: Path
) -> None:
    app = _app(containers, registry, tmp_path)
    args = _args(containers, app, "'test -f /app-base'")
    code, doc = run_json(RUNBOOK, *args, "--yes", "--approve", "handover")
    s = steps_of(doc)
    assert s["pull"]["data"]["json"]["updated"] == [app["base"]]
    assert s["build"]["state"] == "ok" and s["test"]["state"] == "ok"
    kept = s["keep"]["data"]["stdout"].strip()
    assert kept.endswith(":before-" + doc["run_id"].replace("_", "-"))
    assert s["health_cmd"]["state"] == "ok"
    # The effect: the running container is the app rebuilt on base v2, and
    # the image it ran before is kept under the tag the hand-over names.
    assert containers.docker("exec", app["name"], "cat", "/app-base") == "2\n"
    before = containers.docker("run", "--rm", kept, "cat", "/app-base")
    assert before == "1\n"
    assert code == 0, doc


@pytest.mark.timeout(300)
def test_a_rollout_that_fails_its_health_puts_the_previous_image_back(
    containers: ContainerLab, registry: str, tmp_path: Path
) -> None:
    app = _app(containers, registry, tmp_path)
    # Healthy means "still on base 1": the new build can never pass.
    args = _args(containers, app, "'test \"$(cat /app-base)\" = 1'")
    code, doc = run_json(RUNBOOK, *args, "--yes", "--approve", "handover")
    s = steps_of(doc)
    assert s["up"]["state"] == "ok"
    assert s["health_cmd"]["state"] == "failed"
    assert s["rollback"]["state"] == "ok"
    assert s["health_back"]["state"] == "ok"
    assert "is back to" in s["failed"]["error"]
    assert containers.docker("exec", app["name"], "cat", "/app-base") == "1\n"
    assert code == 3, doc


@pytest.mark.timeout(300)
def test_nothing_changed_nothing_rebuilt(
    containers: ContainerLab, registry: str, tmp_path: Path
) -> None:
    app = _app(containers, registry, tmp_path)
    containers.docker("pull", "-q", app["base"])  # already on the newest base
    code, doc = run_json(RUNBOOK, *_args(containers, app, "true"), "--yes")
    s = steps_of(doc)
    assert s["pull"]["data"]["json"]["updated"] == []
    assert s["build"]["state"] == "skipped"
    assert containers.docker("exec", app["name"], "cat", "/app-base") == "1\n"
    assert code == 0, doc


@pytest.mark.timeout(300)
def test_pulled_images_roll_out_without_a_build(
    containers: ContainerLab, registry: str, tmp_path: Path
) -> None:
    """Django's way: `docker-compose pull` then `up -d`, the app's image is the
    registry's; the one it ran is still kept for the way back."""
    app = _app(containers, registry, tmp_path)
    cli, name, base = str(containers.cli), app["name"], app["base"]
    containers.docker("rm", "-f", "-t", "0", name)
    containers.docker("run", "-d", "--name", name, base, "sleep", "600")  # on v1
    code, doc = run_json(
        RUNBOOK,
        "-p", f"container_cli={cli}", "-p", f'images=["{base}"]', "-p", f"app_image={base}",
        "-p", f"up_cmd={cli} rm -f -t 0 {name} && {cli} run -d --name {name} {base} sleep 600",
        "-p", f"health_cmd={cli} exec {name} test -f /etc/base-version",
        "--yes", "--approve", "handover",
    )  # fmt: skip
    s = steps_of(doc)
    assert s["build"]["state"] == "skipped" and s["up"]["state"] == "ok"
    assert containers.docker("exec", name, "cat", "/etc/base-version") == "2\n"
    kept = s["keep"]["data"]["stdout"].strip()
    assert containers.docker("run", "--rm", kept, "cat", "/etc/base-version") == "1\n"
    assert code == 0, doc
