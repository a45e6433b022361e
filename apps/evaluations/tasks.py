"""Celery tasks of the evaluations app: thin, idempotent, ids in."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .services import artifacts, runs
from .services.execution import RetryBatch


@shared_task(bind=True, acks_late=True, max_retries=None)
def evaluation_batch_run(self, batch_id: int) -> str:
    """Score one batch of a run (a re-delivered message changes nothing)."""
    queue = (self.request.delivery_info or {}).get("routing_key") or ""
    try:
        return runs.run_batch_execute(batch_id, queue=queue)
    except RetryBatch as exc:
        # The batch is pending again; its attempts are capped in the database.
        raise self.retry(exc=exc, countdown=min(60, 2 ** max(0, self.request.retries))) from exc
    except (OperationalError, InterfaceError) as exc:
        # The database went away before the batch was claimed (or could be handed back): try
        # again later on a fresh connection; a batch left claimed is the sweeper's.
        runs.drop_broken_connection()
        raise self.retry(exc=exc, countdown=min(60, 2 ** max(0, self.request.retries))) from exc


@shared_task(acks_late=True)
def evaluation_run_finalize(run_id: int) -> str:
    """Aggregate, compare and judge a run whose batches are all done (exactly once)."""
    return runs.run_finalize(run_id)


@shared_task
def evaluation_sweep() -> dict:
    """Re-enqueue lost or stuck batches and finalizations, and delete what interrupted model
    uploads left in storage (scheduled every minute)."""
    return {**runs.run_sweep(), **artifacts.storage_sweep()}


@shared_task(acks_late=True)
def artifact_validate_task(artifact_id: int) -> str:
    """Load an uploaded model in ONNX Runtime and check it fits its declared task."""
    return artifacts.artifact_validate(artifact_id)


@shared_task(acks_late=True)
def artifact_quantize_task(artifact_id: int, actor_id: int, floor: float) -> str:
    """Derive an int8 variant of a scorer and record its agreement, or the refusal."""
    return artifacts.artifact_quantize_execute(artifact_id, actor_id=actor_id, floor=floor)
