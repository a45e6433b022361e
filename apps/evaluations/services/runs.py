"""Evaluation runs: start, outputs, batches claimed idempotently, sweeping, cancelling, and the
one finalization that turns per-case results into distributions, a comparison and a verdict."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core import audit
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.prompts.models import Label
from apps.registry import selectors as registry_selectors
from apps.registry import services as registry_services

from .. import analysis, permissions, signals
from ..choices import (
    ACTIVE_RUN_STATUSES,
    ArtifactStatus,
    ArtifactTask,
    BatchStatus,
    OutputSource,
    RunStatus,
)
from ..models import Case, CaseResult, ModelArtifact, Run, RunBatch, RunOutput, Suite
from . import execution
from .datasets import RowError, check_storable, parse_json
from .suites import suite_metrics

logger = logging.getLogger(__name__)

ENDPOINT_KEYS = {"slug", "model", "concurrency"}


def _setting(name: str, default):
    return getattr(settings, name, default)


def batch_max_attempts() -> int:
    return int(_setting("EVALUATIONS_BATCH_MAX_ATTEMPTS", 3))


def batch_stale_after() -> timedelta:
    return timedelta(seconds=int(_setting("EVALUATIONS_BATCH_STALE_SECONDS", 900)))


def _enqueue_batches(run: Run, batch_ids: list[int]) -> None:
    from ..tasks import evaluation_batch_run

    RunBatch.objects.filter(pk__in=batch_ids).update(enqueued_at=timezone.now())
    options = {"queue": run.queue} if run.queue else {}
    for batch_id in batch_ids:
        evaluation_batch_run.apply_async(args=[batch_id], **options)


def _enqueue_finalize(run: Run, queue: str = "") -> None:
    from ..tasks import evaluation_run_finalize

    queue = run.queue or queue
    options = {"queue": queue} if queue else {}
    evaluation_run_finalize.apply_async(args=[run.pk], **options)


def default_baseline(suite: Suite, *, exclude_hash: str = "", model=None) -> Run | None:
    """The newest completed run of the suite on the version now on `production`."""
    completed = Run.objects.filter(suite=suite, status=RunStatus.COMPLETED)
    if suite.prompt_id:
        label = Label.objects.filter(prompt_id=suite.prompt_id, name="production").first()
        if label is None:
            return None
        completed = completed.filter(prompt_version_id=label.version_id)
        if exclude_hash:
            completed = completed.exclude(content_hash=exclude_hash)
    elif model is not None:
        completed = completed.exclude(model_under_test=model)
    return completed.order_by("-finished_at", "-id").first()


def _clean_endpoint(raw: Any, *, risk_tier: str) -> tuple[dict, list[str]]:
    """A registered endpoint (and a model it serves) as the run records it, or the problems.

    Free URLs and credential names are refused outright: a run names an approved registry
    entry, so nobody who may start a run can point a worker (and its secrets) elsewhere."""
    if isinstance(raw, str):
        raw = {"slug": raw}
    if not isinstance(raw, Mapping):
        return {}, ['Name a registered endpoint: {"slug": …, "model": …}.']
    if {"base_url", "api_key_env"} & set(raw):
        return {}, [
            "Free URLs and credentials are not accepted: name an approved endpoint of the "
            "model registry by its slug (GET /api/v1/registry/endpoints/)."
        ]
    problems = [f"Unknown key '{k}'." for k in sorted(set(raw) - ENDPOINT_KEYS)]
    model = str(raw.get("model") or "")
    try:
        endpoint = registry_services.usable(
            registry_selectors.endpoint_by_slug(raw.get("slug")), model, risk_tier=risk_tier
        )
    except registry_services.EndpointRefused as exc:
        return {}, [*problems, exc.message]
    cleaned = endpoint.snapshot(model)
    if raw.get("concurrency") is not None:
        try:
            value = int(raw["concurrency"])
        except (TypeError, ValueError):
            problems.append("concurrency must be a number.")
        else:
            if not 1 <= value <= endpoint.concurrency:
                problems.append(f"concurrency must be between 1 and {endpoint.concurrency}.")
            cleaned["concurrency"] = value
    return cleaned, problems


@transaction.atomic
def run_start(
    *,
    actor,
    suite: Suite,
    prompt_version=None,
    model_under_test: ModelArtifact | None = None,
    output_source: str = OutputSource.POSTED,
    endpoint: Mapping | None = None,
    input_variable: str = "",
    baseline: Run | None = None,
    batch_size: int | None = None,
    queue: str = "",
    note: str = "",
    purpose: str = "release",
) -> Run:
    """Start a run of `suite` on a prompt version or a model under test.

    Posted runs wait for their outputs; generated and model runs are split into batches and
    enqueued on commit.
    """
    permissions.require(actor, permissions.RUN, suite)
    errors: dict[str, list[str]] = {}
    if output_source not in OutputSource.values:
        errors["output_source"] = [f"Choose one of: {', '.join(OutputSource.values)}."]
    if (prompt_version is None) == (model_under_test is None):
        errors["subject"] = ["Give either a prompt version or a model under test."]
    if prompt_version is not None:
        if suite.prompt_id and prompt_version.prompt_id != suite.prompt_id:
            errors["prompt_version"] = [f"This suite evaluates the prompt '{suite.prompt.slug}'."]
        from apps.prompts import permissions as prompt_permissions

        # Running a suite covers reading the prompt it gates (CI service users see no charter).
        gated = suite.prompt_id == prompt_version.prompt_id
        if not gated and not prompt_permissions.can(
            actor, prompt_permissions.VIEW, prompt_version.prompt
        ):
            errors["prompt_version"] = ["No such prompt version."]
    cleaned_endpoint: dict = {}
    if output_source == OutputSource.GENERATED:
        if prompt_version is None:
            errors["output_source"] = ["Generated outputs need a prompt version to render."]
        cleaned_endpoint, problems = _clean_endpoint(
            endpoint or {}, risk_tier=execution.run_risk_tier(suite, prompt_version)
        )
        if problems:
            errors["endpoint"] = problems
    elif endpoint:
        errors["endpoint"] = ["Only generated runs call an endpoint."]
    if output_source == OutputSource.MODEL:
        if model_under_test is None:
            errors["model_under_test"] = ["Choose the ONNX model under test."]
        elif model_under_test.task != ArtifactTask.SEQUENCE_CLASSIFICATION:
            errors["model_under_test"] = ["The model under test must be a sequence classifier."]
        if not input_variable:
            errors["input_variable"] = ["Name the case variable the model reads."]
    if model_under_test is not None:
        if not permissions.can(actor, permissions.VIEW, model_under_test):
            errors["model_under_test"] = ["No such model artifact."]
        elif model_under_test.status != ArtifactStatus.VALID:
            errors["model_under_test"] = [
                f"The model is {model_under_test.get_status_display().lower()}."
            ]
        if output_source != OutputSource.MODEL and output_source != OutputSource.POSTED:
            errors["output_source"] = ["A model under test produces its own outputs."]
    for name, value in (("input_variable", input_variable), ("queue", queue)):
        limit = Run._meta.get_field(name).max_length
        if len(value or "") > limit:
            errors[name] = [f"At most {limit} characters."]
    size = batch_size or int(_setting("EVALUATIONS_BATCH_SIZE", 100))
    if not 1 <= size <= 5000:
        errors["batch_size"] = ["Choose a batch size between 1 and 5000."]
    if baseline is not None and baseline.suite_id != suite.pk:
        errors["baseline"] = ["The baseline must be a run of the same suite."]
    if baseline is not None and baseline.status != RunStatus.COMPLETED:
        errors["baseline"] = ["The baseline run has not completed."]
    for item in suite.scorers:
        if item.get("artifact"):
            artifact = ModelArtifact.objects.filter(slug=item["artifact"]).first()
            if artifact is None or artifact.status != ArtifactStatus.VALID:
                errors.setdefault("suite", []).append(
                    f"The scorer model '{item['artifact']}' is no longer valid."
                )
    dataset_version = suite.dataset_version
    if dataset_version.case_count == 0:
        errors["suite"] = ["The suite's dataset version holds no cases."]
    if errors:
        raise ValidationFailed("The run cannot start.", errors=errors)

    content_hash = prompt_version.content_hash if prompt_version is not None else ""
    if baseline is None:
        baseline = default_baseline(suite, exclude_hash=content_hash, model=model_under_test)
    total = dataset_version.case_count
    run = Run.objects.create(
        suite=suite,
        dataset_version=dataset_version,
        prompt_version=prompt_version,
        content_hash=content_hash,
        model_under_test=model_under_test,
        output_source=output_source,
        endpoint=cleaned_endpoint,
        input_variable=input_variable,
        baseline=baseline,
        status=(
            RunStatus.AWAITING_OUTPUTS if output_source == OutputSource.POSTED else RunStatus.QUEUED
        ),
        total_cases=total,
        total_batches=(total + size - 1) // size,
        batch_size=size,
        queue=queue or _setting("EVALUATIONS_QUEUE", ""),
        scorer_artifacts=execution.scorer_artifacts(suite.scorers),
        note=note[:300],
        purpose=purpose,
        created_by=actor,
    )
    RunBatch.objects.bulk_create(
        RunBatch(
            run=run,
            index=index,
            first_position=index * size + 1,
            last_position=min(total, (index + 1) * size),
        )
        for index in range(run.total_batches)
    )
    if run.status == RunStatus.QUEUED:
        batch_ids = list(run.batches.values_list("pk", flat=True))
        transaction.on_commit(lambda: _enqueue_batches(run, batch_ids))
    return run


def outputs_from_jsonl(lines: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
    """(line number, decoded item, or the reason it is not JSON) per non-blank JSONL line."""
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        try:
            yield number, parse_json(text)
        except RowError as exc:
            yield number, f"not JSON ({exc})"


def _unstorable(text: str) -> str | None:
    try:
        check_storable(text, "output")
    except RowError as exc:
        return str(exc)
    return None


@transaction.atomic
def run_outputs_post(
    *,
    actor,
    run: Run,
    items: Iterable[tuple[int, Mapping[str, Any]]],
    complete: bool = False,
    enqueue: bool = True,
) -> dict:
    """Store posted outputs matched by case id; every bad item is reported and nothing kept.

    `items` yields (line or item number, {"id": case id, "output": text}). Posting a case
    again replaces its output while the run still awaits outputs. With `complete`, or once
    every case has an output, scoring starts.
    """
    permissions.require(actor, permissions.RUN, run)
    locked = Run.objects.select_for_update().get(pk=run.pk)
    if locked.status != RunStatus.AWAITING_OUTPUTS:
        raise InvalidTransition(
            f"The run is {locked.get_status_display().lower()}; it no longer takes outputs."
        )
    ids = dict(
        Case.objects.filter(dataset_version_id=locked.dataset_version_id).values_list(
            "external_id", "pk"
        )
    )
    errors: list[str] = []
    rows: dict[int, RunOutput] = {}
    for number, item in items:
        if isinstance(item, str):  # the parser's own complaint about this line
            errors.append(f"line {number}: {item}")
            continue
        if not isinstance(item, Mapping):
            errors.append(f"line {number}: an object with 'id' and 'output' is required.")
            continue
        external_id = str(item.get("id") or "").strip()
        output = item.get("output")
        if not external_id:
            errors.append(f"line {number}: 'id' is required.")
        elif external_id not in ids:
            errors.append(f"line {number}: no case '{external_id}' in the suite's dataset.")
        elif not isinstance(output, str):
            errors.append(f"line {number}: 'output' must be text.")
        elif (unstorable := _unstorable(output)) is not None:
            errors.append(f"line {number}: {unstorable}")
        elif ids[external_id] in rows:
            errors.append(f"line {number}: case '{external_id}' appears twice.")
        else:
            rows[ids[external_id]] = RunOutput(run=locked, case_id=ids[external_id], output=output)
    if errors:
        raise ValidationFailed(
            f"{len(errors)} output(s) are not valid; nothing was kept.",
            errors={"outputs": errors[:500]},
        )
    RunOutput.objects.bulk_create(
        rows.values(),
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["run", "case"],
        update_fields=["output"],
    )
    posted = locked.outputs.count()
    if complete or posted >= locked.total_cases:
        run_scoring_start(actor=actor, run=locked, enqueue=enqueue)
    return {"received": len(rows), "posted": posted, "total": locked.total_cases}


@transaction.atomic
def run_scoring_start(*, actor, run: Run, enqueue: bool = True) -> Run:
    """Close a posted run for outputs and enqueue its batches (missing outputs score as errors).

    `enqueue=False` leaves the batches to the caller (the demo scores in-process)."""
    permissions.require(actor, permissions.RUN, run)
    moved = Run.objects.filter(pk=run.pk, status=RunStatus.AWAITING_OUTPUTS).update(
        status=RunStatus.QUEUED
    )
    if not moved:
        raise InvalidTransition("The run is not awaiting outputs.")
    run.refresh_from_db()
    if enqueue:
        batch_ids = list(run.batches.values_list("pk", flat=True))
        transaction.on_commit(lambda: _enqueue_batches(run, batch_ids))
    return run


@transaction.atomic
def run_cancel(*, actor, run: Run, reason: str = "") -> Run:
    """Stop a run: pending batches are skipped, finished results stay for inspection."""
    permissions.require(actor, permissions.RUN, run)
    moved = Run.objects.filter(pk=run.pk, status__in=ACTIVE_RUN_STATUSES).update(
        status=RunStatus.CANCELLED,
        finished_at=timezone.now(),
        error=(reason or f"Cancelled by {actor.get_username()}")[:2000],
    )
    if not moved:
        raise InvalidTransition("Only a run that is still going can be cancelled.")
    RunBatch.objects.filter(run=run, status=BatchStatus.PENDING).update(
        status=BatchStatus.FAILED, error="The run was cancelled."
    )
    run.refresh_from_db()
    return run


def _fail_run(run_id: int, message: str) -> bool:
    return bool(
        Run.objects.filter(pk=run_id, status__in=ACTIVE_RUN_STATUSES).update(
            status=RunStatus.FAILED, error=message[:2000], finished_at=timezone.now()
        )
    )


def drop_broken_connection() -> None:
    """Close the database connection if it broke, so that the next query opens a fresh one
    (Django itself only checks between requests and tasks). Never inside a transaction."""
    if connection.in_atomic_block or connection.connection is None:
        return
    if not connection.is_usable():
        connection.close()


def _retry_or_fail(batch_id: int, run_id: int, attempts: int, message: str) -> str:
    """Hand a failed attempt's batch back and raise RetryBatch, or, once its attempts are
    spent, fail the batch and its run."""
    if attempts >= batch_max_attempts():
        RunBatch.objects.filter(pk=batch_id).update(
            status=BatchStatus.FAILED, error=message[:2000], finished_at=timezone.now()
        )
        _fail_run(run_id, f"{message} (gave up after {attempts} attempts)")
        return "failed"
    RunBatch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
        status=BatchStatus.PENDING, error=message[:2000]
    )
    raise execution.RetryBatch(message)


def run_batch_timed_out(batch_id: int) -> str:
    """A batch whose task passed its soft time limit: hand it back (raises RetryBatch) or, out
    of attempts, fail it; nothing when it is no longer claimed."""
    drop_broken_connection()
    row = (
        RunBatch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED)
        .values_list("run_id", "attempts")
        .first()
    )
    if row is None:
        return "skipped"
    return _retry_or_fail(batch_id, row[0], row[1], "The batch ran past its time limit.")


def run_batch_execute(batch_id: int, *, queue: str = "") -> str:
    """Score one batch exactly once: claim it, produce outputs, score, write results.

    A re-delivered message finds the batch claimed or done and changes nothing; results are
    keyed by (run, case), so even an overlapping retry cannot write a case twice; the batch
    that moves the run's done counter to the total enqueues the finalization. A database
    connection lost after the claim takes the attempt's open transaction with it: the batch
    is handed back on a fresh connection and retried, within its attempts.
    """
    now = timezone.now()
    claimed = RunBatch.objects.filter(pk=batch_id, status=BatchStatus.PENDING).update(
        status=BatchStatus.CLAIMED, claimed_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        return "skipped"
    try:
        return _batch_score_and_write(batch_id, queue=queue, now=now)
    except (OperationalError, InterfaceError) as exc:
        drop_broken_connection()
        message = f"Lost the database connection: {type(exc).__name__}: {exc}".strip()
        logger.warning("batch %s: %s; handing it back", batch_id, message)
        run_id, attempts = RunBatch.objects.values_list("run_id", "attempts").get(pk=batch_id)
        return _retry_or_fail(batch_id, run_id, attempts, message)


def _batch_score_and_write(batch_id: int, *, queue: str, now) -> str:
    """Score a claimed batch's unscored cases and write their results in one transaction."""
    batch = RunBatch.objects.select_related(
        "run__suite", "run__prompt_version", "run__model_under_test"
    ).get(pk=batch_id)
    run = batch.run
    if run.status not in (RunStatus.QUEUED, RunStatus.SCORING):
        RunBatch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
            status=BatchStatus.FAILED, error=f"The run is {run.status}."
        )
        return "run-inactive"
    Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.SCORING, started_at=now
    )
    started = time.perf_counter()
    try:
        cases = list(
            Case.objects.filter(
                dataset_version_id=run.dataset_version_id,
                position__gte=batch.first_position,
                position__lte=batch.last_position,
            ).order_by("position")
        )
        scored = set(
            CaseResult.objects.filter(run=run, case__in=cases).values_list("case_id", flat=True)
        )
        todo = [case for case in cases if case.pk not in scored]
        outputs = execution.produce_outputs(run, todo)
        results = execution.score_cases(run, todo, outputs)
    except Exception as exc:  # any failure of this attempt: retry, then fail the run
        drop_broken_connection()
        logger.exception("batch %s of run %s failed", batch.index, run.pk)
        message = f"Batch {batch.index}: {type(exc).__name__}: {exc}"
        return _retry_or_fail(batch_id, run.pk, batch.attempts, message)

    with transaction.atomic():
        CaseResult.objects.bulk_create(results, batch_size=1000, ignore_conflicts=True)
        moved = RunBatch.objects.filter(pk=batch_id, status=BatchStatus.CLAIMED).update(
            status=BatchStatus.DONE,
            finished_at=timezone.now(),
            seconds=time.perf_counter() - started,
            error="",
        )
        if moved:
            Run.objects.filter(pk=run.pk).update(
                done_batches=F("done_batches") + 1,
                done_cases=F("done_cases") + (batch.last_position - batch.first_position + 1),
            )
            last = Run.objects.filter(
                pk=run.pk, status=RunStatus.SCORING, done_batches=F("total_batches")
            ).update(status=RunStatus.FINALIZING)
            if last:
                transaction.on_commit(lambda: _enqueue_finalize(run, queue))
    return "done" if moved else "duplicate"


def run_finalize(run_id: int) -> str:
    """Aggregate, compare with the baseline and judge the thresholds; written exactly once."""
    run = Run.objects.select_related("suite", "baseline", "created_by").filter(pk=run_id).first()
    if run is None or run.status != RunStatus.FINALIZING:
        return "skipped"
    specs = suite_metrics(run.suite.scorers)
    report = analysis.analyse_run(
        run,
        specs,
        thresholds=list(run.suite.thresholds.all()),
        min_segment_cases=run.suite.min_segment_cases,
        tolerance=run.suite.regression_tolerance,
    )
    with transaction.atomic():
        moved = Run.objects.filter(pk=run_id, status=RunStatus.FINALIZING).update(
            status=RunStatus.COMPLETED,
            verdict=report["verdict"],
            summary=report["summary"],
            comparison=report["comparison"],
            gate=report["gate"],
            finished_at=timezone.now(),
        )
        if moved:
            audit.record(
                "evaluation.verdict",
                actor=run.created_by,
                obj=run,
                charter_id=run.suite.charter_id,
                data={
                    "suite": run.suite.slug,
                    "subject": run.subject,
                    "content_hash": run.content_hash,
                    "verdict": report["verdict"],
                    "scorer_artifacts": run.scorer_artifacts,
                },
            )
            transaction.on_commit(lambda: _notify_finished(run_id))
            transaction.on_commit(
                lambda: signals.run_finalized.send(sender=Run, run_id=run_id, purpose=run.purpose)
            )
    return "finalized" if moved else "duplicate"


def _notify_finished(run_id: int) -> None:
    from apps.core.services import notification_send

    run = Run.objects.select_related("suite", "created_by").get(pk=run_id)
    notification_send(
        recipients=[run.created_by],
        verb="evaluation.finished",
        title=f"Evaluation of {run.subject} on “{run.suite.name}”: {run.verdict or run.status}",
        body=f"{run.total_cases} cases scored; verdict {run.verdict or '—'}.",
        url=run.get_absolute_url(),
        dedupe_key=f"evaluation-run:{run_id}:finished",
    )


def run_sweep(now=None) -> dict[str, int]:
    """Re-enqueue batches that were lost or got stuck, fail those out of attempts, and
    re-enqueue finalizations that never ran."""
    now = now or timezone.now()
    stale = now - batch_stale_after()
    counts = {"requeued": 0, "failed": 0, "finalize": 0}
    active = Q(run__status__in=(RunStatus.QUEUED, RunStatus.SCORING))
    stuck = RunBatch.objects.filter(active).filter(
        Q(status=BatchStatus.CLAIMED, claimed_at__lt=stale)
        | Q(status=BatchStatus.PENDING, enqueued_at__lt=stale)
    )
    by_run: dict[int, list[int]] = {}
    for batch in stuck.select_related("run"):
        if batch.attempts >= batch_max_attempts():
            if RunBatch.objects.filter(pk=batch.pk, status=batch.status).update(
                status=BatchStatus.FAILED, error="Stuck and out of attempts."
            ):
                _fail_run(
                    batch.run_id,
                    f"Batch {batch.index} got stuck {batch.attempts} times; the run was stopped.",
                )
                counts["failed"] += 1
            continue
        if RunBatch.objects.filter(
            pk=batch.pk, status=batch.status, claimed_at=batch.claimed_at
        ).update(status=BatchStatus.PENDING):
            by_run.setdefault(batch.run_id, []).append(batch.pk)
            counts["requeued"] += 1
    for run in Run.objects.filter(pk__in=by_run):
        _enqueue_batches(run, by_run[run.pk])
    for run in Run.objects.filter(status=RunStatus.FINALIZING, done_batches=F("total_batches")):
        last_batch = run.batches.order_by("-finished_at").values_list("finished_at", flat=True)
        finished = last_batch.first()
        if finished is None or finished < stale:
            _enqueue_finalize(run)
            counts["finalize"] += 1
    return counts


def run_progress(run: Run, now=None) -> dict:
    """Cases done / total, the rate since scoring started and the estimated time left."""
    now = now or timezone.now()
    elapsed = (now - run.started_at).total_seconds() if run.started_at else 0.0
    end = run.finished_at or now
    if run.started_at and run.finished_at:
        elapsed = (end - run.started_at).total_seconds()
    rate = run.done_cases / elapsed if elapsed > 0 and run.done_cases else None
    remaining = max(0, run.total_cases - run.done_cases)
    eta = remaining / rate if rate and run.status in ACTIVE_RUN_STATUSES else None
    return {
        "done": run.done_cases,
        "total": run.total_cases,
        "percent": round(100 * run.done_cases / run.total_cases, 1) if run.total_cases else 0.0,
        "cases_per_second": round(rate, 2) if rate else None,
        "eta_seconds": round(eta) if eta is not None else None,
        "batches_done": run.done_batches,
        "batches_total": run.total_batches,
    }
