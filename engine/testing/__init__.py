"""`runbook test`: a runbook run against cases whose stand-in results replace
what its steps would have returned, so every branch of it (thresholds, `when`,
rescue, loops, approvals) is proven without touching a host.

    cases.py     the cases file: read, checked against the runbook (exit 65)
    standin.py   what runs in place of a step type (RunOptions.stand_in)
    case_run.py  one case run and judged against its `expect:`
    suite.py     which runbook each cases file tests
"""
