"""The researcher's dashboard updates over the websocket when another annotator votes; no reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotate.models import User, Vote
from tests.e2e.helpers import on_screen, open_queue, sample_project, sign_in, wait_until_prefetched, wait_until_saved
from tests.e2e.live import BrowserTestCase
from tests.factories import make_user

pytestmark = pytest.mark.e2e


class DashboardLiveTests(BrowserTestCase):
    def test_researchers_progress_count_updates_live_after_another_annotator_votes(self):
        researcher = make_user("res-live", role=User.Role.RESEARCHER)
        annotator, other = make_user("ann-live"), make_user("ann-idle")
        project = sample_project(annotators=[annotator, other], researchers=[researcher], name="Sample questions")

        dashboard = self.new_page({"width": 1280, "height": 800})
        sign_in(dashboard, self.live_server_url, researcher.username)
        dashboard.goto(f"{self.live_server_url}/projects/{project.pk}/dashboard/")
        expect(dashboard.locator("#live-state")).to_have_attribute("data-state", "live")
        expect(dashboard.locator("#votes-done")).to_have_text("0")
        dashboard.evaluate("() => { window.__sameDocument = true; }")

        voter = self.new_page({"width": 1280, "height": 800})
        sign_in(voter, self.live_server_url, annotator.username)
        open_queue(voter, project)
        for key in ("1", "2"):
            wait_until_prefetched(voter)
            voter.keyboard.press(key)
            voter.keyboard.press("Enter")
        wait_until_saved(voter)
        self.assertEqual(Vote.objects.filter(annotator=annotator).count(), 2)

        expect(dashboard.locator("#votes-done")).to_have_text("2", timeout=5000)
        expect(dashboard.locator('tr[data-annotator="ann-live"] .votes')).to_have_text("2")
        self.assertTrue(dashboard.evaluate("() => window.__sameDocument === true"), "updated without a reload")
        self.assertGreaterEqual(int(dashboard.evaluate("() => document.documentElement.dataset.liveUpdates")), 2)
        self.assertTrue(on_screen(voter))
        dashboard.screenshot(path=self.artifacts / "screenshots" / "dashboard.png", full_page=True)

    def test_annotator_cannot_open_the_progress_socket(self):
        annotator = make_user("ann-snoop")
        project = sample_project(annotators=[annotator], name="Sample questions")
        page = self.new_page({"width": 1000, "height": 700})
        sign_in(page, self.live_server_url, annotator.username)
        outcome = page.evaluate(
            """(url) => new Promise((resolve) => {
                const socket = new WebSocket(url);
                socket.onmessage = () => resolve("message");
                socket.onclose = () => resolve("closed");
                setTimeout(() => resolve("timeout"), 4000);
            })""",
            f"{self.live_server_ws_url}/ws/projects/{project.pk}/progress/",
        )
        self.assertEqual(outcome, "closed")
