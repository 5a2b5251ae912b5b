"""K-way ranking in the page (keys and drag), skip and change-last-vote, and the vote bar's layout;
each checked in the database, with screenshots at 1366 and 390 px."""

from __future__ import annotations

import pytest

from annotate.models import Assignment, Comparison, ComparisonItem, Completion, Prompt, Vote, VoteEdit
from tests.e2e.helpers import on_screen, open_queue, sign_in, wait_until_prefetched, wait_until_saved
from tests.e2e.live import BrowserTestCase
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1366, "height": 900}
NARROW = {"width": 390, "height": 844}
ANSWERS = [
    "Paris is the capital of France.",
    "The capital of France is **Paris**, on the Seine.",
    "France's capital: Lyon.",
    "It is Paris; Versailles was the seat of the court until 1789.",
    "Marseille.",
    "Paris (since the 10th century, with interruptions).",
]


def add_kway(project, k: int, *, key: str, priority: int = 100) -> Comparison:
    prompt = Prompt.objects.create(project=project, key=key, text=f"What is the capital of France? ({k} answers)")
    completions = [
        Completion.objects.create(prompt=prompt, key=f"{key}-{i}", model_name=f"m{i}", text=ANSWERS[i])
        for i in range(k)
    ]
    comparison = Comparison.objects.create(
        project=project, prompt=prompt, key="-".join(str(c.pk) for c in completions), priority=priority
    )
    ComparisonItem.objects.bulk_create(
        ComparisonItem(comparison=comparison, completion=c, position=i) for i, c in enumerate(completions)
    )
    return comparison


def by_sides(assignment_id: int, sides: str) -> list[int]:
    shown = Assignment.objects.get(pk=assignment_id).shown_order
    return [shown["abcdef".index(side)] for side in sides]


class RankingTests(BrowserTestCase):
    def _start(self, viewport, **settings):
        annotator = make_user(f"ann-{len(settings)}-{viewport['width']}")
        project = make_project(annotators=[annotator], name=f"Ranking {viewport['width']}", **settings)
        page = self.new_page(viewport)
        return annotator, project, page

    def test_a_four_way_comparison_is_ranked_with_letters_and_backspace(self):
        annotator, project, page = self._start(DESKTOP, strength_scale=3)
        comparison = add_kway(project, 4, key="k4")
        make_comparisons(project, 2)
        sign_in(page, self.live_server_url, annotator.username)
        open_queue(page, project)
        assignment_id = on_screen(page)
        self.assertEqual(page.locator("#votebar .choice:visible").count(), 0, "no pairwise buttons on a K-way item")
        self.assertEqual(page.locator("#votebar .pool .rank-chip").count(), 4)
        for key in ("c", "a", "Backspace", "b", "a"):  # c, (a taken back), b, a; d places itself
            page.keyboard.press(key)
        self.assertEqual(
            page.locator("#votebar .ranked .rank-chip").all_inner_texts(), ["1. C", "2. B", "3. A", "4. D"]
        )
        self.assertEqual(page.locator(".response[data-side=c] .rank-badge").inner_text(), "ranked 1 of 4")
        page.keyboard.press("w")  # strength applies once the ranking is complete
        page.screenshot(path=self.artifacts / "screenshots" / "ranking-desktop.png")
        wait_until_prefetched(page)
        page.keyboard.press("Enter")
        wait_until_saved(page)
        vote = Vote.objects.get(annotator=annotator)
        self.assertEqual(
            (vote.assignment_id, vote.comparison_id, vote.choice), (assignment_id, comparison.pk, "ranked")
        )
        self.assertEqual(vote.ranking, by_sides(assignment_id, "cbad"))
        self.assertEqual(vote.strength, 2)
        self.assertEqual((vote.winner_id, vote.loser_id), (vote.ranking[0], vote.ranking[-1]))
        self.assertEqual(
            page.locator("#votebar .choice:visible").count(), 4, "a pair next: the pairwise buttons are back"
        )

    def test_a_ranking_may_tie_responses_where_the_project_allows_ties(self):
        annotator, project, page = self._start(DESKTOP, allow_tie=True, strength_scale=0)
        add_kway(project, 4, key="k4t")
        sign_in(page, self.live_server_url, annotator.username)
        open_queue(page, project)
        assignment_id = on_screen(page)
        for key in ("c", "a", "=", "b"):  # c and a tied for first, then b; d places itself
            page.keyboard.press(key)
        self.assertEqual(
            page.locator("#votebar .ranked .rank-chip").all_inner_texts(), ["1. C", "1. A", "3. B", "4. D"]
        )
        self.assertEqual(page.locator(".response[data-side=a] .rank-badge").inner_text(), "ranked 1 of 4 (tie)")
        page.screenshot(path=self.artifacts / "screenshots" / "ranking-tie-desktop.png")
        page.keyboard.press("Enter")
        wait_until_saved(page)
        vote = Vote.objects.get(annotator=annotator)
        c, a, b, d = by_sides(assignment_id, "cabd")
        self.assertEqual((vote.ranking, vote.ranking_ties), ([c, a, b, d], [[c, a]]))
        self.assertEqual((vote.winner_id, vote.loser_id), (None, d))

    def test_no_tie_key_where_the_project_allows_no_ties(self):
        annotator, project, page = self._start(DESKTOP, allow_tie=False)
        add_kway(project, 3, key="k3n")
        sign_in(page, self.live_server_url, annotator.username)
        open_queue(page, project)
        assignment_id = on_screen(page)
        for key in ("b", "=", "a"):
            page.keyboard.press(key)
        self.assertEqual(page.locator("#votebar .ranked .rank-chip").all_inner_texts(), ["1. B", "2. A", "3. C"])
        page.keyboard.press("Enter")
        wait_until_saved(page)
        vote = Vote.objects.get(annotator=annotator)
        self.assertEqual((vote.ranking, vote.ranking_ties), (by_sides(assignment_id, "bac"), None))

    def test_a_three_way_comparison_is_ranked_by_drag_on_a_phone(self):
        annotator, project, page = self._start(NARROW)
        add_kway(project, 3, key="k3")
        sign_in(page, self.live_server_url, annotator.username)
        open_queue(page, project)
        assignment_id = on_screen(page)
        chip = lambda where, side: page.locator(f"#votebar .{where} .rank-chip[data-side={side}]")
        chip("pool", "b").drag_to(page.locator("#votebar .ranked"))
        chip("pool", "c").drag_to(page.locator("#votebar .ranked"))  # a places itself: b, c, a
        chip("ranked", "a").drag_to(chip("ranked", "b"))  # a dragged to the front: a, b, c
        self.assertEqual(page.locator("#votebar .ranked .rank-chip").all_inner_texts(), ["1. A", "2. B", "3. C"])
        bar = page.locator("#votebar").bounding_box()
        self.assertLessEqual(bar["height"], NARROW["height"] * 0.25, "vote bar within a quarter of the phone's height")
        page.screenshot(path=self.artifacts / "screenshots" / "ranking-narrow.png")
        page.keyboard.press("Enter")
        wait_until_saved(page)
        self.assertEqual(Vote.objects.get(annotator=annotator).ranking, by_sides(assignment_id, "abc"))


def touch_drag(page, source, target, *, at: str = "center") -> None:
    """A finger drag from `source`'s centre to `target` (its centre, or 6 px in from its right edge:
    on a ranked chip, after it),
    sent as real touch input (CDP), so the page sees pointer events of type "touch"."""
    cdp = page.context.new_cdp_session(page)
    s, t = source.bounding_box(), target.bounding_box()
    x0, y0 = s["x"] + s["width"] / 2, s["y"] + s["height"] / 2
    x1 = t["x"] + {"right": t["width"] - 6, "left": 6}.get(at, t["width"] / 2)
    y1 = t["y"] + t["height"] / 2
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for step in range(1, 11):
        x, y = x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    # Rest on the target before lifting, as a finger does. Lifted at speed, the drag ends in a fling
    # gesture, and Chrome swallows the tap that stops a fling (the Submit tap below would not click).
    page.wait_for_timeout(150)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x1, "y": y1}]})
    page.wait_for_timeout(150)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


class TouchRankingTests(BrowserTestCase):
    def test_a_four_way_comparison_is_ranked_by_finger_drags_on_a_390_px_phone(self):
        annotator = make_user("ann-touch")
        project = make_project(annotators=[annotator], name="Ranking by touch")
        add_kway(project, 4, key="k4touch")
        page = self.new_page(NARROW, has_touch=True, is_mobile=True)
        sign_in(page, self.live_server_url, annotator.username)
        open_queue(page, project)
        assignment_id = on_screen(page)
        page.evaluate("""() => { window.__touchPointers = 0;
            document.addEventListener("pointerdown", (e) => { if (e.pointerType === "touch") window.__touchPointers++; }, true); }""")
        chip = lambda where, side: page.locator(f"#votebar .{where} .rank-chip[data-side={side}]")
        ranked = page.locator("#votebar .ranked")
        touch_drag(page, chip("pool", "c"), ranked, at="right")
        self.assertEqual(ranked.locator(".rank-chip").all_inner_texts(), ["1. C"])
        touch_drag(page, chip("pool", "a"), chip("ranked", "c"), at="right")  # after c
        touch_drag(page, chip("pool", "d"), chip("ranked", "a"), at="right")  # after a; b places itself: c, a, d, b
        self.assertEqual(ranked.locator(".rank-chip").all_inner_texts(), ["1. C", "2. A", "3. D", "4. B"])
        touch_drag(page, chip("ranked", "b"), chip("ranked", "a"), at="left")  # before a: c, b, a, d
        self.assertEqual(ranked.locator(".rank-chip").all_inner_texts(), ["1. C", "2. B", "3. A", "4. D"])
        # a back to the pool: the one response left places itself, so a goes last: c, b, d, a
        touch_drag(page, chip("ranked", "a"), page.locator("#votebar .pool"))
        self.assertEqual(ranked.locator(".rank-chip").all_inner_texts(), ["1. C", "2. B", "3. D", "4. A"])
        touch_drag(page, chip("ranked", "d"), chip("ranked", "c"), at="left")  # d to the front: d, c, b, a
        self.assertEqual(ranked.locator(".rank-chip").all_inner_texts(), ["1. D", "2. C", "3. B", "4. A"])
        self.assertGreaterEqual(page.evaluate("window.__touchPointers"), 6, "the drags were touch pointers")
        page.screenshot(path=self.artifacts / "screenshots" / "ranking-touch-narrow.png")
        # A tap submits (it did not, once: the chips' HTML5 draggable let the browser's touch drag-and-drop
        # take the gesture, and the next tap was lost). Its click comes after the touch: wait for the swap.
        page.locator("#votebar .submit").tap()
        page.wait_for_selector(f'#queue .comparison[data-assignment="{assignment_id}"]', state="detached")
        wait_until_saved(page)
        vote = Vote.objects.get(annotator=annotator)
        self.assertEqual((vote.assignment_id, vote.choice), (assignment_id, "ranked"))
        self.assertEqual(vote.ranking, by_sides(assignment_id, "dcba"))


class CorrectionTests(BrowserTestCase):
    def test_skip_then_vote_then_change_the_last_vote(self):
        annotator = make_user("ann-corrections")
        project = make_project(annotators=[annotator], name="Corrections", overlap_target=2)
        make_comparisons(project, 4)
        page = self.new_page(DESKTOP)
        sign_in(page, self.live_server_url, annotator.username)
        open_queue(page, project)

        skipped = on_screen(page)
        wait_until_prefetched(page)
        page.keyboard.press("s")
        page.wait_for_function(
            "(id) => Number(document.querySelector('#queue .comparison').dataset.assignment) !== id", arg=skipped
        )
        lease = Assignment.objects.get(pk=skipped)
        self.assertEqual(lease.state, Assignment.State.SKIPPED)
        self.assertEqual(lease.comparison.leases_open, 0, "the slot went back to the pool")

        voted = on_screen(page)
        wait_until_prefetched(page)
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        wait_until_saved(page)
        waiting = on_screen(page)
        page.keyboard.press("u")
        page.wait_for_selector("#queue .comparison[data-edit='1']")
        self.assertEqual(on_screen(page), voted)
        self.assertEqual(
            page.locator("#votebar .choice[data-choice=a]").get_attribute("aria-pressed"),
            "true",
            "the first answer is shown",
        )
        page.screenshot(path=self.artifacts / "screenshots" / "change-last-vote-desktop.png")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "(id) => Number(document.querySelector('#queue .comparison').dataset.assignment) === id", arg=waiting
        )
        self.assertIsNone(
            page.locator("#queue .comparison").get_attribute("data-edit"), "back to the comparison it interrupted"
        )

        vote = Vote.objects.get(annotator=annotator)
        self.assertEqual((vote.assignment_id, vote.choice), (voted, "b"))
        self.assertEqual(list(VoteEdit.objects.filter(vote=vote).values_list("choice", flat=True)), ["a"])
        self.assertEqual(Comparison.objects.get(assignments__pk=voted).votes_done, 1, "counted once")
        self.assertEqual(page.locator("#my-done").inner_text(), "1")

        page.keyboard.press("u")  # and back without changing anything
        page.wait_for_selector("#queue .comparison[data-edit='1']")
        page.keyboard.press("u")
        page.wait_for_function(
            "(id) => Number(document.querySelector('#queue .comparison').dataset.assignment) === id", arg=waiting
        )
        self.assertEqual(VoteEdit.objects.count(), 1)


class LayoutTests(BrowserTestCase):
    def test_the_vote_bar_rests_at_the_bottom_of_a_short_item_and_a_phone_switches_sides(self):
        annotator = make_user("ann-layout")
        project = make_project(annotators=[annotator], name="Short items", strength_scale=3)
        make_comparisons(project, 3)
        for viewport, name in ((DESKTOP, "desktop"), (NARROW, "narrow")):
            page = self.new_page(viewport)
            sign_in(page, self.live_server_url, annotator.username)
            open_queue(page, project)
            icon = page.locator('link[rel="icon"]').get_attribute("href")
            served = page.request.get(f"{self.live_server_url}{icon}")
            self.assertEqual((served.status, served.headers["content-type"]), (200, "image/svg+xml"), "a favicon")
            bar = page.locator("#votebar").bounding_box()
            self.assertAlmostEqual(bar["y"] + bar["height"], viewport["height"], delta=1, msg=f"{name}: at the bottom")
            self.assertTrue(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))
            page.screenshot(path=self.artifacts / "screenshots" / f"annotator-short-{name}.png")
            if viewport is NARROW:
                self.assertLessEqual(bar["height"], viewport["height"] * 0.25)
                self.assertTrue(page.locator(".response[data-side=a]").is_visible())
                self.assertFalse(page.locator(".response[data-side=b]").is_visible())
                page.locator(".side-tab[data-side=b]").click()
                self.assertTrue(page.locator(".response[data-side=b]").is_visible())
                self.assertFalse(page.locator(".response[data-side=a]").is_visible())
                box = page.locator(".responses").bounding_box()
                y = box["y"] + 20
                page.mouse.move(box["x"] + 40, y)
                page.mouse.down()
                page.mouse.move(box["x"] + 300, y, steps=5)
                page.mouse.up()  # a swipe to the right goes back to A
                self.assertTrue(page.locator(".response[data-side=a]").is_visible())
            page.close()
