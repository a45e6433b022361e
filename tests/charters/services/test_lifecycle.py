"""Charter lifecycle: every transition, every guard, who may do it, what it records."""

import datetime as dt
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils import timezone

from apps.charters import services
from apps.charters.choices import CharterStatus as S
from apps.charters.models import Charter
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.models import Notification
from tests import factories

pytestmark = pytest.mark.django_db


def move(charter, *steps):
    """Walk a charter through transitions as the right people, returning it refreshed."""
    carl = factories.compliance_officer("carl")
    for name in steps:
        actor = carl if name in services.NO_SELF_DECISION else charter.business_owner
        reason = "because" if services.TRANSITIONS[name].needs_reason else ""
        # A go-live runs only as an approved request's execution (four eyes): as the
        # approvals workflow runs it.
        charter = services.charter_transition(
            actor=actor, charter=charter, name=name, reason=reason, decided=name == "go_live"
        )
    return charter


def test_submit_moves_a_complete_draft_to_submitted(charter, owner):
    charter = services.charter_submit(actor=owner, charter=charter)
    charter.refresh_from_db()
    assert charter.status == S.SUBMITTED
    assert charter.submitted_at is not None


def test_submit_enqueues_the_notification_only_on_commit(
    charter, owner, compliance, django_capture_on_commit_callbacks
):
    with mock.patch("apps.charters.tasks.charter_notify_transition.delay") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.charter_submit(actor=owner, charter=charter)
        delay.assert_not_called()
        for callback in callbacks:
            callback()
    delay.assert_called_once()
    charter_id, name, history_id, actor_id = delay.call_args.args
    assert (charter_id, name, actor_id) == (charter.pk, "submit", owner.pk)
    assert charter.history.filter(history_id=history_id, status=S.SUBMITTED).exists()


def test_submit_notifies_compliance_in_app_and_by_mail_once(
    charter, owner, compliance, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.charter_submit(actor=owner, charter=charter)
    note = Notification.objects.get(recipient=compliance)
    assert "Support reply drafting" in note.title and note.url == charter.get_absolute_url()
    assert [m.to for m in mail.outbox] == [[compliance.email]]
    assert not Notification.objects.filter(recipient=owner).exists()


def test_redelivered_notification_task_changes_nothing(charter, owner, compliance):
    from apps.charters.tasks import charter_notify_transition

    services.charter_submit(actor=owner, charter=charter)
    history_id = charter.history.latest().history_id
    assert charter_notify_transition(charter.pk, "submit", history_id, owner.pk) == 1
    assert charter_notify_transition(charter.pk, "submit", history_id, owner.pk) == 0
    assert Notification.objects.filter(recipient=compliance).count() == 1
    assert len(mail.outbox) == 1


def test_approval_notifies_the_owner_with_the_decision(
    charter, owner, compliance, django_capture_on_commit_callbacks
):
    services.charter_submit(actor=owner, charter=charter)
    with django_capture_on_commit_callbacks(execute=True):
        services.charter_reject(actor=compliance, charter=charter, reason="Baseline unsourced")
    note = Notification.objects.get(recipient=owner)
    assert "draft" in note.title
    assert "Baseline unsourced" in note.body


def test_withdraw_returns_a_submitted_charter_to_draft(charter, owner):
    charter = move(charter, "submit", "withdraw")
    assert charter.status == S.DRAFT


def test_approve_records_who_and_when(charter, owner, compliance):
    services.charter_submit(actor=owner, charter=charter)
    charter = services.charter_approve(actor=compliance, charter=charter)
    assert charter.status == S.APPROVED
    assert charter.approved_by == compliance and charter.approved_at is not None


def test_reject_needs_a_reason_and_returns_to_draft(charter, owner, compliance):
    services.charter_submit(actor=owner, charter=charter)
    with pytest.raises(ValidationFailed) as exc:
        services.charter_reject(actor=compliance, charter=charter, reason="  ")
    assert exc.value.errors == {"reason": ["This field is required."]}
    charter = services.charter_reject(actor=compliance, charter=charter, reason="Target too vague")
    assert charter.status == S.DRAFT
    assert charter.status_reason == "Target too vague"


def test_full_lifecycle_to_retirement(charter):
    charter = move(
        charter, "submit", "approve", "start_pilot", "go_live", "pause", "resume", "retire"
    )
    assert charter.status == S.RETIRED
    statuses = list(
        Charter.history.filter(id=charter.pk)
        .order_by("history_id")
        .values_list("status", flat=True)
    )
    assert statuses[-7:] == [
        S.SUBMITTED,
        S.APPROVED,
        S.PILOT,
        S.PRODUCTION,
        S.PAUSED,
        S.PRODUCTION,
        S.RETIRED,
    ]


@pytest.mark.parametrize(
    ("steps", "name"),
    [
        ((), "approve"),
        ((), "withdraw"),
        ((), "start_pilot"),
        ((), "retire"),
        (("submit",), "submit"),
        (("submit",), "go_live"),
        (("submit", "approve"), "go_live"),
        (("submit", "approve"), "pause"),
        (("submit", "approve", "start_pilot", "go_live"), "resume"),
        (("submit", "approve", "start_pilot", "go_live", "pause"), "pause"),
    ],
)
def test_invalid_transitions_are_refused_with_the_reason(charter, steps, name):
    charter = move(charter, *steps)
    before = charter.status
    with pytest.raises(InvalidTransition) as exc:
        move(charter, name)
    assert "must be" in exc.value.message and exc.value.status_code == 409
    charter.refresh_from_db()
    assert charter.status == before


def test_retired_charters_accept_no_transition(charter):
    charter = move(charter, "submit", "approve", "retire")
    for name in services.TRANSITIONS:
        with pytest.raises(InvalidTransition):
            move(charter, name)


def test_unknown_transition_is_a_validation_error(charter, owner):
    with pytest.raises(ValidationFailed):
        services.charter_transition(actor=owner, charter=charter, name="teleport")


# --- who may act --------------------------------------------------------------------------------


def test_owner_cannot_approve_their_own_charter_even_with_approve_rights(
    charter, owner, compliance
):
    services.charter_submit(actor=owner, charter=charter)
    owner.groups.add(compliance.groups.get())
    owner = type(owner).objects.get(pk=owner.pk)
    with pytest.raises(PermissionDenied):
        services.charter_approve(actor=owner, charter=charter)


def test_business_owner_without_approve_rights_cannot_approve(charter, owner):
    services.charter_submit(actor=owner, charter=charter)
    with pytest.raises(PermissionDenied):
        services.charter_approve(actor=owner, charter=charter)


def test_outsider_cannot_even_see_the_charter(charter, outsider):
    with pytest.raises(Http404):
        services.charter_submit(actor=outsider, charter=charter)
    with pytest.raises(Http404):
        services.charter_update(actor=outsider, charter=charter, fields={"title": "Mine now"})


def test_compliance_sees_but_cannot_edit_or_submit(charter, compliance):
    with pytest.raises(PermissionDenied):
        services.charter_update(actor=compliance, charter=charter, fields={"title": "Edited"})
    with pytest.raises(PermissionDenied):
        services.charter_submit(actor=compliance, charter=charter)


def test_compliance_may_pause_and_retire(charter, compliance):
    charter = move(charter, "submit", "approve", "start_pilot", "go_live")
    charter = services.charter_pause(actor=compliance, charter=charter, reason="Incident 42")
    assert charter.status == S.PAUSED
    charter = services.charter_retire(actor=compliance, charter=charter, reason="Replaced")
    assert charter.status == S.RETIRED


def test_shared_editor_can_edit_and_submit(charter, owner, outsider):
    services.charter_share(actor=owner, charter=charter, user=outsider, access="change")
    services.charter_update(actor=outsider, charter=charter, fields={"target_users": "All agents"})
    charter = services.charter_submit(actor=outsider, charter=charter)
    assert charter.status == S.SUBMITTED


def test_viewer_can_read_but_not_change(charter, owner, outsider):
    services.charter_share(actor=owner, charter=charter, user=outsider, access="view")
    with pytest.raises(PermissionDenied):
        services.charter_update(actor=outsider, charter=charter, fields={"title": "x"})


def test_unshare_removes_access_at_once(charter, owner, outsider):
    services.charter_share(actor=owner, charter=charter, user=outsider, access="change")
    services.charter_unshare(actor=owner, charter=charter, user=outsider)
    outsider = type(outsider).objects.get(pk=outsider.pk)
    with pytest.raises(Http404):
        services.charter_submit(actor=outsider, charter=charter)


def test_the_owner_cannot_be_unshared(charter, owner):
    with pytest.raises(ValidationFailed):
        services.charter_unshare(actor=owner, charter=charter, user=owner)


def test_share_rejects_an_unknown_access_level(charter, owner, outsider):
    with pytest.raises(ValidationFailed) as exc:
        services.charter_share(actor=owner, charter=charter, user=outsider, access="admin")
    assert "access" in exc.value.errors


# --- history ---------------------------------------------------------------------------------------


def test_history_rows_carry_the_actor_and_the_reason(charter, owner, compliance):
    services.charter_submit(actor=owner, charter=charter)
    services.charter_reject(actor=compliance, charter=charter, reason="Needs a baseline source")
    latest = charter.history.latest()
    assert latest.history_user == compliance
    assert latest.history_change_reason == "Reject: Needs a baseline source"
    submitted = charter.history.filter(status=S.SUBMITTED).get()
    assert submitted.history_user == owner


def test_review_date_in_the_past_is_reported_overdue(charter):
    charter.review_date = timezone.localdate() - dt.timedelta(days=1)
    assert charter.review_overdue


def test_a_direct_go_live_is_refused_even_for_compliance(charter, compliance):
    charter = move(charter, "submit", "approve", "start_pilot")
    with pytest.raises(InvalidTransition) as exc:
        services.charter_go_live(actor=compliance, charter=charter, reason="ship it")
    assert "second person" in exc.value.message
    charter.refresh_from_db()
    assert charter.status == S.PILOT


def test_go_live_needs_a_second_compliance_officer(charter, compliance):
    from apps.approvals import services as approvals

    cleo = factories.compliance_officer("cleo")
    charter = move(charter, "submit", "approve", "start_pilot")
    request = approvals.charter_transition_request(
        actor=compliance, charter=charter, name="go_live", reason="ready"
    )
    with pytest.raises(PermissionDenied):
        approvals.approval_decide(actor=compliance, request=request, verdict="approve")
    approvals.approval_decide(actor=cleo, request=request, verdict="approve")
    charter.refresh_from_db()
    assert charter.status == S.PRODUCTION


def test_compliance_acting_directly_is_a_recorded_override(
    charter, compliance, django_capture_on_commit_callbacks
):
    from apps.core.models import AuditEvent

    charter = move(charter, "submit", "approve", "start_pilot", "go_live")
    with django_capture_on_commit_callbacks(execute=True):
        charter = services.charter_pause(actor=compliance, charter=charter, reason="Incident 43")
    with pytest.raises(ValidationFailed):  # an override always says why
        services.charter_transition(actor=compliance, charter=charter, name="resume")
    event = AuditEvent.objects.filter(verb="charter.override").latest("id")
    assert event.data["reason"] == "Incident 43" and event.data["override"] is True
    told = Notification.objects.filter(verb="charter.override")
    assert charter.business_owner in {n.recipient for n in told}


def test_an_override_shows_on_the_charter_and_in_the_evidence_pack(client, charter, compliance):
    from apps.approvals.evidence import pack

    charter = move(charter, "submit", "approve", "start_pilot", "go_live")
    services.charter_pause(actor=compliance, charter=charter, reason="Regulator asked us to stop")
    compliance.refresh_from_db()  # move() signs Carl in again with a fresh password hash
    client.force_login(compliance)
    response = client.get(charter.get_absolute_url(), follow=True)
    page = response.content.decode()
    assert response.redirect_chain == []
    assert "Compliance overrides" in page and "Regulator asked us to stop" in page
    (override,) = pack(charter)["overrides"]
    assert override["data"]["reason"] == "Regulator asked us to stop"
