"""`--junit PATH`: the run as JUnit XML, for CI dashboards.

One <testsuite> per host, one <testcase> per step on that host (classname=host,
name=step id). failed and critical are <failure>, unreachable and aborted are
<error>, skipped is <skipped>; a failure with `ignore_errors` passes, marked by
a property. Threshold values are testcase <properties>, so a CI trend plugin
can chart them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from engine.results import HostResult, State, StepResult, shown_number

from .document import DocumentCollector, RunDocument, file_report

_INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TAIL_LINES = 200


def junit_report(path: str | Path) -> DocumentCollector:
    return file_report(path, render_junit)


def _text(value: Any) -> str:
    return _INVALID_XML.sub("", value if isinstance(value, str) else str(value))


def _secs(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _tail(text: str) -> str:
    lines = text.splitlines()
    if len(lines) <= _TAIL_LINES:
        return text
    return f"… {len(lines) - _TAIL_LINES} lines omitted\n" + "\n".join(lines[-_TAIL_LINES:])


def render_junit(doc: RunDocument) -> str:
    root = ET.Element("testsuites", name=f"runbook {doc.runbook}")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_ms = 0
    for host in doc.hosts or list(doc.result.hosts):
        hr = doc.result.hosts.get(host, HostResult(host))
        suite, counts, ms = _suite(doc, hr)
        root.append(suite)
        for k in totals:
            totals[k] += counts[k]
        total_ms += ms
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", _secs(total_ms))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(doc: RunDocument, hr: HostResult) -> tuple[ET.Element, dict[str, int], int]:
    suite = ET.Element("testsuite", name=f"{doc.runbook} on {hr.host}", hostname=hr.host)
    if doc.started_at:
        suite.set("timestamp", doc.started_at)
    props = ET.SubElement(suite, "properties")
    info: dict[str, Any] = {
        "run_id": doc.run_id,
        "runbook": doc.runbook,
        "operator": doc.operator,
        "state": doc.state,
        "host_state": hr.state.value,
        "dry_run": doc.dry_run,
    }
    if doc.resumed_from:
        info["resumed_from"] = doc.resumed_from
    for name, value in doc.params.items():
        info[f"param.{name}"] = value
    for name, value in info.items():
        ET.SubElement(props, "property", name=name, value=_text(value))
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    ms = 0
    for step in hr.steps:
        suite.append(_case(hr.host, step, counts))
        ms += step.duration_ms
    for what, reason in (("connection", hr.unreachable), ("aborted", hr.aborted)):
        if reason and not any(s.state in (State.UNREACHABLE, State.ABORTED) for s in hr.steps):
            case = ET.SubElement(suite, "testcase", classname=hr.host, name=f"({what})", time="0")
            ET.SubElement(
                case,
                "error",
                message=_text(reason),
                type=State.UNREACHABLE.value if what == "connection" else State.ABORTED.value,
            )
            counts["tests"] += 1
            counts["errors"] += 1
    for k, v in counts.items():
        suite.set(k, str(v))
    suite.set("time", _secs(ms))
    return suite, counts, ms


def _case(host: str, step: StepResult, counts: dict[str, int]) -> ET.Element:
    case = ET.Element("testcase", classname=host, name=step.step_id, time=_secs(step.duration_ms))
    counts["tests"] += 1
    props: list[tuple[str, Any]] = [("title", step.name), ("state", step.state.value)]
    if step.attempts > 1:
        props.append(("attempts", step.attempts))
    if step.approved_by:
        props.append(("approved_by", step.approved_by))
    if step.ignored:
        props.append(("ignored", "true"))
    if step.rescued:
        props.append(("rescued", "true"))
    for name, m in step.metrics.items():
        props.append((f"threshold.{name}", "" if m.value is None else shown_number(m.value)))
        props.append((f"threshold.{name}.state", m.state.value))
        for key in ("warn", "critical", "unit"):
            if getattr(m, key):
                props.append((f"threshold.{name}.{key}", getattr(m, key)))
    p = ET.SubElement(case, "properties")
    for name, value in props:
        ET.SubElement(p, "property", name=name, value=_text(value))
    message = step.error or step.skip_reason or step.state.value
    if step.state is State.SKIPPED:
        ET.SubElement(case, "skipped", message=_text(step.skip_reason or "skipped"))
        counts["skipped"] += 1
    elif step.state in (State.UNREACHABLE, State.ABORTED):
        ET.SubElement(case, "error", message=_text(message), type=step.state.value)
        counts["errors"] += 1
    elif step.state is State.FAILED and not (step.ignored or step.rescued):
        el = ET.SubElement(case, "failure", message=_text(message), type="failed")
        el.text = _text(_tail(str(step.data.get("stderr") or step.error or "")))
        counts["failures"] += 1
    elif step.state is State.CRITICAL:
        crit = [
            f"{k}={shown_number(m.value)} ({m.critical})"
            for k, m in step.metrics.items()
            if m.state is State.CRITICAL and m.value is not None
        ]
        ET.SubElement(
            case, "failure", message=_text("critical: " + ", ".join(crit)), type="critical"
        )
        counts["failures"] += 1
    for stream, tag in (("stdout", "system-out"), ("stderr", "system-err")):
        text = step.data.get(stream)
        if isinstance(text, str) and text:
            ET.SubElement(case, tag).text = _text(_tail(text))
    return case
