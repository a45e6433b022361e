"""Who may do what to a charter, in one place.

- view: the owner, people the charter is shared with, compliance (global view).
- change: the owner and people given change access; only while the lifecycle allows.
- decide (approve, reject, take live): compliance (global approve), never the owner.
- operate (pause, resume, retire): anyone who may change or decide.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

VIEW = "view"
CHANGE = "change"
DECIDE = "decide"
OPERATE = "operate"

VIEW_PERM = "charters.view_charter"
CHANGE_PERM = "charters.change_charter"
DELETE_PERM = "charters.delete_charter"
ADD_PERM = "charters.add_charter"
APPROVE_PERM = "charters.approve_charter"


def _has(user, perm: str, charter, checker=None) -> bool:
    if user.has_perm(perm):
        return True
    if checker is not None:
        return checker.has_perm(perm, charter)
    return user.has_perm(perm, charter)


def can(user, action: str, charter, *, checker=None) -> bool:
    """Whether `user` may perform `action` on `charter`.

    `checker` is a guardian ObjectPermissionChecker with prefetched permissions, so that
    list pages decide for many charters without a query per row.
    """
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if action == VIEW:
        return _has(user, VIEW_PERM, charter, checker)
    if action == CHANGE:
        return _has(user, CHANGE_PERM, charter, checker)
    if action == DECIDE:
        return user.has_perm(APPROVE_PERM)
    if action == OPERATE:
        return _has(user, CHANGE_PERM, charter, checker) or user.has_perm(APPROVE_PERM)
    raise ValueError(f"unknown charter action {action!r}")


def can_view_all(user) -> bool:
    """Whether the user sees the whole portfolio (compliance, superusers)."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(VIEW_PERM))


def can_create(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(ADD_PERM))


def require(user, action: str, charter) -> None:
    """Raise 404 when the user cannot even see the charter, 403 when they see but may not act."""
    if not can(user, VIEW, charter):
        raise Http404("No charter matches the given query.")
    if action != VIEW and not can(user, action, charter):
        raise PermissionDenied(f"You may not {action} this charter.")


def require_create(user) -> None:
    if not can_create(user):
        raise PermissionDenied("You may not create charters.")
