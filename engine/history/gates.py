"""Gates answered by others: a `confirm:` with `approvers:`, and every gate and
manual step of a run started by `runbook serve`.

The waiting run writes the gate to the shared history and polls its votes;
anyone with access votes from elsewhere: the API, the web page, or `runbook
approve RUN_ID STEP` in another terminal. The history is the meeting point
because it already is what every control node of a team shares (SQLite on
one machine, PostgreSQL across several), and it keeps who voted when for the
audit. The decision is a pure function of the gate and its votes, so the run,
the API and the CLI judge a vote alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.errors import UsageError

WAITING, APPROVED, DECLINED, TIMED_OUT, CANCELLED = (
    "waiting",
    "approved",
    "declined",
    "timed_out",
    "cancelled",
)
ALL_HOSTS = "*"  # a vote for every host the step waits on

Roles = Callable[[str], frozenset[str]]  # a user's roles (the serve config's)


class GateNotWaiting(UsageError):
    """No such gate waits (or not of that kind): 409 over HTTP, exit 64 at a terminal."""


class VoteRefused(UsageError):
    """This user may not answer this gate: 403 over HTTP, exit 64 at a terminal."""


def no_roles(user: str) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class GatePolicy:
    """Who may open a gate, as the step says it."""

    approvers: tuple[str, ...] = ()  # user names and @roles; empty: anyone
    min_approvals: int = 1
    self_approval: bool = False
    timeout: float | None = None  # seconds; then the gate is declined


@dataclass
class Gate:
    run_id: str
    host: str
    step_id: str
    kind: str  # confirm | manual
    prompt: str
    requested_by: str
    approvers: list[str]
    min_approvals: int
    self_approval: bool
    requested_at: str
    deadline: str | None
    state: str = WAITING
    decided_by: str | None = None
    decided_at: str | None = None


@dataclass
class Vote:
    run_id: str
    step_id: str
    host: str
    user: str
    approved: bool
    via: str
    comment: str
    at: str


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def loads(value: Any) -> Any:
    """SQLite hands JSON back as text, PostgreSQL's jsonb as Python objects."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def may_vote(gate: Gate, user: str, roles: Roles) -> str | None:
    """Why `user` may not answer `gate`, or None when they may."""
    if user == gate.requested_by and not gate.self_approval:
        return (
            f"{user} started run {gate.run_id}: its gate {gate.step_id} needs someone else "
            "(the step does not set self_approval: true)"
        )
    if not gate.approvers:
        return None
    mine = roles(user)
    for who in gate.approvers:
        if who == user or (who.startswith("@") and who[1:] in mine):
            return None
    return f"{user} is not among the approvers of {gate.step_id}: {', '.join(gate.approvers)}"


def decide(gate: Gate, votes: list[Vote], roles: Roles) -> tuple[str, list[str]]:
    """The gate's state given its votes: (state, the users who decided it).

    Only votes of users allowed to answer count. One decline declines (a gate
    protects something: a reason not to is enough); approvals open it once
    `min_approvals` different users gave one. A vote for every host (`*`)
    counts on each host whose gate was open when it was given; a later vote
    of the same user replaces theirs."""
    # Votes given before this gate opened answered an earlier one (another
    # batch's host, or this gate before a resume): they do not count here.
    mine = [v for v in votes if v.host in (gate.host, ALL_HOSTS) and v.at >= gate.requested_at]
    latest: dict[str, Vote] = {}
    for vote in sorted(mine, key=lambda v: (v.at, v.host == gate.host)):
        latest[vote.user] = vote
    valid = [v for v in latest.values() if may_vote(gate, v.user, roles) is None]
    declined = [v.user for v in valid if not v.approved]
    if declined:
        return DECLINED, declined
    approved = sorted(v.user for v in valid if v.approved)
    if len(approved) >= gate.min_approvals:
        return APPROVED, approved
    return WAITING, approved


class GateTables:
    """The gates, votes and audit tables, for SqlStore (engine/history/store.py),
    which provides the three primitives below."""

    def _write(self, *statements: Any) -> None:
        """(sql, params) pairs, flattened, in one transaction."""
        raise NotImplementedError

    def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _ts(self, value: Any) -> str | None:
        raise NotImplementedError

    def insert_gate(self, gate: Gate) -> None:
        row = dict(gate.__dict__)
        row["approvers"] = dumps(gate.approvers)
        cols = list(row)
        sql = f"INSERT INTO gates ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        self._write(
            "DELETE FROM gates WHERE run_id = ? AND host = ? AND step_id = ?",
            (gate.run_id, gate.host, gate.step_id),
            sql,
            tuple(row[c] for c in cols),
        )

    def update_gate(self, gate: Gate) -> None:
        self._write(
            "UPDATE gates SET state = ?, decided_by = ?, decided_at = ? "
            "WHERE run_id = ? AND host = ? AND step_id = ?",
            (gate.state, gate.decided_by, gate.decided_at, gate.run_id, gate.host, gate.step_id),
        )

    def gates(self, run_id: str | None = None, state: str | None = None) -> list[Gate]:
        where, params = [], []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        sql = "SELECT * FROM gates" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._fetch(sql + " ORDER BY requested_at", tuple(params))
        out = []
        for row in rows:
            row["approvers"] = loads(row["approvers"]) or []
            row["self_approval"] = bool(row["self_approval"])
            for c in ("requested_at", "deadline", "decided_at"):
                row[c] = self._ts(row[c])
            out.append(Gate(**row))
        return out

    def add_vote(self, vote: Vote) -> None:
        self._write(
            "DELETE FROM votes WHERE run_id = ? AND step_id = ? AND host = ? AND user_name = ?",
            (vote.run_id, vote.step_id, vote.host, vote.user),
            "INSERT INTO votes (run_id, step_id, host, user_name, approved, via, comment, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (vote.run_id, vote.step_id, vote.host, vote.user, vote.approved, vote.via,
             vote.comment, vote.at),
        )  # fmt: skip

    def votes(self, run_id: str, step_id: str | None = None) -> list[Vote]:
        sql, params = "SELECT * FROM votes WHERE run_id = ?", [run_id]
        if step_id is not None:
            sql += " AND step_id = ?"
            params.append(step_id)
        rows = self._fetch(sql + " ORDER BY at", tuple(params))
        return [
            Vote(r["run_id"], r["step_id"], r["host"], r["user_name"], bool(r["approved"]),
                 r["via"] or "", r["comment"] or "", self._ts(r["at"]) or "")
            for r in rows
        ]  # fmt: skip

    def add_audit(self, user: str, action: str, run_id: str | None, detail: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO audit (at, user_name, action, run_id, detail) VALUES (?, ?, ?, ?, ?)",
            (_iso(_now()), user, action, run_id, dumps(detail)),
        )

    def audit(self, run_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM audit", []
        if run_id is not None:
            sql, params = sql + " WHERE run_id = ?", [run_id]
        rows = self._fetch(sql + " ORDER BY at DESC LIMIT ?", (*params, limit))
        for row in rows:
            row["detail"] = loads(row["detail"]) if row["detail"] is not None else {}
            row["at"] = self._ts(row["at"])
        return list(rows)


class GateBoard:
    """A run's side of the gates: open one, wait for its decision."""

    def __init__(self, store: Any, roles: Roles = no_roles, poll: float = 0.5) -> None:
        self.store = store
        self.roles = roles
        self.poll = poll

    def open(
        self,
        run_id: str,
        host: str,
        step_id: str,
        *,
        kind: str,
        prompt: str,
        requested_by: str,
        policy: GatePolicy,
    ) -> Gate:
        now = _now()
        deadline = _iso(now + timedelta(seconds=policy.timeout)) if policy.timeout else None
        gate = Gate(
            run_id, host, step_id, kind, prompt, requested_by, list(policy.approvers),
            policy.min_approvals, policy.self_approval, _iso(now), deadline,
        )  # fmt: skip
        self.store.insert_gate(gate)
        return gate

    def own_vote(self, gate: Gate, how: str) -> None:
        """The runner's pre-approval as their vote, when they may give one."""
        if may_vote(gate, gate.requested_by, self.roles) is None:
            vote = Vote(gate.run_id, gate.step_id, gate.host, gate.requested_by, True, "flag",
                        how, _iso(_now()))  # fmt: skip
            self.store.add_vote(vote)

    def wait(self, gate: Gate, stop: Callable[[], bool]) -> tuple[bool, str]:
        """Poll the votes until the gate is decided, its deadline passes or the
        run stops. (approved, by whom: names and how)."""
        while True:
            state, users = decide(gate, self.store.votes(gate.run_id, gate.step_id), self.roles)
            if state != WAITING:
                return self._close(gate, state, users)
            if gate.deadline and _iso(_now()) >= gate.deadline:
                return self._close(gate, TIMED_OUT, users)
            if stop():
                return self._close(gate, CANCELLED, users)
            time.sleep(self.poll)

    def _close(self, gate: Gate, state: str, users: list[str]) -> tuple[bool, str]:
        gate.state, gate.decided_at = state, _iso(_now())
        gate.decided_by = ", ".join(users) or None
        self.store.update_gate(gate)
        if state == APPROVED:
            return True, f"{gate.decided_by} (approved by others)"
        if state == DECLINED:
            return False, f"{gate.decided_by} (declined)"
        got = f"{len(users)} of {gate.min_approvals} approval(s)"
        if state == TIMED_OUT:
            return False, f"nobody in time: {got} before the approval timeout"
        return False, f"the run stopped while waiting ({got})"


def cast_vote(
    store: Any,
    run_id: str,
    step_id: str,
    user: str,
    *,
    approved: bool,
    host: str = ALL_HOSTS,
    via: str = "cli",
    comment: str = "",
    roles: Roles = no_roles,
    kind: str | None = None,
) -> list[Gate]:
    """Record `user`'s answer to the waiting gate(s) of `step_id` (one host or
    all), after checking they may give it (and, given `kind`, that the gate is
    of that kind). The gates it answers; GateNotWaiting or VoteRefused naming
    why otherwise, with nothing recorded."""
    open_gates = store.gates(run_id, WAITING)
    waiting = [g for g in open_gates if g.step_id == step_id and host in (ALL_HOSTS, g.host)]
    if not waiting:
        open_ones = sorted({g.step_id for g in open_gates})
        hint = f" (waiting: {', '.join(open_ones)})" if open_ones else " (no gate waits in it)"
        raise GateNotWaiting(f"run {run_id} has no gate {step_id} waiting{hint}")
    if kind is not None and waiting[0].kind != kind:
        raise GateNotWaiting(f"{step_id} waits as a {waiting[0].kind} step, not a {kind} gate")
    refusal = may_vote(waiting[0], user, roles)
    if refusal is not None:
        raise VoteRefused(refusal)
    store.add_vote(Vote(run_id, step_id, host, user, approved, via, comment, _iso(_now())))
    store.add_audit(
        user,
        "approve" if approved else "decline",
        run_id,
        {"step_id": step_id, "host": host, "via": via, "comment": comment},
    )
    return waiting
