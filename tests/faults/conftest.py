"""Fixtures for the fault tests: a database URL for subprocesses and a log folder."""

from __future__ import annotations

import pytest

from tests.jobs.conftest import database_url_for_subprocess  # a fixture: pytest finds it by name


@pytest.fixture
def subprocess_database_url() -> str:
    return database_url_for_subprocess()
