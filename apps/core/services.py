"""Writes for shared pieces: notifications and API keys."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import Truncator

from .models import ApiKey, Notification


def notification_send(
    *,
    recipients: Iterable,
    verb: str,
    title: str,
    body: str = "",
    url: str = "",
    dedupe_key: str,
) -> list[Notification]:
    """Notify each recipient once per dedupe key, in the app and by e-mail.

    Re-running with the same key (a re-delivered task) creates and sends nothing new.
    """
    # Titles quote what users typed (names, subjects): keep them within the column.
    title = Truncator(title).chars(Notification._meta.get_field("title").max_length)
    created: list[Notification] = []
    for user in {u.pk: u for u in recipients}.values():
        try:
            with transaction.atomic():
                note = Notification.objects.create(
                    recipient=user,
                    verb=verb,
                    title=title,
                    body=body,
                    url=url,
                    dedupe_key=dedupe_key,
                )
        except IntegrityError:
            continue
        created.append(note)
    for note in created:
        if note.recipient.email:
            link = f"{settings.SITE_URL}{note.url}" if note.url else ""
            send_mail(
                # A title quotes what users typed; a line break in a mail header is refused.
                subject=" ".join(f"[AI Factory] {note.title}".split()),
                message="\n\n".join(part for part in (note.body, link) if part),
                from_email=None,
                recipient_list=[note.recipient.email],
            )
            Notification.objects.filter(pk=note.pk).update(emailed_at=timezone.now())
    return created


def notification_mark_read(*, actor, notification_ids: Iterable[int] | None = None) -> int:
    """Mark the actor's notifications read (all of them when no ids are given)."""
    qs = Notification.objects.filter(recipient=actor, read_at__isnull=True)
    if notification_ids is not None:
        qs = qs.filter(pk__in=list(notification_ids))
    return qs.update(read_at=timezone.now())


def api_key_create(*, user, name: str) -> tuple[ApiKey, str]:
    """Create an API key for a service user; the plain key is returned once, stored hashed."""
    return ApiKey.objects.create_key(name=name, user=user)
