"""Webhook tests: 127.0.0.1 is an allowed target here (and only it: ::1 and the rest stay refused)."""

from __future__ import annotations

import pytest

from tests.webhooks.receiver import Receiver


@pytest.fixture(autouse=True)
def webhook_settings(settings, tmp_path):
    settings.PREFLOOP_WEBHOOK_ALLOWED_HOSTS = ["*"]
    settings.PREFLOOP_WEBHOOK_ALLOWED_CIDRS = ["127.0.0.1/32"]
    settings.PREFLOOP_WEBHOOK_TIMEOUT = 5
    settings.PREFLOOP_JOB_BACKEND = "immediate"
    settings.PREFLOOP_JOB_DIR = tmp_path / "jobs"
    return settings


@pytest.fixture
def receiver():
    """receiver(script=None, delay=0, tls=None) → a started Receiver; all are stopped at teardown."""
    started: list[Receiver] = []

    def start(script=None, *, delay: float = 0.0, tls=None) -> Receiver:
        r = Receiver(script, delay=delay, tls=tls)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()
