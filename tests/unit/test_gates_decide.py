"""How a gate's votes decide it: pure logic, no store."""

from __future__ import annotations

from engine.history.gates import (
    ALL_HOSTS,
    APPROVED,
    DECLINED,
    WAITING,
    Gate,
    Vote,
    decide,
    may_vote,
)


def _gate(**kw: object) -> Gate:
    fields: dict[str, object] = {
        "run_id": "r1", "host": "web1", "step_id": "restart", "kind": "confirm",
        "prompt": "Restart?", "requested_by": "alice", "approvers": ["bob", "carol", "@dba"],
        "min_approvals": 2, "self_approval": False,
        "requested_at": "2026-12-04T08:00:00.000+00:00", "deadline": None,
    }  # fmt: skip
    fields.update(kw)
    return Gate(**fields)  # type: ignore[arg-type]


def _vote(user: str, approved: bool = True, host: str = ALL_HOSTS, at: str = "08:01") -> Vote:
    return Vote("r1", "restart", host, user, approved, "cli", "", f"2026-12-04T{at}:00+00:00")


def _roles(user: str) -> frozenset[str]:
    return frozenset({"dba"}) if user == "dave" else frozenset()


def test_approvals_from_enough_distinct_allowed_users_open_it() -> None:
    gate = _gate()
    assert decide(gate, [_vote("bob")], _roles) == (WAITING, ["bob"])
    assert decide(gate, [_vote("bob"), _vote("bob", at="08:02")], _roles) == (WAITING, ["bob"])
    assert decide(gate, [_vote("bob"), _vote("dave")], _roles) == (APPROVED, ["bob", "dave"])


def test_votes_of_users_who_may_not_answer_do_not_count() -> None:
    gate = _gate()
    votes = [_vote("alice"), _vote("mallory"), _vote("bob")]
    assert decide(gate, votes, _roles) == (WAITING, ["bob"])
    assert decide(gate, [_vote("mallory", approved=False)], _roles) == (WAITING, [])


def test_one_decline_closes_it_and_a_later_vote_replaces_an_earlier() -> None:
    gate = _gate()
    assert decide(gate, [_vote("bob"), _vote("carol", False)], _roles)[0] == DECLINED
    changed = [_vote("carol", False), _vote("carol", True, at="08:05"), _vote("bob")]
    assert decide(gate, changed, _roles) == (APPROVED, ["bob", "carol"])


def test_a_vote_for_another_host_does_not_count_here() -> None:
    gate = _gate(min_approvals=1)
    assert decide(gate, [_vote("bob", host="web2")], _roles) == (WAITING, [])
    assert decide(gate, [_vote("bob", host="web1")], _roles) == (APPROVED, ["bob"])


def test_self_approval_only_when_the_step_allows_it() -> None:
    assert "needs someone else" in (may_vote(_gate(), "alice", _roles) or "")
    assert may_vote(_gate(self_approval=True, approvers=[]), "alice", _roles) is None
    assert may_vote(_gate(approvers=[]), "anyone", _roles) is None
    assert "not among the approvers" in (may_vote(_gate(), "erin", _roles) or "")


def test_votes_given_before_the_gate_opened_do_not_count() -> None:
    """A `*` vote answered the hosts waiting then, not a later batch's host."""
    later = _gate(min_approvals=1, requested_at="2026-12-04T08:30:00.000+00:00")
    assert decide(later, [_vote("bob", at="08:01")], _roles) == (WAITING, [])
    assert decide(later, [_vote("bob", at="08:31")], _roles) == (APPROVED, ["bob"])
