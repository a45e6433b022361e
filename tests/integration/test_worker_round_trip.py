"""A charter transition's notification travels through the broker to a real worker."""

import pytest
from django.conf import settings

from apps.charters import services
from apps.charters.tasks import charter_notify_transition
from apps.core.models import Notification

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def mail_files():
    folder = settings.VAR_DIR / "mail"
    return set(folder.glob("*.log")) if folder.exists() else set()


def test_submit_notifies_compliance_through_a_real_worker(
    celery_worker_process, charter, owner, compliance
):
    before = mail_files()
    services.charter_submit(actor=owner, charter=charter)

    note = celery_worker_process.wait_for(
        lambda: Notification.objects.filter(recipient=compliance).first(), what="the notification"
    )
    assert note.verb == "charter.submit"
    assert "Support reply drafting" in note.title
    assert "charter_notify_transition" in celery_worker_process.output()
    celery_worker_process.wait_for(
        lambda: Notification.objects.filter(pk=note.pk, emailed_at__isnull=False).exists(),
        what="the e-mail",
    )
    new_mail = mail_files() - before
    assert any(compliance.email in path.read_text() for path in new_mail)


def test_a_redelivered_message_changes_nothing(celery_worker_process, charter, owner, compliance):
    services.charter_submit(actor=owner, charter=charter)
    history_id = charter.history.latest().history_id
    for _ in range(2):
        charter_notify_transition.apply_async(
            (charter.pk, "submit", history_id, owner.pk), queue=celery_worker_process.queue
        )
    # Three deliveries of the same transition: the service's own and two re-sends.
    celery_worker_process.wait_for(
        lambda: celery_worker_process.output().count("succeeded") >= 3, what="three task runs"
    )
    assert Notification.objects.filter(recipient=compliance).count() == 1
