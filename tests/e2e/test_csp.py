"""Every page works under the enforcing Content-Security-Policy: no violation is reported, and the policy really blocks.

`BrowserTestCase.new_page` fails any browser test whose page reports a violation; this module walks
every page of the UI on purpose (sign-in, invitation, queue with a vote, live dashboard, leaderboard,
quality, reward models, members, settings, imports) and checks that an injected inline script is blocked, not merely reported.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotate.models import User, Vote
from prefloop.accounts.services import invite_user
from tests.e2e.helpers import open_queue, sample_project, sign_in, wait_until_prefetched, wait_until_saved
from tests.e2e.live import BrowserTestCase
from tests.factories import make_user

pytestmark = pytest.mark.e2e


class ContentSecurityPolicyTests(BrowserTestCase):
    def test_every_page_works_with_no_csp_violation(self):
        researcher = make_user("res-csp", role=User.Role.RESEARCHER)
        annotator = make_user("ann-csp")
        project = sample_project(annotators=[annotator], researchers=[researcher], name="CSP questions")
        size = {"width": 1280, "height": 800}

        voter = self.new_page(size)
        sign_in(voter, self.live_server_url, annotator.username)
        open_queue(voter, project)  # markdown with a right-aligned table, code, the prefetch module
        wait_until_prefetched(voter)
        voter.keyboard.press("1")
        voter.keyboard.press("Enter")
        wait_until_saved(voter)
        self.assertEqual(Vote.objects.filter(annotator=annotator).count(), 1)
        self.assertEqual(voter.csp_violations, [])

        page = self.new_page(size)
        sign_in(page, self.live_server_url, researcher.username)
        page.goto(f"{self.live_server_url}/projects/{project.pk}/dashboard/")
        expect(page.locator("#live-state")).to_have_attribute("data-state", "live")  # htmx + websocket allowed
        # The progress bar is drawn without style=: an SVG rect with a width attribute (one vote so far).
        # (Polled: the live region may be swapped by a websocket refresh while it is measured.)
        page.wait_for_function(
            "() => { const r = document.querySelector('.meter-fill rect');"
            " return r !== null && Number(r.getAttribute('width')) > 0 && r.getBoundingClientRect().width > 0; }",
            timeout=10000,
        )
        for path in ("leaderboard", "quality", "reward-models", "members", "settings", "imports", "records"):
            page.goto(f"{self.live_server_url}/projects/{project.pk}/{path}/")
            # The page's stylesheet applied: the topbar is a flex row, not unstyled blocks.
            self.assertEqual(page.locator("header.topbar").evaluate("e => getComputedStyle(e).display"), "flex")
        self.assertEqual(page.csp_violations, [])

    def test_the_invitation_page_works_with_no_csp_violation(self):
        invitation = invite_user(username="invited-csp", role=User.Role.ANNOTATOR)
        page = self.new_page({"width": 1000, "height": 700})
        page.goto(f"{self.live_server_url}{invitation.path}")
        page.get_by_label("New password", exact=True).fill("a long passphrase for the e2e test")
        page.get_by_label("New password again").fill("a long passphrase for the e2e test")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{self.live_server_url}/login/")
        expect(page.get_by_role("status")).to_contain_text("Your password is set")

    def test_an_injected_inline_script_and_style_are_blocked_and_reported(self):
        page = self.new_page({"width": 1000, "height": 700}, fail_on_csp_violations=False)
        page.goto(f"{self.live_server_url}/login/")
        page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.__inlineRan = true";
                document.body.append(script);
                document.body.insertAdjacentHTML("beforeend", '<p id="styled" style="color: rgb(255, 0, 0)">x</p>');
            }"""
        )
        self.assertIsNone(page.evaluate("() => window.__inlineRan"), "the inline script did not run")
        self.assertNotEqual(page.locator("#styled").evaluate("e => getComputedStyle(e).color"), "rgb(255, 0, 0)")
        for _ in range(50):  # the reports arrive asynchronously
            if len(page.csp_violations) >= 2:
                break
            page.wait_for_timeout(50)
        self.assertTrue(any(v.startswith("script-src") for v in page.csp_violations), page.csp_violations)
        self.assertTrue(any(v.startswith("style-src") for v in page.csp_violations), page.csp_violations)
