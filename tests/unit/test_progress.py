"""What the console says is still running: pure logic, on a clock the test moves."""

from __future__ import annotations

from engine.reports.progress import Progress, still_running


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_status_names_the_current_step_and_the_slowest_hosts_first() -> None:
    clock = Clock()
    p = Progress(clock)
    p.run_started(6)
    for host in ("web1", "web2", "web3", "web4", "web5"):
        p.step_started(host, "restart", "Restart app")
    clock.now += 3
    p.step_started("web6", "restart", "Restart app")
    p.step_finished("web1", "restart")
    p.host_finished("web1")
    clock.now += 10
    assert p.status() == (
        "Restart app · 1/6 hosts done · running: web2 13s, web3 13s, web4 13s, web5 13s (+1)"
    )


def test_nested_steps_count_from_the_outermost_and_end_with_it() -> None:
    clock = Clock()
    p = Progress(clock)
    p.run_started(1)
    p.step_started("db1", "maint", "Maintenance block")
    clock.now += 50
    p.step_started("db1", "vacuum", "Vacuum orders")
    clock.now += 25
    assert p.busy() == [("db1", "Vacuum orders", 75.0)]
    p.step_finished("db1", "maint")  # the block's end ends its children too
    assert p.busy() == []
    assert p.status() == "0/1 hosts done"


def test_the_ticker_line_names_only_steps_running_longer_than_its_interval() -> None:
    clock = Clock()
    p = Progress(clock)
    p.run_started(2)
    p.step_started("web1", "s", "Slow")
    clock.now += 29
    p.step_started("web2", "s", "Slow")
    assert still_running(p, 30) is None
    clock.now += 1
    assert still_running(p, 30) == "… still running: web1 Slow 30s · 0/2 hosts done"
    clock.now += 90
    assert still_running(p, 30) == (
        "… still running: web1 Slow 2m00s, web2 Slow 1m31s · 0/2 hosts done"
    )


def test_ticker_lines_never_swallow_a_batch_nor_follow_the_end() -> None:
    """The ticker thread writes while batches of host lines are written: every
    line of both arrives, and once the console is closed the ticker is quiet."""
    import io
    import threading

    from engine.events import LogMessage
    from engine.reports.console import ConsoleReport

    out = io.StringIO()
    console = ConsoleReport(stream=out, color=False, progress_every=0)
    stop = threading.Event()
    said = 0

    def ticker() -> None:
        nonlocal said
        while not stop.is_set():
            console._say(f"tick {said}")
            said += 1

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        for batch in range(300):
            console.handle_batch(
                [LogMessage(run_id="r", host=f"h{i}", step_id="s", level="info", message=f"b{batch}-{i}")
                 for i in range(5)]
            )  # fmt: skip
    finally:
        stop.set()
        thread.join()
    text = out.getvalue()
    for batch in range(300):
        for i in range(5):
            assert f"info: b{batch}-{i}\n" in text
    assert text.count("tick ") == said > 0
    console.close()
    console._say("late")
    assert "late" not in out.getvalue()
