"""`sql`: queries from the control node to PostgreSQL, through psycopg 3.

Parameters are bound by the server (``%s`` / ``%(name)s`` placeholders), never
pasted into the query text, so a value can never become SQL. With `params` the
server accepts one statement only; without them `query` may hold several
statements separated by ``;``, run in order in one transaction (unless
`autocommit`).

Result fields:

- `rows`, `columns`, `rowcount`: of the last statement that returned a result
  set (so ``SET LOCAL work_mem = '1GB'; SELECT ...`` gives the SELECT's rows),
  or of the last statement when none did. `rowcount` follows DB-API: rows
  returned or affected, -1 when the command has no count (DDL). A column name
  that repeats gets a suffix (``n``, ``n_2``) so no value is silently lost.
  At most `max_rows` rows are kept; `truncated` says whether more came back.
- `status`: the server's command tag of the last statement (``SELECT 3``,
  ``VACUUM``); `statuses`: every statement's tag, in order.

Values are made JSON-friendly so reports, history and templates see plain
data: integral Decimals become int and others float (NaN/Infinity stay
strings), date/time values ISO-8601 strings, intervals seconds as float, UUIDs
and network addresses strings, bytea lowercase hex (PostgreSQL's own output
format, without the ``\\x``), ranges and other types their text form; json
and arrays keep their structure.

Under --dry-run (this type is dry-run safe unless `autocommit`) the query runs
in a ``READ ONLY`` transaction, and the session's default is read-only too so
that a ``COMMIT`` inside the query cannot open a writable one; the transaction
is rolled back whatever happens. A write attempt fails with SQLSTATE 25006;
the step then fails with "would write: skipped in dry run" and its data holds
``would_write: true``, so the report shows which steps would have changed the
database. A step marked ``safe: true`` with `autocommit` also runs under
--dry-run, with every statement in a read-only transaction of its own.

With a step timeout, the session gets ``statement_timeout`` (each statement
may take that long) and ``connect_timeout``; exceeding it raises StepTimeout.
The operator's second Ctrl-C sends the server a cancel request for the running
statement (closing our socket would leave it running, and holding its locks).
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import Field, field_serializer

from engine.errors import ServiceError, StepTimeout
from engine.redaction import dsn_passwords, redact_dsn, scrub

from .base import StepContext, StepSpec, StepType

if TYPE_CHECKING:
    from threading import Event

    import psycopg

SERVICE = "postgresql"
DEFAULT_MAX_ROWS = 10_000
READ_ONLY_VIOLATION = "25006"
QUERY_CANCELED = "57014"
IN_TRANSACTION_BLOCK = "25001"


class SqlSpec(StepSpec):
    dsn: str
    query: str
    params: list[Any] | dict[str, Any] | None = None
    autocommit: bool = False
    tunnel: bool = False
    max_rows: int = Field(default=DEFAULT_MAX_ROWS, ge=0)

    @field_serializer("dsn")
    def _hide_password(self, dsn: str) -> str:
        # Dumps are for display (--dry-run shows the rendered step): never the password.
        return redact_dsn(dsn)


class SqlStep(StepType):
    name = "sql"
    Spec = SqlSpec

    def run(self, spec: SqlSpec, ctx: StepContext) -> dict[str, Any]:
        for secret in dsn_passwords(spec.dsn):
            ctx.redactor.add(secret)
        with ExitStack() as stack:
            conninfo = spec.dsn
            via = ""
            if spec.tunnel:
                host, port = _tunnel_target(spec.dsn)
                local = stack.enter_context(ctx.connection.tunnel(host, port))
                conninfo = _with_address(spec.dsn, *local)
                via = f" through a tunnel via {ctx.host.name}"
            conninfo = _session_settings(conninfo, ctx.timeout, ctx.dry_run, ctx.step_id)
            conn = _connect(conninfo, spec, ctx, via)
            stack.callback(conn.close)
            # The second Ctrl-C cancels the query in the server, not only our wait.
            cancelled = stack.enter_context(ctx.cancellable(conn.cancel_safe))
            return _execute(conn, spec, ctx, cancelled)
        raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow

    def dry_run_safe(self, spec: SqlSpec) -> bool:
        # VACUUM & co. refuse to run inside a transaction, so they cannot be
        # fenced by a rolled-back READ ONLY one.
        return not spec.autocommit

    def describe(self, spec: SqlSpec) -> str:
        lines = [line.strip() for line in spec.query.strip().splitlines() if line.strip()]
        first = lines[0] if lines else ""
        if len(first) > 80:
            first = first[:77] + "..."
        elif len(lines) > 1:
            first += " ..."
        return first + ("  (autocommit)" if spec.autocommit else "")


# -- connecting ---------------------------------------------------------------


def _tunnel_target(dsn: str) -> tuple[str, int]:
    """The (host, port) the DSN names, as seen from the host the tunnel starts at."""
    params = _parse(dsn)
    host = str(params.get("hostaddr") or params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    if "," in host or "," in port:
        raise ServiceError(
            SERVICE, f"tunnel: needs a single host, not {host!r} in {redact_dsn(dsn)}"
        )
    if host.startswith("/") or host.startswith("@"):
        raise ServiceError(
            SERVICE, f"tunnel: cannot reach the Unix socket {host!r}; give a TCP host and port"
        )
    try:
        return host, int(port)
    except ValueError:
        raise ServiceError(SERVICE, f"tunnel: port {port!r} is not a number") from None


def _parse(dsn: str) -> dict[str, Any]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        message = scrub(str(exc), dsn)
        raise ServiceError(SERVICE, f"invalid dsn {redact_dsn(dsn)}: {message}") from None


def _with_address(dsn: str, host: str, port: int) -> str:
    from psycopg.conninfo import make_conninfo

    params = _parse(dsn)
    params.pop("hostaddr", None)
    params.update(host=host, port=str(port))
    return make_conninfo("", **params)


def _session_settings(dsn: str, timeout: float | None, dry_run: bool, step_id: str) -> str:
    """Add timeouts, the read-only default and a recognisable application_name."""
    from psycopg.conninfo import make_conninfo

    params = _parse(dsn)
    extra: dict[str, Any] = {}
    options = [str(params["options"])] if params.get("options") else []
    if timeout is not None:
        options.append(f"-c statement_timeout={max(1, int(timeout * 1000))}")
        # libpq counts whole seconds and treats anything below 2 as 2.
        extra["connect_timeout"] = str(max(2, math.ceil(timeout)))
    if dry_run:
        options.append("-c default_transaction_read_only=on")
    if options:
        extra["options"] = " ".join(options)
    if not params.get("application_name"):
        # Lets a DBA see in pg_stat_activity which runbook step holds a lock.
        extra["application_name"] = f"runbook:{step_id}"[:63]
    return make_conninfo(dsn, **extra) if extra else dsn


def _connect(conninfo: str, spec: SqlSpec, ctx: StepContext, via: str) -> psycopg.Connection:
    import psycopg

    try:
        conn = psycopg.connect(conninfo, autocommit=spec.autocommit)
    except psycopg.Error as exc:
        reason = _one_line(scrub(scrub(str(exc), spec.dsn), conninfo))
        where = f"{redact_dsn(spec.dsn)}{via}"
        if "timeout expired" in reason:
            raise StepTimeout(f"{SERVICE}: connecting to {where} timed out: {reason}") from None
        raise ServiceError(
            SERVICE, f"cannot connect to {where}: {reason}", code=exc.sqlstate or ""
        ) from None
    if ctx.dry_run and not spec.autocommit:
        conn.read_only = True
    return conn


# -- running ------------------------------------------------------------------


def _execute(
    conn: psycopg.Connection, spec: SqlSpec, ctx: StepContext, cancelled: Event
) -> dict[str, Any]:
    import psycopg

    statuses: list[str] = []
    last: dict[str, Any] = {"rows": [], "names": [], "rowcount": -1, "truncated": False}
    try:
        cur = conn.cursor()
        # Without params psycopg sends the text as is: `%` needs no escaping then.
        cur.execute(spec.query, _adapt(spec.params))
        while True:
            statuses.append(cur.statusmessage or "")
            if cur.description is not None:
                raw = cur.fetchmany(spec.max_rows + 1) if spec.max_rows else []
                last = {
                    "rows": raw[: spec.max_rows],
                    "names": [col.name for col in cur.description],
                    "rowcount": cur.rowcount,
                    "truncated": cur.rowcount > spec.max_rows,
                }
            elif not last["names"]:
                last["rowcount"] = cur.rowcount
            if not cur.nextset():
                break
        if not conn.autocommit and not ctx.dry_run:
            conn.commit()
    except psycopg.Error as exc:
        raise _translate(exc, spec, ctx, cancelled.is_set()) from None
    finally:
        # A no-op after the commit; undoes everything after an error or in a dry run.
        _rollback(conn)
    columns = _unique(last["names"])
    return {
        "rows": [dict(zip(columns, map(json_value, row), strict=True)) for row in last["rows"]],
        "columns": columns,
        "rowcount": last["rowcount"],
        "status": statuses[-1] if statuses else "",
        "statuses": statuses,
        "truncated": last["truncated"],
    }


def _adapt(params: list[Any] | dict[str, Any] | None) -> Any:
    """Mappings among the values go to the server as jsonb (psycopg has no default for them);
    lists stay lists, i.e. PostgreSQL arrays, so ``WHERE id = ANY(%s)`` works."""
    from psycopg.types.json import Jsonb

    def one(value: Any) -> Any:
        return Jsonb(value) if isinstance(value, dict) else value

    if params is None:
        return None
    if isinstance(params, dict):
        return {k: one(v) for k, v in params.items()}
    return [one(v) for v in params]


def _rollback(conn: psycopg.Connection) -> None:
    import psycopg

    if conn.closed or conn.autocommit:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        pass  # the connection is closed right after anyway: the server rolls back


def _translate(
    exc: psycopg.Error, spec: SqlSpec, ctx: StepContext, cancelled: bool = False
) -> Exception:
    code = exc.sqlstate or ""
    diag = exc.diag
    primary = diag.message_primary or _one_line(str(exc))
    data: dict[str, Any] = {"sqlstate": code}
    if code == READ_ONLY_VIOLATION and ctx.dry_run:
        data["would_write"] = True
        return ServiceError(
            SERVICE, f"would write: skipped in dry run ({primary})", code=code, data=data
        )
    if code == QUERY_CANCELED and "statement timeout" in primary:
        return StepTimeout(
            f"{SERVICE}: query exceeded the step timeout of {ctx.timeout:g}s "
            f"(statement_timeout, SQLSTATE {code})",
            data=data,
        )
    if code == QUERY_CANCELED and cancelled:
        return ServiceError(
            SERVICE,
            "query cancelled in the server: the run was interrupted (Ctrl-C); "
            "what it had not committed was rolled back",
            code=code,
            data=data,
        )
    message = primary
    if code == "42601" and spec.params is not None and "multiple commands" in primary:
        message = (
            "with `params`, `query` must be a single statement (the server binds parameters "
            "into one statement only); split it into several steps, or drop `params`"
        )
    if code == IN_TRANSACTION_BLOCK and not spec.autocommit:
        message += (
            " (set `autocommit: true` on this step for VACUUM, CREATE INDEX CONCURRENTLY,"
            " REINDEX CONCURRENTLY and other commands that refuse a transaction)"
        )
    if diag.message_detail:
        message += f"\nDETAIL: {diag.message_detail}"
    if diag.message_hint:
        message += f"\nHINT: {diag.message_hint}"
    if diag.statement_position:
        message += "\n" + _pointer(spec.query, int(diag.statement_position))
    return ServiceError(SERVICE, scrub(message, spec.dsn), code=code, data=data)


def _pointer(query: str, position: int) -> str:
    """Line and column of a 1-based character position, with a caret under it."""
    before = query[: max(position - 1, 0)]
    line_no = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    line = query.splitlines()[line_no - 1] if query.splitlines() else ""
    return f"at line {line_no}, column {column} of the query:\n  {line}\n  {' ' * (column - 1)}^"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        candidate = name if seen[name] == 1 else f"{name}_{seen[name]}"
        while candidate in names and seen[name] > 1:
            seen[name] += 1
            candidate = f"{name}_{seen[name]}"
        out.append(candidate)
    return out


def json_value(value: Any) -> Any:
    """A database value as plain JSON-friendly data (see the module docstring)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)
