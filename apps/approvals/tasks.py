"""Celery tasks of the approvals app: expiry of open requests, certification reminders."""

from celery import shared_task
from django.utils import timezone

from apps.core.services import notification_send

from . import raci
from .choices import Activity, Role


@shared_task(soft_time_limit=120, time_limit=180)
def approvals_expire_open() -> int:
    """Close requests left open past their expiry."""
    from .services import approvals_expire

    return approvals_expire()


@shared_task(soft_time_limit=120, time_limit=180)
def certifications_remind() -> int:
    """A certification (the production label) lapses at the prompt's review date: remind the
    Responsible and Accountable people of each overdue live prompt, once per review date."""
    from apps.prompts.models import Label

    today = timezone.localdate()
    sent = 0
    live = Label.objects.filter(name="production", prompt__review_date__lt=today).select_related(
        "prompt__charter"
    )
    for label in live:
        prompt = label.prompt
        people = set()
        for role in (Role.RESPONSIBLE, Role.ACCOUNTABLE):
            people |= raci.members(
                raci.effective(prompt.charter, Activity.APPROVE_PRODUCTION_PROMPT, role)
            )
        people.add(prompt.owner_id)
        from django.contrib.auth import get_user_model

        sent += len(
            notification_send(
                recipients=get_user_model().objects.filter(pk__in=people, is_active=True),
                verb="approval.recertify",
                title=f"Certification of “{prompt.name}” lapsed on {prompt.review_date}",
                body="The live version's approval expired at the review date: review it and "
                "request promotion again, or retire it.",
                url=prompt.get_absolute_url(),
                dedupe_key=f"recertify:{prompt.pk}:{prompt.review_date.isoformat()}",
            )
        )
    return sent
