"""The runbook format: YAML with positions, the model, whole-file validation.

source.py   YAML → data, remembering file:line:column of every value
model.py    the pydantic models (a step: common fields + one type's body)
loader.py   a file → a validated Runbook, or every Problem of it at once
params.py   operator input (-p name=value) → typed, checked params
lint.py     warnings about valid runbooks that are risky in an outage
schema.py   JSON Schema of the format, for editors
catalog.py  the library as people browse it: list, show, cron
"""
