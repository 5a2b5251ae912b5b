"""A researcher starts a round from the Loop tab and watches it move on without reloading."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from django.test import override_settings
from playwright.sync_api import expect

from annotate.models import Comparison, Completion, User
from tests.e2e.helpers import sample_project, sign_in
from tests.e2e.live import BrowserTestCase
from tests.factories import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS = Path(tempfile.mkdtemp(prefix="prefloop-e2e-models-"))


def tiny_policy(folder: Path) -> Path:
    """A few SFT steps of the demo policy: enough to sample from, seconds to build."""
    if not (folder / "config.json").exists():
        import json

        from annotate.management.commands.demo import SAMPLE
        from training.ml.config import DemoPolicyConfig
        from training.ml.policy import build_demo_policy

        texts = [
            (row["prompt"], c["text"])
            for row in map(json.loads, SAMPLE.read_text().splitlines())
            for c in row["completions"]
        ]
        shutil.rmtree(folder, ignore_errors=True)
        build_demo_policy(
            texts,
            folder,
            config=DemoPolicyConfig(
                n_layer=1, n_embd=32, n_head=2, max_length=64, steps=5, batch_size=4, warmup_steps=1
            ),
        )
    return folder


# Settings overridden for the class are in place when the live server process forks.
@override_settings(PREFLOOP_JOB_BACKEND="db", PREFLOOP_MODEL_ROOTS=[MODELS], PREFLOOP_POLICY_DIR=MODELS / "policies")
class LoopPageTests(BrowserTestCase):
    def test_researcher_starts_a_round_and_sees_it_reach_labeling_live(self):
        from prefloop.jobs.services import run_job
        from training.models import Round
        from training.policies import register_base_policy

        researcher = make_user("res-loop", role=User.Role.RESEARCHER)
        project = sample_project(researchers=[researcher], name="Loop questions")
        register_base_policy(project=project, model_path=str(tiny_policy(MODELS / "tiny")), name="tiny SFT")

        page = self.new_page({"width": 1280, "height": 900})
        sign_in(page, self.live_server_url, researcher.username)
        page.goto(f"{self.live_server_url}/projects/{project.pk}/loop/")
        expect(page.get_by_role("link", name="Loop", exact=True)).to_have_attribute("aria-current", "page")
        page.get_by_label("Update", exact=True).select_option("dpo")
        page.get_by_label("Prompts", exact=True).fill("3")
        page.get_by_label("K per prompt", exact=True).fill("2")
        page.get_by_label("Max new tokens", exact=True).fill("8")
        page.get_by_role("button", name="Start round").click()
        expect(page.locator(".loop-messages")).to_contain_text("Round 1 started")
        status = page.locator("#loop-status .live-step")
        expect(status).to_have_attribute("data-step", "sampling")
        page.evaluate("() => { window.__sameDocument = true; }")

        # The worker's part, here in the test process: the page notices by itself.
        round_ = Round.objects.get(project=project)
        run_job(round_.job_id, worker="e2e")
        expect(page.locator("#loop-status .live-step")).to_have_attribute("data-step", "labeling", timeout=10000)
        self.assertTrue(page.evaluate("() => window.__sameDocument === true"), "updated without a reload")
        round_.refresh_from_db()
        self.assertEqual(round_.state, "labeling")
        self.assertEqual(Completion.objects.filter(prompt__project=project, round=1).count(), 3 * 2)
        self.assertGreater(Comparison.objects.filter(project=project, round=1).count(), 0)
        expect(page.locator("#loop-status")).to_contain_text("human votes")
        expect(page.locator("#loop-history tbody tr").first).to_contain_text("labeling")
        page.screenshot(path=self.artifacts / "screenshots" / "loop.png", full_page=True)

        page.get_by_role("button", name="Stop round").click()
        expect(page.locator(".loop-messages")).to_contain_text("Round 1 cancelled")
        round_.refresh_from_db()
        self.assertEqual(round_.state, "cancelled")
