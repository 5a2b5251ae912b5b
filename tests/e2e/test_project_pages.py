"""Creating a project and managing its members in chromium, checked in the database; screenshots at 1366 and 390 px."""
from __future__ import annotations

import pytest

from annotate.models import Membership, Project, User
from tests.e2e.helpers import sign_in
from tests.e2e.live import BrowserTestCase
from tests.factories import make_user

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1366, "height": 900}
NARROW = {"width": 390, "height": 844}


class ProjectPagesTests(BrowserTestCase):
    def test_create_a_project_then_invite_and_pause_an_annotator(self):
        researcher = make_user("res-ui", role=User.Role.RESEARCHER)
        page = self.new_page(DESKTOP)
        sign_in(page, self.live_server_url, researcher.username)
        page.get_by_role("link", name="New project").click()
        page.get_by_label("Name").fill("Capitals")
        page.get_by_label("Votes per comparison (overlap)").fill("0")
        page.get_by_role("button", name="Create project").click()
        self.assertIn("greater than or equal to 1", page.locator("#e-overlap_target").inner_text())
        self.assertFalse(Project.objects.exists(), "nothing written for a bad form")
        page.screenshot(path=self.artifacts / "screenshots" / "project-new-error-desktop.png", full_page=True)
        page.get_by_label("Votes per comparison (overlap)").fill("2")
        page.get_by_label("Aspects").fill("correctness, clarity")
        page.get_by_role("button", name="Create project").click()
        page.wait_for_url("**/members/")
        project = Project.objects.get(name="Capitals")
        self.assertEqual((project.overlap_target, project.aspects), (2, ["correctness", "clarity"]))

        page.get_by_label("User name").fill("ann-invited")
        page.get_by_label("Cap (blank: the project's)").fill("7")
        page.get_by_role("button", name="Invite new user (one-time link)").click()
        link = page.locator("#invite-link").input_value()
        self.assertIn("/accounts/set-password/", link)
        invited = User.objects.get(username="ann-invited")
        self.assertEqual(Membership.objects.get(project=project, user=invited).cap, 7)
        page.goto(f"{self.live_server_url}/projects/{project.pk}/members/")
        row = page.locator('[data-member="ann-invited"]')
        row.get_by_role("button", name="Pause").click()
        page.wait_for_selector('[data-member="ann-invited"] .state-paused')
        self.assertTrue(Membership.objects.get(project=project, user=invited).paused)
        page.screenshot(path=self.artifacts / "screenshots" / "project-members-desktop.png", full_page=True)

        phone = self.new_page(NARROW)
        sign_in(phone, self.live_server_url, researcher.username)
        for name, path in (("members", "members"), ("settings", "settings")):
            phone.goto(f"{self.live_server_url}/projects/{project.pk}/{path}/")
            self.assertTrue(phone.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), name)
            phone.screenshot(path=self.artifacts / "screenshots" / f"project-{name}-narrow.png", full_page=True)
        page.goto(f"{self.live_server_url}/projects/{project.pk}/settings/")
        page.screenshot(path=self.artifacts / "screenshots" / "project-settings-desktop.png", full_page=True)
