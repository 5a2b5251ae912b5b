"""Stored XSS: hostile text in every field that reaches a page runs nothing in a real browser.

Payloads sit in project name and instructions, prompts, responses, rationales, user names, model
names and provenance, reward-model names, notes and errors, job messages and errors, and policy
names; each page that shows them is opened in chromium and must leave `window.__xss` unset, open
no dialog and show template syntax (`{{7*7}}`, `{% debug %}`) literally. A static check holds every
`mark_safe`/`|safe` to an allow-list of sanitised outputs and user JSON to `json_script`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from annotate.models import Completion, User
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from tests.e2e.helpers import PASSWORD
from tests.e2e.live import BrowserTestCase
from tests.factories import make_comparisons, make_project, make_user

REPO = Path(__file__).resolve().parents[2]

PAYLOAD = (
    "{{7*7}} {% debug %} ${7*7} #{7*7} "
    "<script>window.__xss='script'</script>"
    "<img src=x onerror=\"window.__xss='img'\">"
    "<svg onload=\"window.__xss='svg'\"></svg>"
    "\"><script>window.__xss='attr'</script>"
    "'><img src=x onerror=alert(1)>"
    "[link](javascript:window.__xss='js') <a href=\"javascript:window.__xss='a'\">a</a>"
)
SHORT = "<img src=x onerror=window.__xss=1>{{7*7}}"  # fields with short limits (user and model names)
DESKTOP = {"width": 1366, "height": 900}


def hostile_project():
    researcher = make_user("xss-researcher", role=User.Role.RESEARCHER)
    annotator = make_user(f"ann{SHORT}"[:150])
    project = make_project(
        name=f"Project {PAYLOAD}"[:200],
        instructions=PAYLOAD,
        researchers=[researcher],
        annotators=[annotator],
        overlap_target=1,
    )
    comparisons = make_comparisons(project, 3, models=(f"m1{SHORT}"[:100], f"m2{SHORT}"[:100]))
    for comparison in comparisons:
        comparison.prompt.text = PAYLOAD
        comparison.prompt.save()
        Completion.objects.filter(prompt=comparison.prompt).update(text=PAYLOAD, metadata={"provenance": PAYLOAD})
    for _ in range(2):  # votes with hostile rationales: they feed the dashboard, leaderboard and quality pages
        assignment = next_comparison(annotator=annotator, project=project).assignment
        record_vote(
            annotator=annotator,
            assignment_id=assignment.pk,
            votes=[VoteInput(aspect="overall", choice="a", rationale=PAYLOAD)],
            idempotency_key=f"xss-{assignment.pk}",
        )
    from prefloop.jobs.models import Job
    from rewards.models import RewardModel

    job = Job.objects.create(
        kind="selftest.sleep",
        project=project,
        created_by=researcher,
        status=Job.Status.FAILED,
        message=PAYLOAD[:300],
        error=PAYLOAD,
        log_tail=PAYLOAD,
    )
    RewardModel.objects.create(
        project=project,
        version=1,
        base_model=PAYLOAD[:300],
        status=RewardModel.Status.FAILED,
        error=PAYLOAD,
        job_id=job.pk,
        options={"note": PAYLOAD},
        trigger=PAYLOAD[:30],
        metrics={"accuracy_by_category": {PAYLOAD: {"accuracy": 0.5}}},
    )
    from training.models import Policy

    Policy.objects.create(
        project=project,
        version=1,
        name=PAYLOAD[:200],
        method=Policy.Method.BASE,
        status=Policy.Status.FAILED,
        error=PAYLOAD,
    )
    return project, researcher, annotator


def sign_in_as(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/projects/", timeout=10000)


@pytest.mark.e2e
class StoredXssTests(BrowserTestCase):
    def _check(self, page, url: str, dialogs: list) -> None:
        page.goto(url)
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(200)
        self.assertIsNone(page.evaluate("() => window.__xss ?? null"), f"a payload ran on {url}")
        self.assertEqual(dialogs, [], f"a dialog opened on {url}")
        text = page.locator("body").inner_text()
        self.assertIn("{{7*7}}", text, f"template syntax is shown literally on {url}")
        self.assertEqual(page.locator("a[href^='javascript' i]").count(), 0, f"a javascript: link on {url}")
        self.assertEqual(page.locator("img[src='x'], img[onerror]").count(), 0, f"an injected image on {url}")

    def test_hostile_text_runs_nowhere(self):
        project, researcher, annotator = hostile_project()
        base = self.live_server_url
        dialogs: list[str] = []

        page = self.new_page(DESKTOP)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        sign_in_as(page, base, annotator.username)
        self._check(page, f"{base}/projects/", dialogs)
        self._check(page, f"{base}/projects/{project.pk}/annotate/", dialogs)
        self.assertIn("window.__xss", page.locator("#queue .prompt").inner_text(), "the prompt is shown as text")

        page = self.new_page(DESKTOP)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        sign_in_as(page, base, researcher.username)
        pages = ["projects/", "dashboard/", "leaderboard/", "quality/", "reward-models/", "loop/"]
        for path in pages:
            url = f"{base}/{path}" if path == "projects/" else f"{base}/projects/{project.pk}/{path}"
            response = page.request.get(url)
            if response.status == 404 and path == "loop/":
                continue  # the training app's page is not there yet
            self._check(page, url, dialogs)


# --- static checks -----------------------------------------------------------------------------------
# Every place that turns a string into markup without escaping, and why that string is safe.
SAFE_MARKUP_ALLOWED = {
    "frontend/rendering.py": "Markdown rendered and then sanitised by nh3 (allow-listed tags and URL schemes)",
    "frontend/views.py": "leaderboard SVGs from annotate/leaderboard/plots.py, every label html.escape()d",
    "rewards/charts.py": "line-chart SVG built here, every label django.utils.html.escape()d",
}
UNESCAPE = re.compile(r"mark_safe\(|\|\s*safe\b|\{%\s*autoescape\s+off|SafeString\(|\|\s*safeseq\b")


def app_files(suffixes: tuple[str, ...]):
    for folder in ("annotate", "frontend", "rewards", "training", "prefloop"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in suffixes and "migrations" not in path.parts:
                yield path


def test_unescaped_output_only_where_it_is_sanitised():
    found = {}
    for path in app_files((".py", ".html", ".txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        code = "\n".join(
            line
            for line in text.splitlines()
            if not line.lstrip().startswith(("#", "from ", "import ")) and "`{{ svg|safe }}`" not in line
        )
        if UNESCAPE.search(code):
            found[str(path.relative_to(REPO))] = len(UNESCAPE.findall(code))
    unexpected = sorted(set(found) - set(SAFE_MARKUP_ALLOWED))
    assert not unexpected, (
        f"unescaped output outside the allow-list (sanitise it, then add it with the reason): {unexpected}"
    )


def test_user_data_reaches_scripts_only_through_json_script():
    """No inline <script> bodies in templates (data goes through |json_script), no {{ }} inside scripts or handlers."""
    offenders = []
    for path in app_files((".html",)):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"<script\b([^>]*)>(.*?)</script>", text, flags=re.S | re.I):
            attributes, body = match.groups()
            if body.strip() or "src=" not in attributes:
                offenders.append(f"{path.relative_to(REPO)}: inline script {match.group(0)[:80]!r}")
        if re.search(r"\son\w+\s*=\s*[\"'][^\"']*\{\{", text):
            offenders.append(f"{path.relative_to(REPO)}: template variable inside an on* handler")
        if re.search(r"href\s*=\s*[\"']\{\{", text):
            offenders.append(f"{path.relative_to(REPO)}: a whole href from a variable (javascript: links)")
    assert not offenders, "\n".join(offenders)
