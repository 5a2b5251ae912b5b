"""Annotator and researcher pages: who sees what, and what the annotator page never shows."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate.models import Assignment, User
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db


def signed_in(client, user):
    client.force_login(user)
    return client


def test_pages_ask_anonymous_visitors_to_sign_in(client):
    project = make_project()
    for url in (reverse("projects"), reverse("annotate", args=[project.pk]), reverse("dashboard", args=[project.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_login_page_signs_in_and_lands_on_the_project_list(client):
    make_user("ann", password="a-long-password-1")
    response = client.post(reverse("login"), {"username": "ann", "password": "a-long-password-1"})
    assert response.status_code == 302 and response["Location"] == reverse("projects")


def test_project_list_shows_only_the_annotators_projects_with_a_start_link(client):
    annotator = make_user()
    mine = make_project(name="Mine", annotators=[annotator])
    make_project(name="Someone else's")
    html = signed_in(client, annotator).get(reverse("projects")).content.decode()
    assert "Mine" in html and "Someone else" not in html
    assert reverse("annotate", args=[mine.pk]) in html
    assert reverse("dashboard", args=[mine.pk]) not in html


def test_annotator_of_another_project_gets_404_for_queue_next_and_dashboard(client):
    outsider = make_user()
    project = make_project(annotators=[make_user()])
    make_comparisons(project, 2)
    signed_in(client, outsider)
    assert client.get(reverse("annotate", args=[project.pk])).status_code == 404
    assert client.post(reverse("annotate-next", args=[project.pk])).status_code == 404
    assert client.get(reverse("dashboard", args=[project.pk])).status_code == 404


def test_annotator_cannot_open_the_dashboard_of_their_own_project(client):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    assert signed_in(client, annotator).get(reverse("dashboard", args=[project.pk])).status_code == 404


def test_researcher_member_and_admin_see_the_dashboard_but_researcher_has_no_queue(client):
    researcher = make_user(role=User.Role.RESEARCHER)
    admin = make_user(role=User.Role.ADMIN)
    project = make_project(researchers=[researcher])
    assert signed_in(client, researcher).get(reverse("dashboard", args=[project.pk])).status_code == 200
    assert client.get(reverse("annotate", args=[project.pk])).status_code == 404
    assert signed_in(client, admin).get(reverse("dashboard", args=[project.pk])).status_code == 200


def test_annotate_page_shows_texts_by_side_but_never_model_names(client):
    annotator = make_user()
    project = make_project(annotators=[annotator], instructions="Prefer **correct** answers.")
    make_comparisons(project, 1, models=("secret-model-alpha", "secret-model-beta"))
    html = signed_in(client, annotator).get(reverse("annotate", args=[project.pk])).content.decode()
    assert "secret-model" not in html
    assert "Response A" in html and "Response B" in html
    assert "<strong>correct</strong>" in html
    assert 'id="annotate-config"' in html  # config only through json_script


def test_annotate_page_offers_only_the_choices_the_project_allows(client):
    annotator = make_user()
    project = make_project(annotators=[annotator], allow_tie=False, allow_both_bad=False)
    make_comparisons(project, 1)
    html = signed_in(client, annotator).get(reverse("annotate", args=[project.pk])).content.decode()
    assert 'data-choice="a"' in html and 'data-choice="b"' in html
    assert 'data-choice="tie"' not in html and 'data-choice="both_bad"' not in html


def test_multi_aspect_project_shows_one_row_of_choices_per_aspect(client):
    annotator = make_user()
    project = make_project(annotators=[annotator], aspects=["helpfulness", "harmlessness"])
    make_comparisons(project, 1)
    html = signed_in(client, annotator).get(reverse("annotate", args=[project.pk])).content.decode()
    assert html.count('class="aspect-row') == 2
    assert 'data-aspect="helpfulness"' in html and 'data-aspect="harmlessness"' in html


def test_strength_and_required_rationale_controls_follow_the_project(client):
    annotator = make_user()
    project = make_project(annotators=[annotator], strength_scale=3, rationale="required")
    make_comparisons(project, 1)
    html = signed_in(client, annotator).get(reverse("annotate", args=[project.pk])).content.decode()
    assert html.count('class="strength-option"') == 3 and "slightly" in html and "much" in html
    assert 'id="rationale"' in html and "(required)" in html


def test_user_text_in_prompts_and_responses_is_rendered_inert(client):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    [comparison] = make_comparisons(project, 1)
    comparison.prompt.text = "<script>window.__xss=1</script> [x](javascript:alert(1))"
    comparison.prompt.save()
    html = signed_in(client, annotator).get(reverse("annotate", args=[project.pk])).content.decode()
    assert "<script>window.__xss" not in html and "&lt;script&gt;window.__xss" in html
    assert 'href="javascript:' not in html


def test_next_fragment_skips_the_comparison_on_screen_and_keeps_one_lease_each(client):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 3)
    signed_in(client, annotator)
    client.get(reverse("annotate", args=[project.pk]))
    [on_screen] = Assignment.objects.filter(annotator=annotator)
    html = client.post(reverse("annotate-next", args=[project.pk]), {"exclude": [on_screen.pk]}).content.decode()
    prefetched = Assignment.objects.exclude(pk=on_screen.pk).get(annotator=annotator)
    assert f'data-assignment="{prefetched.pk}"' in html
    # Asking again for the same thing returns the same prefetched lease, not a third one.
    client.post(reverse("annotate-next", args=[project.pk]), {"exclude": [on_screen.pk]})
    assert Assignment.objects.filter(annotator=annotator).count() == 2


def test_next_fragment_says_when_the_queue_is_finished(client):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    html = signed_in(client, annotator).post(reverse("annotate-next", args=[project.pk])).content.decode()
    assert 'data-reason="complete"' in html and "Nothing left" in html


def test_next_fragment_needs_csrf(client):
    from django.test import Client

    annotator = make_user()
    project = make_project(annotators=[annotator])
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(annotator)
    assert strict.post(reverse("annotate-next", args=[project.pk])).status_code == 403
