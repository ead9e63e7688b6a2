"""`runbook approve RUN_ID [STEP]`: answer a gate that waits for others.

A run waiting at a `confirm:` with `approvers:` (or any gate of a run that
`runbook serve` started) reads its votes from the shared history; this
command writes one there, as the operator ($RUNBOOK_OPERATOR or the login
name). Without STEP it lists what waits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from engine import exitcodes

from . import helptext

if TYPE_CHECKING:
    from engine.users import User


@click.command("approve", epilog=helptext.APPROVE)
@click.argument("run_id")
@click.argument("step", required=False)
@click.option("--decline", is_flag=True, help="Decline instead: one decline closes the gate.")
@click.option("--host", default="*", show_default=True, help="Answer for this host only.")
@click.option("--comment", default="", help="Why, for the audit trail.")
@click.option("--operator", help="Who answers (default: $RUNBOOK_OPERATOR or login name).")
def approve_command(
    run_id: str, step: str | None, decline: bool, host: str, comment: str, operator: str | None
) -> None:
    """Approve (or --decline) STEP of RUN_ID; without STEP, list its waiting gates."""
    from engine.execution.approvals import operator_name
    from engine.history.gates import WAITING, cast_vote, decide
    from engine.history.location import open_store
    from engine.history.replay import resolve_run_id
    from engine.users import roles_in, users_from_env

    config = users_from_env()  # read once: the voter's rights and the roles decide
    store = open_store()
    try:
        full_id = resolve_run_id(store, run_id)["id"]

        def roles(user: str) -> frozenset[str]:
            return roles_in(config[1] if config else {}, user)

        if step is None:
            waiting = store.gates(full_id, WAITING)
            if not waiting:
                click.echo(f"run {full_id}: no gate waits")
            for gate in waiting:
                _, yes = decide(gate, store.votes(full_id, gate.step_id), roles)
                who = ", ".join(gate.approvers) or "anyone allowed"
                click.echo(
                    f"{gate.step_id}\t{gate.host}\t{len(yes)}/{gate.min_approvals} by {who}\t"
                    f"{gate.prompt}"
                )
            return
        user = operator_name(operator)
        kinds = [g.kind for g in store.gates(full_id, WAITING) if g.step_id == step]
        _check_user(user, kinds, config)
        gates = cast_vote(
            store, full_id, step, user, approved=not decline, host=host, via="cli",
            comment=comment, roles=roles,
        )  # fmt: skip
        for gate in gates:
            state, yes = decide(gate, store.votes(full_id, step), roles)
            tally = f"{len(yes)} of {gate.min_approvals}"
            click.echo(f"{gate.host}: {step} {state} ({tally} approval(s)) after {user}'s vote")
    finally:
        store.close()
    raise SystemExit(exitcodes.OK)


def _check_user(user: str, kinds: list[str], config: tuple[str, dict[str, User]] | None) -> None:
    """With a serve config ($RUNBOOK_SERVE_CONFIG), the voter must be one of its
    users with the right (approve a gate, acknowledge a manual step), as the
    API requires. Without one, whoever can write the history is trusted: the
    name is $RUNBOOK_OPERATOR or the login (docs/serve.md)."""
    from engine.errors import UsageError

    if config is None:
        return
    path, users = config
    known = users.get(user)
    if known is None:
        raise UsageError(f"{user} is not a user of {path}: only its users may answer gates")
    for right in sorted({"acknowledge" if k == "manual" else "approve" for k in kinds}):
        if not known.may(right):
            raise UsageError(f"{user} (roles: {', '.join(sorted(known.roles))}) may not {right}")
