"""Helpers shared by the management commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.management.base import CommandError

if TYPE_CHECKING:
    from annotate.models import Project

PROJECT_HELP = "project name or id"


def project_option(ref: str | int) -> Project:
    """`--project REF` (a name, or an id) as a project; a CommandError naming REF when there is none."""
    from annotate.selectors import project_by_ref
    from prefloop.core.errors import NotFound

    try:
        return project_by_ref(ref)
    except NotFound as exc:
        raise CommandError(str(exc)) from None
