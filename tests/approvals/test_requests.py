"""Promotion requests: RACI-routed approvers, each gate check, automatic execution,
stale evidence, expiry, notifications, fast track."""

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from apps.approvals import raci, services
from apps.approvals.choices import Activity, Role
from apps.approvals.models import ApprovalRequest
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.models import AuditEvent, Notification
from apps.prompts import services as prompt_services
from tests.approvals.conftest import make_version

pytestmark = pytest.mark.django_db


def _gate(request, name):
    return next(r for r in request.evidence if r["check"] == name)


def test_a_request_waits_for_the_accountable_then_executes_on_approval(
    owner, compliance, candidate
):
    request = services.promotion_request(actor=owner, version=candidate, reason="Better grounding")
    assert request.status == "open"
    assert not _gate(request, "accountable_approved")["passed"]
    assert (
        "Accountable for Approve production prompt"
        in _gate(request, "accountable_approved")["reason"]
    )
    assert request.required[0]["members"] == [compliance.pk]
    assert (
        Notification.objects.filter(recipient=compliance, verb="approval.requested").exists()
        is False
    )  # on commit
    decided = services.approval_decide(
        actor=compliance, request=request, verdict="approve", comment="ok"
    )
    assert decided.status == "executed"
    assert candidate.prompt.labels.get(name="production").version == candidate
    verbs = list(
        AuditEvent.objects.filter(object_type="approvals.approvalrequest").values_list(
            "verb", flat=True
        )
    )
    assert {"approval.request", "approval.decide", "approval.execute"} <= set(verbs)


def test_notifications_go_to_approvers_then_to_informed_and_consumers(
    owner, compliance, candidate, ada, django_capture_on_commit_callbacks
):
    app = prompt_services.application_create(actor=ada, name="Helpdesk")
    from apps.prompts.models import Consumer

    now = timezone.now()
    Consumer.objects.create(
        application=app, prompt=candidate.prompt, label="production", first_seen=now, last_seen=now
    )
    with django_capture_on_commit_callbacks(execute=True):
        request = services.promotion_request(actor=owner, version=candidate)
    assert Notification.objects.filter(recipient=compliance, verb="approval.requested").count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        services.approval_decide(actor=compliance, request=request, verdict="approve")
    assert Notification.objects.filter(recipient=ada, verb="approval.executed").count() == 1
    assert Notification.objects.filter(recipient=owner, verb="approval.executed").count() == 1


def test_no_self_approval(owner, compliance, candidate):
    # Olivia makes herself Accountable for her own charter's promotions: still not for her own.
    raci.raci_assign(
        actor=owner,
        charter=candidate.prompt.charter,
        activity=Activity.APPROVE_PRODUCTION_PROMPT,
        role=Role.ACCOUNTABLE,
        user=owner,
    )
    request = services.promotion_request(actor=owner, version=candidate)
    assert request.required[0]["members"] == [owner.pk]
    with pytest.raises(PermissionDenied, match="your own"):
        services.approval_decide(actor=owner, request=request, verdict="approve")
    assert _gate(request, "no_self_approval")["passed"]


def test_only_accountable_people_approve_and_rejections_need_a_reason(
    owner, outsider, compliance, rita, candidate
):
    request = services.promotion_request(actor=owner, version=candidate)
    with pytest.raises(PermissionDenied):
        services.approval_decide(actor=rita, request=request, verdict="approve")
    with pytest.raises(ValidationFailed):
        services.approval_decide(actor=compliance, request=request, verdict="reject")
    rejected = services.approval_decide(
        actor=compliance, request=request, verdict="reject", comment="Not yet"
    )
    assert rejected.status == "rejected"
    with pytest.raises(InvalidTransition):
        services.approval_decide(actor=compliance, request=request, verdict="approve")


def test_consulted_people_get_their_hours_unless_they_answer(
    owner, compliance, rita, candidate, settings
):
    raci.raci_assign(
        actor=owner,
        charter=candidate.prompt.charter,
        activity=Activity.APPROVE_PRODUCTION_PROMPT,
        role=Role.CONSULTED,
        user=rita,
    )
    settings.APPROVALS_CONSULT_HOURS = {"medium": 8}
    request = services.promotion_request(actor=owner, version=candidate)
    services.approval_decide(actor=compliance, request=request, verdict="approve")
    request.refresh_from_db()
    assert request.status == "open"
    assert "have not answered" in _gate(request, "consulted_asked")["reason"]
    services.approval_decide(
        actor=rita, request=request, verdict="comment", comment="Fine by support ops"
    )
    # Rita answered: the next approval completes it.
    done = services.approval_decide(actor=compliance, request=request, verdict="approve")
    assert done.status == "executed"


def test_consulted_hours_elapsed_pass_the_check(owner, rita, candidate, settings):
    raci.raci_assign(
        actor=owner,
        charter=candidate.prompt.charter,
        activity=Activity.APPROVE_PRODUCTION_PROMPT,
        role=Role.CONSULTED,
        user=rita,
    )
    settings.APPROVALS_CONSULT_HOURS = {"medium": 8}
    request = services.promotion_request(actor=owner, version=candidate)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - dt.timedelta(hours=9)
    )
    request.refresh_from_db()
    assert services.refresh_evidence(request)[2].passed


def test_high_risk_needs_the_sign_off_as_well(owner, compliance, rita, candidate):
    prompt = candidate.prompt
    prompt.risk_level = "high"
    prompt.save(update_fields=["risk_level"])
    raci.raci_assign(
        actor=compliance,
        charter=prompt.charter,
        activity=Activity.SIGN_OFF_HIGH_RISK,
        role=Role.ACCOUNTABLE,
        user=rita,
    )
    request = services.promotion_request(actor=owner, version=candidate)
    assert not _gate(request, "evaluation_passed")["passed"]  # high risk: an evaluation is required
    assert "no suite gates this prompt" in _gate(request, "evaluation_passed")["reason"]
    assert not _gate(request, "high_risk_signoff")["passed"]
    services.approval_decide(actor=compliance, request=request, verdict="approve")
    services.approval_decide(actor=rita, request=request, verdict="approve")
    request.refresh_from_db()
    assert _gate(request, "high_risk_signoff")["passed"]
    assert request.status == "open" and "evaluation_passed" in request.outcome


def test_review_date_passed_blocks(owner, compliance, candidate):
    prompt = candidate.prompt
    prompt.review_date = timezone.localdate() - dt.timedelta(days=1)
    prompt.save(update_fields=["review_date"])
    request = services.promotion_request(actor=owner, version=candidate)
    services.approval_decide(actor=compliance, request=request, verdict="approve")
    request.refresh_from_db()
    assert request.status == "open"
    assert "prompt review was due" in _gate(request, "review_date_not_passed")["reason"]


def test_unapproved_versions_cannot_be_requested(owner, live_prompt):
    from tests.prompts.factories import version_fields

    draft = prompt_services.version_create(actor=owner, prompt=live_prompt, fields=version_fields())
    with pytest.raises(ValidationFailed) as refused:
        services.promotion_request(actor=owner, version=draft)
    assert refused.value.errors["gate"][0].startswith("version_approved:")


def test_open_requests_expire(owner, compliance, candidate, django_capture_on_commit_callbacks):
    request = services.promotion_request(actor=owner, version=candidate)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.approvals_expire() == 1
    request.refresh_from_db()
    assert request.status == "expired"
    assert Notification.objects.filter(recipient=owner, verb="approval.expired").exists()
    with pytest.raises(InvalidTransition):
        services.approval_decide(actor=compliance, request=request, verdict="approve")


def test_a_low_risk_patch_is_fast_tracked(owner, compliance, live_prompt):
    live_prompt.risk_level = "low"
    live_prompt.save(update_fields=["risk_level"])
    patch = make_version(
        owner,
        compliance,
        live_prompt,
        change_kind="patch",
        release_notes="Typo in the system message",
    )
    request = services.promotion_request(actor=owner, version=patch)
    assert request.status == "executed" and request.fast_track
    assert live_prompt.labels.get(name="production").version == patch


def test_a_model_config_change_needs_full_approval_even_as_a_patch(owner, compliance, live_prompt):
    live_prompt.risk_level = "low"
    live_prompt.save(update_fields=["risk_level"])
    patch = make_version(
        owner,
        compliance,
        live_prompt,
        change_kind="patch",
        model_config={"model": "support-chat-v2", "temperature": 0.3},
    )
    request = services.promotion_request(actor=owner, version=patch)
    assert request.status == "open" and not request.fast_track


def test_only_one_open_request_per_version_and_label(owner, candidate):
    services.promotion_request(actor=owner, version=candidate)
    with pytest.raises(InvalidTransition):
        services.promotion_request(actor=owner, version=candidate)


def test_requester_may_withdraw(owner, compliance, candidate):
    request = services.promotion_request(actor=owner, version=candidate)
    with pytest.raises(PermissionDenied):
        services.approval_withdraw(actor=compliance, request=request)
    assert services.approval_withdraw(actor=owner, request=request).status == "withdrawn"
