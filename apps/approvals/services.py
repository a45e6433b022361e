"""Approval requests: opened with the approvers RACI names and the gate evidence, decided by
append-only decisions, executed automatically in the same transaction as the decision that
completes them (after the gate is re-checked), expired when left open too long."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from apps.core import audit
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.services import notification_send
from apps.prompts import permissions as prompt_permissions
from apps.prompts.choices import PROTECTED_LABELS, ChangeKind
from apps.prompts.models import Label, PromptVersion

from . import gates, raci
from .choices import (
    DECIDING_ACTIVITY,
    HIGH_RISK,
    Activity,
    RequestKind,
    RequestStatus,
    Role,
    Verdict,
)
from .models import ApprovalRequest, Decision

User = get_user_model()


def _slot(charter, activity: str, role: str) -> dict:
    assignments = raci.effective(charter, activity, role)
    return {
        "activity": activity,
        "role": role,
        "label": f"{Role(role).label} for {Activity(activity).label}",
        "who": ", ".join(a.who for a in assignments) or "nobody",
        "members": sorted(raci.members(assignments)),
    }


def required_slots(kind: str, charter, risk_tier: str) -> list[dict]:
    """Who must approve (Accountable), be asked (Consulted) and be told (Informed)."""
    activity = DECIDING_ACTIVITY[kind]
    slots = [
        _slot(charter, activity, role) for role in (Role.ACCOUNTABLE, Role.CONSULTED, Role.INFORMED)
    ]
    if risk_tier in HIGH_RISK:
        slots.append(_slot(charter, Activity.SIGN_OFF_HIGH_RISK, Role.ACCOUNTABLE))
    return [s for s in slots if s["members"] or s["role"] == Role.ACCOUNTABLE]


def expiry_hours() -> int:
    return int(getattr(settings, "APPROVALS_REQUEST_EXPIRY_HOURS", 24 * 14))


def _needs_full_approval(version: PromptVersion) -> bool:
    """Re-certification: major changes, or changed model configuration or variables."""
    if version.change_kind == ChangeKind.MAJOR:
        return True
    previous = (
        Label.objects.filter(prompt_id=version.prompt_id, name="production")
        .select_related("version")
        .first()
    )
    if previous is None:
        return True
    before = previous.version
    return before.model_config != version.model_config or before.variables != version.variables


def fast_track_allowed(version: PromptVersion) -> bool:
    """A patch on a prompt whose risk tier the policy lists, with nothing re-certifiable."""
    tiers = set(getattr(settings, "APPROVALS_FAST_TRACK_TIERS", ("low",)))
    return (
        version.change_kind == ChangeKind.PATCH
        and version.prompt.risk_level in tiers
        and not _needs_full_approval(version)
    )


def _notify(request: ApprovalRequest, people, verb: str, title: str, body: str) -> None:
    recipients = User.objects.filter(pk__in=set(people), is_active=True)
    notification_send(
        recipients=recipients,
        verb=verb,
        title=title,
        body=body,
        url=request.get_absolute_url(),
        dedupe_key=f"approval:{request.pk}:{verb}",
    )


def _people(request: ApprovalRequest, *roles: str) -> set[int]:
    return {pk for slot in request.required if slot["role"] in roles for pk in slot["members"]}


def refresh_evidence(request: ApprovalRequest) -> list[gates.GateResult]:
    """Re-run the gate and store what it found on the request."""
    results = gates.evaluate(request)
    request.evidence = [r.as_dict() for r in results]
    request.evidence_checked_at = timezone.now()
    request.save(update_fields=["evidence", "evidence_checked_at"])
    return results


@transaction.atomic
def promotion_request(
    *, actor, version: PromptVersion, label: str = "production", reason: str = ""
) -> ApprovalRequest:
    """Ask for a version to go onto a protected label; RACI says who decides.

    A patch on a low-risk prompt whose evaluation passes is fast-tracked where the policy
    allows it: it executes at once, with the gate evidence recorded, and no one is waited for.
    """
    prompt_permissions.require(actor, prompt_permissions.AUTHOR, version.prompt)
    name = slugify(label or "production")
    if (
        name not in PROTECTED_LABELS
        and not Label.objects.filter(
            prompt_id=version.prompt_id, name=name, protected=True
        ).exists()
    ):
        raise ValidationFailed(
            f"'{name}' is not a protected label; move it directly.",
            errors={"label": ["Only protected labels need an approval."]},
        )
    version = PromptVersion.objects.select_related("prompt__charter", "author").get(pk=version.pk)
    if ApprovalRequest.objects.filter(
        prompt_version=version, label=name, status=RequestStatus.OPEN
    ).exists():
        raise InvalidTransition("An approval request for this version and label is already open.")
    prompt = version.prompt
    request = ApprovalRequest(
        kind=RequestKind.PROMOTION,
        charter=prompt.charter,
        prompt_version=version,
        prompt=prompt,
        label=name,
        risk_tier=prompt.risk_level,
        requested_by=actor,
        reason=(reason or "").strip(),
        required=required_slots(RequestKind.PROMOTION, prompt.charter, prompt.risk_level),
        expires_at=timezone.now() + dt.timedelta(hours=expiry_hours()),
        fast_track=fast_track_allowed(version),
    )
    request._history_user = actor
    request._change_reason = "Requested"
    request.save()
    from apps.prompts.services import promotion_gate

    preconditions = [r for r in promotion_gate(version) if not r.passed]
    if preconditions:  # what the author can fix comes first: no request is opened
        raise ValidationFailed(
            "The release gate refused this promotion.",
            errors={"gate": [f"{r.check}: {r.reason}" for r in preconditions]},
        )
    results = refresh_evidence(request)
    audit.record(
        "approval.request",
        actor=actor,
        obj=request,
        charter_id=request.charter_id,
        data={"kind": request.kind, "subject": request.subject, "fast_track": request.fast_track},
    )
    if request.fast_track:
        blocking = [r for r in results if not r.passed and r.check != "accountable_approved"]
        if not blocking:
            _execute(
                request, actor, note="Fast-tracked: patch change, evaluation passed, low risk."
            )
            return request
        request.fast_track = False
        request.save(update_fields=["fast_track"])
    request.outcome = " ".join(f"{r.check}: {r.reason}" for r in results if not r.passed)
    request.save(update_fields=["outcome"])
    deciders = _people(request, Role.ACCOUNTABLE) | _people(request, Role.CONSULTED)
    transaction.on_commit(
        lambda: _notify(
            request,
            deciders - {actor.pk},
            "approval.requested",
            f"Approval requested: {request.subject}",
            f"{actor.get_full_name() or actor.get_username()} asks: {request.reason or 'no reason given'}",
        )
    )
    return request


def _execute(request: ApprovalRequest, actor, *, note: str) -> None:
    """Carry out an approved request (inside the deciding transaction)."""
    from apps.prompts.services import promotion_apply

    if request.kind == RequestKind.PROMOTION:
        promotion_apply(
            actor=actor,
            version=request.prompt_version,
            label=request.label,
            reason=f"Approval request #{request.pk}"
            + (f": {request.reason}" if request.reason else ""),
        )
    else:  # pragma: no cover - only promotions are opened so far
        raise InvalidTransition(f"{request.get_kind_display()} cannot execute yet.")
    now = timezone.now()
    request.status, request.closed_at, request.outcome = RequestStatus.EXECUTED, now, note
    request._history_user = actor
    request._change_reason = "Executed"
    request.save(update_fields=["status", "closed_at", "outcome"])
    audit.record(
        "approval.execute",
        actor=actor,
        obj=request,
        charter_id=request.charter_id,
        data={
            "subject": request.subject,
            "evidence": [r["check"] for r in request.evidence if r["passed"]],
        },
    )
    told = _people(request, Role.INFORMED, Role.ACCOUNTABLE, Role.CONSULTED) | {
        request.requested_by_id
    }
    if request.prompt_id:
        told |= set(
            User.objects.filter(
                owned_applications__consumptions__prompt=request.prompt
            ).values_list("pk", flat=True)
        )
    transaction.on_commit(
        lambda: _notify(
            request,
            told,
            "approval.executed",
            f"Done: {request.subject}",
            note,
        )
    )


def may_decide(user, request: ApprovalRequest) -> bool:
    """Accountable members (and compliance) decide; Consulted people may comment too."""
    return user.pk in _people(request, Role.ACCOUNTABLE) or user.has_perm("approvals.decide_any")


@transaction.atomic
def approval_decide(
    *, actor, request: ApprovalRequest, verdict: str, comment: str = ""
) -> ApprovalRequest:
    """Record a decision; the last required approval executes the request if the gate passes.

    The request row is locked: of two approvers deciding at the same moment, one executes
    and the other finds the request closed.
    """
    if verdict not in Verdict.values:
        raise ValidationFailed(
            "Unknown decision.",
            errors={"verdict": ["Choose approve, reject, request_changes or comment."]},
        )
    locked = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("prompt_version__prompt__charter", "charter", "requested_by")
        .get(pk=request.pk)
    )
    if locked.status != RequestStatus.OPEN:
        raise InvalidTransition(
            f"This request is {locked.get_status_display().lower()}; it takes no more decisions."
        )
    consulted = _people(locked, Role.CONSULTED, Role.INFORMED)
    deciding = may_decide(actor, locked)
    if verdict == Verdict.COMMENT:
        if not (deciding or actor.pk in consulted or actor.pk == locked.requested_by_id):
            raise PermissionDenied("Only the people RACI names may comment on this request.")
    elif verdict == Verdict.REQUEST_CHANGES:
        if not (deciding or actor.pk in _people(locked, Role.CONSULTED)):
            raise PermissionDenied("Only Accountable or Consulted people may ask for changes.")
    elif not deciding:
        raise PermissionDenied("Only the Accountable approvers may approve or reject this request.")
    if verdict == Verdict.APPROVE and actor.pk in gates._self_ids(locked):
        raise PermissionDenied("You cannot approve your own request or your own version.")
    if verdict in (Verdict.REJECT, Verdict.REQUEST_CHANGES) and not (comment or "").strip():
        raise ValidationFailed("Say why.", errors={"comment": ["A comment is required."]})
    roles = sorted({slot["role"] for slot in locked.required if actor.pk in slot["members"]})
    Decision.objects.create(
        request=locked, actor=actor, verdict=verdict, comment=(comment or "").strip(), roles=roles
    )
    audit.record(
        "approval.decide",
        actor=actor,
        obj=locked,
        charter_id=locked.charter_id,
        data={"verdict": verdict, "comment": (comment or "").strip(), "roles": roles},
    )
    if verdict in (Verdict.REJECT, Verdict.REQUEST_CHANGES):
        locked.status = (
            RequestStatus.REJECTED if verdict == Verdict.REJECT else RequestStatus.CHANGES_REQUESTED
        )
        locked.closed_at, locked.outcome = timezone.now(), (comment or "").strip()
        locked._history_user, locked._change_reason = actor, locked.get_status_display()
        locked.save(update_fields=["status", "closed_at", "outcome"])
        transaction.on_commit(
            lambda: _notify(
                locked,
                {locked.requested_by_id},
                f"approval.{verdict}",
                f"{locked.get_status_display()}: {locked.subject}",
                comment,
            )
        )
        return locked
    if verdict == Verdict.APPROVE:
        results = refresh_evidence(locked)
        if all(r.passed for r in results):
            _execute(
                locked, actor, note=f"Approved by {actor.get_username()}; every gate check passed."
            )
        else:
            waiting = [r for r in results if not r.passed]
            locked.outcome = " ".join(f"{r.check}: {r.reason}" for r in waiting)
            locked.save(update_fields=["outcome"])
    return locked


@transaction.atomic
def approval_withdraw(*, actor, request: ApprovalRequest, reason: str = "") -> ApprovalRequest:
    """The requester takes an open request back."""
    locked = ApprovalRequest.objects.select_for_update().get(pk=request.pk)
    if locked.requested_by_id != actor.pk:
        raise PermissionDenied("Only the requester may withdraw a request.")
    if locked.status != RequestStatus.OPEN:
        raise InvalidTransition("Only an open request can be withdrawn.")
    locked.status, locked.closed_at, locked.outcome = (
        RequestStatus.WITHDRAWN,
        timezone.now(),
        reason,
    )
    locked._history_user, locked._change_reason = actor, "Withdrawn"
    locked.save(update_fields=["status", "closed_at", "outcome"])
    return locked


def approvals_expire(now=None) -> int:
    """Close requests left open past their expiry (scheduled in beat); returns how many."""
    now = now or timezone.now()
    expired = 0
    for request in ApprovalRequest.objects.filter(status=RequestStatus.OPEN, expires_at__lt=now):
        with transaction.atomic():
            moved = ApprovalRequest.objects.filter(pk=request.pk, status=RequestStatus.OPEN).update(
                status=RequestStatus.EXPIRED, closed_at=now, outcome="Expired without a decision."
            )
            if moved:
                expired += 1
                transaction.on_commit(
                    lambda r=request: _notify(
                        r,
                        {r.requested_by_id} | _people(r, Role.ACCOUNTABLE),
                        "approval.expired",
                        f"Expired: {r.subject}",
                        "No decision arrived in time; ask again if it still matters.",
                    )
                )
    return expired


def inbox_for(user):
    """Open requests waiting for this person's decision or comment."""
    open_requests = ApprovalRequest.objects.filter(status=RequestStatus.OPEN).select_related(
        "prompt_version__prompt", "charter", "requested_by"
    )
    return [
        r
        for r in open_requests
        if user.pk in _people(r, Role.ACCOUNTABLE, Role.CONSULTED)
        and not r.decisions.filter(actor=user).exclude(verdict=Verdict.COMMENT).exists()
    ]


def visible_requests(user):
    """Requests the user may read: those of charters they see, and their own."""
    from apps.charters.selectors import charter_list_visible

    if user.has_perm("approvals.view_approvalrequest"):
        return ApprovalRequest.objects.all()
    return ApprovalRequest.objects.filter(
        Q(charter__in=charter_list_visible(user).values("pk")) | Q(requested_by=user)
    )


def summary(request: ApprovalRequest) -> dict[str, Any]:
    """A compact view of where the request stands (for pages and the API)."""
    latest = gates._approvals(request)
    return {
        "approvals": sorted(pk for pk, v in latest.items() if v == Verdict.APPROVE),
        "waiting": [r for r in request.evidence if not r["passed"]],
    }
