import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_lockout_counters():
    # The lockout lives in the (process-local, in tests) cache; no test sees another's failures.
    cache.clear()
    yield
    cache.clear()
