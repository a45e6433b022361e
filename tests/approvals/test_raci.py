"""RACI: the one-Accountable rule, defaults, submit checks, and permissions that follow."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

from apps.approvals import raci
from apps.approvals.choices import Activity, Role
from apps.approvals.models import RaciAssignment
from apps.charters import permissions as charter_permissions
from apps.charters import services as charter_services
from apps.core.errors import ValidationFailed
from apps.core.models import AuditEvent
from apps.prompts import permissions as prompt_permissions
from tests.prompts.factories import PromptFactory

pytestmark = pytest.mark.django_db
A, R, C = Role.ACCOUNTABLE, Role.RESPONSIBLE, Role.CONSULTED


def test_global_defaults_give_every_activity_one_accountable(charter):
    assert raci.problems(charter) == {}
    accountable = raci.effective(charter, Activity.APPROVE_PRODUCTION_PROMPT, A)
    assert [a.group.name for a in accountable] == ["compliance"]


def test_a_charter_names_its_own_accountable_and_only_one(owner, compliance, engineer, charter):
    raci.raci_assign(
        actor=owner,
        charter=charter,
        activity=Activity.APPROVE_PRODUCTION_PROMPT,
        role=A,
        user=compliance,
    )
    assert [a.user for a in raci.effective(charter, Activity.APPROVE_PRODUCTION_PROMPT, A)] == [
        compliance
    ]
    with pytest.raises(ValidationFailed, match="already has an Accountable"):
        raci.raci_assign(
            actor=owner,
            charter=charter,
            activity=Activity.APPROVE_PRODUCTION_PROMPT,
            role=A,
            user=engineer,
        )
    with pytest.raises(ValidationFailed, match="already exists"):
        raci.raci_assign(
            actor=owner,
            charter=charter,
            activity=Activity.APPROVE_PRODUCTION_PROMPT,
            role=A,
            user=compliance,
        )
    assert AuditEvent.objects.filter(verb="raci.assign", charter_id=charter.pk).count() == 1


def test_submit_reports_an_activity_with_no_accountable(owner, charter):
    RaciAssignment.objects.filter(charter=None, activity=Activity.RESPOND_TO_DRIFT, role=A).delete()
    with pytest.raises(ValidationFailed) as refused:
        charter_services.charter_submit(actor=owner, charter=charter)
    assert refused.value.errors["raci"] == ["Respond to drift: nobody is Accountable."]


def test_only_owners_and_compliance_edit_the_matrix(outsider, engineer, compliance, charter):
    for person in (outsider, engineer):
        with pytest.raises(PermissionDenied):
            raci.raci_assign(
                actor=person,
                charter=charter,
                activity=Activity.RESPOND_TO_DRIFT,
                role=C,
                user=person,
            )
    raci.raci_assign(
        actor=compliance, charter=charter, activity=Activity.RESPOND_TO_DRIFT, role=C, user=engineer
    )


def test_raci_grants_access_and_a_removed_person_loses_it_at_once(owner, engineer, charter):
    prompt = PromptFactory(charter=charter, owner=owner)
    assert not charter_permissions.can(engineer, charter_permissions.VIEW, charter)
    responsible = raci.raci_assign(
        actor=owner,
        charter=charter,
        activity=Activity.CHANGE_RETRIEVAL_SOURCES,
        role=R,
        user=engineer,
    )
    engineer = type(engineer).objects.get(pk=engineer.pk)  # fresh permission cache
    assert charter_permissions.can(engineer, charter_permissions.CHANGE, charter)
    assert prompt_permissions.can(engineer, prompt_permissions.AUTHOR, prompt)
    raci.raci_remove(actor=owner, assignment=responsible)
    engineer = type(engineer).objects.get(pk=engineer.pk)
    assert not charter_permissions.can(engineer, charter_permissions.VIEW, charter)
    assert not prompt_permissions.can(engineer, prompt_permissions.VIEW, prompt)
    assert (
        AuditEvent.objects.filter(verb="permissions.recompute", charter_id=charter.pk).count() == 2
    )


def test_an_explicit_share_survives_a_raci_assignment_coming_and_going(owner, engineer, charter):
    charter_services.charter_share(actor=owner, charter=charter, user=engineer, access="view")
    consulted = raci.raci_assign(
        actor=owner, charter=charter, activity=Activity.RESPOND_TO_DRIFT, role=C, user=engineer
    )
    raci.raci_remove(actor=owner, assignment=consulted)
    engineer = type(engineer).objects.get(pk=engineer.pk)
    assert charter_permissions.can(engineer, charter_permissions.VIEW, charter)


def test_an_accountable_group_grants_its_members(owner, outsider, charter):
    reviewers = Group.objects.create(name="support reviewers")
    outsider.groups.add(reviewers)
    raci.raci_assign(
        actor=owner, charter=charter, activity=Activity.SIGN_OFF_HIGH_RISK, role=A, group=reviewers
    )
    outsider = type(outsider).objects.get(pk=outsider.pk)
    assert charter_permissions.can(outsider, charter_permissions.VIEW, charter)
    assert raci.members(raci.effective(charter, Activity.SIGN_OFF_HIGH_RISK, A)) == {outsider.pk}


def test_the_last_accountable_of_a_submitted_charter_cannot_be_removed(owner, compliance, charter):
    RaciAssignment.objects.filter(charter=None, activity=Activity.RESPOND_TO_DRIFT).delete()
    only = raci.raci_assign(
        actor=owner, charter=charter, activity=Activity.RESPOND_TO_DRIFT, role=A, user=compliance
    )
    charter_services.charter_submit(actor=owner, charter=charter)
    charter.refresh_from_db()
    with pytest.raises(ValidationFailed, match="name the new one first"):
        raci.raci_remove(actor=compliance, assignment=only)
