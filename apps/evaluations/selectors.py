"""Reads of the evaluations app, always scoped to the person asking."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from apps.charters.selectors import charter_list_visible

from .models import Case, CaseResult, Dataset, ModelArtifact, Run, RunOutput, Suite
from .permissions import VIEW_PERM, case_fields_visible, runs_any_suite


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
    """Runs the user started or whose charter they may see; a CI key, which may run any suite,
    reads its own runs (the gate's verdict), not every team's."""
    return _scope(
        Run.objects.all(),
        user,
        owner_field="created_by",
        charter_field="suite__charter",
    )


# --- a run's cases as the reader may see them --------------------------------------------------

HIDDEN = "[hidden]"
# Shorter values are not masked inside error texts: "de" or "yes" would garble every message.
_MASK_MIN_CHARS = 4


def run_case_fields_visible(user, run: Run) -> bool:
    """Whether `user` may read the expected answers, contexts and variables of `run`'s cases."""
    return case_fields_visible(user, run.dataset_version.dataset)


def _hidden_texts(case: Case) -> list[str]:
    texts = [case.expected, *case.contexts]
    stack: list[Any] = [case.variables]
    while stack:  # variable values may nest (lists, objects)
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif value is not None and not isinstance(value, bool):
            texts.append(str(value))
    wanted = {t.strip() for t in texts if isinstance(t, str) and len(t.strip()) >= _MASK_MIN_CHARS}
    return sorted(wanted, key=len, reverse=True)  # the longest first: a part masks no whole


def masked(text: str, case: Case) -> str:
    """`text` with every hidden value of `case` (expected, contexts, variables) masked."""
    for secret in _hidden_texts(case) if text else ():
        text = text.replace(secret, HIDDEN)
    return text


@dataclass(frozen=True)
class CaseView:
    """One scored case as its reader may see it: the case fields are None when hidden."""

    case_id: str
    segments: dict
    metrics: dict
    passed: bool
    error: str
    output: str
    expected: str | None
    contexts: list | None
    variables: dict | None
    hidden: bool = False


def case_views(
    results: Iterable[CaseResult], outputs: Mapping[int, str], *, visible: bool
) -> list[CaseView]:
    """Results (with their case selected) shaped for `visible` readers or for anyone else:
    outputs, scores and pass/fail always; expected, contexts and variables only when visible,
    and never inside an error message either."""
    views = []
    for result in results:
        case = result.case
        views.append(
            CaseView(
                case_id=case.external_id,
                segments=case.segments,
                metrics=result.metrics,
                passed=result.passed,
                error=result.error if visible else masked(result.error, case),
                output=outputs.get(result.case_id, ""),
                expected=case.expected if visible else None,
                contexts=case.contexts if visible else None,
                variables=case.variables if visible else None,
                hidden=not visible,
            )
        )
    return views


def run_summary_for(user, run: Run) -> dict:
    """The run's summary as `user` may see it: the per-label report is keyed by the reference
    labels (and counts them), so it goes with the case fields."""
    if "labels" not in (run.summary or {}) or run_case_fields_visible(user, run):
        return run.summary
    return {k: v for k, v in run.summary.items() if k != "labels"}


def run_worst_cases(user, run: Run, *, limit: int = 15, per_metric: int = 5) -> list[CaseView]:
    """The worst cases of each metric (the run page's list), as `user` may see them."""
    ids: list[int] = []
    for case_ids in (run.summary or {}).get("worst_cases", {}).values():
        ids.extend(case_ids[:per_metric])
    ids = list(dict.fromkeys(ids))[:limit]
    if not ids:
        return []
    results = {
        r.case_id: r
        for r in CaseResult.objects.filter(run=run, case_id__in=ids).select_related("case")
    }
    outputs = dict(
        RunOutput.objects.filter(run=run, case_id__in=ids).values_list("case_id", "output")
    )
    ordered = [results[i] for i in ids if i in results]
    return case_views(ordered, outputs, visible=run_case_fields_visible(user, run))
