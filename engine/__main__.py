"""`python -m engine` is the `runbook` command."""

from .cli import main

main()
