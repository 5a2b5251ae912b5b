"""The one-way import rules of docs/architecture.md, read from the source (imports inside functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        hits = sorted(m for m in imported_modules(path) if m.startswith(forbidden))
        bad += [f"{path.relative_to(ROOT)} imports {m}" for m in hits]
    return bad


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("annotate", ("prefloop.accounts",)),  # accounts builds on annotate's user model, never the reverse
        ("prefloop/core/errors.py", ("annotate", "rewards", "training", "frontend")),
        ("prefloop/core/api_errors.py", ("annotate", "rewards", "training", "frontend")),
        ("prefloop/core/pagination.py", ("annotate", "rewards", "training", "frontend")),
        ("prefloop/core/json_safe.py", ("annotate", "rewards", "training", "frontend", "django")),
        ("prefloop/jobs/services.py", ("prefloop.celery", "prefloop.jobs.tasks")),  # backends by setting
        (
            "training/services/transitions.py",
            ("training.services.rounds", "training.services.sampling", "training.services.updates"),
        ),
        ("training/services/sampling.py", ("training.services.rounds", "training.services.updates")),
        ("training/services/updates.py", ("training.services.rounds", "training.services.sampling")),
    ],
)
def test_imports_go_one_way(folder, forbidden):
    target = ROOT / folder
    if target.is_file():
        hits = sorted(m for m in imported_modules(target) if m.startswith(forbidden))
        assert not hits, f"{folder} imports {hits}"
    else:
        assert not offenders(folder, forbidden)


# annotate/leaderboard/data.py is the leaderboard's database side; the rest of it is an engine.
ENGINE_EXCEPTIONS = {"annotate/leaderboard/data.py"}


@pytest.mark.parametrize("engine", ["annotate/leaderboard", "rewards/ml", "training/ml"])
def test_engine_modules_never_import_django(engine):
    bad = [
        line
        for line in offenders(engine, ("django", "rest_framework", "prefloop", "annotate.models", "annotate.selectors"))
        if line.split(" imports ")[0] not in ENGINE_EXCEPTIONS
    ]
    assert not bad, bad
