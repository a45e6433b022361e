"""Prompt authors' pages, through Django's test client."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.prompts import services
from apps.prompts.models import Prompt, PromptVersion
from tests.prompts.factories import PromptFactory, version_fields

pytestmark = pytest.mark.django_db


def version_post(messages, variables, **extra):
    data = {
        "template_kind": "chat",
        "text": "",
        "model_config": '{"temperature": 0.2}',
        "release_notes": "Notes",
        "change_kind": "minor",
        "messages-TOTAL_FORMS": len(messages),
        "messages-INITIAL_FORMS": 0,
        "variables-TOTAL_FORMS": len(variables),
        "variables-INITIAL_FORMS": 0,
    }
    for i, (role, content) in enumerate(messages):
        data[f"messages-{i}-role"], data[f"messages-{i}-content"] = role, content
    for i, (name, example) in enumerate(variables):
        (
            data[f"variables-{i}-name"],
            data[f"variables-{i}-example"],
            data[f"variables-{i}-required"],
        ) = name, example, "on"
    data.update(extra)
    return data


GOOD = [
    ("system", "Answer only using the provided context."),
    ("user", "{{ context }}\n\nQ: {{ question }}"),
]
VARS = [("context", "Returns within 30 days."), ("question", "Can I return shoes?")]


def test_catalog_shows_starters_and_approved_visible_prompts(client, owner, approved):
    client.force_login(owner)
    page = client.get("/prompts/").content.decode()
    assert "Starter: faithful summary" in page and "Support reply" in page
    filtered = client.get("/prompts/?task_type=extraction").content.decode()
    assert "Starter: field extraction to JSON" in filtered and "Support reply" not in filtered
    assert "Starter: single-label" in client.get("/prompts/?q=single-label").content.decode()


def test_catalog_query_count_is_constant(client, owner, charter, compliance):
    client.force_login(owner)

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/prompts/").status_code == 200
        return len(ctx)

    def add(n):
        for _ in range(n):
            prompt = PromptFactory(charter=charter, owner=owner)
            v = services.version_create(actor=owner, prompt=prompt, fields=version_fields())
            services.version_submit(actor=owner, version=v)
            services.version_approve(actor=compliance, version=v)

    add(2)
    few = count()
    add(8)
    assert count() == few


def test_outsider_gets_404_on_another_teams_unlisted_prompt(client, outsider, draft):
    client.force_login(outsider)
    for url in (
        "/prompts/support-reply/",
        "/prompts/support-reply/versions/1/",
        "/prompts/support-reply/diff/",
        "/prompts/support-reply/versions/new/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post("/prompts/support-reply/versions/1/submit/").status_code == 404
    assert client.post("/prompts/support-reply/retire/", {"reason": "x"}).status_code == 404
    assert client.get("/prompts/starter-routing/").status_code == 200  # listed in the catalog


def test_create_prompt_then_write_a_version(client, owner, charter):
    client.force_login(owner)
    response = client.post(
        "/prompts/new/",
        {
            "charter": charter.pk,
            "name": "Claims reply",
            "task_type": "drafting",
            "risk_level": "medium",
        },
    )
    assert (
        response.status_code == 302
        and response["Location"] == "/prompts/claims-reply/versions/new/"
    )
    response = client.post(
        "/prompts/claims-reply/versions/new/", version_post(GOOD, VARS, save="1")
    )
    assert response.status_code == 302
    version = PromptVersion.objects.get(prompt__slug="claims-reply")
    assert (
        version.messages[1]["content"] == "{{ context }}\n\nQ: {{ question }}"
        and version.author == owner
    )
    assert [v["name"] for v in version.variables] == ["context", "question"]


def test_invalid_version_keeps_what_was_typed_and_names_the_problem(client, owner, prompt):
    client.force_login(owner)
    bad = [("system", "Be brief."), ("user", "Hi {{ who }}, typed with care")]
    response = client.post(f"/prompts/{prompt.slug}/versions/new/", version_post(bad, [], save="1"))
    page = response.content.decode()
    assert response.status_code == 200
    assert (
        "messages[1] (user) line 1, column 4: Variable &#x27;who&#x27; is used but not declared."
        in page
    )
    assert "typed with care" in page
    assert not PromptVersion.objects.filter(prompt=prompt).exists()


def test_check_and_preview_render_the_examples_without_saving(client, owner, prompt):
    client.force_login(owner)
    page = client.post(
        f"/prompts/{prompt.slug}/versions/new/", version_post(GOOD, VARS, check="1")
    ).content.decode()
    assert (
        "No problems." in page
        and "Returns within 30 days." in page
        and "Q: Can I return shoes?" in page
    )
    assert not PromptVersion.objects.filter(prompt=prompt).exists()


def test_add_message_row_keeps_typed_input(client, owner, prompt):
    client.force_login(owner)
    page = client.post(
        f"/prompts/{prompt.slug}/versions/new/", version_post(GOOD, VARS, add_message="1")
    ).content.decode()
    assert 'name="messages-2-content"' in page and "Answer only using the provided context." in page


def test_submit_shows_findings_and_review_flow(client, owner, compliance, prompt):
    services.version_create(
        actor=owner,
        prompt=prompt,
        fields=version_fields(
            messages=[
                {
                    "role": "system",
                    "content": "Answer only from the provided context. Guarantee a full refund.",
                },
                {"role": "user", "content": "{{ context }} {{ message }}"},
            ]
        ),
    )
    client.force_login(owner)
    page = client.post(f"/prompts/{prompt.slug}/versions/1/submit/", follow=True).content.decode()
    assert "1 policy finding" in page and "UNS-004" in page
    page = client.post(f"/prompts/{prompt.slug}/versions/1/approve/", follow=True)
    assert page.status_code == 403 or "cannot review your own" in page.content.decode()
    client.force_login(compliance)
    client.post(f"/prompts/{prompt.slug}/versions/1/approve/", {"reason": "ok"})
    assert PromptVersion.objects.get(prompt=prompt, number=1).status == "approved"
    client.force_login(owner)
    page = client.post(f"/prompts/{prompt.slug}/versions/1/promote/", follow=True).content.decode()
    assert "Unwaived blocking findings: UNS-004." in page
    finding = PromptVersion.objects.get(prompt=prompt, number=1).findings.get()
    client.force_login(compliance)
    client.post(
        f"/prompts/{prompt.slug}/versions/1/waive/",
        {"finding": finding.pk, "reason": "Legal-approved wording"},
    )
    client.force_login(owner)
    page = client.post(f"/prompts/{prompt.slug}/versions/1/promote/", follow=True).content.decode()
    assert "Promotion requested: approval request #" in page
    approval = prompt.approval_requests.get()
    client.force_login(compliance)
    page = client.post(
        approval.get_absolute_url(), {"verdict": "approve", "comment": "ok"}, follow=True
    ).content.decode()
    assert "Approved and executed" in page
    assert prompt.labels.get(name="production").version.number == 1


def test_submitted_version_cannot_be_edited(client, owner, draft):
    services.version_submit(actor=owner, version=draft)
    client.force_login(owner)
    response = client.get("/prompts/support-reply/versions/1/edit/", follow=True)
    assert "immutable" in response.content.decode()
    client.post(
        "/prompts/support-reply/versions/1/edit/",
        version_post(
            [("user", "changed {{ context }} {{ message }}")],
            [("context", ""), ("message", "")],
            save="1",
        ),
    )
    assert PromptVersion.objects.get(pk=draft.pk).messages[0]["role"] == "system"


def test_label_move_appears_in_the_history(client, owner, approved):
    client.force_login(owner)
    client.post(
        "/prompts/support-reply/versions/1/label/", {"label": "staging", "reason": "QA round"}
    )
    page = client.get("/prompts/support-reply/").content.decode()
    assert "QA round" in page and "staging" in page


def test_diff_page_shows_the_changed_line(client, owner, draft, prompt):
    services.version_create(
        actor=owner,
        prompt=prompt,
        fields=version_fields(
            messages=[
                draft.messages[0],
                {
                    "role": "user",
                    "content": "Context:\n{{ context }}\n\nCustomer asks: {{ message }}",
                },
            ]
        ),
    )
    client.force_login(owner)
    page = client.get("/prompts/support-reply/diff/?from=1&to=2").content.decode()
    assert "diff--replace" in page and "Customer asks: {{ message }}" in page


def test_deprecate_shows_a_banner_and_fork_keeps_lineage(client, owner, approved, charter):
    client.force_login(owner)
    client.post(
        "/prompts/support-reply/deprecate/", {"reason": "Superseded", "sunset_date": "2099-01-01"}
    )
    assert "Deprecated." in client.get("/prompts/support-reply/").content.decode()
    response = client.post(
        "/prompts/support-reply/fork/", {"charter": charter.pk, "name": "Returns reply"}
    )
    fork = Prompt.objects.get(slug="returns-reply")
    assert response["Location"] == "/prompts/returns-reply/" and fork.forked_from == approved
