"""Shared test configuration.

Fixtures that start real servers live in tests/fixtures/<area>.py, one module
per area, and are registered here so every test directory can use them.
"""

import pytest

pytest_plugins: list[str] = [
    "tests.fixtures.web",
    "tests.fixtures.s3server",
    "tests.fixtures.services",
    "tests.fixtures.history",
    "tests.fixtures.sshd",
    "tests.fixtures.own_postgres",
    "tests.fixtures.own_redis",
    "tests.fixtures.lab_app",
    "tests.fixtures.containers",
    "tests.fixtures.celery_lab",
    "tests.fixtures.receiver",
    "tests.fixtures.vault",
    "tests.fixtures.pushgateway",
    "tests.fixtures.serve",
    "tests.fixtures.workers",
]


# A test that uses one of these fixtures needs that server: it gets the marker,
# so `-m "not (ssh or postgres or redis or s3 or browser or containers)"` is the lane that
# runs with no server at all (CONTRIBUTING.md).
SERVER_MARKERS = {
    "sshd": "ssh",
    "sshd_jump": "ssh",
    "sshd_own": "ssh",
    "pg_database": "postgres",
    "pg_table": "postgres",
    "scratch_db": "postgres",
    "pg_history_dsn": "postgres",
    "own_postgres": "postgres",
    "redis_url": "redis",
    "redis_prefix": "redis",
    "redis_user": "redis",
    "celery_lab": "redis",
    "own_redis": "redis",
    "s3_server": "s3",
    "s3_bucket": "s3",
    "chromium": "browser",
    "pushgateway": "pushgateway",
    "frontend": "package_registry",  # test_security_updates: npm install from npm's registry
    "container_engine": "containers",
    "containers": "containers",
    "registry": "containers",
    "vault_server": "vault",
    "workers": "distributed",
    "zone_workers": "distributed",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            marker = SERVER_MARKERS.get(fixture)
            if marker is not None:
                item.add_marker(marker)
