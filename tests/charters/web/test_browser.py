"""A business owner's charter journey in real headless Chromium, without JavaScript help."""

import datetime as dt
import tempfile
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.charters.choices import CharterStatus
from apps.charters.models import Charter
from apps.core.services import notification_send
from tests import factories
from tests.browser import log_in

pytestmark = pytest.mark.browser

SCREENSHOT = Path(tempfile.gettempdir()) / "aifactory-charter-detail.png"


def fill_metric(page, index, *, name, layer, role, direction, baseline, target):
    row = f"#id_metrics-{index}-"
    page.fill(f"{row}name", name)
    page.select_option(f"{row}layer", layer)
    page.select_option(f"{row}role", role)
    page.select_option(f"{row}direction", direction)
    page.fill(f"{row}baseline_value", baseline)
    page.fill(f"{row}target_value", target)


def test_owner_drafts_submits_fixes_and_submits_again(page, owner, password):
    log_in(page, "olivia", password)
    page.get_by_role("link", name="New charter").click()

    page.get_by_label("Title", exact=True).fill("Invoice triage")
    page.get_by_label("Problem", exact=True).fill(
        "Invoices wait three days for a human to route them."
    )
    page.get_by_label("Process", exact=True).fill(
        "The model proposes a cost centre; a clerk confirms it."
    )
    page.get_by_label("Proof", exact=True).fill(
        "Routing time below one day with no more misroutes."
    )
    page.get_by_label("Target users", exact=True).fill("Accounts-payable clerks")
    page.get_by_label("Intended use", exact=True).fill("Suggest a routing; never pay anything.")
    page.get_by_label("Retirement condition", exact=True).fill("Retire if misroutes rise above 2%.")
    review = timezone.localdate() + dt.timedelta(days=90)
    page.get_by_label("Review date", exact=True).fill(review.isoformat())
    fill_metric(
        page,
        0,
        name="Suggestion acceptance",
        layer="output_quality",
        role="supporting",
        direction="increase",
        baseline="40",
        target="70",
    )
    page.get_by_role("button", name="Create draft").click()

    expect(page.get_by_role("heading", name="Invoice triage", level=1)).to_be_visible()
    expect(page.locator("#charter-status")).to_have_text("Draft")
    page.get_by_role("button", name="Submit for approval").click()

    messages = page.get_by_role("list", name="Messages")
    expect(messages).to_contain_text("The charter is not complete enough to submit.")
    expect(messages).to_contain_text(
        "Metrics: Exactly one primary business-outcome metric is required; found 0."
    )
    expect(messages).to_contain_text("At least two supporting metrics are required; found 1.")
    expect(messages).to_contain_text("Dependencies: At least one dependency")
    expect(page.locator("#charter-status")).to_have_text("Draft")

    page.get_by_role("link", name="Edit charter").click()
    expect(page.locator("#id_metrics-0-name")).to_have_value("Suggestion acceptance")
    page.get_by_role("button", name="Add metric row").click()
    fill_metric(
        page,
        1,
        name="Routing time",
        layer="business_outcome",
        role="primary",
        direction="decrease",
        baseline="72",
        target="12",
    )
    fill_metric(
        page,
        2,
        name="Clerk minutes per invoice",
        layer="workflow_efficiency",
        role="supporting",
        direction="decrease",
        baseline="6",
        target="2",
    )
    page.get_by_role("button", name="Add dependency row").click()
    # What was typed before the second round trip is still there.
    expect(page.locator("#id_metrics-2-name")).to_have_value("Clerk minutes per invoice")
    expect(page.locator("#id_metrics-1-role")).to_have_value("primary")
    page.select_option("#id_dependencies-1-kind", "system")
    page.fill("#id_dependencies-1-name", "SAP S/4HANA")
    page.select_option("#id_dependencies-1-criticality", "critical")
    page.get_by_role("button", name="Save changes").click()

    expect(page.get_by_role("list", name="Messages")).to_contain_text("saved")
    expect(page.locator("#readiness")).to_contain_text("Complete — ready to submit for approval.")
    page.get_by_role("button", name="Submit for approval").click()

    expect(page.locator("#charter-status")).to_have_text("Submitted")
    expect(page.get_by_role("list", name="Messages")).to_contain_text("is now submitted")
    charter = Charter.objects.get(title="Invoice triage")
    assert charter.status == CharterStatus.SUBMITTED
    assert charter.metrics.count() == 3
    assert list(charter.dependencies.values_list("name", flat=True)) == ["SAP S/4HANA"]
    assert charter.history.latest().history_user == owner
    assert page.errors == []


def test_pages_render_without_console_errors(page, owner, password):
    charter = factories.CharterFactory(business_owner=owner, title="Support reply drafting")
    notification_send(
        recipients=[owner],
        verb="charter.approve",
        title="Charter approved",
        body="Carl approved it.",
        url=charter.get_absolute_url(),
        dedupe_key="browser:1",
    )
    page.goto("/accounts/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    log_in(page, "olivia", password)
    for path, heading in (
        ("/charters/", "My charters"),
        ("/charters/new/", "New charter"),
        (charter.get_absolute_url(), charter.title),
        ("/inbox/", "Inbox"),
    ):
        page.goto(path)
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        # The stylesheet loaded (the top bar is painted in the brand colour).
        assert page.locator(".topbar").evaluate("e => getComputedStyle(e).backgroundColor") == (
            "rgb(29, 58, 110)"
        )
        if path == charter.get_absolute_url():
            page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert page.errors == []
