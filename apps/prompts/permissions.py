"""Who may do what to a prompt, derived from its charter and a few global rights.

- view: whoever may view the charter, the prompt's owner, compliance (global view);
  every signed-in person may view prompts published in the catalog.
- author (edit metadata, write and submit versions, move unprotected labels,
  request promotion): the prompt owner, whoever may change the charter, and
  platform engineers who may view the charter.
- review (approve / reject a submitted version): global `review_prompt`, never on
  one's own version.
- waive (a blocking finding, with a reason): global `waive_finding`.
- retire (deprecate or retire the asset): its authors, and reviewers (compliance
  retires assets as well as approving them).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.charters import permissions as charter_permissions
from apps.core.groups import PLATFORM, in_group

VIEW = "view"
AUTHOR = "author"
REVIEW = "review"
WAIVE = "waive"
RETIRE = "retire"

VIEW_PERM = "prompts.view_prompt"
REVIEW_PERM = "prompts.review_prompt"
WAIVE_PERM = "prompts.waive_finding"


def can_author_under(user, charter) -> bool:
    """Whether the user may create prompts under this charter."""
    if not user or not user.is_authenticated:
        return False
    if charter is None:  # starter templates belong to the library, not to a team
        return user.is_superuser
    if charter_permissions.can(user, charter_permissions.CHANGE, charter):
        return True
    return in_group(user, PLATFORM) and charter_permissions.can(
        user, charter_permissions.VIEW, charter
    )


def can(user, action: str, prompt) -> bool:
    """Whether `user` may perform `action` on `prompt`."""
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if action == VIEW:
        return (
            user.has_perm(VIEW_PERM)
            or prompt.owner_id == user.pk
            or prompt.listed_in_catalog
            or (
                prompt.charter_id is not None
                and charter_permissions.can(user, charter_permissions.VIEW, prompt.charter)
            )
        )
    if action == AUTHOR:
        return prompt.owner_id == user.pk or can_author_under(user, prompt.charter)
    if action == REVIEW:
        return user.has_perm(REVIEW_PERM)
    if action == WAIVE:
        return user.has_perm(WAIVE_PERM)
    if action == RETIRE:
        return can(user, AUTHOR, prompt) or user.has_perm(REVIEW_PERM)
    raise ValueError(f"unknown prompt action {action!r}")


def require(user, action: str, prompt) -> None:
    """404 when the prompt is invisible to the user, 403 when visible but not allowed."""
    if not can(user, VIEW, prompt):
        raise Http404("No prompt matches the given query.")
    if action != VIEW and not can(user, action, prompt):
        raise PermissionDenied(f"You may not {action} this prompt.")
