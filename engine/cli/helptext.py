"""The examples and exit codes each command's --help ends with.

Kept apart from the commands so the texts read as one page, and so the exit
codes are drawn from engine/exitcodes.py rather than copied into each help.
"""

from __future__ import annotations

from engine import exitcodes

# `\b` tells click not to rewrap the paragraph that follows: examples keep their lines.
RUN_EXIT_CODES = f"""\b
Exit codes:
  {exitcodes.OK}   ok: every step ok or skipped
  {exitcodes.WARN}   warn: a threshold crossed its warn bound
  {exitcodes.CRITICAL}   critical: a threshold crossed its critical bound
  {exitcodes.FAILED}   failed: a step failed, a host was unreachable, max_fail, the run's timeout
  {exitcodes.ABORTED}   aborted: approval declined, Ctrl-C, SIGTERM
  {exitcodes.USAGE}  usage: a bad flag or param, an unknown run id
  {exitcodes.INVALID}  invalid runbook or inventory: nothing ran
  {exitcodes.INTERNAL}  a bug in the engine (the run is recorded)"""

RUN = f"""\b
Examples:
  runbook run examples/quickstart.yaml
  runbook run runbooks/daily-health-check.yaml -i inventories/example.yaml -l databases
  runbook run -C runbooks/log-rotation.yaml            # dry run
  runbook run runbooks/emergency-disk-full.yaml --approve delete_logs --report out.html
  runbook run runbooks/postgres-weekly.yaml --timeout 30m -q

{RUN_EXIT_CODES}"""

RESUME = f"""\b
Examples:
  runbook history --state failed          # find the run
  runbook resume 20261204-080623-3b3687 -p token=...

{RUN_EXIT_CODES}
  The original run still alive: {exitcodes.ABORTED}; its runbook's steps changed: \
{exitcodes.INVALID}."""

CHECK = f"""\b
Examples:
  runbook check runbooks/*.yaml -i inventories/example.yaml
  runbook check --format github runbooks/*.yaml     # annotations in a GitHub Actions job

\b
Exit codes: {exitcodes.OK} valid (lint warnings allowed), {exitcodes.INVALID} invalid."""

HISTORY = f"""\b
Examples:
  runbook history --runbook daily-health-check --state failed
  runbook history 20261204-080623-3b3687 --report run.html
  runbook history --metric disk_used_pct --report trend.html
  runbook history --incident INC-42 --format markdown > postmortem.md

\b
Exit codes: {exitcodes.OK}, or {exitcodes.USAGE} for an unknown run id or metric."""

LIST = f"""\b
Examples:
  runbook list                    # ./runbooks, emergency runbooks first
  runbook list runbooks | cut -f2 # piped: tab-separated, names never cut

\b
Exit codes: {exitcodes.OK}."""

CRON = f"""\b
Examples:
  runbook cron runbooks -i /etc/runbook/example.yaml | crontab -
  runbook cron runbooks -i /etc/runbook/example.yaml --systemd /etc/systemd/system

\b
Exit codes: {exitcodes.OK}; {exitcodes.USAGE} when a scheduled runbook lacks a required param."""

INVENTORY = f"""\b
Examples:
  runbook inventory -i inventories/example.yaml
  runbook inventory -i inventories/ansible-hosts.ini --host bastion
  RUNBOOK_INVENTORY=inventories/ansible-hosts.ini runbook inventory -l 'prod:&databases'

\b
Exit codes: {exitcodes.OK}; {exitcodes.USAGE} unknown host; {exitcodes.INVALID} bad inventory."""

SCHEMA = f"""\b
Examples:
  runbook schema > runbook.schema.json     # for the YAML language server
  runbook schema --output run              # what `run --format json` prints

\b
Exit codes: {exitcodes.OK}."""

SHOW = f"""\b
Examples:
  runbook show runbooks/emergency-disk-full.yaml > disk-full.md

\b
Exit codes: {exitcodes.OK}; {exitcodes.INVALID} invalid runbook."""

TEST = f"""\b
Examples:
  runbook test runbooks/emergency-disk-full.yaml      # runbooks/tests/emergency-disk-full.yaml
  runbook test runbooks/tests/*.yaml                  # every cases file, each for its runbook
  runbook test runbooks/emergency-memory.yaml my-cases.yaml --format json

\b
Exit codes: {exitcodes.OK} every case passed, 1 a case failed, {exitcodes.USAGE} a file is \
missing, {exitcodes.INVALID} an invalid cases file or runbook (nothing ran)."""

APPROVE = f"""\b
Examples:
  runbook approve 20261204-080623-3b3687                  # what waits, and who may answer
  runbook approve 20261204-080623-3b3687 restart --comment "checked the graphs"
  runbook approve 20261204-080623 restart --decline --host web2

\b
Exit codes: {exitcodes.OK} vote recorded; {exitcodes.USAGE} no such run or waiting gate, \
or you may not answer it (not an approver; your own run without self_approval)."""

SERVE = f"""\b
Examples:
  runbook serve --config /etc/runbook/serve.yaml
  runbook serve --config serve.yaml --host 0.0.0.0 --port 8080   # behind a TLS proxy
  curl -H "Authorization: Bearer $TOKEN" localhost:8080/api/runs
  printf %s "$TOKEN" | sha256sum       # a user's token_sha256 for the config

\b
Exit codes: {exitcodes.OK} stopped; {exitcodes.USAGE} no config file, the history is off \
(RUNBOOK_HISTORY=off), FastAPI missing; {exitcodes.INVALID} an invalid config (field path \
named), or a webhook rule naming a runbook without `webhook: true`."""

WORKER = f"""\b
Examples:
  export RUNBOOK_WORKER_KEY="$(runbook worker --new-key)"   # the same on every machine
  runbook worker --zone eu-dc1 --broker redis://broker.internal:6379/0
  runbook worker --zone eu-dc1 --broker amqp://runbook:PW@mq.internal:5672// -c 20
  runbook run runbooks/uptime-check.yaml -i inventories/zones.yaml --broker redis://broker.internal:6379/0

\b
Exit codes: {exitcodes.OK} stopped (Ctrl-C, SIGTERM after the walks in hand end); \
{exitcodes.USAGE} no --zone, no broker, no or a short RUNBOOK_WORKER_KEY, Celery missing."""

MAIN = """\b
Start:
  runbook run examples/quickstart.yaml
  runbook list
  runbook COMMAND --help         # each command's examples and exit codes

\b
Shell completion (bash; zsh and fish alike):
  eval "$(_RUNBOOK_COMPLETE=bash_source runbook)"
"""
