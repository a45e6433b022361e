"""Reads of the model registry (everyone signed in may read it)."""

from __future__ import annotations

from django.db.models import QuerySet

from . import permissions
from .choices import EndpointStatus
from .models import ModelEndpoint


def endpoint_list_visible(user) -> QuerySet[ModelEndpoint]:
    """Every endpoint, for anyone signed in; nothing for anyone else."""
    if not permissions.can(user, permissions.VIEW):
        return ModelEndpoint.objects.none()
    return ModelEndpoint.objects.all()


def endpoints_approved() -> QuerySet[ModelEndpoint]:
    """The endpoints that may be called now."""
    return ModelEndpoint.objects.filter(status=EndpointStatus.APPROVED)


def endpoint_by_slug(slug: str) -> ModelEndpoint | None:
    """One endpoint by slug (None for a missing or non-slug value)."""
    if not isinstance(slug, str) or not slug or len(slug) > 80:
        return None
    return ModelEndpoint.objects.filter(slug=slug).first()
