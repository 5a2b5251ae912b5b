"""Plain factory functions for tests: real rows through the real services where one exists."""

from __future__ import annotations

import itertools

from annotate.models import Comparison, ComparisonItem, Completion, Membership, Project, Prompt, User
from annotate.services.projects import membership_set, project_create

_seq = itertools.count(1)


def make_user(
    username: str | None = None, *, role: str = User.Role.ANNOTATOR, password: str = "pw-for-tests-only"
) -> User:
    user = User.objects.create_user(username=username or f"user{next(_seq)}", password=password, role=role)
    return user


def make_project(
    *, name: str | None = None, annotators: list[User] = (), researchers: list[User] = (), **settings
) -> Project:
    project = project_create(name=name or f"project {next(_seq)}", **settings)
    for user in annotators:
        membership_set(project=project, user=user, role=Membership.Role.ANNOTATOR)
    for user in researchers:
        membership_set(project=project, user=user, role=Membership.Role.RESEARCHER)
    return project


def make_comparisons(
    project: Project, count: int, *, models: tuple[str, ...] = ("model-x", "model-y")
) -> list[Comparison]:
    """`count` comparisons, each of a fresh prompt and one completion per model."""
    comparisons = []
    for i in range(count):
        n = next(_seq)
        prompt = Prompt.objects.create(project=project, key=f"p{n}", text=f"Question {n}: why is the sky blue?")
        completions = [
            Completion.objects.create(prompt=prompt, key=f"{m}-{n}", model_name=m, text=f"Answer {n}, draft {i}.")
            for i, m in enumerate(models)
        ]
        comparison = Comparison.objects.create(
            project=project, prompt=prompt, key="-".join(str(c.pk) for c in completions)
        )
        ComparisonItem.objects.bulk_create(
            ComparisonItem(comparison=comparison, completion=c, position=p) for p, c in enumerate(completions)
        )
        comparisons.append(comparison)
    return comparisons
