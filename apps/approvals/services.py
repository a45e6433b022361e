"""Approval requests: opened with the approvers RACI names and the gate evidence, decided by
append-only decisions, executed automatically in the same transaction as the decision that
completes them (after the gate is re-checked), expired when left open too long."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from apps.core import audit
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.history import save_with_history
from apps.core.services import notification_send
from apps.prompts import permissions as prompt_permissions
from apps.prompts.choices import PROTECTED_LABELS, ChangeKind
from apps.prompts.models import Label, PromptVersion
from apps.registry import permissions as registry_permissions
from apps.registry import services as registry_services

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
    _refuse_if_open(
        "An approval request for this version and label is already open.",
        prompt_version=version,
        label=name,
    )
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
    save_with_history(request, actor=actor, reason="Requested")
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

    if request.kind == RequestKind.PROMOTION:  # the label moves before the request closes
        promotion_apply(
            actor=actor,
            version=request.prompt_version,
            label=request.label,
            reason=f"Approval request #{request.pk}"
            + (f": {request.reason}" if request.reason else ""),
        )
    now = timezone.now()
    request.status, request.closed_at, request.outcome = RequestStatus.EXECUTED, now, note
    save_with_history(
        request, actor=actor, reason="Executed", update_fields=["status", "closed_at", "outcome"]
    )
    # Closed first: the charter's own transition hook then leaves this request alone.
    if request.kind == RequestKind.CHARTER_TRANSITION:
        from apps.charters.services import charter_transition

        charter_transition(
            actor=actor,
            charter=request.charter,
            name=request.transition,
            reason=f"Approval request #{request.pk}",
            decided=True,
        )
    elif request.kind == RequestKind.THRESHOLD_CHANGE:
        from apps.evaluations.services import suite_update, threshold_delete, threshold_set

        why = f"Approval request #{request.pk}: {request.reason}"
        if "suite_fields" in request.proposed:
            suite_update(
                actor=actor,
                suite=request.suite,
                fields=_suite_fields_from(request.proposed["suite_fields"]),
                reason=why[:100],
                decided=True,
            )
        elif request.proposed.get("delete"):
            if request.threshold is not None:
                threshold_delete(actor=actor, threshold=request.threshold, reason=why, decided=True)
        else:
            threshold_set(
                actor=actor,
                suite=request.suite,
                threshold=request.threshold,
                fields=request.proposed["fields"],
                reason=why,
                decided=True,
            )
    elif request.kind == RequestKind.ENDPOINT:
        registry_services.endpoint_apply(
            actor=actor,
            endpoint=request.endpoint,
            change=request.transition,
            fields=request.proposed.get("fields"),
            reason=f"Approval request #{request.pk}"
            + (f": {request.reason}" if request.reason else ""),
        )
    elif request.kind == RequestKind.RETIREMENT:
        from apps.prompts.models import Prompt
        from apps.prompts.services import prompt_retire

        successor = request.proposed.get("successor")
        prompt_retire(
            actor=actor,
            prompt=request.prompt,
            reason=request.reason or f"Approval request #{request.pk}",
            successor=Prompt.objects.filter(slug=successor).first() if successor else None,
        )
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


def current_slots(request: ApprovalRequest) -> list[dict]:
    """Who decides the request now: from the charter's current RACI (or the thresholds'
    current owners), never from who it was when the request opened."""
    if request.kind == RequestKind.THRESHOLD_CHANGE:
        if "suite_fields" in request.proposed and request.suite_id:
            from apps.evaluations.services.suites import other_threshold_owners

            owners = other_threshold_owners(request.suite, request.requested_by)
            return [
                _owner_slot(owner, f"Owner of a threshold of {request.suite.slug}")
                for owner in owners
            ] or request.required
        if request.threshold_id:
            return [_owner_slot(request.threshold.owner, "Owner of the threshold")]
        return request.required
    charter = request.charter
    if request.kind == RequestKind.PROMOTION and request.prompt_version_id:
        charter = request.prompt_version.prompt.charter
    return required_slots(request.kind, charter, request.risk_tier)


def refresh_approvers(request: ApprovalRequest, *, actor=None) -> bool:
    """Bring the request's approvers up to date; tell the new ones. True when they changed."""
    slots = current_slots(request)
    before = {(s["activity"], s["role"]): set(s["members"]) for s in request.required}
    after = {(s["activity"], s["role"]): set(s["members"]) for s in slots}
    if before == after:
        return False
    added = set().union(*after.values()) - set().union(*before.values()) if after else set()
    request.required = slots
    note = "Approvers updated from the current RACI"
    save_with_history(request, actor=actor, reason=note, update_fields=["required"])
    audit.record(
        "approval.request",
        actor=actor,
        obj=request,
        charter_id=request.charter_id,
        data={"kind": request.kind, "subject": request.subject, "approvers_changed": True},
    )
    if added:
        transaction.on_commit(
            lambda: _notify(
                request,
                added,
                "approval.requested",
                f"Approval requested: {request.subject}",
                "You now decide this request (the charter's RACI changed).",
            )
        )
    return True


def may_decide(user, request: ApprovalRequest) -> bool:
    """Accountable members decide (and anyone granted `approvals.decide_any`, which no group
    holds by default: compliance approves where the RACI makes it Accountable); Consulted
    people may comment too."""
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
    # Who may decide is who the RACI names now: someone removed since the request opened
    # decides nothing, and someone named since may.
    refresh_approvers(locked, actor=actor)
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
        save_with_history(
            locked,
            actor=actor,
            reason=locked.get_status_display(),
            update_fields=["status", "closed_at", "outcome"],
        )
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
    save_with_history(
        locked, actor=actor, reason="Withdrawn", update_fields=["status", "closed_at", "outcome"]
    )
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
    visible = Q(charter__in=charter_list_visible(user).values("pk")) | Q(requested_by=user)
    if registry_permissions.can(user, registry_permissions.OPERATE):
        visible |= Q(kind=RequestKind.ENDPOINT)
    return ApprovalRequest.objects.filter(visible)


def _refuse_if_open(message: str, **subject) -> None:
    """One open request per subject: a second waits for the first to be decided."""
    if ApprovalRequest.objects.filter(status=RequestStatus.OPEN, **subject).exists():
        raise InvalidTransition(message)


def _open(
    kind: str, *, actor, charter, required: list[dict], reason: str, notify: bool = True, **fields
) -> ApprovalRequest:
    """Open a request with its approvers and evidence, and tell the deciders."""
    request = ApprovalRequest(
        kind=kind,
        charter=charter,
        requested_by=actor,
        reason=(reason or "").strip(),
        required=required,
        risk_tier=getattr(charter, "risk_tier", "") or "",
        expires_at=timezone.now() + dt.timedelta(hours=expiry_hours()),
        **fields,
    )
    save_with_history(request, actor=actor, reason="Requested")
    results = refresh_evidence(request)
    request.outcome = " ".join(f"{r.check}: {r.reason}" for r in results if not r.passed)
    request.save(update_fields=["outcome"])
    audit.record(
        "approval.request",
        actor=actor,
        obj=request,
        charter_id=request.charter_id,
        data={"kind": kind, "subject": request.subject},
    )
    if notify:
        deciders = _people(request, Role.ACCOUNTABLE) | _people(request, Role.CONSULTED)
        transaction.on_commit(
            lambda: _notify(
                request,
                deciders - {actor.pk},
                "approval.requested",
                f"Approval requested: {request.subject}",
                request.reason or "",
            )
        )
    return request


DECIDED_TRANSITIONS = {"go_live", "retire", "resume"}


@transaction.atomic
def charter_transition_request(*, actor, charter, name: str, reason: str = "") -> ApprovalRequest:
    """Ask the Accountable for a charter status change that needs a decision (go live)."""
    from apps.charters import permissions as charter_permissions
    from apps.charters.services import TRANSITIONS

    # Those who run the charter ask, and so may compliance (who then cannot approve it).
    charter_permissions.require(actor, charter_permissions.OPERATE, charter)
    if name not in DECIDED_TRANSITIONS or name not in TRANSITIONS:
        raise ValidationFailed(
            "That change does not go through an approval request.",
            errors={"transition": [f"Choose one of: {', '.join(sorted(DECIDED_TRANSITIONS))}."]},
        )
    if charter.status not in TRANSITIONS[name].sources:
        raise InvalidTransition(
            f"A {charter.get_status_display().lower()} charter cannot {TRANSITIONS[name].label.lower()}."
        )
    _refuse_if_open(
        "A charter decision is already waiting for approval.",
        charter=charter,
        kind=RequestKind.CHARTER_TRANSITION,
    )
    return _open(
        RequestKind.CHARTER_TRANSITION,
        actor=actor,
        charter=charter,
        transition=name,
        reason=reason,
        required=required_slots(RequestKind.CHARTER_TRANSITION, charter, charter.risk_tier),
    )


def charter_transitioned(*, actor, charter, name: str, reason: str, override: bool = False) -> None:
    """Hook run by every charter transition: a submission opens the approval request that
    compliance decides; a direct decision (approve, reject, withdraw) closes it; an override
    tells the owner and the Accountable for approving charters."""
    if override:
        told = {charter.business_owner_id} | set(
            raci.members(raci.effective(charter, Activity.APPROVE_CHARTER, Role.ACCOUNTABLE))
        )
        transaction.on_commit(
            lambda: notification_send(
                recipients=User.objects.filter(pk__in=told - {actor.pk}, is_active=True),
                verb="charter.override",
                title=f"Override: {charter.title} is now {charter.get_status_display().lower()}",
                body=f"{actor.get_full_name() or actor.get_username()} ({name}): {reason}",
                url=charter.get_absolute_url(),
                dedupe_key=f"charter-override:{charter.pk}:{charter.updated_at.isoformat()}",
            )
        )
    open_request = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .filter(charter=charter, kind=RequestKind.CHARTER_TRANSITION, status=RequestStatus.OPEN)
        .first()
    )
    if name == "submit":
        if open_request is None:
            _open(
                RequestKind.CHARTER_TRANSITION,
                actor=actor,
                charter=charter,
                transition="approve",
                reason="Submitted for approval",
                notify=False,  # the charter's own submission notice already tells compliance
                required=required_slots(RequestKind.CHARTER_TRANSITION, charter, charter.risk_tier),
            )
        return
    if open_request is None:
        return
    closing = {
        "approve": (RequestStatus.EXECUTED, Verdict.APPROVE),
        "go_live": (RequestStatus.EXECUTED, Verdict.APPROVE),
        "retire": (RequestStatus.EXECUTED, Verdict.APPROVE),
        "resume": (RequestStatus.EXECUTED, Verdict.APPROVE),
        "reject": (RequestStatus.REJECTED, Verdict.REJECT),
        "withdraw": (RequestStatus.WITHDRAWN, None),
    }.get(name)
    if closing is None or (
        name != "withdraw" and name != "reject" and open_request.transition != name
    ):
        return
    status, verdict = closing
    if verdict is not None:
        roles = sorted(
            {slot["role"] for slot in open_request.required if actor.pk in slot["members"]}
        )
        Decision.objects.create(
            request=open_request, actor=actor, verdict=verdict, comment=reason, roles=roles
        )
    open_request.status, open_request.closed_at = status, timezone.now()
    open_request.outcome = f"Decided directly on the charter ({name})" + (
        f": {reason}" if reason else ""
    )
    save_with_history(
        open_request,
        actor=actor,
        reason=f"Closed by {name}",
        update_fields=["status", "closed_at", "outcome"],
    )


@transaction.atomic
def threshold_change(*, actor, threshold, fields: dict, reason: str = ""):
    """Change a threshold: its owner does it at once; anyone else asks the owner.

    Returns the threshold (changed) or the approval request (opened)."""
    from apps.evaluations import permissions as evaluation_permissions
    from apps.evaluations.services import threshold_set

    suite = threshold.suite
    evaluation_permissions.require(actor, evaluation_permissions.AUTHOR, suite)
    if threshold.owner_id == actor.pk:
        return threshold_set(
            actor=actor, suite=suite, threshold=threshold, fields=fields, reason=reason
        )
    slot = _owner_slot(threshold.owner, "Owner of the threshold")
    cleaned = {k: (v.pk if hasattr(v, "pk") else v) for k, v in fields.items() if k != "owner"}
    summary = f"{threshold} → " + ", ".join(f"{k}={v}" for k, v in cleaned.items())
    return _open(
        RequestKind.THRESHOLD_CHANGE,
        actor=actor,
        charter=suite.charter,
        suite=suite,
        threshold=threshold,
        proposed={"fields": cleaned, "summary": summary[:200]},
        reason=reason,
        required=[slot],
    )


@transaction.atomic
def retirement_request(*, actor, prompt, reason: str, successor=None):
    """Retire a prompt: at once when nothing reads it; with approval when applications do.

    Returns the retired prompt or the approval request."""
    from apps.prompts.services import prompt_retire

    prompt_permissions.require(actor, prompt_permissions.RETIRE, prompt)
    if not (reason or "").strip():
        raise ValidationFailed(
            "A reason is required to retire.", errors={"reason": ["This field is required."]}
        )
    if not prompt.consumers.exists():
        return prompt_retire(actor=actor, prompt=prompt, reason=reason, successor=successor)
    _refuse_if_open(
        "A retirement request for this prompt is already open.",
        prompt=prompt,
        kind=RequestKind.RETIREMENT,
    )
    return _open(
        RequestKind.RETIREMENT,
        actor=actor,
        charter=prompt.charter,
        prompt=prompt,
        reason=reason,
        proposed={"successor": successor.slug if successor else None},
        required=required_slots(RequestKind.RETIREMENT, prompt.charter, prompt.risk_level),
    )


@transaction.atomic
def endpoint_request(*, actor, endpoint, change: str, reason: str = "", fields=None):
    """Ask compliance (the Accountable for approving model endpoints) to approve, reinstate or
    retire an endpoint, or to change where its data goes (`fields`, change="change")."""
    from apps.registry.models import ModelEndpoint

    registry_permissions.require(actor, registry_permissions.PROPOSE)
    endpoint = ModelEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    governed = (
        registry_services.governed_changes(endpoint, fields or {}) if change == "change" else {}
    )
    return _endpoint_request(
        actor=actor, endpoint=endpoint, change=change, reason=reason, governed=governed
    )


def _endpoint_request(*, actor, endpoint, change: str, reason: str, governed: dict):
    """Open the request on a locked endpoint; `governed` are the cleaned fields that differ."""
    problem = registry_services.change_problem(endpoint, change)
    if problem:
        raise InvalidTransition(problem)
    proposed: dict = {}
    if change == "change":
        if not governed:
            raise ValidationFailed(
                "Nothing to decide: no field that says where data goes would change.",
                errors={"fields": ["Change at least one governed field."]},
            )
        proposed = {
            "fields": {k: _plain(v) for k, v in governed.items()},
            "before": {k: _plain(getattr(endpoint, k)) for k in governed},
        }
        proposed["summary"] = ", ".join(
            f"{k}: {proposed['before'][k]!r} → {proposed['fields'][k]!r}" for k in sorted(governed)
        )[:500]
    _refuse_if_open(
        "A decision on this endpoint is already waiting for approval.",
        endpoint=endpoint,
        kind=RequestKind.ENDPOINT,
    )
    return _open(
        RequestKind.ENDPOINT,
        actor=actor,
        charter=None,
        endpoint=endpoint,
        transition=change,
        proposed=proposed,
        reason=reason,
        required=required_slots(RequestKind.ENDPOINT, None, ""),
    )


def _plain(value):
    return value if isinstance(value, bool | int | list | type(None) | str) else str(value)


@transaction.atomic
def endpoint_change(*, actor, endpoint, fields, reason: str = ""):
    """Edit an endpoint through the one governed path: fields that do not decide where data
    goes (and everything while it is proposed) change at once; the others become a request.

    Returns the endpoint (changed) or the approval request (opened)."""
    from apps.registry.choices import EndpointStatus

    fields = dict(fields)
    if endpoint.status == EndpointStatus.PROPOSED:
        return registry_services.endpoint_edit(actor=actor, endpoint=endpoint, fields=fields)
    governed = registry_services.governed_changes(endpoint, fields)
    undecided = {
        k: v
        for k, v in fields.items()
        if k not in registry_services.GOVERNED_FIELDS and k != "allow_private_reason"
    }
    endpoint = registry_services.endpoint_edit(actor=actor, endpoint=endpoint, fields=undecided)
    if not governed:
        return endpoint
    return _endpoint_request(
        actor=actor, endpoint=endpoint, change="change", reason=reason, governed=governed
    )


def _owner_slot(user, label: str) -> dict:
    return {
        "activity": Activity.OWN_EVALUATION_THRESHOLDS,
        "role": Role.ACCOUNTABLE,
        "label": label,
        "who": user.get_full_name() or user.get_username(),
        "members": [user.pk],
    }


@transaction.atomic
def threshold_remove(*, actor, threshold, reason: str = ""):
    """Remove a threshold: its owner at once; anyone else asks the owner.

    Returns None (removed) or the approval request (opened)."""
    from apps.evaluations import permissions as evaluation_permissions
    from apps.evaluations.services import threshold_delete

    suite = threshold.suite
    evaluation_permissions.require(actor, evaluation_permissions.AUTHOR, suite)
    if threshold.owner_id == actor.pk:
        threshold_delete(actor=actor, threshold=threshold, reason=reason)
        return None
    return _open(
        RequestKind.THRESHOLD_CHANGE,
        actor=actor,
        charter=suite.charter,
        suite=suite,
        threshold=threshold,
        proposed={"delete": True, "summary": f"remove {threshold}"[:200]},
        reason=reason,
        required=[_owner_slot(threshold.owner, "Owner of the threshold")],
    )


def _plain_suite_value(value):
    return value.pk if hasattr(value, "pk") else value


@transaction.atomic
def suite_change(*, actor, suite, fields, reason: str = ""):
    """Change a suite through the one governed path: its name and description at once; what
    its gate tests (prompt, dataset version, scorers, tolerance, minimum segment size) at once
    only when nobody else owns one of its thresholds, else as a request every other owner
    decides. Returns the suite (changed) or the approval request (opened)."""
    from apps.evaluations import permissions as evaluation_permissions
    from apps.evaluations.services import suite_update
    from apps.evaluations.services.suites import gate_changes, other_threshold_owners

    evaluation_permissions.require(actor, evaluation_permissions.AUTHOR, suite)
    fields = dict(fields)
    gated = gate_changes(suite, fields)
    owners = other_threshold_owners(suite, actor)
    if not gated or not owners:
        return suite_update(actor=actor, suite=suite, fields=fields, reason=reason)
    rest = {k: v for k, v in fields.items() if k not in gated and k not in ("slug", "charter")}
    rest = {k: v for k, v in rest.items() if getattr(suite, k, None) != v}
    if rest:
        suite_update(actor=actor, suite=suite, fields=rest, reason=reason)
    _refuse_if_open(
        "A change of this suite's gate is already waiting for approval.",
        suite=suite,
        kind=RequestKind.THRESHOLD_CHANGE,
        proposed__has_key="suite_fields",
    )
    proposed = {k: _plain_suite_value(v) for k, v in gated.items()}
    before = {k: _plain_suite_value(getattr(suite, k)) for k in gated}
    summary = f"{suite.slug}: " + ", ".join(
        f"{k} {before[k]!r} → {proposed[k]!r}" for k in sorted(proposed)
    )
    return _open(
        RequestKind.THRESHOLD_CHANGE,
        actor=actor,
        charter=suite.charter,
        suite=suite,
        proposed={"suite_fields": proposed, "before": before, "summary": summary[:200]},
        reason=reason,
        required=[_owner_slot(owner, f"Owner of a threshold of {suite.slug}") for owner in owners],
    )


def _suite_fields_from(proposed: dict) -> dict:
    """The objects a decided suite change names (kept as ids in the request)."""
    from apps.evaluations.models import DatasetVersion
    from apps.prompts.models import Prompt

    fields = dict(proposed)
    if "dataset_version" in fields:
        fields["dataset_version"] = DatasetVersion.objects.get(pk=fields["dataset_version"])
    if "prompt" in fields and fields["prompt"] is not None:
        fields["prompt"] = Prompt.objects.get(pk=fields["prompt"])
    return fields
