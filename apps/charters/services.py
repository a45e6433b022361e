"""Every write to a charter: creation, edits, sharing and the lifecycle transitions.

Each function checks permission, guards state, writes inside one transaction,
records the acting user and reason on the history rows, and enqueues
notifications with `transaction.on_commit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.text import slugify
from guardian.shortcuts import assign_perm, remove_perm

from apps.core import audit
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.history import delete_with_history, save_with_history
from apps.registry import selectors as registry_selectors
from apps.registry import services as registry_services

from . import permissions
from .choices import CharterStatus, MetricDirection, MetricLayer, MetricRole
from .models import Charter, Dependency, Metric

User = get_user_model()

CHARTER_FIELDS = (
    "title",
    "slug",
    "problem",
    "process",
    "proof",
    "business_owner",
    "target_users",
    "risk_tier",
    "data_sensitivity",
    "intended_use",
    "review_date",
    "retirement_condition",
)
METRIC_FIELDS = (
    "name",
    "description",
    "layer",
    "role",
    "unit",
    "direction",
    "baseline_value",
    "target_value",
    "guardrail_value",
    "allowed_segment_keys",
)
DEPENDENCY_FIELDS = ("kind", "name", "criticality", "notes", "endpoint")
# Text sections a charter must fill in before it can be submitted.
REQUIRED_SECTIONS = (
    "title",
    "problem",
    "process",
    "proof",
    "target_users",
    "intended_use",
    "retirement_condition",
)
OWNER_PERMS = ("view_charter", "change_charter", "delete_charter")
ACCESS_LEVELS = {"view": ("view_charter",), "change": ("view_charter", "change_charter")}


# --- helpers ---------------------------------------------------------------------------------


_save = save_with_history
_delete = delete_with_history


def _errors_from(exc: DjangoValidationError, prefix: str = "") -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {f"{prefix}{field}": list(msgs) for field, msgs in exc.message_dict.items()}
    return {f"{prefix}non_field_errors": list(exc.messages)}


def _unique_slug(title: str, *, exclude_pk: int | None = None) -> str:
    base = slugify(title)[:70] or "charter"
    candidate, n = base, 2
    taken = Charter.objects.exclude(pk=exclude_pk)
    while taken.filter(slug=candidate).exists():
        candidate = f"{base}-{n}"
        n += 1
    return candidate


def _unknown(data: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> dict:
    extra = set(data) - set(allowed) - {"id"}
    return {f"{prefix}{key}": ["Unknown field."] for key in sorted(extra)}


def _grant_owner(charter: Charter, user) -> None:
    for codename in OWNER_PERMS:
        assign_perm(codename, user, charter)


def _apply_children(
    *,
    charter: Charter,
    model,
    rows: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    label: str,
    actor,
    reason: str,
) -> dict[str, list[str]]:
    """Make the charter's metrics or dependencies equal to `rows` (id = update, none = create).

    Returns field errors keyed `<label>[<index>].<field>`; writes nothing the caller
    will keep when errors are returned (the caller's transaction rolls back).
    """
    errors: dict[str, list[str]] = {}
    existing = {obj.pk: obj for obj in model.objects.filter(charter=charter)}
    original_names = {pk: obj.name for pk, obj in existing.items()}
    kept: set[int] = set()
    staged = []
    for index, row in enumerate(rows):
        prefix = f"{label}[{index}]."
        errors.update(_unknown(row, fields, prefix))
        pk = row.get("id")
        if pk:
            obj = existing.get(int(pk))
            if obj is None:
                errors[f"{prefix}id"] = [f"No such {label[:-1]} on this charter."]
                continue
            kept.add(obj.pk)
        else:
            obj = model(charter=charter)
        for field in fields:
            if field in row:
                value = row[field]
                if field == "endpoint" and not hasattr(value, "pk"):
                    value = registry_selectors.endpoint_by_slug(value) if value else None
                    if value is None and row[field]:
                        errors[f"{prefix}endpoint"] = ["No such model endpoint in the registry."]
                setattr(obj, field, value)
        try:
            obj.full_clean(exclude=["charter"], validate_unique=False)
        except DjangoValidationError as exc:
            errors.update(_errors_from(exc, prefix))
        staged.append((index, obj))
    names: dict[tuple, int] = {}
    for index, obj in staged:
        key = (getattr(obj, "kind", None), (obj.name or "").strip().lower())
        if key in names:
            errors.setdefault(f"{label}[{index}].name", []).append(
                f"Duplicates {label[:-1]} #{names[key] + 1}."
            )
        names[key] = index
    if errors:
        return errors
    for obj in existing.values():
        if obj.pk not in kept:
            _delete(obj, actor=actor, reason=reason)
    # Rows that swap names would collide on the unique constraint mid-way: park renamed
    # rows under a temporary name first (without a history row), then save the real values.
    renamed = [obj for _, obj in staged if obj.pk and obj.name != original_names[obj.pk]]
    if renamed:
        model.objects.filter(pk__in=[obj.pk for obj in renamed]).update(
            name=Concat(Value("~renaming~"), "pk")
        )
    for _, obj in staged:
        _save(obj, actor=actor, reason=reason)
    return {}


def _validate_charter(charter: Charter) -> dict[str, list[str]]:
    try:
        charter.full_clean(exclude=["created_by", "slug"])
    except DjangoValidationError as exc:
        return _errors_from(exc)
    return {}


# --- create, edit, delete -----------------------------------------------------------------------


@transaction.atomic
def charter_create(
    *,
    actor,
    fields: Mapping[str, Any],
    metrics: Sequence[Mapping[str, Any]] = (),
    dependencies: Sequence[Mapping[str, Any]] = (),
) -> Charter:
    """Create a draft charter with its metrics and dependencies; the owner gets access."""
    permissions.require_create(actor)
    errors = _unknown(fields, CHARTER_FIELDS)
    charter = Charter(created_by=actor, business_owner=fields.get("business_owner") or actor)
    for field in CHARTER_FIELDS:
        if field in fields and field != "business_owner":
            setattr(charter, field, fields[field])
    if charter.slug:
        if Charter.objects.filter(slug=charter.slug).exists():
            errors["slug"] = ["A charter with this slug already exists."]
    else:
        charter.slug = _unique_slug(charter.title or "")
    errors.update(_validate_charter(charter))
    if errors:
        raise ValidationFailed("The charter is not valid.", errors=errors)
    _save(charter, actor=actor, reason="Created")
    reason = "Created with charter"
    errors.update(
        _apply_children(
            charter=charter,
            model=Metric,
            rows=metrics,
            fields=METRIC_FIELDS,
            label="metrics",
            actor=actor,
            reason=reason,
        )
    )
    errors.update(
        _apply_children(
            charter=charter,
            model=Dependency,
            rows=dependencies,
            fields=DEPENDENCY_FIELDS,
            label="dependencies",
            actor=actor,
            reason=reason,
        )
    )
    if errors:
        raise ValidationFailed("The charter is not valid.", errors=errors)
    _grant_owner(charter, charter.business_owner)
    if actor.pk != charter.business_owner_id:
        _grant_owner(charter, actor)
    return charter


def _lock_editable(actor, charter: Charter) -> Charter:
    permissions.require(actor, permissions.CHANGE, charter)
    locked = Charter.objects.select_for_update().get(pk=charter.pk)
    if not locked.is_editable:
        raise InvalidTransition(
            f"Only draft charters can be edited; this one is {locked.get_status_display().lower()}."
            " Withdraw it (or have it rejected) to change it."
        )
    return locked


@transaction.atomic
def charter_update(
    *,
    actor,
    charter: Charter,
    fields: Mapping[str, Any],
    metrics: Sequence[Mapping[str, Any]] | None = None,
    dependencies: Sequence[Mapping[str, Any]] | None = None,
) -> Charter:
    """Edit a draft charter; `metrics`/`dependencies`, when given, replace the current lists."""
    locked = _lock_editable(actor, charter)
    errors = _unknown(fields, CHARTER_FIELDS)
    previous_owner_id = locked.business_owner_id
    for field in CHARTER_FIELDS:
        if field in fields:
            setattr(locked, field, fields[field])
    if "slug" in fields and Charter.objects.exclude(pk=locked.pk).filter(slug=locked.slug).exists():
        errors["slug"] = ["A charter with this slug already exists."]
    errors.update(_validate_charter(locked))
    if errors:
        raise ValidationFailed("The charter is not valid.", errors=errors)
    reason = "Edited"
    _save(locked, actor=actor, reason=reason)
    if metrics is not None:
        errors.update(
            _apply_children(
                charter=locked,
                model=Metric,
                rows=metrics,
                fields=METRIC_FIELDS,
                label="metrics",
                actor=actor,
                reason=reason,
            )
        )
    if dependencies is not None:
        errors.update(
            _apply_children(
                charter=locked,
                model=Dependency,
                rows=dependencies,
                fields=DEPENDENCY_FIELDS,
                label="dependencies",
                actor=actor,
                reason=reason,
            )
        )
    if errors:
        raise ValidationFailed("The charter is not valid.", errors=errors)
    if locked.business_owner_id != previous_owner_id:
        _grant_owner(locked, locked.business_owner)
        # A handover takes the former owner's rights away (share them back explicitly);
        # rights their RACI roles give them are recomputed by the hooks (approvals).
        previous = get_user_model().objects.filter(pk=previous_owner_id).first()
        if previous is not None:
            for codename in OWNER_PERMS:
                remove_perm(codename, previous, locked)
        audit.record(
            "charter.owner",
            actor=actor,
            obj=locked,
            data={"from": previous_owner_id, "to": locked.business_owner_id},
        )
        for hook in OWNER_CHANGE_HOOKS:
            hook(charter=locked, actor=actor)
    return locked


@transaction.atomic
def charter_delete(*, actor, charter: Charter) -> None:
    """Delete a draft charter (anything past draft is retired instead, to keep its record)."""
    locked = _lock_editable(actor, charter)
    _delete(locked, actor=actor, reason="Deleted draft")


@transaction.atomic
def metric_create(*, actor, charter: Charter, fields: Mapping[str, Any]) -> Metric:
    """Add one metric to a draft charter."""
    locked = _lock_editable(actor, charter)
    errors = _unknown(fields, METRIC_FIELDS)
    metric = Metric(charter=locked, **{k: v for k, v in fields.items() if k in METRIC_FIELDS})
    try:
        metric.full_clean(exclude=["charter"])
    except DjangoValidationError as exc:
        errors.update(_errors_from(exc))
    if errors:
        raise ValidationFailed("The metric is not valid.", errors=errors)
    _save(metric, actor=actor, reason="Metric added")
    return metric


@transaction.atomic
def metric_update(*, actor, metric: Metric, fields: Mapping[str, Any]) -> Metric:
    """Change one metric of a draft charter."""
    _lock_editable(actor, metric.charter)
    errors = _unknown(fields, METRIC_FIELDS)
    for field in METRIC_FIELDS:
        if field in fields:
            setattr(metric, field, fields[field])
    try:
        metric.full_clean(exclude=["charter"])
    except DjangoValidationError as exc:
        errors.update(_errors_from(exc))
    if errors:
        raise ValidationFailed("The metric is not valid.", errors=errors)
    _save(metric, actor=actor, reason="Metric edited")
    return metric


@transaction.atomic
def metric_delete(*, actor, metric: Metric) -> None:
    """Remove one metric from a draft charter."""
    _lock_editable(actor, metric.charter)
    _delete(metric, actor=actor, reason="Metric removed")


# --- sharing ---------------------------------------------------------------------------------------


@transaction.atomic
def charter_share(*, actor, charter: Charter, user, access: str) -> Charter:
    """Give a person view or change access to the charter."""
    permissions.require(actor, permissions.CHANGE, charter)
    if access not in ACCESS_LEVELS:
        raise ValidationFailed(
            "Unknown access level.", errors={"access": ["Choose view or change."]}
        )
    if not user.is_active:
        raise ValidationFailed("That account is disabled.", errors={"user": ["Inactive user."]})
    for codename in ("change_charter", "delete_charter"):
        remove_perm(codename, user, charter)
    for codename in ACCESS_LEVELS[access]:
        assign_perm(codename, user, charter)
    audit.record(
        "charter.share",
        actor=actor,
        obj=charter,
        data={"user": user.get_username(), "access": access},
    )
    return charter


@transaction.atomic
def charter_unshare(*, actor, charter: Charter, user) -> Charter:
    """Take a person's access away at once (the business owner keeps theirs)."""
    permissions.require(actor, permissions.CHANGE, charter)
    if user.pk == charter.business_owner_id:
        raise ValidationFailed(
            "The business owner's access cannot be removed.",
            errors={"user": ["Change the business owner first."]},
        )
    for codename in OWNER_PERMS:
        remove_perm(codename, user, charter)
    audit.record("charter.unshare", actor=actor, obj=charter, data={"user": user.get_username()})
    return charter


# --- completeness -------------------------------------------------------------------------------


def _better(direction: str, target: Decimal, baseline: Decimal) -> bool:
    return target > baseline if direction == MetricDirection.INCREASE else target < baseline


def charter_completeness_errors(charter: Charter) -> dict[str, list[str]]:
    """Everything that stops a charter from being submitted, field by field."""
    errors: dict[str, list[str]] = {}
    for field in REQUIRED_SECTIONS:
        if not (getattr(charter, field) or "").strip():
            label = Charter._meta.get_field(field).verbose_name
            errors[field] = [f"{label.capitalize()} is required before submitting."]
    if charter.review_date is None:
        errors["review_date"] = ["A review date is required before submitting."]
    elif charter.review_date <= timezone.localdate():
        errors["review_date"] = ["The review date must be in the future."]

    metrics = list(charter.metrics.all())
    primary = [m for m in metrics if m.role == MetricRole.PRIMARY]
    supporting = [m for m in metrics if m.role == MetricRole.SUPPORTING]
    metric_errors: list[str] = []
    if len(primary) != 1:
        metric_errors.append(
            f"Exactly one primary business-outcome metric is required; found {len(primary)}."
        )
    for metric in primary:
        if metric.layer != MetricLayer.BUSINESS_OUTCOME:
            errors[f"metrics[{metric.name}].layer"] = [
                "The primary metric must be in the business outcome layer."
            ]
    if len(supporting) < 2:
        metric_errors.append(
            f"At least two supporting metrics are required; found {len(supporting)}."
        )
    if metric_errors:
        errors["metrics"] = metric_errors
    for metric in metrics:
        key = f"metrics[{metric.name}]"
        if metric.baseline_value is None:
            errors[f"{key}.baseline_value"] = ["A baseline value is required."]
        if metric.target_value is None:
            errors[f"{key}.target_value"] = ["A target value is required."]
        if (
            metric.baseline_value is not None
            and metric.target_value is not None
            and not _better(metric.direction, metric.target_value, metric.baseline_value)
        ):
            word = "above" if metric.direction == MetricDirection.INCREASE else "below"
            errors[f"{key}.target_value"] = [
                f"The target must be {word} the baseline for a metric where "
                f"{metric.get_direction_display().lower()}."
            ]
    if not charter.dependencies.exists():
        errors["dependencies"] = [
            "At least one dependency (system, data, team, vendor or model) is required."
        ]
    return errors


# --- lifecycle -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One edge of the charter lifecycle."""

    name: str
    label: str
    sources: tuple[str, ...]
    target: str
    action: str
    needs_reason: bool = False


S = CharterStatus
TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition("submit", "Submit for approval", (S.DRAFT,), S.SUBMITTED, permissions.CHANGE),
        Transition("withdraw", "Withdraw", (S.SUBMITTED,), S.DRAFT, permissions.CHANGE),
        Transition("approve", "Approve", (S.SUBMITTED,), S.APPROVED, permissions.DECIDE),
        Transition(
            "reject", "Reject", (S.SUBMITTED,), S.DRAFT, permissions.DECIDE, needs_reason=True
        ),
        Transition("start_pilot", "Start pilot", (S.APPROVED,), S.PILOT, permissions.CHANGE),
        Transition("go_live", "Take to production", (S.PILOT,), S.PRODUCTION, permissions.DECIDE),
        Transition(
            "pause", "Pause", (S.PRODUCTION,), S.PAUSED, permissions.OPERATE, needs_reason=True
        ),
        Transition("resume", "Resume", (S.PAUSED,), S.PRODUCTION, permissions.OPERATE),
        Transition(
            "retire",
            "Retire",
            (S.APPROVED, S.PILOT, S.PRODUCTION, S.PAUSED),
            S.RETIRED,
            permissions.OPERATE,
            needs_reason=True,
        ),
    )
}
# Decisions that must come from someone other than the charter's own business owner.
NO_SELF_DECISION = {"approve", "reject", "go_live"}
# Taking a charter to production needs a second person, compliance included: the Accountable
# decides a request for it (approvals); the transition itself runs only as that decision.
FOUR_EYES = {"go_live"}
# Operating a charter (pause, resume, retire) is the owner's and Responsibles' work; someone
# who does it only by holding the decide right (compliance) makes a recorded override.
OVERRIDABLE = {"pause", "resume", "retire"}
# What the apps above charters add to its lifecycle without charters importing them:
# TRANSITION_HOOKS run after every transition (approvals opens or closes the decision's
# request); SUBMIT_CHECKS return field errors that block a submission (approvals: RACI).
TRANSITION_HOOKS: list = []
SUBMIT_CHECKS: list = []
# Run after a charter changes hands (approvals recomputes RACI-derived permissions).
OWNER_CHANGE_HOOKS: list = []


def charter_available_transitions(*, user, charter: Charter, checker=None) -> list[Transition]:
    """The transitions this user could attempt now (used to draw buttons)."""
    return [
        t
        for t in TRANSITIONS.values()
        if charter.status in t.sources
        and permissions.can(user, t.action, charter, checker=checker)
        and not (t.name in NO_SELF_DECISION and user.pk == charter.business_owner_id)
    ]


@transaction.atomic
def charter_transition(
    *, actor, charter: Charter, name: str, reason: str = "", decided: bool = False
) -> Charter:
    """Move a charter along one lifecycle edge, or refuse with the reason.

    `decided` is set by the approvals workflow alone, when it executes an approved request:
    a go-live happens only that way (four eyes)."""
    transition = TRANSITIONS.get(name)
    if transition is None:
        raise ValidationFailed(f"Unknown transition {name!r}.", errors={"transition": ["Unknown."]})
    permissions.require(actor, transition.action, charter)
    locked = Charter.objects.select_for_update().get(pk=charter.pk)
    if name in NO_SELF_DECISION and actor.pk == locked.business_owner_id:
        raise PermissionDenied("The business owner cannot decide on their own charter.")
    override = (
        not decided
        and name in OVERRIDABLE
        and not permissions.can(actor, permissions.CHANGE, locked)
    )
    if override and not (reason or "").strip():
        raise ValidationFailed(
            "Acting on a charter you do not run is a recorded override: give the reason.",
            errors={"reason": ["This field is required."]},
        )
    if locked.status not in transition.sources:
        allowed = ", ".join(CharterStatus(s).label.lower() for s in transition.sources)
        raise InvalidTransition(
            f"Cannot {transition.label.lower()} a charter that is "
            f"{locked.get_status_display().lower()}; it must be {allowed}."
        )
    if name in FOUR_EYES and not decided:
        raise InvalidTransition(
            "Taking a charter to production needs a second person: ask for it (an approval "
            "request the Accountable for approving charters decides, never the person asking)."
        )
    reason = (reason or "").strip()
    if transition.needs_reason and not reason:
        raise ValidationFailed(
            f"A reason is required to {transition.label.lower()}.",
            errors={"reason": ["This field is required."]},
        )
    if name == "submit":
        errors = charter_completeness_errors(locked)
        for check in SUBMIT_CHECKS:
            errors.update(check(locked))
        if errors:
            raise ValidationFailed("The charter is not complete enough to submit.", errors=errors)

    now = timezone.now()
    locked.status = transition.target
    locked.status_reason = reason
    update = ["status", "status_reason", "updated_at"]
    if name == "submit":
        locked.submitted_at = now
        update.append("submitted_at")
    if name == "approve":
        locked.approved_at, locked.approved_by = now, actor
        update += ["approved_at", "approved_by"]
    change_reason = f"{transition.label}" + (f": {reason}" if reason else "")
    _save(locked, actor=actor, reason=change_reason, update_fields=update)
    verb = f"charter.{name}" if name in {"submit", "approve", "reject"} else "charter.transition"
    if override:
        verb = "charter.override"
    audit.record(
        verb,
        actor=actor,
        obj=locked,
        data={"transition": name, "to": locked.status, "reason": reason, "override": override},
    )

    for hook in TRANSITION_HOOKS:  # e.g. approvals opens or closes the decision's request
        hook(actor=actor, charter=locked, name=name, reason=reason, override=override)

    history_id = locked.history.latest().history_id
    from .tasks import charter_notify_transition

    transaction.on_commit(
        lambda: charter_notify_transition.delay(locked.pk, name, history_id, actor.pk)
    )
    return locked


def charter_submit(*, actor, charter: Charter) -> Charter:
    """Draft → submitted, once the charter is complete."""
    return charter_transition(actor=actor, charter=charter, name="submit")


def charter_withdraw(*, actor, charter: Charter) -> Charter:
    """Submitted → draft, by the owner, to change it."""
    return charter_transition(actor=actor, charter=charter, name="withdraw")


def charter_approve(*, actor, charter: Charter, reason: str = "") -> Charter:
    """Submitted → approved, by compliance (not the owner)."""
    return charter_transition(actor=actor, charter=charter, name="approve", reason=reason)


def charter_reject(*, actor, charter: Charter, reason: str) -> Charter:
    """Submitted → back to draft with the reason, by compliance."""
    return charter_transition(actor=actor, charter=charter, name="reject", reason=reason)


def charter_start_pilot(*, actor, charter: Charter) -> Charter:
    """Approved → pilot."""
    return charter_transition(actor=actor, charter=charter, name="start_pilot")


def charter_go_live(*, actor, charter: Charter, reason: str = "") -> Charter:
    """Pilot → production, by compliance."""
    return charter_transition(actor=actor, charter=charter, name="go_live", reason=reason)


def charter_pause(*, actor, charter: Charter, reason: str) -> Charter:
    """Production → paused."""
    return charter_transition(actor=actor, charter=charter, name="pause", reason=reason)


def charter_resume(*, actor, charter: Charter) -> Charter:
    """Paused → production."""
    return charter_transition(actor=actor, charter=charter, name="resume")


def charter_retire(*, actor, charter: Charter, reason: str) -> Charter:
    """Any live status → retired, with the reason."""
    return charter_transition(actor=actor, charter=charter, name="retire", reason=reason)


def endpoint_status_notify(sender, *, endpoint, previous, actor, reason, **kwargs) -> None:
    """Registry signal: tell the owners of every charter that depends on an endpoint when it
    is suspended, retired or reinstated (once per charter and change)."""
    from apps.core.services import notification_send

    notice = registry_services.status_change_notice(endpoint, previous)
    if notice is None:
        return
    verb, title, key = notice
    charters = Charter.objects.filter(dependencies__endpoint=endpoint).distinct()
    for charter in charters.select_related("business_owner"):
        owners = [u for u in (charter.business_owner, charter.created_by) if u is not None]
        notification_send(
            recipients=owners,
            verb=verb,
            title=title,
            body=f"{charter.title} depends on it. Reason: {reason or 'none given'}",
            url=charter.get_absolute_url(),
            dedupe_key=f"{key}:charter:{charter.pk}",
        )
