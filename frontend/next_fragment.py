"""The annotator page's next comparison as its HTML fragment, for `vote?next=html` (annotate.vote_next).

The same template and context as `/projects/{id}/annotate/next/` (frontend.views.annotate_next),
built from the payload the vote's answer already carries.
"""

from __future__ import annotations

from django.template.loader import render_to_string

from frontend.rendering import comparison_context


def queue_item_html(following: dict) -> str:
    from frontend.views import EMPTY_QUEUE

    if following["assignment"] is None:
        reason = following["reason"]
        context = {"comparison": None, "empty_reason": reason, "empty_message": EMPTY_QUEUE.get(reason, "")}
    else:
        context = {"comparison": comparison_context(following["assignment"])}
    return render_to_string("frontend/_queue_item.html", context)
