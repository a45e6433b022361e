"""Reads of charters, always scoped to the person asking."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user, get_users_with_perms

from .choices import CharterStatus
from .models import Charter, Dependency, Metric
from .permissions import VIEW_PERM


def charter_list_visible(user) -> QuerySet[Charter]:
    """Charters the user may see: all for global viewers, else those granted on the object."""
    if not user or not user.is_authenticated or not user.is_active:
        return Charter.objects.none()
    if user.has_perm(VIEW_PERM):
        return Charter.objects.all()
    return get_objects_for_user(
        user, VIEW_PERM, klass=Charter, accept_global_perms=False, with_superuser=False
    )


def charter_list_authorable(
    user, may_author: Callable[[object, Charter], bool]
) -> QuerySet[Charter]:
    """Live charters the user may see and `may_author(user, charter)` allows work under
    (each app passes its own rule), by title: the choices of a "create under" form."""
    charters = charter_list_visible(user).exclude(status=CharterStatus.RETIRED).order_by("title")
    return charters.filter(pk__in=[c.pk for c in charters if may_author(user, c)])


def charter_list_for_table(user) -> QuerySet[Charter]:
    """Visible charters with what a list shows, in a constant number of queries."""
    return (
        charter_list_visible(user)
        .select_related("business_owner")
        .annotate(metric_count=Count("metrics", distinct=True))
        .order_by("-updated_at", "-id")
    )


def charter_list_owned(user) -> QuerySet[Charter]:
    """The user's own charters and those shared with them (not the whole portfolio)."""
    if not user or not user.is_authenticated:
        return Charter.objects.none()
    shared = get_objects_for_user(
        user, VIEW_PERM, klass=Charter, accept_global_perms=False, with_superuser=False
    )
    return charter_list_for_table(user).filter(
        Q(business_owner=user) | Q(pk__in=shared.values("pk"))
    )


def charter_get_detail(*, user, slug: str) -> Charter | None:
    """One visible charter with its metrics and dependencies loaded, or None."""
    return (
        charter_list_visible(user)
        .select_related("business_owner", "created_by", "approved_by")
        .prefetch_related(
            Prefetch("metrics", queryset=Metric.objects.order_by("role", "id")),
            Prefetch(
                "dependencies",
                queryset=Dependency.objects.select_related("endpoint").order_by("id"),
            ),
        )
        .filter(slug=slug)
        .first()
    )


def charter_overdue_q() -> Q:
    """Charters whose review date has passed and that are still alive."""
    return Q(review_date__lt=timezone.localdate()) & ~Q(status=CharterStatus.RETIRED)


def charter_shared_with(charter: Charter) -> dict:
    """People holding object permissions on the charter, with their permission codenames."""
    return get_users_with_perms(
        charter, attach_perms=True, with_superusers=False, with_group_users=False
    )
