"""`python -m engine` is the `runbook` command."""

from .cli import main

main(prog_name="runbook")  # help, errors and shell completion say `runbook`
