"""Celery tasks of the evaluations app: thin, idempotent, ids in."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from .services import artifacts, runs
from .services.execution import RetryBatch

# Time limits (seconds): soft raises SoftTimeLimitExceeded in the task (a batch hands itself
# back and is retried), hard kills the worker child (prefork pool; the sweeper re-enqueues).
BATCH_SOFT = int(getattr(settings, "EVALUATIONS_BATCH_SOFT_TIME_LIMIT", 1500))
VALIDATE_SOFT = int(getattr(settings, "EVALUATIONS_VALIDATE_TIMEOUT_S", 60)) + 120


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=None,
    soft_time_limit=BATCH_SOFT,
    time_limit=BATCH_SOFT + 60,
)
def evaluation_batch_run(self, batch_id: int) -> str:
    """Score one batch of a run (a re-delivered message changes nothing)."""
    queue = (self.request.delivery_info or {}).get("routing_key") or ""
    try:
        try:
            return runs.run_batch_execute(batch_id, queue=queue)
        except SoftTimeLimitExceeded:
            # Past its soft time limit outside the scoring step (which hands itself back):
            # give the batch back now rather than leave it claimed for the sweeper.
            return runs.run_batch_timed_out(batch_id)
    except RetryBatch as exc:
        # The batch is pending again; its attempts are capped in the database.
        raise self.retry(exc=exc, countdown=min(60, 2 ** max(0, self.request.retries))) from exc
    except (OperationalError, InterfaceError) as exc:
        # The database went away before the batch was claimed (or could be handed back): try
        # again later on a fresh connection; a batch left claimed is the sweeper's.
        runs.drop_broken_connection()
        raise self.retry(exc=exc, countdown=min(60, 2 ** max(0, self.request.retries))) from exc


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def evaluation_run_finalize(run_id: int) -> str:
    """Aggregate, compare and judge a run whose batches are all done (exactly once)."""
    return runs.run_finalize(run_id)


@shared_task(soft_time_limit=120, time_limit=180)
def evaluation_sweep() -> dict:
    """Re-enqueue lost or stuck batches and finalizations, and delete what interrupted model
    uploads left in storage (scheduled every minute)."""
    return {**runs.run_sweep(), **artifacts.storage_sweep()}


# The model itself runs in a bounded child process (onnx/sandbox.py); this is the backstop.
@shared_task(acks_late=True, soft_time_limit=VALIDATE_SOFT, time_limit=VALIDATE_SOFT + 60)
def artifact_validate_task(artifact_id: int) -> str:
    """Load an uploaded model in ONNX Runtime and check it fits its declared task."""
    return artifacts.artifact_validate(artifact_id)


@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1860)
def artifact_quantize_task(artifact_id: int, actor_id: int, floor: float) -> str:
    """Derive an int8 variant of a scorer and record its agreement, or the refusal."""
    return artifacts.artifact_quantize_execute(artifact_id, actor_id=actor_id, floor=floor)
