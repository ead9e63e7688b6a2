"""Shared test configuration.

Fixtures that start real servers live in tests/fixtures/<area>.py, one module
per area, and are registered here so every test directory can use them.
"""

pytest_plugins: list[str] = [
    "tests.fixtures.web",
    "tests.fixtures.s3server",
    "tests.fixtures.services",
    "tests.fixtures.history",
    "tests.fixtures.sshd",
]
