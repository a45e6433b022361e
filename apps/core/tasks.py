"""Celery tasks of the core app: the periodic signed checkpoint of the audit chain."""

from celery import shared_task


@shared_task(soft_time_limit=240, time_limit=300)
def audit_checkpoint() -> int | None:
    """Seal new dataset versions and sign the chain's head (beat, every few minutes)."""
    from .management.integrity import checkpoint

    row = checkpoint()
    return row.pk if row else None
