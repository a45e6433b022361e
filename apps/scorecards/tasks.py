"""Scheduled work of the scorecards app."""

from celery import shared_task


@shared_task
def drift_check() -> list[int]:
    """Re-run each production version's suites and compare with their certification."""
    from .drift import drift_check_all

    return drift_check_all()
