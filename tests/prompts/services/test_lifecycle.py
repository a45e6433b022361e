"""Deprecation, retirement, forks, applications and consumer lineage."""

import datetime as dt

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from apps.core import hotcache
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.models import Notification
from apps.prompts import services
from apps.prompts.models import Consumer, Prompt
from apps.prompts.starters import STARTERS
from apps.prompts.tasks import prompt_review_reminders
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def app_owner(db):
    """Ada, who owns the helpdesk integration that reads Olivia's prompt."""
    return factories.platform_engineer("ada")


@pytest.fixture
def helpdesk(app_owner):
    return services.application_create(actor=app_owner, name="Helpdesk sidebar")


def test_application_gets_a_service_user_and_hashed_keys(helpdesk, app_owner):
    key, plain = services.application_key_create(actor=app_owner, application=helpdesk, name="prod")
    assert helpdesk.service_user.username == "app-helpdesk-sidebar"
    assert not helpdesk.service_user.has_usable_password()
    assert plain not in key.hashed_key and key.is_valid(plain)
    services.application_key_revoke(actor=app_owner, application=helpdesk, prefix=key.prefix)
    key.refresh_from_db()
    assert key.revoked


def test_only_the_owner_manages_application_keys(helpdesk, outsider):
    with pytest.raises(PermissionDenied):
        services.application_key_create(actor=outsider, application=helpdesk, name="x")


def test_consumers_are_counted_without_a_write_per_resolve(
    prompt, helpdesk, django_assert_max_num_queries
):
    cache.clear()
    services.consumer_record(application_id=helpdesk.pk, prompt_id=prompt.pk, label="production")
    with django_assert_max_num_queries(0):
        for _ in range(50):
            services.consumer_record(
                application_id=helpdesk.pk, prompt_id=prompt.pk, label="production"
            )
    consumer = Consumer.objects.get()
    assert consumer.count == 1
    hotcache.reset()  # as if a minute had passed
    services.consumer_record(application_id=helpdesk.pk, prompt_id=prompt.pk, label="production")
    assert Consumer.objects.get().count == 52


def test_deprecation_notifies_consuming_application_owners(
    prompt, approved, owner, helpdesk, app_owner, django_capture_on_commit_callbacks
):
    cache.clear()
    services.consumer_record(application_id=helpdesk.pk, prompt_id=prompt.pk, label="production")
    successor = Prompt.objects.create(
        slug="support-reply-v2", name="Support reply v2", charter=prompt.charter, owner=owner
    )
    sunset = timezone.localdate() + dt.timedelta(days=30)
    with django_capture_on_commit_callbacks(execute=True):
        services.prompt_deprecate(
            actor=owner,
            prompt=prompt,
            reason="Replaced by v2",
            sunset_date=sunset,
            successor=successor,
        )
    note = Notification.objects.get(recipient=app_owner)
    assert (
        "deprecated" in note.title
        and "support-reply-v2" in note.body
        and sunset.isoformat() in note.body
    )
    assert app_owner.email in [m.to[0] for m in mail.outbox]
    with django_capture_on_commit_callbacks(execute=True):
        services.prompt_retire(actor=owner, prompt=prompt, reason="Sunset reached")
    assert Notification.objects.filter(recipient=app_owner, verb="prompt.retired").count() == 1
    with pytest.raises(InvalidTransition):
        services.prompt_retire(actor=owner, prompt=prompt, reason="again")


def test_deprecation_validates_its_input(prompt, owner):
    with pytest.raises(ValidationFailed) as exc:
        services.prompt_deprecate(
            actor=owner,
            prompt=prompt,
            reason="",
            sunset_date=timezone.localdate(),
            successor=prompt,
        )
    assert set(exc.value.errors) == {"reason", "sunset_date", "successor"}


def test_fork_starts_a_new_draft_with_lineage(approved, owner, prompt):
    fork = services.prompt_fork(
        actor=owner, source=approved, charter=prompt.charter, name="Claims reply"
    )
    assert fork.forked_from == approved and fork.slug == "claims-reply"
    [version] = fork.versions.all()
    assert version.status == "draft" and version.messages == approved.messages
    assert version.content_hash == approved.content_hash


def test_forking_a_starter_from_the_catalog(charter, owner):
    starter = Prompt.objects.get(slug="starter-summarization").versions.get()
    fork = services.prompt_fork(
        actor=owner, source=starter, charter=charter, name="Board pack summary"
    )
    assert fork.charter == charter and fork.forked_from == starter


def test_starters_are_policy_clean_and_approved():
    assert Prompt.objects.filter(is_starter=True).count() == len(STARTERS) == 5
    for prompt in Prompt.objects.filter(is_starter=True):
        version = prompt.versions.get()
        assert version.status == "approved"
        assert services.version_policy_findings(version) == [], prompt.slug


def test_review_reminder_goes_to_the_owner_once(prompt, owner):
    prompt.review_date = timezone.localdate() - dt.timedelta(days=1)
    prompt.save()
    assert prompt_review_reminders() == 1
    assert prompt_review_reminders() == 0
    assert Notification.objects.get(recipient=owner).verb == "prompt.review_due"


def test_compliance_may_deprecate_and_retire_but_a_catalog_reader_may_not(
    approved, compliance, outsider, prompt
):
    from django.core.exceptions import PermissionDenied as Denied

    prompt.listed_in_catalog = True
    prompt.save()
    with pytest.raises(Denied):
        services.prompt_retire(actor=outsider, prompt=prompt, reason="not mine")
    services.prompt_deprecate(actor=compliance, prompt=prompt, reason="Vendor contract ends")
    assert (
        services.prompt_retire(actor=compliance, prompt=prompt, reason="Contract ended").status
        == "retired"
    )
