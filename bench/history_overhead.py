"""What run history costs: per recorded event, and on a 1,000-step local run.

    python bench/history_overhead.py [STEPS]

Prints the recorder's cost per event against a SQLite file (each event its own
committed transaction, then 10 events per transaction, as the event bus groups
them when hosts finish together), then times `runbook run` of STEPS `log` steps with
history on and with RUNBOOK_HISTORY=off, side by side in one go.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def per_event(tmp: Path, steps: int, batch: int = 1) -> float:
    """Seconds per event, handed over one at a time or `batch` at a time."""
    from engine.events import RunStarted, StepFinished, StepStarted
    from engine.history import open_store
    from engine.history.recorder import HistoryRecorder
    from engine.results import State, StepResult

    store = open_store(str(tmp / f"bench-{batch}.db"))
    rec = HistoryRecorder(store, extra={"step_ids": []})
    rec.handle(RunStarted("r", runbook="b", path="b", hosts=["h"], params={}, operator="o",
                          dry_run=False))  # fmt: skip
    events = []
    for i in range(steps):
        events.append(StepStarted("r", host="h", step_id=f"s{i}", name="n"))
        res = StepResult(f"s{i}", "n", "h", State.OK, data={"stdout": "x" * 100, "rc": 0})
        events.append(StepFinished("r", host="h", result=res))
    start = time.perf_counter()
    if batch == 1:
        for e in events:
            rec.handle(e)
    else:
        for i in range(0, len(events), batch):
            rec.handle_batch(events[i : i + batch])
    took = time.perf_counter() - start
    store.close()
    return took / len(events)


def whole_run(tmp: Path, steps: int, history: bool) -> float:
    rb = tmp / "bench.yaml"
    rb.write_text(
        "runbook: bench\nsteps:\n"
        + "".join(f"  - name: s{i}\n    log: step {i}\n" for i in range(steps))
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "RUNBOOK_HOME": str(tmp / "home")}
    if not history:
        env["RUNBOOK_HISTORY"] = "off"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "engine", "run", str(rb)], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cost = per_event(tmp, steps)
        print(f"recorder: {cost * 1e6:.0f} µs per event, {2 * cost * 1e3:.2f} ms per step")
        grouped = per_event(tmp, steps, batch=10)
        print(f"recorder, 10 events per transaction (hosts finishing together): "
              f"{grouped * 1e6:.0f} µs per event ({cost / grouped:.1f}x less)")  # fmt: skip
        off = min(whole_run(tmp, steps, False) for _ in range(3))
        on = min(whole_run(tmp, steps, True) for _ in range(3))
        print(f"{steps} log steps: history off {off:.2f} s, on {on:.2f} s "
              f"(ratio {on / off:.2f}, +{(on - off) * 1e3:.0f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
