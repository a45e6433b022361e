"""Scheduled work of the scorecards app."""

from celery import shared_task


# It only starts runs (their batches have their own limits).
@shared_task(soft_time_limit=300, time_limit=360)
def drift_check() -> list[int]:
    """Re-run each production version's suites and compare with their certification."""
    from .drift import drift_check_all

    return drift_check_all()
