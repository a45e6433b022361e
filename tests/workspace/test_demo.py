"""The demo workspace that `make run` loads: realistic, complete and safe to load twice."""

import pytest
from django.contrib.auth import authenticate, get_user_model

from apps.charters.models import Charter
from apps.core.models import ApiKey
from apps.prompts.models import Prompt
from apps.workspace.demo import DEMO_USERS, banner, demo_setup

pytestmark = pytest.mark.django_db


def test_demo_loads_twice_without_duplicates_and_users_can_sign_in():
    first = demo_setup(evaluations=False)
    second = demo_setup(evaluations=False)
    assert first["api_key"] and second["api_key"] is None
    for spec in DEMO_USERS:
        assert authenticate(username=spec.username, password=spec.password) is not None
    assert dict(Charter.objects.values_list("slug", "status")) == {
        "support-reply-drafting": "pilot",
        "claims-intake-triage": "draft",
        "supplier-contract-clauses": "submitted",
    }
    prompt = Prompt.objects.get(slug="support-reply-draft")
    assert prompt.labels.get(name="production").version.number == 1
    assert prompt.versions.get(number=2).status == "approved"
    request = prompt.approval_requests.get()
    assert (request.status, request.requested_by.username) == ("open", "pat")
    assert ApiKey.objects.filter(user__username="app-helpdesk-sidebar").count() == 1


def test_demo_api_key_is_printed_once_with_the_passwords():
    result = demo_setup(evaluations=False)
    text = banner(result)
    assert result["api_key"] in text
    assert all(spec.password in text for spec in DEMO_USERS)


def test_demo_evaluation_shows_an_improvement_and_a_regressed_segment(default_encoder):
    from apps.evaluations.demo import demo_evaluations
    from apps.evaluations.models import Run
    from apps.workspace.demo import DEMO_USERS as specs

    demo_setup(evaluations=False)
    users = {spec.username: get_user_model().objects.get(username=spec.username) for spec in specs}
    prompt = Prompt.objects.get(slug="support-reply-draft")
    result = demo_evaluations(users, prompt, cases=120)
    assert result["ok"] and demo_evaluations(users, prompt) == {"created": False}
    baseline, candidate = Run.objects.order_by("pk")
    assert candidate.baseline == baseline
    coverage = candidate.comparison["metrics"]["grounded_coverage"]
    assert coverage["delta"] > 0 and coverage["better"]
    regressed = {(r["key"], r["value"]) for r in candidate.comparison["regressed_segments"]}
    assert regressed == {("user_role", "partner")}
    worst = next(g for g in candidate.gate if g["aggregate"] == "worst_segment")
    assert not worst["passed"] and "partner" in worst["reason"]
