"""Suites and their thresholds: what judges a release, and the bars it must clear."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils.text import slugify

from apps.core import audit
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.history import delete_with_history

from .. import permissions
from ..choices import Aggregate, ArtifactStatus, ArtifactTask, Comparator
from ..models import ModelArtifact, Suite, Threshold
from ..scoring import base as scoring
from ..scoring import builtin, semantic  # noqa: F401  (register the scorers)
from ._common import RESERVED_SLUGS, save_with_history, unique_slug

MODEL_TASKS = {
    "encoder": ArtifactTask.SENTENCE_EMBEDDING,
    "classifier": ArtifactTask.SEQUENCE_CLASSIFICATION,
    "cross_encoder": ArtifactTask.CROSS_ENCODER,
}
SUITE_FIELDS = (
    "name",
    "description",
    "prompt",
    "dataset_version",
    "scorers",
    "regression_tolerance",
    "min_segment_cases",
)
# What decides whether a run passes: changing one of these weakens or moves the gate, so it
# needs the threshold owners' approval (apps.approvals.services.suite_change).
GATE_FIELDS = ("prompt", "dataset_version", "scorers", "regression_tolerance", "min_segment_cases")


def gate_changes(suite: Suite, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The gate settings in `fields` that differ from the suite's."""
    changed = {}
    for key in GATE_FIELDS:
        if key not in fields:
            continue
        value = fields[key]
        current = getattr(suite, f"{key}_id" if key in ("prompt", "dataset_version") else key)
        new = value.pk if hasattr(value, "pk") else value
        if key == "regression_tolerance" and new is not None:
            new = float(new)
        if key == "min_segment_cases" and new is not None:
            new = int(new)
        # Detaching the gated prompt (None) is a change; elsewhere None means "not given".
        if (new is not None or key == "prompt") and new != current:
            changed[key] = value
    return changed


def other_threshold_owners(suite: Suite, actor) -> list:
    """The owners of the suite's thresholds other than `actor`: they decide gate changes."""
    owners = {t.owner for t in suite.thresholds.select_related("owner") if t.owner_id != actor.pk}
    return sorted(owners, key=lambda u: u.pk)


def default_artifact(task: str) -> ModelArtifact | None:
    """The library's default valid artifact for a task (the MiniLM encoder for embeddings)."""
    return (
        ModelArtifact.objects.filter(task=task, status=ArtifactStatus.VALID, is_default=True)
        .order_by("-created_at")
        .first()
    )


def clean_scorers(raw: Any) -> tuple[list[dict], list[str]]:
    """Validate a suite's scorer list; returns (cleaned list, error messages)."""
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
        return [], ["Add at least one scorer: a list of {scorer, params, artifact}."]
    cleaned, errors = [], []
    for index, item in enumerate(raw, start=1):
        if not isinstance(item, Mapping) or "scorer" not in item:
            errors.append(f"scorer {index}: an object with a 'scorer' key is required.")
            continue
        unknown = sorted(set(item) - {"scorer", "params", "artifact"})
        if unknown:
            errors.append(f"scorer {index}: unknown key(s) {', '.join(unknown)}.")
            continue
        try:
            spec = scoring.get(str(item["scorer"]))
            params = spec.validate(dict(item.get("params") or {}))
        except scoring.ScorerConfigError as exc:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
            errors.append(f"scorer {index} ({item['scorer']}): {exc} {details}".strip())
            continue
        entry = {"scorer": spec.key, "params": params}
        if spec.needs_model:
            task = MODEL_TASKS[spec.needs_model]
            slug = item.get("artifact") or ""
            artifact = (
                ModelArtifact.objects.filter(slug=slug).first() if slug else default_artifact(task)
            )
            if artifact is None:
                errors.append(
                    f"scorer {index} ({spec.key}): "
                    + (
                        f"no model artifact '{slug}'."
                        if slug
                        else f"no default {task} model is installed."
                    )
                )
                continue
            if artifact.task != task:
                errors.append(
                    f"scorer {index} ({spec.key}): '{artifact.slug}' is not a {task} model."
                )
                continue
            if artifact.status != ArtifactStatus.VALID:
                errors.append(
                    f"scorer {index} ({spec.key}): '{artifact.slug}' is {artifact.get_status_display().lower()}."
                )
                continue
            entry["artifact"] = artifact.slug
        elif item.get("artifact"):
            errors.append(f"scorer {index} ({spec.key}): this scorer takes no model artifact.")
            continue
        cleaned.append(entry)
    return cleaned, errors


def suite_metrics(scorers: Sequence[Mapping]) -> dict[str, scoring.MetricSpec]:
    """Every metric the suite's scorers emit, by name."""
    metrics: dict[str, scoring.MetricSpec] = {}
    for item in scorers:
        spec = scoring.get(item["scorer"])
        for metric in spec.metrics(item.get("params") or {}):
            metrics[metric.name] = metric
    return metrics


def _apply(suite: Suite, fields: Mapping[str, Any], actor) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for key in sorted(set(fields) - set(SUITE_FIELDS) - {"slug", "charter"}):
        errors[key] = ["Unknown field."]
    if "name" in fields:
        suite.name = (fields["name"] or "").strip()
    if not suite.name:
        errors["name"] = ["This field is required."]
    for key in ("description", "prompt"):
        if key in fields:
            setattr(suite, key, fields[key] or ("" if key == "description" else None))
    if "dataset_version" in fields:
        suite.dataset_version = fields["dataset_version"]
    if getattr(suite, "dataset_version", None) is None:
        errors["dataset_version"] = ["Choose the dataset version the suite runs on."]
    elif not permissions.can(actor, permissions.VIEW, suite.dataset_version.dataset):
        errors["dataset_version"] = ["No such dataset."]
    if "scorers" in fields:
        cleaned, problems = clean_scorers(fields["scorers"])
        if problems:
            errors["scorers"] = problems
        suite.scorers = cleaned
    for key, low, high in (("regression_tolerance", 0.0, 1.0), ("min_segment_cases", 0, 100_000)):
        if key in fields and fields[key] is not None:
            try:
                value = float(fields[key]) if key == "regression_tolerance" else int(fields[key])
            except (TypeError, ValueError):
                errors[key] = ["Enter a number."]
                continue
            if not low <= value <= high:
                errors[key] = [f"Enter a value between {low} and {high}."]
            setattr(suite, key, value)
    if (
        suite.prompt_id
        and suite.charter_id
        and suite.prompt.charter_id not in (None, suite.charter_id)
    ):
        errors["prompt"] = ["The prompt belongs to another charter."]
    return errors


@transaction.atomic
def suite_create(*, actor, charter=None, slug: str = "", fields: Mapping[str, Any]) -> Suite:
    """Create a suite under a charter: a dataset version and the scorers that judge it."""
    if not permissions.can_author_under(actor, charter):
        raise PermissionDenied("You may not create suites under this charter.")
    suite = Suite(charter=charter, owner=actor)
    errors = _apply(suite, fields, actor)
    if "scorers" not in fields:
        errors["scorers"] = ["Add at least one scorer."]
    slug = slugify(slug or "")
    if slug in RESERVED_SLUGS:
        errors["slug"] = [f"'{slug}' is reserved; choose another slug."]
    elif slug and Suite.objects.filter(slug=slug).exists():
        errors["slug"] = ["A suite with this slug already exists."]
    if errors:
        raise ValidationFailed("The suite is not valid.", errors=errors)
    suite.slug = slug or unique_slug(Suite, suite.name)
    save_with_history(suite, actor=actor, reason="Suite created")
    return suite


@transaction.atomic
def suite_update(
    *, actor, suite: Suite, fields: Mapping[str, Any], reason: str = "", decided: bool = False
) -> Suite:
    """Change a suite's scorers, dataset version or tolerances (recorded in its history).

    Gate settings change here at once only when nobody else owns one of its thresholds, or
    once those owners approved (`decided`, set by the approvals workflow alone)."""
    permissions.require(actor, permissions.AUTHOR, suite)
    locked = Suite.objects.select_for_update().get(pk=suite.pk)
    if not decided and gate_changes(locked, fields) and other_threshold_owners(locked, actor):
        raise InvalidTransition(
            "Changing what the suite's gate tests needs its threshold owners' approval: "
            "ask for the change (it opens an approval request)."
        )
    errors = _apply(locked, fields, actor)
    if "slug" in fields or "charter" in fields:
        errors["slug" if "slug" in fields else "charter"] = ["This cannot be changed."]
    metrics = suite_metrics(locked.scorers) if "scorers" not in errors else {}
    orphaned = sorted({t.metric for t in locked.thresholds.all()} - set(metrics))
    if metrics and orphaned:
        errors.setdefault("scorers", []).append(
            f"Thresholds use metric(s) no scorer would emit: {', '.join(orphaned)}."
        )
    if errors:
        raise ValidationFailed("The suite is not valid.", errors=errors)
    save_with_history(locked, actor=actor, reason=reason or "Suite updated")
    return locked


THRESHOLD_FIELDS = (
    "metric",
    "aggregate",
    "comparator",
    "value",
    "blocking",
    "min_cases",
    "segment_key",
    "rationale",
    "owner",
)


@transaction.atomic
def threshold_set(
    *,
    actor,
    suite: Suite,
    fields: Mapping[str, Any],
    threshold: Threshold | None = None,
    reason: str = "",
    decided: bool = False,
) -> Threshold:
    """Add or change one threshold; every change lands in the threshold's history.

    Anyone who may author the suite adds a threshold (a stricter gate); an existing one is
    changed by its owner, or once its owner approved (`decided`, the approvals workflow)."""
    permissions.require(actor, permissions.AUTHOR, suite)
    if threshold is not None and not decided and threshold.owner_id != actor.pk:
        raise InvalidTransition(
            "Only its owner changes a threshold; anyone else asks the owner (an approval request)."
        )
    errors: dict[str, list[str]] = {
        key: ["Unknown field."] for key in sorted(set(fields) - set(THRESHOLD_FIELDS))
    }
    if threshold is None:
        threshold = Threshold(suite=suite, owner=fields.get("owner") or actor)
    else:
        threshold = Threshold.objects.select_for_update().get(pk=threshold.pk, suite=suite)
    for key in THRESHOLD_FIELDS:
        if key in fields and fields[key] is not None:
            setattr(threshold, key, fields[key])
    metrics = suite_metrics(suite.scorers)
    if threshold.metric not in metrics:
        errors["metric"] = [f"Choose one of the suite's metrics: {', '.join(sorted(metrics))}."]
    if threshold.aggregate not in Aggregate.values:
        errors["aggregate"] = [f"Choose one of: {', '.join(Aggregate.values)}."]
    if threshold.comparator not in Comparator.values:
        errors["comparator"] = [f"Choose one of: {', '.join(Comparator.values)}."]
    try:
        threshold.value = float(threshold.value)
    except (TypeError, ValueError):
        errors["value"] = ["Enter a number."]
    try:
        threshold.min_cases = int(threshold.min_cases)
        if threshold.min_cases < 0:
            raise ValueError
    except (TypeError, ValueError):
        errors["min_cases"] = ["Enter a whole number of cases, 0 or more."]
    if threshold.segment_key and threshold.aggregate != Aggregate.WORST_SEGMENT:
        errors["segment_key"] = ["Only a worst-segment threshold names a segment key."]
    if errors:
        raise ValidationFailed("The threshold is not valid.", errors=errors)
    creating = threshold.pk is None
    save_with_history(
        threshold,
        actor=actor,
        reason=reason or ("Threshold added" if creating else "Threshold changed"),
    )
    audit.record(
        "evaluation.threshold",
        actor=actor,
        obj=suite,
        data={
            "threshold": threshold.pk,
            "change": "added" if creating else "changed",
            "bar": str(threshold),
            "blocking": threshold.blocking,
            "reason": reason,
        },
    )
    return threshold


@transaction.atomic
def threshold_delete(
    *, actor, threshold: Threshold, reason: str = "", decided: bool = False
) -> None:
    """Remove a threshold (its history keeps the deletion, with who and why): its owner at
    once, anyone else once the owner approved (`decided`, set by the approvals workflow)."""
    permissions.require(actor, permissions.AUTHOR, threshold.suite)
    if not decided and threshold.owner_id != actor.pk:
        raise InvalidTransition(
            "Only its owner removes a threshold; anyone else asks the owner (an approval request)."
        )
    audit.record(
        "evaluation.threshold",
        actor=actor,
        obj=threshold.suite,
        data={
            "threshold": threshold.pk,
            "change": "removed",
            "bar": str(threshold),
            "reason": reason,
        },
    )
    delete_with_history(threshold, actor=actor, reason=reason or "Threshold removed")
