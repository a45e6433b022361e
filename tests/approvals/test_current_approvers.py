"""Who may decide is computed when they decide, from the charter's current RACI and owner."""

import pytest
from django.core.exceptions import PermissionDenied

from apps.approvals import raci, services
from apps.approvals.choices import Activity, Role
from apps.approvals.models import RaciAssignment
from apps.charters import permissions as charter_permissions
from apps.charters import services as charter_services
from apps.core.models import Notification
from tests import factories

pytestmark = pytest.mark.django_db


def test_an_accountable_removed_after_the_request_opened_decides_nothing(
    owner, compliance, candidate, django_capture_on_commit_callbacks
):
    charter = candidate.prompt.charter
    friend = factories.platform_engineer("fred")
    assignment = raci.raci_assign(
        actor=compliance,
        charter=charter,
        activity=Activity.APPROVE_PRODUCTION_PROMPT,
        role=Role.ACCOUNTABLE,
        user=friend,
    )
    request = services.promotion_request(actor=owner, version=candidate, reason="ship")
    assert request.required[0]["members"] == [friend.pk]
    raci.raci_remove(actor=compliance, assignment=assignment, reason="re-routed")
    with pytest.raises(PermissionDenied):
        services.approval_decide(actor=friend, request=request, verdict="approve")
    request.refresh_from_db()
    assert request.status == "open"
    # Whoever the RACI names now is the approver, and decides.
    now = raci.members(
        raci.effective(charter, Activity.APPROVE_PRODUCTION_PROMPT, Role.ACCOUNTABLE)
    )
    assert friend.pk not in now
    approver = type(owner).objects.get(pk=sorted(now)[0])
    with django_capture_on_commit_callbacks(execute=True):
        decided = services.approval_decide(actor=approver, request=request, verdict="approve")
    assert decided.status == "executed"
    assert set(decided.required[0]["members"]) == now


def test_someone_named_accountable_later_decides_and_is_told(
    owner, compliance, candidate, django_capture_on_commit_callbacks
):
    request = services.promotion_request(actor=owner, version=candidate, reason="ship")
    nora = factories.compliance_officer("nora")  # joins compliance after the request opened
    with django_capture_on_commit_callbacks(execute=True):
        services.approval_decide(actor=nora, request=request, verdict="comment", comment="looking")
    request.refresh_from_db()
    assert nora.pk in request.required[0]["members"]
    assert Notification.objects.filter(recipient=nora, verb="approval.requested").exists()


def test_a_handover_takes_the_former_owners_rights_away(owner, compliance, charter):
    bella = factories.business_owner("bella")
    charter_services.charter_update(actor=owner, charter=charter, fields={"business_owner": bella})
    owner = type(owner).objects.get(pk=owner.pk)  # fresh permission cache
    assert not charter_permissions.can(owner, charter_permissions.VIEW, charter)
    assert charter_permissions.can(bella, charter_permissions.CHANGE, charter)


def test_a_former_owner_keeps_what_their_raci_role_gives(owner, compliance, charter):
    raci.raci_assign(
        actor=compliance,
        charter=charter,
        activity=Activity.APPROVE_CHARTER,
        role=Role.CONSULTED,
        user=owner,
    )
    bella = factories.business_owner("bella")
    charter_services.charter_update(actor=owner, charter=charter, fields={"business_owner": bella})
    owner = type(owner).objects.get(pk=owner.pk)
    assert charter_permissions.can(owner, charter_permissions.VIEW, charter)
    assert not charter_permissions.can(owner, charter_permissions.CHANGE, charter)
    assert RaciAssignment.objects.filter(charter=charter, user=owner).exists()
