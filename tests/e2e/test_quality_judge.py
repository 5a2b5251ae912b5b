"""The Quality tab's judge section in chromium: agreement figures with intervals; screenshots at 1366 and 390 px."""

from __future__ import annotations

import pytest

from annotate.models import User
from tests.e2e.helpers import sign_in
from tests.e2e.live import BrowserTestCase
from tests.factories import make_comparisons, make_project, make_user
from tests.judging.helpers import human_vote, judge_verdict
from training.models import Policy

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1366, "height": 900}
NARROW = {"width": 390, "height": 844}
# (judge verdict, order letters, consistent, two people's labels, category)
CASES = [
    ("first", "AB", True, ("first", "first"), "math"),
    ("second", "BA", True, ("first", "second"), "math"),
    ("tie", "AA", False, ("tie", "first"), "chat"),
    ("first", "AB", True, ("second", "second"), "chat"),
] * 3


class QualityJudgeTests(BrowserTestCase):
    def test_quality_tab_shows_judge_agreement(self):
        researcher = make_user("res-judge", role=User.Role.RESEARCHER)
        people = [make_user(), make_user()]
        project = make_project(name="Judge agreement", researchers=[researcher], annotators=people)
        judge = Policy.objects.create(
            project=project, version=1, method="base", status="ready", artifact_path="/m", name="judge"
        )
        for comparison, (verdict, picks, consistent, labels, category) in zip(
            make_comparisons(project, len(CASES)), CASES
        ):
            comparison.prompt.category = category
            comparison.prompt.save()
            judge_verdict(comparison, judge, verdict, picks, consistent=consistent)
            for person, label in zip(people, labels):
                human_vote(comparison, person, label)
        for name, viewport in (("desktop", DESKTOP), ("narrow", NARROW)):
            page = self.new_page(viewport)
            sign_in(page, self.live_server_url, researcher.username)
            page.goto(f"{self.live_server_url}/projects/{project.pk}/quality/")
            table = page.locator("table.judge-agreement")
            table.scroll_into_view_if_needed()
            first_row = table.locator("tbody tr").first
            self.assertIn("0.500", first_row.inner_text())  # 12 of 24 judge–human pairs agree
            self.assertIn("(12/24)", first_row.inner_text())
            self.assertIn("(15/24)", first_row.inner_text())  # position bias: 15 of 24 picks went to the first shown
            page.locator("#judge details").evaluate("d => d.open = true")
            page.locator("#judge").screenshot(path=self.artifacts / "screenshots" / f"quality-judge-{name}.png")
            page.screenshot(path=self.artifacts / "screenshots" / f"quality-judge-{name}-page.png", full_page=True)
