"""A prompt's risk level is never below its charter's risk tier, and lowering it is compliance's.

Olivia's charter is high risk. Creating a prompt under it (service, web, API) refuses a
lower level on `risk_level`; forking under it takes the higher of the two. Olivia may
raise a prompt's level but never lower it; Carl (compliance, `prompts.review_prompt`) may
lower it, down to the charter's tier and no further, and the history says so.
"""

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from apps.core.errors import ValidationFailed
from apps.prompts import services
from apps.prompts.models import Prompt
from tests.prompts.factories import PromptFactory

pytestmark = pytest.mark.django_db
BASE = "/api/v1/prompts/"
FLOOR = "The charter is high risk: a prompt under it cannot be rated below high."


@pytest.fixture
def high(charter):
    """Olivia's charter, in pilot and rated high risk."""
    charter.status, charter.risk_tier = "pilot", "high"
    charter.save(update_fields=["status", "risk_tier"])
    return charter


@pytest.fixture
def critical(high, owner):
    """A critical prompt under the high-risk charter."""
    return PromptFactory(
        charter=high, owner=owner, slug="claims-triage", name="Claims triage", risk_level="critical"
    )


def fields(charter, **extra):
    return {
        "charter": charter,
        "name": "Claims reply",
        "slug": "claims-reply",
        "task_type": "drafting",
        **extra,
    }


def as_user(user) -> APIClient:
    api = APIClient()
    api.force_login(user)
    return api


# --- creating ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["low", "medium"])
def test_the_service_refuses_a_level_below_the_charters(high, owner, level):
    with pytest.raises(ValidationFailed) as exc:
        services.prompt_create(actor=owner, fields=fields(high, risk_level=level))
    assert exc.value.errors == {"risk_level": [FLOOR]}
    assert not Prompt.objects.filter(slug="claims-reply").exists()


@pytest.mark.parametrize("level", ["high", "critical"])
def test_the_charters_tier_and_above_are_accepted(high, owner, level):
    prompt = services.prompt_create(actor=owner, fields=fields(high, risk_level=level))
    assert prompt.risk_level == level


def test_an_omitted_level_starts_at_the_charters_tier(high, owner):
    assert services.prompt_create(actor=owner, fields=fields(high)).risk_level == "high"


def test_a_low_risk_charter_takes_any_level(charter, owner):
    charter.risk_tier = "low"
    charter.save(update_fields=["risk_tier"])
    assert services.prompt_create(actor=owner, fields=fields(charter, risk_level="low"))


def test_the_web_form_shows_the_field_error(client, high, owner):
    client.force_login(owner)
    data = {"charter": high.pk, "name": "Claims reply", "task_type": "drafting"}
    response = client.post("/prompts/new/", {**data, "risk_level": "medium"})
    assert response.status_code == 200
    assert response.context["form"].errors["risk_level"] == [FLOOR]
    assert not Prompt.objects.filter(slug="claims-reply").exists()
    response = client.post("/prompts/new/", {**data, "risk_level": "high"})
    assert response.status_code == 302 and Prompt.objects.get(slug="claims-reply")


def test_the_api_answers_400_on_risk_level(high, owner):
    api = as_user(owner)
    body = {"slug": "claims-reply", "name": "Claims reply", "charter": high.slug}
    response = api.post(BASE, {**body, "risk_level": "low"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"risk_level": [FLOOR]}
    created = api.post(BASE, body, format="json")
    assert created.status_code == 201 and created.json()["risk_level"] == "high"


def test_a_fork_takes_the_higher_of_the_two(high, owner, approved):
    assert approved.prompt.risk_level == "medium"
    fork = services.prompt_fork(actor=owner, source=approved, charter=high, name="Claims fork")
    assert fork.risk_level == "high"


# --- editing ----------------------------------------------------------------------------------------


def test_the_author_may_raise_the_level(high, owner):
    prompt = services.prompt_create(actor=owner, fields=fields(high))
    services.prompt_update(actor=owner, prompt=prompt, fields={"risk_level": "critical"})
    assert Prompt.objects.get(pk=prompt.pk).risk_level == "critical"


def test_the_author_may_not_lower_it_even_to_the_floor(critical, owner):
    with pytest.raises(ValidationFailed) as exc:
        services.prompt_update(actor=owner, prompt=critical, fields={"risk_level": "high"})
    [message] = exc.value.errors["risk_level"]
    assert "from critical to high is for compliance to decide" in message
    with pytest.raises(ValidationFailed) as exc:
        services.prompt_update(actor=owner, prompt=critical, fields={"risk_level": "low"})
    assert exc.value.errors == {"risk_level": [FLOOR]}
    assert Prompt.objects.get(pk=critical.pk).risk_level == "critical"


def test_compliance_lowers_it_to_the_floor_and_no_further(critical, compliance):
    with pytest.raises(ValidationFailed) as exc:
        services.prompt_update(actor=compliance, prompt=critical, fields={"risk_level": "medium"})
    assert exc.value.errors == {"risk_level": [FLOOR]}
    services.prompt_update(actor=compliance, prompt=critical, fields={"risk_level": "high"})
    prompt = Prompt.objects.get(pk=critical.pk)
    latest = prompt.history.latest()
    assert prompt.risk_level == "high" and latest.history_user == compliance
    assert latest.history_change_reason == (
        "Edited; risk level lowered from critical to high by compliance (charter floor: high)"
    )


def test_compliance_changes_nothing_else_of_a_prompt_it_does_not_author(critical, compliance):
    with pytest.raises(PermissionDenied):
        services.prompt_update(actor=compliance, prompt=critical, fields={"name": "Renamed"})
    # Unchanged values may come along (a form posts every field).
    services.prompt_update(
        actor=compliance, prompt=critical, fields={"name": critical.name, "risk_level": "high"}
    )
    assert Prompt.objects.get(pk=critical.pk).name == "Claims triage"


def test_a_prompt_from_before_the_rule_keeps_other_edits(high, owner):
    legacy = PromptFactory(charter=high, owner=owner, slug="legacy", risk_level="low")
    services.prompt_update(actor=owner, prompt=legacy, fields={"description": "Still here"})
    with pytest.raises(ValidationFailed) as exc:
        services.prompt_update(actor=owner, prompt=legacy, fields={"risk_level": "medium"})
    assert exc.value.errors == {"risk_level": [FLOOR]}
    services.prompt_update(actor=owner, prompt=legacy, fields={"risk_level": "high"})


def test_api_patch_refuses_the_author_and_lets_compliance_lower_it(critical, owner, compliance):
    url = f"{BASE}{critical.slug}/"
    refused = as_user(owner).patch(url, {"risk_level": "high"}, format="json")
    assert refused.status_code == 400
    assert "compliance to decide" in refused.json()["errors"]["risk_level"][0]
    below = as_user(compliance).patch(url, {"risk_level": "medium"}, format="json")
    assert below.status_code == 400 and below.json()["errors"] == {"risk_level": [FLOOR]}
    assert as_user(compliance).patch(url, {"name": "X"}, format="json").status_code == 403
    lowered = as_user(compliance).patch(url, {"risk_level": "high"}, format="json")
    assert lowered.status_code == 200 and lowered.json()["risk_level"] == "high"


def _edit_form(prompt, **changes):
    return {
        "name": prompt.name,
        "description": prompt.description,
        "business_function": prompt.business_function,
        "task_type": prompt.task_type,
        "risk_level": prompt.risk_level,
        "model_family": prompt.model_family,
        "policy_tags": "",
        "tags": "",
        "retirement_condition": "",
        **changes,
    }


def test_the_web_edit_form_refuses_the_author_with_a_field_error(client, critical, owner):
    url = f"/prompts/{critical.slug}/edit/"
    client.force_login(owner)
    response = client.post(url, _edit_form(critical, risk_level="high"))
    assert response.status_code == 200
    assert "compliance to decide" in response.context["form"].errors["risk_level"][0]
    response = client.post(url, _edit_form(critical, risk_level="medium"))
    assert response.context["form"].errors["risk_level"] == [FLOOR]
    assert Prompt.objects.get(pk=critical.pk).risk_level == "critical"
    response = client.post(url, _edit_form(critical, description="Routes claims."))
    assert response.status_code == 302  # other edits go through


def test_compliance_decides_through_the_api_not_the_authors_edit_page(client, critical, compliance):
    # The edit page stays the authors' (the permission matrix); compliance uses the API.
    client.force_login(compliance)
    assert client.get(f"/prompts/{critical.slug}/edit/").status_code == 403


def test_a_viewer_who_neither_authors_nor_reviews_may_not_edit(client, critical, outsider, high):
    from apps.charters.services import charter_share

    charter_share(actor=high.business_owner, charter=high, user=outsider, access="view")
    client.force_login(outsider)
    assert client.get(f"/prompts/{critical.slug}/edit/").status_code == 403
    with pytest.raises(PermissionDenied):
        services.prompt_update(actor=outsider, prompt=critical, fields={"risk_level": "high"})
