"""Running a runbook: the runner fans hosts out, the executor walks each host.

runner.py     Run, Runner: batches (serial), forks, strategy, max_fail, Ctrl-C
lockstep.py   the linear strategy's scheduler
executor.py   HostExecutor: one host's walk (when, approvals, blocks, includes)
attempts.py   one typed step: render, run, retry, judge
outcome.py    judging an attempt: failed_when, assert, thresholds
context.py    what a run's hosts share: options, the event bus, the stop flag
cancel.py     the second Ctrl-C's cancels of work in other servers
approvals.py  the operator: confirm gates, manual steps, --step
"""
