"""Reads of the evaluations app, always scoped to the person asking."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from apps.charters.selectors import charter_list_visible

from .models import Dataset, ModelArtifact, Run, Suite
from .permissions import VIEW_PERM, runs_any_suite


def _scope(qs: QuerySet, user, *, owner_field: str, charter_field: str, extra: Q | None = None):
    if not user or not user.is_authenticated or not user.is_active:
        return qs.none()
    if user.has_perm(VIEW_PERM):
        return qs
    charters = charter_list_visible(user).values("pk")
    condition = (
        Q(**{f"{charter_field}__isnull": True})
        | Q(**{f"{charter_field}__in": charters})
        | Q(**{owner_field: user})
    )
    if extra is not None:
        condition |= extra
    return qs.filter(condition)


def dataset_list_visible(user) -> QuerySet[Dataset]:
    """Datasets the user may see."""
    return _scope(Dataset.objects.all(), user, owner_field="owner", charter_field="charter")


def artifact_list_visible(user) -> QuerySet[ModelArtifact]:
    """Model artifacts the user may see (the shared scorer library included)."""
    return _scope(ModelArtifact.objects.all(), user, owner_field="owner", charter_field="charter")


def suite_list_visible(user) -> QuerySet[Suite]:
    """Suites the user may see; CI service users see every suite (applications' do not)."""
    if user and user.is_authenticated and runs_any_suite(user):
        return Suite.objects.all()
    return _scope(Suite.objects.all(), user, owner_field="owner", charter_field="charter")


def run_list_visible(user) -> QuerySet[Run]:
    """Runs of suites the user may see."""
    if user and user.is_authenticated and runs_any_suite(user):
        return Run.objects.all()
    return _scope(
        Run.objects.all(),
        user,
        owner_field="created_by",
        charter_field="suite__charter",
    )
