"""RACI: who does, decides, is asked and is told for each activity, and the object
permissions that follow from it.

A charter's own assignments win per (activity, role); where it names nobody the global
default applies. Object permissions are recomputed by one service, `permissions_recompute`,
whenever an assignment changes: Responsible may change the charter, Accountable may view and
approve it, Consulted and Informed may view it. Every asset under a charter (prompts,
datasets, suites, runs) takes its permissions from the charter, so recomputing the charter's
grants is recomputing theirs; the hot-path caches are invalidated by the same signals.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from guardian.shortcuts import assign_perm, get_perms, remove_perm

from apps.charters import permissions as charter_permissions
from apps.charters.choices import CharterStatus
from apps.charters.models import Charter
from apps.core import audit
from apps.core.errors import ValidationFailed
from apps.core.groups import COMPLIANCE, PLATFORM
from apps.core.history import delete_with_history, save_with_history

from .choices import Activity, Role
from .models import RaciAssignment, RaciGrant

User = get_user_model()

ROLE_PERMS = {
    Role.RESPONSIBLE: ("view_charter", "change_charter"),
    Role.ACCOUNTABLE: ("view_charter", "approve_charter"),
    Role.CONSULTED: ("view_charter",),
    Role.INFORMED: ("view_charter",),
}
# Where a charter names nobody: compliance decides and signs off, platform operates.
GLOBAL_DEFAULTS = [
    (Activity.APPROVE_CHARTER, Role.ACCOUNTABLE, COMPLIANCE),
    (Activity.APPROVE_PRODUCTION_PROMPT, Role.ACCOUNTABLE, COMPLIANCE),
    (Activity.OWN_EVALUATION_THRESHOLDS, Role.ACCOUNTABLE, COMPLIANCE),
    (Activity.CHANGE_RETRIEVAL_SOURCES, Role.ACCOUNTABLE, PLATFORM),
    (Activity.RESPOND_TO_DRIFT, Role.ACCOUNTABLE, PLATFORM),
    (Activity.SIGN_OFF_HIGH_RISK, Role.ACCOUNTABLE, COMPLIANCE),
    (Activity.RETIRE_ASSET, Role.ACCOUNTABLE, COMPLIANCE),
    (Activity.APPROVE_MODEL_ENDPOINT, Role.ACCOUNTABLE, COMPLIANCE),
]


def ensure_global_defaults(**kwargs) -> None:
    """post_migrate: the global default Accountable per activity, when none is set."""
    for activity, role, group_name in GLOBAL_DEFAULTS:
        if RaciAssignment.objects.filter(charter=None, activity=activity, role=role).exists():
            continue
        group, _ = Group.objects.get_or_create(name=group_name)
        RaciAssignment.objects.create(
            activity=activity, role=role, group=group, note="Default for every charter"
        )


def effective(charter: Charter | None, activity: str, role: str) -> list[RaciAssignment]:
    """The assignments that apply: the charter's own, else the global default."""
    own = []
    if charter is not None:
        own = list(
            RaciAssignment.objects.filter(
                charter=charter, activity=activity, role=role
            ).select_related("user", "group")
        )
    if own:
        return own
    return list(
        RaciAssignment.objects.filter(charter=None, activity=activity, role=role).select_related(
            "user", "group"
        )
    )


def members(assignments: Iterable[RaciAssignment]) -> set[int]:
    """Ids of the active people the assignments name (group members included)."""
    ids: set[int] = set()
    groups = []
    for item in assignments:
        if item.user_id:
            if item.user.is_active:
                ids.add(item.user_id)
        else:
            groups.append(item.group_id)
    if groups:
        ids |= set(
            User.objects.filter(groups__in=groups, is_active=True).values_list("pk", flat=True)
        )
    return ids


def roles_of(user, charter: Charter | None) -> dict[str, set[str]]:
    """{activity: {roles}} that apply to this person for the charter."""
    found: dict[str, set[str]] = {}
    for activity in Activity.values:
        for role in Role.values:
            if user.pk in members(effective(charter, activity, role)):
                found.setdefault(activity, set()).add(role)
    return found


def problems(charter: Charter) -> dict[str, list[str]]:
    """What is wrong with the charter's RACI: each activity needs exactly one Accountable
    (its own or the global default)."""
    found: dict[str, list[str]] = {}
    for activity in Activity:
        accountable = effective(charter, activity, Role.ACCOUNTABLE)
        if not accountable:
            found.setdefault(activity.value, []).append(f"{activity.label}: nobody is Accountable.")
        elif len(accountable) > 1:
            names = ", ".join(a.who for a in accountable)
            found.setdefault(activity.value, []).append(
                f"{activity.label}: exactly one Accountable is allowed, not {len(accountable)} ({names})."
            )
    return found


def warnings(charter: Charter | None) -> list[str]:
    """Assignments that name nobody in practice (a group without active members)."""
    found = []
    for activity in Activity:
        accountable = effective(charter, activity, Role.ACCOUNTABLE)
        if len(accountable) == 1 and not members(accountable):
            found.append(
                f"{activity.label}: the Accountable ({accountable[0].who}) has no active "
                "members, so no one can approve it."
            )
    return found


def submit_errors(charter: Charter) -> dict[str, list[str]]:
    """RACI problems reported when a charter leaves draft (one 'raci' entry, every activity)."""
    found = problems(charter)
    return {"raci": [m for messages in found.values() for m in messages]} if found else {}


def can_edit(user, charter: Charter | None) -> bool:
    """The charter's owner and whoever may change it, and compliance, edit its RACI."""
    if not user or not user.is_authenticated:
        return False
    if user.is_superuser or user.has_perm(charter_permissions.APPROVE_PERM):
        return True
    return charter is not None and charter_permissions.can(
        user, charter_permissions.CHANGE, charter
    )


def _desired(charter: Charter) -> dict[tuple[str, int], set[str]]:
    """{("user" | "group", id): {codenames}} that the charter's own RACI grants."""
    desired: dict[tuple[str, int], set[str]] = {}
    for item in RaciAssignment.objects.filter(charter=charter):
        key = ("user", item.user_id) if item.user_id else ("group", item.group_id)
        desired.setdefault(key, set()).update(ROLE_PERMS[item.role])
    return desired


@transaction.atomic
def permissions_recompute(*, charter: Charter, actor=None) -> dict[str, int]:
    """Make the charter's RACI-derived object permissions exactly what its RACI says.

    Only grants that RACI itself added are ever removed (recorded as RaciGrant rows), so an
    owner's rights and explicit shares survive an assignment coming and going.
    """
    desired = _desired(charter)
    current = {
        (g.kind, g.holder_id, g.codename): g for g in RaciGrant.objects.filter(charter=charter)
    }
    added = removed = 0
    for (kind, holder_id), codenames in desired.items():
        holder = (
            User.objects.get(pk=holder_id) if kind == "user" else Group.objects.get(pk=holder_id)
        )
        existing = (
            set(get_perms(holder, charter)) if kind == "group" else _user_perms(holder, charter)
        )
        for codename in codenames:
            if (kind, holder_id, codename) in current:
                continue
            if codename in existing:
                continue  # the owner's or a share's: not RACI's to take away later
            assign_perm(codename, holder, charter)
            RaciGrant.objects.create(
                charter=charter, kind=kind, holder_id=holder_id, codename=codename
            )
            added += 1
    for (kind, holder_id, codename), grant in current.items():
        if codename in desired.get((kind, holder_id), set()):
            continue
        holder = (
            User.objects.filter(pk=holder_id).first()
            if kind == "user"
            else Group.objects.filter(pk=holder_id).first()
        )
        if holder is not None:
            remove_perm(codename, holder, charter)
        grant.delete()
        removed += 1
    if added or removed:
        audit.record(
            "permissions.recompute",
            actor=actor,
            obj=charter,
            data={"added": added, "removed": removed},
        )
    return {"added": added, "removed": removed}


def _user_perms(user, charter) -> set[str]:
    from apps.charters.models import CharterUserObjectPermission

    return set(
        CharterUserObjectPermission.objects.filter(user=user, content_object=charter).values_list(
            "permission__codename", flat=True
        )
    )


@transaction.atomic
def raci_assign(
    *,
    actor,
    charter: Charter | None,
    activity: str,
    role: str,
    user=None,
    group=None,
    note: str = "",
) -> RaciAssignment:
    """Name a person or group for an activity and role; permissions follow at once."""
    if not can_edit(actor, charter):
        raise PermissionDenied("You may not change this RACI matrix.")
    errors: dict[str, list[str]] = {}
    if activity not in Activity.values:
        errors["activity"] = [f"Choose one of: {', '.join(Activity.values)}."]
    if role not in Role.values:
        errors["role"] = ["Choose R, A, C or I."]
    if (user is None) == (group is None):
        errors["who"] = ["Name either a person or a group."]
    if user is not None and not user.is_active:
        errors["who"] = ["That account is disabled."]
    limit = RaciAssignment._meta.get_field("note").max_length
    if len(note or "") > limit:
        errors["note"] = [f"At most {limit} characters."]
    if errors:
        raise ValidationFailed("The assignment is not valid.", errors=errors)
    Charter.objects.select_for_update().filter(pk=getattr(charter, "pk", None)).first()
    same = RaciAssignment.objects.filter(charter=charter, activity=activity, role=role)
    if same.filter(models.Q(user=user) if user else models.Q(group=group)).exists():
        raise ValidationFailed(
            "That assignment already exists.", errors={"who": ["Already assigned."]}
        )
    if role == Role.ACCOUNTABLE and same.exists():
        holder = same.first()
        raise ValidationFailed(
            f"{Activity(activity).label} already has an Accountable ({holder.who}); "
            "remove that assignment first.",
            errors={"role": ["Exactly one Accountable per activity."]},
        )
    assignment = RaciAssignment(
        charter=charter,
        activity=activity,
        role=role,
        user=user,
        group=group,
        note=note,
        created_by=actor,
    )
    save_with_history(
        assignment, actor=actor, reason=f"{Role(role).label} for {Activity(activity).label}"
    )
    audit.record(
        "raci.assign",
        actor=actor,
        obj=charter or assignment,
        charter_id=getattr(charter, "pk", None),
        data={"activity": activity, "role": role, "who": assignment.who},
    )
    if charter is not None:
        permissions_recompute(charter=charter, actor=actor)
    return assignment


@transaction.atomic
def raci_remove(*, actor, assignment: RaciAssignment, reason: str = "") -> None:
    """Remove an assignment; the person loses what it granted at once."""
    charter = assignment.charter
    if not can_edit(actor, charter):
        raise PermissionDenied("You may not change this RACI matrix.")
    if (
        charter is not None
        and charter.status != CharterStatus.DRAFT
        and assignment.role == Role.ACCOUNTABLE
    ):
        others = RaciAssignment.objects.filter(
            charter=charter, activity=assignment.activity, role=Role.ACCOUNTABLE
        ).exclude(pk=assignment.pk)
        if (
            not others.exists()
            and not RaciAssignment.objects.filter(
                charter=None, activity=assignment.activity, role=Role.ACCOUNTABLE
            ).exists()
        ):
            raise ValidationFailed(
                "A charter past draft keeps exactly one Accountable per activity; name the new "
                "one first.",
                errors={"role": ["Last Accountable."]},
            )
    who = assignment.who
    delete_with_history(assignment, actor=actor, reason=reason or "Removed")
    audit.record(
        "raci.remove",
        actor=actor,
        obj=charter,
        object_type="approvals.raciassignment" if charter is None else "",
        object_id="global" if charter is None else "",
        charter_id=getattr(charter, "pk", None),
        data={
            "activity": assignment.activity,
            "role": assignment.role,
            "who": who,
            "reason": reason,
        },
    )
    if charter is not None:
        permissions_recompute(charter=charter, actor=actor)


def owner_changed(*, charter: Charter, actor=None) -> None:
    """charters' OWNER_CHANGE_HOOKS: the former owner lost the owner's rights; give back
    whatever their RACI roles still grant them."""
    permissions_recompute(charter=charter, actor=actor)
