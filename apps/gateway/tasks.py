"""Celery tasks of the gateway: online scoring of sampled executions."""

from celery import shared_task

from .services import online_score


@shared_task(acks_late=True, soft_time_limit=120, time_limit=180)
def gateway_score_sample(sample_id: int) -> str:
    """Score one sampled execution (a re-delivered message changes nothing)."""
    return online_score(sample_id)
