"""The live server of the browser tests: Channels' daphne process, set up like the test process."""

from __future__ import annotations

import pytest
from channels.testing import ChannelsLiveServerTestCase
from daphne.testing import DaphneProcess
from django.db import connections

FAST_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",  # what tests/conftest.py uses for test users
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]


def _server_setup():
    """Runs in the forked server process: the test database, and the test process's fast hasher."""
    from django.conf import settings
    from django.contrib.auth.hashers import get_hashers, get_hashers_by_algorithm

    # No channels.testing.live.set_database_connection(): the fork inherits settings that already
    # name the test database, and that helper prefixes "test_" once more (test_test_test without xdist).
    settings.PASSWORD_HASHERS = FAST_HASHERS
    get_hashers.cache_clear()
    get_hashers_by_algorithm.cache_clear()


class _ServerProcess(DaphneProcess):
    def __init__(self, host, get_application, kwargs=None, setup=None, teardown=None, port=None):
        super().__init__(host, get_application, kwargs, setup=_server_setup, teardown=teardown, port=port)

    def start(self):
        # Fork with no database connection open. SQLite keeps per-process state about open files
        # (locks, the WAL index mapping); a child that inherits it can keep reading a WAL index the
        # parent has since replaced, and so miss rows the test wrote (seen: a user "not found").
        connections.close_all()
        super().start()


class BrowserTestCase(ChannelsLiveServerTestCase):
    """A daphne live server (HTTP and websockets) per class, and Playwright's browser per test."""

    ProtocolServerProcess = _ServerProcess

    @pytest.fixture(autouse=True)
    def _browser(self, browser, artifacts_dir):
        self.browser = browser
        self.artifacts = artifacts_dir

    def new_page(
        self, viewport, *, fail_on_js_errors: bool = True, fail_on_csp_violations: bool = True, **context_options
    ):
        context = self.browser.new_context(viewport=viewport, **context_options)
        self.addCleanup(context.close)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        if fail_on_js_errors:
            self.addCleanup(lambda: self.assertEqual(errors, [], "JavaScript errors on the page"))
        # Everything the Content-Security-Policy blocked (prefloop/security.py): an inline script or
        # style, an eval, a connection elsewhere. A page that needs one is broken in production.
        page.csp_violations = violations = []
        page.add_init_script(CSP_LISTENER)
        page.on(
            "console", lambda message: "Content Security Policy" in message.text and violations.append(message.text)
        )
        page.expose_function("__prefloopCspViolation", lambda text: violations.append(text))
        if fail_on_csp_violations:
            self.addCleanup(lambda: self.assertEqual(violations, [], "Content-Security-Policy violations on the page"))
        return page


# Runs before the page's own scripts (and outside the CSP): reports each violation to the test.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__prefloopCspViolation(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"} at ${event.sourceFile}:${event.lineNumber}`);
});
"""
