"""Shared test configuration.

Fixtures that start real servers live in tests/fixtures/<area>.py, one module
per area, and are registered here so every test directory can use them.
"""

pytest_plugins: list[str] = [
]
