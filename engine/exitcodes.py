"""Every exit code of `runbook`, in one place (docs/format.md lists them).

0-4 are a run's outcome, its worst state: automation reads them as "all well",
"look at this", "act now", "something broke", "someone stopped it". 64, 65 and
70 are sysexits.h's: the command was wrong, an input file was, or the engine.
"""

from __future__ import annotations

OK = 0  # every step ok or skipped
WARN = 1  # a threshold crossed its warn bound
CRITICAL = 2  # a threshold crossed its critical bound
FAILED = 3  # a step failed or a host was unreachable
ABORTED = 4  # the operator: declined approval, Ctrl-C, SIGTERM (max_fail is FAILED)
USAGE = 64  # EX_USAGE: bad flags, unknown or missing param, unknown run id
INVALID = 65  # EX_DATAERR: an invalid runbook or inventory; nothing ran
INTERNAL = 70  # EX_SOFTWARE: a bug in the engine, neither `warn` (1) nor an abort (4)
