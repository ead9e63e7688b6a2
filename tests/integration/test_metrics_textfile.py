"""`--metrics-textfile`: a real run's thresholds and outcome in Prometheus's text
format, read back with the Prometheus client's own parser."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import cli, write

INVENTORY = """
hosts:
  web1: {connection: local, address: 127.0.0.1, vars: {depth: 2}}
  "web\\"2": {connection: local, address: 127.0.0.1, vars: {depth: 9}}
"""

RUNBOOK = """
runbook: queue-check
steps:
  - name: Queue depth
    id: depth
    shell: "echo {{ host.vars.depth }}.5"
    thresholds:
      queue_depth: {value: result.stdout | float, warn: "> 3", critical: "> 5", unit: jobs}
"""


def _samples(path: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_thresholds_and_outcome_read_back_as_prometheus_reads_them(tmp_path: Path) -> None:
    inv, rb = write(tmp_path, INVENTORY, "inv.yaml"), write(tmp_path, RUNBOOK)
    collector = tmp_path / "textfile"
    collector.mkdir()
    res = cli("run", rb, "-i", inv, "--metrics-textfile", collector)
    assert res.exit_code == 2, res.output
    assert [p.name for p in collector.iterdir()] == [
        "runbook_queue-check.prom"
    ]  # no temp file left
    samples = _samples(collector / "runbook_queue-check.prom")
    values = {labels["host"]: v for labels, v in samples["runbook_threshold_value"]}
    assert values == {"web1": 2.5, 'web"2': 9.5}  # a quote in a label survives the escaping
    states = {labels["host"]: v for labels, v in samples["runbook_threshold_state"]}
    assert states == {"web1": 0, 'web"2': 2}
    [labels] = [lb for lb, _ in samples["runbook_threshold_value"] if lb["host"] == "web1"]
    assert labels == {"runbook": "queue-check", "host": "web1", "step": "depth",
                      "metric": "queue_depth", "unit": "jobs"}  # fmt: skip
    assert samples["runbook_run_exit_code"] == [({"runbook": "queue-check"}, 2.0)]
    assert samples["runbook_run_duration_seconds"][0][1] > 0
    assert samples["runbook_run_finished_timestamp_seconds"][0][1] > 1.7e9
    hosts = {labels["host"]: v for labels, v in samples["runbook_host_state"]}
    assert hosts == {"web1": 0, 'web"2': 2}


def test_a_file_path_is_written_as_given_and_replaced_whole(tmp_path: Path) -> None:
    rb = write(tmp_path, RUNBOOK.replace("{{ host.vars.depth }}", "1"))
    target = tmp_path / "queue.prom"
    target.write_text("STALE-CONTENT\n")
    assert cli("run", rb, "--metrics-textfile", target).exit_code == 0
    assert "STALE-CONTENT" not in target.read_text()
    assert _samples(target)["runbook_run_exit_code"] == [({"runbook": "queue-check"}, 0.0)]


def test_a_dry_run_feeds_no_alert(tmp_path: Path) -> None:
    rb = write(tmp_path, RUNBOOK.replace("{{ host.vars.depth }}", "1"))
    assert cli("run", rb, "--dry-run", "--metrics-textfile", tmp_path).exit_code == 0
    assert not (tmp_path / "runbook_queue-check.prom").exists()


def test_a_place_it_cannot_write_is_a_usage_error_before_anything_runs(tmp_path: Path) -> None:
    rb = write(tmp_path, "runbook: touch\nsteps:\n  - {name: t, shell: 'touch ran'}\n")
    res = cli("run", rb, "--metrics-textfile", tmp_path / "no" / "such" / "x.prom")
    assert res.exit_code == 64 and "is not a writable directory" in res.output
    assert not Path("ran").exists()


def _pushed(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """What the gateway exposes to Prometheus, by the client's own parser."""
    import httpx

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name.startswith("runbook_"):
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_pushgateway_gets_the_runs_metrics_grouped_by_runbook(
    tmp_path: Path, pushgateway: str
) -> None:
    inv, rb = write(tmp_path, INVENTORY, "inv.yaml"), write(tmp_path, RUNBOOK)
    dry = cli("run", str(rb), "-i", str(inv), "--check", "--pushgateway", pushgateway)
    assert dry.exit_code == 0, dry.output  # the echo is not `safe:`: not run
    assert _pushed(pushgateway) == {}  # a rehearsal feeds no alert

    res = cli("run", str(rb), "-i", str(inv), "--pushgateway", pushgateway)
    assert res.exit_code == 2, res.output
    pushed = _pushed(pushgateway)
    values = {labels["host"]: v for labels, v in pushed["runbook_threshold_value"]}
    assert values == {"web1": 2.5, 'web"2': 9.5}
    for labels, _ in pushed["runbook_threshold_value"]:
        assert labels["job"] == "runbook" and labels["runbook"] == "queue-check"
    ((labels, code),) = pushed["runbook_run_exit_code"]
    assert code == 2 and (labels["job"], labels["runbook"]) == ("runbook", "queue-check")

    # PUT replaces the group: a host this run no longer covers does not linger.
    again = cli("run", str(rb), "-i", str(inv), "-l", "web1", "--pushgateway", pushgateway)
    assert again.exit_code == 0, again.output
    hosts = {labels["host"] for labels, _ in _pushed(pushgateway)["runbook_threshold_value"]}
    assert hosts == {"web1"}


def test_a_failed_push_is_a_warning_and_leaves_the_exit_code(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inv, rb = write(tmp_path, INVENTORY, "inv.yaml"), write(tmp_path, RUNBOOK)
    url = f"http://pusher:s3cr3t-pw@127.0.0.1:{port}"
    res = cli("run", str(rb), "-i", str(inv), "-l", "web1", "--pushgateway", url)
    assert res.exit_code == 0
    assert "--pushgateway" in res.stderr and "push failed" in res.stderr
    assert "s3cr3t-pw" not in res.output + res.stderr
    bad = cli("run", str(rb), "--pushgateway", "ftp://pusher:s3cr3t-pw@host/")
    assert bad.exit_code == 64 and "s3cr3t-pw" not in bad.output + bad.stderr
