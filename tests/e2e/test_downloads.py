"""Every download link of the researcher's pages saves a file under its own name and never renders as a page.

A rationale holding `<meta http-equiv=refresh content=0;url=...>` and an `<img onerror>` would navigate
or run if an export were served as HTML (it was: `text/html`, no Content-Disposition, saved as
`download.html`). Each link is opened in a tab of its own: the browser must start a download, the tab
must stay blank, and the meta-refresh target must never be requested. The saved files then go to
their consumers: the hf zip, unzipped, into `datasets.load_from_disk`; the pairs files, unchanged,
into trl's RewardTrainer and DPOTrainer for one step (tiny models built in code).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from annotate.models import User, Vote
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from tests.e2e.helpers import sample_project, sign_in
from tests.e2e.live import BrowserTestCase
from tests.factories import make_user

pytestmark = pytest.mark.e2e

TRAP = "/navigated-by-meta-refresh/"


def hostile_rationale(base_url: str) -> str:
    return f"<meta http-equiv=refresh content=0;url={base_url}{TRAP}><img src={base_url}{TRAP}img onerror=alert(1)>"


def vote_with(annotator, project, choices, rationale: str) -> None:
    for choice in choices:
        assignment = next_comparison(annotator=annotator, project=project).assignment
        record_vote(
            annotator=annotator,
            assignment_id=assignment.pk,
            idempotency_key=f"dl-{assignment.pk}",
            votes=[VoteInput(choice=choice, rationale=rationale)],
        )


def looks_like(suggested: str, data: bytes) -> None:
    """The saved bytes are the format the name says, not an HTML page."""
    assert not data.lstrip().lower().startswith((b"<!doctype", b"<html")), suggested
    if suggested.endswith(".manifest.json"):
        assert json.loads(data)["schema_version"] == "prefloop.preference/1"
    elif suggested.endswith(".jsonl"):
        assert all(json.loads(line)["schema_version"].startswith("prefloop.") for line in data.decode().splitlines())
    elif suggested.endswith(".parquet"):
        assert data[:4] == data[-4:] == b"PAR1"
    elif suggested.endswith(".zip"):
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        assert any(n.endswith("/README.md") for n in names) and any(n.endswith("dataset_dict.json") for n in names)
    elif suggested.endswith(".csv"):
        assert data.startswith(b"schema_version,pair_id,")
    else:
        raise AssertionError(f"unexpected download {suggested}")


def open_in_tab(test, context, url: str):
    """Open `url` in a new tab; the browser must turn it into a download (never a page). Returns the download."""
    tab = context.new_page()
    with tab.expect_download(timeout=15000) as started:
        try:
            tab.goto(url)
        except PlaywrightError as error:  # a navigation that turns into a download "fails"
            test.assertIn("Download is starting", str(error))
    download = started.value
    test.assertIsNone(download.failure())
    tab.wait_for_timeout(300)  # a meta refresh with content=0 would have fired by now
    test.assertEqual(tab.url, "about:blank", f"{url} rendered as a page")
    test.assertEqual(tab.locator("meta, img").count(), 0)
    tab.close()
    return download


class DownloadTests(BrowserTestCase):
    @pytest.fixture(autouse=True)
    def _tiny_models(self, tiny_model_dir, tmp_path):
        self.tiny_model_dir, self.tmp_path = tiny_model_dir, tmp_path

    def test_every_download_link_opened_in_a_tab_saves_a_named_file_and_never_renders(self):
        researcher = make_user("res-dl", role=User.Role.RESEARCHER)
        annotator = make_user("ann-dl")
        project = sample_project(
            annotators=[annotator], researchers=[researcher], name='Downloads <b>"x"</b>', overlap_target=1
        )
        vote_with(annotator, project, ["a", "b", "tie", "both_bad", "a"], hostile_rationale(self.live_server_url))
        snapshot = Vote.objects.latest("id").id

        page = self.new_page({"width": 1366, "height": 900})
        requested: list[str] = []
        page.context.on("request", lambda request: requested.append(request.url))
        sign_in(page, self.live_server_url, researcher.username)
        page.goto(f"{self.live_server_url}/projects/{project.pk}/dashboard/")
        links = page.locator("a[data-download]")
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
        self.assertGreaterEqual(len(hrefs), 7)

        saved = {}
        for href in hrefs:
            download = open_in_tab(self, page.context, f"{self.live_server_url}{href}")
            suggested = download.suggested_filename
            self.assertRegex(suggested, rf"^prefloop-Downloads-b-x-b-[a-z]+-s{snapshot}\.[a-z.]+$")
            path = self.artifacts / "downloads" / suggested
            download.save_as(path)
            looks_like(suggested, path.read_bytes())
            saved[href] = suggested

        by_kind = {
            re.sub(r"^prefloop-Downloads-b-x-b-|-s\d+", "", name): self.artifacts / "downloads" / name
            for name in saved.values()
        }
        self.assertEqual(
            set(by_kind),
            {
                "preferences.jsonl",
                "preferences.parquet",
                "preferences.hf.zip",
                "ties.jsonl",
                "preferences.csv",
                "votes.jsonl",
                "preferences.jsonl.manifest.json",
            },
        )
        self.assertEqual([url for url in requested if TRAP in url], [], "the meta refresh or the image ran")
        # The hostile text is in the files, as data.
        ties = (self.artifacts / "downloads" / saved[next(h for h in hrefs if "part=ties" in h)]).read_text()
        self.assertIn("http-equiv=refresh", ties)
        self.load_with_their_consumers(by_kind)

    def load_with_their_consumers(self, files: dict[str, Path]) -> None:
        """The saved files as their consumers take them: the hf zip unzipped into datasets.load_from_disk,
        the pairs files (JSONL, Parquet) unchanged into trl's RewardTrainer and DPOTrainer for one step."""
        import datasets

        from tests.annotate.test_export_trl import dpo_one_step, reward_one_step

        with zipfile.ZipFile(files["preferences.hf.zip"]) as archive:
            archive.extractall(self.tmp_path / "hf")
            (root,) = {name.split("/")[0] for name in archive.namelist()}
        data = datasets.load_from_disk(str(self.tmp_path / "hf" / root))
        self.assertEqual((data["train"].num_rows, data["ties"].num_rows), (3, 2))
        pairs = datasets.load_dataset(
            "json", data_files=str(files["preferences.jsonl"]), split="train", cache_dir=str(self.tmp_path / "c-json")
        )
        self.assertEqual(reward_one_step(pairs, self.tiny_model_dir, self.tmp_path), 1)
        pairs = datasets.load_dataset(
            "parquet",
            data_files=str(files["preferences.parquet"]),
            split="train",
            cache_dir=str(self.tmp_path / "c-parquet"),
        )
        self.assertEqual(dpo_one_step(pairs, self.tmp_path), 1)

    def test_a_download_link_clicked_in_the_page_saves_the_file_and_the_page_stays(self):
        researcher = make_user("res-dl2", role=User.Role.RESEARCHER)
        annotator = make_user("ann-dl2")
        project = sample_project(annotators=[annotator], researchers=[researcher], name="Clicked", overlap_target=1)
        vote_with(annotator, project, ["a", "tie"], hostile_rationale(self.live_server_url))
        page = self.new_page({"width": 1366, "height": 900})
        sign_in(page, self.live_server_url, researcher.username)
        dashboard = f"{self.live_server_url}/projects/{project.pk}/dashboard/"
        page.goto(dashboard)
        with page.expect_download() as started:
            page.get_by_role("link", name="pairs (JSONL)").click()
        self.assertRegex(started.value.suggested_filename, r"^prefloop-Clicked-preferences-s\d+\.jsonl$")
        rows = [json.loads(line) for line in open(started.value.path(), encoding="utf-8")]
        self.assertEqual(len(rows), 1)  # the tie went to the ties file
        self.assertIn(rows[0]["label"], ("a", "b"))
        self.assertEqual(page.url, dashboard)

    def test_model_and_chart_links_of_the_reward_and_loop_pages_save_files(self):
        from rewards.models import RewardModel
        from training.models import Loop, Policy, Round

        researcher = make_user("res-dl3", role=User.Role.RESEARCHER)
        project = sample_project(researchers=[researcher], name="Models")
        folder = Path(tempfile.mkdtemp(prefix="prefloop-e2e-model-"))
        self.addCleanup(shutil.rmtree, folder, True)
        (folder / "config.json").write_text("{}")
        curves = {"train": [{"step": i, "loss": 1 / (i + 1), "accuracy": 0.6} for i in range(5)], "eval": []}
        RewardModel.objects.create(
            project=project, version=1, base_model="tiny", status="ready", artifact_path=str(folder), curves=curves
        )
        policy = Policy.objects.create(
            project=project, version=1, method="base", status="ready", artifact_path=str(folder)
        )
        Loop.objects.create(project=project, reference=policy, current=policy)
        Round.objects.create(
            project=project,
            number=1,
            method="dpo",
            state="done",
            policy=policy,
            metrics={"eval": {"mean_reward": 0.2, "kl_to_reference": 0.1, "mean_length_tokens": 9.0}},
        )
        page = self.new_page({"width": 1366, "height": 900})
        sign_in(page, self.live_server_url, researcher.username)
        names = []
        for path in ("reward-models", "loop"):
            page.goto(f"{self.live_server_url}/projects/{project.pk}/{path}/")
            links = page.locator('a[data-download]:not([href^="/api/"])')  # the export links are the first test's
            for href in {links.nth(i).get_attribute("href") for i in range(links.count())}:
                download = open_in_tab(self, page.context, f"{self.live_server_url}{href}")
                data = Path(download.path()).read_bytes()
                suggested = download.suggested_filename
                self.assertTrue(
                    data.startswith(b"PK") if suggested.endswith(".zip") else b"<svg" in data[:200], suggested
                )
                names.append(suggested)
        self.assertEqual(
            sorted(names),
            [
                "prefloop-Models-loop-length-r1.svg",
                "prefloop-Models-loop-reward-kl-r1.svg",
                "prefloop-Models-loop-reward-r1.svg",
                "prefloop-Models-loop-win-rate-r1.svg",
                "prefloop-Models-policy-v1.zip",
                "prefloop-Models-reward-model-v1-accuracy.svg",
                "prefloop-Models-reward-model-v1-loss.svg",
                "prefloop-Models-reward-model-v1.zip",
            ],
        )
