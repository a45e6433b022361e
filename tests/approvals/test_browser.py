"""The promotion story in real headless Chromium: request, comment, approve, label moves,
the consuming application's owner hears of it, and the evidence pack shows it all."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.approvals import raci
from apps.approvals.choices import Activity, Role
from apps.core.models import Notification
from apps.prompts import services as prompt_services
from apps.prompts.models import Consumer
from tests.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _log_out(page):
    page.get_by_role("button", name="Log out").click()


def test_request_comment_approve_execute_and_audit(
    page, owner, compliance, rita, ada, candidate, password
):
    prompt = candidate.prompt
    raci.raci_assign(
        actor=owner,
        charter=prompt.charter,
        activity=Activity.APPROVE_PRODUCTION_PROMPT,
        role=Role.CONSULTED,
        user=rita,
    )
    app = prompt_services.application_create(actor=ada, name="Helpdesk sidebar")
    now = timezone.now()
    Consumer.objects.create(
        application=app, prompt=prompt, label="production", first_seen=now, last_seen=now
    )

    log_in(page, "olivia", password)
    page.goto(f"/prompts/{prompt.slug}/versions/2/")
    page.fill("#promote-reason", "Lower temperature after the pilot review")
    page.get_by_role("button", name="Request promotion to production").click()
    expect(page.locator("#request-status")).to_have_text("Waiting for decisions")
    expect(page.locator("#evidence")).to_contain_text("accountable_approved")
    request_url = page.url
    _log_out(page)

    log_in(page, "rita", password)
    page.goto("/approvals/")
    page.locator("#waiting a").first.click()
    page.get_by_role("radio", name="Comment").check()
    page.fill("#id_comment", "Support ops are fine with it")
    page.get_by_role("button", name="Record decision").click()
    expect(page.locator("#decisions")).to_contain_text("Support ops are fine with it")
    _log_out(page)

    log_in(page, "carl", password)
    page.goto("/approvals/")
    page.locator("#waiting a").first.click()
    assert page.url == request_url
    page.get_by_role("radio", name="Approve").check()
    page.fill("#id_comment", "Evidence is complete")
    page.get_by_role("button", name="Record decision").click()
    expect(page.locator("#request-status")).to_have_text("Approved and executed")
    assert prompt.labels.get(name="production").version == candidate
    assert Notification.objects.filter(recipient=ada, verb="approval.executed").exists()

    pack = page.request.get(f"/approvals/evidence/{prompt.charter.slug}.json").json()
    decisions = pack["approvals"][0]["decisions"]
    assert [(d["by"], d["verdict"]) for d in decisions] == [
        ("rita", "comment"),
        ("carl", "approve"),
    ]
    assert pack["prompts"][0]["label_history"][-1]["to"] == 2
    assert pack["audit_chain"]["verified"] is True
    assert page.errors == []
