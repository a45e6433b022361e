"""Celery tasks of the prompts app: thin, idempotent, ids in."""

from celery import shared_task
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from apps.core.services import notification_send

from .choices import PromptStatus
from .models import Prompt


@shared_task(acks_late=True, soft_time_limit=120, time_limit=180)
def prompt_notify_consumers(
    prompt_id: int, verb: str, title: str, body: str, history_id: int
) -> int:
    """Tell the prompt owner and every consuming application's owner (once per history row)."""
    prompt = Prompt.objects.filter(pk=prompt_id).first()
    if prompt is None:
        return 0
    recipients = (
        get_user_model()
        .objects.filter(
            Q(pk=prompt.owner_id) | Q(owned_applications__consumptions__prompt=prompt),
            is_active=True,
        )
        .distinct()
    )
    created = notification_send(
        recipients=recipients,
        verb=verb,
        title=title,
        body=body,
        url=prompt.get_absolute_url(),
        dedupe_key=f"prompt:{prompt_id}:history:{history_id}",
    )
    return len(created)


@shared_task(soft_time_limit=120, time_limit=180)
def prompt_review_reminders() -> int:
    """Remind owners of active prompts whose review date has passed (once per review date)."""
    today = timezone.localdate()
    sent = 0
    overdue = (
        Prompt.objects.filter(review_date__lt=today)
        .exclude(status=PromptStatus.RETIRED)
        .select_related("owner")
    )
    for prompt in overdue.iterator():
        sent += len(
            notification_send(
                recipients=[prompt.owner],
                verb="prompt.review_due",
                title=f"Review of prompt “{prompt.name}” is overdue",
                body=f"The review date {prompt.review_date.isoformat()} has passed. Review the prompt, then set a new review date or retire it.",
                url=prompt.get_absolute_url(),
                dedupe_key=f"prompt:{prompt.pk}:review:{prompt.review_date.isoformat()}",
            )
        )
    return sent


SUNSET_NOTICE_DAYS = (14, 7, 1)


@shared_task(soft_time_limit=120, time_limit=180)
def prompt_sunset_reminders() -> int:
    """Remind consuming application owners 14, 7 and 1 day before a deprecated prompt's
    sunset date (once per prompt and notice)."""
    today = timezone.localdate()
    sent = 0
    deprecated = Prompt.objects.filter(
        status=PromptStatus.DEPRECATED, sunset_date__isnull=False, sunset_date__gte=today
    ).select_related("successor")
    for prompt in deprecated:
        days = (prompt.sunset_date - today).days
        if days not in SUNSET_NOTICE_DAYS:
            continue
        recipients = (
            get_user_model()
            .objects.filter(
                Q(pk=prompt.owner_id) | Q(owned_applications__consumptions__prompt=prompt),
                is_active=True,
            )
            .distinct()
        )
        successor = f" Move to {prompt.successor.slug}." if prompt.successor_id else ""
        sent += len(
            notification_send(
                recipients=recipients,
                verb="prompt.sunset_soon",
                title=f"“{prompt.name}” stops answering in {days} day(s)",
                body=f"It retires on {prompt.sunset_date.isoformat()}.{successor}",
                url=prompt.get_absolute_url(),
                dedupe_key=f"prompt:{prompt.pk}:sunset:{prompt.sunset_date.isoformat()}:{days}",
            )
        )
    return sent
