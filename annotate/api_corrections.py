"""REST endpoints of an annotator's corrections: skip a leased comparison, read and edit their last vote."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate import serializers as s
from annotate.api import _vote_input, _vote_output
from annotate.services.corrections import (
    edit_last_vote,
    edit_window_open,
    last_voted_assignment,
    skip_assignment,
    vote_answers,
)
from prefloop.core.errors import InvalidVote


class AssignmentSkipApi(APIView):
    """Pass on a leased comparison: the slot goes back to the pool and it is not offered to you again."""

    @extend_schema(request=None, responses=dict)
    def post(self, request, assignment_id: int):
        result = skip_assignment(annotator=request.user, assignment_id=assignment_id)
        return Response(
            {"assignment_id": result.assignment.pk, "state": result.assignment.state, "released": result.released}
        )


class AssignmentEditVoteApi(APIView):
    """Change your last vote in a project within PREFLOOP_VOTE_EDIT_SECONDS; same body as the vote."""

    @extend_schema(request=s.VoteInputSerializer, responses=dict)
    def post(self, request, assignment_id: int):
        body = request.data if isinstance(request.data, dict) else {}
        if body.get("votes"):
            if not isinstance(body["votes"], list) or len(body["votes"]) > 20:
                raise InvalidVote("votes", "a list with one vote per aspect")
            votes = [_vote_input(vote, f"votes[{i}]", aspect_required=True) for i, vote in enumerate(body["votes"])]
        else:
            votes = [_vote_input(body, "", aspect_required=False)]
        result = edit_last_vote(annotator=request.user, assignment_id=assignment_id, votes=votes)
        return Response({"assignment_id": result.assignment.pk, "votes": [_vote_output(v) for v in result.votes]})


class MyLastVoteApi(APIView):
    """Your last vote in a project, in sides as shown, and whether it can still be changed."""

    @extend_schema(responses=dict)
    def get(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id)
        assignment = last_voted_assignment(annotator=request.user, project=project)
        if assignment is None:
            return Response({"assignment_id": None, "editable": False})
        return Response(
            {
                "assignment_id": assignment.pk,
                "editable": edit_window_open(assignment),
                "edit_seconds": settings.PREFLOOP_VOTE_EDIT_SECONDS,
                "completed_at": assignment.completed_at,
                "answers": vote_answers(assignment),
            }
        )
