"""Who may do what to datasets, scorer artifacts, suites and runs, derived from their charter.

- view: whoever may view the charter, the object's owner (a run's: who started it),
  compliance (global view); library objects (no charter: the default scorer pack, starter
  suites) are visible to every signed-in person. Integrations with `run_suite` see every
  suite (to start the CI gate on it), except an application's service user: its keys reach
  only the charters shared with it. Runs are scoped like people for every key: the runs it
  started itself (the CI gate's verdict) and the runs of charters it may see, never another
  team's.
- case fields (a case's expected answer or reference label, its contexts and input
  variables, wherever a run shows them): only who may view the dataset itself. Anyone else
  who may see the run sees outputs, scores and pass/fail. See `case_fields_visible`.
- author (upload a dataset version, edit a suite and its thresholds, upload or quantize an
  artifact, start or cancel a run): the owner, whoever may change the charter, and platform
  engineers who may view it. Library objects: platform engineers and superusers.
- run (start a run, post its outputs, cancel it): authors, and holders of the global
  `evaluations.run_suite` permission (CI pipelines' service users).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.charters import permissions as charter_permissions
from apps.core.groups import PLATFORM, in_group

VIEW = "view"
AUTHOR = "author"
RUN = "run"

VIEW_PERM = "evaluations.view_suite"
RUN_PERM = "evaluations.run_suite"


def _charter_of(obj):
    """The charter governing a dataset, artifact, suite or run (runs follow their suite)."""
    if hasattr(obj, "suite_id") and hasattr(obj, "output_source"):
        return obj.suite.charter
    return obj.charter


def can_author_under(user, charter) -> bool:
    """Whether the user may create evaluation objects under `charter` (None: the library)."""
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if charter is None:
        return user.is_superuser or in_group(user, PLATFORM)
    if charter_permissions.can(user, charter_permissions.CHANGE, charter):
        return True
    return in_group(user, PLATFORM) and charter_permissions.can(
        user, charter_permissions.VIEW, charter
    )


def runs_any_suite(user) -> bool:
    """Whether `run_suite` reaches every suite: CI pipelines' service users, not applications'.

    An application's key is scoped to its application: it runs (and sees) the suites of
    charters shared with its service user, never another team's."""
    return user.has_perm(RUN_PERM) and not hasattr(user, "application")


def _owner_id(obj):
    if hasattr(obj, "output_source"):
        return obj.created_by_id
    return obj.owner_id


def can(user, action: str, obj) -> bool:
    """Whether `user` may perform `action` on a dataset, artifact, suite or run."""
    if not user or not user.is_authenticated or not user.is_active:
        return False
    charter = _charter_of(obj)
    is_run = hasattr(obj, "output_source")
    is_suite = not is_run and hasattr(obj, "dataset_version_id")
    if action == VIEW:
        return (
            charter is None
            or _owner_id(obj) == user.pk
            or user.has_perm(VIEW_PERM)
            or (is_suite and runs_any_suite(user))
            or charter_permissions.can(user, charter_permissions.VIEW, charter)
        )
    if action == AUTHOR:
        return _owner_id(obj) == user.pk or can_author_under(user, charter)
    if action == RUN:
        if is_run:  # posting outputs to, scoring or cancelling a run one may see
            return can(user, VIEW, obj) and (can(user, AUTHOR, obj) or user.has_perm(RUN_PERM))
        return (
            can(user, AUTHOR, obj)
            or runs_any_suite(user)
            or (user.has_perm(RUN_PERM) and can(user, VIEW, obj))
        )
    raise ValueError(f"unknown evaluations action {action!r}")


def case_fields_visible(user, dataset) -> bool:
    """Whether the user may read the expected answers, contexts and input variables of the
    dataset's cases wherever a run shows them: exactly who may view the dataset itself.

    The one decision behind run results, worst cases, run pages and exports: a key or a
    person who sees a run but not its dataset (a CI pipeline, an application, a team whose
    suite borrows another charter's dataset) sees outputs, scores and pass/fail only."""
    return can(user, VIEW, dataset)


def require(user, action: str, obj) -> None:
    """404 when the object is invisible to the user, 403 when visible but not allowed."""
    if not can(user, VIEW, obj):
        raise Http404("No such object.")
    if action != VIEW and not can(user, action, obj):
        raise PermissionDenied(f"You may not {action} this {obj._meta.verbose_name}.")
