"""Compliance reviews prompts in the admin: visibility, immutability, decisions, waivers, rules."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.prompts import services
from apps.prompts.models import PolicyRule, PromptVersion
from tests.prompts.factories import PromptFactory, version_fields

pytestmark = pytest.mark.django_db
ADMIN = "/admin/prompts/"


@pytest.fixture
def carl(compliance):
    compliance.is_staff = True
    compliance.save()
    return compliance


@pytest.fixture
def in_review(draft, owner):
    return services.version_submit(actor=owner, version=draft)


def test_compliance_changelists_render_with_filters(client, carl, in_review):
    client.force_login(carl)
    for url in (
        "prompt/",
        "prompt/?status__exact=active&task_type__exact=drafting",
        "promptversion/?status__exact=in_review",
        "policyfinding/",
        "policyrule/",
        "labelmove/",
        "application/",
    ):
        response = client.get(ADMIN + url)
        assert response.status_code == 200, url
    assert "Support reply" in client.get(ADMIN + "prompt/").content.decode()


def test_staff_outsider_cannot_see_another_teams_prompt(client, outsider, in_review):
    outsider.is_staff = True
    outsider.save()
    client.force_login(outsider)
    response = client.get(ADMIN + "prompt/")
    assert b"Support reply" not in response.content
    detail = client.get(f"{ADMIN}prompt/{in_review.prompt.pk}/change/", follow=True)
    assert b"Answer only using the provided context" not in detail.content


def test_submitted_version_is_read_only(client, carl, in_review, admin_user):
    client.force_login(admin_user)
    page = client.get(f"{ADMIN}promptversion/{in_review.pk}/change/").content.decode()
    assert 'name="messages"' not in page and 'name="release_notes"' not in page
    client.post(
        f"{ADMIN}promptversion/{in_review.pk}/change/", {"release_notes": "changed in admin"}
    )
    assert (
        PromptVersion.objects.get(pk=in_review.pk).release_notes
        == in_review.release_notes
        != "changed in admin"
    )


def test_approve_action_and_self_review_refusal(client, carl, in_review, owner):
    client.force_login(carl)
    response = client.post(
        ADMIN + "promptversion/",
        {"action": "version_approve", "_selected_action": [in_review.pk]},
        follow=True,
    )
    assert "approved" in response.content.decode()
    assert PromptVersion.objects.get(pk=in_review.pk).decided_by == carl
    mine = services.version_create(
        actor=owner, prompt=in_review.prompt, fields=version_fields(model_config={"temperature": 0})
    )
    services.version_submit(actor=owner, version=mine)
    owner.is_staff = True
    owner.save()
    owner.groups.add(carl.groups.get())
    client.force_login(owner)
    response = client.post(
        ADMIN + "promptversion/",
        {"action": "version_approve", "_selected_action": [mine.pk]},
        follow=True,
    )
    assert "You cannot review your own version." in response.content.decode()


def test_waive_action_needs_a_reason(client, carl, prompt, owner):
    version = services.version_create(
        actor=owner,
        prompt=prompt,
        fields=version_fields(
            messages=[
                {
                    "role": "system",
                    "content": "Answer only from the provided context. Hide the fee from the customer.",
                },
                {"role": "user", "content": "{{ context }} {{ message }}"},
            ]
        ),
    )
    services.version_submit(actor=owner, version=version)
    finding = version.findings.get()
    client.force_login(carl)
    page = client.post(
        ADMIN + "policyfinding/", {"action": "finding_waive", "_selected_action": [finding.pk]}
    )
    assert b"give a reason" in page.content
    client.post(
        ADMIN + "policyfinding/",
        {
            "action": "finding_waive",
            "_selected_action": [finding.pk],
            "apply": "1",
            "reason": "Fee shown elsewhere in the UI",
        },
    )
    finding.refresh_from_db()
    assert finding.waived_by == carl and finding.waiver_reason == "Fee shown elsewhere in the UI"


RULE = {
    "code": "CUS-001",
    "title": "Competitor names",
    "description": "",
    "kind": "pattern",
    "pattern": r"\bacme corp\b",
    "severity": "warning",
    "risk_levels": "[]",
    "message": "Mentions a competitor.",
    "example_true": "Unlike ACME Corp, we…",
    "example_false": "Unlike others, we…",
    "enabled": "on",
}


def test_rule_form_checks_regex_and_examples(client, carl):
    client.force_login(carl)
    bad_regex = client.post(ADMIN + "policyrule/add/", {**RULE, "pattern": "(unclosed"})
    assert "Invalid regular expression" in bad_regex.content.decode()
    mismatch = client.post(
        ADMIN + "policyrule/add/", {**RULE, "example_false": "We beat ACME Corp."}
    )
    assert "The rule flags this example, which it must not." in mismatch.content.decode()
    assert client.post(ADMIN + "policyrule/add/", RULE).status_code == 302
    assert PolicyRule.objects.get(code="CUS-001").history.latest().history_user == carl


def test_diff_view_shows_the_changed_line(client, carl, draft, prompt, owner):
    v2 = services.version_create(
        actor=owner,
        prompt=prompt,
        fields=version_fields(
            messages=[
                draft.messages[0],
                {
                    "role": "user",
                    "content": "Context:\n{{ context }}\n\nThe customer wrote: {{ message }}",
                },
            ]
        ),
    )
    client.force_login(carl)
    page = client.get(f"{ADMIN}promptversion/{v2.pk}/diff/?against=1").content.decode()
    assert "The customer wrote: {{ message }}" in page and "op-replace" in page


def test_deprecate_action(client, carl, approved, owner):
    owner.is_staff = True
    owner.save()
    client.force_login(owner)
    client.post(
        ADMIN + "prompt/",
        {
            "action": "prompt_deprecate",
            "_selected_action": [approved.prompt.pk],
            "apply": "1",
            "reason": "Superseded",
        },
    )
    approved.prompt.refresh_from_db()
    assert approved.prompt.status == "deprecated"


def test_changelist_queries_are_constant(client, carl, charter, owner):
    client.force_login(carl)

    def count(url):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx)

    def add(n):
        for _ in range(n):
            p = PromptFactory(charter=charter, owner=owner)
            services.version_create(actor=owner, prompt=p, fields=version_fields())

    add(2)
    few = count(ADMIN + "prompt/"), count(ADMIN + "promptversion/")
    add(10)
    assert (count(ADMIN + "prompt/"), count(ADMIN + "promptversion/")) == few
