"""The record browser in chromium: filters (htmx, no reload) against the database, a bad value named,
the filter's exports saved and loaded by their consumers, annotators refused; screenshots at 1366 and 390 px.

Data: PRD's Vicuna-80 human votes of gpt4 vs gpt35 (3 votes per question: unanimous and split ones,
ties included; no red-team text) and human votes cast here with rationales."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from annotate.models import Comparison, ComparisonItem, User, Vote
from annotate.services.assignment import next_comparison
from annotate.services.importing import import_file
from annotate.services.voting import VoteInput, record_vote
from tests.e2e.helpers import sign_in
from tests.e2e.live import BrowserTestCase
from tests.factories import make_project, make_user

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1366, "height": 900}
NARROW = {"width": 390, "height": 844}
PRD_PAIR = "answer_gpt4-vs-answer_gpt35-human-reviewer_threeclass.jsonl"


def prd_subset(folder: Path) -> Path:
    """Vicuna-80 questions and answers with one file of human votes (gpt4 vs gpt35)."""
    real = Path(settings.PREFLOOP_DATA_DIR) / "PRD" / "vicuna80"
    if not (real / "ratings-human" / PRD_PAIR).is_file():
        pytest.skip(f"PRD data not found under {real}")
    root = folder / "vicuna80"
    shutil.copytree(real / "prompts", root / "prompts")
    shutil.copytree(real / "generations", root / "generations")
    (root / "ratings-human").mkdir()
    shutil.copy(real / "ratings-human" / PRD_PAIR, root / "ratings-human" / PRD_PAIR)
    return root


def agreement_in_db(project) -> dict[int, str]:
    """Each comparison's agreement, straight from its vote rows (the oracle for the page)."""
    answers: dict[int, dict[str, object]] = {
        c: {} for c in Comparison.objects.filter(project=project).values_list("pk", flat=True)
    }
    for cid, user, external, choice, winner in Vote.objects.filter(comparison__project=project).values_list(
        "comparison_id", "annotator_id", "external_annotator", "choice", "winner_id"
    ):
        answers[cid][f"{user}:{external}"] = winner if choice in ("a", "b") else choice
    return {
        cid: "none" if not by else "single" if len(by) == 1 else "unanimous" if len(set(by.values())) == 1 else "split"
        for cid, by in answers.items()
    }


def texts_in_db(project) -> dict[int, str]:
    texts = {c.pk: c.prompt.text for c in Comparison.objects.filter(project=project).select_related("prompt")}
    for cid, text in ComparisonItem.objects.filter(comparison__project=project).values_list(
        "comparison_id", "completion__text"
    ):
        texts[cid] += "\n" + text
    return texts


class RecordBrowserTests(BrowserTestCase):
    @pytest.fixture(autouse=True)
    def _paths(self, tmp_path):
        self.tmp_path = tmp_path

    def _project(self):
        researcher = make_user("res-records", role=User.Role.RESEARCHER)
        annotator = make_user("ann-records")
        project = make_project(
            name="Vicuna records", annotators=[annotator], researchers=[researcher], overlap_target=4
        )
        import_file(project=project, path=prd_subset(self.tmp_path))
        for i, choice in enumerate(["a", "b", "tie", "a", "b", "a"]):
            assignment = next_comparison(annotator=annotator, project=project).assignment
            record_vote(
                annotator=annotator,
                assignment_id=assignment.pk,
                idempotency_key=f"rb-{i}",
                votes=[
                    VoteInput(
                        choice=choice, rationale=f"Reason {i}: <script>alert(1)</script> the first is more *specific*."
                    )
                ],
            )
        return researcher, annotator, project

    def shown_ids(self, page) -> list[int]:
        cards = page.locator("#records-results [data-comparison]")
        return [int(cards.nth(i).get_attribute("data-comparison")) for i in range(cards.count())]

    def choose(self, page, selector: str, value: str, query: str) -> None:
        """Pick `value`; wait until the results for the whole filter `query` (as the page encodes it) are in."""
        page.select_option(selector, value)
        page.wait_for_function("(q) => document.querySelector('#records-results').dataset.query === q", arg=query)
        if query:
            page.wait_for_url(f"**{query.split('&')[-1]}**")  # the address holds the filter (hx-push-url)

    def test_filters_match_the_database_and_the_filter_exports_as_is(self):
        researcher, _, project = self._project()
        agreement, texts = agreement_in_db(project), texts_in_db(project)
        self.assertTrue({"unanimous", "split", "none"} <= set(agreement.values()))
        page = self.new_page(DESKTOP)
        sign_in(page, self.live_server_url, researcher.username)
        page.goto(f"{self.live_server_url}/projects/{project.pk}/dashboard/")
        page.get_by_role("link", name="Records").click()
        page.wait_for_url(f"**/projects/{project.pk}/records/")
        self.assertEqual(int(page.locator("[data-total]").inner_text()), len(agreement))
        self.assertEqual(self.shown_ids(page), sorted(agreement)[:20])
        page.evaluate("window.__noReload = true")

        self.choose(page, "#r-agreement", "split", "agreement=split")
        split = sorted(c for c, a in agreement.items() if a == "split")
        self.assertEqual(int(page.locator("[data-total]").inner_text()), len(split))
        self.assertEqual(self.shown_ids(page), split[:20])
        self.assertTrue(page.evaluate("window.__noReload"), "the filter swapped the results in, no page load")
        page.screenshot(path=self.artifacts / "screenshots" / "records-desktop.png", full_page=False)
        page.locator("#records-results .record").first.screenshot(
            path=self.artifacts / "screenshots" / "records-record-desktop.png"
        )
        voters = Vote.objects.filter(comparison_id=split[0]).count()  # one aspect: a vote per voter
        self.assertEqual(
            page.locator(".record .eyebrow").first.inner_text().split(" · ")[-1].lower(), f"{voters} voters"
        )

        self.choose(page, "#r-agreement", "unanimous", "agreement=unanimous")
        self.assertEqual(self.shown_ids(page), sorted(c for c, a in agreement.items() if a == "unanimous")[:20])
        self.choose(page, "#r-agreement", "", "")  # cleared
        self.choose(page, "#r-source", "human", "source=human")
        human = sorted(
            set(
                Vote.objects.filter(comparison__project=project, source="human").values_list("comparison_id", flat=True)
            )
        )
        self.assertEqual(self.shown_ids(page), human)
        # Rationales escaped: the script is text; Markdown of the responses rendered.
        self.assertEqual(page.locator("#records-results script").count(), 0)
        self.assertIn("<script>alert(1)</script>", page.locator(".rationale-cell").first.inner_text())

        page.fill("#r-q", "python")
        page.wait_for_url("**q=python**")
        page.wait_for_function(
            "() => document.querySelector('#records-results').dataset.query === 'source=human&q=python'"
        )
        self.assertEqual(self.shown_ids(page), sorted(c for c in human if "python" in texts[c].lower()))
        page.fill("#r-q", "")
        page.wait_for_function("() => !document.querySelector('#records-results').dataset.query.includes('q=')")

        # The filter's downloads: split comparisons only, in the normal export's files.
        self.choose(page, "#r-source", "", "")
        self.choose(page, "#r-agreement", "split", "agreement=split")
        saved = {}
        for label in ("pairs (JSONL)", "datasets folder (zip)", "manifest"):
            with page.expect_download() as started:
                page.locator("#records-results .records-export").get_by_role("link", name=label).click()
            download = started.value
            saved[label] = self.artifacts / "downloads" / download.suggested_filename
            download.save_as(saved[label])
            self.assertTrue(download.suggested_filename.startswith("prefloop-Vicuna-records-records-"))
        manifest = json.loads(saved["manifest"].read_text())
        self.assertEqual(manifest["filters"]["record_filter"], {"agreement": "split"})
        rows = [json.loads(line) for line in saved["pairs (JSONL)"].read_text().splitlines()]
        self.assertTrue(rows)
        self.assertLessEqual({r["comparison_id"] for r in rows}, set(split))
        self.assertTrue(all(r["chosen"] is not None and r["rejected"] is not None for r in rows))
        self.load_with_consumers(saved, split)

        page.set_viewport_size(NARROW)
        self.assertTrue(
            page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        )
        page.screenshot(path=self.artifacts / "screenshots" / "records-narrow.png", full_page=False)
        page.locator("#records-results .record").first.scroll_into_view_if_needed()
        page.screenshot(path=self.artifacts / "screenshots" / "records-narrow-record.png", full_page=False)

    def load_with_consumers(self, saved: dict[str, Path], split: list[int]) -> None:
        import datasets

        from tests.annotate.test_export_trl import dpo_one_step

        # As saved, into trl's DPOTrainer (which truncates; RewardTrainer would drop every long PRD answer
        # at the tiny model's 64 tokens).
        pairs = datasets.load_dataset(
            "json", data_files=str(saved["pairs (JSONL)"]), split="train", cache_dir=str(self.tmp_path / "c-json")
        )
        self.assertEqual(dpo_one_step(pairs, self.tmp_path), 1)
        with zipfile.ZipFile(saved["datasets folder (zip)"]) as archive:
            archive.extractall(self.tmp_path / "hf")
            (root,) = {name.split("/")[0] for name in archive.namelist()}
        data = datasets.load_from_disk(str(self.tmp_path / "hf" / root))
        self.assertLessEqual(set(data["train"]["comparison_id"]) | set(data["ties"]["comparison_id"]), set(split))
        self.assertEqual(data["train"].num_rows + data["ties"].num_rows, len(pairs) + data["ties"].num_rows)

    def test_a_bad_filter_value_is_named_and_annotators_get_404(self):
        researcher, annotator, project = self._project()
        page = self.new_page(NARROW)
        sign_in(page, self.live_server_url, researcher.username)
        response = page.goto(f"{self.live_server_url}/projects/{project.pk}/records/?agreement=mostly&round=1")
        self.assertEqual(response.status, 400)
        self.assertIn(
            "agreement: must be one of unanimous, split, single, none",
            page.locator("#records-results .error").inner_text(),
        )
        other = self.new_page(DESKTOP)
        sign_in(other, self.live_server_url, annotator.username)
        self.assertEqual(other.goto(f"{self.live_server_url}/projects/{project.pk}/records/").status, 404)
