"""Side doors closed: removing a threshold, changing what a suite's gate tests and retiring a
prompt applications read go through the owners and Accountables, from every entry point."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.approvals import services
from apps.approvals.models import ApprovalRequest
from apps.charters import services as charter_services
from apps.core.errors import InvalidTransition
from apps.evaluations import services as evaluation_services
from apps.evaluations.models import Suite, Threshold
from apps.prompts import services as prompt_services
from apps.prompts.models import Consumer
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def riley(owner, charter):
    """Riley may author under Olivia's charter (change access) but owns no threshold."""
    person = factories.business_owner("riley")
    charter_services.charter_share(actor=owner, charter=charter, user=person, access="change")
    return person


@pytest.fixture
def blocking(suite):
    return suite.thresholds.get()


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_services_refuse_a_non_owner_outright(riley, suite, blocking):
    with pytest.raises(InvalidTransition):
        evaluation_services.threshold_delete(actor=riley, threshold=blocking, reason="too strict")
    with pytest.raises(InvalidTransition):
        evaluation_services.threshold_set(
            actor=riley, suite=suite, threshold=blocking, fields={"value": 0.1}
        )
    with pytest.raises(InvalidTransition):
        evaluation_services.suite_update(
            actor=riley, suite=suite, fields={"regression_tolerance": 0.5}
        )
    assert Threshold.objects.filter(pk=blocking.pk).exists()


def test_removing_someone_elses_threshold_over_the_api_asks_its_owner(
    riley, owner, suite, blocking
):
    url = f"/api/v1/evaluations/suites/{suite.slug}/thresholds/{blocking.pk}/"
    answer = _api(riley).delete(url, {"reason": "blocks my release"}, format="json")
    assert answer.status_code == 202, answer.content
    request = ApprovalRequest.objects.get(pk=answer.json()["id"])
    assert request.proposed["delete"] is True
    assert Threshold.objects.filter(pk=blocking.pk).exists()
    services.approval_decide(actor=owner, request=request, verdict="approve")
    assert not Threshold.objects.filter(pk=blocking.pk).exists()


def test_the_owner_removes_their_own_threshold_at_once(owner, suite, blocking):
    url = f"/api/v1/evaluations/suites/{suite.slug}/thresholds/{blocking.pk}/"
    assert _api(owner).delete(url, {"reason": "replaced"}, format="json").status_code == 204
    assert not Threshold.objects.filter(pk=blocking.pk).exists()


def test_the_web_suite_page_asks_instead_of_deleting(client, riley, suite, blocking):
    client.force_login(riley)
    page = client.post(
        suite.get_absolute_url(),
        {"action": "threshold-delete", "threshold": blocking.pk, "reason": "noise"},
    )
    assert page.status_code == 302
    assert Threshold.objects.filter(pk=blocking.pk).exists()
    assert ApprovalRequest.objects.filter(threshold=blocking, proposed__delete=True).exists()


@pytest.mark.parametrize(
    "change",
    [
        {"regression_tolerance": 0.5},
        {"min_segment_cases": 0},
        {"scorers": [{"scorer": "token_f1"}]},
    ],
)
def test_weakening_the_suites_gate_waits_for_the_threshold_owner(
    riley, owner, suite, blocking, change
):
    url = f"/api/v1/evaluations/suites/{suite.slug}/"
    before = {k: getattr(suite, k) for k in change}
    answer = _api(riley).patch(
        url, {**change, "name": "Renamed", "reason": "faster"}, format="json"
    )
    assert answer.status_code == 202, answer.content
    suite.refresh_from_db()
    assert suite.name == "Renamed"  # not part of the gate: at once
    assert {k: getattr(suite, k) for k in change} == before
    request = ApprovalRequest.objects.get(pk=answer.json()["id"])
    assert request.proposed["suite_fields"] == change
    assert [slot["members"] for slot in request.required] == [[owner.pk]]
    services.approval_decide(actor=owner, request=request, verdict="approve")
    suite.refresh_from_db()
    if "scorers" in change:
        assert [s["scorer"] for s in suite.scorers] == ["token_f1"]
    else:
        assert {k: getattr(suite, k) for k in change} == change


def test_detaching_the_gated_prompt_is_a_gate_change(riley, suite, blocking):
    answer = _api(riley).patch(
        f"/api/v1/evaluations/suites/{suite.slug}/", {"prompt": None}, format="json"
    )
    assert answer.status_code == 202, answer.content
    suite.refresh_from_db()
    assert suite.prompt_id is not None


def test_the_owner_of_every_threshold_changes_the_gate_at_once(owner, suite, blocking):
    answer = _api(owner).patch(
        f"/api/v1/evaluations/suites/{suite.slug}/", {"regression_tolerance": 0.2}, format="json"
    )
    assert answer.status_code == 200
    assert Suite.objects.get(pk=suite.pk).regression_tolerance == 0.2


def test_the_admin_suite_form_and_inline_ask_too(client, riley, suite, blocking):
    riley.is_staff = True
    riley.save(update_fields=["is_staff"])
    client.force_login(riley)
    services.suite_change(actor=riley, suite=suite, fields={"min_segment_cases": 0})
    assert Suite.objects.get(pk=suite.pk).min_segment_cases == suite.min_segment_cases
    opened = services.threshold_remove(actor=riley, threshold=blocking, reason="admin inline")
    assert isinstance(opened, ApprovalRequest)


def test_the_admin_retire_action_opens_a_request_when_applications_read_the_prompt(
    client, owner, compliance, support_prompt
):
    ada = factories.platform_engineer("ada")
    app = prompt_services.application_create(actor=ada, name="Helpdesk")
    now = timezone.now()
    Consumer.objects.create(
        application=app, prompt=support_prompt, label="production", first_seen=now, last_seen=now
    )
    compliance.is_staff = True
    compliance.save(update_fields=["is_staff"])
    client.force_login(compliance)
    page = client.post(
        "/admin/prompts/prompt/",
        {
            "action": "prompt_retire",
            "_selected_action": [support_prompt.pk],
            "apply": "1",
            "reason": "Replaced by the new flow",
        },
        follow=True,
    )
    assert page.status_code == 200
    support_prompt.refresh_from_db()
    assert support_prompt.status == "active"
    request = ApprovalRequest.objects.get(prompt=support_prompt, kind="retirement")
    assert f"approval request #{request.pk}" in page.content.decode()
