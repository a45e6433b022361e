"""Reads of the prompt library, always scoped to the person asking."""

from __future__ import annotations

import datetime as dt

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from apps.charters.selectors import charter_list_visible

from .choices import PromptStatus, VersionStatus
from .models import Consumer, Label, LabelMove, PolicyFinding, Prompt, PromptVersion
from .permissions import VIEW_PERM


def prompt_list_visible(user) -> QuerySet[Prompt]:
    """Prompts the user may see: by charter, ownership, global view, or the catalog."""
    if not user or not user.is_authenticated or not user.is_active:
        return Prompt.objects.none()
    if user.has_perm(VIEW_PERM):
        return Prompt.objects.all()
    charters = charter_list_visible(user).values("pk")
    return Prompt.objects.filter(
        Q(charter__in=charters) | Q(owner=user) | Q(listed_in_catalog=True)
    )


def prompt_get(*, user, slug: str) -> Prompt | None:
    """One visible prompt with its charter and owner, or None."""
    return (
        prompt_list_visible(user)
        .select_related("charter", "owner", "successor")
        .filter(slug=slug)
        .first()
    )


def prompt_catalog(user, *, q: str = "", filters: dict | None = None) -> QuerySet[Prompt]:
    """Visible, active prompts with an approved version, with what a catalog card shows."""
    approved = PromptVersion.objects.filter(prompt=OuterRef("pk"), status=VersionStatus.APPROVED)
    qs = (
        prompt_list_visible(user)
        .filter(Exists(approved))
        .exclude(status=PromptStatus.RETIRED)
        .select_related("owner", "charter")
        .prefetch_related(
            Prefetch("labels", queryset=Label.objects.select_related("version")),
            Prefetch("consumers", queryset=Consumer.objects.select_related("application")),
        )
    )
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(description__icontains=q) | Q(slug__icontains=q))
    for field, value in (filters or {}).items():
        if not value:
            continue
        if field == "tag":
            qs = (
                qs.filter(tags__contains=[value])
                if _json_contains_supported()
                else qs.filter(tags__icontains=f'"{value}"')
            )
        elif field in {"business_function", "task_type", "risk_level", "model_family"}:
            qs = qs.filter(**{field: value})
    return qs.order_by("name", "id")


def _json_contains_supported() -> bool:
    from django.db import connection

    return connection.features.supports_json_field_contains


def version_list(prompt: Prompt) -> QuerySet[PromptVersion]:
    """A prompt's versions, newest first, with authors and finding counts loaded."""
    # Not prompt.versions: the API's prompt arrives with its versions prefetched, deferred.
    versions = PromptVersion.objects.filter(prompt=prompt)
    return versions.select_related("author", "decided_by", "parent").prefetch_related(
        Prefetch("findings", queryset=PolicyFinding.objects.select_related("rule", "waived_by"))
    )


def label_version_at(*, prompt: Prompt, label: str, when: dt.datetime) -> PromptVersion | None:
    """Which version the label pointed at at a moment in time (from the move record)."""
    move = (
        LabelMove.objects.filter(prompt=prompt, label=label, moved_at__lte=when)
        .select_related("to_version")
        .order_by("-moved_at", "-id")
        .first()
    )
    return move.to_version if move else None


def unwaived_blocking_findings(version: PromptVersion) -> QuerySet[PolicyFinding]:
    """Blocking findings on a version that no one has waived."""
    return version.findings.filter(severity="blocking", waived_at__isnull=True).select_related(
        "rule"
    )
