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
        for name, path in (("members", "members"), ("settings", "settings"), ("new", "new")):
            phone.goto(
                f"{self.live_server_url}/projects/new/"
                if path == "new"
                else f"{self.live_server_url}/projects/{project.pk}/{path}/"
            )
            self.assertTrue(phone.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), name)
            phone.screenshot(path=self.artifacts / "screenshots" / f"project-{name}-narrow.png", full_page=True)
        page.goto(f"{self.live_server_url}/projects/{project.pk}/settings/")
        page.screenshot(path=self.artifacts / "screenshots" / "project-settings-desktop.png", full_page=True)


PAIRS = [
    {
        "prompt": "What is the capital of **France**?",
        "response_a": "Paris.",
        "response_b": "Lyon.",
        "model_a": "m1",
        "model_b": "m2",
        "winner": "a",
    },
    {"prompt": "What is 7 × 6?", "response_a": "42", "response_b": "36", "model_a": "m1", "model_b": "m2"},
    {
        "prompt": "Name a prime above 10.",
        "response_a": "11",
        "response_b": "12",
        "model_a": "m1",
        "model_b": "m2",
        "winner": "a",
    },
]


def _jsonl(rows, *, bad_line=None) -> bytes:
    import json

    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    if bad_line:
        lines.insert(bad_line - 1, '{"prompt": "cut off", "response_a": ')
    return ("\n".join(lines) + "\n").encode()


class ImportPageTests(BrowserTestCase):
    def test_a_bad_upload_writes_nothing_then_a_fixed_one_is_previewed_confirmed_and_undone(self):
        from annotate.models import Comparison, DataImport, Prompt, Vote
        from tests.factories import make_project

        researcher = make_user("res-import", role=User.Role.RESEARCHER)
        project = make_project(researchers=[researcher], name="Imports")
        page = self.new_page(DESKTOP)
        sign_in(page, self.live_server_url, researcher.username)
        page.goto(f"{self.live_server_url}/projects/{project.pk}/imports/")

        page.set_input_files(
            "#i-file",
            files=[{"name": "pairs.jsonl", "mimeType": "application/jsonl", "buffer": _jsonl(PAIRS, bad_line=2)}],
        )
        page.get_by_role("button", name="Check and preview").click()
        problems = page.locator(".problem-list li").all_inner_texts()
        self.assertTrue(problems and all("pairs.jsonl:2" in p for p in problems), problems)
        self.assertEqual(Prompt.objects.count(), 0, "nothing written")
        page.screenshot(path=self.artifacts / "screenshots" / "import-error-desktop.png", full_page=True)

        page.set_input_files(
            "#i-file", files=[{"name": "pairs.jsonl", "mimeType": "application/jsonl", "buffer": _jsonl(PAIRS)}]
        )
        page.get_by_role("button", name="Check and preview").click()
        self.assertEqual(page.locator('[data-count="comparisons"]').inner_text(), "3")
        self.assertEqual(page.locator('[data-count="votes"]').inner_text(), "2")
        self.assertEqual(
            page.locator(".preview-prompt strong").first.inner_text(), "France", "first rows rendered as Markdown"
        )
        self.assertEqual(Prompt.objects.count(), 0, "the preview writes nothing")
        page.screenshot(path=self.artifacts / "screenshots" / "import-preview-desktop.png", full_page=True)
        narrow = self.new_page(NARROW)
        sign_in(narrow, self.live_server_url, researcher.username)
        narrow.goto(f"{self.live_server_url}/projects/{project.pk}/imports/")
        narrow.set_input_files(
            "#i-file", files=[{"name": "pairs.jsonl", "mimeType": "application/jsonl", "buffer": _jsonl(PAIRS)}]
        )
        narrow.get_by_role("button", name="Check and preview").click()
        narrow.wait_for_selector(".import-preview")
        self.assertTrue(narrow.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))
        self.assertTrue(
            narrow.evaluate(
                "() => { const t = document.querySelector('.preview-counts'); return t.scrollWidth <= t.parentElement.clientWidth; }"
            ),
            "the preview's counts fit the phone without a sideways scroll",
        )
        narrow.screenshot(path=self.artifacts / "screenshots" / "import-preview-narrow.png", full_page=True)
        narrow.get_by_role("button", name="Discard").click()
        narrow.wait_for_selector("text=nothing was written")

        page.get_by_role("button", name="Confirm import").click()
        page.wait_for_selector(".imports-table [data-import]")
        self.assertEqual((Prompt.objects.count(), Comparison.objects.count(), Vote.objects.count()), (3, 3, 2))
        record = DataImport.objects.get()
        self.assertEqual(page.locator(f'[data-import="{record.pk}"] td.num').all_inner_texts(), ["3", "3", "2"])
        page.locator(f'[data-import="{record.pk}"]').get_by_role("button", name="Undo").click()
        page.wait_for_selector(f'[data-import="{record.pk}"]:has-text("undone")')
        self.assertEqual((Prompt.objects.count(), Comparison.objects.count(), Vote.objects.count()), (0, 0, 0))
        page.screenshot(path=self.artifacts / "screenshots" / "imports-desktop.png", full_page=True)
        narrow.goto(f"{self.live_server_url}/projects/{project.pk}/imports/")
        self.assertTrue(narrow.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))
        narrow.screenshot(path=self.artifacts / "screenshots" / "imports-narrow.png", full_page=True)
