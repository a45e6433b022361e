"""Compliance in the admin: sees what it may, decides through the services, reads history."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.charters import services
from apps.charters.models import Charter
from tests import factories

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/charters/charter/"


@pytest.fixture
def carl(compliance):
    compliance.is_staff = True
    compliance.save()
    return compliance


@pytest.fixture
def staff_outsider(outsider):
    outsider.is_staff = True
    outsider.save()
    return outsider


def change_url(charter):
    return f"{CHANGELIST}{charter.pk}/change/"


def test_compliance_sees_every_charter_with_filters_and_search(client, carl, charter, owner):
    overdue = factories.CharterFactory(
        business_owner=owner,
        title="Claims triage",
        review_date=timezone.localdate() - dt.timedelta(days=2),
    )
    client.force_login(carl)
    page = client.get(CHANGELIST).content.decode()
    assert "Support reply drafting" in page and "Claims triage" in page
    overdue_page = client.get(CHANGELIST + "?overdue=yes").content.decode()
    assert "Claims triage" in overdue_page and "Support reply drafting" not in overdue_page
    searched = client.get(CHANGELIST + "?q=triage").content.decode()
    assert "Claims triage" in searched and "Support reply drafting" not in searched
    assert (
        client.get(CHANGELIST + "?status__exact=draft&risk_tier__exact=medium").status_code == 200
    )
    assert overdue.title in client.get(CHANGELIST + "?q=olivia").content.decode()


def test_staff_outsider_neither_lists_nor_opens_the_charter(client, staff_outsider, charter):
    client.force_login(staff_outsider)
    response = client.get(CHANGELIST)
    assert response.status_code in (200, 403)
    assert b"Support reply drafting" not in response.content
    response = client.get(change_url(charter), follow=True)
    assert b"Olivia" not in response.content and b"Agents spend 40%" not in response.content
    assert client.get(f"{CHANGELIST}{charter.pk}/history/").status_code in (302, 403, 404)


def test_compliance_cannot_edit_content(client, carl, charter):
    client.force_login(carl)
    page = client.get(change_url(charter)).content.decode()
    assert 'name="title"' not in page  # read-only for a decider


def test_superuser_edits_a_draft_through_the_service_and_history_records_it(
    client, charter, admin_user
):
    client.force_login(admin_user)
    page = client.get(change_url(charter))
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data.update(
        {
            "title": "Support reply drafting (EU)",
            "business_owner": charter.business_owner_id,
            "review_date": charter.review_date.isoformat(),
        }
    )
    for prefix in ("metrics", "dependencies"):
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0})
    response = client.post(change_url(charter), data)
    assert response.status_code == 302, (
        response.context["adminform"].form.errors if response.context else response
    )
    charter.refresh_from_db()
    assert charter.title == "Support reply drafting (EU)"
    latest = charter.history.latest()
    assert latest.history_user == admin_user and latest.history_change_reason == "Edited"


def test_submitted_charter_is_read_only_even_for_superusers(client, charter, admin_user, owner):
    services.charter_submit(actor=owner, charter=charter)
    client.force_login(admin_user)
    assert 'name="title"' not in client.get(change_url(charter)).content.decode()


def test_approve_action_calls_the_service(client, carl, charter, owner):
    services.charter_submit(actor=owner, charter=charter)
    client.force_login(carl)
    response = client.post(
        CHANGELIST, {"action": "charter_approve", "_selected_action": [charter.pk]}, follow=True
    )
    charter.refresh_from_db()
    assert charter.status == "approved" and charter.history.latest().history_user == carl
    assert "approve done" in response.content.decode()


def test_approve_action_reports_refusals_without_crashing(client, carl, charter):
    client.force_login(carl)
    response = client.post(
        CHANGELIST, {"action": "charter_approve", "_selected_action": [charter.pk]}, follow=True
    )
    assert "Cannot approve a charter that is draft" in response.content.decode()
    charter.refresh_from_db()
    assert charter.status == "draft"


def test_self_approval_is_refused_in_the_admin(client, charter, owner, carl):
    services.charter_submit(actor=owner, charter=charter)
    owner.is_staff = True
    owner.save()
    owner.groups.add(carl.groups.get())
    client.force_login(owner)
    response = client.post(
        CHANGELIST, {"action": "charter_approve", "_selected_action": [charter.pk]}, follow=True
    )
    assert "cannot decide on their own charter" in response.content.decode()


def test_reject_asks_for_a_reason_first(client, carl, charter, owner):
    services.charter_submit(actor=owner, charter=charter)
    client.force_login(carl)
    page = client.post(CHANGELIST, {"action": "charter_reject", "_selected_action": [charter.pk]})
    assert b"give a reason" in page.content
    charter.refresh_from_db()
    assert charter.status == "submitted"
    client.post(
        CHANGELIST,
        {
            "action": "charter_reject",
            "_selected_action": [charter.pk],
            "apply": "1",
            "reason": "No baseline source",
        },
    )
    charter.refresh_from_db()
    assert (charter.status, charter.status_reason) == ("draft", "No baseline source")


def test_history_page_shows_who_changed_what(client, carl, charter, owner):
    services.charter_submit(actor=owner, charter=charter)
    services.charter_reject(actor=carl, charter=charter, reason="Vague proof")
    client.force_login(carl)
    page = client.get(f"{CHANGELIST}{charter.pk}/history/").content.decode()
    assert "Reject: Vague proof" in page and "carl" in page
    assert "status" in page and "submitted" in page  # the field-level diff between versions


def _changelist_queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(CHANGELIST).status_code == 200
    return len(ctx)


def test_changelist_query_count_does_not_grow_with_rows(client, carl, owner):
    client.force_login(carl)
    for _ in range(2):
        factories.CharterFactory(business_owner=owner)
    few = _changelist_queries(client)
    for _ in range(10):
        factories.CharterFactory(business_owner=owner)
    assert _changelist_queries(client) == few


def test_api_key_admin_shows_the_key_once(client, admin_user):
    bot = factories.UserFactory(username="ci-bot")
    client.force_login(admin_user)
    response = client.post(
        "/admin/core/apikey/add/",
        {"name": "ci", "user": bot.pk, "revoked": "", "expiry_date_0": "", "expiry_date_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    from apps.core.models import ApiKey

    key = ApiKey.objects.get(name="ci")
    assert key.user == bot and key.prefix in text
    assert (
        "will not be able to see it again" in text
        or "won't be able to see it again" in text
        or "copy" in text.lower()
    )


def test_charters_created_in_admin_go_through_the_service(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        f"{CHANGELIST}add/",
        {
            "title": "Invoice coding",
            "slug": "",
            "business_owner": admin_user.pk,
            "risk_tier": "low",
            "data_sensitivity": "internal",
            "metrics-TOTAL_FORMS": 0,
            "metrics-INITIAL_FORMS": 0,
            "dependencies-TOTAL_FORMS": 0,
            "dependencies-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, (
        response.context["adminform"].form.errors if response.context else response
    )
    charter = Charter.objects.get(title="Invoice coding")
    assert charter.slug == "invoice-coding" and charter.created_by == admin_user
