"""Celery tasks of the charters app: thin, idempotent, ids in."""

from celery import shared_task
from django.contrib.auth import get_user_model
from django.db.models import Q

from apps.core.groups import COMPLIANCE
from apps.core.services import notification_send

from .models import Charter

# Who hears about each transition: the business owner, compliance, or both.
AUDIENCE = {
    "submit": {"compliance"},
    "withdraw": {"compliance"},
    "approve": {"owner"},
    "reject": {"owner"},
    "start_pilot": {"compliance"},
    "go_live": {"owner"},
    "pause": {"owner", "compliance"},
    "resume": {"owner", "compliance"},
    "retire": {"owner", "compliance"},
}


@shared_task(
    acks_late=True, max_retries=5, default_retry_delay=10, soft_time_limit=120, time_limit=180
)
def charter_notify_transition(charter_id: int, transition: str, history_id: int, actor_id: int):
    """Tell the people concerned that a charter changed status (once per history row)."""
    charter = Charter.objects.select_related("business_owner").filter(pk=charter_id).first()
    if charter is None:
        return 0
    users = get_user_model().objects.filter(is_active=True)
    who = Q(pk__in=[])
    audience = AUDIENCE.get(transition, set())
    if "owner" in audience:
        who |= Q(pk=charter.business_owner_id)
    if "compliance" in audience:
        who |= Q(groups__name=COMPLIANCE)
    recipients = users.filter(who).exclude(pk=actor_id).distinct()
    record = charter.history.filter(history_id=history_id).select_related("history_user").first()
    by = record.history_user if record and record.history_user else None
    # Describe the transition as it was recorded, even if the charter has moved on since.
    status = (record or charter).get_status_display().lower()
    why = record.status_reason if record else ""
    reason = f"\n\nReason: {why}" if why else ""
    created = notification_send(
        recipients=recipients,
        verb=f"charter.{transition}",
        title=f"Charter “{charter.title}” is now {status}",
        body=f"{by or 'Someone'} changed the charter “{charter.title}” to {status}.{reason}",
        url=charter.get_absolute_url(),
        dedupe_key=f"charter:{charter_id}:history:{history_id}",
    )
    return len(created)
