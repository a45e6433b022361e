"""Every write to the prompt library: assets, versions, review, findings, labels, promotion,
deprecation and retirement, forks, applications and their keys, consumer lineage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.text import slugify

from apps.charters.choices import CharterStatus
from apps.core import audit
from apps.core.choices import risk_rank
from apps.core.errors import Conflict, InvalidTransition, ValidationFailed
from apps.core.groups import INTEGRATIONS, in_group
from apps.core.history import delete_with_history, save_with_history
from apps.core.hotcache import key_cache_key, once_per

from . import content, permissions, policy, selectors
from .choices import PROTECTED_LABELS, PromptStatus, Severity, TemplateKind, VersionStatus
from .models import (
    Application,
    Consumer,
    Label,
    LabelMove,
    PolicyFinding,
    PolicyRule,
    Prompt,
    PromptVersion,
)

User = get_user_model()

PROMPT_FIELDS = (
    "slug",
    "name",
    "description",
    "charter",
    "business_function",
    "task_type",
    "risk_level",
    "model_family",
    "policy_tags",
    "tags",
    "owner",
    "review_date",
    "retirement_condition",
    "listed_in_catalog",
)
VERSION_FIELDS = (
    "template_kind",
    "messages",
    "text",
    "variables",
    "model_config",
    "release_notes",
    "change_kind",
)
CONSUMER_FLUSH_SECONDS = 60


_save = save_with_history


def _unknown(data: Mapping, allowed) -> dict[str, list[str]]:
    return {key: ["Unknown field."] for key in sorted(set(data) - set(allowed))}


def _full_clean(obj, exclude=()) -> dict[str, list[str]]:
    try:
        obj.full_clean(exclude=list(exclude), validate_unique=False)
    except DjangoValidationError as exc:
        return dict(exc.message_dict)
    return {}


def _lock(model, pk):
    return model.objects.select_for_update().get(pk=pk)


class BlockedByFindings(InvalidTransition):
    """The version has unwaived blocking policy findings: no label may point at it and
    nothing serves it. Names the rule codes, never the version's content."""

    code = "blocked_by_findings"

    def __init__(self, version: PromptVersion, codes: list[str], *, field: str = "label") -> None:
        self.codes = codes
        message = (
            f"v{version.number} has unwaived blocking policy findings ({', '.join(codes)}): "
            "a compliance officer must waive them before any label serves it."
        )
        super().__init__(
            message, errors={field: [f"Unwaived blocking policy findings: {', '.join(codes)}."]}
        )


def blocking_codes(version: PromptVersion) -> list[str]:
    """The rule codes of the version's unwaived blocking findings, sorted; empty when clean."""
    return sorted(
        set(selectors.unwaived_blocking_findings(version).values_list("rule__code", flat=True))
    )


def require_servable(version: PromptVersion, *, field: str = "label") -> None:
    """Refuse a version with unwaived blocking findings (label moves, resolve, render, execute)."""
    codes = blocking_codes(version)
    if codes:
        raise BlockedByFindings(version, codes, field=field)


# --- prompts --------------------------------------------------------------------------------------


@transaction.atomic
def prompt_create(
    *, actor, fields: Mapping[str, Any], first_version: Mapping[str, Any] | None = None
) -> Prompt:
    """Create a prompt asset under a charter (and, optionally, its first draft version)."""
    errors = _unknown(fields, PROMPT_FIELDS)
    charter = fields.get("charter")
    if charter is None:
        raise ValidationFailed(
            "The prompt is not valid.", errors={**errors, "charter": ["A charter is required."]}
        )
    if not permissions.can_author_under(actor, charter):
        raise PermissionDenied("You may not create prompts under this charter.")
    prompt = Prompt(owner=fields.get("owner") or actor)
    for field in PROMPT_FIELDS:
        if field in fields and field != "owner":
            setattr(prompt, field, fields[field])
    if not prompt.slug:
        prompt.slug = slugify(prompt.name or "")[:80]
    if Prompt.objects.filter(slug=prompt.slug).exists():
        errors["slug"] = ["A prompt with this slug already exists; slugs are stable identifiers."]
    if charter.status == CharterStatus.RETIRED:
        errors["charter"] = ["The charter is retired."]
    floor = charter.risk_tier
    if "risk_level" not in fields and _below(prompt.risk_level, floor):
        prompt.risk_level = floor  # the model's default rises to the charter's tier
    errors.update(_full_clean(prompt))
    if "risk_level" not in errors and _below(prompt.risk_level, floor):
        errors["risk_level"] = [_floor_message(floor)]
    if errors:
        raise ValidationFailed("The prompt is not valid.", errors=errors)
    _save(prompt, actor=actor, reason="Created")
    if first_version is not None:
        version_create(actor=actor, prompt=prompt, fields=first_version)
    return prompt


@transaction.atomic
def prompt_update(*, actor, prompt: Prompt, fields: Mapping[str, Any]) -> Prompt:
    """Edit a prompt's catalog metadata (not its content: that lives in versions).

    Its authors edit everything but lower the risk level; compliance (reviewers) decides the
    risk level, down to the charter's tier, and only that, on prompts it does not author."""
    compliance_only = not permissions.can(actor, permissions.AUTHOR, prompt) and permissions.can(
        actor, permissions.REVIEW, prompt
    )
    permissions.require(actor, permissions.VIEW if compliance_only else permissions.AUTHOR, prompt)
    allowed = tuple(f for f in PROMPT_FIELDS if f not in {"slug", "charter"})
    errors = _unknown(fields, allowed)
    locked = _lock(Prompt, prompt.pk)
    if locked.status == PromptStatus.RETIRED:
        raise InvalidTransition("A retired prompt cannot be changed.")
    was = locked.risk_level
    for field in allowed:
        if field in fields:
            if (
                compliance_only
                and field != "risk_level"
                and fields[field] != getattr(locked, field)
            ):
                raise PermissionDenied(
                    "You may not author this prompt: compliance changes only its risk level."
                )
            setattr(locked, field, fields[field])
    errors.update(_full_clean(locked))
    reason = "Edited"
    if "risk_level" not in errors and locked.risk_level != was:
        # Raising it is the author's call; lowering it, down to the charter's tier, is
        # compliance's (the risk level decides the fast track and the policy rules).
        floor = locked.charter.risk_tier if locked.charter_id else ""
        lowered = _below(locked.risk_level, was)
        if _below(locked.risk_level, floor):
            errors["risk_level"] = [_floor_message(floor)]
        elif lowered and not permissions.can(actor, permissions.REVIEW, locked):
            errors["risk_level"] = [
                f"Lowering the risk level from {was} to {locked.risk_level} is for compliance "
                "to decide: ask a compliance officer to make this change."
            ]
        elif lowered:
            reason = (
                f"Edited; risk level lowered from {was} to {locked.risk_level} by compliance"
                + (f" (charter floor: {floor})" if floor else "")
            )
    if errors:
        raise ValidationFailed("The prompt is not valid.", errors=errors)
    _save(locked, actor=actor, reason=reason)
    return locked


def _below(level: str, floor: str) -> bool:
    """Whether risk `level` ranks below `floor` (low < medium < high < critical); an unknown
    or empty value is never below anything (validation reports it on its own)."""
    return 0 <= risk_rank(level) < risk_rank(floor)


def _floor_message(floor: str) -> str:
    return f"The charter is {floor} risk: a prompt under it cannot be rated below {floor}."


# --- versions ---------------------------------------------------------------------------------------


def _apply_content(version: PromptVersion, fields: Mapping[str, Any]) -> dict[str, list[str]]:
    errors = _unknown(fields, VERSION_FIELDS)
    for field in VERSION_FIELDS:
        if field in fields:
            setattr(version, field, fields[field])
    if version.template_kind == TemplateKind.CHAT:
        version.text = ""
    else:
        version.messages = []
    if not (version.release_notes or "").strip():
        errors["release_notes"] = ["Release notes are required: say what changed and why."]
    errors.update(
        content.validate(
            version.template_kind,
            version.messages,
            version.text,
            version.variables,
            version.model_config,
        )
    )
    if not errors:
        version.content_hash = content.content_hash(
            version.template_kind,
            version.messages,
            version.text,
            version.variables,
            version.model_config,
        )
    return errors


@transaction.atomic
def version_create(
    *, actor, prompt: Prompt, fields: Mapping[str, Any], parent: PromptVersion | None = None
) -> PromptVersion:
    """Write a new draft version; numbers are sequential per prompt; parent defaults to the latest."""
    permissions.require(actor, permissions.AUTHOR, prompt)
    locked = _lock(Prompt, prompt.pk)
    if locked.status == PromptStatus.RETIRED:
        raise InvalidTransition("A retired prompt takes no new versions.")
    latest = locked.versions.order_by("-number").first()
    if parent is not None and parent.prompt_id != locked.pk:
        raise ValidationFailed(
            "The parent must be a version of the same prompt.", errors={"parent": ["Wrong prompt."]}
        )
    version = PromptVersion(
        prompt=locked,
        number=(latest.number + 1) if latest else 1,
        author=actor,
        parent=parent or latest,
    )
    errors = _apply_content(version, fields)
    if errors:
        raise ValidationFailed("The version is not valid.", errors=errors)
    _save(version, actor=actor, reason=f"Draft v{version.number} written")
    return version


def _lock_draft(actor, version: PromptVersion) -> PromptVersion:
    permissions.require(actor, permissions.AUTHOR, version.prompt)
    locked = _lock(PromptVersion, version.pk)
    if locked.status != VersionStatus.DRAFT:
        raise InvalidTransition(
            f"Version {locked.number} is {locked.get_status_display().lower()} and immutable; "
            "create a new version to change it."
        )
    return locked


@transaction.atomic
def version_update(*, actor, version: PromptVersion, fields: Mapping[str, Any]) -> PromptVersion:
    """Edit a draft version (refused once it has been submitted)."""
    locked = _lock_draft(actor, version)
    errors = _apply_content(locked, fields)
    if errors:
        raise ValidationFailed("The version is not valid.", errors=errors)
    _save(locked, actor=actor, reason="Draft edited")
    return locked


@transaction.atomic
def version_delete(*, actor, version: PromptVersion) -> None:
    """Discard a draft version."""
    locked = _lock_draft(actor, version)
    delete_with_history(locked, actor=actor, reason="Draft discarded")


def policy_rules(*, enabled_only: bool = True) -> list[policy.RuleSpec]:
    """The stored rules as engine specs."""
    rules = PolicyRule.objects.all()
    if enabled_only:
        rules = rules.filter(enabled=True)
    return [
        policy.RuleSpec(
            r.code, r.kind, r.pattern, r.severity, r.message, tuple(r.risk_levels or ())
        )
        for r in rules
    ]


def version_policy_findings(version: PromptVersion) -> list[policy.Finding]:
    """Run the enabled rules over a version's template (pure: writes nothing)."""
    segments = content.sources(version.template_kind, version.messages, version.text)
    return policy.evaluate(
        policy_rules(),
        segments,
        risk_level=version.prompt.risk_level,
        context={"model_config": version.model_config},
    )


@transaction.atomic
def version_submit(*, actor, version: PromptVersion) -> PromptVersion:
    """Draft → in review: the content freezes and the policy checks record their findings."""
    locked = _lock_draft(actor, version)
    errors = content.validate(
        locked.template_kind, locked.messages, locked.text, locked.variables, locked.model_config
    )
    if errors:
        raise ValidationFailed("The version is not valid.", errors=errors)
    rules = {r.code: r for r in PolicyRule.objects.all()}
    PolicyFinding.objects.bulk_create(
        PolicyFinding(
            version=locked,
            rule=rules[f.code],
            severity=f.severity,
            message=f.message,
            location=f.location,
            span_start=f.start,
            span_end=f.end,
            excerpt=f.excerpt,
        )
        for f in version_policy_findings(locked)
    )
    resolved_forget(locked.pk)  # bulk_create sends no signal
    locked.status = VersionStatus.IN_REVIEW
    locked.submitted_at = timezone.now()
    _save(
        locked,
        actor=actor,
        reason=f"v{locked.number} submitted for review",
        update_fields=["status", "submitted_at", "updated_at"],
    )
    return locked


def _decide(actor, version: PromptVersion, status: str, reason: str, verb: str) -> PromptVersion:
    permissions.require(actor, permissions.REVIEW, version.prompt)
    locked = _lock(PromptVersion, version.pk)
    if locked.author_id == actor.pk:
        raise PermissionDenied("You cannot review your own version.")
    if locked.status != VersionStatus.IN_REVIEW:
        raise InvalidTransition(
            f"Cannot {verb} version {locked.number}: it is {locked.get_status_display().lower()}, not in review."
        )
    locked.status, locked.decided_by, locked.decided_at = status, actor, timezone.now()
    locked.decision_reason = reason
    _save(
        locked,
        actor=actor,
        reason=f"v{locked.number} {status}" + (f": {reason}" if reason else ""),
        update_fields=["status", "decided_by", "decided_at", "decision_reason", "updated_at"],
    )
    audit.record(
        f"prompt.version.{verb}",
        actor=actor,
        obj=locked,
        data={
            "prompt": locked.prompt.slug,
            "version": locked.number,
            "content_hash": locked.content_hash,
            "reason": reason,
        },
    )
    return locked


@transaction.atomic
def version_approve(*, actor, version: PromptVersion, reason: str = "") -> PromptVersion:
    """In review → approved, by a reviewer who is not the author."""
    return _decide(actor, version, VersionStatus.APPROVED, reason.strip(), "approve")


@transaction.atomic
def version_reject(*, actor, version: PromptVersion, reason: str) -> PromptVersion:
    """In review → rejected, with the reason."""
    if not (reason or "").strip():
        raise ValidationFailed(
            "A reason is required to reject.", errors={"reason": ["This field is required."]}
        )
    return _decide(actor, version, VersionStatus.REJECTED, reason.strip(), "reject")


@transaction.atomic
def finding_waive(*, actor, finding: PolicyFinding, reason: str) -> PolicyFinding:
    """Waive a finding with a written reason (compliance only); recorded in its history."""
    permissions.require(actor, permissions.WAIVE, finding.version.prompt)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(
            "A waiver needs a written reason.", errors={"reason": ["This field is required."]}
        )
    locked = _lock(PolicyFinding, finding.pk)
    if locked.waived_at is not None:
        raise InvalidTransition("This finding is already waived.")
    locked.waived_by, locked.waived_at, locked.waiver_reason = actor, timezone.now(), reason
    _save(
        locked,
        actor=actor,
        reason=f"Waived: {reason}",
        update_fields=["waived_by", "waived_at", "waiver_reason"],
    )
    audit.record(
        "prompt.finding.waive",
        actor=actor,
        obj=locked,
        charter_id=locked.version.prompt.charter_id,
        data={
            "rule": locked.rule.code if locked.rule_id else "",
            "version": locked.version_id,
            "reason": reason,
        },
    )
    return locked


# --- labels and promotion --------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    """One named gate check's verdict and its human reason."""

    check: str
    passed: bool
    reason: str


GateCheck = Callable[[PromptVersion, Any], GateResult]


def _gate_version_approved(version: PromptVersion, actor) -> GateResult:
    ok = version.status == VersionStatus.APPROVED
    return GateResult(
        "version_approved",
        ok,
        "Version is approved."
        if ok
        else f"Version is {version.get_status_display().lower()}, not approved.",
    )


def _gate_no_blocking_findings(version: PromptVersion, actor) -> GateResult:
    codes = list(
        version.findings.filter(severity=Severity.BLOCKING, waived_at__isnull=True).values_list(
            "rule__code", flat=True
        )
    )
    if codes:
        return GateResult(
            "no_blocking_findings",
            False,
            f"Unwaived blocking findings: {', '.join(sorted(set(codes)))}.",
        )
    return GateResult("no_blocking_findings", True, "No unwaived blocking findings.")


def _gate_prompt_active(version: PromptVersion, actor) -> GateResult:
    ok = version.prompt.status == PromptStatus.ACTIVE
    return GateResult(
        "prompt_active",
        ok,
        "Prompt is active." if ok else f"Prompt is {version.prompt.get_status_display().lower()}.",
    )


def _gate_charter_live(version: PromptVersion, actor) -> GateResult:
    allowed = {CharterStatus.APPROVED, CharterStatus.PILOT, CharterStatus.PRODUCTION}
    status = version.prompt.charter.status
    ok = status in allowed
    return GateResult(
        "charter_allows",
        ok,
        f"Charter is {status}."
        + ("" if ok else " It must be approved, in pilot or in production."),
    )


# Checks every promotion to a protected label must pass. Later issues append to this list
# (evaluation evidence, RACI approvals) without touching the promotion service.
PROMOTION_GATE: list[GateCheck] = [
    _gate_version_approved,
    _gate_no_blocking_findings,
    _gate_prompt_active,
    _gate_charter_live,
]


def promotion_gate(version: PromptVersion, actor=None) -> list[GateResult]:
    """Evaluate every gate check for promoting `version`."""
    return [check(version, actor) for check in PROMOTION_GATE]


def _move(
    actor, prompt: Prompt, name: str, version: PromptVersion, reason: str, protected: bool
) -> Label:
    require_servable(version)
    label = Label.objects.select_for_update().filter(prompt=prompt, name=name).first()
    previous = label.version if label else None
    if label and label.version_id == version.pk:
        raise InvalidTransition(f"Label '{name}' already points at v{version.number}.")
    if label is None:
        label = Label(prompt=prompt, name=name, version=version, protected=protected)
    else:
        label.version = version
    _save(
        label, actor=actor, reason=f"{name} → v{version.number}" + (f": {reason}" if reason else "")
    )
    LabelMove.objects.create(
        prompt=prompt,
        label=name,
        from_version=previous,
        to_version=version,
        moved_by=actor,
        moved_at=timezone.now(),
        reason=reason,
    )
    cache.delete(resolve_cache_key(prompt.slug, name))
    audit.record(
        "prompt.promote" if protected else "prompt.label",
        actor=actor,
        obj=prompt,
        data={
            "label": name,
            "from_version": previous.number if previous else None,
            "to_version": version.number,
            "content_hash": version.content_hash,
            "reason": reason,
        },
    )
    return label


@transaction.atomic
def label_move(*, actor, version: PromptVersion, label: str, reason: str = "") -> Label:
    """Point an unprotected label (staging, development, custom) at a version."""
    name = slugify(label or "")
    if not name:
        raise ValidationFailed(
            "A label name is required.", errors={"label": ["This field is required."]}
        )
    permissions.require(actor, permissions.AUTHOR, version.prompt)
    prompt = _lock(Prompt, version.prompt_id)
    version = PromptVersion.objects.get(pk=version.pk)  # the caller's copy may be stale
    existing = Label.objects.filter(prompt=prompt, name=name).first()
    if name in PROTECTED_LABELS or (existing and existing.protected):
        raise PermissionDenied(
            f"'{name}' is protected: request a promotion, which checks the release gate."
        )
    if version.status == VersionStatus.DRAFT:
        raise InvalidTransition("Submit the version before labelling it; drafts can still change.")
    return _move(actor, prompt, name, version, reason.strip(), protected=False)


@transaction.atomic
def promotion_execute(
    *, actor, version: PromptVersion, label: str = "production", reason: str = ""
) -> Label:
    """An author moves a protected label directly (operators and tests; people go through an
    approval request, which calls `promotion_apply` once it is approved)."""
    permissions.require(actor, permissions.AUTHOR, version.prompt)
    return promotion_apply(actor=actor, version=version, label=label, reason=reason)


@transaction.atomic
def promotion_apply(
    *, actor, version: PromptVersion, label: str = "production", reason: str = ""
) -> Label:
    """Move a protected label to `version` once every gate check passes; refuse with the reasons.

    The caller has decided who may do this (an author, or an executed approval request)."""
    prompt = _lock(Prompt, version.prompt_id)
    version = PromptVersion.objects.select_related("prompt__charter").get(pk=version.pk)
    failures = [r for r in promotion_gate(version, actor) if not r.passed]
    if failures:
        raise ValidationFailed(
            "The release gate refused this promotion.",
            errors={"gate": [f"{r.check}: {r.reason}" for r in failures]},
        )
    return _move(actor, prompt, slugify(label), version, (reason or "").strip(), protected=True)


def resolve_cache_key(slug: str, label: str) -> str:
    return f"prompts:resolve:v2:{slug}:{label}"  # bump when the cached format changes


def prompt_meta_cache_key(slug: str) -> str:
    return f"prompts:meta:{slug}"


def resolved_forget(version_id: int) -> None:
    """Forget resolve's cached payload for every label on the version, now and again on commit
    (a resolve racing the transaction must not keep the state from before it)."""
    keys = [
        resolve_cache_key(slug, name)
        for slug, name in Label.objects.filter(version_id=version_id).values_list(
            "prompt__slug", "name"
        )
    ]
    if keys:
        cache.delete_many(keys)
        transaction.on_commit(lambda: cache.delete_many(keys))


@receiver((post_save, post_delete), sender=PolicyFinding, dispatch_uid="prompts.finding.resolved")
def finding_changed(sender, instance, **kwargs) -> None:
    """A finding added, waived or un-waived changes whether its version may be served."""
    resolved_forget(instance.version_id)


def prompt_saved(sender, instance, **kwargs) -> None:
    """Forget a prompt's cached status and lifecycle headers (signal receiver)."""
    cache.delete(prompt_meta_cache_key(instance.slug))


# --- lifecycle of the asset ---------------------------------------------------------------------------


def _notify_consumers(prompt: Prompt, verb: str, title: str, body: str) -> None:
    from .tasks import prompt_notify_consumers

    transaction.on_commit(
        lambda: prompt_notify_consumers.delay(
            prompt.pk, verb, title, body, prompt.history.latest().history_id
        )
    )


@transaction.atomic
def prompt_deprecate(
    *,
    actor,
    prompt: Prompt,
    reason: str,
    sunset_date: dt.date | None = None,
    successor: Prompt | None = None,
) -> Prompt:
    """Active → deprecated with a sunset date and successor; consuming application owners are told."""
    permissions.require(actor, permissions.RETIRE, prompt)
    locked = _lock(Prompt, prompt.pk)
    errors: dict[str, list[str]] = {}
    if not (reason or "").strip():
        errors["reason"] = ["This field is required."]
    if sunset_date and sunset_date <= timezone.localdate():
        errors["sunset_date"] = ["The sunset date must be in the future."]
    if successor and successor.pk == locked.pk:
        errors["successor"] = ["A prompt cannot succeed itself."]
    if errors:
        raise ValidationFailed("The deprecation is not valid.", errors=errors)
    if locked.status != PromptStatus.ACTIVE:
        raise InvalidTransition(
            f"Only active prompts can be deprecated; this one is {locked.status}."
        )
    locked.status, locked.status_reason = PromptStatus.DEPRECATED, reason.strip()
    locked.sunset_date, locked.successor = sunset_date, successor
    _save(locked, actor=actor, reason=f"Deprecated: {reason.strip()}")
    audit.record("prompt.deprecate", actor=actor, obj=locked, data={"reason": reason.strip()})
    _notify_consumers(
        locked,
        "prompt.deprecated",
        f"Prompt “{locked.name}” is deprecated",
        f"Reason: {reason.strip()}"
        + (f"\nSunset: {sunset_date.isoformat()}" if sunset_date else "")
        + (f"\nMove to: {successor.slug}" if successor else ""),
    )
    return locked


@transaction.atomic
def prompt_retire(*, actor, prompt: Prompt, reason: str, successor: Prompt | None = None) -> Prompt:
    """Deprecated or active → retired: resolves answer 410 Gone from now on."""
    permissions.require(actor, permissions.RETIRE, prompt)
    if not (reason or "").strip():
        raise ValidationFailed(
            "A reason is required to retire.", errors={"reason": ["This field is required."]}
        )
    locked = _lock(Prompt, prompt.pk)
    if locked.status == PromptStatus.RETIRED:
        raise InvalidTransition("The prompt is already retired.")
    locked.status, locked.status_reason = PromptStatus.RETIRED, reason.strip()
    if successor is not None:
        locked.successor = successor
    _save(locked, actor=actor, reason=f"Retired: {reason.strip()}")
    audit.record("prompt.retire", actor=actor, obj=locked, data={"reason": reason.strip()})
    for name in locked.labels.values_list("name", flat=True):
        cache.delete(resolve_cache_key(locked.slug, name))
    _notify_consumers(
        locked, "prompt.retired", f"Prompt “{locked.name}” is retired", f"Reason: {reason.strip()}"
    )
    return locked


@transaction.atomic
def prompt_fork(*, actor, source: PromptVersion, charter, name: str, slug: str = "") -> Prompt:
    """Use a visible version as the starting point of a new prompt with lineage back to it."""
    permissions.require(actor, permissions.VIEW, source.prompt)
    base = source.prompt
    fields = {
        "charter": charter,
        "name": name,
        "slug": slug or slugify(name)[:80],
        "description": f"Forked from {base.slug} v{source.number}. {base.description}".strip(),
        "business_function": base.business_function,
        "task_type": base.task_type,
        "risk_level": max(base.risk_level, charter.risk_tier, key=risk_rank),
        "model_family": base.model_family,
        "tags": list(base.tags),
        "policy_tags": list(base.policy_tags),
    }
    prompt = prompt_create(actor=actor, fields=fields)
    prompt.forked_from = source
    _save(
        prompt,
        actor=actor,
        reason=f"Forked from {base.slug} v{source.number}",
        update_fields=["forked_from"],
    )
    version_create(
        actor=actor,
        prompt=prompt,
        fields={
            "template_kind": source.template_kind,
            "messages": source.messages,
            "text": source.text,
            "variables": source.variables,
            "model_config": source.model_config,
            "change_kind": "major",
            "release_notes": f"Started from {base.slug} v{source.number}.",
        },
    )
    return prompt


# --- applications and lineage ------------------------------------------------------------------------


@transaction.atomic
def application_create(
    *, actor, name: str, slug: str = "", description: str = "", owner=None
) -> Application:
    """Register a consuming system with its own service user (keys act as that user)."""
    if not actor.is_authenticated:
        raise PermissionDenied("Sign in to register applications.")
    if in_group(actor, INTEGRATIONS):
        # A key that could register applications could mint keys that outlive its revocation.
        raise PermissionDenied("Integrations cannot register applications.")
    slug = slug or slugify(name)[:80]
    errors = {}
    if not (name or "").strip():
        errors["name"] = ["This field is required."]
    if not slug:
        errors["slug"] = ["This field is required."]
    elif Application.objects.filter(slug=slug).exists():
        errors["slug"] = ["An application with this slug already exists."]
    if errors:
        raise ValidationFailed("The application is not valid.", errors=errors)
    username = f"app-{slug}"[:150]
    if User.objects.filter(username=username).exists():
        raise ValidationFailed(
            "The application is not valid.", errors={"slug": ["That name is taken by a user."]}
        )
    service_user = User.objects.create(username=username, first_name=name[:150])
    service_user.set_unusable_password()
    service_user.save(update_fields=["password"])
    service_user.groups.add(Group.objects.get(name=INTEGRATIONS))
    application = Application(
        slug=slug,
        name=name.strip(),
        description=description,
        owner=owner or actor,
        service_user=service_user,
    )
    _save(application, actor=actor, reason="Registered")
    return application


def _require_app_owner(actor, application: Application) -> None:
    if application.owner_id != actor.pk and not actor.is_superuser:
        raise PermissionDenied("Only the application's owner manages its keys.")


@transaction.atomic
def application_key_create(*, actor, application: Application, name: str) -> tuple[Any, str]:
    """Issue an API key for the application; the plain key is returned once and stored hashed."""
    from apps.core.services import api_key_create

    _require_app_owner(actor, application)
    if not (name or "").strip():
        raise ValidationFailed("A key needs a name.", errors={"name": ["This field is required."]})
    return api_key_create(user=application.service_user, name=name.strip())


@transaction.atomic
def application_key_revoke(*, actor, application: Application, prefix: str) -> None:
    """Revoke one of the application's keys (by its public prefix) at once."""
    _require_app_owner(actor, application)
    updated = application.service_user.api_keys.filter(prefix=prefix, revoked=False).update(
        revoked=True
    )
    if not updated:
        raise Conflict("No such active key on this application.")
    # update() sends no signal: forget the cached key facts here so revocation is immediate.
    cache.delete(key_cache_key(prefix))


_pending_counts: dict[tuple, int] = {}


def consumer_record(*, application_id: int, prompt_id: int, label: str) -> None:
    """Count one resolve; each process writes at most once a minute per (app, prompt, label).

    Counts accumulate in process memory in between and go out with the next write, so the
    hot path costs no round trip; a process that dies loses at most a minute of counts.
    """
    key = (application_id, prompt_id, label)
    _pending_counts[key] = _pending_counts.get(key, 0) + 1
    if not once_per(("consumer", *key), CONSUMER_FLUSH_SECONDS):
        return
    pending = _pending_counts.pop(key, 0)
    now = timezone.now()
    scope = Consumer.objects.filter(application_id=application_id, prompt_id=prompt_id, label=label)
    if scope.update(last_seen=now, count=F("count") + pending):
        return
    try:
        with transaction.atomic():
            Consumer.objects.create(
                application_id=application_id,
                prompt_id=prompt_id,
                label=label,
                first_seen=now,
                last_seen=now,
                count=pending,
            )
    except IntegrityError:
        scope.update(last_seen=now, count=F("count") + pending)


def consumer_counts_reset() -> None:
    """Drop this process's unflushed counts (tests start from a clean process state)."""
    _pending_counts.clear()
