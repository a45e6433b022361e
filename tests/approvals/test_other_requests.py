"""Charter decisions, threshold changes and retirements routed through approval requests."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.approvals import services
from apps.approvals.models import ApprovalRequest
from apps.charters import services as charter_services
from apps.core.errors import ValidationFailed
from apps.prompts import services as prompt_services
from apps.prompts.models import Consumer

pytestmark = pytest.mark.django_db


def test_submission_opens_a_request_that_a_direct_decision_closes(owner, compliance, charter):
    charter_services.charter_submit(actor=owner, charter=charter)
    request = ApprovalRequest.objects.get(charter=charter)
    assert (request.kind, request.transition, request.status) == (
        "charter_transition",
        "approve",
        "open",
    )
    assert request.required[0]["members"] == [compliance.pk]
    charter_services.charter_approve(actor=compliance, charter=charter, reason="Complete")
    request.refresh_from_db()
    assert request.status == "executed"
    assert request.decisions.get().verdict == "approve"


def test_approving_a_submission_in_the_inbox_approves_the_charter(owner, compliance, charter):
    charter_services.charter_submit(actor=owner, charter=charter)
    request = ApprovalRequest.objects.get(charter=charter)
    with pytest.raises(Exception, match="Only the Accountable"):
        services.approval_decide(actor=owner, request=request, verdict="approve")
    services.approval_decide(actor=compliance, request=request, verdict="approve", comment="ok")
    charter.refresh_from_db()
    request.refresh_from_db()
    assert charter.status == "approved" and request.status == "executed"
    assert request.decisions.count() == 1


def test_withdrawing_or_rejecting_closes_the_request(owner, compliance, charter):
    charter_services.charter_submit(actor=owner, charter=charter)
    charter_services.charter_withdraw(actor=owner, charter=charter)
    assert ApprovalRequest.objects.get(charter=charter).status == "withdrawn"
    charter_services.charter_submit(actor=owner, charter=charter)
    charter_services.charter_reject(actor=compliance, charter=charter, reason="Proof too vague")
    assert ApprovalRequest.objects.filter(charter=charter).latest("id").status == "rejected"


def test_go_live_is_requested_by_the_owner_and_approved_by_the_accountable(
    owner, compliance, charter
):
    charter_services.charter_submit(actor=owner, charter=charter)
    charter_services.charter_approve(actor=compliance, charter=charter)
    charter_services.charter_start_pilot(actor=owner, charter=charter)
    api = APIClient()
    api.force_authenticate(owner)
    response = api.post(
        f"/api/v1/charters/{charter.slug}/request/go_live/",
        {"reason": "Handle time -22%"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    request = ApprovalRequest.objects.get(pk=response.json()["id"])
    services.approval_decide(actor=compliance, request=request, verdict="approve")
    charter.refresh_from_db()
    assert charter.status == "production"
    with pytest.raises(ValidationFailed):
        services.charter_transition_request(actor=owner, charter=charter, name="submit")


def test_a_threshold_change_by_someone_else_waits_for_its_owner(
    owner, engineer, suite, support_prompt
):
    from apps.charters.services import charter_share

    charter_share(actor=owner, charter=suite.charter, user=engineer, access="change")
    threshold = suite.thresholds.get()
    api = APIClient()
    api.force_authenticate(engineer)
    response = api.patch(
        f"/api/v1/evaluations/suites/{suite.slug}/thresholds/{threshold.pk}/",
        {"value": 0.3, "reason": "Too strict for German"},
        format="json",
    )
    assert response.status_code == 202 and response.json()["kind"] == "threshold_change"
    threshold.refresh_from_db()
    assert threshold.value == 0.5
    request = ApprovalRequest.objects.get(pk=response.json()["id"])
    assert request.required[0]["members"] == [owner.pk]
    services.approval_decide(actor=owner, request=request, verdict="approve", comment="Agreed")
    threshold.refresh_from_db()
    assert threshold.value == 0.3
    assert "Too strict for German" in threshold.history.first().history_change_reason
    api.force_authenticate(owner)
    direct = api.patch(
        f"/api/v1/evaluations/suites/{suite.slug}/thresholds/{threshold.pk}/",
        {"value": 0.4},
        format="json",
    )
    assert direct.status_code == 200 and direct.json()["value"] == 0.4


def test_retiring_a_prompt_that_applications_read_needs_approval(
    owner, compliance, ada, live_prompt
):
    app = prompt_services.application_create(actor=ada, name="Helpdesk")
    now = timezone.now()
    Consumer.objects.create(
        application=app, prompt=live_prompt, label="production", first_seen=now, last_seen=now
    )
    request = services.retirement_request(
        actor=owner, prompt=live_prompt, reason="Replaced by v2 flow"
    )
    assert isinstance(request, ApprovalRequest) and request.kind == "retirement"
    live_prompt.refresh_from_db()
    assert live_prompt.status == "active"
    services.approval_decide(actor=compliance, request=request, verdict="approve")
    live_prompt.refresh_from_db()
    assert live_prompt.status == "retired"


def test_retiring_an_unread_prompt_is_immediate(owner, live_prompt):
    retired = services.retirement_request(actor=owner, prompt=live_prompt, reason="Never used")
    assert retired.status == "retired"
