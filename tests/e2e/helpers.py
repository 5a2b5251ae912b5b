"""Data and browser steps shared by the e2e tests. Texts come from the built-in sample, never HH-RLHF."""

from __future__ import annotations

from pathlib import Path

from annotate.models import Comparison, ComparisonItem, Completion, Project, Prompt
from annotate.services.importing import import_file

SAMPLE = Path(__file__).resolve().parents[2] / "annotate" / "sample_data" / "demo_prompts.jsonl"
PASSWORD = "pw-for-tests-only"

INSTRUCTIONS = (
    "Read the question, then both answers. Pick the answer a careful expert would rather send: "
    "**correct first**, then helpful, then clear. Use *tie* when they are equally good and *both bad* "
    "when neither is acceptable."
)

LONG_PROMPT = "How does binary search work? Show a short Python version and say when it is the wrong tool."
LONG_ANSWER = """Binary search finds an item in a **sorted** sequence by halving the range it still has to look at.

1. Look at the middle element.
2. If it is the target, stop; if the target is smaller, keep the left half, otherwise the right half.
3. Repeat until the range is empty.

```python
def binary_search(items: list[int], target: int) -> int:
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1  # not found
```

| size of list | steps at most |
|---:|---:|
| 1,000 | 10 |
| 1,000,000 | 20 |

It is the wrong tool when the data is unsorted (sorting first costs more than one linear scan) or
when the data is a linked list, where reaching the middle is itself linear. See the
[Python `bisect` module](https://docs.python.org/3/library/bisect.html) for a tested version."""
SHORT_ANSWER = """Binary search checks the middle of a sorted list and throws away the half that cannot contain the
target, so it needs about log2(n) steps.

```python
import bisect
i = bisect.bisect_left(items, target)
found = i < len(items) and items[i] == target
```

~~Works on any list.~~ It only works when the list is sorted."""


def sample_project(**settings) -> Project:
    """A project with the sample questions (24 pairs) and, handed out first, one longer Markdown pair."""
    from tests.factories import make_project

    project = make_project(instructions=INSTRUCTIONS, **settings)
    import_file(project=project, path=SAMPLE)
    add_comparison(project, LONG_PROMPT, LONG_ANSWER, SHORT_ANSWER, priority=10, key="binary-search")
    return project


def add_comparison(
    project: Project, prompt_text: str, text_a: str, text_b: str, *, priority: int = 0, key: str
) -> Comparison:
    prompt = Prompt.objects.create(project=project, key=key, text=prompt_text)
    completions = [
        Completion.objects.create(prompt=prompt, key=f"{key}-{i}", model_name=f"e2e-model-{i}", text=text)
        for i, text in enumerate((text_a, text_b))
    ]
    comparison = Comparison.objects.create(
        project=project, prompt=prompt, key="-".join(str(c.pk) for c in completions), priority=priority
    )
    ComparisonItem.objects.bulk_create(
        ComparisonItem(comparison=comparison, completion=c, position=i) for i, c in enumerate(completions)
    )
    return comparison


def sign_in(page, base_url: str, username: str) -> None:
    """Keyboard only: type the credentials and press Enter."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")
    try:
        page.wait_for_url(f"{base_url}/projects/", timeout=10000)
    except Exception:
        print(page.content()[:3000])
        raise


def open_queue(page, project: Project) -> None:
    """From the project list, focus "Start annotating" and press Enter; wait until the page is live."""
    page.locator(f'[data-project="{project.pk}"]').get_by_role("link", name="Start annotating").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("html[data-ready=annotate]")


def on_screen(page) -> int:
    return int(page.locator("#queue .comparison").get_attribute("data-assignment"))


def wait_until_prefetched(page) -> None:
    page.wait_for_function("() => window.prefloop && window.prefloop.nextReady === true")


def wait_until_saved(page) -> None:
    page.wait_for_function("() => window.prefloop && window.prefloop.pending === 0")
