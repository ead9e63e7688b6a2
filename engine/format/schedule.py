"""`runbook cron --systemd DIR`: a runbook's `schedule` as a systemd timer.

Cron's five fields become an `OnCalendar=` expression. Two things cron can say
have no faithful systemd form and are refused with the reason rather than
approximated: a restricted day of month together with a restricted weekday
(cron runs when either matches, systemd when both do), and a step over a range
(`1-10/2`) in the day-of-week field.
"""

from __future__ import annotations

import re

DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
NAMES = {d.lower(): i for i, d in enumerate(DAYS[:7])}
MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
)}  # fmt: skip


class ScheduleError(ValueError):
    """A cron expression with no faithful systemd calendar form."""


def _number(token: str, names: dict[str, int]) -> int:
    return names[token.lower()] if token.lower() in names else int(token)


def _field(text: str, low: int, names: dict[str, int] | None = None) -> str:
    """One cron field (minute, hour, day or month) as systemd writes it."""
    names = names or {}
    if text == "*":
        return "*"
    parts: list[str] = []
    for part in text.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            first, last = low, None
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = _number(a, names), _number(b, names)
        else:
            first, last = _number(base, names), None
        if step and last is not None:  # 1-10/2: listed, systemd has no stepped range
            parts.extend(f"{v:02d}" for v in range(first, last + 1, int(step)))
        elif step:
            parts.append(f"{first:02d}/{int(step)}")
        elif last is not None:
            parts.append(f"{first:02d}..{last:02d}")
        else:
            parts.append(f"{first:02d}")
    return ",".join(parts)


def _weekdays(text: str) -> str:
    if text == "*":
        return ""
    out = []
    for part in text.split(","):
        if "/" in part:
            raise ScheduleError(f"day of week {text!r}: a stepped weekday has no systemd form")
        if "-" in part:
            a, b = (_number(x, NAMES) for x in part.split("-", 1))
            out.append(f"{DAYS[a]}..{DAYS[b]}")
        else:
            out.append(DAYS[_number(part, NAMES)])
    return ",".join(out)


def on_calendar(cron: str) -> str:
    """`0 8 * * 1-5` → `Mon..Fri *-*-* 08:00:00`. Raises ScheduleError."""
    fields = cron.split()
    if len(fields) != 5:
        raise ScheduleError(f"{cron!r} is not a 5-field cron expression")
    minute, hour, dom, month, dow = fields
    if dom != "*" and dow != "*":
        raise ScheduleError(
            f"{cron!r}: cron runs when the day of month OR the weekday matches, "
            "systemd only when both do; write two schedules"
        )
    days = _weekdays(dow)
    date = f"*-{_field(month, 1, MONTHS)}-{_field(dom, 1)}"
    time = f"{_field(hour, 0)}:{_field(minute, 0)}:00"
    return f"{days + ' ' if days else ''}{date} {time}"


def unit_name(runbook: str) -> str:
    """A unit name systemd accepts for the runbook (its names are slugs already)."""
    return "runbook-" + re.sub(r"[^A-Za-z0-9:_.-]", "-", runbook)


def systemd_units(name: str, description: str, schedule: str, command: list[str]) -> dict[str, str]:
    """The .service and .timer files for one scheduled runbook."""
    import shlex

    # systemd expands % specifiers and $ variables on ExecStart: doubled, they are literal.
    exec_start = shlex.join(command).replace("%", "%%").replace("$", "$$")
    unit = unit_name(name)
    summary = f"runbook {name}" + (f": {description}" if description else "")
    service = f"[Unit]\nDescription={summary}\n\n[Service]\nType=oneshot\nExecStart={exec_start}\n"
    timer = (
        f"[Unit]\nDescription=Schedule of {summary} ({schedule})\n\n"
        f"[Timer]\nOnCalendar={on_calendar(schedule)}\n"
        "# A run missed while the machine was off runs at the next boot.\n"
        "Persistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return {f"{unit}.service": service, f"{unit}.timer": timer}
